import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Status, type ServiceError } from "../../src/client/index.js";
import { startHarness, type Harness } from "../support/harness.js";
import { mulberry32 } from "../support/prng.js";

const DAY = 24 * 3600 * 1000;
let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());
beforeEach(async () => {
  await h.server.store.reset();
});

const ago = (ms: number) => timestampFromDate(new Date(Date.now() - ms));

async function impressions(n: number, over: Record<string, unknown> = {}) {
  for (let i = 0; i < n; i++) {
    await h.client.logImpression({ userId: "u1", query: "q", variant: "search_v1", resultsCount: 10, responseTimeMs: 50, ...over });
  }
}
async function clicks(n: number, over: Record<string, unknown> = {}) {
  for (let i = 0; i < n; i++) {
    await h.client.logClick({ userId: "u1", productId: `p${i}`, rank: 0, searchQuery: "q", variant: "search_v1", responseTimeMs: 50, ...over });
  }
}

function expectWithin(actual: number | undefined, expected: number, relative: number) {
  expect(actual).toBeDefined();
  expect(Math.abs(actual! - expected)).toBeLessThanOrEqual(expected * relative);
}

async function invalid(promise: Promise<unknown>, detail: RegExp) {
  const error = (await promise.catch((e: unknown) => e)) as ServiceError;
  expect(error.code).toBe(Status.INVALID_ARGUMENT);
  expect(error.details).toMatch(detail);
}

describe("GetCtr", () => {
  it("worked example: 40 impressions and 10 clicks give 0.25", async () => {
    await impressions(40);
    await clicks(10);
    const res = await h.client.getCtr({});
    expect(res.ctr).toBe(0.25);
    expect(res.clicks).toBe(10n);
    expect(res.impressions).toBe(40n);
    expect(res.periodDays).toBe(7);
  });

  it("worked example: 20/4 and 20/6 per variant give 0.2 and 0.3", async () => {
    await impressions(20, { variant: "search_v1" });
    await clicks(4, { variant: "search_v1" });
    await impressions(20, { variant: "search_v2" });
    await clicks(6, { variant: "search_v2" });
    const res = await h.client.getCtr({ days: 30 });
    expect(res.ctr).toBe(0.25);
    expect(res.periodDays).toBe(30);
    expect(res.variants.search_v1).toMatchObject({ ctr: 0.2, clicks: 4n, impressions: 20n });
    expect(res.variants.search_v2).toMatchObject({ ctr: 0.3, clicks: 6n, impressions: 20n });
    const only = await h.client.getCtr({ variant: "search_v2" });
    expect(only).toMatchObject({ ctr: 0.3, clicks: 6n, impressions: 20n });
    expect(Object.keys(only.variants)).toEqual(["search_v2"]);
  });

  it("filters by user across clicks and impressions", async () => {
    await impressions(4, { userId: "alice" });
    await clicks(1, { userId: "alice" });
    await impressions(10, { userId: "bob" });
    await clicks(9, { userId: "bob" });
    expect(await h.client.getCtr({ userId: "alice" })).toMatchObject({ ctr: 0.25, clicks: 1n, impressions: 4n });
    expect(await h.client.getCtr({ userId: "bob", variant: "search_v1" })).toMatchObject({ ctr: 0.9 });
  });

  it("can exceed 1, and leaves ctr unset without impressions", async () => {
    await impressions(1, { variant: "a" });
    await clicks(3, { variant: "a" });
    await clicks(2, { variant: "b" });
    const res = await h.client.getCtr({});
    expect(res.ctr).toBe(5);
    expect(res.variants.a!.ctr).toBe(3);
    expect(res.variants.b!.ctr).toBeUndefined();
    expect(res.variants.b!.clicks).toBe(2n);
    expect(res.variants.b!.impressions).toBe(0n);
  });

  it("no data is not zero: an empty window leaves ctr unset with zero counts", async () => {
    const res = await h.client.getCtr({});
    expect(res.ctr).toBeUndefined();
    expect(res.clicks).toBe(0n);
    expect(res.impressions).toBe(0n);
    expect(res.variants).toEqual({});
  });

  it("includes an event 7 days minus a minute old and excludes 7 days plus a minute", async () => {
    await impressions(1, { timestamp: ago(7 * DAY - 60_000) });
    await impressions(1, { timestamp: ago(7 * DAY + 60_000) });
    await clicks(1, { timestamp: ago(7 * DAY - 60_000) });
    await clicks(1, { timestamp: ago(7 * DAY + 60_000) });
    expect(await h.client.getCtr({})).toMatchObject({ clicks: 1n, impressions: 1n });
    expect(await h.client.getCtr({ days: 8 })).toMatchObject({ clicks: 2n, impressions: 2n });
    expect(await h.client.getCtr({ days: 1 })).toMatchObject({ clicks: 0n, impressions: 0n });
  });

  it("validates days and filters", async () => {
    await invalid(h.client.getCtr({ days: -1 }), /days: must be between 1 and 365/);
    await invalid(h.client.getCtr({ days: 366 }), /days: must be between 1 and 365/);
    await invalid(h.client.getCtr({ variant: "no spaces allowed" }), /variant: must match/);
    await invalid(h.client.getCtr({ userId: "x".repeat(300) }), /user_id: must be at most 256/);
    await expect(h.client.getCtr({ days: 365 })).resolves.toMatchObject({ periodDays: 365 });
  });
});

