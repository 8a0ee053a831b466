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
 * Known limit: searches are treated as independent. A user's latencies are correlated (device,
 * network), which the order-statistic interval ignores; a user-level interval needs per-user
 * latencies, which storage does not keep yet (README, "How the comparison works").
 *
 * References: H. A. David, H. N. Nagaraja (2003), "Order Statistics", 3rd ed., section 7.1
 * (distribution-free confidence intervals for quantiles); W. J. Conover (1999), "Practical
 * Nonparametric Statistics", section 3.2.
 */
import { LATENCY_RELATIVE_ACCURACY, latencyQuantile, latencyValueAt } from "./sketches.js";
import { zCritical, type Estimate } from "./statistics.js";

/** The quantile the guardrail watches. */
export const GUARDRAIL_QUANTILE = 0.95;

/** Up to this many items the ranks come from exact binomial tails. */
const EXACT_RANKS_MAX_N = 2000;

/** Latencies of one arm: the sketch histogram and, when known, the exact min / max. */
export interface LatencySketch {
  histogram: ReadonlyMap<number, number>;
  bounds?: { min: number; max: number } | undefined;
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

/** The p95 of one arm with its order-statistic interval at `confidence`; undefined without data. */
export function p95Interval(latency: LatencySketch, confidence: number): Estimate | undefined {
  let n = 0;
  for (const count of latency.histogram.values()) n += count;
  const value = latencyQuantile(latency.histogram, GUARDRAIL_QUANTILE, latency.bounds);
  const ranks = quantileRankInterval(n, GUARDRAIL_QUANTILE, confidence);
  if (value === undefined || ranks === undefined) return undefined;
  const low = latencyValueAt(latency.histogram, latency.bounds, ranks.low - 1);
  const high = latencyValueAt(latency.histogram, latency.bounds, ranks.high - 1);
  if (low === undefined || high === undefined) return undefined;
  const exactLow = latency.bounds !== undefined && ranks.low === 1;
  const exactHigh = latency.bounds !== undefined && ranks.high === n;
  return {
    value,
    low: exactLow ? low : low / (1 + LATENCY_RELATIVE_ACCURACY),
    high: exactHigh ? high : high / (1 - LATENCY_RELATIVE_ACCURACY),
  };
}

export type GuardrailStatus = "ok" | "regression" | "inconclusive" | "insufficient data";

export interface LatencyGuardrail {
  status: GuardrailStatus;
  /** p95 (ms) of each arm with its interval at sqrt(confidence). */
  treatmentP95?: Estimate | undefined;
  controlP95?: Estimate | undefined;
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
