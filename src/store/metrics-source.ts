/**
 * Where each metric comes from: rollups for whole-population and per-variant windows (their cost
 * follows the window's hours and days), raw events through the {user_id, ...} indexes when a user
 * is named (their cost follows that user's own events). Both give the same numbers — counts, sums,
 * ranks exactly; latency percentiles and distinct users within the sketches' 1% — which
 * test/store/rollup-equivalence.test.ts checks on randomised data.
 */
import { rankStats, type RankStats } from "../core/metrics.js";
import { hllEstimate, latencyQuantiles, mergeHll, emptyHll } from "../core/sketches.js";
import type { BucketUnit } from "../core/time-buckets.js";
import type { QueryRow, TopQueriesOrder } from "../core/top-queries.js";
import { timeBuckets, topQueries, type BucketRow } from "./breakdowns.js";
import type { Collections } from "./documents.js";
import {
  eventTotals,
  latencyPercentiles,
  rankHistograms,
  REPORTED_PERCENTILES,
  responseTimeStats,
  type EventTotals,
  type MetricsFilter,
  type ResponseTimeStats,
  type TotalsBreakdown,
} from "./metrics-queries.js";
import { QueryTableReader } from "./query-tables.js";
import type { RollupAggregate, RollupReader, WindowAggregates } from "./rollups.js";

export interface MetricsSource {
  totals(f: MetricsFilter): Promise<TotalsBreakdown>;
  /** Rank statistics overall (key "") or per variant. */
  ranks(f: MetricsFilter, perVariant: boolean): Promise<Map<string, RankStats>>;
  /** Latency percentiles overall (key "") or per variant. */
  latency(f: MetricsFilter, ps: readonly number[], perVariant: boolean): Promise<Map<string, (number | undefined)[]>>;
  responseTimes(f: MetricsFilter): Promise<ResponseTimeStats>;
  /** Per time bucket; `starts` are the buckets' starts in the zone (see core/time-buckets). */
  timeSeries(f: MetricsFilter, unit: BucketUnit, zone: string, starts: readonly Date[]): Promise<BucketRow[]>;
  /** The first `limit` queries by `order` (ties by query text). */
  topQueries(f: MetricsFilter, order: TopQueriesOrder, limit: number): Promise<QueryRow[]>;
}

/** Straight from the events: exact, and what every other source is checked against. */
export function rawMetrics(c: Collections): MetricsSource {
  return {
    totals: (f) => eventTotals(c, f),
    ranks: (f, perVariant) => rankHistograms(c, f, perVariant),
    latency: (f, ps, perVariant) => latencyPercentiles(c, f, ps, perVariant),
    responseTimes: (f) => responseTimeStats(c, f),
    timeSeries: (f, unit, zone, starts) => timeBuckets(c, f, unit, zone, starts),
    topQueries: (f, order, limit) => topQueries(c, f, order, limit),
  };
}

function totalsOf(a: RollupAggregate): EventTotals {
  return {
    impressions: a.imp,
    clicks: a.clk,
    searchesWithClicks: a.swc,
    noResults: a.nr,
    users: a.imp + a.clk === 0 ? 0 : Math.round(hllEstimate(a.users)),
    rankSum: a.rkSum,
    responseTimeSum: a.rtSum,
  };
}

const boundsOf = (a: RollupAggregate) => (a.rtMin !== undefined && a.rtMax !== undefined ? { min: a.rtMin, max: a.rtMax } : undefined);

/** Rollups (and query tables) when no user is named, raw events otherwise. */
export function fastMetrics(c: Collections, rollups: RollupReader, queryTables = new QueryTableReader(c)): MetricsSource {
  const raw = rawMetrics(c);
  const window = (f: MetricsFilter): Promise<WindowAggregates> => rollups.window(f.window, f.variant, f);
  const pick = (w: WindowAggregates, perVariant: boolean) => (perVariant ? [...w.variants] : w.variants.size > 0 ? [["", w.overall] as const] : []);
  return {
    async totals(f) {
      if (f.userId !== undefined) return raw.totals(f);
      const w = await window(f);
      // Distinct users overall: the union of every variant's users, not the sum.
      const all = emptyHll();
      for (const v of w.variants.values()) mergeHll(all, v.users);
      return { overall: { ...totalsOf(w.overall), users: w.overall.imp + w.overall.clk === 0 ? 0 : Math.round(hllEstimate(all)) }, variants: new Map([...w.variants].map(([v, a]) => [v, totalsOf(a)])) };
    },
    async ranks(f, perVariant) {
      if (f.userId !== undefined) return raw.ranks(f, perVariant);
      const w = await window(f);
      return new Map(pick(w, perVariant).filter(([, a]) => a.clk > 0).map(([k, a]) => [k, rankStats(a.ranks)]));
    },
    async latency(f, ps, perVariant) {
      if (f.userId !== undefined) return raw.latency(f, ps, perVariant);
      const w = await window(f);
      return new Map(pick(w, perVariant).filter(([, a]) => a.imp > 0).map(([k, a]) => [k, latencyQuantiles(a.rt, ps, boundsOf(a))]));
    },
    async timeSeries(f, unit, zone, starts) {
      // Hourly rollups are UTC hours: they compose the buckets of zones whose offsets are whole hours.
      if (f.userId !== undefined || starts.some((s) => s.getTime() % 3_600_000 !== 0)) return raw.timeSeries(f, unit, zone, starts);
      const buckets = await rollups.buckets(f.window.start, starts, f.variant, f);
      return buckets.map((a) => ({
        impressions: a.imp,
        clicks: a.clk,
        searchesWithClicks: a.swc,
        rankSum: a.rkSum,
        p95: a.imp === 0 ? undefined : latencyQuantiles(a.rt, [0.95], boundsOf(a))[0],
      }));
    },
    topQueries(f, order, limit) {
      return f.userId !== undefined ? raw.topQueries(f, order, limit) : queryTables.top(f, order, limit);
    },
    async responseTimes(f) {
      if (f.userId !== undefined) return raw.responseTimes(f);
      const a = (await window(f)).overall;
      if (a.imp === 0) return { count: 0 };
      const [p50, p95, p99] = latencyQuantiles(a.rt, REPORTED_PERCENTILES, boundsOf(a));
      return { count: a.imp, avg: a.rtSum / a.imp, min: a.rtMin, max: a.rtMax, p50, p95, p99 };
    },
  };
}
