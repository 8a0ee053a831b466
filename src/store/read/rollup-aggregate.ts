/**
 * Rollup aggregates: what a window's metrics are computed from (RollupAggregate), the parts they
 * are summed from (decoded rollup documents, stretches of raw events), and how they merge.
 */
import { mergeLatency } from "../../core/sketches.js";
import { addBucketSums, BUCKET_SUM_FIELDS, emptyBucketSums, type BucketSums } from "../../core/user-buckets.js";
import { UserSet, WORD_GROUP } from "../schema/user-ids.js";
import { BUCKET_FIELDS, BUCKET_WIDTH, type RollupDocument } from "../schema/rollup-documents.js";

/** What a time-series bucket sums: the counts and histograms of a RollupAggregate, without its users. */
export interface SeriesAggregate {
  imp: number;
  clk: number;
  swc: number;
  nr: number;
  rkSum: number;
  rtSum: number;
  rtMin?: number | undefined;
  rtMax?: number | undefined;
  ranks: Map<number, number>;
  /** results_count (capped) -> impressions. */
  resultsCounts: Map<number, number>;
  rt: Map<number, number>;
  /** Searches with results: first-click rank -> searches, and time-to-first-click sketch (core/first-click.ts). */
  fr: Map<number, number>;
  ft: Map<number, number>;
  /** Linked clicks at shown ranks below the cap (rank -> clicks) and outside results, by their searches (core/click-attribution.ts). */
  sr: Map<number, number>;
  co: number;
}

/** Everything a window's metrics are computed from, for one variant or merged. */
export interface RollupAggregate extends SeriesAggregate {
  /** Exact distinct users (their numbers, see user-ids.ts). */
  users: UserSet;
  /** Sums per hashed user bucket (see core/user-buckets.ts). */
  buckets: BucketSums;
}

export function emptyAggregate(): RollupAggregate {
  return { ...emptySeriesAggregate(), users: new UserSet(), buckets: emptyBucketSums() };
}

/** Without users and user buckets: a year of hourly buckets would otherwise allocate 12 KB of bucket sums each (100 MB). */
export function emptySeriesAggregate(): SeriesAggregate {
  return { imp: 0, clk: 0, swc: 0, nr: 0, rkSum: 0, rtSum: 0, ranks: new Map(), resultsCounts: new Map(), rt: new Map(), fr: new Map(), ft: new Map(), sr: new Map(), co: 0 };
}

/** The non-zero words of a user bitmap. */
export interface SparseUsers {
  words: Uint32Array;
  bits: Uint32Array;
}

/** The non-empty user buckets: their indexes, and the BUCKET_FIELDS of each, BUCKET_WIDTH numbers a bucket. */
export interface SparseBuckets {
  index: Uint16Array;
  sums: Float64Array;
}

/** One part of a window (a rollup document, or a stretch of raw events), sparse to save memory when cached. */
export interface Part extends Omit<RollupAggregate, "users" | "buckets"> {
  users: SparseUsers;
  buckets: SparseBuckets;
}

/** A decoded rollup document, as cached. */
export interface Decoded extends Part {
  ver: number;
  v: string;
}

const toNumberMap = (o: Record<string, number> | undefined) => new Map(Object.entries(o ?? {}).map(([k, n]) => [Number(k), Number(n)]));

export function sparseUsers(words: Map<number, number>): SparseUsers {
  const sorted = [...words].sort((a, b) => a[0] - b[0]);
  return { words: Uint32Array.from(sorted, ([w]) => w), bits: Uint32Array.from(sorted, ([, bits]) => bits >>> 0) };
}

/** One user bucket's sums, in BUCKET_FIELDS order. */
export type BucketRow = number[];
export const emptyBucketRow = (): BucketRow => new Array<number>(BUCKET_WIDTH).fill(0);

