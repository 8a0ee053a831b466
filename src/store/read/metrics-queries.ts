import type { Document } from "mongodb";
import { interpolatePercentile, rankStats, type RankStats } from "../../core/metrics.js";
import { addFirstClick, emptyFirstClickStats, mergeFirstClickStats, timeToClickMs, type FirstClickStats } from "../../core/first-click.js";
import { batchesOf, type Collections } from "../schema/documents.js";
import { firstClickDelay, hasFirstClick, rawFirstClicks, withResultsSum } from "./first-click-fields.js";
import { match, timeLimit, type MetricsFilter } from "./metrics-filter.js";

export interface ResponseTimeStats {
  count: number;
  avg?: number | undefined;
  min?: number | undefined;
  max?: number | undefined;
  p50?: number | undefined;
  p95?: number | undefined;
  p99?: number | undefined;
}

export interface UserActivity {
  clicks: number;
  impressions: number;
  avgRankClicked?: number | undefined;
  avgResponseTimeMs?: number | undefined;
  variantsUsed: string[];
}

export const REPORTED_PERCENTILES = [0.5, 0.95, 0.99] as const;

/** null from $avg/$min over no documents becomes undefined ("no data"). */
export function num(value: unknown): number | undefined {
  return value === null || value === undefined ? undefined : Number(value);
}

/** Exact rank statistics: MongoDB reduces clicks to a rank histogram, which is small. */
export async function rankMetrics(c: Collections, f: MetricsFilter): Promise<RankStats> {
  return (await rankHistograms(c, f, false)).get("") ?? rankStats([]);
}

/**
 * Stages that keep, per partition, only the impressions at the sorted positions linear
 * interpolation needs for each percentile in `ps` ({pos, v, key} documents; at most two per
 * percentile and partition). One sort numbers the values; the values themselves stay in MongoDB.
 */
export function percentilePickStages(ps: readonly number[], partitionBy: unknown): Document[] {
  const positionTests = ps.flatMap((p) => {
    const h = { $multiply: [{ $subtract: ["$n", 1] }, p] };
    return [{ $eq: ["$pos", { $floor: h }] }, { $eq: ["$pos", { $ceil: h }] }];
  });
  return [
    {
      $setWindowFields: {
        ...(partitionBy === null ? {} : { partitionBy }),
        sortBy: { response_time_ms: 1 },
        output: { pos: { $documentNumber: {} }, n: { $count: {}, window: { documents: ["unbounded", "unbounded"] } } },
      },
    },
    { $set: { pos: { $subtract: ["$pos", 1] } } },
    { $match: { $expr: { $or: positionTests } } },
    { $project: { _id: 0, key: partitionBy === null ? null : partitionBy, pos: 1, n: 1, v: "$response_time_ms" } },
  ];
}

/** Exact percentiles per partition key from picked positions. */
export function percentilesFromPicks(picks: readonly { key: unknown; pos: number; n: number; v: number }[], ps: readonly number[]): Map<string, (number | undefined)[]> {
  const byKey = new Map<string, { n: number; values: Map<number, number> }>();
  for (const p of picks) {
    const key = p.key instanceof Date ? p.key.toISOString() : String(p.key ?? "");
    let entry = byKey.get(key);
    if (!entry) byKey.set(key, (entry = { n: Number(p.n), values: new Map() }));
    entry.values.set(Number(p.pos), Number(p.v));
  }
  const out = new Map<string, (number | undefined)[]>();
  for (const [key, { n, values }] of byKey) {
    out.set(
      key,
      ps.map((p) =>
        interpolatePercentile(n, p, (pos) => {
          const v = values.get(pos);
          if (v === undefined) throw new Error(`percentile position ${pos} of ${n} missing from aggregation`);
          return v;
        }),
      ),
    );
  }
  return out;
}