describe("GetRankMetrics", () => {
  it("worked example: ranks 0x5, 1x3, 2x2, 5x1", async () => {
    for (const [rank, n] of [[0, 5], [1, 3], [2, 2], [5, 1]] as const) await clicks(n, { rank });
    const res = await h.client.getRankMetrics({});
    expect(res.clicksByRank).toEqual({ 0: 5n, 1: 3n, 2: 2n, 5: 1n });
    expect(res.minRank).toBe(0);
    expect(res.maxRank).toBe(5);
    expect(res.medianRank).toBe(1);
    expect(res.avgRank).toBeCloseTo(12 / 11, 12);
    expect(res.totalClicks).toBe(11n);
  });

  it("median of an even count averages the two middle values; filters apply", async () => {
    await clicks(1, { rank: 1, variant: "v2" });
    await clicks(1, { rank: 4, variant: "v2" });
    await clicks(1, { rank: 100, variant: "other" });
    const res = await h.client.getRankMetrics({ variant: "v2" });
    expect(res.medianRank).toBe(2.5);
    expect(res.clicksByRank).toEqual({ 1: 1n, 4: 1n });
  });

  it("leaves statistics unset without clicks", async () => {
    const res = await h.client.getRankMetrics({ userId: "nobody" });
    expect(res.avgRank).toBeUndefined();
    expect(res.medianRank).toBeUndefined();
    expect(res.minRank).toBeUndefined();
    expect(res.maxRank).toBeUndefined();
    expect(res.totalClicks).toBe(0n);
    expect(res.clicksByRank).toEqual({});
  });
});

describe("GetResponseTimeMetrics", () => {
  it("is over impressions, with exact linearly interpolated percentiles", async () => {
    const latencies = [12.5, 80, 33.3, 47, 150.25, 21, 99.9, 64, 5.5, 250, 41, 18];
    for (const ms of latencies) await impressions(1, { responseTimeMs: ms });
    await clicks(5, { responseTimeMs: 9999 }); // clicks repeat their search's latency: not counted
    const res = await h.client.getResponseTimeMetrics({});
    expect(res.count).toBe(BigInt(latencies.length));
    expect(res.minResponseTimeMs).toBe(5.5);
    expect(res.maxResponseTimeMs).toBe(250);
    expect(res.avgResponseTimeMs).toBeCloseTo(latencies.reduce((a, b) => a + b) / latencies.length, 10);
    // numpy.percentile(latencies, [50, 95, 99]) -> 44.0, 195.1375, 239.0275: from the latency
    // sketch within 1% for everyone, exactly from a user's own events
    expectWithin(res.p50ResponseTimeMs, 44, 0.01);
    expectWithin(res.p95ResponseTimeMs, 195.1375, 0.01);
    expectWithin(res.p99ResponseTimeMs, 239.0275, 0.01);
    const own = await h.client.getResponseTimeMetrics({ userId: "u1" });
    expect(own.p50ResponseTimeMs).toBeCloseTo(44, 10);
    expect(own.p95ResponseTimeMs).toBeCloseTo(195.1375, 10);
    expect(own.p99ResponseTimeMs).toBeCloseTo(239.0275, 10);
  });

  it("matches the reference percentile on random data with filters", async () => {
    const values: number[] = [];
    const random = mulberry32(20_260_301);
    for (let i = 0; i < 101; i++) {
      const ms = Math.round(random() * 100000) / 100;
      const variant = i % 3 === 0 ? "b" : "a";
      if (variant === "a") values.push(ms);
      await impressions(1, { responseTimeMs: ms, variant });
    }
    const res = await h.client.getResponseTimeMetrics({ variant: "a" });
    expect(res.count).toBe(BigInt(values.length));
    expectWithin(res.p50ResponseTimeMs, percentile(values, 0.5), 0.01);
    expectWithin(res.p95ResponseTimeMs, percentile(values, 0.95), 0.01);
    expectWithin(res.p99ResponseTimeMs, percentile(values, 0.99), 0.01);
    const own = await h.client.getResponseTimeMetrics({ variant: "a", userId: "u1" });
    expect(own.p95ResponseTimeMs).toBeCloseTo(percentile(values, 0.95), 9);
  });

  it("a single sample is every percentile; no samples leave everything unset", async () => {
    await impressions(1, { responseTimeMs: 42, userId: "solo" });
    const one = await h.client.getResponseTimeMetrics({ userId: "solo" });
    expect([one.p50ResponseTimeMs, one.p95ResponseTimeMs, one.p99ResponseTimeMs, one.minResponseTimeMs, one.maxResponseTimeMs]).toEqual([42, 42, 42, 42, 42]);
    const none = await h.client.getResponseTimeMetrics({ userId: "nobody" });
    expect(none.count).toBe(0n);
    expect(none.avgResponseTimeMs ?? none.p50ResponseTimeMs ?? none.p95ResponseTimeMs ?? none.p99ResponseTimeMs ?? none.minResponseTimeMs ?? none.maxResponseTimeMs).toBeUndefined();
  });
});

