/**
 * The experiment RPCs (CreateExperiment, GetExperiment, ListExperiments, UpdateExperiment,
 * ConcludeExperiment): protobuf messages to and from core/experiments.ts, storage in
 * store/experiments.ts. Access per role is the guard's (auth.ts rolesFor).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ClickAnalytics } from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import { ExperimentMetric, ExperimentStatus, type Experiment as ExperimentProto, type ExperimentSchema } from "../../gen/clickanalytics/v1/experiments_pb.js";
import { DomainError, InvalidArgumentError } from "../core/errors.js";
import {
  applyUpdate,
  conclude,
  etagOf,
  experimentKey,
  KEY_PATTERN,
  newExperiment,
  resourceName,
  type Experiment,
  type ExperimentMetricName,
  type ExperimentSpec,
  type ExperimentStatusName,
} from "../core/experiments.js";
import type { ExperimentStore } from "../store/click-store.js";
import { callerName } from "./auth.js";
import type { CallContext, ServiceImpl } from "./grpc-adapter.js";
import { requestTime, responseTime } from "./request-mapping.js";

type Impl = ServiceImpl<typeof ClickAnalytics>;
export type ExperimentMethods = Pick<Impl, "createExperiment" | "getExperiment" | "listExperiments" | "updateExperiment" | "concludeExperiment">;

const STATUS_NAME = new Map<ExperimentStatus, ExperimentStatusName>([
  [ExperimentStatus.DRAFT, "DRAFT"],
  [ExperimentStatus.RUNNING, "RUNNING"],
  [ExperimentStatus.STOPPED, "STOPPED"],
  [ExperimentStatus.CONCLUDED, "CONCLUDED"],
]);
const STATUS_ENUM = new Map([...STATUS_NAME].map(([e, n]) => [n, e]));

const METRIC_NAME = new Map<ExperimentMetric, ExperimentMetricName>([
  [ExperimentMetric.SEARCH_CTR, "SEARCH_CTR"],
  [ExperimentMetric.CTR, "CTR"],
  [ExperimentMetric.NO_RESULTS_RATE, "NO_RESULTS_RATE"],
  [ExperimentMetric.MRR, "MRR"],
  [ExperimentMetric.ABANDONMENT_RATE, "ABANDONMENT_RATE"],
  [ExperimentMetric.P95_LATENCY, "P95_LATENCY"],
]);
export const METRIC_ENUM = new Map([...METRIC_NAME].map(([e, n]) => [n, e]));

function statusName(field: string, value: ExperimentStatus): ExperimentStatusName | undefined {
  if (value === ExperimentStatus.UNSPECIFIED) return undefined;
  const name = STATUS_NAME.get(value);
  if (name === undefined) throw new InvalidArgumentError(field, `must be DRAFT, RUNNING, STOPPED or CONCLUDED (got enum value ${value})`);
  return name;
}

function metricName(field: string, value: ExperimentMetric, unset?: ExperimentMetricName): ExperimentMetricName {
  if (value === ExperimentMetric.UNSPECIFIED && unset) return unset;
  const name = METRIC_NAME.get(value);
  if (name === undefined) throw new InvalidArgumentError(field, `must be one of ${[...METRIC_NAME.values()].join(", ")} (got enum value ${value})`);
  return name;
}

/** The definition fields of a request's Experiment, in the core's terms (not yet validated). */
export function specFromProto(e: ExperimentProto, prefix = "experiment"): ExperimentSpec & { status: ExperimentStatusName | undefined } {
  const bigint = (field: string, v: bigint | undefined) => {
    if (v === undefined) return undefined;
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < 0n) throw new InvalidArgumentError(`${prefix}.${field}`, `must be a non-negative integer below 2^53, got ${v}`);
    return Number(v);
  };
  return {
    displayName: e.displayName,
    hypothesis: e.hypothesis,
    owner: e.owner,
    arms: e.arms.map((a) => ({ variant: a.variant, weight: a.weight })),
    control: e.control,
    coverage: e.coverage,
    startTime: requestTime(e.startTime, `${prefix}.start_time`),
    endTime: requestTime(e.endTime, `${prefix}.end_time`),
    status: statusName(`${prefix}.status`, e.status),
    primaryMetric: metricName(`${prefix}.primary_metric`, e.primaryMetric, "SEARCH_CTR"),
    guardrails: e.guardrails.map((g, i) => ({ metric: metricName(`${prefix}.guardrails[${i}].metric`, g.metric), threshold: g.threshold })),
    sequential: e.sequential,
    confidence: e.confidence,
    minimumDetectableEffect: e.minimumDetectableEffect,
    minImpressions: bigint("min_impressions", e.minImpressions),
    minUsers: bigint("min_users", e.minUsers),
    cappingPercentile: e.cappingPercentile,
    cuped: e.cuped,
  };
}

export function experimentToProto(e: Experiment): MessageInitShape<typeof ExperimentSchema> {
  const big = (n: number | undefined) => (n === undefined ? undefined : BigInt(n));
  return {
    name: resourceName(e.key),
    key: e.key,
    displayName: e.displayName,
    hypothesis: e.hypothesis,
    owner: e.owner,
    arms: e.arms,
    control: e.control,
    coverage: e.coverage,
    startTime: e.startTime && responseTime(e.startTime),
    endTime: e.endTime && responseTime(e.endTime),
    status: STATUS_ENUM.get(e.status),
    primaryMetric: METRIC_ENUM.get(e.primaryMetric),
    guardrails: e.guardrails.map((g) => ({ metric: METRIC_ENUM.get(g.metric), threshold: g.threshold })),
    sequential: e.sequential,
    confidence: e.confidence,
    minimumDetectableEffect: e.minimumDetectableEffect,
    minImpressions: big(e.minImpressions),
    minUsers: big(e.minUsers),
    cappingPercentile: e.cappingPercentile,
    cuped: e.cuped,
    etag: etagOf(e.version),
    version: BigInt(e.version),
    createTime: responseTime(e.createTime),
    updateTime: responseTime(e.updateTime),
    conclusion: e.conclusion && {
      shippedVariant: e.conclusion.shippedVariant,
      note: e.conclusion.note,
      concludedBy: e.conclusion.concludedBy,
      concludeTime: responseTime(e.conclusion.concludeTime),
    },
    history: e.history.map((h) => ({ version: BigInt(h.version), actor: h.actor, time: responseTime(h.time), action: h.action, fields: h.fields, summary: h.summary })),
  };
}

