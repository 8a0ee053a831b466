/**
 * Frequentist statistics for comparing A/B-test variants of search.
 *
 * Per variant we know `impressions` (searches, n), `searchesWithClick` (s <= n, so "search CTR"
 * s/n is a binomial proportion: one yes/no outcome per search) and `clicks` (c, which can exceed
 * n, so "CTR" c/n is treated as a Poisson rate of clicks per impression). One variant is the
 * control; every comparison below is "treatment versus control".
 *
 * Everything here is pure (no I/O, no dependencies) and total: where a quantity does not exist
 * (a zero denominator, no variance) the result is `undefined`, never NaN or Infinity. Invalid
 * input (a negative, fractional or non-finite count, a confidence outside (0, 1)) is a caller bug
 * and throws a RangeError.
 *
 * The special functions (normal quantile and distribution function, log-gamma, chi-square
 * survival) are in special-functions.ts, with their references.
 *
 * References:
 * - E. B. Wilson (1927) (score interval); D. Katz et al. (1978) (log risk-ratio interval).
 * - R's binom.test / scipy.stats.binomtest (two-sided exact binomial p-value).
 */
import { assertConfidence, chiSquareSurvival, lnGamma, twoSidedNormalPValue, zCritical } from "./special-functions.js";

/** A confidence interval. */
export interface Interval {
  low: number;
  high: number;
}

/** A point estimate with its confidence interval. */
export interface Estimate {
  value: number;
  low: number;
  high: number;
}

// ---------------------------------------------------------------------------------------------
// Input guards
// ---------------------------------------------------------------------------------------------

/** Event counts (searches, clicks, observations) must be non-negative integers. */
function assertCount(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer count, got ${value}`);
  }
}

/** Exposures (impressions a rate is measured over) must be finite and non-negative. */
function assertExposure(name: string, value: number): void {
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a finite non-negative exposure, got ${value}`);
  }
}

/** Successes cannot outnumber trials. */
function assertAtMost(successName: string, successes: number, trialName: string, trials: number): void {
  if (successes > trials) {
    throw new RangeError(`${successName} (${successes}) must not exceed ${trialName} (${trials})`);
  }
}

function assertProportionInputs(sControl: number, nControl: number, sTreatment: number, nTreatment: number): void {
  assertCount("sControl", sControl);
  assertCount("nControl", nControl);
  assertCount("sTreatment", sTreatment);
  assertCount("nTreatment", nTreatment);
  assertAtMost("sControl", sControl, "nControl", nControl);
  assertAtMost("sTreatment", sTreatment, "nTreatment", nTreatment);
}

function assertRateInputs(cControl: number, tControl: number, cTreatment: number, tTreatment: number): void {
  assertCount("cControl", cControl);
  assertExposure("tControl", tControl);
  assertCount("cTreatment", cTreatment);
  assertExposure("tTreatment", tTreatment);
}

/**
 * The estimate, or undefined if floating point could not represent it (e.g. a rate over a
 * vanishingly small exposure overflowing to Infinity): the module never returns non-finite numbers.
 */
function finiteEstimate(value: number, low: number, high: number): Estimate | undefined {
  return Number.isFinite(value) && Number.isFinite(low) && Number.isFinite(high) ? { value, low, high } : undefined;
}


/**
 * The Wilson score interval for s successes in n trials:
 *   (p + z^2 / 2n +- z sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n),  p = s / n,
 * written over the common denominator n + z^2. Unlike the Wald interval it stays inside [0, 1]
 * and is not degenerate at s = 0 or s = n. undefined when n = 0.
 */
export function wilsonInterval(s: number, n: number, confidence: number): Interval | undefined {
  assertCount("s", s);
  assertCount("n", n);
  assertAtMost("s", s, "n", n);
  assertConfidence(confidence);
  if (n === 0) return undefined;
  const z = zCritical(confidence);
  const z2 = z * z;
  const center = (s + z2 / 2) / (n + z2);
  const halfWidth = (z / (n + z2)) * Math.sqrt((s * (n - s)) / n + z2 / 4);
  // At s = 0 (s = n) the lower (upper) bound is exactly 0 (1); pin it against rounding.
  return {
    low: s === 0 ? 0 : Math.max(0, center - halfWidth),
    high: s === n ? 1 : Math.min(1, center + halfWidth),
  };
}

