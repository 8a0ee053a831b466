/**
 * Exact per-user totals of an arm over a window, and what the comparison does with them before
 * any test (issue 21): heavy users are capped (winsorized) and, when asked, bots are left out.
 *
 * Why: search traffic has a handful of users (power users, scrapers, bots) who make thousands of
 * searches. A ratio metric over users is a weighted mean with each user's searches as weight, so
 * three such users can hold a quarter of an arm's searches; the normal approximation of the delta
 * method then fails (the variance estimate is itself dominated by those users) and A/A tests fire
 * too often, while the variance they add blinds the test to realistic effects. Statsig and Eppo
 * winsorize per-user metric values by default for this reason (Statsig at the 99.9th percentile),
 * and filter bots; Kohavi, Tang, Xu, "Trustworthy Online Controlled Experiments" (2020), ch. 3
 * and 21.
 *
 * Capping (winsorization), on by default at DEFAULT_CAP_PERCENTILE: for each ratio metric, every
 * user's numerator total and denominator total are each lowered to that percentile of the same
 * total over the users of every arm of the comparison pooled (one cap for all arms, so A/A arms
 * stay exchangeable; GrowthBook computes its percentile caps over all variations the same way).
 * The percentile is numpy's default ("linear": the value at position q (n - 1) of the sorted
 * values, interpolated), pinned against numpy in test/core/user-capping.test.ts. A user counts as
 * capped for a metric when either total was above its cap. Because the numerator never exceeds
 * the denominator user by user for the proportions (searches with a click, no-result searches,
 * abandoned searches, reciprocal ranks <= searches with results), the same holds for the order
 * statistics and the caps, so a capped proportion stays in [0, 1].
 * The metric the tests are about is then the capped one: sum of capped numerators / sum of
 * capped denominators, and its interval covers that (test/core/calibration.test.ts).
 *
 * Bot rule (off by default): a user with more than `botSearchesPerDay` searches in some UTC day of
 * the window is left out of every ratio metric and of the caps' percentiles (counted and shown);
 * still counted in the sample-ratio check (they were assigned) and in the latency guardrail (their
 * searches were served). A treatment that makes humans search that much would hide its own
 * effect, so the threshold should sit far above any human's day (the default when enabled by the
 * CLI is 1,000).
 */
import { InvalidArgumentError } from "./errors.js";

/**
 * Default percentile of the caps. 99.9 (Statsig's) is too high for experiments of thousands of
 * users: with 0.1% heavy users, the 99.9th percentile of 6,000 users is one of the heavy users
 * themselves, and on the heavy-user shape of issue 21 A/A false positives stayed at 6.3-6.4% (3,000
 * simulated experiments); at 99.5 they were 4.9% and at 99 4.7%, while 99 also gave the most power
 * on the older Pareto shape (relative MDE 10.7% against 12.8% uncapped). docs/statistics.md.
 */
export const DEFAULT_CAP_PERCENTILE = 0.99;
/** Caps below this percentile would cut into ordinary users; 1 turns capping off. */
export const MIN_CAP_PERCENTILE = 0.9;

/** One arm's per-user totals over the window; every column has one entry per user, in the same order. */
export interface UserTotals {
  /** Who each entry is (user numbers, or any ids unique within the arm): pairs a user's window with the pre-period (CUPED). */
  ids: ArrayLike<number>;
  impressions: ArrayLike<number>;
  clicks: ArrayLike<number>;
  searchesWithClicks: ArrayLike<number>;
  noResults: ArrayLike<number>;
  /** Searches with results and a first click, and the sum of their reciprocal ranks (first-click.ts). */
  firstClicked: ArrayLike<number>;
  reciprocalRanks: ArrayLike<number>;
  /** The most searches the user made in one UTC day of the window (the bot rule); absent: the rule cannot apply. */
  maxDaySearches?: ArrayLike<number> | undefined;
  /**
   * Per user, how many of its searches had a latency below `ms` (log-linearly interpolated within
   * the stored coarse latency buckets, see COARSE_LATENCY_STEPS): what the user-level latency
   * interval needs (latency-guardrail.ts). Absent: searches are treated as independent.
   */
  latencyBelow?: ((ms: number) => Float64Array) | undefined;
}

