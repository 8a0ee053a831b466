/**
 * GetVariantComparison and WatchMetrics for a named experiment: the experiment's settings fill
 * what the request leaves unset (equal to a by-hand request with the same fields), explicit
 * fields override, and the scorecard says what was used, run time, users against the MDE's
 * need, and health.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assign, ExperimentMetric, ExperimentStatus, GuardrailState, Inference, Status, type EventSchema, type GetVariantComparisonResponse, type ServiceError } from "../../src/client/index.js";
import { mulberry32 } from "../support/prng.js";
import { startHarness, type Harness } from "../support/harness.js";

type Event = MessageInitShape<typeof EventSchema>;
const HOUR = 3_600_000;
const USERS = 600;

async function expectStatus(promise: Promise<unknown>, code: Status, detail: RegExp): Promise<void> {
  const error = (await promise.then(
    () => undefined,
    (e: unknown) => e,
  )) as ServiceError | undefined;
  expect(error, "call should have failed").toBeDefined();
  expect([Status[error!.code], error!.details]).toEqual([Status[code], expect.stringMatching(detail)]);
}

/** Searches (and linked clicks) of `users`, each in the arm assign() gives; search_v2 is slower and clicks more. */
function traffic(seed: number, users: string[], arm: (u: string) => string, from: number, span: number): Event[] {
  const random = mulberry32(seed);
  const events: Event[] = [];
  for (const userId of users) {
    const variant = arm(userId);
    const searches = 1 + Math.floor(random() * 5);
    for (let s = 0; s < searches; s++) {
      const t = new Date(from + random() * span);
      const impressionId = `${userId}-s${s}`;
      const resultsCount = random() < 0.05 ? 0 : 10;
      const latency = (variant === "search_v2" ? 300 : 100) * (0.8 + 0.4 * random());
      events.push({ kind: { case: "impression", value: { impressionId, userId, query: `q${s % 7}`, variant, resultsCount, responseTimeMs: latency, timestamp: timestampFromDate(t) } } });
      if (resultsCount > 0 && random() < (variant === "search_v2" ? 0.45 : 0.3)) {
        events.push({ kind: { case: "click", value: { eventId: `${impressionId}-c`, impressionId, userId, productId: "p", rank: Math.floor(random() * 3), searchQuery: `q${s % 7}`, variant, responseTimeMs: latency, timestamp: timestampFromDate(new Date(t.getTime() + 1000)) } } });
      }
    }
  }
  return events;
}

let h: Harness;
const now = Date.now();
const start = new Date(now - 2 * HOUR);
const withoutScorecard = (r: GetVariantComparisonResponse) => ({ ...r, scorecard: undefined });

beforeAll(async () => {
  h = await startHarness();
  const { experiment } = await h.client.createExperiment({
    experimentId: "ranker",
    experiment: {
      displayName: "Ranker v2",
      arms: [
        { variant: "search_v1", weight: 1 },
        { variant: "search_v2", weight: 1 },
      ],
      control: "search_v1",
      startTime: timestampFromDate(start),
      confidence: 0.9,
      sequential: true,
      minImpressions: 50n,
      minUsers: 250n,
      minimumDetectableEffect: 0.05,
      guardrails: [
        { metric: ExperimentMetric.P95_LATENCY, threshold: 0.2 },
        { metric: ExperimentMetric.NO_RESULTS_RATE, threshold: 0.05 },
      ],
    },
  });
  await h.client.createExperiment({ experimentId: "draft", experiment: { displayName: "Draft", arms: [{ variant: "search_v1", weight: 1 }, { variant: "search_v2", weight: 1 }] } });
  const { experiment: started } = await h.client.updateExperiment({ experiment: { name: "experiments/ranker", status: ExperimentStatus.RUNNING }, updateMask: { paths: ["status"] } });
  expect(experiment?.status).toBe(ExperimentStatus.DRAFT);
  const users = Array.from({ length: USERS }, (_, i) => `user-${i}`);
  const arm = (u: string) => assign(started!, u).variant!;
  // Inside the experiment's period, and 40 users' searches 3 hours ago (before it started).
  const early = traffic(2, Array.from({ length: 40 }, (_, i) => `early-${i}`), () => "search_v1", now - 3 * HOUR, 10 * 60_000);
  const events = [...traffic(1, users, arm, now - 90 * 60_000, 80 * 60_000), ...early];
  for (let i = 0; i < events.length; i += 1000) expect((await h.client.logEvents({ events: events.slice(i, i + 1000) })).rejected).toBe(0n);
}, 120_000);
afterAll(() => h?.close());

