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
 * Users, exactly (since issue 21): when every arm comes with its per-user totals (user-totals.ts:
 * the storage keeps them per hour and day, store/user-rollups.ts), the units are the users
 * themselves, not the 256 buckets: heavy users are capped (winsorized) at a pooled percentile and,
 * when asked, bots are left out before any test (user-totals.ts says how and why), CUPED pairs
 * each user with their own pre-period, and the latency guardrail's interval is taken over users.
 * Without per-user totals (a caller that has only buckets), the buckets are the units, uncapped,
 * as before; the answer says which (`capping.applied`).
 *
 * Few users: with per-user totals, an arm pair whose smaller arm has at most PERMUTATION_MAX_USERS
 * users is tested by a studentized permutation test over users (permutation.ts; exact up to 5,000
 * splits), valid at any size; above it, Student's t on (the smaller arm's users - 1) degrees of
 * freedom, which is the normal at these sizes. With buckets only, each arm's variance is rescaled
 * to the k buckets with data and fixed-horizon tests use Student's t on (the smaller arm's k - 1)
 * degrees of freedom. Below minUsers distinct users per arm (default DEFAULT_MIN_USERS, chosen by
 * calibration) nothing is recommended.
 *
 * Recommendation: the treatment with the largest significant (Holm-adjusted) positive search-CTR
 * lift whose guardrail is "ok"; the control when every treatment is significantly (adjusted)
 * worse; else none, with the reason. Nothing is recommended on an SRM or when none can be
 * computed, with too few impressions (minImpressions) or users (minUsers) per compared variant,
 * or when the guardrail is anything but "ok".
 */
import { cupedRatioDifference, deltaMethodRatio, flooredVariance, prePostSums, ratioSums, type RatioKind, type RatioMoments, type RatioSums } from "./delta-method.js";
import { InvalidArgumentError } from "./errors.js";
import { differenceTest, holmAdjust, independentArms, mixtureSprt, sequentialTau2, type DifferenceInput, type Design } from "./inference.js";
import { latencyGuardrail, type LatencyGuardrail, type LatencySketch } from "./latency-guardrail.js";
import { sampleRatioTest, zCritical, type Estimate, type Interval } from "./statistics.js";
import { studentTCritical } from "./student-t.js";
import { PERMUTATION_MAX_USERS, permutationTests, type PermutationMetric } from "./permutation.js";
import { USER_BUCKETS, type BucketSums } from "./user-buckets.js";
import { abandonedColumn, capIndexes, capInPlace, cappingSettings, column, keptUsers, pooledCap, unionSize, withResultsColumn, type UserTotals, type UserValues } from "./user-totals.js";

export const SRM_ALPHA = 0.001;

/** Confidence levels accepted: below 0.5 an interval is a coin toss, above 0.9999 the tails are beyond what the normal and mSPRT approximations are checked for. */
export const MIN_CONFIDENCE = 0.5;
export const MAX_CONFIDENCE = 0.9999;
/** expected_split weights accepted (any scale within it): a wider range makes an arm's expected count vanish and the SRM test meaningless. */
export const MIN_SPLIT_WEIGHT = 1e-6;
export const MAX_SPLIT_WEIGHT = 1e6;
/** Default of min_users: no recommendation while an arm has fewer distinct users (chosen by calibration, see docs/statistics.md). */
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
  /** Heavy users' totals are capped at this pooled percentile (user-totals.ts); 1 = no capping. */
  capPercentile: number;
  /** Users with more searches than this in a UTC day are left out of the ratio metrics; 0 = no bot rule. */
  botSearchesPerDay: number;
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
  latency?: LatencySketch | undefined;
  /** Shown when no latency histogram is given; never enough for the guardrail on its own. */
  p95ResponseTimeMs?: number | undefined;
  /** Exact per-user totals over the window: the users become the units, capped (see the file comment). */
  perUser?: UserTotals | undefined;
  /** The same users' totals over the pre-period (CUPED per user); users absent there count as 0. */
  prePerUser?: UserTotals | undefined;
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
const METRIC_FIELDS: Record<
  MetricName,
  { numerator: (b: BucketSums) => ArrayLike<number>; denominator: (b: BucketSums) => ArrayLike<number>; userNumerator: UserValues; userDenominator: UserValues; kind: RatioKind }
