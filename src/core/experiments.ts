/**
 * Experiments as objects: the rules that do not need storage. What a valid definition is, which
 * status steps the lifecycle allows (DRAFT -> RUNNING -> STOPPED -> CONCLUDED), what may change
 * in which status, and how an update or a conclusion turns one version into the next (with the
 * history entry that records it).
 */
import { DomainError, InvalidArgumentError } from "./errors.js";
import { requireVariant } from "./events.js";

export const EXPERIMENT_STATUSES = ["DRAFT", "RUNNING", "STOPPED", "CONCLUDED"] as const;
export type ExperimentStatusName = (typeof EXPERIMENT_STATUSES)[number];

export const EXPERIMENT_METRICS = ["SEARCH_CTR", "CTR", "NO_RESULTS_RATE", "MRR", "ABANDONMENT_RATE", "P95_LATENCY"] as const;
export type ExperimentMetricName = (typeof EXPERIMENT_METRICS)[number];

/** Metrics where a higher value is worse (a guardrail on them watches increases). */
export const LOWER_IS_BETTER: ReadonlySet<ExperimentMetricName> = new Set(["NO_RESULTS_RATE", "ABANDONMENT_RATE", "P95_LATENCY"]);

export const KEY_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
export const LIMITS = {
  displayNameChars: 200,
  textChars: 4096,
  ownerChars: 256,
  minArms: 2,
  maxArms: 20,
} as const;

export const DEFAULTS = { confidence: 0.95, minimumDetectableEffect: 0.05, minUsers: 100, coverage: 1 } as const;

export interface Arm {
  variant: string;
  weight: number;
}

export interface Guardrail {
  metric: ExperimentMetricName;
  threshold: number;
}

/** What a caller defines. Optional numbers are undefined when unset (their defaults apply where used). */
export interface ExperimentSpec {
  displayName: string;
  hypothesis: string;
  owner: string;
  arms: Arm[];
  control: string;
  coverage?: number | undefined;
  startTime?: Date | undefined;
  endTime?: Date | undefined;
  primaryMetric: ExperimentMetricName;
  guardrails: Guardrail[];
  sequential: boolean;
  confidence?: number | undefined;
  minimumDetectableEffect?: number | undefined;
  minImpressions?: number | undefined;
  minUsers?: number | undefined;
  cappingPercentile?: number | undefined;
  cuped: boolean;
}

export interface Conclusion {
  shippedVariant: string;
  note: string;
  concludedBy: string;
  concludeTime: Date;
}

export interface Change {
  version: number;
  actor: string;
  time: Date;
  action: "create" | "update" | "conclude";
  fields: string[];
  summary: string;
}

export interface Experiment extends ExperimentSpec {
  key: string;
  status: ExperimentStatusName;
  version: number;
  createTime: Date;
  updateTime: Date;
  conclusion?: Conclusion | undefined;
  history: Change[];
}

/** The snake_case paths of Experiment an update mask may name, and the spec field each sets. */
export const UPDATABLE_PATHS = {
  display_name: "displayName",
  hypothesis: "hypothesis",
  owner: "owner",
  arms: "arms",
  control: "control",
  coverage: "coverage",
  start_time: "startTime",
  end_time: "endTime",
  status: "status",
  primary_metric: "primaryMetric",
  guardrails: "guardrails",
  sequential: "sequential",
  confidence: "confidence",
  minimum_detectable_effect: "minimumDetectableEffect",
  min_impressions: "minImpressions",
  min_users: "minUsers",
  capping_percentile: "cappingPercentile",
  cuped: "cuped",
} as const satisfies Record<string, keyof ExperimentSpec | "status">;
export type UpdatablePath = keyof typeof UPDATABLE_PATHS;

/** Fields that decide who is in which arm: frozen once the experiment runs. */
const ASSIGNMENT_PATHS: ReadonlySet<UpdatablePath> = new Set(["arms", "control", "coverage"]);

/** "experiments/{key}" or the bare key, as the key. */
export function experimentKey(field: string, value: string): string {
  const key = value.startsWith("experiments/") ? value.slice("experiments/".length) : value;
  if (key === "") throw new InvalidArgumentError(field, "is required: an experiment's name \"experiments/{key}\" or its key");
  if (!KEY_PATTERN.test(key)) throw new InvalidArgumentError(field, `must be "experiments/{key}" or a key matching [a-z0-9][a-z0-9_-]{0,62}, got "${value}"`);
  return key;
}

