/**
 * Reading first clicks (core/first-click.ts) straight from stored impressions: their `fc_t` and
 * `fc_r` fields, which the writer keeps to the earliest linked click and the rollups count
 * (rollups/rollup-delta.ts). The raw edges of a window, and raw-event reads, use these two pieces; so both
 * paths count the same searches.
 */
import type { Document } from "mongodb";
import { addFirstClick, emptyFirstClickStats, reciprocalRank, timeToClickMs, type FirstClickStats } from "../../core/first-click.js";
import { USER_BUCKETS, userBucket } from "../../core/user-buckets.js";
import { batchesOf, type Collections } from "../schema/documents.js";
import { timeLimit, type MetricsFilter } from "./metrics-filter.js";

/** $group accumulator: searches with results. */
export const withResultsSum = { $sum: { $cond: [{ $gt: ["$results_count", 0] }, 1, 0] } };

/** Whether a search has results and a first click (an aggregation expression). */
export const hasFirstClick = { $and: [{ $gt: ["$results_count", 0] }, { $ne: [{ $type: "$fc_t" }, "missing"] }] };

/** A search's time to its first click in ms (an aggregation expression; meaningful where hasFirstClick). */
export const firstClickDelay = { $subtract: ["$fc_t", "$timestamp"] };

/** $group accumulator: per search with results and a first click, {r: its rank, d: click time - search time in ms}. */
export const firstClickPush = { $push: { $cond: [hasFirstClick, { r: "$fc_r", d: firstClickDelay }, "$$REMOVE"] } };

/** Adds what firstClickPush gathered into `stats`; returns how many and the sum of their reciprocal ranks (for user buckets). */
export function addPushedFirstClicks(stats: FirstClickStats, pushed: readonly { r: unknown; d: unknown }[]): { n: number; reciprocalRanks: number } {
  let reciprocalRanks = 0;
  for (const { r, d } of pushed) {
    addFirstClick(stats, Number(r), timeToClickMs(0, Number(d)));
    reciprocalRanks += reciprocalRank(Number(r));
  }
  return { n: pushed.length, reciprocalRanks };
}

/** One group's first clicks, with the per-user-bucket pieces the comparison needs. */
export interface RawFirstClicks {
  stats: FirstClickStats;
  /** Per user bucket: searches with results and a first click, and their reciprocal ranks' sum. */
  firstClicked: Float64Array;
  reciprocalRanks: Float64Array;
}

/** Rows of a `$group` by {k: key, u: user} with withResultsSum as `swr` and firstClickPush as `fcs`. */
type FirstClickRow = { _id: { k: unknown; u: unknown }; swr: number; fcs: { r: unknown; d: unknown }[] };

/**
 * First clicks of the impressions matching `m`, per value of the `$group` key expression `key`
 * (stringified; null is ""). A row per (key, user) carries every first click of that user's
 * searches: a month at 3M events is ~300,000 rows and ~400,000 first clicks, so the rows are
 * taken as the driver decodes them, in small batches, never gathered (gathered, or in the
 * engine's 16 MB batches, which the driver holds parsed at ~5x their size, they ran the server
 * out of its 256 MB heap).
 */
export async function rawFirstClicks(c: Collections, m: Document, key: unknown, budget: Pick<MetricsFilter, "maxTimeMS">): Promise<Map<string, RawFirstClicks>> {
  const out = new Map<string, RawFirstClicks>();
  const rows = c.impressions.aggregate<FirstClickRow>([{ $match: m }, { $group: { _id: { k: key, u: "$user_id" }, swr: withResultsSum, fcs: firstClickPush } }], {
    allowDiskUse: true,
    // ~1,000 rows a batch (a row is ~0.2 KB and more for a busy user): see batchesOf.
    ...batchesOf(1_000),
    ...timeLimit(budget),
  });
  for await (const row of rows) addFirstClickRow(out, row);
  return out;
}

/** Adds one per-(key, user) row into `out`. */
function addFirstClickRow(out: Map<string, RawFirstClicks>, r: FirstClickRow): void {
  const k = r._id.k instanceof Date ? r._id.k.toISOString() : String(r._id.k ?? "");
  let e = out.get(k);
  if (!e) out.set(k, (e = { stats: emptyFirstClickStats(), firstClicked: new Float64Array(USER_BUCKETS), reciprocalRanks: new Float64Array(USER_BUCKETS) }));
  e.stats.searchesWithResults += Number(r.swr);
  const { n, reciprocalRanks } = addPushedFirstClicks(e.stats, r.fcs);
  const b = userBucket(String(r._id.u));
  e.firstClicked[b]! += n;
  e.reciprocalRanks[b]! += reciprocalRanks;
}
