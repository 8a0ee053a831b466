/** Count-based CTR fields shared by GetCtr (overall and per variant) and GetVariantComparison's variants. */
import { firstClickMetrics, type FirstClickStats } from "../core/first-click.js";
import { ratio } from "../core/metrics.js";
import type { BucketRow, EventTotals } from "../store/click-store.js";
import type { QueryRow } from "../core/top-queries.js";

/** Fields of totals that a reader kept (the same object while the window is unchanged) are made once. */
const ctrFieldsOf = new WeakMap<EventTotals, ReturnType<typeof makeCtrFields>>();

export function ctrFields(t: EventTotals) {
  let fields = ctrFieldsOf.get(t);
  if (fields === undefined) ctrFieldsOf.set(t, (fields = makeCtrFields(t)));
  return fields;
}

function makeCtrFields(t: EventTotals) {
  const searchCtr = ratio(t.searchesWithClicks, t.impressions);
  return {
    ctr: ratio(t.clicks, t.impressions),
    clicks: BigInt(t.clicks),
    impressions: BigInt(t.impressions),
    searchCtr,
    noClickRate: searchCtr === undefined ? undefined : 1 - searchCtr,
    noResultsRate: ratio(t.noResults, t.impressions),
    users: BigInt(t.users),
    searchesWithClicks: BigInt(t.searchesWithClicks),
    noResultsSearches: BigInt(t.noResults),
    firstClick: firstClickFields(t.firstClicks),
    clicksOutsideResults: BigInt(t.clicksOutsideResults),
  };
}

/** FirstClickMetrics (GetCtr, comparison variants, time-series points, watch snapshots). */
export function firstClickFields(s: FirstClickStats) {
  const m = firstClickMetrics(s);
  return {
    searchesWithResults: BigInt(m.searchesWithResults),
    abandonedSearches: BigInt(m.abandoned),
    mrr: m.mrr,
    clickedMrr: m.clickedMrr,
    abandonmentRate: m.abandonmentRate,
    timeToFirstClickP50Ms: m.timeToFirstClickP50Ms,
    timeToFirstClickP90Ms: m.timeToFirstClickP90Ms,
  };
}

/**
 * A query's MRR and abandonment (GetTopQueries): over its searches with results, from their
 * first-click ranks; unset where the stored counts lack them (the row has no positions).
 */
export function queryFirstClicks(q: QueryRow): { mrr?: number | undefined; abandonmentRate?: number | undefined } {
  if (q.positions === undefined) return {};
  const m = firstClickMetrics({ searchesWithResults: q.searches - q.noResults, ranks: q.positions.firstClickRanks, delays: new Map() });
  return { mrr: m.mrr, abandonmentRate: m.abandonmentRate };
}

type PointFields = ReturnType<typeof pointFieldsOf>;
/** By row: a source that keeps a bucket's row between calls (rollup buckets) gets its fields computed once. */
const pointFields = new WeakMap<BucketRow, PointFields>();

function pointFieldsOf(r: BucketRow) {
  return {
    impressions: BigInt(r.impressions),
    clicks: BigInt(r.clicks),
    ctr: ratio(r.clicks, r.impressions),
    searchCtr: ratio(r.searchesWithClicks, r.impressions),
    avgClickRank: ratio(r.rankSum, r.clicks),
    p95ResponseTimeMs: r.p95,
    firstClick: firstClickFields(r.firstClicks),
  };
}

/** A GetTimeSeries point's fields but its start, from a bucket row (read-only, so kept per row). */
export function timeSeriesPointFields(r: BucketRow): PointFields {
  let fields = pointFields.get(r);
  if (fields === undefined) pointFields.set(r, (fields = pointFieldsOf(r)));
  return fields;
}