export const resourceName = (key: string) => `experiments/${key}`;
export const etagOf = (version: number) => `v${version}`;

function text(field: string, value: string, max: number, required = false): string {
  if (required && value.trim() === "") throw new InvalidArgumentError(field, "is required");
  if ([...value].length > max) throw new InvalidArgumentError(field, `must be at most ${max} characters, got ${[...value].length}`);
  return value;
}

function inRange(field: string, value: number | undefined, low: number, high: number, lowOpen: boolean, rule?: string): void {
  if (value === undefined) return;
  const ok = Number.isFinite(value) && (lowOpen ? value > low : value >= low) && value <= high;
  if (!ok) throw new InvalidArgumentError(field, rule ?? `must be in ${lowOpen ? "(" : "["}${low}, ${high}], got ${value}`);
}

/**
 * Checks a whole definition; throws INVALID_ARGUMENT naming the field and the rule. Fills the
 * control with the first arm when empty. `prefix` is the request's path to the experiment.
 */
export function validateSpec(spec: ExperimentSpec, prefix = "experiment"): ExperimentSpec {
  const f = (name: string) => `${prefix}.${name}`;
  text(f("display_name"), spec.displayName, LIMITS.displayNameChars, true);
  text(f("hypothesis"), spec.hypothesis, LIMITS.textChars);
  text(f("owner"), spec.owner, LIMITS.ownerChars);
  if (spec.arms.length < LIMITS.minArms || spec.arms.length > LIMITS.maxArms) {
    throw new InvalidArgumentError(f("arms"), `must have ${LIMITS.minArms} to ${LIMITS.maxArms} arms, got ${spec.arms.length}`);
  }
  const seen = new Set<string>();
  spec.arms.forEach((arm, i) => {
    requireVariant(f(`arms[${i}].variant`), arm.variant);
    if (seen.has(arm.variant)) throw new InvalidArgumentError(f(`arms[${i}].variant`), `must be unique within the experiment, "${arm.variant}" appears twice`);
    seen.add(arm.variant);
    if (!Number.isFinite(arm.weight) || arm.weight <= 0) throw new InvalidArgumentError(f(`arms[${i}].weight`), `must be a finite weight > 0, got ${arm.weight}`);
  });
  const total = spec.arms.reduce((s, a) => s + a.weight, 0);
  if (!Number.isFinite(total)) throw new InvalidArgumentError(f("arms"), "weights must have a finite sum");
  const control = spec.control === "" ? spec.arms[0]!.variant : spec.control;
  if (!seen.has(control)) throw new InvalidArgumentError(f("control"), `must be one of the arms' variants (${[...seen].join(", ")}), got "${control}"`);
  inRange(f("coverage"), spec.coverage, 0, 1, true);
  if (spec.startTime && !Number.isFinite(spec.startTime.getTime())) throw new InvalidArgumentError(f("start_time"), "must be a valid timestamp");
  if (spec.endTime && !Number.isFinite(spec.endTime.getTime())) throw new InvalidArgumentError(f("end_time"), "must be a valid timestamp");
  if (spec.endTime && !spec.startTime) throw new InvalidArgumentError(f("end_time"), "needs start_time");
  if (spec.startTime && spec.endTime && !(spec.endTime > spec.startTime)) {
    throw new InvalidArgumentError(f("end_time"), `must be after start_time (${spec.startTime.toISOString()}), got ${spec.endTime.toISOString()}`);
  }
  if (spec.primaryMetric === "P95_LATENCY") throw new InvalidArgumentError(f("primary_metric"), "must be a ratio metric (SEARCH_CTR, CTR, NO_RESULTS_RATE, MRR or ABANDONMENT_RATE); P95_LATENCY is a guardrail only");
  const guarded = new Set<string>();
  spec.guardrails.forEach((g, i) => {
    if (guarded.has(g.metric)) throw new InvalidArgumentError(f(`guardrails[${i}].metric`), `must be unique, ${g.metric} appears twice`);
    guarded.add(g.metric);
    if (g.metric === "P95_LATENCY") inRange(f(`guardrails[${i}].threshold`), g.threshold, 0, 10, true, `must be a relative slowdown in (0, 10], got ${g.threshold}`);
    else inRange(f(`guardrails[${i}].threshold`), g.threshold, 0, 1, true, `must be an absolute change of the rate in (0, 1], got ${g.threshold}`);
  });
  inRange(f("confidence"), spec.confidence, 0.5, 0.9999, false);
  inRange(f("minimum_detectable_effect"), spec.minimumDetectableEffect, 0, 10, true);
  if (spec.minImpressions !== undefined && (!Number.isSafeInteger(spec.minImpressions) || spec.minImpressions < 0)) {
    throw new InvalidArgumentError(f("min_impressions"), `must be a non-negative integer, got ${spec.minImpressions}`);
  }
  if (spec.minUsers !== undefined && (!Number.isSafeInteger(spec.minUsers) || spec.minUsers < 2)) {
    throw new InvalidArgumentError(f("min_users"), `must be an integer >= 2 (no test can be made on fewer users), got ${spec.minUsers}`);
  }
  if (spec.cappingPercentile !== undefined && !(Number.isFinite(spec.cappingPercentile) && spec.cappingPercentile >= 0.9 && spec.cappingPercentile < 1)) {
    throw new InvalidArgumentError(f("capping_percentile"), `must be in [0.9, 1), got ${spec.cappingPercentile}`);
  }
  return { ...spec, control };
}

