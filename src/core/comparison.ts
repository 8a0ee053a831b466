/**
 * The A/B decision: each treatment against the control on search CTR (searches with a click /
 * searches), CTR (clicks / searches), no-results rate, MRR of the first click and abandonment
 * rate (over searches with results, see first-click.ts), at the unit of randomisation (the
 * user, through hashed user buckets); a sample-ratio check on users; a latency guardrail with
 * uncertainty; Holm-adjusted decisions over several treatments; and a recommendation that says
 * why when it has none.
 *
 * Methods (each file says why and cites its sources):
 * - delta-method.ts: ratio estimates and variances over the 256 user buckets, CUPED;
 * - inference.ts: one normal model per metric for estimate, interval, p-value and Fieller's
 *   relative interval, fixed horizon (default) or always-valid sequential (mixture SPRT), Holm,
 *   the minimum detectable effect at 80% power;
 * - latency-guardrail.ts: order-statistic intervals for p95.
 *
 * Sample ratio: Pearson's chi-square of exact distinct users per arm against the expected
 * split, every expected arm included (an expected arm without users is a mismatch), at
 * SRM_ALPHA. Users, not searches: users are what is randomised, and a heavy user moves an arm's
 * searches by hundreds. Users seen in several arms (an assignment leak) are reported with their
 * share of distinct users (sum of arm users minus the leaked ones, exact when each leaked user is
 * in two arms).
 *
 * Few users: with fewer than 256 buckets holding an arm's data, each arm's variance is rescaled
 * to the k buckets with data and fixed-horizon tests use Student's t on (the smaller arm's k - 1)
 * degrees of freedom; below minUsers distinct users per arm (default DEFAULT_MIN_USERS, chosen by
 * calibration) nothing is recommended.
 *
 * Recommendation: the treatment with the largest significant (Holm-adjusted) positive search-CTR
 * lift whose guardrail is "ok"; the control when every treatment is significantly (adjusted)
 * worse; else none, with the reason. Nothing is recommended on an SRM or when none can be
 * computed, with too few impressions (minImpressions) or users (minUsers) per compared variant,
 * or when the guardrail is anything but "ok".
 */
import { cupedRatioDifference, deltaMethodRatio, flooredVariance, prePostSums, ratioSums, type RatioKind, type RatioMoments } from "./delta-method.js";
import { InvalidArgumentError } from "./errors.js";
import { differenceTest, holmAdjust, independentArms, mixtureSprt, sequentialTau2, type DifferenceInput, type Design } from "./inference.js";
import { latencyGuardrail, type LatencyGuardrail } from "./latency-guardrail.js";
import { sampleRatioTest, zCritical, type Estimate, type Interval } from "./statistics.js";
import { studentTCritical } from "./student-t.js";
import { USER_BUCKETS, type BucketSums } from "./user-buckets.js";

export const SRM_ALPHA = 0.001;

/** Confidence levels accepted: below 0.5 an interval is a coin toss, above 0.9999 the tails are beyond what the normal and mSPRT approximations are checked for. */
export const MIN_CONFIDENCE = 0.5;
export const MAX_CONFIDENCE = 0.9999;
/** expected_split weights accepted (any scale within it): a wider range makes an arm's expected count vanish and the SRM test meaningless. */
export const MIN_SPLIT_WEIGHT = 1e-6;
export const MAX_SPLIT_WEIGHT = 1e6;
/** Default of min_users: no recommendation while an arm has fewer distinct users (chosen by calibration, see the README). */
export const DEFAULT_MIN_USERS = 100;

export interface ComparisonSettings {
  control: string;
  confidence: number;
  /** Variant -> weight; empty means an equal split over the variants with data. */
  expectedSplit: ReadonlyMap<string, number>;
  latencyThreshold: number;
  minImpressions: number;
  /** Fewer distinct users than this in an arm: never recommended (and with the control below it, nothing is). */
  minUsers: number;
  /** Always-valid p-values and confidence sequences (mixture SPRT) instead of fixed-horizon ones. */
  sequential: boolean;
  /** CUPED with each bucket's pre-period sums, where both arms have them. */
  cuped: boolean;
}

