/** GetVariantComparison: gathering each arm's data from the metrics source, and shaping the answer. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Inference, LatencyStatus, type GetVariantComparisonRequest, type GetVariantComparisonResponseSchema } from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import { compareVariants } from "../core/comparison.js";
import { comparisonSettings, type Capping, type MetricCapping, type MetricComparison, type VariantData } from "../core/comparison-model.js";
import { requireVariant } from "../core/events.js";
import { p95Interval, type GuardrailStatus } from "../core/latency-guardrail.js";
import { ratio, winnerByCtr } from "../core/metrics.js";
import { latencyQuantiles } from "../core/sketches.js";
import type { TimeWindow } from "../core/window.js";
import { type ArmsBreakdown, type EventTotals, type MetricsFilter, type MetricsSource, RESULTS_COUNT_CAP } from "../store/click-store.js";
import { ComposedCache } from "../core/composed-cache.js";
import { clicksOverExpected, ctrByRank, searchesShowingRank } from "../core/position-bias.js";
import { ctrFields } from "./ctr-fields.js";
import { responseTime } from "./request-mapping.js";

type ResponseInit = MessageInitShape<typeof GetVariantComparisonResponseSchema>;

/** The equally long stretch just before a window: CUPED's pre-period. */
export function prePeriod(window: TimeWindow): TimeWindow {
  const span = window.end.getTime() - window.start.getTime();
  return { days: window.days, start: new Date(window.start.getTime() - span), end: window.start, until: window.start };
}

const LATENCY_STATUS: Record<GuardrailStatus, LatencyStatus> = {
  ok: LatencyStatus.OK,
  regression: LatencyStatus.REGRESSION,
  inconclusive: LatencyStatus.INCONCLUSIVE,
  "insufficient data": LatencyStatus.INSUFFICIENT_DATA,
};

function cappingOut(c: Capping) {
  const metric = (m: MetricCapping | undefined) =>
    m && {
      numeratorCap: m.numeratorCap,
      denominatorCap: m.denominatorCap,
      cappedUsers: Object.fromEntries([...m.cappedUsers].map(([v, n]) => [v, BigInt(n)])),
      value: Object.fromEntries([...m.values].filter(([, x]) => x !== undefined) as [string, number][]),
    };
  return {
    percentile: c.percentile,
    applied: c.applied,
    botSearchesPerDay: BigInt(c.botSearchesPerDay),
    botUsers: Object.fromEntries([...c.bots].map(([v, n]) => [v, BigInt(n)])),
    searchCtr: metric(c.metrics.get("searchCtr")),
    ctr: metric(c.metrics.get("ctr")),
    noResultsRate: metric(c.metrics.get("noResultsRate")),
    mrr: metric(c.metrics.get("mrr")),
    abandonmentRate: metric(c.metrics.get("abandonmentRate")),
  };
}

function metricOut(m: MetricComparison | undefined) {
  if (m === undefined) return undefined;
  return {
    lift: m.lift,
    relativeLift: m.relativeLift,
    pValue: m.pValue,
    pValueAdjusted: m.adjustedPValue,
    significant: m.significant,
    significantAdjusted: m.significantAdjusted,
    mde: m.mde,
    relativeMde: m.relativeMde,
    varianceReduction: m.cupedVarianceReduction,
  };
}

/**
 * Compares the variants of `window`: per-arm user-bucket sums, exact users and latency sketches
 * from `metrics` (and the pre-period's buckets for CUPED), then the statistics of core/comparison.
 */
