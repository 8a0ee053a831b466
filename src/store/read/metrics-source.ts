/**
 * store/read/ (see its README.md): the read path, which starts here (fastMetrics, rawMetrics):
 * window planning, the rollup, query-table, user and interleaving readers, raw aggregations and
 * breakdowns. It imports core/, engine/ and schema/ only, never write/ or rollups/.
 */
/**
 * Where each metric comes from: rollups for whole-population and per-variant windows (their cost
 * follows the window's hours and days), raw events through the {user_id, ...} indexes when a user
 * is named (their cost follows that user's own events). Both give the same numbers — counts, sums,
 * ranks, first-click histograms (MRR, abandonment), distinct users and per-user-bucket sums
 * exactly, except the buckets' reciprocal-rank sums (fractions added in another order: equal to
 * rounding); latency and time-to-first-click percentiles within the sketch's 1% — which
 * test/store/read/rollup-equivalence.test.ts checks on randomised data.
 */
import type { FirstClickStats } from "../../core/first-click.js";
import { rankStats, type RankStats } from "../../core/metrics.js";
import { latencyBucket, latencyQuantiles } from "../../core/sketches.js";
import { emptyBucketSums, userBucket, type BucketSums } from "../../core/user-buckets.js";
import type { BucketUnit } from "../../core/time-buckets.js";
import type { QueryRow, TopQueriesOrder } from "../../core/top-queries.js";
import { timeBuckets, topQueries, type BucketRow } from "./breakdowns.js";
import type { Collections } from "../schema/documents.js";
import { eventTotals, zeroTotals, latencyPercentiles, rankHistograms, REPORTED_PERCENTILES, responseTimeStats, type EventTotals, type ResponseTimeStats, type TotalsBreakdown } from "./metrics-queries.js";
import type { MetricsFilter } from "./metrics-filter.js";
import { rawFirstClicks } from "./first-click-fields.js";
import { QueryTableReader } from "./query-tables.js";
import { RESULTS_COUNT_CAP } from "../schema/rollup-documents.js";
import { windowRanges } from "./window-ranges.js";
import type { RollupAggregate, SeriesAggregate, WindowAggregates } from "./rollup-aggregate.js";
import type { RollupReader } from "./rollup-reader.js";
import { KEEP_EVERYTHING, type RawRetention } from "../schema/retention.js";
import { match, timeLimit } from "./metrics-filter.js";
import { usersInSeveral } from "../schema/user-ids.js";
import { rawUserWindow, UserRollupReader } from "./user-rollups.js";
import { ComposedCache } from "../../core/composed-cache.js";
import type { UserTotals } from "../../core/user-totals.js";

/** One arm of an experiment over a window: its totals, sums per user bucket, per-user totals, and latency histogram. */
export interface ArmData {
  totals: EventTotals;
  buckets: BucketSums;
  /** Every user's exact totals over the window (user-rollups.ts); undefined when they cannot be had (raw events expired). */
  perUser?: UserTotals | undefined;
  /** Latency sketch (bucket key -> impressions, see core/sketches.ts) and exact extremes. */
  latency: { histogram: Map<number, number>; bounds?: { min: number; max: number } | undefined };
  /** Clicks per rank and searches per results_count, for position-debiased CTR. */
  positions: Positions;
}

export interface ArmsBreakdown {
  arms: Map<string, ArmData>;
  /** Distinct users with events in two or more variants of the window. */
  usersInSeveralArms: number;
  /** Distinct users in the window, whatever their variant. */
  users: number;
}

export interface MetricsSource {
  totals(f: MetricsFilter): Promise<TotalsBreakdown>;
  /** Rank statistics overall (key "") or per variant. */
  ranks(f: MetricsFilter, perVariant: boolean): Promise<Map<string, RankStats>>;
  /** Latency percentiles overall (key "") or per variant. */
  latency(f: MetricsFilter, ps: readonly number[], perVariant: boolean): Promise<Map<string, (number | undefined)[]>>;
  responseTimes(f: MetricsFilter): Promise<ResponseTimeStats>;
  /** Per time bucket; `starts` are the buckets' starts in the zone (see core/time-buckets). Rows are read-only (they may be shared between calls). */
  timeSeries(f: MetricsFilter, unit: BucketUnit, zone: string, starts: readonly Date[]): Promise<BucketRow[]>;
  /** The first `limit` queries by `order` (ties by query text). */
  topQueries(f: MetricsFilter, order: TopQueriesOrder, limit: number): Promise<QueryRow[]>;
  /** Per variant, what the A/B statistics need (no user filter). */
  arms(f: MetricsFilter): Promise<ArmsBreakdown>;
  /** Clicks per rank and searches per (capped) results_count, overall (key "") or per variant. */
  positions(f: MetricsFilter, perVariant: boolean): Promise<Map<string, Positions>>;
}