export interface VariantData {
  impressions: number;
  clicks: number;
  searchesWithClicks: number;
  noResults: number;
  /** Exact distinct users. */
  users: number;
  buckets: BucketSums;
  /** The same buckets over the pre-period, for CUPED. */
  pre?: BucketSums | undefined;
  latency?: { histogram: ReadonlyMap<number, number>; bounds?: { min: number; max: number } | undefined } | undefined;
  /** Shown when no latency histogram is given; never enough for the guardrail on its own. */
  p95ResponseTimeMs?: number | undefined;
}

export type MetricName = "searchCtr" | "ctr" | "noResultsRate" | "mrr" | "abandonmentRate";
export const METRICS: readonly MetricName[] = ["searchCtr", "ctr", "noResultsRate", "mrr", "abandonmentRate"];

/** Searches with results per bucket: searches minus no-result searches. */
const withResults = (b: BucketSums) => b.impressions.map((n, i) => n - b.noResults[i]!);

/**
 * Each metric's numerator and denominator per user bucket, and whether it is a proportion or a
 * rate. MRR (reciprocal ranks of first clicks, each at most 1) and abandonment (searches with
 * results and no click) are over searches with results (core/first-click.ts).
 */
const METRIC_FIELDS: Record<MetricName, { numerator: (b: BucketSums) => ArrayLike<number>; denominator: (b: BucketSums) => ArrayLike<number>; kind: RatioKind }> = {
  searchCtr: { numerator: (b) => b.searchesWithClicks, denominator: (b) => b.impressions, kind: "proportion" },
  ctr: { numerator: (b) => b.clicks, denominator: (b) => b.impressions, kind: "rate" },
  noResultsRate: { numerator: (b) => b.noResults, denominator: (b) => b.impressions, kind: "proportion" },
  mrr: { numerator: (b) => b.reciprocalRanks, denominator: withResults, kind: "proportion" },
  abandonmentRate: { numerator: (b) => withResults(b).map((n, i) => n - b.firstClicked[i]!), denominator: withResults, kind: "proportion" },
};

export interface MetricComparison {
  /** Treatment - control, with its interval (a confidence sequence when sequential). */
  lift: Estimate;
  /** Treatment / control - 1 with Fieller's interval; undefined when the control is indistinguishable from 0. */
  relativeLift?: Estimate | undefined;
  pValue: number;
  /** Holm-adjusted over the treatments compared on this metric. */
  adjustedPValue: number;
  /** pValue < alpha, exactly when `lift` (and `relativeLift`) excludes 0. */
  significant: boolean;
  significantAdjusted: boolean;
  /** Minimum detectable effect at 80% power for the current sample, absolute and relative to the control. */
  mde: number;
  relativeMde?: number | undefined;
  /** 1 - V_adjusted / V_unadjusted when CUPED was applied to this metric. */
  cupedVarianceReduction?: number | undefined;
}

export type CupedStatus = "applied" | "not requested" | "no pre-period data";

export interface VariantVsControl {
  variant: string;
  /** Both arms have at least minImpressions and minUsers. */
  enoughData: boolean;
  searchCtr?: MetricComparison | undefined;
  ctr?: MetricComparison | undefined;
  noResultsRate?: MetricComparison | undefined;
  mrr?: MetricComparison | undefined;
  abandonmentRate?: MetricComparison | undefined;
  cuped: CupedStatus;
  latency: LatencyGuardrail;
}

export interface SampleRatio {
  pValue?: number | undefined;
  detected: boolean;
  /** Exact distinct users of each arm of the split. */
  users: Map<string, number>;
  usersInSeveralArms?: number | undefined;
  /** usersInSeveralArms over distinct users. */
  usersInSeveralArmsShare?: number | undefined;
}

export type NoRecommendation = "insufficient data" | "srm" | "latency regression" | "latency inconclusive" | "latency insufficient data" | "not significant";

export interface Comparison {
  mode: "fixed horizon" | "sequential";
  comparisons: VariantVsControl[];
  /** Per variant, search CTR with its delta-method interval (same mode as the comparisons). */
  searchCtrIntervals: Map<string, Interval | undefined>;
  sampleRatio: SampleRatio;
  srmPValue?: number | undefined;
  srmDetected: boolean;
  /** The SRM test could be computed and found no mismatch: an SRM that cannot be computed is never trustworthy. */
  trustworthy: boolean;
  recommendation: string;
  reason: NoRecommendation | "significant lift" | "control is better";
}

