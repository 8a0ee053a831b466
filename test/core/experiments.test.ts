/** The pure experiment rules: every status step of the lifecycle, and what an update makes of a version. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DomainError } from "../../src/core/errors.js";
import { applyUpdate, conclude, EXPERIMENT_STATUSES, newExperiment, requireTransition, type ExperimentSpec, type ExperimentStatusName } from "../../src/core/experiments.js";

const ALLOWED = new Set(["DRAFT>RUNNING", "RUNNING>STOPPED", "STOPPED>CONCLUDED"]);
const spec: ExperimentSpec = {
  displayName: "x",
  hypothesis: "",
  owner: "",
  arms: [
    { variant: "a", weight: 1 },
    { variant: "b", weight: 1 },
  ],
  control: "",
  primaryMetric: "SEARCH_CTR",
  guardrails: [],
  sequential: false,
  cuped: false,
};
const t0 = new Date("2026-11-01T00:00:00Z");
const at = (h: number) => new Date(t0.getTime() + h * 3_600_000);

describe("lifecycle", () => {
  it("allows exactly DRAFT -> RUNNING -> STOPPED -> CONCLUDED, every other pair FAILED_PRECONDITION", () => {
    fc.assert(
      fc.property(fc.constantFrom(...EXPERIMENT_STATUSES), fc.constantFrom(...EXPERIMENT_STATUSES), (from: ExperimentStatusName, to: ExperimentStatusName) => {
        const ok = ALLOWED.has(`${from}>${to}`);
        if (ok) expect(() => requireTransition(from, to)).not.toThrow();
        else expect(() => requireTransition(from, to)).toThrow(expect.objectContaining({ kind: "failed_precondition" }) as DomainError);
      }),
      { numRuns: 64, seed: 24 },
    );
  });

  it("starts the period when it runs and ends it when it stops, keeping times that were set", () => {
    const draft = newExperiment("k", spec, "ann", t0);
    expect([draft.status, draft.version, draft.control, draft.startTime]).toEqual(["DRAFT", 1, "a", undefined]);
    const running = applyUpdate(draft, { ...spec, status: "RUNNING" }, ["status"], "v1", "bob", at(1));
    expect([running.status, running.version, running.startTime]).toEqual(["RUNNING", 2, at(1)]);
    const stopped = applyUpdate(running, { ...spec, status: "STOPPED" }, ["status"], "", "bob", at(5));
    expect([stopped.startTime, stopped.endTime]).toEqual([at(1), at(5)]);
    const planned = applyUpdate(newExperiment("p", { ...spec, startTime: at(-24) }, "ann", t0), { ...spec, status: "RUNNING" }, ["status"], "", "bob", at(1));
    expect(planned.startTime).toEqual(at(-24));
    const done = conclude(stopped, "b", "why", "v3", "cy", at(6));
    expect(done.conclusion).toEqual({ shippedVariant: "b", note: "why", concludedBy: "cy", concludeTime: at(6) });
    expect(done.history.map((h) => [h.version, h.actor, h.action])).toEqual([
      [1, "ann", "create"],
      [2, "bob", "update"],
      [3, "bob", "update"],
      [4, "cy", "conclude"],
    ]);
  });

  it("leaves the version alone when nothing changes, and never mutates the version it was given", () => {
    const draft = newExperiment("k", spec, "ann", t0);
    const snapshot = structuredClone(draft);
    expect(applyUpdate(draft, { ...spec, status: "DRAFT" }, ["status", "display_name", "arms"], "", "bob", at(1))).toBe(draft);
    applyUpdate(draft, { ...spec, displayName: "y", status: undefined }, ["display_name"], "", "bob", at(1));
    expect(draft).toEqual(snapshot);
  });

  it("is ABORTED on a stale etag before anything else is looked at", () => {
    const draft = newExperiment("k", spec, "ann", t0);
    expect(() => applyUpdate(draft, { ...spec, status: "STOPPED" }, ["status"], "v7", "bob", at(1))).toThrow(expect.objectContaining({ kind: "aborted" }) as DomainError);
  });
});