/** numpy.percentile's default (linear): sort, then interpolate between the two nearest ranks. */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * p;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

describe("GetUserSummary", () => {
  it("summarises one user's window", async () => {
    await impressions(3, { userId: "ann", variant: "search_v2", responseTimeMs: 30 });
    await impressions(1, { userId: "ann", variant: "search_v1", responseTimeMs: 70 });
    await clicks(1, { userId: "ann", variant: "search_v2", rank: 1 });
    await clicks(1, { userId: "ann", variant: "a_click_only_variant", rank: 4 });
    await clicks(1, { userId: "ann", rank: 9, timestamp: ago(10 * DAY) });
    await impressions(5, { userId: "other" });
    const res = await h.client.getUserSummary({ userId: "ann" });
    expect(res).toMatchObject({ userId: "ann", periodDays: 7, totalClicks: 2n, totalImpressions: 4n, ctr: 0.5, avgRankClicked: 2.5, avgResponseTimeMs: 40 });
    expect(res.variantsUsed).toEqual(["a_click_only_variant", "search_v1", "search_v2"]);
    expect((await h.client.getUserSummary({ userId: "ann", days: 30 })).totalClicks).toBe(3n);
  });

  it("a user with no events gets zero counts and unset ratios", async () => {
    const res = await h.client.getUserSummary({ userId: "ghost", days: 3 });
    expect(res).toMatchObject({ userId: "ghost", periodDays: 3, totalClicks: 0n, totalImpressions: 0n, variantsUsed: [] });
    expect(res.ctr).toBeUndefined();
    expect(res.avgRankClicked).toBeUndefined();
    expect(res.avgResponseTimeMs).toBeUndefined();
  });

  it("requires user_id", async () => {
    await invalid(h.client.getUserSummary({}), /user_id: is required/);
    await invalid(h.client.getUserSummary({ userId: "u", days: 400 }), /days/);
  });
});

describe("GetVariantComparison", () => {
  it("compares every variant and names the CTR winner", async () => {
    await impressions(20, { variant: "search_v1", responseTimeMs: 40 });
    await clicks(4, { variant: "search_v1", rank: 3 });
    await impressions(20, { variant: "search_v2", responseTimeMs: 60 });
    await clicks(6, { variant: "search_v2", rank: 1 });
    const res = await h.client.getVariantComparison({ days: 30 });
    expect(res.periodDays).toBe(30);
    expect(res.winnerByCtr).toBe("search_v2");
    expect(res.variants.search_v1).toMatchObject({ ctr: 0.2, avgResponseTimeMs: 40, avgRankClicked: 3, totalClicks: 4n, totalImpressions: 20n });
    expect(res.variants.search_v2).toMatchObject({ ctr: 0.3, avgResponseTimeMs: 60, avgRankClicked: 1, totalClicks: 6n, totalImpressions: 20n });
  });

  it("has no winner on a tie, nor without impressions", async () => {
    await impressions(10, { variant: "x" });
    await clicks(2, { variant: "x" });
    await impressions(5, { variant: "y" });
    await clicks(1, { variant: "y" });
    await clicks(50, { variant: "z" }); // no impressions: not a candidate
    const tie = await h.client.getVariantComparison({});
    expect(tie.winnerByCtr).toBe("");
    expect(tie.variants.z!.ctr).toBeUndefined();
    await h.server.store.reset();
    await clicks(3, { variant: "only_clicks" });
    expect((await h.client.getVariantComparison({})).winnerByCtr).toBe("");
  });
});
