/** Experiments as resources: create, read, list, update with a field mask and an etag, the lifecycle, access per role. */
import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClickAnalyticsClient, ExperimentMetric, ExperimentStatus, Status, type ClickAnalyticsClient, type ExperimentSchema, type ServiceError } from "../../src/client/index.js";
import { startHarness, type Harness } from "../support/harness.js";

type Def = MessageInitShape<typeof ExperimentSchema>;
type DefFields = Partial<Exclude<Def, { $typeName: "clickanalytics.v1.Experiment" }>>;
const definition = (over: DefFields = {}): Def => ({
  displayName: "Ranker v2",
  hypothesis: "Learning-to-rank lifts search CTR",
  owner: "search-team",
  arms: [
    { variant: "search_v1", weight: 1 },
    { variant: "search_v2", weight: 1 },
  ],
  control: "search_v1",
  primaryMetric: ExperimentMetric.SEARCH_CTR,
  guardrails: [{ metric: ExperimentMetric.P95_LATENCY, threshold: 0.1 }],
  ...over,
});

async function failure(promise: Promise<unknown>): Promise<ServiceError> {
  const error = (await promise.then(
    () => undefined,
    (e: unknown) => e,
  )) as ServiceError | undefined;
  expect(error, "call should have failed").toBeDefined();
  return error!;
}
async function expectStatus(promise: Promise<unknown>, code: Status, detail: RegExp): Promise<void> {
  const error = await failure(promise);
  expect([Status[error.code], error.details]).toEqual([Status[code], expect.stringMatching(detail)]);
}

let h: Harness;
let c: ClickAnalyticsClient;
beforeAll(async () => {
  h = await startHarness();
  c = h.client;
});
afterAll(() => h?.close());

