/**
 * One arm of the A/B decision (comparison.ts) per metric: its delta-method estimate over user
 * buckets or over users, its degrees of freedom, the difference test's input against the
 * control, and its interval.
 */
import { cupedRatioDifference, deltaMethodRatio, flooredVariance, prePostSums, ratioSums, type RatioKind, type RatioMoments, type RatioSums } from "./delta-method.js";
import { independentArms, mixtureSprt, sequentialTau2, type DifferenceInput, type Design } from "./inference.js";
import { zCritical } from "./special-functions.js";
import type { Interval } from "./statistics.js";
import { studentTCritical } from "./student-t.js";
import { USER_BUCKETS } from "./user-buckets.js";
import type { UserTotals } from "./user-totals.js";
import { METRIC_FIELDS, type ComparisonSettings, type MetricName, type VariantData } from "./comparison-model.js";

/** One arm's delta-method estimate, and its units with data (for small-sample inference). */
export interface ArmMoments extends RatioMoments {
  unitsWithData: number;
  /** Units are users (exact per-user totals), not buckets. */
  users: boolean;
}

/** One arm's capped per-user values of a metric (kept users, in the arm's order). */
interface UserMetric {
  num: Float64Array;
  den: Float64Array;
}

/** An arm prepared for per-user statistics: its kept users and each metric's capped values. */
export interface UserArm {
  totals: UserTotals;
  kept: Uint32Array;
  bots: number;
  metrics: Map<MetricName, UserMetric>;
  /** The pre-period's capped values of the same kept users (CUPED). */
  pre?: Map<MetricName, UserMetric> | undefined;
  /** Each metric's estimate once computed (the control's is asked by every treatment and the intervals). */
  estimates?: Map<MetricName, ArmMoments | undefined> | undefined;
}

/**
 * The delta-method estimate over users from per-user sums; a single user has no spread to
 * measure (variance 0, then floored: one user can say nothing about the others).
 */
function userMoments(s: RatioSums): RatioMoments | undefined {
  if (s.units === 1 && s.denominator > 0) return { value: s.numerator / s.denominator, variance: 0, units: 1, numerator: s.numerator, denominator: s.denominator };
  return deltaMethodRatio(s);
}

/** The floored delta-method variance of a ratio from its per-unit sums (the permutation test computes it the same way). */
export function userVariance(kind: RatioKind) {
  return (s: RatioSums): number | undefined => {
    const raw = userMoments(s);
    return raw === undefined ? undefined : flooredVariance(kind, raw.variance, raw.numerator, raw.denominator, "degenerate");
  };
}

/**
 * One arm's floored delta-method estimate of a metric; undefined without impressions. With
 * per-user totals, over its kept users' capped totals. Otherwise over the 256 buckets: with fewer
 * than USER_BUCKETS buckets holding data (few users: a bucket is then about one user), the
 * variance over all 256 buckets, n / (n - 1) sum L^2, is rescaled to the k buckets with data,
 * k / (k - 1) sum L^2: at 2 users it would otherwise be half what it is.
 */
export function armEstimate(d: VariantData, metric: MetricName, user?: UserArm): ArmMoments | undefined {
  const { numerator, denominator, kind } = METRIC_FIELDS[metric];
  if (user !== undefined) {
    const estimates = (user.estimates ??= new Map());
    if (estimates.has(metric)) {
      const e = estimates.get(metric);
      return e === undefined ? undefined : { ...e };
    }
    const m = user.metrics.get(metric)!;
    const sums = ratioSums(m.num, m.den);
    const raw = userMoments(sums);
    const e: ArmMoments | undefined = raw === undefined ? undefined : { ...raw, variance: userVariance(kind)(sums)!, unitsWithData: raw.units, users: true };
    estimates.set(metric, e);
    return e === undefined ? undefined : { ...e };
  }
  const den = denominator(d.buckets);
  const raw = deltaMethodRatio(ratioSums(numerator(d.buckets), den));
  if (raw === undefined) return undefined;
  let k = 0;
  for (let i = 0; i < den.length; i++) if (den[i]! > 0) k++;
  const n = raw.units;
  const correction = k >= 2 && k < n ? (k / (k - 1)) * ((n - 1) / n) : 1;
  return { ...raw, variance: flooredVariance(kind, raw.variance * correction, raw.numerator, raw.denominator, "degenerate"), unitsWithData: k, users: false };
}

/**
 * Degrees of freedom of an arm for Student's t: undefined (the normal) when every bucket has data,
 * or with per-user totals from USER_BUCKETS users on (t on 255 df is within 0.5% of the normal).
 */
const armDf = (m: ArmMoments): number | undefined => (m.unitsWithData < USER_BUCKETS ? Math.max(1, m.unitsWithData - 1) : undefined);

