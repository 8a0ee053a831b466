/**
 * Treatment-versus-control inference on a difference of two estimates, one method per metric:
 * the estimate, its interval, its p-value and its relative-lift interval all come from the same
 * normal model, so "significant" (p < alpha) holds exactly when the interval excludes 0 and
 * exactly when the relative interval excludes 0.
 *
 * Fixed horizon (the default): Delta = T - C, V = Var(Delta), z = Delta / sqrt(V), p = 2 Phi(-|z|),
 * interval Delta +- z_{1-alpha/2} sqrt(V). Valid for one look at a sample size fixed in advance.
 * With few units (design.df set), Student's t on those degrees of freedom replaces the normal in
 * the p-value, the interval and the MDE (Welch 1947; Satterthwaite 1946).
 *
 * Sequential (always valid, for peeking): the mixture sequential probability ratio test with a
 * normal mixing distribution N(0, tau^2) over the effect (Robbins 1970; Johari et al. 2017 as in
 * Optimizely's Stats Engine; GrowthBook's SequentialTwoSidedTTest):
 *   Lambda = sqrt(V / (V + tau^2)) exp(Delta^2 tau^2 / (2 V (V + tau^2))),  p = min(1, 1 / Lambda),
 *   confidence sequence Delta +- sqrt(V (V + tau^2) / tau^2 (ln((V + tau^2) / V) - 2 ln alpha)).
 * p < alpha exactly when |Delta| exceeds that half-width. tau^2 follows GrowthBook:
 * tau^2 = rho^2 sigma^2 with sigma^2 = V n the variance per unit (n units in both arms) and
 *   rho^2 = (-2 ln alpha + ln(-2 ln alpha + 1)) / N*
 * (Waudby-Smith et al., arXiv:2103.06476v7, eq. 161), which makes the sequence tightest near
 * n = N* units (the tuning parameter; GrowthBook's default N* = 5000). The price: wider intervals
 * at every look, so less power at a given sample than the fixed-horizon test (measured in
 * test/core/calibration.test.ts).
 *
 * Relative lift Delta / C (reported as T / C - 1 without CUPED) gets Fieller's interval: the set
 * of l with |Delta - l C| <= c sqrt(V_Delta - 2 l Cov(Delta, C) + l^2 V_C), c the critical value
 * of the absolute test (z_{1-alpha/2}, or the sequential half-width / sqrt(V)). At l = 0 that is
 * the absolute test, hence the agreement. The set is a bounded interval only when C is itself
 * distinguishable from 0 (C^2 > c^2 V_C); otherwise it is unbounded and reported as undefined.
 *
 * Several treatments: Holm's step-down adjustment of the p-values of the comparisons of one
 * metric, which controls the family-wise error rate under any dependence (Holm 1979).
 *
 * Power: the minimum detectable effect at 80% power for the current variance, the true effect
 * at which the estimate would clear the half-width with probability 0.8:
 *   MDE = halfWidth + z_{0.80} sqrt(V)  (fixed horizon: (z_{1-alpha/2} + z_{0.80}) sqrt(V)).
 *
 * References: H. Robbins (1970), "Statistical methods related to the law of the iterated
 * logarithm", Ann. Math. Statist. 41; R. Johari, L. Pekelis, D. Walsh (2017), "Peeking at A/B
 * tests", KDD; I. Waudby-Smith et al. (2023), "Time-uniform central limit theory and asymptotic
 * confidence sequences", arXiv:2103.06476; E. C. Fieller (1954), "Some problems in interval
 * estimation", JRSS B 16; S. Holm (1979), Scand. J. Statist. 6.
 */
import { normalCdf, normalQuantile, zCritical } from "./special-functions.js";
import type { Estimate, Interval } from "./statistics.js";
import { studentTCritical, studentTQuantile, studentTTwoSided } from "./student-t.js";

/** GrowthBook's default sequential tuning parameter N*: units at which the sequence is tightest. */
export const DEFAULT_SEQUENTIAL_TUNING = 5000;

/** Power the minimum detectable effect is computed for. */
export const MDE_POWER = 0.8;

/** rho^2 of GrowthBook's sequential_rho (two-sided). */
export function sequentialRho2(alpha: number, tuning: number = DEFAULT_SEQUENTIAL_TUNING): number {
  const a = -2 * Math.log(alpha);
  return (a + Math.log(a + 1)) / tuning;
}

/** The mixture variance tau^2 = rho^2 V n for a difference of variance V over n units (both arms). */
export function sequentialTau2(variance: number, units: number, alpha: number, tuning: number = DEFAULT_SEQUENTIAL_TUNING): number {
  return sequentialRho2(alpha, tuning) * variance * units;
}

/** The mSPRT always-valid p-value and confidence-sequence half-width for estimate `difference` of variance V. */
export function mixtureSprt(difference: number, variance: number, tau2: number, alpha: number): { pValue: number; halfWidth: number } {
  const v = variance;
  const total = v + tau2;
  const lnLambda = 0.5 * Math.log(v / total) + (difference * difference * tau2) / (2 * v * total);
  const pValue = Math.min(1, Math.exp(-lnLambda));
  const halfWidth = Math.sqrt(((v * total) / tau2) * (Math.log(total / v) - 2 * Math.log(alpha)));
  return { pValue, halfWidth };
}