/** The status steps UpdateExperiment may take; CONCLUDED only through conclude(). */
const NEXT: Record<ExperimentStatusName, readonly ExperimentStatusName[]> = {
  DRAFT: ["RUNNING"],
  RUNNING: ["STOPPED"],
  STOPPED: ["CONCLUDED"],
  CONCLUDED: [],
};

/** FAILED_PRECONDITION unless from -> to is a step of the lifecycle. */
export function requireTransition(from: ExperimentStatusName, to: ExperimentStatusName): void {
  if (NEXT[from].includes(to)) return;
  const allowed = NEXT[from].length === 0 ? "none (it is final)" : NEXT[from].join(" or ");
  throw new DomainError("failed_precondition", `experiment status cannot go from ${from} to ${to}: the lifecycle is DRAFT -> RUNNING -> STOPPED -> CONCLUDED; from ${from} the next step is ${allowed}`);
}

function requireEtag(current: Experiment, etag: string): void {
  if (etag !== "" && etag !== etagOf(current.version)) {
    throw new DomainError("aborted", `experiments/${current.key} changed since it was read: etag "${etag}" is not the current "${etagOf(current.version)}"; read it again and retry`);
  }
}

const shown = (v: unknown): string => (v instanceof Date ? v.toISOString() : v === undefined ? "unset" : typeof v === "object" ? JSON.stringify(v) : String(v));
const same = (a: unknown, b: unknown) => shown(a) === shown(b);

/**
 * The next version of `current` after an update: `patch` holds the new values, `paths` the
 * mask. INVALID_ARGUMENT for a bad mask or value, FAILED_PRECONDITION for a frozen field or a
 * status step outside the lifecycle, ABORTED for a stale etag. Entering RUNNING without a start
 * time starts it now; entering STOPPED without an end time ends it now.
 */
