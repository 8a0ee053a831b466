/** Metrics broken down by query and by time bucket, computed in MongoDB. */
import type { Document } from "mongodb";
import { emptyFirstClickStats, type FirstClickStats } from "../../core/first-click.js";
import type { BucketUnit } from "../../core/time-buckets.js";
import { rawFirstClicks } from "./first-click-fields.js";
import type { Collections } from "../schema/documents.js";
import type { QueryRow, TopQueriesOrder } from "../../core/top-queries.js";
import { match, timeLimit, type MetricsFilter } from "./metrics-filter.js";
import { num, percentilePickStages, percentilesFromPicks } from "./metrics-queries.js";
import { RESULTS_COUNT_CAP } from "../schema/rollup-documents.js";

const ORDER_FIELD: Record<TopQueriesOrder, string> = { searches: "searches", clicks: "clicks", ctr: "ctr", no_results: "noResults" };

/**
 * Per normalised query: searches, their outcomes and their linked clicks (the summary each
 * search keeps: core/click-attribution.ts) from impressions, and unlinked clicks (no
 * impression_id) under the query they carry, in one $unionWith pipeline grouped by query.
 */
function queryGroupStages(c: Collections, m: Document): Document[] {
  return [
        { $match: m },
        {
          $project: {
            _id: 0,
            q: "$query_normalized",
            i: { $literal: 1 },
            s: { $cond: [{ $eq: ["$clicked", true] }, 1, 0] },
            nr: { $cond: [{ $eq: ["$results_count", 0] }, 1, 0] },
            c: { $ifNull: ["$lk.n", 0] },
            rk: { $ifNull: ["$lk.s", 0] },
            k: { $sum: "$lk.k.n" },
            o: { $ifNull: ["$lk.o", 0] },
          },
        },
        {
          $unionWith: {
            coll: c.clicks.collectionName,
            pipeline: [
              { $match: { ...m, impression_id: { $exists: false } } },
              { $project: { _id: 0, q: "$query_normalized", i: { $literal: 0 }, c: { $literal: 1 }, s: { $literal: 0 }, nr: { $literal: 0 }, rk: "$rank", k: { $literal: 0 }, o: { $literal: 0 } } },
            ],
          },
        },
        { $group: { _id: "$q", searches: { $sum: "$i" }, clicks: { $sum: "$c" }, s: { $sum: "$s" }, noResults: { $sum: "$nr" }, rk: { $sum: "$rk" }, k: { $sum: "$k" }, o: { $sum: "$o" } } },
  ];
}

/** Per query: its searches with results per (capped) results_count, and per first-click rank. */
interface QueryHistograms {
  resultsCounts: Map<number, number>;
  firstClickRanks: Map<number, number>;
}

/**
 * Per query of the searches matching `m` (only `queries`, if given): searches per results_count
 * capped at RESULTS_COUNT_CAP, from 1 (a search without results shows no rank), for COEC; and
 * searches with results per rank of their first click, for MRR and abandonment. A read of its
 * own: grouping the main pipeline by (query, count) as well took the raw top queries ~1.7x the
 * time of the read without (100,000 events, 30 days); this second read, restricted to the rows
 * returned, ~1.3x for 10 rows and ~1.7x for 1,000 (it scans the window's searches again: no index
 * leads with the query).
 */
async function histogramsByQuery(c: Collections, m: Document, budget: Pick<MetricsFilter, "maxTimeMS">, queries?: readonly string[]): Promise<Map<string, QueryHistograms>> {
  const out = new Map<string, QueryHistograms>();
  if (queries?.length === 0) return out;
  const rows = await c.impressions
    .aggregate<{ _id: { q: string; k: number; f?: number | null }; n: number }>(
      [
        { $match: { ...m, results_count: { $gt: 0 }, ...(queries === undefined ? {} : { query_normalized: { $in: [...queries] } }) } },
        { $group: { _id: { q: "$query_normalized", k: { $min: ["$results_count", RESULTS_COUNT_CAP] }, f: "$fc_r" }, n: { $sum: 1 } } },
      ],
      { allowDiskUse: true, ...timeLimit(budget) },
    )
    .toArray();
  const add = (into: Map<number, number>, key: number, n: number) => into.set(key, (into.get(key) ?? 0) + n);
  for (const { _id, n } of rows) {
    let e = out.get(String(_id.q));
    if (!e) out.set(String(_id.q), (e = { resultsCounts: new Map(), firstClickRanks: new Map() }));
    add(e.resultsCounts, Number(_id.k), Number(n));
    if (_id.f !== undefined && _id.f !== null) add(e.firstClickRanks, Number(_id.f), Number(n));
  }
  // By key, as the query tables give them.
  const sorted = (h: Map<number, number>) => new Map([...h].sort((a, b) => a[0] - b[0]));
  for (const e of out.values()) Object.assign(e, { resultsCounts: sorted(e.resultsCounts), firstClickRanks: sorted(e.firstClickRanks) });
  return out;
}

const rowOf = (r: Document, histograms: ReadonlyMap<string, QueryHistograms>): QueryRow => ({
  query: String(r._id),
  searches: Number(r.searches),
  clicks: Number(r.clicks),
  searchesWithClicks: Number(r.s),
  noResults: Number(r.noResults),
  rankSum: Number(r.rk),
  clicksOutsideResults: Number(r.o),
  positions: {
    resultsCounts: histograms.get(String(r._id))?.resultsCounts ?? new Map(),
    shownClicks: Number(r.k),
    firstClickRanks: histograms.get(String(r._id))?.firstClickRanks ?? new Map(),
  },
});