export type UserColumn = "impressions" | "clicks" | "searchesWithClicks" | "noResults" | "firstClicked" | "reciprocalRanks";

/** Coarse latency buckets per doubling kept per user: bucket k holds latencies in [2^(k/8), 2^((k+1)/8)) ms (9% wide). */
export const COARSE_LATENCY_STEPS = 8;
/** Lowest coarse bucket: 0 ms and anything below 2^-8 ms fall in it. */
export const COARSE_LATENCY_MIN = -64;

/** The coarse latency bucket of a latency in ms. */
export function coarseLatencyBucket(ms: number): number {
  if (!(ms > 0)) return COARSE_LATENCY_MIN;
  return Math.max(COARSE_LATENCY_MIN, Math.floor(Math.log2(ms) * COARSE_LATENCY_STEPS));
}

/**
 * The share of a coarse bucket's searches counted below `ms`: 0 when the bucket starts at or above
 * it, 1 when it ends at or below it, else log-linear within the bucket.
 */
export function coarseShareBelow(bucket: number, ms: number): number {
  if (!(ms > 0)) return 0;
  const position = Math.log2(ms) * COARSE_LATENCY_STEPS - bucket;
  if (bucket === COARSE_LATENCY_MIN) return position >= 1 ? 1 : 0.5;
  return position <= 0 ? 0 : position >= 1 ? 1 : position;
}

/** Validated capping settings. */
export interface CappingSettings {
  /** In [MIN_CAP_PERCENTILE, 1]; 1 = no capping. */
  capPercentile: number;
  /** 0 = no bot rule. */
  botSearchesPerDay: number;
}

export function cappingSettings(input: { capPercentile?: number | undefined; botSearchesPerDay?: bigint | number | undefined }): CappingSettings {
  const capPercentile = input.capPercentile ?? DEFAULT_CAP_PERCENTILE;
  if (!(capPercentile >= MIN_CAP_PERCENTILE && capPercentile <= 1)) {
    throw new InvalidArgumentError("cap_percentile", `must be between ${MIN_CAP_PERCENTILE} and 1 (1 turns capping off), got ${capPercentile}`);
  }
  const botSearchesPerDay = Number(input.botSearchesPerDay ?? 0);
  if (!Number.isSafeInteger(botSearchesPerDay) || botSearchesPerDay < 0) {
    throw new InvalidArgumentError("bot_searches_per_day", `must be a non-negative integer (0: no bot rule), got ${botSearchesPerDay}`);
  }
  return { capPercentile, botSearchesPerDay };
}

/** The k-th smallest (0-based) of `a`, reordering `a` in place (Hoare's selection, median of three). */
function select(a: Float64Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (hi > lo) {
    const mid = (lo + hi) >>> 1;
    // median of three into a[mid]
    if (a[mid]! < a[lo]!) [a[mid], a[lo]] = [a[lo]!, a[mid]!];
    if (a[hi]! < a[lo]!) [a[hi], a[lo]] = [a[lo]!, a[hi]!];
    if (a[hi]! < a[mid]!) [a[hi], a[mid]] = [a[mid]!, a[hi]!];
    const pivot = a[mid]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const x = a[i]!;
        a[i] = a[j]!;
        a[j] = x;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k]!;
  }
  return a[k]!;
}

/**
 * The q-quantile of `values` as numpy.quantile's default (method "linear"): sorted x, position
 * h = q (n - 1), x[floor h] + (h - floor h) (x[floor h + 1] - x[floor h]). undefined when empty.
 * `values` may be reordered when `scratch` is true (the caller's own copy).
 */
