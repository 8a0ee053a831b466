/**
 * The raw parts of a rollup window: stretches of raw events (a window's partial edge hours)
 * aggregated into the same parts as decoded rollup documents (read/rollup-aggregate.ts).
 */
import { lowerBound } from "../../core/lower-bound.js";
import type { Document } from "mongodb";
import { latencyBucket } from "../../core/sketches.js";
import { userBucket } from "../../core/user-buckets.js";
import { ONE_ROUND_TRIP, type Collections } from "../schema/documents.js";
import { addPushedFirstClicks, firstClickPush } from "./first-click-fields.js";
import { timeLimit, type MetricsFilter } from "./metrics-filter.js";
import { userNumbers, WORD_BITS } from "../schema/user-ids.js";
import { RESULTS_COUNT_CAP } from "../schema/rollup-documents.js";
import { emptyBucketRow, sparseBuckets, sparseUsers, type BucketRow, type Part } from "./rollup-aggregate.js";

/** What is left of a read's deadline (see MetricsFilter.maxTimeMS): every query of the read gets it. */
export type MaxTime = Pick<MetricsFilter, "maxTimeMS" | "deadline">;

/** An edge hour's rows in order of their offset (`_id.k`, in ms from the hour). */
export function byOffset(rows: RawRows): RawRows {
  const key = (r: Document) => Number(r._id.k);
  return { imps: rows.imps.sort((x, y) => key(x) - key(y)), clks: rows.clks.sort((x, y) => key(x) - key(y)), numbers: rows.numbers };
}

/** Where the rows (sorted by offset) with offsets in [a, b) start and end. */
export function rowRange(rows: readonly Document[], a: number, b: number): [number, number] {
  const offset = (i: number) => Number(rows[i]!._id.k);
  return [lowerBound(rows.length, offset, a), lowerBound(rows.length, offset, b)];
}

/** A stretch of a window (at most an hour or so, at its edges) straight from the events, per variant. */
export async function rawPart(c: Collections, from: Date, to: Date, variant: string | undefined, budget: MaxTime): Promise<Map<string, Part>> {
  return (await rawSlices(c, from, to, undefined, variant, budget)).get(0) ?? new Map<string, Part>();
}

/**
 * Events of [from, to) per variant, in slices of `sliceMs` from `from` (slice k holds
 * [from + k * sliceMs, from + (k + 1) * sliceMs)), or in one slice (0) without `sliceMs`.
 */
async function rawSlices(c: Collections, from: Date, to: Date, sliceMs: number | undefined, variant: string | undefined, budget: MaxTime): Promise<Map<number, Map<string, Part>>> {
  return slicesOf(await rawRows(c, from, to, sliceMs, variant, budget));
}

/** What rawSlices reads: per (slice, variant, user) impression sums, per (slice, variant, user, rank) click counts, and the users' numbers. */
export interface RawRows {
  imps: Document[];
  clks: Document[];
  numbers: Map<string, number>;
}

export async function rawRows(c: Collections, from: Date, to: Date, sliceMs: number | undefined, variant: string | undefined, budget: MaxTime): Promise<RawRows> {
  if (from.getTime() >= to.getTime()) return { imps: [], clks: [], numbers: new Map() };
  const m: Document = { timestamp: { $gte: from, $lt: to }, ...(variant === undefined ? {} : { variant }) };
  const slice = sliceMs === undefined ? { $literal: 0 } : { $floor: { $divide: [{ $subtract: ["$timestamp", from] }, sliceMs] } };
  // At most an hour of events by time; left alone, the planner may prefer {variant: 1} and read
  // every event of the variant.
  const byTime = { hint: "timestamp_1", ...timeLimit(budget), ...ONE_ROUND_TRIP };
  const [imps, clks] = await Promise.all([
    c.impressions
      .aggregate([
        { $match: m },
        {
          $group: {
            _id: { k: slice, v: "$variant", u: "$user_id" },
            imp: { $sum: 1 },
            swc: { $sum: { $cond: [{ $eq: ["$clicked", true] }, 1, 0] } },
            nr: { $sum: { $cond: [{ $eq: ["$results_count", 0] }, 1, 0] } },
            rtSum: { $sum: "$response_time_ms" },
            rtMin: { $min: "$response_time_ms" },
            rtMax: { $max: "$response_time_ms" },
            rts: { $push: "$response_time_ms" },
            rcs: { $push: { $min: ["$results_count", RESULTS_COUNT_CAP] } },
            fcs: firstClickPush,
            lks: { $push: { $ifNull: ["$lk.k", []] } },
            co: { $sum: { $ifNull: ["$lk.o", 0] } },
          },
        },
      ], byTime)
      .toArray(),
    c.clicks.aggregate([{ $match: m }, { $group: { _id: { k: slice, v: "$variant", u: "$user_id", r: "$rank" }, n: { $sum: 1 } } }], byTime).toArray(),
  ]);
  const numbers = await userNumbers(c).resolve([...imps, ...clks].map((r) => String(r._id.u)), timeLimit(budget).maxTimeMS);
  return { imps, clks, numbers };
}