> = {
  searchCtr: { numerator: (b) => b.searchesWithClicks, denominator: (b) => b.impressions, userNumerator: column("searchesWithClicks"), userDenominator: column("impressions"), kind: "proportion" },
  ctr: { numerator: (b) => b.clicks, denominator: (b) => b.impressions, userNumerator: column("clicks"), userDenominator: column("impressions"), kind: "rate" },
  noResultsRate: { numerator: (b) => b.noResults, denominator: (b) => b.impressions, userNumerator: column("noResults"), userDenominator: column("impressions"), kind: "proportion" },
  mrr: { numerator: (b) => b.reciprocalRanks, denominator: withResults, userNumerator: column("reciprocalRanks"), userDenominator: withResultsColumn, kind: "proportion" },
  abandonmentRate: {
    numerator: (b) => withResults(b).map((n, i) => n - b.firstClicked[i]!),
    denominator: withResults,
    userNumerator: abandonedColumn,
    userDenominator: withResultsColumn,
    kind: "proportion",
  },
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

/** What capping and the bot rule did (user-totals.ts); `applied` false when the arms came without per-user totals. */
export interface Capping {
  /** The percentile in force; 1 = capping off. */
  percentile: number;
  /** Every arm had per-user totals: users were the units, capped. */
  applied: boolean;
  /** The bot rule's threshold (0 = off) and, per variant, the users it left out. */
  botSearchesPerDay: number;
  bots: Map<string, number>;
  metrics: Map<MetricName, MetricCapping>;
}

export interface MetricCapping {
  /** A user's numerator / denominator total above this counted as this; undefined with capping off or no users. */
  numeratorCap?: number | undefined;
  denominatorCap?: number | undefined;
  /** Per variant: users with either total above its cap, and the metric's value over the capped totals. */
  cappedUsers: Map<string, number>;
  values: Map<string, number | undefined>;
}

export interface Comparison {
  mode: "fixed horizon" | "sequential";
  comparisons: VariantVsControl[];
  /** Per variant, search CTR with its delta-method interval (same mode as the comparisons). */
  searchCtrIntervals: Map<string, Interval | undefined>;
  /** Per variant, every metric's interval around the rate it reports (all its users, uncapped; same mode as the comparisons). */
  intervals: Map<string, Partial<Record<MetricName, Interval>>>;
  capping: Capping;
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
  capPercentile?: number | undefined;
  botSearchesPerDay?: bigint | number | undefined;
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
  const { capPercentile, botSearchesPerDay } = cappingSettings(input);
  return {
    control: input.control || "search_v1",
    confidence,
    expectedSplit,
    latencyThreshold,
    minImpressions,
    minUsers,
    sequential: input.sequential ?? false,
    cuped: input.cuped ?? false,
    capPercentile,
    botSearchesPerDay,
  };
}

/** One arm's delta-method estimate, and its units with data (for small-sample inference). */
interface ArmMoments extends RatioMoments {
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
interface UserArm {
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
function userVariance(kind: RatioKind) {
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
function armEstimate(d: VariantData, metric: MetricName, user?: UserArm): ArmMoments | undefined {
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
function differenceInput(
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
function design(settings: Pick<ComparisonSettings, "confidence" | "sequential">, variance: number, units: number, df?: number): Design {
  return settings.sequential ? { sequential: true, tau2: sequentialTau2(variance, Math.max(units, 1), 1 - settings.confidence) } : { sequential: false, df };
}

function hasPrePeriod(d: VariantData): boolean {
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
function intervalOf(m: ArmMoments, metric: MetricName, s: Pick<ComparisonSettings, "confidence" | "sequential">, users: number): Interval {
  const alpha = 1 - s.confidence;
  const de = design(s, m.variance, users);
  const df = armDf(m);
  const critical = df !== undefined ? studentTCritical(alpha, df) : zCritical(s.confidence);
  const half = de.sequential ? mixtureSprt(0, m.variance, de.tau2, alpha).halfWidth : critical * Math.sqrt(m.variance);
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

/**
 * Per-user preparation of every arm (see the file comment): the bot rule, then each metric's
 * numerator and denominator totals capped at their percentile over the kept users of all arms
 * pooled. undefined unless every arm has per-user totals.
 */
function prepareUsers(arms: readonly (readonly [string, VariantData])[], s: ComparisonSettings): { users: Map<string, UserArm>; capping: Capping } | undefined {
  if (arms.length === 0 || arms.some(([, d]) => d.perUser === undefined)) return undefined;
  const users = new Map<string, UserArm>();
  const bots = new Map<string, number>();
  for (const [name, d] of arms) {
    const { kept, bots: left } = keptUsers(d.perUser!, s.botSearchesPerDay);
    users.set(name, { totals: d.perUser!, kept, bots: left, metrics: new Map() });
    bots.set(name, left);
  }
  // The pre-period (CUPED): the same kept users, found by id; a user without pre-period events counts as 0.
  const preValues = new Map<string, { totals: UserTotals; index: Uint32Array; present: Uint8Array }>();
  if (s.cuped) {
    for (const [name, d] of arms) {
      if (d.prePerUser === undefined) continue;
      const at = new Map<number, number>();
      for (let i = 0; i < d.prePerUser.ids.length; i++) at.set(d.prePerUser.ids[i]!, i);
      const u = users.get(name)!;
      const index = new Uint32Array(u.kept.length);
      const present = new Uint8Array(u.kept.length);
      for (let j = 0; j < u.kept.length; j++) {
        const i = at.get(d.perUser!.ids[u.kept[j]!]!);
        if (i !== undefined) {
          index[j] = i;
          present[j] = 1;
        }
      }
      preValues.set(name, { totals: d.prePerUser, index, present });
    }
  }
  // Each distinct per-user column (searches serve three metrics) is extracted and capped once.
  const cappedColumns = new Map<UserValues, { values: Float64Array[]; above: Uint32Array[]; cap: number | undefined }>();
  const capped = (values: UserValues) => {
    let c = cappedColumns.get(values);
    if (c === undefined) {
      const perArm = arms.map(([name]) => values(users.get(name)!.totals, users.get(name)!.kept));
      const cap = pooledCap(perArm, s.capPercentile);
      cappedColumns.set(values, (c = { values: perArm, above: perArm.map((a) => capIndexes(a, cap)), cap }));
    }
    return c;
  };
  const metrics = new Map<MetricName, MetricCapping>();
  for (const metric of METRICS) {
    const { userNumerator, userDenominator } = METRIC_FIELDS[metric];
    const num = capped(userNumerator);
    const den = capped(userDenominator);
    const cappedUsers = new Map<string, number>();
    const values = new Map<string, number | undefined>();
    arms.forEach(([name], k) => {
      // Users with either total above its cap (indexes of each, ascending).
      cappedUsers.set(name, unionSize(num.above[k]!, den.above[k]!));
      users.get(name)!.metrics.set(metric, { num: num.values[k]!, den: den.values[k]! });
      const sums = ratioSums(num.values[k]!, den.values[k]!);
      values.set(name, sums.denominator > 0 ? sums.numerator / sums.denominator : undefined);
    });
    metrics.set(metric, { numeratorCap: num.cap, denominatorCap: den.cap, cappedUsers, values });
    // The pre-period's totals of the same users, capped at the pre-period's own pooled percentile.
    const withPre = arms.filter(([name]) => preValues.has(name));
    if (withPre.length > 0) {
      const pre = withPre.map(([name]) => {
        const p = preValues.get(name)!;
        const num = userNumerator(p.totals, p.index);
        const den = userDenominator(p.totals, p.index);
        for (let j = 0; j < p.present.length; j++) if (!p.present[j]) num[j] = den[j] = 0;
        return { name, num, den };
      });
      const preNumCap = pooledCap(pre.map((x) => x.num), s.capPercentile);
      const preDenCap = pooledCap(pre.map((x) => x.den), s.capPercentile);
      for (const x of pre) {
        capInPlace(x.num, preNumCap);
        capInPlace(x.den, preDenCap);
        const u = users.get(x.name)!;
        (u.pre ??= new Map()).set(metric, { num: x.num, den: x.den });
      }
    }
  }
  return { users, capping: { percentile: s.capPercentile, applied: true, botSearchesPerDay: s.botSearchesPerDay, bots, metrics } };
}

/**
 * The permutation tests of one comparison (every metric on the same splits), or undefined when
 * they do not apply: sequential, CUPED, buckets only, or more than PERMUTATION_MAX_USERS users in
 * the smaller arm.
 */
function smallSampleTests(tu: UserArm | undefined, cu: UserArm | undefined, s: ComparisonSettings, cupedApplied: boolean): Map<MetricName, { pValue: number; critical: number }> | undefined {
  if (tu === undefined || cu === undefined || s.sequential || cupedApplied) return undefined;
  if (Math.min(tu.kept.length, cu.kept.length) > PERMUTATION_MAX_USERS) return undefined;
  const metrics: MetricName[] = [];
  const inputs: PermutationMetric[] = [];
  for (const metric of METRICS) {
    const t = tu.metrics.get(metric)!;
    const c = cu.metrics.get(metric)!;
    metrics.push(metric);
    inputs.push({ treatment: t, control: c, variance: userVariance(METRIC_FIELDS[metric].kind) });
  }
  const results = permutationTests(inputs, 1 - s.confidence);
  const out = new Map<MetricName, { pValue: number; critical: number }>();
  results.forEach((r, k) => {
    if (r !== undefined) out.set(metrics[k]!, { pValue: r.pValue, critical: r.critical });
  });
  return out;
}

/** A permutation design for `input`, its critical value nudged off |t| so that the interval and the p-value can never disagree by rounding. */
function permutationDesign(input: DifferenceInput, r: { pValue: number; critical: number }, alpha: number): Design {
  const se = Math.sqrt(input.variance);
  const t = Math.abs(input.difference) / se;
  let critical = r.critical;
  if (r.pValue >= alpha && critical * se <= Math.abs(input.difference)) critical = t * (1 + 1e-9);
  if (r.pValue < alpha && critical * se >= Math.abs(input.difference)) critical = t * (1 - 1e-9);
  return { sequential: false, permutation: { pValue: r.pValue, critical } };
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

  // Per-user preparation (bots, caps) over every arm with data; else the buckets.
  const prepared = prepareUsers(withData, s);
  const userArm = (name: string) => prepared?.users.get(name);
  const capping: Capping = prepared?.capping ?? { percentile: s.capPercentile, applied: false, botSearchesPerDay: s.botSearchesPerDay, bots: new Map(), metrics: new Map() };

  // Per-variant intervals of every metric, in the same mode as the comparisons, about the rates
  // the variants report: over all their users, uncapped (an interval of the capped metric beside
  // the uncapped rate need not contain it). The comparisons below are of the capped metrics.
  const reported = prepared !== undefined && (s.capPercentile < 1 || s.botSearchesPerDay > 0) ? prepareUsers(withData, { ...s, capPercentile: 1, botSearchesPerDay: 0 }) : prepared;
  const intervals = new Map<string, Partial<Record<MetricName, Interval>>>();
  for (const [name, d] of data) {
    const row: Partial<Record<MetricName, Interval>> = {};
    for (const metric of METRICS) {
      const m = armEstimate(d, metric, reported?.users.get(name));
      if (m !== undefined) row[metric] = intervalOf(m, metric, s, d.users);
    }
    intervals.set(name, row);
  }
  const searchCtrIntervals = new Map([...data].map(([name]) => [name, intervals.get(name)!.searchCtr]));

  const control = data.get(s.control);
  const treatments = control && control.impressions > 0 ? withData.filter(([name, d]) => name !== s.control && d.impressions > 0) : [];
  const cupedPossible = (d: VariantData) => s.cuped && control !== undefined && hasPrePeriod(d) && hasPrePeriod(control);

  // Raw tests per metric and treatment, then Holm over the treatments of each metric.
  const tests = treatments.map(([name, d]) => {
    const perMetric = new Map<MetricName, { test: ReturnType<typeof differenceTest>; varianceReduction?: number | undefined }>();
    const prepared = new Map<MetricName, NonNullable<ReturnType<typeof differenceInput>>>();
    for (const metric of METRICS) {
      const p = differenceInput(d, control!, metric, cupedPossible(d), userArm(name), userArm(s.control));
      if (p !== undefined) prepared.set(metric, p);
    }
    const cupedApplied = [...prepared.values()].some((p) => p.varianceReduction !== undefined);
    const small = smallSampleTests(userArm(name), userArm(s.control), s, cupedApplied);
    for (const [metric, p] of prepared) {
      const permutation = small?.get(metric);
      const de = permutation !== undefined ? permutationDesign(p.input, permutation, alpha) : design(s, p.input.variance, d.users + control!.users, p.df);
      perMetric.set(metric, { test: differenceTest(p.input, s.confidence, de), varianceReduction: p.varianceReduction });
    }
    return { name, d, perMetric };
  });
  const adjusted = new Map<MetricName, Map<string, number>>();
  for (const metric of METRICS) {
    const rows = tests.filter((t) => t.perMetric.has(metric));
    const ps = holmAdjust(rows.map((t) => t.perMetric.get(metric)!.test.pValue));
    adjusted.set(metric, new Map(rows.map((t, i) => [t.name, ps[i]!])));
  }

  // The latency guardrail over users when per-user latencies are known (every user, bots included: their searches were served).
  const latencyOf = (d: VariantData): VariantData["latency"] =>
    d.latency !== undefined && d.perUser?.latencyBelow !== undefined ? { ...d.latency, users: { searches: d.perUser.impressions, below: d.perUser.latencyBelow } } : d.latency;

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
      latency: latencyGuardrail(latencyOf(d), latencyOf(control!), s.confidence, s.latencyThreshold),
    };
  });

  const trustworthy = srm !== undefined && !srmDetected;
  const result = { mode: s.sequential ? ("sequential" as const) : ("fixed horizon" as const), comparisons, searchCtrIntervals, intervals, capping, sampleRatio, srmPValue: srm?.pValue, srmDetected, trustworthy };
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
