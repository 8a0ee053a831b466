/**
 * The latency guardrail: is the variant's p95 response time worse than the control's by more
 * than the threshold, with the data's uncertainty taken into account?
 *
 * Per arm, a distribution-free confidence interval for the p95 from order statistics: with
 * K ~ Binomial(n, 0.95) the number of latencies at or below the true p95, the interval
 * [X_(l), X_(u)] (1-based order statistics) covers it with probability P(l <= K < u), and
 * l, u are the widest-tail ranks with P(K < l) <= a/2 and P(K >= u) <= a/2 — exact binomial
 * tails for n <= 2000, the normal approximation with continuity correction above. Values are
 * read from the latency sketch at those ranks and widened by its 1% relative accuracy (a stored
 * value v stands for some x with |v - x| <= 0.01 x), so the interval stays conservative.
 * With too few latencies (about 85 at 95% joint confidence) no upper rank exists, and the arm has
 * no interval.
 *
 * The two arms' intervals, each at confidence sqrt(confidence), hold jointly with probability
 * >= confidence (independent arms), so [low_t - high_c, high_t - low_c] covers the p95
 * difference and [low_t / high_c - 1, high_t / low_c - 1] the relative difference at that
 * confidence (no normal approximation, no guess at the control's p95).
 *
 * Status, a non-inferiority rule (as Statsig's and Spotify's guardrails): "ok" only when the
 * relative difference's upper bound is below the threshold (the data show the variant not worse
 * by the threshold); "regression" when its lower bound exceeds the threshold (shown worse by more
 * than allowed); "inconclusive" in between (neither shown: a recommendation needs "ok", so too
 * little data never passes); "insufficient data" when either arm has no histogram or no interval.
 * Until issue 21, "ok" meant only "not shown worse", and a real +20% p95 regression passed in
 * 9 of 10 experiments of 1,000 searches per arm.
 *
 * At the level of users (since issue 21): a user's latencies are correlated (device, network,
 * the queries they type), so searches are not independent and the binomial ranks above are too
 * narrow — the unit error docs/statistics.md describes for CTR (A/A with a per-user latency factor,
 * lognormal sigma 0.45, 500 users per arm: false REGRESSION 4 in 20). When the arm's per-user
 * latencies are known (coarse per-user histograms, user-totals.ts), the spread of the share of
 * searches at or below the p95 is taken over users, as Deng, Knoblich, Lu (KDD 2018, section 4.3:
 * "quantile metrics" under clustered randomisation) do: with N_u the user's searches and I_u those
 * faster than the estimated p95 q, F = sum I_u / sum N_u is a ratio metric over users, its
 * delta-method variance V_F is the cluster-robust variance of the empirical CDF at q, and the
 * design effect D = max(1, V_F / (F (1 - F) / n)) says how many searches one independent search
 * is worth. The ranks are then those of Binomial(n / D, 0.95) scaled back to n (Kish's effective
 * sample size); D = 1 gives exactly the ranks above. Too few effective searches (about 86 at 95%)
 * leave no upper rank: "insufficient data". The coarse buckets (9% wide) only enter D, through
 * I_u interpolated within the bucket holding q; the p95 itself and its interval's values come
 * from the arm's 1% sketch as before. Checked against a bootstrap over users in
 * test/core/latency-guardrail.test.ts.
 *
 * References: H. A. David, H. N. Nagaraja (2003), "Order Statistics", 3rd ed., section 7.1
 * (distribution-free confidence intervals for quantiles); W. J. Conover (1999), "Practical
 * Nonparametric Statistics", section 3.2.
 */
import { deltaMethodRatio, ratioSums } from "./delta-method.js";
import { LATENCY_RELATIVE_ACCURACY, latencyQuantile, latencyValueAt } from "./sketches.js";
import { zCritical } from "./special-functions.js";
import type { Estimate } from "./statistics.js";

/** The quantile the guardrail watches. */
export const GUARDRAIL_QUANTILE = 0.95;

/** Up to this many items the ranks come from exact binomial tails. */
const EXACT_RANKS_MAX_N = 2000;

/** Latencies of one arm: the sketch histogram and, when known, the exact min / max and the users' latencies. */
export interface LatencySketch {
  histogram: ReadonlyMap<number, number>;
  bounds?: { min: number; max: number } | undefined;
  /** Per user of the arm: searches, and searches faster than a given latency (see the file comment). */
  users?: LatencyClusters | undefined;
}

/** An arm's latencies by user, for the user-level interval. */
export interface LatencyClusters {
  /** Searches (latencies) of each user; they add up to the histogram's count. */
  searches: ArrayLike<number>;
  /** Per user (same order), how many of its searches were faster than `ms`. */
  below: (ms: number) => ArrayLike<number>;
}

/**
 * The design effect of the empirical CDF at `ms` over users: the delta-method (cluster-robust)
 * variance of sum below / sum searches over its i.i.d. binomial variance, at least 1; undefined
 * with fewer than 2 users with searches.
 */
export function latencyDesignEffect(users: LatencyClusters, ms: number): number | undefined {
  const below = users.below(ms);
  const moments = deltaMethodRatio(ratioSums(below, users.searches));
  if (moments === undefined) return undefined;
  let withSearches = 0;
  for (let i = 0; i < users.searches.length; i++) if (users.searches[i]! > 0) withSearches++;
  if (withSearches < 2) return undefined;
  const f = moments.value;
  const iid = (f * (1 - f)) / moments.denominator;
  return iid > 0 ? Math.max(1, moments.variance / iid) : 1;
}

/**
 * 1-based ranks l < u with P(X_(l) <= q_p <= X_(u)) >= confidence for any continuous
 * distribution (see the file comment); undefined when n is too small for both ranks to exist.
 */