/** Latency percentiles over impressions, overall (key "") or per variant. */
export async function latencyPercentiles(c: Collections, f: MetricsFilter, ps: readonly number[], perVariant: boolean): Promise<Map<string, (number | undefined)[]>> {
  const picks = await c.impressions
    .aggregate<{ key: unknown; pos: number; n: number; v: number }>([{ $match: match(f) }, ...percentilePickStages(ps, perVariant ? "$variant" : null)], { allowDiskUse: true, ...timeLimit(f) })
    .toArray();
  return percentilesFromPicks(picks, ps);
}

/** Latency over impressions: count, mean, extremes and exact p50/p95/p99. */
export async function responseTimeStats(c: Collections, f: MetricsFilter): Promise<ResponseTimeStats> {
  const [[stats], percentiles] = await Promise.all([
    c.impressions
      .aggregate([
        { $match: match(f) },
        { $group: { _id: null, count: { $sum: 1 }, avg: { $avg: "$response_time_ms" }, min: { $min: "$response_time_ms" }, max: { $max: "$response_time_ms" } } },
      ], timeLimit(f))
      .toArray(),
    latencyPercentiles(c, f, REPORTED_PERCENTILES, false),
  ]);
  const [p50, p95, p99] = percentiles.get("") ?? [];
  return { count: Number(stats?.count ?? 0), avg: num(stats?.avg), min: num(stats?.min), max: num(stats?.max), p50, p95, p99 };
}

/** Counts behind CTR, search-level CTR, no-results rate and reach, for one group of events. */
export interface EventTotals {
  impressions: number;
  clicks: number;
  /** Impressions with at least one linked click. */
  searchesWithClicks: number;
  /** Impressions that returned no results. */
  noResults: number;
  /** Distinct users with an event. */
  users: number;
  rankSum: number;
  responseTimeSum: number;
  /** First clicks of searches with results: MRR, abandonment, time to first click (core/first-click.ts). */
  firstClicks: FirstClickStats;
  /** Linked clicks of the searches at ranks they did not show (core/click-attribution.ts). */
  clicksOutsideResults: number;
}

export interface TotalsBreakdown {
  overall: EventTotals;
  /** Every variant with at least one event. */
  variants: Map<string, EventTotals>;
}

export const zeroTotals = (): EventTotals => ({ impressions: 0, clicks: 0, searchesWithClicks: 0, noResults: 0, users: 0, rankSum: 0, responseTimeSum: 0, firstClicks: emptyFirstClickStats(), clicksOutsideResults: 0 });

/** Totals overall and per variant straight from the events: of every user, or of the filter's one user. */
/** The sums a one-user read takes from its impressions' rows (the clicks' give c and rk). */
const IMPRESSION_SUMS = ["i", "s", "nr", "rt", "o"] as const;

