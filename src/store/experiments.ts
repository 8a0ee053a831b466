/**
 * The `experiments` collection: one document per experiment, _id and `key` both the experiment's
 * key (unique: of two concurrent creates of one key exactly one inserts, the other is
 * ALREADY_EXISTS), a JSON-schema validator so that no writer stores a malformed definition, and
 * the history of changes inside the document. Updates are compare-and-swap on `version`: a
 * change computed from a version that is no longer current is never written.
 */
import { MongoServerError, type Collection, type Db, type Document } from "mongodb";
import { DomainError } from "../core/errors.js";
import { EXPERIMENT_METRICS, EXPERIMENT_STATUSES, type Experiment, type ExperimentStatusName } from "../core/experiments.js";

export const EXPERIMENTS = "experiments";

export interface ExperimentDocument {
  _id: string;
  key: string;
  display_name: string;
  hypothesis: string;
  owner: string;
  arms: { variant: string; weight: number }[];
  control: string;
  coverage?: number;
  start_time?: Date;
  end_time?: Date;
  status: ExperimentStatusName;
  primary_metric: string;
  guardrails: { metric: string; threshold: number }[];
  sequential: boolean;
  confidence?: number;
  minimum_detectable_effect?: number;
  min_impressions?: number;
  min_users?: number;
  capping_percentile?: number;
  cuped: boolean;
  version: number;
  create_time: Date;
  update_time: Date;
  conclusion?: { shipped_variant: string; note: string; concluded_by: string; conclude_time: Date };
  history: { version: number; actor: string; time: Date; action: string; fields: string[]; summary: string }[];
}

const str = { bsonType: "string" };
const num = { bsonType: ["double", "int", "long"] };
const date = { bsonType: "date" };

/** What every stored experiment looks like; MongoDB refuses a write that does not fit. */
export const EXPERIMENT_VALIDATOR: Document = {
  $jsonSchema: {
    bsonType: "object",
    required: ["_id", "key", "display_name", "arms", "control", "status", "primary_metric", "guardrails", "sequential", "cuped", "version", "create_time", "update_time", "history"],
    properties: {
      _id: { bsonType: "string", pattern: "^[a-z0-9][a-z0-9_-]{0,62}$" },
      key: { bsonType: "string", pattern: "^[a-z0-9][a-z0-9_-]{0,62}$" },
      display_name: { bsonType: "string", minLength: 1 },
      hypothesis: str,
      owner: str,
      arms: {
        bsonType: "array",
        minItems: 2,
        maxItems: 20,
        items: { bsonType: "object", required: ["variant", "weight"], properties: { variant: { bsonType: "string", pattern: "^[A-Za-z0-9_.-]{1,64}$" }, weight: { ...num, exclusiveMinimum: true, minimum: 0 } } },
      },
      control: { bsonType: "string", minLength: 1 },
      coverage: { ...num, minimum: 0, exclusiveMinimum: true, maximum: 1 },
      start_time: date,
      end_time: date,
      status: { enum: [...EXPERIMENT_STATUSES] },
      primary_metric: { enum: EXPERIMENT_METRICS.filter((m) => m !== "P95_LATENCY") },
      guardrails: { bsonType: "array", items: { bsonType: "object", required: ["metric", "threshold"], properties: { metric: { enum: [...EXPERIMENT_METRICS] }, threshold: num } } },
      sequential: { bsonType: "bool" },
      confidence: num,
      minimum_detectable_effect: num,
      min_impressions: num,
      min_users: num,
      capping_percentile: num,
      cuped: { bsonType: "bool" },
      version: { ...num, minimum: 1 },
      create_time: date,
      update_time: date,
      conclusion: { bsonType: "object", required: ["shipped_variant", "concluded_by", "conclude_time"], properties: { shipped_variant: str, note: str, concluded_by: str, conclude_time: date } },
      history: {
        bsonType: "array",
        minItems: 1,
        items: { bsonType: "object", required: ["version", "actor", "time", "action"], properties: { version: num, actor: str, time: date, action: { enum: ["create", "update", "conclude"] }, fields: { bsonType: "array", items: str }, summary: str } },
      },
    },
  },
};

const defined = <T extends object>(o: T): T => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;

export function experimentDocument(e: Experiment): ExperimentDocument {
  return defined({
    _id: e.key,
    key: e.key,
    display_name: e.displayName,
    hypothesis: e.hypothesis,
    owner: e.owner,
    arms: e.arms.map((a) => ({ variant: a.variant, weight: a.weight })),
    control: e.control,
    coverage: e.coverage,
    start_time: e.startTime,
    end_time: e.endTime,
    status: e.status,
    primary_metric: e.primaryMetric,
    guardrails: e.guardrails.map((g) => ({ metric: g.metric, threshold: g.threshold })),
    sequential: e.sequential,
    confidence: e.confidence,
    minimum_detectable_effect: e.minimumDetectableEffect,
    min_impressions: e.minImpressions,
    min_users: e.minUsers,
    capping_percentile: e.cappingPercentile,
    cuped: e.cuped,
    version: e.version,
    create_time: e.createTime,
    update_time: e.updateTime,
    conclusion: e.conclusion && { shipped_variant: e.conclusion.shippedVariant, note: e.conclusion.note, concluded_by: e.conclusion.concludedBy, conclude_time: e.conclusion.concludeTime },
    history: e.history.map((h) => ({ version: h.version, actor: h.actor, time: h.time, action: h.action, fields: h.fields, summary: h.summary })),
  });
}

