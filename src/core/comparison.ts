/**
 * The A/B decision: each variant against the control on search-level CTR (a proportion of
 * searches) and CTR (a rate of clicks per search), a sample-ratio check of the split, a latency
 * guardrail, and a recommendation that says why when it has none.
 */
import { InvalidArgumentError } from "./errors.js";
import {
  poissonRateTest,
  proportionDifference,
  proportionRelativeLift,
  rateDifference,
  rateRelativeLift,
  sampleRatioTest,
  twoProportionZTest,
  wilsonInterval,
  type Estimate,
  type Interval,
} from "./statistics.js";

export const SRM_ALPHA = 0.001;

export interface ComparisonSettings {
  control: string;
  confidence: number;
  /** Variant -> weight; empty means an equal split. */
  expectedSplit: ReadonlyMap<string, number>;
  latencyThreshold: number;
  minImpressions: number;
}

export interface VariantData {
  impressions: number;
  clicks: number;
  searchesWithClicks: number;
  p95ResponseTimeMs?: number | undefined;
}

export interface VariantVsControl {
  variant: string;
  searchCtrLift?: Estimate | undefined;
  searchCtrRelativeLift?: Estimate | undefined;
  ctrLift?: Estimate | undefined;
  ctrRelativeLift?: Estimate | undefined;
  searchCtrPValue?: number | undefined;
  ctrPValue?: number | undefined;
  searchCtrSignificant: boolean;
  ctrSignificant: boolean;
  p95LatencyDiffMs?: number | undefined;
  p95LatencyRelativeDiff?: number | undefined;
  latencyRegression: boolean;
}

export type NoRecommendation = "insufficient data" | "srm" | "latency regression" | "not significant";

export interface Comparison {
  comparisons: VariantVsControl[];
  searchCtrIntervals: Map<string, Interval | undefined>;
  srmPValue?: number | undefined;
  srmDetected: boolean;
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
}): ComparisonSettings {
  const confidence = input.confidence ?? 0.95;
  if (!(confidence > 0 && confidence < 1)) throw new InvalidArgumentError("confidence", `must be between 0 and 1 (exclusive), got ${confidence}`);
  const latencyThreshold = input.latencyThreshold ?? 0.1;
  if (!Number.isFinite(latencyThreshold) || latencyThreshold < 0) throw new InvalidArgumentError("latency_threshold", `must be a finite fraction >= 0, got ${latencyThreshold}`);
  const minImpressions = Number(input.minImpressions ?? 100);
  if (!Number.isSafeInteger(minImpressions) || minImpressions < 0) throw new InvalidArgumentError("min_impressions", `must be a non-negative integer, got ${minImpressions}`);
  const expectedSplit = new Map<string, number>();
  for (const [variant, weight] of Object.entries(input.expectedSplit)) {
    if (!Number.isFinite(weight) || weight <= 0) throw new InvalidArgumentError(`expected_split[${variant}]`, `must be a positive weight, got ${weight}`);
    expectedSplit.set(variant, weight);
  }
  return { control: input.control || "search_v1", confidence, expectedSplit, latencyThreshold, minImpressions };
}

function againstControl(variant: string, v: VariantData, c: VariantData, s: ComparisonSettings): VariantVsControl {
  const alpha = 1 - s.confidence;
  const proportionTest = twoProportionZTest(c.searchesWithClicks, c.impressions, v.searchesWithClicks, v.impressions);
  const rateTest = poissonRateTest(c.clicks, c.impressions, v.clicks, v.impressions);
  const p95Diff = v.p95ResponseTimeMs !== undefined && c.p95ResponseTimeMs !== undefined ? v.p95ResponseTimeMs - c.p95ResponseTimeMs : undefined;
  const p95Relative = p95Diff !== undefined && c.p95ResponseTimeMs! > 0 ? p95Diff / c.p95ResponseTimeMs! : undefined;
  return {
    variant,
    searchCtrLift: proportionDifference(c.searchesWithClicks, c.impressions, v.searchesWithClicks, v.impressions, s.confidence),
    searchCtrRelativeLift: proportionRelativeLift(c.searchesWithClicks, c.impressions, v.searchesWithClicks, v.impressions, s.confidence),
    ctrLift: rateDifference(c.clicks, c.impressions, v.clicks, v.impressions, s.confidence),
    ctrRelativeLift: rateRelativeLift(c.clicks, c.impressions, v.clicks, v.impressions, s.confidence),
    searchCtrPValue: proportionTest?.pValue,
    ctrPValue: rateTest?.pValue,
    searchCtrSignificant: proportionTest !== undefined && proportionTest.pValue < alpha,
    ctrSignificant: rateTest !== undefined && rateTest.pValue < alpha,
    p95LatencyDiffMs: p95Diff,
    p95LatencyRelativeDiff: p95Relative,
    latencyRegression: p95Relative !== undefined && p95Relative > s.latencyThreshold,
  };
}

/** Compares every variant with impressions against the control and recommends one, or says why not. */
export function compareVariants(data: ReadonlyMap<string, VariantData>, s: ComparisonSettings): Comparison {
  const withImpressions = [...data].filter(([, d]) => d.impressions > 0).sort(([a], [b]) => a.localeCompare(b));
  const searchCtrIntervals = new Map([...data].map(([name, d]) => [name, wilsonInterval(d.searchesWithClicks, d.impressions, s.confidence)]));
  const missing = withImpressions.filter(([name]) => s.expectedSplit.size > 0 && !s.expectedSplit.has(name)).map(([name]) => name);
  if (missing.length > 0) throw new InvalidArgumentError("expected_split", `must give a weight for every variant with impressions (missing: ${missing.join(", ")})`);

  // The split: every variant expected (or, by default, every variant with impressions).
  const splitNames = s.expectedSplit.size > 0 ? [...s.expectedSplit.keys()].sort() : withImpressions.map(([name]) => name);
  const srm = sampleRatioTest(
    splitNames.map((name) => data.get(name)?.impressions ?? 0),
    splitNames.map((name) => s.expectedSplit.get(name) ?? 1),
  );
  const srmDetected = srm !== undefined && srm.pValue < SRM_ALPHA;

  const control = data.get(s.control);
  const comparisons = control && control.impressions > 0 ? withImpressions.filter(([name]) => name !== s.control).map(([name, d]) => againstControl(name, d, control, s)) : [];
  const result = { comparisons, searchCtrIntervals, srmPValue: srm?.pValue, srmDetected };

  const none = (reason: NoRecommendation): Comparison => ({ ...result, recommendation: "", reason });
  if (!control || control.impressions === 0 || comparisons.length === 0) return none("insufficient data");
  if (withImpressions.some(([, d]) => d.impressions < s.minImpressions)) return none("insufficient data");
  if (srmDetected) return none("srm");
  const better = comparisons.filter((x) => x.searchCtrSignificant && (x.searchCtrLift?.value ?? 0) > 0);
  const shippable = better.filter((x) => !x.latencyRegression);
  if (shippable.length > 0) {
    const best = shippable.reduce((a, b) => ((b.searchCtrLift?.value ?? 0) > (a.searchCtrLift?.value ?? 0) ? b : a));
    return { ...result, recommendation: best.variant, reason: "significant lift" };
  }
  if (better.length > 0) return none("latency regression");
  if (comparisons.every((x) => x.searchCtrSignificant && (x.searchCtrLift?.value ?? 0) < 0)) return { ...result, recommendation: s.control, reason: "control is better" };
  return none("not significant");
}