export async function eventTotals(c: Collections, f: MetricsFilter): Promise<TotalsBreakdown> {
  const m = match(f);
  const sums = { i: { $sum: "$i" }, c: { $sum: "$c" }, s: { $sum: "$s" }, nr: { $sum: "$nr" }, rk: { $sum: "$rk" }, rt: { $sum: "$rt" }, o: { $sum: "$o" } };
  const options = { allowDiskUse: true, ...timeLimit(f) };
  let overallRow: Document | undefined;
  let variantRows: Document[];
  let firstClicks: Map<string, FirstClickStats>;
  if (f.userId !== undefined) {
    // One user's events (from the {user_id, ...} indexes): the impressions' rows by variant and
    // first click (its rank and ms after the search; null for searches without one), the clicks'
    // by variant. No row gathers the user's first clicks into an array: a heavy user's (a bot's
    // ~600,000 in a window) passed the engine's 100 MB limit for one $push and its 16 MB for a
    // document, and the read failed; rows are streamed, at most one per first click. Two
    // aggregations at once: less of the engine's time and CPU than one over both collections
    // through $unionWith, which runs its sub-pipeline after the first.
    const byVariant = new Map<string, Document>();
    const row = (v: unknown) => {
      let r = byVariant.get(String(v));
      if (!r) byVariant.set(String(v), (r = { _id: v, users: 1, i: 0, c: 0, s: 0, nr: 0, rk: 0, rt: 0, o: 0 }));
      return r;
    };
    firstClicks = new Map();
    const impressionRows = async () => {
      const rows = c.impressions.aggregate<{ _id: { k: unknown; r: unknown; d: unknown }; i: number; s: number; nr: number; rt: number; o: number; swr: number }>(
        [
          { $match: m },
          {
            $group: {
              _id: { k: "$variant", r: { $cond: [hasFirstClick, "$fc_r", null] }, d: { $cond: [hasFirstClick, firstClickDelay, null] } },
              i: { $sum: 1 },
              s: { $sum: { $cond: [{ $eq: ["$clicked", true] }, 1, 0] } },
              nr: { $sum: { $cond: [{ $eq: ["$results_count", 0] }, 1, 0] } },
              rt: { $sum: "$response_time_ms" },
              o: { $sum: { $ifNull: ["$lk.o", 0] } },
              swr: withResultsSum,
            },
          },
        ],
        // Rows of ~0.1 KB: ~1 MB a batch (one batch for anyone but a bot; see batchesOf).
        { ...options, ...batchesOf(10_000) },
      );
      for await (const x of rows) {
        const r = row(x._id.k);
        for (const k of IMPRESSION_SUMS) r[k] += Number(x[k]);
        const key = String(x._id.k);
        let stats = firstClicks.get(key);
        if (!stats) firstClicks.set(key, (stats = emptyFirstClickStats()));
        stats.searchesWithResults += Number(x.swr);
        // Every search of a row with a first click had that one: i of them.
        if (x._id.r !== null) addFirstClick(stats, Number(x._id.r), timeToClickMs(0, Number(x._id.d)), Number(x.i));
      }
    };
    const [, clicks] = await Promise.all([impressionRows(), c.clicks.aggregate<{ _id: unknown; c: number; rk: number }>([{ $match: m }, { $group: { _id: "$variant", c: { $sum: 1 }, rk: { $sum: "$rank" } } }], options).toArray()]);
    for (const x of clicks) Object.assign(row(x._id), { c: Number(x.c), rk: Number(x.rk) });
    variantRows = [...byVariant.values()];
    overallRow = variantRows.length === 0 ? undefined : { users: 1 };
    for (const r of variantRows) for (const k of Object.keys(sums)) overallRow![k] = Number(overallRow![k] ?? 0) + Number(r[k]);
  } else {
    // One pass over both collections (impressions, then clicks through $unionWith): per
    // (variant, user) sums first, so that distinct users fall out of the second grouping. Every
    // user's first clicks would be too many to return: the engine sums them, in their own aggregation.
    const regroup = { ...sums, users: { $sum: 1 } };
    const pipeline: Document[] = [
      { $match: m },
      {
        $project: {
          _id: 0,
          u: "$user_id",
          v: "$variant",
          i: { $literal: 1 },
          c: { $literal: 0 },
          s: { $cond: [{ $eq: ["$clicked", true] }, 1, 0] },
          nr: { $cond: [{ $eq: ["$results_count", 0] }, 1, 0] },
          rk: { $literal: 0 },
          rt: "$response_time_ms",
          o: { $ifNull: ["$lk.o", 0] },
        },
      },
      {
        $unionWith: {
          coll: c.clicks.collectionName,
          pipeline: [{ $match: m }, { $project: { _id: 0, u: "$user_id", v: "$variant", i: { $literal: 0 }, c: { $literal: 1 }, s: { $literal: 0 }, nr: { $literal: 0 }, rk: "$rank", rt: { $literal: 0 }, o: { $literal: 0 } } }],
        },
      },
      { $group: { _id: { v: "$v", u: "$u" }, ...sums } },
    ];
    const facet = { $facet: { variants: [{ $group: { _id: "$_id.v", ...regroup } }], overall: [{ $group: { _id: "$_id.u", ...sums } }, { $group: { _id: null, ...regroup } }] } };
    const [[result], separate] = await Promise.all([c.impressions.aggregate<{ variants: Document[]; overall: Document[] }>([...pipeline, facet], options).toArray(), rawFirstClicks(c, m, "$variant", f)]);
    overallRow = result?.overall[0];
    variantRows = result?.variants ?? [];
    firstClicks = new Map([...separate].map(([k, v]) => [k, v.stats]));
  }
  const totals = (d: Document | undefined): EventTotals =>
    d === undefined
      ? zeroTotals()
      : {
          impressions: Number(d.i),
          clicks: Number(d.c),
          searchesWithClicks: Number(d.s),
          noResults: Number(d.nr),
          users: Number(d.users),
          rankSum: Number(d.rk),
          responseTimeSum: Number(d.rt),
          firstClicks: firstClicks.get(String(d._id)) ?? emptyFirstClickStats(),
          clicksOutsideResults: Number(d.o),
        };
  const overall = totals(overallRow);
  overall.firstClicks = emptyFirstClickStats();
  for (const stats of firstClicks.values()) mergeFirstClickStats(overall.firstClicks, stats);
  return { overall, variants: new Map(variantRows.map((d) => [String(d._id), totals(d)])) };
}