/**
 * The two-sided two-proportion z-test with pooled variance (H0: p_t = p_c):
 *   p = (s_c + s_t) / (n_c + n_t),  z = (p_t - p_c) / sqrt(p (1 - p) (1/n_c + 1/n_t)),
 *   p-value = 2 Phi(-|z|).
 * z > 0 means the treatment is higher. This equals the chi-square test of the 2x2 table without
 * continuity correction (z^2 = chi^2). undefined when a trial count is 0 or the pooled proportion
 * is 0 or 1 (no variance).
 */
export function twoProportionZTest(
  sControl: number,
  nControl: number,
  sTreatment: number,
  nTreatment: number,
): { z: number; pValue: number } | undefined {
  assertProportionInputs(sControl, nControl, sTreatment, nTreatment);
  if (nControl === 0 || nTreatment === 0) return undefined;
  const successes = sControl + sTreatment;
  const trials = nControl + nTreatment;
  if (successes === 0 || successes === trials) return undefined;
  const pooled = successes / trials;
  const se = Math.sqrt(pooled * (1 - pooled) * (1 / nControl + 1 / nTreatment));
  const z = (sTreatment / nTreatment - sControl / nControl) / se;
  return { z, pValue: twoSidedNormalPValue(z) };
}

/**
 * The absolute difference of proportions p_t - p_c with the unpooled Wald interval:
 *   (p_t - p_c) +- z sqrt(p_t (1 - p_t) / n_t + p_c (1 - p_c) / n_c).
 * undefined when a trial count is 0.
 */
export function proportionDifference(
  sControl: number,
  nControl: number,
  sTreatment: number,
  nTreatment: number,
  confidence: number,
): Estimate | undefined {
  assertProportionInputs(sControl, nControl, sTreatment, nTreatment);
  assertConfidence(confidence);
  if (nControl === 0 || nTreatment === 0) return undefined;
  const pc = sControl / nControl;
  const pt = sTreatment / nTreatment;
  const se = Math.sqrt((pt * (1 - pt)) / nTreatment + (pc * (1 - pc)) / nControl);
  const margin = zCritical(confidence) * se;
  const diff = pt - pc;
  return finiteEstimate(diff, diff - margin, diff + margin);
}

/**
 * The relative lift p_t / p_c - 1 with the log-ratio (Katz) interval for the risk ratio:
 *   ln(p_t / p_c) +- z se,  se = sqrt((1 - p_t) / s_t + (1 - p_c) / s_c),
 * exponentiated and shifted by -1. undefined when either s is 0 (the log ratio is infinite or
 * undefined).
 */
export function proportionRelativeLift(
  sControl: number,
  nControl: number,
  sTreatment: number,
  nTreatment: number,
  confidence: number,
): Estimate | undefined {
  assertProportionInputs(sControl, nControl, sTreatment, nTreatment);
  assertConfidence(confidence);
  if (sControl === 0 || sTreatment === 0) return undefined;
  const pc = sControl / nControl;
  const pt = sTreatment / nTreatment;
  const logRatio = Math.log(pt / pc);
  const se = Math.sqrt((1 - pt) / sTreatment + (1 - pc) / sControl);
  const margin = zCritical(confidence) * se;
  return finiteEstimate(pt / pc - 1, Math.exp(logRatio - margin) - 1, Math.exp(logRatio + margin) - 1);
}

// ---------------------------------------------------------------------------------------------
// Poisson rates: CTR (clicks / impressions)
// ---------------------------------------------------------------------------------------------

/** Above this many total events, poissonRateTest switches from the exact test to the normal approximation. */
const EXACT_TEST_MAX_EVENTS = 10_000;
/** R's binom.test tolerance: outcomes whose probability is within this factor of the observed one count as "as extreme". */
const BINOM_TEST_RELATIVE_TOLERANCE = 1 + 1e-7;