export interface Positions {
  /** Every click per rank, as an event (its own time and variant): where clicks landed. */
  clicksByRank: Map<number, number>;
  /** results_count, capped at RESULTS_COUNT_CAP -> searches. */
  resultsCounts: Map<number, number>;
  /**
   * Linked clicks at a rank their search showed, below RESULTS_COUNT_CAP, per rank, counted with
   * their searches (the search's time and variant): what CTR per rank and COEC count
   * (core/click-attribution.ts).
   */
  linkedClicksByRank: Map<number, number>;
  /** Linked clicks at a rank their search did not show, counted with their searches. */
  clicksOutsideResults: number;
}

const emptyPositions = (): Positions => ({ clicksByRank: new Map(), resultsCounts: new Map(), linkedClicksByRank: new Map(), clicksOutsideResults: 0 });

/** Straight from the events: exact, and what every other source is checked against. */
export function rawMetrics(c: Collections): MetricsSource {
  return {
    totals: (f) => eventTotals(c, f),
    ranks: (f, perVariant) => rankHistograms(c, f, perVariant),
    latency: (f, ps, perVariant) => latencyPercentiles(c, f, ps, perVariant),
    responseTimes: (f) => responseTimeStats(c, f),
    timeSeries: (f, unit, zone, starts) => timeBuckets(c, f, unit, zone, starts),
    topQueries: (f, order, limit) => topQueries(c, f, order, limit),
    arms: (f) => rawArms(c, f),
    positions: (f, perVariant) => rawPositions(c, f, perVariant),
  };
}

async function rawPositions(c: Collections, f: MetricsFilter, perVariant: boolean): Promise<Map<string, Positions>> {
  const key = perVariant ? "$variant" : null;
  const [shown, clicks, linked] = await Promise.all([
    c.impressions
      .aggregate<{ _id: { v: string | null; n: number }; searches: number; o: number }>(
        [{ $match: match(f) }, { $group: { _id: { v: key, n: { $min: ["$results_count", RESULTS_COUNT_CAP] } }, searches: { $sum: 1 }, o: { $sum: { $ifNull: ["$lk.o", 0] } } } }],
        timeLimit(f),
      )
      .toArray(),
    c.clicks.aggregate<{ _id: { v: string | null; r: number }; n: number }>([{ $match: match(f) }, { $group: { _id: { v: key, r: "$rank" }, n: { $sum: 1 } } }], timeLimit(f)).toArray(),
    c.impressions
      .aggregate<{ _id: { v: string | null; r: number }; n: number }>(
        [{ $match: { ...match(f), "lk.k.0": { $exists: true } } }, { $unwind: "$lk.k" }, { $group: { _id: { v: key, r: "$lk.k.r" }, n: { $sum: "$lk.k.n" } } }],
        timeLimit(f),
      )
      .toArray(),
  ]);
  const out = new Map<string, Positions>();
  const entry = (v: string | null) => {
    let p = out.get(v ?? "");
    if (!p) out.set(v ?? "", (p = emptyPositions()));
    return p;
  };
  for (const r of shown) {
    const p = entry(r._id.v);
    p.resultsCounts.set(Number(r._id.n), Number(r.searches));
    p.clicksOutsideResults += Number(r.o);
  }
  for (const r of clicks) entry(r._id.v).clicksByRank.set(Number(r._id.r), Number(r.n));
  for (const r of linked) entry(r._id.v).linkedClicksByRank.set(Number(r._id.r), Number(r.n));
  return out;
}