/**
 * Fieller's interval for the ratio a / b of two normal estimates: the l with
 * |a - l b| <= c sqrt(va - 2 l cab + l^2 vb). undefined when b is not distinguishable from 0
 * at critical value c (the set is then unbounded).
 */
export function fiellerInterval(a: number, va: number, b: number, vb: number, cab: number, c: number): Interval | undefined {
  const c2 = c * c;
  // (b^2 - c^2 vb) l^2 - 2 (a b - c^2 cab) l + (a^2 - c^2 va) <= 0
  const qa = b * b - c2 * vb;
  if (!(qa > 0)) return undefined;
  const qb = a * b - c2 * cab;
  const qc = a * a - c2 * va;
  const discriminant = qb * qb - qa * qc;
  const root = Math.sqrt(Math.max(0, discriminant));
  return { low: (qb - root) / qa, high: (qb + root) / qa };
}

/** Two estimates to compare: the treatment and the control, with their variances. */
export interface DifferenceInput {
  /** Estimate of the difference treatment - control. */
  difference: number;
  variance: number;
  /** The control's level (for the relative lift) and its variance and covariance with the difference. */
  control: number;
  controlVariance: number;
  differenceControlCovariance: number;
}

/**
 * Fixed horizon with the normal approximation, or with Student's t on `df` degrees of freedom
 * (few bucket units: comparison.ts gives the smaller arm's units - 1), or with a permutation
 * test's p-value and critical value (few users: permutation.ts; p < alpha exactly when
 * |difference| / se > critical), or sequential.
 */
export type Design =
  | { sequential: false; df?: number | undefined; permutation?: { pValue: number; critical: number } | undefined }
  | { sequential: true; tau2: number };

export interface DifferenceTest {
  difference: Estimate;
  /** Difference / control, with Fieller's interval; undefined when that interval is unbounded. */
  relative: Estimate | undefined;
  pValue: number;
  /** pValue < alpha; exactly when `difference` (and `relative`) excludes 0. */
  significant: boolean;
  standardError: number;
  /** Half-width / standard error: z_{1-alpha/2} at a fixed horizon. */
  criticalValue: number;
  mde: { absolute: number; relative: number | undefined };
}

/** The test of a difference of two arms (see the file comment). */
export function differenceTest(input: DifferenceInput, confidence: number, design: Design = { sequential: false }): DifferenceTest {
  const alpha = 1 - confidence;
  const v = input.variance;
  if (!(v > 0)) throw new RangeError(`differenceTest needs a positive variance, got ${v}`);
  const se = Math.sqrt(v);
  const delta = input.difference;
  let pValue: number;
  let halfWidth: number;
  if (design.sequential) {
    ({ pValue, halfWidth } = mixtureSprt(delta, v, design.tau2, alpha));
  } else if (design.permutation !== undefined) {
    halfWidth = design.permutation.critical * se;
    pValue = design.permutation.pValue;
  } else if (design.df !== undefined) {
    halfWidth = studentTCritical(alpha, design.df) * se;
    pValue = Math.min(1, studentTTwoSided(Math.abs(delta) / se, design.df));
  } else {
    halfWidth = zCritical(confidence) * se;
    pValue = Math.min(1, 2 * normalCdf(-Math.abs(delta) / se));
  }
  const criticalValue = halfWidth / se;
  const fieller = fiellerInterval(delta, v, input.control, input.controlVariance, input.differenceControlCovariance, criticalValue);
  const relativeValue = input.control !== 0 ? delta / input.control : undefined;
  const mdeAbsolute = halfWidth + (!design.sequential && design.permutation === undefined && design.df !== undefined ? studentTQuantile(MDE_POWER, design.df) : normalQuantile(MDE_POWER)) * se;
  return {
    difference: { value: delta, low: delta - halfWidth, high: delta + halfWidth },
    relative: fieller !== undefined && relativeValue !== undefined ? { value: relativeValue, low: fieller.low, high: fieller.high } : undefined,
    pValue,
    significant: pValue < alpha,
    standardError: se,
    criticalValue,
    mde: { absolute: mdeAbsolute, relative: input.control > 0 ? mdeAbsolute / input.control : undefined },
  };
}

/** Input for two independent arms: Delta = T - C, V = V_T + V_C, Cov(Delta, C) = -V_C. */
export function independentArms(treatment: { value: number; variance: number }, control: { value: number; variance: number }): DifferenceInput {
  return {
    difference: treatment.value - control.value,
    variance: treatment.variance + control.variance,
    control: control.value,
    controlVariance: control.variance,
    differenceControlCovariance: -control.variance,
  };
}

/**
 * Holm's step-down adjusted p-values, in the input order: sorted ascending, the i-th (0-based)
 * of m becomes max over j <= i of min(1, (m - j) p_(j)). Monotone in the raw p-values, capped at 1.
 */
export function holmAdjust(ps: readonly number[]): number[] {
  const m = ps.length;
  const order = ps.map((_, i) => i).sort((a, b) => ps[a]! - ps[b]!);
  const adjusted = new Array<number>(m);
  let running = 0;
  order.forEach((index, rank) => {
    running = Math.max(running, Math.min(1, (m - rank) * ps[index]!));
    adjusted[index] = running;
  });
  return adjusted;
}
