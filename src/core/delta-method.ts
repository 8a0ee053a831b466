/**
 * Ratio metrics over randomisation units by the delta method, with optional CUPED.
 *
 * A ratio metric is R = sum(Y) / sum(N) over the units of one arm (search CTR: searches with a
 * click / searches; CTR: clicks / searches; no-results rate: no-result searches / searches). The
 * units are the USER_BUCKETS hashed user buckets (user-buckets.ts): i.i.d. totals of random sets
 * of users, so the first-order Taylor expansion of R around (mu_Y, mu_N) gives
 *   Var(R) ~ (s2_Y - 2 R s_YN + R^2 s2_N) / (n mu_N^2),
 * with sample (n - 1) (co)variances over the n units and mu_N = sum(N) / n (Deng, Knoblich, Lu
 * 2018, section 3; identical to GrowthBook's RatioStatistic.variance / n). Every bucket counts,
 * also an empty one (see user-buckets.ts). Estimates then use the normal approximation: with 256
 * units the t quantile (df ~ 500) differs from z in the third decimal.
 *
 * No zero-width intervals: an arm with no successes (or only successes) has a zero delta-method
 * variance, so the variance is floored. Two floors:
 * - "degenerate" (the A/B comparison's): an arm is degenerate when its units show less spread
 *   than one pseudo-event would give, q (1 - q) / (N + 2) with q = 1 / (N + 2) (a proportion with
 *   one success in N + 2 trials, about 1 / N^2, whatever the observed level): all zeros, all
 *   ones, a single user. Only there is the variance floored, by the i.i.d. one with pseudo-counts
 *   below ("agresti-caffo", on the metric's scale: a bounded per-search value or a count); every
 *   other arm keeps its delta-method variance. So it never binds in an arm whose users differ
 *   (measured in test/core/variance-floors.test.ts): a floor scaled to the
 *   level (Agresti-Caffo's p (1 - p) / N) bound in 66 of 85 MRR arms of 260-730 searches (MRR is
 *   not a Bernoulli proportion: its per-search variance E[RR^2] - MRR^2 is below MRR (1 - MRR)) and
 *   made intervals 1.3-1.6 times too wide (issue 21). Small samples are handled where they belong:
 *   a minimum of users per arm and a small-sample test (comparison.ts).
 * - "agresti-caffo" (interleaving's): the i.i.d. variance with pseudo-counts, for proportions
 *   Agresti-Caffo's add-one-success-and-one-failure, p~ (1 - p~) / (N + 2), p~ = (Y + 1) / (N + 2);
 *   for rates a Poisson variance with one pseudo-click, (Y + 1) / N^2.
 *
 * CUPED (Deng, Xu, Kohavi, Walker 2013) for a ratio: each arm's estimate becomes
 * R_post - theta R_pre with theta pooled over both arms, theta = sum_arms cov(L_post, L_pre) /
 * sum_arms var(L_pre), where L are the delta-method linearisations (Y - R N) / mu_N of the post
 * and pre-period ratios per unit; the variance is grad' Lambda grad over the 4 x 4 covariance of
 * (Y_post, N_post, Y_pre, N_pre). This is GrowthBook's RegressionAdjustedRatioStatistic
 * (packages/stats/gbstats/models/statistics.py) term for term, checked against it in the tests.
 * Since theta is the same in both arms and E[R_pre] is the same in both (pre-period data cannot
 * depend on the assignment), the adjusted difference estimates the same effect.
 *
 * References: A. Deng, U. Knoblich, J. Lu (2018), "Applying the Delta Method in Metric
 * Analytics: A Practical Guide with Novel Ideas", KDD; A. Deng, Y. Xu, R. Kohavi, T. Walker
 * (2013), "Improving the Sensitivity of Online Controlled Experiments by Utilizing
 * Pre-Experiment Data", WSDM; A. Agresti, B. Caffo (2000), The American Statistician 54(4).
 */

/** Sufficient statistics of paired unit totals (Y_i, N_i), i = 1..units. */
export interface RatioSums {
  units: number;
  numerator: number;
  denominator: number;
  numeratorSquares: number;
  denominatorSquares: number;
  products: number;
}

/** A ratio estimate of one arm: R = numerator / denominator and the variance of R. */
export interface RatioMoments {
  value: number;
  variance: number;
  units: number;
  numerator: number;
  denominator: number;
}

/** Proportions (at most one success per search) or rates (counts per search, may exceed 1). */
export type RatioKind = "proportion" | "rate";

