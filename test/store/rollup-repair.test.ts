/** Rollup work a writer started and never finished is completed once, by whoever repairs first. */
import { afterAll, beforeAll, expect, it } from "vitest";
import { timeWindow } from "../../src/core/window.js";
import { fastMetrics, rawMetrics } from "../../src/store/metrics-source.js";
import { repairRollups, RollupReader } from "../../src/store/rollups.js";
import { startHarness, type Harness } from "../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

it("counts events left marked pending, once, even with concurrent repairers", async () => {
  const c = h.server.store.collections;
  await h.client.logEvents({
    events: Array.from({ length: 20 }, (_, i) => ({ kind: { case: "impression" as const, value: { eventId: `s${i}`, userId: `u${i % 4}`, query: "q", variant: "search_v1", resultsCount: i % 5, responseTimeMs: 10 + i } } })),
  });
  // As if a writer had died after inserting these and before counting them.
  const stamp = `${String(Date.now() - 120_000).padStart(15, "0")}:dead-writer`;
  const now = new Date();
  await c.clicks.insertMany(
    Array.from({ length: 7 }, (_, i) => ({ event_id: `orphan-${i}`, impression_id: `s${i}`, user_id: "u9", product_id: "p", rank: i, search_query: "q", query_normalized: "q", variant: "search_v1", response_time_ms: 10, session_id: null, source: "SEARCH_RESULTS" as const, timestamp: now, pending_rollup: stamp })),
  );
  await c.impressions.updateMany({ impression_id: { $in: ["s0", "s1"] } }, { $set: { clicked: true, click_claim: stamp } });
  const f = { window: timeWindow(1) };
  const fast = fastMetrics(c, new RollupReader(c));
  expect((await fast.totals(f)).overall.clicks).toBe(0);

  const repaired = await Promise.all([repairRollups(c, 60_000), repairRollups(c, 60_000), repairRollups(c, 60_000)]);
  expect(repaired.reduce((a, b) => a + b, 0)).toBe(9); // 7 clicks + 2 clicked impressions, once in all
  const [q, r] = await Promise.all([fast.totals(f), rawMetrics(c).totals(f)]);
  expect({ ...q.overall, users: 0 }).toEqual({ ...r.overall, users: 0 });
  expect(q.overall).toMatchObject({ clicks: 7, searchesWithClicks: 2 });
  expect(await c.clicks.countDocuments({ pending_rollup: { $exists: true } })).toBe(0);
  expect(await c.impressions.countDocuments({ click_claim: { $exists: true } })).toBe(0);
  // nothing left to do, and recent markers (writers still at work) are left alone
  expect(await repairRollups(c, 60_000)).toBe(0);
});
