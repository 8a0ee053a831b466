/**
 * GetVariantComparison and WatchMetrics for a named experiment: the experiment's definition fills
 * in what the request leaves unset (the request's own fields win), the ordinary comparison runs on
 * that request, and the answer gains the scorecard: what was used, run time, users so far
 * against the users the MDE needs, and health (SRM, leak, guardrails).
 *
 * The comparison itself is not touched: the experiment is resolved into the existing request
 * shape first, so the scorecard equals a by-hand GetVariantComparison with the same fields.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import {
  GetVariantComparisonRequestSchema,
  Inference,
  WatchMetricsRequestSchema,
  type GetVariantComparisonRequest,
  type GetVariantComparisonResponseSchema,
  type WatchMetricsRequest,
} from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import { ExperimentScorecardSchema, ExperimentStatus, GuardrailState, type GuardrailCheckSchema } from "../../gen/clickanalytics/v1/experiments_pb.js";
import { comparisonSettings } from "../core/comparison-model.js";
import { DomainError } from "../core/errors.js";
import { DEFAULTS, expectedSplit, experimentKey, LOWER_IS_BETTER, resourceName, type Experiment, type ExperimentMetricName } from "../core/experiments.js";
import type { ExperimentStore, MetricsSource } from "../store/click-store.js";
import { METRIC_ENUM } from "./experiments-service.js";
import { responseTime } from "./request-mapping.js";

type ComparisonInit = MessageInitShape<typeof GetVariantComparisonResponseSchema>;
type ScorecardInit = MessageInitShape<typeof ExperimentScorecardSchema>;
type GuardrailCheckInit = MessageInitShape<typeof GuardrailCheckSchema>;

/** A leak: more than this share of the experiment's users seen in several arms. */
export const LEAK_SHARE = 0.01;

const STATUS_ENUM: Record<Experiment["status"], ExperimentStatus> = {
  DRAFT: ExperimentStatus.DRAFT,
  RUNNING: ExperimentStatus.RUNNING,
  STOPPED: ExperimentStatus.STOPPED,
  CONCLUDED: ExperimentStatus.CONCLUDED,
};

/**
 * The experiment a request names; NOT_FOUND when unknown, FAILED_PRECONDITION while DRAFT (no
 * period yet) or before its start_time.
 */
export async function namedExperiment(experiments: ExperimentStore, name: string, now = new Date()): Promise<Experiment> {
  const e = await experiments.get(experimentKey("experiment", name));
  if (e.status === "DRAFT" || e.startTime === undefined) {
    throw new DomainError("failed_precondition", `experiments/${e.key} is DRAFT: it has no period to read yet (set its status to RUNNING first)`);
  }
  if (e.startTime > now) throw new DomainError("failed_precondition", `experiments/${e.key} starts at ${e.startTime.toISOString()}: its period has not begun`);
  return e;
}

const hasWindow = (req: { days: number; startTime?: unknown }) => req.days !== 0 || req.startTime !== undefined;

/** The request with every field it leaves unset taken from the experiment. */
export function resolveComparisonRequest(req: GetVariantComparisonRequest, e: Experiment): GetVariantComparisonRequest {
  const out = create(GetVariantComparisonRequestSchema, req);
  if (!hasWindow(req)) {
    out.startTime = responseTime(e.startTime!);
    out.endTime = e.endTime && responseTime(e.endTime);
  }
  if (out.control === "") out.control = e.control;
  out.confidence ??= e.confidence;
  if (Object.keys(out.expectedSplit).length === 0) out.expectedSplit = expectedSplit(e);
  out.latencyThreshold ??= e.guardrails.find((g) => g.metric === "P95_LATENCY")?.threshold;
  if (out.minImpressions === undefined && e.minImpressions !== undefined) out.minImpressions = BigInt(e.minImpressions);
  if (out.minUsers === undefined && e.minUsers !== undefined) out.minUsers = BigInt(e.minUsers);
  if (out.inference === Inference.UNSPECIFIED) out.inference = e.sequential ? Inference.SEQUENTIAL : Inference.FIXED_HORIZON;
  out.cuped ||= e.cuped;
  out.experiment = "";
  return out;
}

/** WatchMetrics over the experiment's period unless the request chose a window. */
export function resolveWatchRequest(req: WatchMetricsRequest, e: Experiment): WatchMetricsRequest {
  const out = create(WatchMetricsRequestSchema, req);
  if (!hasWindow(req)) {
    out.startTime = responseTime(e.startTime!);
    out.endTime = e.endTime && responseTime(e.endTime);
  }
  out.experiment = "";
  return out;
}

type Comparison = NonNullable<ComparisonInit["comparisons"]>[number];
type Metric = Exclude<ExperimentMetricName, "P95_LATENCY">;
const COMPARISON_FIELD: Record<Metric, "searchCtr" | "ctr" | "noResultsRate" | "mrr" | "abandonmentRate"> = {
  SEARCH_CTR: "searchCtr",
  CTR: "ctr",
  NO_RESULTS_RATE: "noResultsRate",
  MRR: "mrr",
  ABANDONMENT_RATE: "abandonmentRate",
};

/**
 * A guardrail on one treatment: the change in the bad direction with its interval; OK when the
 * interval's worse end is within the threshold, VIOLATED when even its better end is beyond it.
 */