/**
 * Degrees of freedom of a difference of two arms; undefined (normal) when neither has few units.
 * The smaller arm's units - 1: the conservative bound of Welch-Satterthwaite's (which is never
 * below it). Welch's own df let A/A false positives reach 6.9-7.7% at 5-10 users per arm on
 * heavy-tailed activity; the bound keeps them at or below 5.6% there (test/core/small-samples.test.ts).
 */
function differenceDf(t: ArmMoments, c: ArmMoments): number | undefined {
  if (armDf(t) === undefined && armDf(c) === undefined) return undefined;
  return Math.max(1, Math.min(t.unitsWithData, c.unitsWithData) - 1);
}

/** The difference of one metric between two arms, CUPED-adjusted when asked and possible. */
export function differenceInput(
  t: VariantData,
  c: VariantData,
  metric: MetricName,
  cuped: boolean,
  tu?: UserArm,
  cu?: UserArm,
): { input: DifferenceInput; varianceReduction?: number; df: number | undefined } | undefined {
  const tm = armEstimate(t, metric, tu);
  const cm = armEstimate(c, metric, cu);
  if (tm === undefined || cm === undefined) return undefined;
  if (cuped) {
    const { numerator, denominator, kind } = METRIC_FIELDS[metric];
    let r: ReturnType<typeof cupedRatioDifference>;
    if (tu !== undefined && cu !== undefined) {
      // Per user: each kept user's capped window totals with their own capped pre-period totals.
      const sums = (u: UserArm) => {
        const post = u.metrics.get(metric)!;
        const pre = u.pre?.get(metric);
        return pre === undefined ? undefined : prePostSums(post.num, post.den, pre.num, pre.den);
      };
      const [ts, cs] = [sums(tu), sums(cu)];
      r = ts !== undefined && cs !== undefined ? cupedRatioDifference(ts, cs) : undefined;
    } else if (t.pre !== undefined && c.pre !== undefined) {
      const sums = (d: VariantData) => prePostSums(numerator(d.buckets), denominator(d.buckets), numerator(d.pre!), denominator(d.pre!));
      r = cupedRatioDifference(sums(t), sums(c));
    }
    if (r !== undefined) {
      const tv = flooredVariance(kind, r.treatment.variance, tm.numerator, tm.denominator, "degenerate");
      const cv = flooredVariance(kind, r.control.variance, cm.numerator, cm.denominator, "degenerate");
      const input: DifferenceInput = {
        difference: r.difference,
        variance: tv + cv,
        control: cm.value,
        controlVariance: cm.variance,
        differenceControlCovariance: -r.control.covarianceWithUnadjusted,
      };
      return { input, varianceReduction: 1 - input.variance / (tm.variance + cm.variance), df: differenceDf(tm, cm) };
    }
  }
  return { input: independentArms(tm, cm), df: differenceDf(tm, cm) };
}

/** tau^2 for the sequential design over n units, or the fixed-horizon design (Student's t on df when given). */
export function design(settings: Pick<ComparisonSettings, "confidence" | "sequential">, variance: number, units: number, df?: number): Design {
  return settings.sequential ? { sequential: true, tau2: sequentialTau2(variance, Math.max(units, 1), 1 - settings.confidence) } : { sequential: false, df };
}

export function hasPrePeriod(d: VariantData): boolean {
  if (d.prePerUser !== undefined) {
    for (let i = 0; i < d.prePerUser.impressions.length; i++) if (d.prePerUser.impressions[i]! > 0) return true;
    return false;
  }
  if (d.pre === undefined) return false;
  let total = 0;
  for (const x of d.pre.impressions) total += x;
  return total > 0;
}

/** An arm's interval from its estimate, in the settings' mode; proportions stay within [0, 1], rates at or above 0. */
export function intervalOf(m: ArmMoments, metric: MetricName, s: Pick<ComparisonSettings, "confidence" | "sequential">, users: number): Interval {
  const alpha = 1 - s.confidence;
  const de = design(s, m.variance, users);
  const df = armDf(m);
  const half = de.sequential ? mixtureSprt(0, m.variance, de.tau2, alpha).halfWidth : (df !== undefined ? studentTCritical(alpha, df) : zCritical(s.confidence)) * Math.sqrt(m.variance);
  const high = m.value + half;
  return { low: Math.max(0, m.value - half), high: METRIC_FIELDS[metric].kind === "proportion" ? Math.min(1, high) : high };
}

/**
 * One arm's value of a metric with its interval (delta method over the user buckets, uncapped), in
 * the settings' mode: a confidence sequence when sequential. Proportions stay within [0, 1], rates
 * at or above 0. compareVariants gives every arm's intervals of the metrics as it tests them.
 */
export function ratioInterval(d: VariantData, metric: MetricName, s: Pick<ComparisonSettings, "confidence" | "sequential">): Interval | undefined {
  const m = armEstimate(d, metric);
  return m === undefined ? undefined : intervalOf(m, metric, s, d.users);
}