/** snake_case mask paths; camelCase (as some JSON clients send) is accepted too. */
const snake = (path: string) => path.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

const PAGE_DEFAULT = 50;
const PAGE_MAX = 1000;

/** An opaque page token: the last key of the page and the filter it was asked with. */
function pageToken(lastKey: string, status: ExperimentStatus): string {
  return Buffer.from(JSON.stringify({ k: lastKey, s: status }), "utf8").toString("base64url");
}
function readPageToken(token: string, status: ExperimentStatus): string | undefined {
  if (token === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    parsed = undefined;
  }
  const p = parsed as { k?: unknown; s?: unknown } | undefined;
  if (typeof p?.k !== "string" || !KEY_PATTERN.test(p.k) || typeof p.s !== "number") throw new InvalidArgumentError("page_token", "is not a token this server returned (use next_page_token as it came)");
  if (p.s !== status) throw new InvalidArgumentError("page_token", "was returned for another status filter: keep the request's other fields as they were");
  return p.k;
}

/** Update and conclude retry a lost compare-and-swap this often when the caller gave no etag. */
const CAS_ATTEMPTS = 5;

export function experimentsService(experiments: ExperimentStore, now: () => Date): ExperimentMethods {
  /** Re-reads and re-applies until the write lands on the version it was computed from. */
  const change = async (key: string, etag: string, ctx: CallContext, step: (current: Experiment, actor: string, at: Date) => Experiment): Promise<Experiment> => {
    const actor = callerName(ctx);
    for (let attempt = 1; ; attempt++) {
      const current = await experiments.get(key);
      const next = step(current, actor, now());
      if (next === current) return current;
      if (await experiments.replace(next, current.version)) return next;
      // Someone else changed it between our read and write: a conditional caller is told so.
      if (etag !== "" || attempt >= CAS_ATTEMPTS) {
        throw new DomainError("aborted", `experiments/${key} was changed concurrently; read it again and retry`);
      }
    }
  };

  return {
    async createExperiment(req, ctx) {
      if (req.experimentId === "") throw new InvalidArgumentError("experiment_id", "is required: the new experiment's key, [a-z0-9][a-z0-9_-]{0,62}");
      if (!KEY_PATTERN.test(req.experimentId)) throw new InvalidArgumentError("experiment_id", `must match [a-z0-9][a-z0-9_-]{0,62}, got "${req.experimentId}"`);
      if (req.experiment === undefined) throw new InvalidArgumentError("experiment", "is required: the definition (display_name, arms, ...)");
      const spec = specFromProto(req.experiment);
      if (spec.status !== undefined && spec.status !== "DRAFT") {
        throw new InvalidArgumentError("experiment.status", `must be DRAFT or unset on create (start it with UpdateExperiment), got ${spec.status}`);
      }
      const created = await experiments.create(newExperiment(req.experimentId, spec, callerName(ctx), now()));
      return { experiment: experimentToProto(created) };
    },

    async getExperiment(req) {
      const key = experimentKey("name", req.name);
      return { experiment: experimentToProto(await experiments.get(key)) };
    },

    async listExperiments(req) {
      const status = statusName("status", req.status);
      const size = req.pageSize === 0 ? PAGE_DEFAULT : req.pageSize;
      if (!Number.isInteger(size) || size < 1 || size > PAGE_MAX) throw new InvalidArgumentError("page_size", `must be between 1 and ${PAGE_MAX} (0 means ${PAGE_DEFAULT}), got ${req.pageSize}`);
      const after = readPageToken(req.pageToken, req.status);
      // One more than a page: whether there is a next page is known without another query.
      const found = await experiments.list(status, after, size + 1);
      const page = found.slice(0, size);
      return {
        experiments: page.map(experimentToProto),
        nextPageToken: found.length > size ? pageToken(page.at(-1)!.key, req.status) : "",
      };
    },

    async updateExperiment(req, ctx) {
      if (req.experiment === undefined) throw new InvalidArgumentError("experiment", "is required: its name and the new values of the fields in update_mask");
      const e = req.experiment;
      const key = e.name !== "" ? experimentKey("experiment.name", e.name) : experimentKey("experiment.key", e.key);
      if (e.name !== "" && e.key !== "" && e.key !== key) throw new InvalidArgumentError("experiment.key", `must be empty or match experiment.name's key "${key}", got "${e.key}"`);
      const paths = (req.updateMask?.paths ?? []).map(snake);
      const patch = specFromProto(e);
      const updated = await change(key, e.etag, ctx, (current, actor, at) => applyUpdate(current, patch, paths, e.etag, actor, at));
      return { experiment: experimentToProto(updated) };
    },

    async concludeExperiment(req, ctx) {
      const key = experimentKey("name", req.name);
      const concluded = await change(key, req.etag, ctx, (current, actor, at) => conclude(current, req.shippedVariant, req.note, req.etag, actor, at));
      return { experiment: experimentToProto(concluded) };
    },
  };
}