describe("create and read", () => {
  it("stores a DRAFT at version 1 with its creation in the history, and reads it by name or key", async () => {
    const before = Date.now();
    const { experiment: e } = await c.createExperiment({ experimentId: "ranker-v2", experiment: definition({ coverage: 0.5, confidence: 0.9, minUsers: 200n }) }, { userId: "alice" });
    expect(e).toMatchObject({ name: "experiments/ranker-v2", key: "ranker-v2", status: ExperimentStatus.DRAFT, version: 1n, etag: "v1", control: "search_v1", coverage: 0.5, confidence: 0.9, minUsers: 200n });
    expect(e!.history).toHaveLength(1);
    expect(e!.history[0]).toMatchObject({ version: 1n, actor: "alice", action: "create", fields: [] });
    expect(timestampDate(e!.createTime!).getTime()).toBeGreaterThanOrEqual(before - 1000);
    const byName = await c.getExperiment({ name: "experiments/ranker-v2" });
    const byKey = await c.getExperiment({ name: "ranker-v2" });
    expect(byName.experiment).toEqual(e);
    expect(byKey.experiment).toEqual(e);
  });

  it("fills an empty control with the first arm", async () => {
    const { experiment } = await c.createExperiment({ experimentId: "default-control", experiment: definition({ control: "", arms: [{ variant: "b", weight: 3 }, { variant: "a", weight: 1 }] }) });
    expect(experiment?.control).toBe("b");
  });

  it("answers NOT_FOUND for an unknown experiment, INVALID_ARGUMENT for a malformed name", async () => {
    await expectStatus(c.getExperiment({ name: "experiments/nope" }), Status.NOT_FOUND, /experiments\/nope does not exist/);
    await expectStatus(c.getExperiment({ name: "experiments/Bad Key" }), Status.INVALID_ARGUMENT, /^name: must be "experiments\/\{key\}"/);
    await expectStatus(c.getExperiment({ name: "" }), Status.INVALID_ARGUMENT, /^name: is required/);
  });

  it.each([
    ["experiment_id", { experimentId: "" }, /^experiment_id: is required/],
    ["experiment_id", { experimentId: "Upper" }, /^experiment_id: must match/],
    ["experiment.display_name", { experiment: definition({ displayName: " " }) }, /^experiment\.display_name: is required/],
    ["experiment.arms", { experiment: definition({ arms: [{ variant: "a", weight: 1 }] }) }, /^experiment\.arms: must have 2 to 20 arms, got 1/],
    ["experiment.arms[1].variant", { experiment: definition({ arms: [{ variant: "a", weight: 1 }, { variant: "a", weight: 1 }] }) }, /^experiment\.arms\[1\]\.variant: must be unique/],
    ["experiment.arms[0].weight", { experiment: definition({ arms: [{ variant: "a", weight: 0 }, { variant: "b", weight: 1 }] }) }, /^experiment\.arms\[0\]\.weight: must be a finite weight > 0, got 0/],
    ["experiment.arms[1].weight", { experiment: definition({ arms: [{ variant: "a", weight: 1 }, { variant: "b", weight: Number.NaN }] }) }, /^experiment\.arms\[1\]\.weight: must be a finite weight > 0/],
    ["experiment.control", { experiment: definition({ control: "other" }) }, /^experiment\.control: must be one of the arms' variants \(search_v1, search_v2\), got "other"/],
    ["experiment.coverage", { experiment: definition({ coverage: 1.5 }) }, /^experiment\.coverage: must be in \(0, 1\], got 1\.5/],
    ["experiment.confidence", { experiment: definition({ confidence: 1e-9 }) }, /^experiment\.confidence: must be in \[0\.5, 0\.9999\]/],
    ["experiment.primary_metric", { experiment: definition({ primaryMetric: ExperimentMetric.P95_LATENCY }) }, /^experiment\.primary_metric: must be a ratio metric/],
    ["experiment.guardrails[0].threshold", { experiment: definition({ guardrails: [{ metric: ExperimentMetric.NO_RESULTS_RATE, threshold: 2 }] }) }, /^experiment\.guardrails\[0\]\.threshold: must be an absolute change of the rate in \(0, 1\]/],
    ["experiment.guardrails[0].metric", { experiment: definition({ guardrails: [{ metric: ExperimentMetric.UNSPECIFIED, threshold: 0.1 }] }) }, /^experiment\.guardrails\[0\]\.metric: must be one of/],
    ["experiment.end_time", { experiment: definition({ startTime: timestampFromDate(new Date("2026-01-02")), endTime: timestampFromDate(new Date("2026-01-01")) }) }, /^experiment\.end_time: must be after start_time/],
    ["experiment.status", { experiment: definition({ status: ExperimentStatus.RUNNING }) }, /^experiment\.status: must be DRAFT or unset on create/],
    ["experiment.capping_percentile", { experiment: definition({ cappingPercentile: 0.5 }) }, /^experiment\.capping_percentile: must be in \[0\.9, 1\)/],
  ])("refuses a bad %s with INVALID_ARGUMENT naming it", async (_field, over, detail) => {
    const req = { experimentId: `bad-${randomUUID().slice(0, 8)}`, experiment: definition(), ...over };
    await expectStatus(c.createExperiment(req), Status.INVALID_ARGUMENT, detail);
    if (req.experimentId !== "" && /^[a-z0-9]/.test(req.experimentId)) await expectStatus(c.getExperiment({ name: req.experimentId }), Status.NOT_FOUND, /does not exist/);
  });

  it("refuses a second experiment with a key in use: ALREADY_EXISTS", async () => {
    await c.createExperiment({ experimentId: "taken", experiment: definition() });
    await expectStatus(c.createExperiment({ experimentId: "taken", experiment: definition({ displayName: "Other" }) }), Status.ALREADY_EXISTS, /experiments\/taken already exists/);
    expect((await c.getExperiment({ name: "taken" })).experiment?.displayName).toBe("Ranker v2");
  });

  it("lets exactly one of 8 concurrent creates of one key win; the others are ALREADY_EXISTS", async () => {
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => c.createExperiment({ experimentId: "race", experiment: definition({ displayName: `racer ${i}` }) })));
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    expect(won).toHaveLength(1);
    expect(lost.map((r) => Status[(r.reason as ServiceError).code])).toEqual(Array(7).fill("ALREADY_EXISTS"));
    const stored = await c.getExperiment({ name: "race" });
    expect(stored.experiment?.displayName).toBe((won[0] as PromiseFulfilledResult<{ experiment?: { displayName: string } }>).value.experiment?.displayName);
    expect(await h.server.store.db.collection("experiments").countDocuments({ key: "race" })).toBe(1);
  });

  it("keeps malformed documents out at the database: the collection has a JSON-schema validator and a unique key index", async () => {
    const col = h.server.store.db.collection("experiments");
    await expect(col.insertOne({ _id: "raw-bad" as never, key: "raw-bad", display_name: "x", arms: [{ variant: "a", weight: 1 }], control: "a" })).rejects.toThrow(/Document failed validation/);
    const indexes = await col.listIndexes().toArray();
    expect(indexes.find((i) => i.name === "key_unique")).toMatchObject({ key: { key: 1 }, unique: true });
  });
});