export function quantileRankInterval(n: number, p: number, confidence: number): { low: number; high: number } | undefined {
  if (!Number.isSafeInteger(n) || n < 1) return undefined;
  const tail = (1 - confidence) / 2;
  let low: number;
  let high: number;
  if (n <= EXACT_RANKS_MAX_N) {
    // cdf[k] = P(K <= k), from log pmfs by the recurrence pmf(k+1) = pmf(k) (n-k)/(k+1) p/(1-p).
    const lnRatio = Math.log(p) - Math.log1p(-p);
    const lnPmf = new Float64Array(n + 1);
    lnPmf[0] = n * Math.log1p(-p);
    for (let k = 0; k < n; k++) lnPmf[k + 1] = lnPmf[k]! + Math.log((n - k) / (k + 1)) + lnRatio;
    const cdf = new Float64Array(n + 1);
    let sum = 0;
    for (let k = 0; k <= n; k++) {
      sum += Math.exp(lnPmf[k]!);
      cdf[k] = sum;
    }
    // largest l with P(K <= l - 1) <= tail
    low = 0;
    while (low + 1 <= n && cdf[low]! <= tail) low++;
    // smallest u with P(K >= u) = 1 - P(K <= u - 1) <= tail; the upper tail summed directly
    let upper = 0;
    high = n + 1;
    for (let k = n; k >= 1; k--) {
      upper += Math.exp(lnPmf[k]!);
      if (upper > tail) break;
      high = k;
    }
  } else {
    const z = zCritical(confidence);
    const sd = Math.sqrt(n * p * (1 - p));
    low = Math.floor(n * p + 0.5 - z * sd);
    high = Math.ceil(n * p + 0.5 + z * sd);
  }
  if (low < 1 || high > n || low >= high) return undefined;
  return { low, high };
}

/**
 * The p95 of one arm with its order-statistic interval at `confidence` (at the level of users when
 * the arm's users are given: see the file comment, `designEffect`); undefined without data.
 */
export function p95Interval(latency: LatencySketch, confidence: number): (Estimate & { designEffect?: number | undefined }) | undefined {
  let n = 0;
  for (const count of latency.histogram.values()) n += count;
  const value = latencyQuantile(latency.histogram, GUARDRAIL_QUANTILE, latency.bounds);
  if (value === undefined) return undefined;
  let designEffect: number | undefined;
  let ranks: { low: number; high: number } | undefined;
  if (latency.users !== undefined) {
    designEffect = latencyDesignEffect(latency.users, value);
    if (designEffect === undefined) return undefined;
    const effective = Math.floor(n / designEffect);
    const scaled = quantileRankInterval(effective, GUARDRAIL_QUANTILE, confidence);
    if (scaled !== undefined) {
      const scale = n / effective;
      ranks = { low: Math.max(1, Math.floor(scaled.low * scale)), high: Math.min(n, Math.ceil(scaled.high * scale)) };
    }
  } else ranks = quantileRankInterval(n, GUARDRAIL_QUANTILE, confidence);
  if (ranks === undefined) return undefined;
  const low = latencyValueAt(latency.histogram, latency.bounds, ranks.low - 1);
  const high = latencyValueAt(latency.histogram, latency.bounds, ranks.high - 1);
  if (low === undefined || high === undefined) return undefined;
  const exactLow = latency.bounds !== undefined && ranks.low === 1;
  const exactHigh = latency.bounds !== undefined && ranks.high === n;
  return {
    value,
    low: exactLow ? low : low / (1 + LATENCY_RELATIVE_ACCURACY),
    high: exactHigh ? high : high / (1 - LATENCY_RELATIVE_ACCURACY),
    ...(designEffect === undefined ? {} : { designEffect }),
  };
}

export type GuardrailStatus = "ok" | "regression" | "inconclusive" | "insufficient data";

export interface LatencyGuardrail {
  status: GuardrailStatus;
  /** p95 (ms) of each arm with its interval at sqrt(confidence), and the design effect when computed over users. */
  treatmentP95?: (Estimate & { designEffect?: number | undefined }) | undefined;
  controlP95?: (Estimate & { designEffect?: number | undefined }) | undefined;
  /** p95_t - p95_c (ms) with its interval at `confidence`. */
  diffMs?: Estimate | undefined;
  /** p95_t / p95_c - 1 with its interval at `confidence`; undefined when the control's p95 is 0. */
  relativeDiff?: Estimate | undefined;
}

/** The guardrail of a treatment against the control at `confidence` (see the file comment). */
export function latencyGuardrail(
  treatment: LatencySketch | undefined,
  control: LatencySketch | undefined,
  confidence: number,
  threshold: number,
): LatencyGuardrail {
  const perArm = Math.sqrt(confidence);
  const t = treatment && p95Interval(treatment, perArm);
  const c = control && p95Interval(control, perArm);
  if (t === undefined || c === undefined) return { status: "insufficient data", treatmentP95: t, controlP95: c };
  const diffMs = { value: t.value - c.value, low: t.low - c.high, high: t.high - c.low };
  const relativeDiff =
    c.value > 0 ? { value: (t.value - c.value) / c.value, low: c.high > 0 ? t.low / c.high - 1 : Infinity, high: c.low > 0 ? t.high / c.low - 1 : Infinity } : undefined;
  // Worse by more than the threshold at the chosen confidence: low_t > (1 + threshold) high_c;
  // not worse by the threshold: high_t < (1 + threshold) low_c.
  const status: GuardrailStatus = t.low > (1 + threshold) * c.high ? "regression" : t.high < (1 + threshold) * c.low ? "ok" : "inconclusive";
  return { status, treatmentP95: t, controlP95: c, diffMs, relativeDiff };
}
