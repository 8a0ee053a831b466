/**
 * Rollups of the v0.1 format (HyperLogLog users, no user bitmap or bucket sums) are rebuilt from
 * the events once at start: afterwards users and per-bucket sums are exact again, and events a
 * writer had not yet counted are left to the repair (so they count once); query tables are left as
 * they were.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { timeWindow } from "../../../src/core/window.js";
import { fastMetrics, rawMetrics } from "../../../src/store/read/metrics-source.js";
import { pendingBatches } from "../../../src/store/rollups/pending-batches.js";
import { pendingMarker } from "../../../src/store/rollups/rollup-delta.js";
import { repairRollups } from "../../../src/store/rollups/repair.js";
import { rollupCollection } from "../../../src/store/schema/rollup-documents.js";
import { RollupReader } from "../../../src/store/read/rollup-reader.js";
import { upgradeRollups } from "../../../src/store/rollups/rollup-upgrade.js";
import { startHarness, type Harness } from "../../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
}, 60_000);
afterAll(() => h.close());

it("rebuilds rollups of the older format once, exact again, leaving uncounted batches to the repair", async () => {
  const c = h.server.store.collections;
  const events = [];
  for (let i = 0; i < 300; i++) {
    const userId = `u${i % 37}`;
    const variant = i % 3 === 0 ? "search_v2" : "search_v1";
    const timestamp = { seconds: BigInt(Math.floor(Date.now() / 1000) - i * 3_000), nanos: 0 };
    events.push({ kind: { case: "impression" as const, value: { impressionId: `s${i}`, userId, query: "q", variant, resultsCount: i % 11 === 0 ? 0 : 5, responseTimeMs: 10 + i, timestamp } } });
    if (i % 4 === 0) events.push({ kind: { case: "click" as const, value: { impressionId: `s${i}`, userId, productId: "p", rank: i % 5, searchQuery: "q", variant, responseTimeMs: 10, timestamp } } });
  }
  await h.client.logEvents({ events });
  // Make them look like v0.1 rollups: registers instead of the bitmap and bucket sums.
  await rollupCollection(c).updateMany({ g: { $in: ["h", "d"] } }, { $unset: { um: "", ub: "" }, $set: { u: { "0": { "1": 3 } } } });
  // A batch its writer stored but had not counted: recorded as pending, its events marked with it.
  const marker = pendingMarker(Date.now() - 3_600_000);
  await c.impressions.updateMany({ impression_id: { $in: ["s5", "s6"] } }, { $set: { b: marker } });
  await pendingBatches(c).insertOne({ _id: marker, clicks: [], impressions: [...(await c.impressions.find({ impression_id: { $in: ["s5", "s6"] } }).toArray()).map((d) => d.event_id!)] });

  const f = { window: timeWindow(30) };
  const fast = () => fastMetrics(c, new RollupReader(c));
  const before = await fast().arms(f);
  expect(before.users).toBe(0); // the old documents say nothing about users

  const topQueries = async () => (await h.client.getTopQueries({ days: 30 })).queries.map((q) => [q.query, q.searches, q.clicks]);
  const tablesBefore = await topQueries();
  expect(tablesBefore).toEqual([["q", 300n, 75n]]);

  expect(await upgradeRollups(c)).toBe(true);
  expect(await upgradeRollups(c)).toBe(false); // once
  // The query tables are not rebuilt, so the rebuild adds nothing to them.
  expect(await topQueries()).toEqual(tablesBefore);
  // The pending batch's two searches are not counted yet; the repair counts them, once.
  const raw = await rawMetrics(c).arms(f);
  const upgraded = await fast().arms(f);
  expect(upgraded.arms.get("search_v1")!.totals.impressions + upgraded.arms.get("search_v2")!.totals.impressions).toBe(298);
  expect(await repairRollups(c, 0)).toBe(2);
  const repaired = await fast().arms(f);
  expect([repaired.users, repaired.usersInSeveralArms]).toEqual([raw.users, raw.usersInSeveralArms]);
  for (const [v, arm] of raw.arms) {
    expect(repaired.arms.get(v)!.buckets, v).toEqual(arm.buckets);
    expect(repaired.arms.get(v)!.totals, v).toEqual(arm.totals);
  }
});