/** Rank histograms of clicks, overall (key "") or per variant. */
export async function rankHistograms(c: Collections, f: MetricsFilter, perVariant: boolean): Promise<Map<string, RankStats>> {
  const rows = await c.clicks
    .aggregate<{ _id: { v: string | null; r: number }; n: number }>([{ $match: match(f) }, { $group: { _id: { v: perVariant ? "$variant" : null, r: "$rank" }, n: { $sum: 1 } } }], timeLimit(f))
    .toArray();
  const byKey = new Map<string, [number, number][]>();
  for (const r of rows) {
    const key = r._id.v ?? "";
    const list = byKey.get(key) ?? [];
    list.push([Number(r._id.r), Number(r.n)]);
    byKey.set(key, list);
  }
  return new Map([...byKey].map(([k, h]) => [k, rankStats(h)]));
}

export async function userActivity(c: Collections, userId: string, f: Pick<MetricsFilter, "window" | "maxTimeMS">): Promise<UserActivity> {
  const filter = match({ window: f.window, userId });
  // Two aggregations at once (see eventTotals' one-user case).
  const summary = (collection: typeof c.clicks | typeof c.impressions, field: string) =>
    collection.aggregate<{ n: number; avg: unknown; variants: string[] }>([{ $match: filter }, { $group: { _id: null, n: { $sum: 1 }, avg: { $avg: field }, variants: { $addToSet: "$variant" } } }], timeLimit(f)).toArray();
  const [[cl], [im]] = await Promise.all([summary(c.clicks, "$rank"), summary(c.impressions, "$response_time_ms")]);
  const variants = new Set<string>([...(cl?.variants ?? []), ...(im?.variants ?? [])]);
  return {
    clicks: Number(cl?.n ?? 0),
    impressions: Number(im?.n ?? 0),
    avgRankClicked: num(cl?.avg),
    avgResponseTimeMs: num(im?.avg),
    variantsUsed: [...variants].sort(),
  };
}

/**
 * Whether any click or impression of the filter (user, variant) has a timestamp in [from, to):
 * when a trailing window's start moves from `from` to `to`, only such events leave it. Two
 * indexed lookups of at most one document each.
 */
export async function anyEventBetween(c: Collections, from: Date, to: Date, f: Omit<MetricsFilter, "window">): Promise<boolean> {
  if (from.getTime() >= to.getTime()) return false;
  const m: Document = { timestamp: { $gte: from, $lt: to } };
  if (f.userId !== undefined) m.user_id = f.userId;
  if (f.variant !== undefined) m.variant = f.variant;
  const options = { projection: { _id: 1 }, hint: "timestamp_1", ...timeLimit(f) };
  const [click, impression] = await Promise.all([c.clicks.findOne(m, options), c.impressions.findOne(m, options)]);
  return click !== null || impression !== null;
}