export function ratioSums(numerators: ArrayLike<number>, denominators: ArrayLike<number>): RatioSums {
  if (numerators.length !== denominators.length) {
    throw new RangeError(`ratioSums needs as many numerators as denominators, got ${numerators.length} and ${denominators.length}`);
  }
  let numerator = 0;
  let denominator = 0;
  let numeratorSquares = 0;
  let denominatorSquares = 0;
  let products = 0;
  for (let i = 0; i < numerators.length; i++) {
    const y = numerators[i]!;
    const d = denominators[i]!;
    numerator += y;
    denominator += d;
    numeratorSquares += y * y;
    denominatorSquares += d * d;
    products += y * d;
  }
  return { units: numerators.length, numerator, denominator, numeratorSquares, denominatorSquares, products };
}

/** Sample covariance (n - 1) from sums: (sum xy - sum x sum y / n) / (n - 1). */
function sampleCovariance(n: number, sumX: number, sumY: number, sumXY: number): number {
  return (sumXY - (sumX * sumY) / n) / (n - 1);
}

/**
 * The delta-method variance of R = sum Y / sum N over the units, unfloored.
 * undefined with fewer than 2 units or a zero denominator total.
 */
export function deltaMethodRatio(s: RatioSums): RatioMoments | undefined {
  const n = s.units;
  if (n < 2 || !(s.denominator > 0)) return undefined;
  const ratio = s.numerator / s.denominator;
  const meanN = s.denominator / n;
  const varY = sampleCovariance(n, s.numerator, s.numerator, s.numeratorSquares);
  const varN = sampleCovariance(n, s.denominator, s.denominator, s.denominatorSquares);
  const covYN = sampleCovariance(n, s.numerator, s.denominator, s.products);
  const variance = Math.max(0, (varY - 2 * ratio * covYN + ratio * ratio * varN) / (n * meanN * meanN));
  return { value: ratio, variance, units: n, numerator: s.numerator, denominator: s.denominator };
}

/** How the delta-method variance is floored (see the file comment). */
export type VarianceFloor = "degenerate" | "agresti-caffo";

/** The delta-method `variance` floored (see the file comment). */
export function flooredVariance(kind: RatioKind, variance: number, numerator: number, denominator: number, floor: VarianceFloor = "agresti-caffo"): number {
  if (floor === "degenerate" && variance >= varianceFloor(kind, numerator, denominator, "degenerate")) return variance;
  return Math.max(variance, varianceFloor(kind, numerator, denominator, "agresti-caffo"));
}

/** "agresti-caffo": the i.i.d. variance with pseudo-counts; "degenerate": one pseudo-event's variance, below which an arm is degenerate (see the file comment). */
export function varianceFloor(kind: RatioKind, numerator: number, denominator: number, floor: VarianceFloor = "agresti-caffo"): number {
  if (floor === "degenerate") {
    const q = 1 / (denominator + 2);
    return (q * (1 - q)) / (denominator + 2);
  }
  if (kind === "proportion") {
    const p = (numerator + 1) / (denominator + 2);
    return (p * (1 - p)) / (denominator + 2);
  }
  return (numerator + 1) / (denominator * denominator);
}

/** The ratio of one arm over its units with the floored delta-method variance; undefined without data. */
export function ratioEstimate(numerators: ArrayLike<number>, denominators: ArrayLike<number>, kind: RatioKind, floor: VarianceFloor = "agresti-caffo"): RatioMoments | undefined {
  const moments = deltaMethodRatio(ratioSums(numerators, denominators));
  if (moments === undefined) return undefined;
  return { ...moments, variance: flooredVariance(kind, moments.variance, moments.numerator, moments.denominator, floor) };
}

// ---------------------------------------------------------------------------------------------
// CUPED for ratio metrics
// ---------------------------------------------------------------------------------------------

/**
 * Sufficient statistics of (Y_post, N_post, Y_pre, N_pre) per unit: `sums[k]` = sum over units of
 * variable k and `products[k][l]` = sum of products of variables k and l (a symmetric 4 x 4).
 */
export interface PrePostSums {
  units: number;
  sums: readonly [number, number, number, number];
  products: readonly (readonly [number, number, number, number])[];
}