/**
 * The top queries straight from the events, sorted and cut in MongoDB so only `limit` rows leave
 * it; ties are broken by the query text, so pages are stable. The reference the query tables
 * (query-tables.ts) are checked against. Then the searches per results count of those rows.
 */
export async function topQueries(c: Collections, f: MetricsFilter, order: TopQueriesOrder, limit: number): Promise<QueryRow[]> {
  const started = Date.now();
  const m = match(f);
  const rows = await c.impressions
    .aggregate<Document>(
      [
        ...queryGroupStages(c, m),
        // No searches: no CTR, and null sorts after every number in a descending sort.
        { $set: { ctr: { $cond: [{ $gt: ["$searches", 0] }, { $divide: ["$clicks", "$searches"] }, null] } } },
        { $sort: { [ORDER_FIELD[order]]: -1, _id: 1 } },
        { $limit: limit },
      ],
      { allowDiskUse: true, ...timeLimit(f) },
    )
    .toArray();
  // What is left of the deadline after the first read.
  const left = f.maxTimeMS === undefined ? {} : { maxTimeMS: f.maxTimeMS - (Date.now() - started) };
  const histograms = await histogramsByQuery(c, m, left, rows.filter((r) => Number(r.searches) > Number(r.noResults)).map((r) => String(r._id)));
  return rows.map((r) => rowOf(r, histograms));
}

/** Every query's counts over events matching `m` (a time range, a variant): for the edges of a window. */
export async function queryRows(c: Collections, m: Document, budget: Pick<MetricsFilter, "maxTimeMS">): Promise<QueryRow[]> {
  const [rows, histograms] = await Promise.all([
    c.impressions.aggregate<Document>(queryGroupStages(c, m), { allowDiskUse: true, ...timeLimit(budget) }).toArray(),
    histogramsByQuery(c, m, budget),
  ]);
  return rows.map((r) => rowOf(r, histograms));
}

export interface BucketRow {
  impressions: number;
  clicks: number;
  searchesWithClicks: number;
  rankSum: number;
  p95?: number | undefined;
  /** Of the bucket's searches (by their own timestamp). */
  firstClicks: FirstClickStats;
}

/**
 * Per bucket. Hours are numbered arithmetically from the first bucket start (hours are one hour
 * apart in every zone); days use $dateTrunc in the zone, whose local midnights the caller listed.
 */
export async function timeBuckets(c: Collections, f: MetricsFilter, unit: BucketUnit, zone: string, starts: readonly Date[]): Promise<BucketRow[]> {
  const first = starts[0]!;
  const key =
    unit === "hour"
      ? { $floor: { $divide: [{ $subtract: ["$timestamp", first] }, 3_600_000] } }
      : { $dateTrunc: { date: "$timestamp", unit: "day", timezone: zone } };
  const indexOf = new Map(starts.map((s, i) => [s.getTime(), i]));
  const slot = (k: unknown): number | undefined => (unit === "hour" ? (Number(k) < starts.length ? Number(k) : undefined) : k instanceof Date ? indexOf.get(k.getTime()) : undefined);
  const m = match(f);
  const [[impressions], clicks, firstClicks] = await Promise.all([
    c.impressions
      .aggregate<{ counts: Document[]; picks: { key: unknown; pos: number; n: number; v: number }[] }>(
        [
          { $match: m },
          { $set: { k: key } },
          {
            $facet: {
              counts: [{ $group: { _id: "$k", n: { $sum: 1 }, s: { $sum: { $cond: [{ $eq: ["$clicked", true] }, 1, 0] } } } }],
              picks: percentilePickStages([0.95], "$k"),
            },
          },
        ],
        { allowDiskUse: true, ...timeLimit(f) },
      )
      .toArray(),
    c.clicks.aggregate<Document>([{ $match: m }, { $group: { _id: key, n: { $sum: 1 }, rk: { $sum: "$rank" } } }], timeLimit(f)).toArray(),
    rawFirstClicks(c, m, key, f),
  ]);
  const rows: BucketRow[] = starts.map(() => ({ impressions: 0, clicks: 0, searchesWithClicks: 0, rankSum: 0, firstClicks: emptyFirstClickStats() }));
  for (const [k, { stats }] of firstClicks) {
    const i = unit === "hour" ? slot(Number(k)) : indexOf.get(new Date(k).getTime());
    if (i !== undefined) rows[i]!.firstClicks = stats;
  }
  for (const r of impressions?.counts ?? []) {
    const i = slot(r._id);
    if (i !== undefined) Object.assign(rows[i]!, { impressions: Number(r.n), searchesWithClicks: Number(r.s) });
  }
  for (const r of clicks) {
    const i = slot(r._id);
    if (i !== undefined) Object.assign(rows[i]!, { clicks: Number(r.n), rankSum: Number(r.rk) });
  }
  const p95 = percentilesFromPicks(impressions?.picks ?? [], [0.95]);
  for (const [k, [v]] of p95) {
    const i = unit === "hour" ? slot(Number(k)) : indexOf.get(new Date(k).getTime());
    if (i !== undefined) rows[i]!.p95 = num(v);
  }
  return rows;
}