export function percentile(values: ArrayLike<number>, q: number, scratch = false): number | undefined {
  const n = values.length;
  if (n === 0) return undefined;
  const h = q * (n - 1);
  const lo = Math.floor(h);
  const top = n - lo; // order statistics lo .. n-1 are the `top` largest
  if (top <= 64 && top < n) {
    // A cap's percentile is near the top: keep the `top` largest values in a small sorted buffer
    // (one pass, no copy), then read x[lo] and x[lo + 1] from it.
    const buffer = new Float64Array(top).fill(-Infinity);
    for (let i = 0; i < n; i++) {
      const x = values[i]!;
      if (x <= buffer[0]!) continue;
      let j = 0;
      while (j + 1 < top && buffer[j + 1]! < x) {
        buffer[j] = buffer[j + 1]!;
        j++;
      }
      buffer[j] = x;
    }
    const low = buffer[0]!;
    return top >= 2 && h !== lo ? low + (h - lo) * (buffer[1]! - low) : low;
  }
  const a = scratch && values instanceof Float64Array ? values : Float64Array.from(values);
  const low = select(a, lo);
  if (lo + 1 >= n || h === lo) return low;
  // After selecting lo, everything above index lo is >= a[lo]: the next order statistic is their minimum.
  let next = Infinity;
  for (let i = lo + 1; i < n; i++) if (a[i]! < next) next = a[i]!;
  return low + (h - lo) * (next - low);
}

/** An arm's users after the bot rule: the indexes of those kept. */
export function keptUsers(t: UserTotals, botSearchesPerDay: number): { kept: Uint32Array; bots: number } {
  const n = t.impressions.length;
  // The threshold first: reading maxDaySearches may make the storage merge days.
  const max = botSearchesPerDay > 0 ? t.maxDaySearches : undefined;
  if (max === undefined) {
    const all = new Uint32Array(n);
    for (let i = 0; i < n; i++) all[i] = i;
    return { kept: all, bots: 0 };
  }
  const kept: number[] = [];
  for (let i = 0; i < n; i++) if (!(max[i]! > botSearchesPerDay)) kept.push(i);
  return { kept: Uint32Array.from(kept), bots: n - kept.length };
}

/** Per-user values of a metric's numerator or denominator (see comparison.ts's METRIC_FIELDS), for the kept users. */
export type UserValues = (t: UserTotals, kept: Uint32Array) => Float64Array;

export const column =
  (name: UserColumn): UserValues =>
  (t, kept) => {
    const c = t[name];
    // Every user kept (no bot rule, or no bot): a plain copy.
    if (kept.length === c.length && c instanceof Float64Array) return c.slice();
    const out = new Float64Array(kept.length);
    for (let j = 0; j < kept.length; j++) out[j] = c[kept[j]!]!;
    return out;
  };

/** Searches with results per user. */
export const withResultsColumn: UserValues = (t, kept) => {
  const out = new Float64Array(kept.length);
  const { impressions, noResults } = t;
  if (kept.length === impressions.length) for (let i = 0; i < out.length; i++) out[i] = impressions[i]! - noResults[i]!;
  else for (let j = 0; j < kept.length; j++) out[j] = impressions[kept[j]!]! - noResults[kept[j]!]!;
  return out;
};

/** Searches with results and no click per user. */
export const abandonedColumn: UserValues = (t, kept) => {
  const out = new Float64Array(kept.length);
  const { impressions, noResults, firstClicked } = t;
  if (kept.length === impressions.length) for (let i = 0; i < out.length; i++) out[i] = impressions[i]! - noResults[i]! - firstClicked[i]!;
  else
    for (let j = 0; j < kept.length; j++) {
      const i = kept[j]!;
      out[j] = impressions[i]! - noResults[i]! - firstClicked[i]!;
    }
  return out;
};