describe("GetVariantComparison with an experiment", () => {
  it("equals a by-hand GetVariantComparison with the experiment's fields, plus the scorecard", async () => {
    const named = await h.client.getVariantComparison({ experiment: "experiments/ranker" });
    const byHand = await h.client.getVariantComparison({
      startTime: timestampFromDate(start),
      control: "search_v1",
      confidence: 0.9,
      expectedSplit: { search_v1: 1, search_v2: 1 },
      latencyThreshold: 0.2,
      minImpressions: 50n,
      minUsers: 250n,
      inference: Inference.SEQUENTIAL,
    });
    expect(byHand.scorecard).toBeUndefined();
    expect(withoutScorecard(named)).toEqual(withoutScorecard(byHand));
    // The period is the experiment's: the 40 users from before its start are not in it.
    const users = Number(named.variants.search_v1!.users) + Number(named.variants.search_v2!.users);
    expect(users).toBe(USERS);
    expect(timestampDate(named.startTime!).getTime()).toBe(start.getTime());
    expect(named).toMatchObject({ control: "search_v1", confidence: 0.9, inference: Inference.SEQUENTIAL, srmDetected: false });
  });

  it("reports the settings used, run time, users against the MDE's need, and health", async () => {
    const r = await h.client.getVariantComparison({ experiment: "ranker" });
    const s = r.scorecard!;
    expect(s).toMatchObject({
      name: "experiments/ranker",
      status: ExperimentStatus.RUNNING,
      expectedSplit: { search_v1: 1, search_v2: 1 },
      latencyThreshold: 0.2,
      minImpressions: 50n,
      primaryMetric: ExperimentMetric.SEARCH_CTR,
      minimumDetectableEffect: 0.05,
      users: BigInt(USERS),
    });
    const runMs = Number(s.runTime!.seconds) * 1000 + s.runTime!.nanos / 1e6;
    expect(runMs).toBeGreaterThanOrEqual(2 * HOUR);
    expect(runMs).toBeLessThan(2 * HOUR + 5 * 60_000);
    // Users needed: the sample so far scaled by (relative MDE so far / target)^2.
    const mde = r.comparisons[0]!.searchCtr!.relativeMde!;
    expect(mde).toBeGreaterThan(0.05);
    expect(s.usersNeeded).toBe(BigInt(Math.ceil(USERS * (mde / 0.05) ** 2)));
    expect(Number(s.minArmUsers)).toBe(Math.min(Number(r.variants.search_v1!.users), Number(r.variants.search_v2!.users)));
    expect(s.enoughUsers).toBe(Number(s.minArmUsers) >= 250);
    // search_v2 is three times slower: the p95 guardrail (20%) is violated; no-results is within 5 points.
    const byMetric = Object.fromEntries(s.health!.guardrails.map((g) => [ExperimentMetric[g.metric], g]));
    expect(byMetric.P95_LATENCY).toMatchObject({ variant: "search_v2", threshold: 0.2, state: GuardrailState.VIOLATED });
    expect(byMetric.P95_LATENCY!.worsening).toBeGreaterThan(1.5);
    expect(byMetric.NO_RESULTS_RATE).toMatchObject({ variant: "search_v2", threshold: 0.05, state: GuardrailState.OK });
    expect(s.health).toMatchObject({ srmDetected: false, leakDetected: false, healthy: false, problems: ["guardrail p95_latency on search_v2"] });
    expect(s.health!.srmPValue).toBe(r.srmPValue);
  });

  it("lets explicit request fields override the experiment's, and echoes them", async () => {
    const r = await h.client.getVariantComparison({ experiment: "ranker", confidence: 0.8, control: "search_v2", latencyThreshold: 5, inference: Inference.FIXED_HORIZON });
    expect(r).toMatchObject({ confidence: 0.8, control: "search_v2", inference: Inference.FIXED_HORIZON });
    expect(r.scorecard).toMatchObject({ latencyThreshold: 5, minImpressions: 50n });
    // The window too: the last day includes the 40 users from before the start.
    const day = await h.client.getVariantComparison({ experiment: "ranker", days: 1 });
    expect(Number(day.variants.search_v1!.users) + Number(day.variants.search_v2!.users)).toBe(USERS + 40);
    expect(day.periodDays).toBe(1);
    // An expected split of 1:3 against the 1:1 assignment: a sample-ratio mismatch, and unhealthy for it.
    const skewed = await h.client.getVariantComparison({ experiment: "ranker", expectedSplit: { search_v1: 1, search_v2: 3 } });
    expect(skewed.srmDetected).toBe(true);
    expect(skewed.scorecard).toMatchObject({ expectedSplit: { search_v1: 1, search_v2: 3 }, health: { srmDetected: true, healthy: false } });
    expect(skewed.scorecard!.health!.problems).toContain("srm");
  });

  it("refuses an unknown, malformed or DRAFT experiment", async () => {
    await expectStatus(h.client.getVariantComparison({ experiment: "nope" }), Status.NOT_FOUND, /experiments\/nope does not exist/);
    await expectStatus(h.client.getVariantComparison({ experiment: "Not A Key" }), Status.INVALID_ARGUMENT, /^experiment: must be "experiments\/\{key\}"/);
    await expectStatus(h.client.getVariantComparison({ experiment: "draft" }), Status.FAILED_PRECONDITION, /experiments\/draft is DRAFT/);
    await expectStatus(h.client.getVariantComparison({ experiment: "ranker", confidence: 2 }), Status.INVALID_ARGUMENT, /^confidence:/);
    const later = new Date(Date.now() + 3_600_000);
    await h.client.createExperiment({ experimentId: "later", experiment: { displayName: "Later", arms: [{ variant: "search_v1", weight: 1 }, { variant: "search_v2", weight: 1 }], startTime: timestampFromDate(later) } });
    await h.client.updateExperiment({ experiment: { name: "experiments/later", status: ExperimentStatus.RUNNING }, updateMask: { paths: ["status"] } });
    await expectStatus(h.client.getVariantComparison({ experiment: "later" }), Status.FAILED_PRECONDITION, new RegExp(`experiments/later starts at ${later.toISOString()}: its period has not begun`));
  });
});