export function experimentFromDocument(d: ExperimentDocument): Experiment {
  return {
    key: d.key,
    displayName: d.display_name,
    hypothesis: d.hypothesis,
    owner: d.owner,
    arms: d.arms.map((a) => ({ variant: a.variant, weight: Number(a.weight) })),
    control: d.control,
    coverage: d.coverage === undefined ? undefined : Number(d.coverage),
    startTime: d.start_time,
    endTime: d.end_time,
    status: d.status,
    primaryMetric: d.primary_metric as Experiment["primaryMetric"],
    guardrails: d.guardrails.map((g) => ({ metric: g.metric as Experiment["primaryMetric"], threshold: Number(g.threshold) })),
    sequential: d.sequential,
    confidence: d.confidence,
    minimumDetectableEffect: d.minimum_detectable_effect,
    minImpressions: d.min_impressions === undefined ? undefined : Number(d.min_impressions),
    minUsers: d.min_users === undefined ? undefined : Number(d.min_users),
    cappingPercentile: d.capping_percentile,
    cuped: d.cuped,
    version: Number(d.version),
    createTime: d.create_time,
    updateTime: d.update_time,
    conclusion: d.conclusion && { shippedVariant: d.conclusion.shipped_variant, note: d.conclusion.note, concludedBy: d.conclusion.concluded_by, concludeTime: d.conclusion.conclude_time },
    history: (d.history ?? []).map((h) => ({ version: Number(h.version), actor: h.actor, time: h.time, action: h.action as "create", fields: h.fields ?? [], summary: h.summary ?? "" })),
  };
}

const DUPLICATE_KEY = 11000;

/** The experiments of one database. */
export class ExperimentStore {
  private ready: Promise<Collection<ExperimentDocument>> | undefined;

  constructor(private readonly db: Db) {}

  /**
   * The collection, created with its validator and unique key index on first use (and the
   * validator brought up to date on a collection an earlier version created).
   */
  collection(): Promise<Collection<ExperimentDocument>> {
    this.ready ??= (async () => {
      const exists = (await this.db.listCollections({ name: EXPERIMENTS }, { nameOnly: true }).toArray()).length > 0;
      if (!exists) {
        await this.db.createCollection(EXPERIMENTS, { validator: EXPERIMENT_VALIDATOR, validationLevel: "strict", validationAction: "error" }).catch((error: unknown) => {
          // Another server created it first (NamespaceExists).
          if (!(error instanceof MongoServerError && error.code === 48)) throw error;
        });
      } else {
        await this.db.command({ collMod: EXPERIMENTS, validator: EXPERIMENT_VALIDATOR, validationLevel: "strict", validationAction: "error" });
      }
      const c = this.db.collection<ExperimentDocument>(EXPERIMENTS);
      await c.createIndexes([
        { key: { key: 1 }, name: "key_unique", unique: true },
        { key: { status: 1, key: 1 }, name: "status_1_key_1" },
      ]);
      return c;
    })().catch((error: unknown) => {
      this.ready = undefined;
      throw error;
    });
    return this.ready;
  }

  /** Inserts a new experiment; ALREADY_EXISTS when the key is taken (by a concurrent create too). */
  async create(e: Experiment): Promise<Experiment> {
    const c = await this.collection();
    try {
      await c.insertOne(experimentDocument(e));
    } catch (error) {
      if (error instanceof MongoServerError && error.code === DUPLICATE_KEY) throw new DomainError("already_exists", `experiments/${e.key} already exists: choose another experiment_id`);
      throw error;
    }
    return e;
  }

  async find(key: string): Promise<Experiment | undefined> {
    const c = await this.collection();
    const d = await c.findOne({ _id: key });
    return d === null ? undefined : experimentFromDocument(d);
  }

  /** NOT_FOUND when there is none. */
  async get(key: string): Promise<Experiment> {
    const e = await this.find(key);
    if (e === undefined) throw new DomainError("not_found", `experiments/${key} does not exist`);
    return e;
  }

  /** Up to `limit` experiments with keys after `after`, by key; history left out. */
  async list(status: ExperimentStatusName | undefined, after: string | undefined, limit: number): Promise<Experiment[]> {
    const c = await this.collection();
    const filter: Document = {};
    if (status) filter.status = status;
    if (after !== undefined) filter.key = { $gt: after };
    const docs = await c.find(filter, { sort: { key: 1 }, limit, projection: { history: 0 } }).toArray();
    return docs.map((d) => experimentFromDocument({ ...d, history: [] }));
  }

  /**
   * Writes `next` only if the stored version is still `expectedVersion`. False when another
   * change came first (the caller re-reads, and answers ABORTED to an etag-carrying request).
   */
  async replace(next: Experiment, expectedVersion: number): Promise<boolean> {
    const c = await this.collection();
    const r = await c.replaceOne({ _id: next.key, version: expectedVersion }, experimentDocument(next));
    return r.matchedCount === 1;
  }
}