/** The arms straight from the events: per (variant, user) sums, bucketed here. */
async function rawArms(c: Collections, f: MetricsFilter): Promise<ArmsBreakdown> {
  const m = match(f);
  const [perUser, latencies, firstClicks, users] = await Promise.all([
    c.impressions
      .aggregate<{ _id: { v: string; u: string }; i: number; c: number; s: number; nr: number; rk: number; rt: number }>(
        [
          { $match: m },
          { $project: { _id: 0, u: "$user_id", v: "$variant", i: { $literal: 1 }, c: { $literal: 0 }, s: { $cond: [{ $eq: ["$clicked", true] }, 1, 0] }, nr: { $cond: [{ $eq: ["$results_count", 0] }, 1, 0] }, rk: { $literal: 0 }, rt: "$response_time_ms" } },
          { $unionWith: { coll: c.clicks.collectionName, pipeline: [{ $match: m }, { $project: { _id: 0, u: "$user_id", v: "$variant", i: { $literal: 0 }, c: { $literal: 1 }, s: { $literal: 0 }, nr: { $literal: 0 }, rk: "$rank", rt: { $literal: 0 } } }] } },
          { $group: { _id: { v: "$v", u: "$u" }, i: { $sum: "$i" }, c: { $sum: "$c" }, s: { $sum: "$s" }, nr: { $sum: "$nr" }, rk: { $sum: "$rk" }, rt: { $sum: "$rt" } } },
        ],
        { allowDiskUse: true, ...timeLimit(f) },
      )
      .toArray(),
    c.impressions.aggregate<{ _id: string; rts: number[] }>([{ $match: m }, { $group: { _id: "$variant", rts: { $push: "$response_time_ms" } } }], { allowDiskUse: true, ...timeLimit(f) }).toArray(),
    rawFirstClicks(c, m, "$variant", f),
    rawUserWindow(c, f.window, f.variant, f),
  ]);
  const arms = new Map<string, ArmData>();
  const positions = await rawPositions(c, f, true);
  const variantsOf = new Map<string, number>();
  for (const r of perUser) {
    const v = String(r._id.v);
    let arm = arms.get(v);
    if (!arm) {
      const p = positions.get(v) ?? emptyPositions();
      const first = firstClicks.get(v);
      arms.set(v, (arm = { totals: { ...zeroTotals(), ...(first && { firstClicks: first.stats }), clicksOutsideResults: p.clicksOutsideResults }, buckets: emptyBucketSums(), perUser: users.get(v), latency: { histogram: new Map() }, positions: p }));
      if (first) Object.assign(arm.buckets, { firstClicked: first.firstClicked, reciprocalRanks: first.reciprocalRanks });
    }
    const t = arm.totals;
    t.impressions += Number(r.i);
    t.clicks += Number(r.c);
    t.searchesWithClicks += Number(r.s);
    t.noResults += Number(r.nr);
    t.rankSum += Number(r.rk);
    t.responseTimeSum += Number(r.rt);
    t.users += 1;
    const b = userBucket(String(r._id.u));
    arm.buckets.impressions[b]! += Number(r.i);
    arm.buckets.clicks[b]! += Number(r.c);
    arm.buckets.searchesWithClicks[b]! += Number(r.s);
    arm.buckets.noResults[b]! += Number(r.nr);
    variantsOf.set(String(r._id.u), (variantsOf.get(String(r._id.u)) ?? 0) + 1);
  }
  for (const { _id, rts } of latencies) {
    const arm = arms.get(String(_id));
    if (!arm || rts.length === 0) continue;
    for (const ms of rts) arm.latency.histogram.set(latencyBucket(Number(ms)), (arm.latency.histogram.get(latencyBucket(Number(ms))) ?? 0) + 1);
    arm.latency.bounds = { min: Math.min(...rts.map(Number)), max: Math.max(...rts.map(Number)) };
  }
  return { arms, usersInSeveralArms: [...variantsOf.values()].filter((n) => n > 1).length, users: variantsOf.size };
}

function totalsOf(a: RollupAggregate): EventTotals {
  return {
    impressions: a.imp,
    clicks: a.clk,
    searchesWithClicks: a.swc,
    noResults: a.nr,
    users: a.users.size(),
    rankSum: a.rkSum,
    responseTimeSum: a.rtSum,
    firstClicks: firstClicksOf(a),
    clicksOutsideResults: a.co,
  };
}