describe("list", () => {
  let l: Harness;
  beforeAll(async () => {
    l = await startHarness();
    for (let i = 0; i < 7; i++) await l.client.createExperiment({ experimentId: `exp-${i}`, experiment: definition() });
    for (const i of [1, 3, 5]) await l.client.updateExperiment({ experiment: { name: `experiments/exp-${i}`, status: ExperimentStatus.RUNNING }, updateMask: { paths: ["status"] } });
  });
  afterAll(() => l?.close());

  it("pages through every experiment by key, with a token, and filters by status", async () => {
    const keys: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await l.client.listExperiments({ pageSize: 3, pageToken });
      expect(page.experiments.length).toBeLessThanOrEqual(3);
      for (const e of page.experiments) expect(e.history).toEqual([]);
      keys.push(...page.experiments.map((e) => e.key));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "");
    expect(keys).toEqual(["exp-0", "exp-1", "exp-2", "exp-3", "exp-4", "exp-5", "exp-6"]);
    expect(pages).toBe(3);
    const running = await l.client.listExperiments({ status: ExperimentStatus.RUNNING, pageSize: 2 });
    expect(running.experiments.map((e) => e.key)).toEqual(["exp-1", "exp-3"]);
    const rest = await l.client.listExperiments({ status: ExperimentStatus.RUNNING, pageSize: 2, pageToken: running.nextPageToken });
    expect(rest).toMatchObject({ experiments: [{ key: "exp-5", status: ExperimentStatus.RUNNING }], nextPageToken: "" });
  });

  it("refuses a bad page size or token, and a token of another filter", async () => {
    await expectStatus(l.client.listExperiments({ pageSize: 1001 }), Status.INVALID_ARGUMENT, /^page_size: must be between 1 and 1000/);
    await expectStatus(l.client.listExperiments({ pageToken: "garbage" }), Status.INVALID_ARGUMENT, /^page_token: is not a token this server returned/);
    const first = await l.client.listExperiments({ pageSize: 1 });
    await expectStatus(l.client.listExperiments({ pageSize: 1, pageToken: first.nextPageToken, status: ExperimentStatus.DRAFT }), Status.INVALID_ARGUMENT, /^page_token: was returned for another status filter/);
  });
});