export function sparseBuckets(rows: Map<number, BucketRow>): SparseBuckets {
  const sorted = [...rows].sort((a, b) => a[0] - b[0]);
  return { index: Uint16Array.from(sorted, ([b]) => b), sums: Float64Array.from(sorted.flatMap(([, sums]) => sums)) };
}

export function decode(d: RollupDocument): Decoded {
  const words = new Map<number, number>();
  for (const [hi, group] of Object.entries(d.um ?? {})) for (const [lo, bits] of Object.entries(group)) words.set(Number(hi) * WORD_GROUP + Number(lo), Number(bits));
  const buckets = new Map<number, BucketRow>();
  for (const [b, f] of Object.entries(d.ub ?? {})) buckets.set(Number(b), BUCKET_FIELDS.map((k) => Number(f[k] ?? 0)));
  return {
    ver: Number(d.ver),
    v: d.v,
    imp: Number(d.imp ?? 0),
    clk: Number(d.clk ?? 0),
    swc: Number(d.swc ?? 0),
    nr: Number(d.nr ?? 0),
    rkSum: Number(d.rk_sum ?? 0),
    rtSum: Number(d.rt_sum ?? 0),
    rtMin: d.rt_min === undefined ? undefined : Number(d.rt_min),
    rtMax: d.rt_max === undefined ? undefined : Number(d.rt_max),
    ranks: toNumberMap(d.ranks),
    resultsCounts: toNumberMap(d.rc),
    rt: toNumberMap(d.rt),
    fr: toNumberMap(d.fr),
    ft: toNumberMap(d.ft),
    sr: toNumberMap(d.sr),
    co: Number(d.co ?? 0),
    users: sparseUsers(words),
    buckets: sparseBuckets(buckets),
  };
}

/** Adds a part into an aggregate, its users and user buckets included. */
export function addInto(into: RollupAggregate, d: Part): void {
  addCountsInto(into, d);
  for (let i = 0; i < d.users.words.length; i++) into.users.orWord(d.users.words[i]!, d.users.bits[i]!);
  const columns = BUCKET_SUM_FIELDS.map((field) => into.buckets[field]);
  for (let i = 0; i < d.buckets.index.length; i++) {
    const b = d.buckets.index[i]!;
    for (let k = 0; k < BUCKET_WIDTH; k++) columns[k]![b]! += d.buckets.sums[BUCKET_WIDTH * i + k]!;
  }
}

/** Adds a part's counts and histograms (not its users: time series track none). */
export function addCountsInto(into: SeriesAggregate, d: SeriesAggregate): void {
  into.imp += d.imp;
  into.clk += d.clk;
  into.swc += d.swc;
  into.nr += d.nr;
  into.rkSum += d.rkSum;
  into.rtSum += d.rtSum;
  if (d.rtMin !== undefined) into.rtMin = Math.min(into.rtMin ?? Infinity, d.rtMin);
  if (d.rtMax !== undefined) into.rtMax = Math.max(into.rtMax ?? -Infinity, d.rtMax);
  addCounts(into.ranks, d.ranks);
  addCounts(into.resultsCounts, d.resultsCounts);
  mergeLatency(into.rt, d.rt);
  addCounts(into.fr, d.fr);
  addCounts(into.ft, d.ft);
  addCounts(into.sr, d.sr);
  into.co += d.co;
}

/** Per-key sums; unlike mergeLatency, a count may be briefly negative (a first click moved before its batch was counted). */
function addCounts(into: Map<number, number>, from: ReadonlyMap<number, number>): void {
  from.forEach((n, k) => into.set(k, (into.get(k) ?? 0) + n));
}

/** Adds one aggregate into another (both dense). */
export function mergeAggregate(into: RollupAggregate, from: RollupAggregate): RollupAggregate {
  addCountsInto(into, from);
  into.users.or(from.users);
  addBucketSums(into.buckets, from.buckets);
  return into;
}

export interface WindowAggregates {
  overall: RollupAggregate;
  variants: Map<string, RollupAggregate>;
}