/** ln P(X = k) for X ~ Binomial(n, p), 0 < p < 1: ln C(n, k) + k ln p + (n - k) ln(1 - p). */
function binomialLogPmf(k: number, n: number, lnP: number, lnQ: number): number {
  return lnGamma(n + 1) - lnGamma(k + 1) - lnGamma(n - k + 1) + k * lnP + (n - k) * lnQ;
}

/**
 * The two-sided exact binomial test p-value for k successes in n trials under H0: success
 * probability p (0 < p < 1), with R's binom.test semantics: the total probability of all
 * outcomes no more likely than the observed one, "no more likely" meaning
 * P(X = i) <= P(X = k) * (1 + 1e-7). With m = n p:
 *   k = m: 1;
 *   k < m: P(X <= k) + sum of P(X = i) over i >= ceil(m) no more likely than k;
 *   k > m: P(X >= k) + sum of P(X = i) over i <= floor(m) no more likely than k.
 * Probabilities are computed in log space and summed term by term, so tiny p-values keep
 * their relative accuracy.
 */
function binomialTestTwoSided(k: number, n: number, p: number): number {
  const m = n * p;
  if (k === m) return 1;
  const lnP = Math.log(p);
  const lnQ = Math.log1p(-p);
  const pmf = (i: number): number => Math.exp(binomialLogPmf(i, n, lnP, lnQ));
  const threshold = binomialLogPmf(k, n, lnP, lnQ) + Math.log(BINOM_TEST_RELATIVE_TOLERANCE);
  const asExtreme = (i: number): number => {
    const lnPmf = binomialLogPmf(i, n, lnP, lnQ);
    return lnPmf <= threshold ? Math.exp(lnPmf) : 0;
  };
  let pValue = 0;
  if (k < m) {
    for (let i = 0; i <= k; i++) pValue += pmf(i);
    for (let i = Math.ceil(m); i <= n; i++) pValue += asExtreme(i);
  } else {
    for (let i = k; i <= n; i++) pValue += pmf(i);
    for (let i = 0; i <= Math.floor(m); i++) pValue += asExtreme(i);
  }
  return Math.min(1, pValue);
}

/**
 * The two-sided test that two Poisson rates are equal (H0: lambda_t = lambda_c), for c events
 * over exposure t in each arm. Conditional on the total C = c_c + c_t, under H0
 *   c_t ~ Binomial(C, t_t / (t_c + t_t)),
 * so this is the exact binomial test (R's binom.test semantics) when C <= 10000, otherwise the
 * normal approximation to that binomial: score z = (c_t - C p) / sqrt(C p (1 - p)), no
 * continuity correction, p-value = 2 Phi(-|z|). Returns the method used.
 * undefined when an exposure is 0 or C = 0.
 */
export function poissonRateTest(
  cControl: number,
  tControl: number,
  cTreatment: number,
  tTreatment: number,
): { pValue: number; method: "exact" | "normal" } | undefined {
  assertRateInputs(cControl, tControl, cTreatment, tTreatment);
  if (tControl === 0 || tTreatment === 0) return undefined;
  const total = cControl + cTreatment;
  if (total === 0) return undefined;
  const p = tTreatment / (tControl + tTreatment);
  // Exposures so lopsided that p rounds to 0 or 1 leave no binomial to test.
  if (!(p > 0 && p < 1)) return undefined;
  if (total <= EXACT_TEST_MAX_EVENTS) {
    return { pValue: binomialTestTwoSided(cTreatment, total, p), method: "exact" };
  }
  const z = (cTreatment - total * p) / Math.sqrt(total * p * (1 - p));
  return { pValue: twoSidedNormalPValue(z), method: "normal" };
}

/**
 * The rate difference lambda_t - lambda_c (lambda = c / t) with the Wald interval:
 *   (lambda_t - lambda_c) +- z sqrt(c_t / t_t^2 + c_c / t_c^2),
 * the Poisson variance of each rate being c / t^2. undefined when an exposure is 0.
 */