describe("update and lifecycle", () => {
  const create = async (key: string, over: DefFields = {}) => (await c.createExperiment({ experimentId: key, experiment: definition(over) })).experiment!;
  const setStatus = (key: string, status: ExperimentStatus, etag = "") => c.updateExperiment({ experiment: { name: `experiments/${key}`, status, etag }, updateMask: { paths: ["status"] } });

  it("changes only the masked fields, bumps version and etag, and records who changed what", async () => {
    await create("masked");
    const { experiment: e } = await c.updateExperiment(
      { experiment: { name: "experiments/masked", displayName: "Ranker v2 (final)", owner: "ignored, not in the mask", etag: "v1" }, updateMask: { paths: ["display_name"] } },
      { userId: "bob" },
    );
    expect(e).toMatchObject({ displayName: "Ranker v2 (final)", owner: "search-team", version: 2n, etag: "v2" });
    expect(e!.history.at(-1)).toMatchObject({ version: 2n, actor: "bob", action: "update", fields: ["display_name"], summary: "display_name Ranker v2 -> Ranker v2 (final)" });
    // camelCase paths as JSON clients send them are accepted too.
    const again = await c.updateExperiment({ experiment: { key: "masked", minimumDetectableEffect: 0.02 }, updateMask: { paths: ["minimumDetectableEffect"] } });
    expect(again.experiment).toMatchObject({ minimumDetectableEffect: 0.02, version: 3n });
  });

  it("answers a stale etag with ABORTED and changes nothing", async () => {
    await create("stale");
    await c.updateExperiment({ experiment: { name: "experiments/stale", owner: "first", etag: "v1" }, updateMask: { paths: ["owner"] } });
    await expectStatus(c.updateExperiment({ experiment: { name: "experiments/stale", owner: "second", etag: "v1" }, updateMask: { paths: ["owner"] } }), Status.ABORTED, /etag "v1" is not the current "v2"/);
    await expectStatus(c.concludeExperiment({ name: "stale", shippedVariant: "search_v1", etag: "v1" }), Status.ABORTED, /is not the current/);
    expect((await c.getExperiment({ name: "stale" })).experiment).toMatchObject({ owner: "first", version: 2n });
  });

  it("lets exactly one of two concurrent updates with the same etag win; the other is ABORTED", async () => {
    await create("cas");
    const results = await Promise.allSettled(["x", "y", "z"].map((owner) => c.updateExperiment({ experiment: { name: "experiments/cas", owner, etag: "v1" }, updateMask: { paths: ["owner"] } })));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(results.filter((r) => r.status === "rejected").map((r) => Status[((r as PromiseRejectedResult).reason as ServiceError).code])).toEqual(["ABORTED", "ABORTED"]);
    expect((await c.getExperiment({ name: "cas" })).experiment?.version).toBe(2n);
  });

  it("lands concurrent unconditional updates of different fields one after another (none lost)", async () => {
    await create("no-etag");
    const changes = [
      { owner: "o1", path: "owner" },
      { hypothesis: "h1", path: "hypothesis" },
      { displayName: "d1", path: "display_name" },
      { confidence: 0.99, path: "confidence" },
    ];
    await Promise.all(changes.map(({ path, ...value }) => c.updateExperiment({ experiment: { name: "experiments/no-etag", ...value }, updateMask: { paths: [path] } })));
    const e = (await c.getExperiment({ name: "no-etag" })).experiment!;
    expect(e).toMatchObject({ owner: "o1", hypothesis: "h1", displayName: "d1", confidence: 0.99, version: 5n });
    expect(e.history.slice(1).map((h) => h.fields[0]).sort()).toEqual(["confidence", "display_name", "hypothesis", "owner"]);
  });

  it("refuses an empty, unknown or output-only mask path with INVALID_ARGUMENT", async () => {
    await create("masks");
    await expectStatus(c.updateExperiment({ experiment: { name: "experiments/masks" } }), Status.INVALID_ARGUMENT, /^update_mask: is required/);
    await expectStatus(c.updateExperiment({ experiment: { name: "experiments/masks" }, updateMask: { paths: ["colour"] } }), Status.INVALID_ARGUMENT, /^update_mask: "colour" is not an updatable field/);
    await expectStatus(c.updateExperiment({ experiment: { name: "experiments/masks" }, updateMask: { paths: ["version"] } }), Status.INVALID_ARGUMENT, /^update_mask: "version" is not an updatable field/);
    await expectStatus(c.updateExperiment({ experiment: { name: "experiments/masks", coverage: 0 }, updateMask: { paths: ["coverage"] } }), Status.INVALID_ARGUMENT, /^experiment\.coverage: must be in \(0, 1\]/);
    await expectStatus(c.updateExperiment({ experiment: { name: "experiments/none" }, updateMask: { paths: ["owner"] } }), Status.NOT_FOUND, /does not exist/);
  });

  it("walks DRAFT -> RUNNING -> STOPPED -> CONCLUDED, setting the period and the conclusion", async () => {
    await create("walk");
    const t0 = Date.now();
    const running = (await setStatus("walk", ExperimentStatus.RUNNING, "v1")).experiment!;
    expect(running).toMatchObject({ status: ExperimentStatus.RUNNING, version: 2n });
    expect(timestampDate(running.startTime!).getTime()).toBeGreaterThanOrEqual(t0 - 1000);
    expect(running.endTime).toBeUndefined();
    expect(running.history.at(-1)).toMatchObject({ fields: ["status", "start_time"], summary: "status DRAFT -> RUNNING" });
    const stopped = (await setStatus("walk", ExperimentStatus.STOPPED, "v2")).experiment!;
    expect(stopped).toMatchObject({ status: ExperimentStatus.STOPPED, version: 3n });
    expect(timestampDate(stopped.endTime!).getTime()).toBeGreaterThanOrEqual(timestampDate(running.startTime!).getTime());
    const concluded = (await c.concludeExperiment({ name: "experiments/walk", shippedVariant: "search_v2", note: "lift +3%", etag: "v3" }, { userId: "carol" })).experiment!;
    expect(concluded).toMatchObject({ status: ExperimentStatus.CONCLUDED, version: 4n, conclusion: { shippedVariant: "search_v2", note: "lift +3%", concludedBy: "carol" } });
    expect(concluded.history.map((x) => x.action)).toEqual(["create", "update", "update", "conclude"]);
    // A no-op (the status it already has) changes nothing, not even the version... except that CONCLUDED is final.
    await expectStatus(setStatus("walk", ExperimentStatus.STOPPED), Status.FAILED_PRECONDITION, /is CONCLUDED: it cannot change any more/);
    await expectStatus(c.updateExperiment({ experiment: { name: "experiments/walk", owner: "x" }, updateMask: { paths: ["owner"] } }), Status.FAILED_PRECONDITION, /CONCLUDED/);
    await expectStatus(c.concludeExperiment({ name: "walk", shippedVariant: "search_v1" }), Status.FAILED_PRECONDITION, /from CONCLUDED to CONCLUDED/);
  });

  it("refuses every step outside the lifecycle with FAILED_PRECONDITION and keeps the experiment as it was", async () => {
    await create("skip");
    await expectStatus(setStatus("skip", ExperimentStatus.STOPPED), Status.FAILED_PRECONDITION, /cannot go from DRAFT to STOPPED.*from DRAFT the next step is RUNNING/);
    await expectStatus(c.concludeExperiment({ name: "skip", shippedVariant: "search_v1" }), Status.FAILED_PRECONDITION, /cannot go from DRAFT to CONCLUDED/);
    await setStatus("skip", ExperimentStatus.RUNNING);
    await expectStatus(setStatus("skip", ExperimentStatus.DRAFT), Status.FAILED_PRECONDITION, /cannot go from RUNNING to DRAFT/);
    await expectStatus(c.concludeExperiment({ name: "skip", shippedVariant: "search_v1" }), Status.FAILED_PRECONDITION, /cannot go from RUNNING to CONCLUDED.*next step is STOPPED/);
    await setStatus("skip", ExperimentStatus.STOPPED);
    await expectStatus(setStatus("skip", ExperimentStatus.RUNNING), Status.FAILED_PRECONDITION, /cannot go from STOPPED to RUNNING/);
    await expectStatus(setStatus("skip", ExperimentStatus.CONCLUDED), Status.INVALID_ARGUMENT, /^experiment\.status: cannot be set to CONCLUDED by UpdateExperiment: use ConcludeExperiment/);
    await expectStatus(c.concludeExperiment({ name: "skip", shippedVariant: "nope" }), Status.INVALID_ARGUMENT, /^shipped_variant: must be one of the experiment's variants/);
    await expectStatus(c.concludeExperiment({ name: "skip", shippedVariant: "" }), Status.INVALID_ARGUMENT, /^shipped_variant: is required/);
    expect((await c.getExperiment({ name: "skip" })).experiment).toMatchObject({ status: ExperimentStatus.STOPPED, version: 3n });
  });

  it("freezes arms, control and coverage once RUNNING, but not the other settings", async () => {
    await create("frozen");
    // While DRAFT anything may change.
    await c.updateExperiment({ experiment: { name: "experiments/frozen", arms: [{ variant: "search_v1", weight: 1 }, { variant: "search_v2", weight: 3 }] }, updateMask: { paths: ["arms"] } });
    await setStatus("frozen", ExperimentStatus.RUNNING);
    await expectStatus(
      c.updateExperiment({ experiment: { name: "experiments/frozen", arms: [{ variant: "search_v1", weight: 1 }, { variant: "search_v2", weight: 1 }] }, updateMask: { paths: ["arms"] } }),
      Status.FAILED_PRECONDITION,
      /is RUNNING: arms can change only while DRAFT/,
    );
    await expectStatus(c.updateExperiment({ experiment: { name: "experiments/frozen", coverage: 0.5 }, updateMask: { paths: ["coverage"] } }), Status.FAILED_PRECONDITION, /coverage can change only while DRAFT/);
    await expectStatus(c.updateExperiment({ experiment: { name: "experiments/frozen", control: "search_v2" }, updateMask: { paths: ["control"] } }), Status.FAILED_PRECONDITION, /control can change only while DRAFT/);
    const ok = await c.updateExperiment({ experiment: { name: "experiments/frozen", confidence: 0.99, hypothesis: "h2" }, updateMask: { paths: ["confidence", "hypothesis"] } });
    expect(ok.experiment).toMatchObject({ confidence: 0.99, hypothesis: "h2", arms: [{ weight: 1 }, { weight: 3 }] });
    // Setting a frozen field to the value it has is no change.
    const same = await c.updateExperiment({ experiment: { name: "experiments/frozen", control: "search_v1" }, updateMask: { paths: ["control"] } });
    expect(same.experiment?.version).toBe(ok.experiment?.version);
  });
});

describe("access per role", () => {
  const TOKENS = { writer: `w-${randomUUID()}`, reader: `r-${randomUUID()}`, admin: `a-${randomUUID()}` };
  let a: Harness;
  const clients = {} as Record<"writer" | "reader" | "admin" | "none", ClickAnalyticsClient>;
  beforeAll(async () => {
    a = await startHarness({ tokens: [
      { token: TOKENS.writer, role: "writer", name: "experiment-bot" },
      { token: TOKENS.reader, role: "reader", name: "dashboards" },
      { token: TOKENS.admin, role: "admin" },
    ] });
    for (const role of ["writer", "reader", "admin"] as const) clients[role] = createClickAnalyticsClient(a.server.address, { token: TOKENS[role] });
    clients.none = a.client;
  });
  afterAll(async () => {
    for (const role of ["writer", "reader", "admin"] as const) clients[role]?.close();
    await a?.close();
  });

  it("lets writers and admins create, update and conclude; readers get and list; records the token's name as the actor", async () => {
    const created = await clients.writer.createExperiment({ experimentId: "by-writer", experiment: definition() }, { userId: "ignored-when-the-token-has-a-name" });
    expect(created.experiment?.history[0]?.actor).toBe("experiment-bot");
    const byAdmin = await clients.admin.createExperiment({ experimentId: "by-admin", experiment: definition() });
    expect(byAdmin.experiment?.history[0]?.actor).toBe("admin token");
    await expectStatus(clients.reader.createExperiment({ experimentId: "by-reader", experiment: definition() }), Status.PERMISSION_DENIED, /CreateExperiment needs a token with role writer or admin; the presented token has role reader/);
    await expectStatus(clients.reader.updateExperiment({ experiment: { name: "experiments/by-writer", owner: "r" }, updateMask: { paths: ["owner"] } }), Status.PERMISSION_DENIED, /UpdateExperiment needs a token with role writer or admin/);
    await expectStatus(clients.reader.concludeExperiment({ name: "by-writer", shippedVariant: "search_v1" }), Status.PERMISSION_DENIED, /ConcludeExperiment needs a token with role writer or admin/);
    await expect(clients.reader.getExperiment({ name: "by-writer" })).resolves.toMatchObject({ experiment: { key: "by-writer" } });
    await expect(clients.reader.listExperiments({})).resolves.toMatchObject({ experiments: [{ key: "by-admin" }, { key: "by-writer" }] });
    await expect(clients.admin.getExperiment({ name: "by-writer" })).resolves.toBeDefined();
    await expectStatus(clients.writer.getExperiment({ name: "by-writer" }), Status.PERMISSION_DENIED, /GetExperiment needs a token with role reader or admin; the presented token has role writer/);
    await expectStatus(clients.writer.listExperiments({}), Status.PERMISSION_DENIED, /ListExperiments needs a token with role reader or admin/);
    await expectStatus(clients.none.listExperiments({}), Status.UNAUTHENTICATED, /missing `authorization: Bearer <token>`/);
    await clients.writer.updateExperiment({ experiment: { name: "experiments/by-writer", status: ExperimentStatus.RUNNING }, updateMask: { paths: ["status"] } });
    await clients.admin.updateExperiment({ experiment: { name: "experiments/by-writer", status: ExperimentStatus.STOPPED }, updateMask: { paths: ["status"] } });
    const done = await clients.writer.concludeExperiment({ name: "by-writer", shippedVariant: "search_v1", note: "no lift" });
    expect(done.experiment?.conclusion?.concludedBy).toBe("experiment-bot");
    expect((await clients.reader.getExperiment({ name: "by-writer" })).experiment?.history.map((x) => x.actor)).toEqual(["experiment-bot", "experiment-bot", "admin token", "experiment-bot"]);
  });
});