describe("WatchMetrics with an experiment", () => {
  const first = async (req: Parameters<Harness["client"]["watchMetrics"]>[0]) => {
    for await (const s of h.client.watchMetrics({ intervalSeconds: 1, ...req })) return s;
    throw new Error("no snapshot");
  };

  it("watches the experiment's period unless the request picks a window", async () => {
    const named = await first({ experiment: "experiments/ranker" });
    const byHand = await first({ startTime: timestampFromDate(start) });
    const week = await first({});
    expect(named.overall?.impressions).toBe(byHand.overall?.impressions);
    expect(Object.keys(named.variants).sort()).toEqual(["search_v1", "search_v2"]);
    expect(week.overall!.impressions).toBeGreaterThan(named.overall!.impressions);
    expect((await first({ experiment: "ranker", days: 7 })).overall?.impressions).toBe(week.overall?.impressions);
    await expectStatus(first({ experiment: "draft" }), Status.FAILED_PRECONDITION, /is DRAFT/);
  });
});

describe("experiments running at the same time", () => {
  it("keeps another experiment's variants out of the scorecard", async () => {
    const before = await h.client.getVariantComparison({ experiment: "ranker" });
    await h.client.createExperiment({ experimentId: "other", experiment: { displayName: "Other", arms: [{ variant: "other_a", weight: 1 }, { variant: "other_b", weight: 1 }], startTime: timestampFromDate(start) } });
    await h.client.updateExperiment({ experiment: { name: "experiments/other", status: ExperimentStatus.RUNNING }, updateMask: { paths: ["status"] } });
    const events = traffic(3, Array.from({ length: 50 }, (_, i) => `other-${i}`), (u) => (Number(u.split("-")[1]) % 2 === 0 ? "other_a" : "other_b"), now - 60 * 60_000, 30 * 60_000);
    expect((await h.client.logEvents({ events })).rejected).toBe(0n);
    // By hand, the period now holds variants the split does not name: refused.
    await expectStatus(h.client.getVariantComparison({ startTime: timestampFromDate(start), expectedSplit: { search_v1: 1, search_v2: 1 } }), Status.INVALID_ARGUMENT, /expected_split/);
    const after = await h.client.getVariantComparison({ experiment: "ranker" });
    expect(Object.keys(after.variants).sort()).toEqual(["search_v1", "search_v2"]);
    expect(after.variants).toEqual(before.variants);
    expect(after.comparisons).toEqual(before.comparisons);
    const other = await h.client.getVariantComparison({ experiment: "other" });
    expect(Object.keys(other.variants).sort()).toEqual(["other_a", "other_b"]);
    expect(other.scorecard?.users).toBe(50n);
  });
});