export function rateDifference(
  cControl: number,
  tControl: number,
  cTreatment: number,
  tTreatment: number,
  confidence: number,
): Estimate | undefined {
  assertRateInputs(cControl, tControl, cTreatment, tTreatment);
  assertConfidence(confidence);
  if (tControl === 0 || tTreatment === 0) return undefined;
  const diff = cTreatment / tTreatment - cControl / tControl;
  const se = Math.sqrt(cTreatment / (tTreatment * tTreatment) + cControl / (tControl * tControl));
  const margin = zCritical(confidence) * se;
  return finiteEstimate(diff, diff - margin, diff + margin);
}

/**
 * The relative lift lambda_t / lambda_c - 1 with the log rate-ratio interval:
 *   ln(lambda_t / lambda_c) +- z sqrt(1 / c_t + 1 / c_c),
 * exponentiated and shifted by -1. undefined when an exposure or either count is 0.
 */
export function rateRelativeLift(
  cControl: number,
  tControl: number,
  cTreatment: number,
  tTreatment: number,
  confidence: number,
): Estimate | undefined {
  assertRateInputs(cControl, tControl, cTreatment, tTreatment);
  assertConfidence(confidence);
  if (tControl === 0 || tTreatment === 0 || cControl === 0 || cTreatment === 0) return undefined;
  const ratio = cTreatment / tTreatment / (cControl / tControl);
  const logRatio = Math.log(ratio);
  const margin = zCritical(confidence) * Math.sqrt(1 / cTreatment + 1 / cControl);
  return finiteEstimate(ratio - 1, Math.exp(logRatio - margin) - 1, Math.exp(logRatio + margin) - 1);
}

// ---------------------------------------------------------------------------------------------
// Sample ratio mismatch
// ---------------------------------------------------------------------------------------------

/**
 * The sample ratio mismatch (SRM) check: Pearson's chi-square goodness-of-fit test of the
 * observed per-variant counts against the intended traffic split,
 *   chi^2 = sum_i (o_i - e_i)^2 / e_i,  e_i = N w_i / sum(w),  df = k - 1.
 * A small p-value (conventionally < 0.001) means assignment is broken and the comparison is
 * not trustworthy. undefined when there are fewer than 2 groups, the total is 0 or a weight
 * is <= 0. Throws a RangeError when the arrays differ in length, a count is not a non-negative
 * integer or a weight is not finite.
 */
export function sampleRatioTest(
  observed: readonly number[],
  expectedWeights: readonly number[],
): { chiSquare: number; pValue: number } | undefined {
  if (observed.length !== expectedWeights.length) {
    throw new RangeError(
      `sampleRatioTest needs one expected weight per observed count, got ${observed.length} counts and ${expectedWeights.length} weights`,
    );
  }
  observed.forEach((o, i) => assertCount(`observed[${i}]`, o));
  expectedWeights.forEach((w, i) => {
    if (!Number.isFinite(w)) throw new RangeError(`expectedWeights[${i}] must be finite, got ${w}`);
  });
  if (observed.length < 2) return undefined;
  if (expectedWeights.some((w) => w <= 0)) return undefined;
  const total = observed.reduce((sum, o) => sum + o, 0);
  if (total === 0) return undefined;
  // Normalise the weights to sum to 1 (scaled by the largest first, so huge weights cannot overflow).
  const maxWeight = Math.max(...expectedWeights);
  const scaled = expectedWeights.map((w) => w / maxWeight);
  const scaledSum = scaled.reduce((sum, w) => sum + w, 0);
  let chiSquare = 0;
  observed.forEach((o, i) => {
    const expected = (total * scaled[i]!) / scaledSum;
    chiSquare += ((o - expected) * (o - expected)) / expected;
  });
  if (!Number.isFinite(chiSquare)) return undefined;
  return { chiSquare, pValue: chiSquareSurvival(chiSquare, observed.length - 1) };
}