/** Request settings with their defaults, validated. */
export function comparisonSettings(input: {
  control: string;
  confidence?: number | undefined;
  expectedSplit: Record<string, number>;
  latencyThreshold?: number | undefined;
  minImpressions?: bigint | number | undefined;
  minUsers?: bigint | number | undefined;
  sequential?: boolean | undefined;
  cuped?: boolean | undefined;
}): ComparisonSettings {
  const confidence = input.confidence ?? 0.95;
  if (!(confidence >= MIN_CONFIDENCE && confidence <= MAX_CONFIDENCE)) throw new InvalidArgumentError("confidence", `must be between ${MIN_CONFIDENCE} and ${MAX_CONFIDENCE} (inclusive), got ${confidence}`);
  const latencyThreshold = input.latencyThreshold ?? 0.1;
  if (!Number.isFinite(latencyThreshold) || latencyThreshold < 0) throw new InvalidArgumentError("latency_threshold", `must be a finite fraction >= 0, got ${latencyThreshold}`);
  const minImpressions = Number(input.minImpressions ?? 100);
  if (!Number.isSafeInteger(minImpressions) || minImpressions < 0) throw new InvalidArgumentError("min_impressions", `must be a non-negative integer, got ${minImpressions}`);
  const minUsers = Number(input.minUsers ?? DEFAULT_MIN_USERS);
  if (!Number.isSafeInteger(minUsers) || minUsers < 2) throw new InvalidArgumentError("min_users", `must be an integer >= 2 (no test can be made on fewer users), got ${minUsers}`);
  const expectedSplit = new Map<string, number>();
  for (const [variant, weight] of Object.entries(input.expectedSplit)) {
    if (!(weight >= MIN_SPLIT_WEIGHT && weight <= MAX_SPLIT_WEIGHT)) throw new InvalidArgumentError(`expected_split[${variant}]`, `must be a finite weight between ${MIN_SPLIT_WEIGHT} and ${MAX_SPLIT_WEIGHT}, got ${weight}`);
    expectedSplit.set(variant, weight);
  }
  return {
    control: input.control || "search_v1",
    confidence,
    expectedSplit,
    latencyThreshold,
    minImpressions,
    minUsers,
    sequential: input.sequential ?? false,
    cuped: input.cuped ?? false,
  };
}

/** One arm's delta-method estimate, and the user buckets with data (its units for small-sample inference). */
interface ArmMoments extends RatioMoments {
  unitsWithData: number;
}

/**
 * One arm's floored delta-method estimate of a metric; undefined without impressions. With fewer
 * than USER_BUCKETS buckets holding data (few users: a bucket is then about one user), the
 * variance over all 256 buckets, n / (n - 1) sum L^2, is rescaled to the k buckets with data,
 * k / (k - 1) sum L^2: at 2 users it would otherwise be half what it is.
 */
function armEstimate(d: VariantData, metric: MetricName): ArmMoments | undefined {
  const { numerator, denominator, kind } = METRIC_FIELDS[metric];
  const den = denominator(d.buckets);
  const raw = deltaMethodRatio(ratioSums(numerator(d.buckets), den));
  if (raw === undefined) return undefined;
  let k = 0;
  for (let i = 0; i < den.length; i++) if (den[i]! > 0) k++;
  const n = raw.units;
  const correction = k >= 2 && k < n ? (k / (k - 1)) * ((n - 1) / n) : 1;
  return { ...raw, variance: flooredVariance(kind, raw.variance * correction, raw.numerator, raw.denominator, "degenerate"), unitsWithData: k };
}