export async function variantComparison(
  metrics: MetricsSource,
  req: GetVariantComparisonRequest,
  window: TimeWindow,
  budget: (f: MetricsFilter) => MetricsFilter,
  /** Called once the request is known to be valid, before any read: refuses while stored events are not yet all counted. */
  beforeRead: () => Promise<void> = async () => undefined,
): Promise<ResponseInit> {
  const settings = comparisonSettings({
    control: req.control === "" ? "" : requireVariant("control", req.control),
    confidence: req.confidence,
    expectedSplit: req.expectedSplit,
    latencyThreshold: req.latencyThreshold,
    minImpressions: req.minImpressions,
    minUsers: req.minUsers,
    sequential: req.inference === Inference.SEQUENTIAL,
    cuped: req.cuped,
    capPercentile: req.capPercentile,
    botSearchesPerDay: req.botSearchesPerDay,
  });
  await beforeRead();
  const [now, before] = await Promise.all([metrics.arms(budget({ window })), settings.cuped ? metrics.arms(budget({ window: prePeriod(window) })) : undefined]);
  const times = { periodDays: window.days, startTime: responseTime(window.start), endTime: window.until && responseTime(window.until) };
  // The same arms (the metrics source keeps them while the data is unchanged) and settings make the same comparison.
  const parts = [before, settingsKey(settings)];
  const known = comparisons.get(now, parts);
  if (known !== undefined) return { ...known, ...times };
  const data = new Map<string, VariantData & Pick<EventTotals, "rankSum" | "responseTimeSum" | "firstClicks" | "clicksOutsideResults">>(
    [...now.arms].map(([name, arm]) => [
      name,
      {
        ...arm.totals,
        buckets: arm.buckets,
        pre: before?.arms.get(name)?.buckets,
        perUser: arm.perUser,
        prePerUser: before?.arms.get(name)?.perUser,
        latency: arm.latency,
        p95ResponseTimeMs: arm.totals.impressions === 0 ? undefined : latencyQuantiles(arm.latency.histogram, [0.95], arm.latency.bounds)[0],
      },
    ]),
  );
  const result = compareVariants(data, settings, now.usersInSeveralArms);
  // Position bias: each variant's linked clicks at shown ranks against what the window's per-rank CTR over all variants expects.
  const shownBy = new Map([...now.arms].map(([name, arm]) => [name, searchesShowingRank(arm.positions.resultsCounts, RESULTS_COUNT_CAP)]));
  const pooledClicks = new Map<number, number>();
  const pooledShown = new Array<number>(RESULTS_COUNT_CAP).fill(0);
  for (const [name, arm] of now.arms) {
    for (const [rank, n] of arm.positions.linkedClicksByRank) pooledClicks.set(rank, (pooledClicks.get(rank) ?? 0) + n);
    shownBy.get(name)!.forEach((n, rank) => (pooledShown[rank]! += n));
  }
  const pooled = ctrByRank(pooledClicks, pooledShown);
  const variants = Object.fromEntries(
    [...data].map(([name, v]) => {
      return [
        name,
        {
          ...ctrFields(v),
          avgResponseTimeMs: ratio(v.responseTimeSum, v.impressions),
          avgRankClicked: ratio(v.rankSum, v.clicks),
          totalClicks: BigInt(v.clicks),
          totalImpressions: BigInt(v.impressions),
          searchCtrInterval: result.intervals.get(name)?.searchCtr,
          ctrInterval: result.intervals.get(name)?.ctr,
          p95ResponseTimeMs: v.p95ResponseTimeMs,
          p95ResponseTimeInterval: v.latency ? p95Interval(v.latency, settings.confidence) : undefined,
          coec: clicksOverExpected(now.arms.get(name)!.positions.linkedClicksByRank, shownBy.get(name)!, pooled),
          mrrInterval: result.intervals.get(name)?.mrr,
          abandonmentRateInterval: result.intervals.get(name)?.abandonmentRate,
        },
      ];
    }),
  );
  const answer: ResponseInit = {
    variants,
    winnerByCtr: winnerByCtr([...data].map(([variant, v]) => ({ variant, clicks: v.clicks, impressions: v.impressions }))),
    control: settings.control,
    confidence: settings.confidence,
    inference: settings.sequential ? Inference.SEQUENTIAL : Inference.FIXED_HORIZON,
    cuped: settings.cuped,
    comparisons: result.comparisons.map((x) => ({
      variant: x.variant,
      searchCtrLift: x.searchCtr?.lift,
      searchCtrRelativeLift: x.searchCtr?.relativeLift,
      ctrLift: x.ctr?.lift,
      ctrRelativeLift: x.ctr?.relativeLift,
      searchCtrPValue: x.searchCtr?.pValue,
      ctrPValue: x.ctr?.pValue,
      searchCtrSignificant: x.searchCtr?.significant ?? false,
      ctrSignificant: x.ctr?.significant ?? false,
      p95LatencyDiffMs: x.latency.diffMs?.value,
      p95LatencyRelativeDiff: x.latency.relativeDiff?.value,
      latencyRegression: x.latency.status === "regression",
      searchCtr: metricOut(x.searchCtr),
      ctr: metricOut(x.ctr),
      noResultsRate: metricOut(x.noResultsRate),
      mrr: metricOut(x.mrr),
      abandonmentRate: metricOut(x.abandonmentRate),
      latency: {
        p95DiffMs: x.latency.diffMs?.value,
        p95DiffMsInterval: x.latency.diffMs && { low: x.latency.diffMs.low, high: x.latency.diffMs.high },
        p95RelativeDiff: x.latency.relativeDiff?.value,
        p95RelativeDiffInterval: x.latency.relativeDiff && { low: x.latency.relativeDiff.low, high: x.latency.relativeDiff.high },
        status: LATENCY_STATUS[x.latency.status],
        treatmentDesignEffect: x.latency.treatmentP95?.designEffect,
        controlDesignEffect: x.latency.controlP95?.designEffect,
      },
    })),
    srmPValue: result.srmPValue,
    srmDetected: result.srmDetected,
    trustworthy: result.trustworthy,
    usersInSeveralVariants: BigInt(now.usersInSeveralArms),
    usersInSeveralVariantsShare: now.users > 0 ? now.usersInSeveralArms / now.users : undefined,
    minUsers: BigInt(settings.minUsers),
    capping: cappingOut(result.capping),
    recommendation: result.recommendation,
    recommendationReason: result.reason,
  };
  comparisons.set(now, parts, answer);
  return { ...answer, ...times };
}

/** Every setting, as one string (the expected split's entries sorted: a map does not stringify). */
function settingsKey(settings: ReturnType<typeof comparisonSettings>): string {
  return JSON.stringify(settings, (_, x: unknown) => (x instanceof Map ? [...x].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) : typeof x === "bigint" ? x.toString() : x));
}

/** Comparisons by the arms they were made from (and the pre-period's, and the settings): read-only for callers. */
const comparisons = new ComposedCache<ArmsBreakdown, ResponseInit>(8);