export function applyUpdate(current: Experiment, patch: ExperimentSpec & { status: ExperimentStatusName | undefined }, paths: readonly string[], etag: string, actor: string, now: Date): Experiment {
  if (paths.length === 0) throw new InvalidArgumentError("update_mask", `is required: name the fields to change (${Object.keys(UPDATABLE_PATHS).join(", ")})`);
  for (const p of paths) {
    if (!(p in UPDATABLE_PATHS)) throw new InvalidArgumentError("update_mask", `"${p}" is not an updatable field of Experiment (updatable: ${Object.keys(UPDATABLE_PATHS).join(", ")})`);
  }
  requireEtag(current, etag);
  if (current.status === "CONCLUDED") throw new DomainError("failed_precondition", `experiments/${current.key} is CONCLUDED: it cannot change any more`);
  const mask = new Set(paths as UpdatablePath[]);
  const next: Experiment = { ...current };
  const changed: string[] = [];
  const notes: string[] = [];
  for (const path of mask) {
    if (path === "status") continue;
    const field = UPDATABLE_PATHS[path] as keyof ExperimentSpec;
    if (same(current[field], patch[field])) continue;
    if (ASSIGNMENT_PATHS.has(path) && current.status !== "DRAFT") {
      throw new DomainError("failed_precondition", `experiments/${current.key} is ${current.status}: ${path} can change only while DRAFT (it decides which arm each user gets)`);
    }
    (next as unknown as Record<string, unknown>)[field] = patch[field];
    changed.push(path);
    notes.push(`${path} ${shown(current[field])} -> ${shown(patch[field])}`);
  }
  if (mask.has("status")) {
    const to = patch.status;
    if (to === undefined) throw new InvalidArgumentError("experiment.status", "must be RUNNING or STOPPED when status is in update_mask");
    if (to === "CONCLUDED") throw new InvalidArgumentError("experiment.status", "cannot be set to CONCLUDED by UpdateExperiment: use ConcludeExperiment (it records the shipped arm)");
    if (to !== current.status) {
      requireTransition(current.status, to);
      next.status = to;
      changed.push("status");
      notes.push(`status ${current.status} -> ${to}`);
      if (to === "RUNNING" && next.startTime === undefined) {
        next.startTime = now;
        changed.push("start_time");
      }
      if (to === "STOPPED" && next.endTime === undefined) {
        next.endTime = now < (next.startTime ?? now) ? next.startTime : now;
        changed.push("end_time");
      }
    }
  }
  const { displayName, hypothesis, owner, arms, control, coverage, startTime, endTime, primaryMetric, guardrails, sequential, confidence, minimumDetectableEffect, minImpressions, minUsers, cappingPercentile, cuped } = next;
  const valid = validateSpec({ displayName, hypothesis, owner, arms, control, coverage, startTime, endTime, primaryMetric, guardrails, sequential, confidence, minimumDetectableEffect, minImpressions, minUsers, cappingPercentile, cuped });
  next.control = valid.control;
  if (changed.length === 0) return current;
  next.version = current.version + 1;
  next.updateTime = now;
  next.history = [...current.history, { version: next.version, actor, time: now, action: "update", fields: changed, summary: notes.join("; ") || changed.join(", ") }];
  return next;
}

/** A new experiment: DRAFT, version 1, its creation in the history. */
export function newExperiment(key: string, spec: ExperimentSpec, actor: string, now: Date): Experiment {
  const valid = validateSpec(spec);
  return { ...valid, key, status: "DRAFT", version: 1, createTime: now, updateTime: now, history: [{ version: 1, actor, time: now, action: "create", fields: [], summary: `created with arms ${valid.arms.map((a) => `${a.variant}:${a.weight}`).join(", ")}, control ${valid.control}` }] };
}

/** STOPPED -> CONCLUDED with the shipped arm; FAILED_PRECONDITION from any other status. */
export function conclude(current: Experiment, shippedVariant: string, note: string, etag: string, actor: string, now: Date): Experiment {
  if (shippedVariant === "") throw new InvalidArgumentError("shipped_variant", `is required: one of ${current.arms.map((a) => a.variant).join(", ")}`);
  if (!current.arms.some((a) => a.variant === shippedVariant)) {
    throw new InvalidArgumentError("shipped_variant", `must be one of the experiment's variants (${current.arms.map((a) => a.variant).join(", ")}), got "${shippedVariant}"`);
  }
  text("note", note, LIMITS.textChars);
  requireEtag(current, etag);
  requireTransition(current.status, "CONCLUDED");
  const version = current.version + 1;
  return {
    ...current,
    status: "CONCLUDED",
    version,
    updateTime: now,
    conclusion: { shippedVariant, note, concludedBy: actor, concludeTime: now },
    history: [...current.history, { version, actor, time: now, action: "conclude", fields: ["status", "conclusion"], summary: `status STOPPED -> CONCLUDED; shipped ${shippedVariant}` }],
  };
}

/** The arms' weights as the comparison's expected split. */
export function expectedSplit(e: Pick<ExperimentSpec, "arms">): Record<string, number> {
  return Object.fromEntries(e.arms.map((a) => [a.variant, a.weight]));
}