export function prePostSums(
  postNumerators: ArrayLike<number>,
  postDenominators: ArrayLike<number>,
  preNumerators: ArrayLike<number>,
  preDenominators: ArrayLike<number>,
): PrePostSums {
  const columns = [postNumerators, postDenominators, preNumerators, preDenominators];
  const n = postNumerators.length;
  if (columns.some((c) => c.length !== n)) throw new RangeError("prePostSums needs four columns of the same length");
  const sums: [number, number, number, number] = [0, 0, 0, 0];
  const products: [number, number, number, number][] = [0, 1, 2, 3].map(() => [0, 0, 0, 0]);
  for (let i = 0; i < n; i++) {
    const x = [postNumerators[i]!, postDenominators[i]!, preNumerators[i]!, preDenominators[i]!];
    for (let k = 0; k < 4; k++) {
      const xk = x[k]!;
      sums[k] = sums[k]! + xk;
      const row = products[k]!;
      for (let l = k; l < 4; l++) row[l] = row[l]! + xk * x[l]!;
    }
  }
  for (let k = 0; k < 4; k++) for (let l = 0; l < k; l++) products[k]![l] = products[l]![k]!;
  return { units: n, sums, products };
}

/** One arm's linearised pieces: the post and pre ratios and the per-unit (co)variances of their linearisations. */
interface LinearisedArm {
  units: number;
  post: number;
  pre: number;
  varPost: number;
  varPre: number;
  covPostPre: number;
}

function linearise(s: PrePostSums): LinearisedArm | undefined {
  const n = s.units;
  if (n < 2 || !(s.sums[1] > 0) || !(s.sums[3] > 0)) return undefined;
  const mean = s.sums.map((x) => x / n);
  const cov = (k: number, l: number): number => sampleCovariance(n, s.sums[k]!, s.sums[l]!, s.products[k]![l]!);
  const post = s.sums[0] / s.sums[1];
  const pre = s.sums[2] / s.sums[3];
  // Gradients of Y/N at the means: (1 / mu_N, -mu_Y / mu_N^2) for post (indices 0, 1) and pre (2, 3).
  const g = [1 / mean[1]!, -mean[0]! / mean[1]! ** 2, 1 / mean[3]!, -mean[2]! / mean[3]! ** 2];
  const quad = (a: number, b: number, c: number, d: number): number =>
    g[a]! * g[c]! * cov(a, c) + g[a]! * g[d]! * cov(a, d) + g[b]! * g[c]! * cov(b, c) + g[b]! * g[d]! * cov(b, d);
  return { units: n, post, pre, varPost: quad(0, 1, 0, 1), varPre: quad(2, 3, 2, 3), covPostPre: quad(0, 1, 2, 3) };
}

/** One arm under CUPED. Variances are those of the arm's estimate (per-unit variance / units). */
export interface CupedArm {
  /** R_post - theta R_pre. */
  adjusted: number;
  /** R_post. */
  unadjusted: number;
  variance: number;
  unadjustedVariance: number;
  /** Cov(adjusted, unadjusted), for Fieller's relative interval. */
  covarianceWithUnadjusted: number;
}

export interface CupedDifference {
  theta: number;
  treatment: CupedArm;
  control: CupedArm;
  /** Adjusted treatment minus adjusted control. */
  difference: number;
  variance: number;
  unadjustedVariance: number;
  /** 1 - variance / unadjustedVariance. */
  varianceReduction: number;
}

/**
 * The CUPED-adjusted difference of a ratio metric between two arms (unfloored variances).
 * undefined when an arm has fewer than 2 units, a zero post or pre denominator, or the pre-period
 * linearisation has no variance (then there is nothing to adjust with).
 */
export function cupedRatioDifference(treatment: PrePostSums, control: PrePostSums): CupedDifference | undefined {
  const t = linearise(treatment);
  const c = linearise(control);
  if (t === undefined || c === undefined) return undefined;
  const preVariance = t.varPre + c.varPre;
  if (!(preVariance > 0)) return undefined;
  const theta = (t.covPostPre + c.covPostPre) / preVariance;
  const arm = (a: LinearisedArm): CupedArm => ({
    adjusted: a.post - theta * a.pre,
    unadjusted: a.post,
    variance: Math.max(0, (a.varPost - 2 * theta * a.covPostPre + theta * theta * a.varPre) / a.units),
    unadjustedVariance: Math.max(0, a.varPost / a.units),
    covarianceWithUnadjusted: (a.varPost - theta * a.covPostPre) / a.units,
  });
  const ta = arm(t);
  const ca = arm(c);
  const variance = ta.variance + ca.variance;
  const unadjustedVariance = ta.unadjustedVariance + ca.unadjustedVariance;
  return {
    theta,
    treatment: ta,
    control: ca,
    difference: ta.adjusted - ca.adjusted,
    variance,
    unadjustedVariance,
    varianceReduction: unadjustedVariance > 0 ? 1 - variance / unadjustedVariance : 0,
  };
}