/** Caps `values` at `cap` in place; returns which entries were above it. */
export function capInPlace(values: Float64Array, cap: number | undefined): Uint8Array {
  const capped = new Uint8Array(values.length);
  if (cap === undefined) return capped;
  for (let i = 0; i < values.length; i++) {
    if (values[i]! > cap) {
      values[i] = cap;
      capped[i] = 1;
    }
  }
  return capped;
}

/** Caps `values` at `cap` in place; returns the indexes of the entries that were above it, ascending. */
export function capIndexes(values: Float64Array, cap: number | undefined): Uint32Array {
  if (cap === undefined) return new Uint32Array(0);
  let above: number[] | undefined;
  for (let i = 0; i < values.length; i++) {
    if (values[i]! > cap) {
      values[i] = cap;
      (above ??= []).push(i);
    }
  }
  return above === undefined ? new Uint32Array(0) : Uint32Array.from(above);
}

/** Entries in either of two ascending index lists (their union's size). */
export function unionSize(a: Uint32Array, b: Uint32Array): number {
  let i = 0;
  let j = 0;
  let both = 0;
  while (i < a.length && j < b.length) {
    if (a[i]! === b[j]!) (both++, i++, j++);
    else if (a[i]! < b[j]!) i++;
    else j++;
  }
  return a.length + b.length - both;
}

/** The pooled percentile of several arms' values; undefined without values or with capping off. */
export function pooledCap(arms: readonly Float64Array[], q: number): number | undefined {
  if (q >= 1) return undefined;
  let n = 0;
  for (const a of arms) n += a.length;
  const top = topOrderStatistics(arms, n, q);
  if (top !== undefined) return top;
  const pooled = new Float64Array(n);
  let o = 0;
  for (const a of arms) {
    pooled.set(a, o);
    o += a.length;
  }
  return percentile(pooled, q, true);
}

/**
 * percentile() of the arms pooled, for a percentile near the top of many values, without copying
 * or reordering them: a threshold t from an evenly spaced sample, then one pass keeping the values
 * >= t. When at least `top` (= n - floor(q (n - 1))) values are kept, the order statistics the
 * percentile reads (x[lo], x[lo + 1]) are all among them — every value left out is below every
 * value kept — so the answer is exactly percentile()'s. Otherwise (a badly chosen threshold, or
 * ties making the kept set large) undefined: the caller selects over every value.
 */
function topOrderStatistics(arms: readonly Float64Array[], n: number, q: number): number | undefined {
  if (n < 4096) return undefined;
  const h = q * (n - 1);
  const lo = Math.floor(h);
  const top = n - lo;
  if (top * 16 > n) return undefined;
  const at = (i: number): number => {
    for (const a of arms) {
      if (i < a.length) return a[i]!;
      i -= a.length;
    }
    return NaN;
  };
  const SAMPLE = 256;
  const sample = new Float64Array(SAMPLE);
  for (let k = 0; k < SAMPLE; k++) sample[k] = at(Math.floor(((k + 0.5) * n) / SAMPLE));
  // About three times `top` values are expected at or above the threshold (more with ties).
  const expectedAbove = Math.ceil((3 * top * SAMPLE) / n) + 8;
  const threshold = select(sample, Math.max(0, SAMPLE - expectedAbove));
  const room = Math.max(256, Math.floor(n / 8));
  const kept = new Float64Array(room);
  let m = 0;
  for (const a of arms) {
    for (let i = 0; i < a.length; i++) {
      const x = a[i]!;
      if (x >= threshold) {
        if (m === room) return undefined;
        kept[m++] = x;
      }
    }
  }
  if (m < top) return undefined;
  const values = kept.subarray(0, m);
  const k = m - top;
  const low = select(values, k);
  if (h === lo) return low;
  // After selecting k, everything above index k is >= values[k]: the next order statistic is their minimum.
  let next = Infinity;
  for (let i = k + 1; i < m; i++) if (values[i]! < next) next = values[i]!;
  return low + (h - lo) * (next - low);
}
