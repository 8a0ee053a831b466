/**
 * What the A/B decision (comparison.ts) takes and gives: its settings and their limits, each
 * variant's data, the metrics and how each is a ratio of bucket or user sums, and the shape of
 * its answer.
 */
import type { RatioKind } from "./delta-method.js";
import { InvalidArgumentError } from "./errors.js";
import type { LatencyGuardrail, LatencySketch } from "./latency-guardrail.js";
import type { Estimate, Interval } from "./statistics.js";
import type { BucketSums } from "./user-buckets.js";
import { abandonedColumn, cappingSettings, column, withResultsColumn, type UserTotals, type UserValues } from "./user-totals.js";

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
export const METRIC_FIELDS: Record<
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