function guardrailCheck(metric: ExperimentMetricName, threshold: number, c: Comparison): GuardrailCheckInit {
  let worsening: { value: number; low: number; high: number } | undefined;
  if (metric === "P95_LATENCY") {
    const v = c.latency?.p95RelativeDiff;
    const i = c.latency?.p95RelativeDiffInterval;
    if (v !== undefined && i !== undefined) worsening = { value: v, low: i.low ?? 0, high: i.high ?? 0 };
  } else {
    const lift = (c[COMPARISON_FIELD[metric]] as { lift?: { value?: number; low?: number; high?: number } } | undefined)?.lift;
    if (lift?.value !== undefined) {
      const [value, low, high] = [lift.value, lift.low ?? lift.value, lift.high ?? lift.value];
      worsening = LOWER_IS_BETTER.has(metric) ? { value, low, high } : { value: -value, low: -high, high: -low };
    }
  }
  const state =
    worsening === undefined || !Number.isFinite(worsening.low) || !Number.isFinite(worsening.high)
      ? GuardrailState.INSUFFICIENT_DATA
      : worsening.low > threshold
        ? GuardrailState.VIOLATED
        : worsening.high <= threshold
          ? GuardrailState.OK
          : GuardrailState.INCONCLUSIVE;
  return { metric: METRIC_ENUM.get(metric), variant: c.variant ?? "", threshold, state, worsening: worsening?.value };
}

/** The scorecard of `e` from the comparison answered for the resolved request. */
export function scorecard(e: Experiment, resolved: GetVariantComparisonRequest, answer: ComparisonInit, now: Date): ScorecardInit {
  // The same defaults the comparison applied, from the function that applies them.
  const settings = comparisonSettings({
    control: resolved.control,
    confidence: resolved.confidence,
    expectedSplit: resolved.expectedSplit,
    latencyThreshold: resolved.latencyThreshold,
    minImpressions: resolved.minImpressions,
    minUsers: resolved.minUsers,
  });
  const primary = e.primaryMetric as Metric;
  const target = e.minimumDetectableEffect ?? DEFAULTS.minimumDetectableEffect;
  const armUsers = e.arms.map((a) => Number(answer.variants?.[a.variant]?.users ?? 0n));
  const users = armUsers.reduce((s, n) => s + n, 0);
  let needed: number | undefined;
  for (const c of answer.comparisons ?? []) {
    const mde = (c[COMPARISON_FIELD[primary]] as { relativeMde?: number } | undefined)?.relativeMde;
    if (mde === undefined || !Number.isFinite(mde) || mde <= 0) continue;
    const n = Math.ceil(users * (mde / target) ** 2);
    needed = Math.max(needed ?? 0, n);
  }
  const minArmUsers = Math.min(...armUsers);
  const minUsers = settings.minUsers;
  const guardrails = e.guardrails.flatMap((g) => (answer.comparisons ?? []).map((c) => guardrailCheck(g.metric, g.threshold, c)));
  const leakShare = answer.usersInSeveralVariantsShare;
  const leak = leakShare !== undefined && leakShare > LEAK_SHARE;
  const problems = [
    ...(answer.srmDetected ? ["srm"] : []),
    ...(leak ? ["leak"] : []),
    ...guardrails.filter((g) => g.state === GuardrailState.VIOLATED).map((g) => `guardrail ${e.guardrails.find((x) => METRIC_ENUM.get(x.metric) === g.metric)!.metric.toLowerCase()} on ${g.variant}`),
  ];
  const end = e.endTime ?? now;
  return {
    name: resourceName(e.key),
    status: STATUS_ENUM[e.status],
    expectedSplit: Object.fromEntries(settings.expectedSplit),
    latencyThreshold: settings.latencyThreshold,
    minImpressions: BigInt(settings.minImpressions),
    primaryMetric: METRIC_ENUM.get(primary),
    minimumDetectableEffect: target,
    runTime: durationFromMs(Math.max(0, end.getTime() - e.startTime!.getTime())),
    users: BigInt(users),
    usersNeeded: needed === undefined ? undefined : BigInt(needed),
    minArmUsers: BigInt(Number.isFinite(minArmUsers) ? minArmUsers : 0),
    enoughUsers: minArmUsers >= minUsers,
    health: {
      srmDetected: answer.srmDetected ?? false,
      srmPValue: answer.srmPValue,
      leakShare,
      leakDetected: leak,
      guardrails,
      healthy: problems.length === 0,
      problems,
    },
  };
}

/**
 * The metrics source seen through an experiment: only its arms' variants, so that experiments
 * running at the same time (other variants in the same period) do not enter its comparison.
 * The leak count and the users it is a share of stay those of the whole period.
 */
export function armsOnly(metrics: MetricsSource, variants: readonly string[]): MetricsSource {
  const keep = new Set(variants);
  return {
    ...metrics,
    arms: async (f) => {
      const all = await metrics.arms(f);
      return { ...all, arms: new Map([...all.arms].filter(([name]) => keep.has(name))) };
    },
  };
}

/**
 * GetVariantComparison for a named experiment: `compare` answers the resolved request from the
 * metrics source it is given (armsOnly of the service's).
 */
export async function experimentComparison(
  experiments: ExperimentStore,
  req: GetVariantComparisonRequest,
  compare: (resolved: GetVariantComparisonRequest, source: (metrics: MetricsSource) => MetricsSource) => Promise<ComparisonInit>,
  now: () => Date,
): Promise<ComparisonInit> {
  const e = await namedExperiment(experiments, req.experiment, now());
  const resolved = resolveComparisonRequest(req, e);
  const answer = await compare(resolved, (m) => armsOnly(m, e.arms.map((a) => a.variant)));
  return { ...answer, scorecard: create(ExperimentScorecardSchema, scorecard(e, resolved, answer, now())) };
}
