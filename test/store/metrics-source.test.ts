/**
 * Reads of one filter that overlap (a WatchMetrics snapshot asks five at once) share one window
 * read, and a read that starts after it finished sees what was written since.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { timeWindow } from "../../src/core/window.js";
import { fastMetrics } from "../../src/store/metrics-source.js";
import { RollupReader, type WindowAggregates } from "../../src/store/rollups.js";
import type { MetricsFilter } from "../../src/store/metrics-queries.js";
import { startHarness, type Harness } from "../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

/** A real reader that counts its window reads. */
class CountingReader extends RollupReader {
  reads = 0;
  override window(...args: Parameters<RollupReader["window"]>): Promise<WindowAggregates> {
    this.reads++;
    return super.window(...args);
  }
}

const search = (i: number, variant: string) => ({ kind: { case: "impression" as const, value: { eventId: `s${i}`, userId: `u${i % 5}`, query: "q", variant, resultsCount: 3, responseTimeMs: 10 + i } } });

it("shares one window read among the overlapping reads of one filter, and reads afresh afterwards", async () => {
  await h.client.logEvents({ events: Array.from({ length: 12 }, (_, i) => search(i, i % 2 === 0 ? "a" : "b")) });
  await h.client.logClick({ eventId: "c1", impressionId: "s0", userId: "u0", productId: "p", rank: 2, searchQuery: "q", variant: "a", responseTimeMs: 10 });
  const c = h.server.store.collections;
  const reader = new CountingReader(c);
  const metrics = fastMetrics(c, reader);
  const f: MetricsFilter = { window: timeWindow(1) };
  const [totals, ranks, ranksByVariant, latency, latencyByVariant] = await Promise.all([
    metrics.totals(f),
    metrics.ranks(f, false),
    metrics.ranks(f, true),
    metrics.latency(f, [0.5, 0.95], false),
    metrics.latency(f, [0.5, 0.95], true),
  ]);
  expect(reader.reads).toBe(1);
  // The same numbers as separate reads of separate filters.
  const fresh = (): MetricsFilter => ({ window: f.window });
  expect(totals).toEqual(await metrics.totals(fresh()));
  expect(ranks).toEqual(await metrics.ranks(fresh(), false));
  expect(ranksByVariant).toEqual(await metrics.ranks(fresh(), true));
  expect(latency).toEqual(await metrics.latency(fresh(), [0.5, 0.95], false));
  expect(latencyByVariant).toEqual(await metrics.latency(fresh(), [0.5, 0.95], true));
  expect(totals.overall).toMatchObject({ impressions: 12, clicks: 1 });
  expect([...totals.variants.keys()].sort()).toEqual(["a", "b"]);
  expect(reader.reads).toBe(6);

  // Once settled, the same filter object is read again: a later write is seen.
  await h.client.logEvents({ events: [search(100, "b")] });
  expect((await metrics.totals(f)).overall.impressions).toBe(13);
  expect(reader.reads).toBe(7);
});