/** Parts per slice (the rows' `_id.k`, or `sliceOf` it) and variant, from rawRows' rows. */
export function slicesOf({ imps, clks, numbers }: RawRows, sliceOf = (k: number) => k): Map<number, Map<string, Part>> {
  const out = new Map<number, Map<string, Part>>();
  type Building = { agg: Omit<Part, "users" | "buckets">; words: Map<number, number>; buckets: Map<number, BucketRow> };
  const slices = new Map<number, Map<string, Building>>();
  const entry = (k: number, v: string, user: string) => {
    let parts = slices.get(k);
    if (!parts) slices.set(k, (parts = new Map()));
    let e = parts.get(v);
    if (!e) parts.set(v, (e = { agg: { imp: 0, clk: 0, swc: 0, nr: 0, rkSum: 0, rtSum: 0, ranks: new Map(), resultsCounts: new Map(), rt: new Map(), fr: new Map(), ft: new Map(), sr: new Map(), co: 0 }, words: new Map(), buckets: new Map() }));
    const n = numbers.get(user)!;
    const word = Math.floor(n / WORD_BITS);
    e.words.set(word, ((e.words.get(word) ?? 0) | (1 << n % WORD_BITS)) >>> 0);
    const b = userBucket(user);
    let sums = e.buckets.get(b);
    if (!sums) e.buckets.set(b, (sums = emptyBucketRow()));
    return { e, sums };
  };
  for (const r of imps) {
    const { e, sums } = entry(sliceOf(Number(r._id.k)), String(r._id.v), String(r._id.u));
    const a = e.agg;
    a.imp += Number(r.imp);
    a.swc += Number(r.swc);
    a.nr += Number(r.nr);
    a.rtSum += Number(r.rtSum);
    a.rtMin = Math.min(a.rtMin ?? Infinity, Number(r.rtMin));
    a.rtMax = Math.max(a.rtMax ?? -Infinity, Number(r.rtMax));
    for (const ms of r.rts as number[]) {
      const k = latencyBucket(Number(ms));
      a.rt.set(k, (a.rt.get(k) ?? 0) + 1);
    }
    for (const n of r.rcs as number[]) a.resultsCounts.set(Number(n), (a.resultsCounts.get(Number(n)) ?? 0) + 1);
    const first = addPushedFirstClicks({ searchesWithResults: 0, ranks: a.fr, delays: a.ft }, r.fcs as { r: unknown; d: unknown }[]);
    for (const k of r.lks as { r: unknown; n: unknown }[][]) for (const x of k) a.sr.set(Number(x.r), (a.sr.get(Number(x.r)) ?? 0) + Number(x.n));
    a.co += Number(r.co);
    sums[0]! += Number(r.imp);
    sums[2]! += Number(r.swc);
    sums[3]! += Number(r.nr);
    sums[4]! += first.n;
    sums[5]! += first.reciprocalRanks;
  }
  for (const r of clks) {
    const { e, sums } = entry(sliceOf(Number(r._id.k)), String(r._id.v), String(r._id.u));
    const n = Number(r.n);
    const rank = Number(r._id.r);
    e.agg.clk += n;
    e.agg.rkSum += n * rank;
    e.agg.ranks.set(rank, (e.agg.ranks.get(rank) ?? 0) + n);
    sums[1]! += n;
  }
  for (const [k, parts] of slices) out.set(k, new Map([...parts].map(([v, { agg, words, buckets }]) => [v, { ...agg, users: sparseUsers(words), buckets: sparseBuckets(buckets) }])));
  return out;
}