/** Degrees of freedom of an arm for Student's t: undefined (the normal) when every bucket has data. */
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
function differenceInput(t: VariantData, c: VariantData, metric: MetricName, cuped: boolean): { input: DifferenceInput; varianceReduction?: number; df: number | undefined } | undefined {
  const tm = armEstimate(t, metric);
  const cm = armEstimate(c, metric);
  if (tm === undefined || cm === undefined) return undefined;
  if (cuped && t.pre !== undefined && c.pre !== undefined) {
    const { numerator, denominator, kind } = METRIC_FIELDS[metric];
    const sums = (d: VariantData) => prePostSums(numerator(d.buckets), denominator(d.buckets), numerator(d.pre!), denominator(d.pre!));
    const r = cupedRatioDifference(sums(t), sums(c));
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
function design(settings: Pick<ComparisonSettings, "confidence" | "sequential">, variance: number, units: number, df?: number): Design {
  return settings.sequential ? { sequential: true, tau2: sequentialTau2(variance, Math.max(units, 1), 1 - settings.confidence) } : { sequential: false, df };
}

function hasPrePeriod(d: VariantData): boolean {
  if (d.pre === undefined) return false;
  let total = 0;
  for (const x of d.pre.impressions) total += x;
  return total > 0;
}

/**
 * One arm's value of a metric with its interval (delta method over the user buckets), in the
 * settings' mode: a confidence sequence when sequential. Proportions stay within [0, 1], rates at or above 0.
 */
export function ratioInterval(d: VariantData, metric: MetricName, s: Pick<ComparisonSettings, "confidence" | "sequential">): Interval | undefined {
  const m = armEstimate(d, metric);
  if (m === undefined) return undefined;
  const alpha = 1 - s.confidence;
  const de = design(s, m.variance, d.users);
  const df = armDf(m);
  const critical = df !== undefined ? studentTCritical(alpha, df) : zCritical(s.confidence);
  const half = de.sequential ? mixtureSprt(0, m.variance, de.tau2, alpha).halfWidth : critical * Math.sqrt(m.variance);
  const high = m.value + half;
  return { low: Math.max(0, m.value - half), high: METRIC_FIELDS[metric].kind === "proportion" ? Math.min(1, high) : high };
}

/** Compares every treatment with data against the control and recommends one, or says why not. */
export function compareVariants(data: ReadonlyMap<string, VariantData>, settings: ComparisonSettings, usersInSeveralArms?: number): Comparison {
  const s = settings;
  const alpha = 1 - s.confidence;
  const withData = [...data].filter(([, d]) => d.impressions > 0 || d.users > 0).sort(([a], [b]) => a.localeCompare(b));
  const missing = withData.filter(([name]) => s.expectedSplit.size > 0 && !s.expectedSplit.has(name)).map(([name]) => name);
  if (missing.length > 0) throw new InvalidArgumentError("expected_split", `must give a weight for every variant with impressions (missing: ${missing.join(", ")})`);

  // Sample ratio on users, every expected arm included.
  const splitNames = s.expectedSplit.size > 0 ? [...s.expectedSplit.keys()].sort() : withData.map(([name]) => name);
  const users = new Map(splitNames.map((name) => [name, data.get(name)?.users ?? 0]));
  const srm = sampleRatioTest(
    splitNames.map((name) => users.get(name)!),
    splitNames.map((name) => s.expectedSplit.get(name) ?? 1),
  );
  const srmDetected = srm !== undefined && srm.pValue < SRM_ALPHA;
  const totalUsers = [...data.values()].reduce((sum, d) => sum + d.users, 0);
  const distinctUsers = usersInSeveralArms !== undefined ? totalUsers - usersInSeveralArms : undefined;
  const sampleRatio: SampleRatio = {
    pValue: srm?.pValue,
    detected: srmDetected,
    users,
    usersInSeveralArms,
    usersInSeveralArmsShare: distinctUsers !== undefined && distinctUsers > 0 ? usersInSeveralArms! / distinctUsers : undefined,
  };

  // Per-variant search CTR intervals, in the same mode as the comparisons.
  const searchCtrIntervals = new Map([...data].map(([name, d]) => [name, ratioInterval(d, "searchCtr", s)]));

  const control = data.get(s.control);
  const treatments = control && control.impressions > 0 ? withData.filter(([name, d]) => name !== s.control && d.impressions > 0) : [];
  const cupedPossible = (d: VariantData) => s.cuped && control !== undefined && hasPrePeriod(d) && hasPrePeriod(control);

  // Raw tests per metric and treatment, then Holm over the treatments of each metric.
  const tests = treatments.map(([name, d]) => {
    const perMetric = new Map<MetricName, { test: ReturnType<typeof differenceTest>; varianceReduction?: number | undefined }>();
    for (const metric of METRICS) {
      const prepared = differenceInput(d, control!, metric, cupedPossible(d));
      if (prepared === undefined) continue;
      const test = differenceTest(prepared.input, s.confidence, design(s, prepared.input.variance, d.users + control!.users, prepared.df));
      perMetric.set(metric, { test, varianceReduction: prepared.varianceReduction });
    }
    return { name, d, perMetric };
  });
  const adjusted = new Map<MetricName, Map<string, number>>();
  for (const metric of METRICS) {
    const rows = tests.filter((t) => t.perMetric.has(metric));
    const ps = holmAdjust(rows.map((t) => t.perMetric.get(metric)!.test.pValue));
    adjusted.set(metric, new Map(rows.map((t, i) => [t.name, ps[i]!])));
  }

  const comparisons: VariantVsControl[] = tests.map(({ name, d, perMetric }) => {
    const metricResult = (metric: MetricName): MetricComparison | undefined => {
      const r = perMetric.get(metric);
      if (r === undefined) return undefined;
      const adjustedPValue = adjusted.get(metric)!.get(name)!;
      return {
        lift: r.test.difference,
        relativeLift: r.test.relative,
        pValue: r.test.pValue,
        adjustedPValue,
        significant: r.test.significant,
        significantAdjusted: adjustedPValue < alpha,
        mde: r.test.mde.absolute,
        relativeMde: r.test.mde.relative,
        cupedVarianceReduction: r.varianceReduction,
      };
    };
    const cuped: CupedStatus = !s.cuped ? "not requested" : cupedPossible(d) && [...perMetric.values()].some((r) => r.varianceReduction !== undefined) ? "applied" : "no pre-period data";
    return {
      variant: name,
      enoughData: d.impressions >= s.minImpressions && control!.impressions >= s.minImpressions && d.users >= s.minUsers && control!.users >= s.minUsers,
      searchCtr: metricResult("searchCtr"),
      ctr: metricResult("ctr"),
      noResultsRate: metricResult("noResultsRate"),
      mrr: metricResult("mrr"),
      abandonmentRate: metricResult("abandonmentRate"),
      cuped,
      latency: latencyGuardrail(d.latency, control!.latency, s.confidence, s.latencyThreshold),
    };
  });

  const trustworthy = srm !== undefined && !srmDetected;
  const result = { mode: s.sequential ? ("sequential" as const) : ("fixed horizon" as const), comparisons, searchCtrIntervals, sampleRatio, srmPValue: srm?.pValue, srmDetected, trustworthy };
  const none = (reason: NoRecommendation): Comparison => ({ ...result, recommendation: "", reason });
  if (!control || control.impressions < s.minImpressions || control.users < s.minUsers || comparisons.length === 0) return none("insufficient data");
  const eligible = comparisons.filter((x) => x.enoughData && x.searchCtr !== undefined);
  if (eligible.length === 0) return none("insufficient data");
  if (!trustworthy) return none("srm");
  const better = eligible.filter((x) => x.searchCtr!.significantAdjusted && x.searchCtr!.lift.value > 0);
  const shippable = better.filter((x) => x.latency.status === "ok");
  if (shippable.length > 0) {
    const best = shippable.reduce((a, b) => (b.searchCtr!.lift.value > a.searchCtr!.lift.value ? b : a));
    return { ...result, recommendation: best.variant, reason: "significant lift" };
  }
  if (better.some((x) => x.latency.status === "regression")) return none("latency regression");
  if (better.some((x) => x.latency.status === "inconclusive")) return none("latency inconclusive");
  if (better.length > 0) return none("latency insufficient data");
  if (eligible.length === comparisons.length && comparisons.every((x) => x.searchCtr!.significantAdjusted && x.searchCtr!.lift.value < 0)) {
    return { ...result, recommendation: s.control, reason: "control is better" };
  }
  return none("not significant");
}