/** Zero counts (left where a first click moved away) dropped, so both sources give equal histograms. */
const nonZero = (m: ReadonlyMap<number, number>): Map<number, number> => {
  let zeros = false;
  m.forEach((n) => (zeros ||= n === 0));
  if (!zeros) return new Map(m);
  const out = new Map<number, number>();
  m.forEach((n, k) => n !== 0 && out.set(k, n));
  return out;
};
const firstClicksOf = (a: SeriesAggregate): FirstClickStats => ({ searchesWithResults: a.imp - a.nr, ranks: nonZero(a.fr), delays: nonZero(a.ft) });

const positionsOf = (a: RollupAggregate): Positions => ({ clicksByRank: a.ranks, resultsCounts: a.resultsCounts, linkedClicksByRank: nonZero(a.sr), clicksOutsideResults: a.co });

const boundsOf = (a: SeriesAggregate) => (a.rtMin !== undefined && a.rtMax !== undefined ? { min: a.rtMin, max: a.rtMax } : undefined);

/**
 * Rollups (and query tables) when no user is named, raw events otherwise. Every raw read is first
 * checked against the raw-event retention (retention.ts): a user's events from the window's
 * start, or only the window's partial edge hours when rollups answer the rest.
 */
export function fastMetrics(c: Collections, rollups: RollupReader, queryTables = new QueryTableReader(c), retention: RawRetention = KEEP_EVERYTHING, userRollups = new UserRollupReader(c, retention)): MetricsSource {
  const rawEvents = rawMetrics(c);
  const seriesRows = new WeakMap<SeriesAggregate, BucketRow>();
  const fromStart = (f: MetricsFilter) => retention.require(f.window.start, "events");
  // The raw source, reading from the window's start.
  const raw: MetricsSource = {
    totals: (f) => (fromStart(f), rawEvents.totals(f)),
    ranks: (f, perVariant) => (fromStart(f), rawEvents.ranks(f, perVariant)),
    latency: (f, ps, perVariant) => (fromStart(f), rawEvents.latency(f, ps, perVariant)),
    responseTimes: (f) => (fromStart(f), rawEvents.responseTimes(f)),
    timeSeries: (f, unit, zone, starts) => (fromStart(f), rawEvents.timeSeries(f, unit, zone, starts)),
    topQueries: (f, order, limit) => (fromStart(f), rawEvents.topQueries(f, order, limit)),
    arms: (f) => (fromStart(f), rawEvents.arms(f)),
    positions: (f, perVariant) => (fromStart(f), rawEvents.positions(f, perVariant)),
  };
  // Reads of one filter object that overlap share one window read: a WatchMetrics snapshot asks
  // for totals, ranks and latency (overall and per variant) of the same filter at once, and each
  // would otherwise list the window's rollups and aggregate its raw edge hour again (five times
  // the work of one GetCtr). Only while the read is in flight: a later call reads afresh.
  const inFlight = new WeakMap<MetricsFilter, Promise<WindowAggregates>>();
  const window = (f: MetricsFilter): Promise<WindowAggregates> => {
    const shared = inFlight.get(f);
    if (shared !== undefined) return shared;
    for (const [from] of windowRanges(f.window.start.getTime(), f.window.until?.getTime()).raw) retention.require(new Date(from), "window-edge");
    const read = rollups.window(f.window, f.variant, f).finally(() => inFlight.delete(f));
    inFlight.set(f, read);
    return read;
  };
  const armsOf = new ComposedCache<WindowAggregates, ArmsBreakdown>();
  // Answers made from a window's sums are kept with them: the reader hands out the same sums
  // while nothing in the window changed, so a repeated read computes nothing again (callers read
  // these answers and never change them).
  const answers = new WeakMap<WindowAggregates, Map<string, unknown>>();
  const answerOf = <T>(w: WindowAggregates, key: string, make: () => T): T => {
    let known = answers.get(w);
    if (!known) answers.set(w, (known = new Map()));
    let answer = known.get(key) as T | undefined;
    if (answer === undefined) known.set(key, (answer = make()));
    return answer;
  };
  const pick = (w: WindowAggregates, perVariant: boolean) => (perVariant ? [...w.variants] : w.variants.size > 0 ? [["", w.overall] as const] : []);
  return {
    async totals(f) {
      if (f.userId !== undefined) return raw.totals(f);
      // Distinct users overall are the union of every variant's users (merged so), not the sum.
      const w = await window(f);
      return answerOf(w, "totals", () => ({ overall: totalsOf(w.overall), variants: new Map([...w.variants].map(([v, a]) => [v, totalsOf(a)])) }));
    },
    async ranks(f, perVariant) {
      if (f.userId !== undefined) return raw.ranks(f, perVariant);
      const w = await window(f);
      return answerOf(w, `ranks ${perVariant}`, () => new Map(pick(w, perVariant).filter(([, a]) => a.clk > 0).map(([k, a]) => [k, rankStats(a.ranks)])));
    },
    async latency(f, ps, perVariant) {
      if (f.userId !== undefined) return raw.latency(f, ps, perVariant);
      const w = await window(f);
      return answerOf(w, `latency ${perVariant} ${ps.join()}`, () => new Map(pick(w, perVariant).filter(([, a]) => a.imp > 0).map(([k, a]) => [k, latencyQuantiles(a.rt, ps, boundsOf(a))])));
    },
    async timeSeries(f, unit, zone, starts) {
      // Hourly rollups are UTC hours: they compose the buckets of zones whose offsets are whole
      // hours. A period with an explicit end is read from the events.
      if (f.userId !== undefined || f.window.until !== undefined || starts.some((s) => s.getTime() % 3_600_000 !== 0)) return raw.timeSeries(f, unit, zone, starts);
      // The window's partial first hour comes from raw events.
      if (f.window.start.getTime() % 3_600_000 !== 0) retention.require(f.window.start, "window-edge");
      const buckets = await rollups.buckets(f.window.start, starts, f.variant, f);
      return buckets.map((a) => {
        // A bucket's sum kept by the reader is the same object call after call: so is its row.
        let row = seriesRows.get(a);
        if (row === undefined) {
          row = { impressions: a.imp, clicks: a.clk, searchesWithClicks: a.swc, rankSum: a.rkSum, p95: a.imp === 0 ? undefined : latencyQuantiles(a.rt, [0.95], boundsOf(a))[0], firstClicks: firstClicksOf(a) };
          seriesRows.set(a, row);
        }
        return row;
      });
    },
    async topQueries(f, order, limit) {
      // Query tables answer trailing windows; a period with an explicit end is read from the events.
      const [rows, histogramsFrom] = await Promise.all([
        f.userId !== undefined || f.window.until !== undefined ? raw.topQueries(f, order, limit) : queryTables.top(f, order, limit),
        queryTables.histogramsFrom(f),
      ]);
      // A window reaching back before the tables kept what COEC needs has none, whichever path
      // answered (the events would have it): the answer does not depend on the path.
      return f.window.start.getTime() < histogramsFrom.getTime() ? rows.map((row) => ({ ...row, positions: undefined })) : rows;
    },
    async positions(f, perVariant) {
      if (f.userId !== undefined) return raw.positions(f, perVariant);
      const w = await window(f);
      return answerOf(w, `positions ${perVariant}`, () => new Map(pick(w, perVariant).map(([k, a]) => [k, positionsOf(a)])));
    },
    async arms(f) {
      const [w, users] = await Promise.all([window(f), userRollups.window(f.window, f.variant, f)]);
      // The same window and users (both readers keep their answers for unchanged data) make the same arms.
      const known = armsOf.get(w, [users]);
      if (known !== undefined) return known;
      const arms = new Map<string, ArmData>(
        [...w.variants].map(([v, a]) => [v, { totals: totalsOf(a), buckets: a.buckets, perUser: users?.get(v), latency: { histogram: a.rt, bounds: boundsOf(a) }, positions: positionsOf(a) }]),
      );
      return armsOf.set(w, [users], { arms, usersInSeveralArms: usersInSeveral([...w.variants.values()].map((a) => a.users)), users: w.overall.users.size() });
    },
    async responseTimes(f) {
      if (f.userId !== undefined) return raw.responseTimes(f);
      const w = await window(f);
      return answerOf(w, "response times", () => {
        const a = w.overall;
        if (a.imp === 0) return { count: 0 };
        const [p50, p95, p99] = latencyQuantiles(a.rt, REPORTED_PERCENTILES, boundsOf(a));
        return { count: a.imp, avg: a.rtSum / a.imp, min: a.rtMin, max: a.rtMax, p50, p95, p99 };
      });
    },
  };
}
