/**
 * WatchMetrics for many watchers. Streams that ask the same question (user, variant, window or
 * period, interval) share one ticker: it computes one snapshot per interval and hands it to every
 * stream, so the cost follows the number of distinct questions, not of watchers. A tick whose
 * inputs did not change (rollup versions, this process's writes, a trailing window's moving
 * start) reuses the previous numbers instead of computing them again.
 *
 * Each stream holds at most one snapshot not yet sent: a newer one replaces it. With the
 * adapter writing a stream's next message only once the previous one left (oneInFlight), a
 * client that does not read gets the latest snapshot when it resumes, never a backlog, and the
 * server's memory per stream stays bounded.
 */
import { createHash } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { WatchMetricsRequest, WatchMetricsResponseSchema } from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import { DomainError } from "../core/errors.js";
import { ratio, type RankStats } from "../core/metrics.js";
import { type ClickStore, anyEventBetween, type EventTotals, type MetricsFilter, type MetricsSource } from "../store/click-store.js";
import { bearerToken } from "./auth.js";
import { firstClickFields } from "./ctr-fields.js";
import type { CallContext } from "./grpc-adapter.js";
import { metricsFilter, responseTime, watchInterval } from "./request-mapping.js";

export type Snapshot = MessageInitShape<typeof WatchMetricsResponseSchema>;

export const DEFAULT_WATCH_MAX_STREAMS = 1_000;
export const DEFAULT_WATCH_MAX_STREAMS_PER_TOKEN = 500;

/**
 * Numbers are recomputed at least this often even when nothing they depend on seems to have
 * changed: a safety net for whatever the change signals could miss (another server's reset
 * followed by writes that happen to leave the same versions).
 */
const FORCED_REFRESH_MS = 60_000;
/**
 * MongoDB budget of one shared computation at most; less when every stream of the question has a
 * deadline sooner (work past the last of them would be for nobody).
 */
const COMPUTE_BUDGET_MS = 30_000;
/** Computations whose durations set how early the next one starts (see Question.loop). */
const LEAD_SAMPLES = 8;
/**
 * A send this close to its tick counts as the tick, even for a joining stream: sent "early" it
 * would be followed at once by the tick's own send.
 */
const TIMER_SLACK_MS = 10;

export interface WatchLimits {
  /** Concurrent WatchMetrics streams on this server (WATCH_MAX_STREAMS). */
  maxStreams: number;
  /** Per bearer token, when access control is on (WATCH_MAX_STREAMS_PER_TOKEN); undefined: no per-token limit. */
  maxStreamsPerToken?: number | undefined;
}

export interface WatchDeps {
  store: Pick<ClickStore, "changeCount" | "rollups" | "collections" | "watchdog">;
  metrics: MetricsSource;
  /** Throws while the stored numbers would be incomplete (spooled events, unfinished batches). */
  requireComplete: () => Promise<void>;
  now: () => Date;
  limits?: Partial<WatchLimits> | undefined;
}

export interface WatchStats {
  /** Open WatchMetrics streams. */
  streams: number;
  /** Distinct questions they ask (shared tickers). */
  questions: number;
  /** Snapshots computed from the metrics source. */
  computations: number;
  /** Ticks that found nothing changed and reused the previous numbers. */
  reuses: number;
  /** Snapshots handed to streams. */
  delivered: number;
  /** Snapshots a stream did not take before a newer one replaced them (slow consumers). */
  superseded: number;
}

const snapshotOf = (t: EventTotals | undefined, ranks: RankStats | undefined, latency: (number | undefined)[] | undefined) => ({
  impressions: BigInt(t?.impressions ?? 0),
  clicks: BigInt(t?.clicks ?? 0),
  ctr: t && ratio(t.clicks, t.impressions),
  searchCtr: t && ratio(t.searchesWithClicks, t.impressions),
  avgRank: ranks?.avg,
  medianRank: ranks?.median,
  p50ResponseTimeMs: latency?.[0],
  p95ResponseTimeMs: latency?.[1],
  firstClick: t && firstClickFields(t.firstClicks),
});

/** One WatchMetrics message: totals, rank and latency summaries, overall and per variant, as of `at`. */
export async function computeSnapshot(metrics: MetricsSource, filter: MetricsFilter, at: Date): Promise<Snapshot> {
  const [totals, ranks, ranksByVariant, latency, latencyByVariant] = await Promise.all([
    metrics.totals(filter),
    metrics.ranks(filter, false),
    metrics.ranks(filter, true),
    metrics.latency(filter, [0.5, 0.95], false),
    metrics.latency(filter, [0.5, 0.95], true),
  ]);
  return {
    timestamp: responseTime(at),
    periodDays: filter.window.days,
    overall: snapshotOf(totals.overall, ranks.get(""), latency.get("")),
    variants: Object.fromEntries([...totals.variants.keys()].map((name) => [name, snapshotOf(totals.variants.get(name), ranksByVariant.get(name), latencyByVariant.get(name))])),
  };
}

/** One stream's mailbox: at most one snapshot waiting, the newest. */
class Watcher {
  private pending: Snapshot | undefined;
  private failure: { error: unknown } | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly stats: WatchStats,
    /** The stream's deadline (epoch ms, Infinity for none). */
    readonly deadline: number,
  ) {}

  offer(snapshot: Snapshot): void {
    if (this.pending !== undefined) this.stats.superseded++;
    this.pending = snapshot;
    this.wake?.();
  }

  fail(error: unknown): void {
    this.failure = { error };
    this.wake?.();
  }

  /** The next snapshot; undefined once `stop` aborts. */
  async next(stop: AbortSignal): Promise<Snapshot | undefined> {
    while (this.pending === undefined && this.failure === undefined && !stop.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          stop.removeEventListener("abort", done);
          this.wake = undefined;
          resolve();
        };
        this.wake = done;
        stop.addEventListener("abort", done, { once: true });
      });
    }
    if (this.failure !== undefined) throw this.failure.error;
    if (stop.aborted) return undefined;
    const snapshot = this.pending;
    this.pending = undefined;
    this.stats.delivered++;
    return snapshot;
  }
}

interface Latest {
  snapshot: Snapshot;
  /** The time the snapshot describes (ms). */
  at: number;
  /** When its numbers were last computed (ms), and the window start they were computed for. */
  computedAt: number;
  start: number;
  /** What the numbers depend on, as of computedAt. */
  signature: string;
}

/** One distinct question and its ticker. */
class Question {
  readonly watchers = new Set<Watcher>();
  private latest: Latest | undefined;
  /** Set by a joining stream: the snapshot in progress goes out as soon as it is computed. */
  private urgent = false;
  /** How long the last few computations took (ms): how early the next one starts. */
  private readonly durations: number[] = [];
  private running = false;
  private closed = false;
  private wakeLoop: (() => void) | undefined;

  constructor(
    private readonly hub: WatchHub,
    private readonly deps: WatchDeps,
    private readonly request: WatchMetricsRequest,
    readonly intervalMs: number,
  ) {}

  join(watcher: Watcher): void {
    this.watchers.add(watcher);
    if (!this.running) {
      // The first watcher starts the ticker: its first tick is that watcher's first snapshot.
      this.running = true;
      void this.loop();
      return;
    }
    // The first snapshot at once: the latest if it is still within its interval, else the one
    // being computed, else a tick now (which the question's other streams get too).
    const latest = this.latest;
    if (latest !== undefined && Date.now() - latest.at < this.intervalMs) watcher.offer(latest.snapshot);
    else {
      this.urgent = true;
      this.wakeLoop?.();
    }
  }

  /** True when that was the last watcher: the ticker stops. */
  leave(watcher: Watcher): boolean {
    this.watchers.delete(watcher);
    if (this.watchers.size > 0) return false;
    this.closed = true;
    this.wakeLoop?.();
    return true;
  }

  /**
   * Ticks on a fixed cadence: each computation starts early by as long as the recent ones took
   * (the longest of the last LEAD_SAMPLES) and its snapshot is held until the tick, so streams get
   * one every interval however the computations' durations vary. (Sent as each computation
   * ended, the gap was the interval plus the difference of two durations: at 1M events on two
   * cores, p99 1.47 s for a 1 s interval.) A computation longer than its lead is sent late, and
   * the cadence then restarts from it.
   */
  private async loop(): Promise<void> {
    let due = Date.now();
    while (!this.closed) {
      const lead = this.durations.length === 0 ? 0 : Math.max(...this.durations);
      this.urgent = false;
      const startIn = due - lead - Date.now();
      if (startIn > 0) await this.sleep(startIn);
      if (this.closed) return;
      const started = Date.now();
      let snapshot: Snapshot;
      try {
        // An engine that stops answering ends the streams with UNAVAILABLE within the ping
        // timeout (the watchers reconnect), instead of holding them silent until it resumes.
        snapshot = await this.deps.store.watchdog.race(this.tick());
      } catch (error) {
        // What a stream's own computation would have ended it with: every stream of the question.
        this.closed = true;
        this.hub.forget(this);
        for (const w of this.watchers) w.fail(error);
        return;
      }
      this.durations.push(Date.now() - started);
      if (this.durations.length > LEAD_SAMPLES) this.durations.shift();
      // A stream that joined meanwhile wants its first snapshot at once, not at the tick.
      const holdFor = due - Date.now();
      if (holdFor > 0 && !this.urgent) await this.sleep(holdFor);
      if (this.closed) return;
      // Sent before its tick for a joining stream: the others still get one at the tick. Early
      // only when a joining stream cut the hold short: a Node timer can fire a millisecond
      // before Date.now() reaches its due time, and judged by the clock alone that send was
      // "early", so the tick was sent again at once (two snapshots in one interval).
      const early = this.urgent && due - Date.now() > TIMER_SLACK_MS;
      for (const w of this.watchers) w.offer(snapshot);
      if (!early) due = Math.max(due, Date.now() - this.intervalMs / 2) + this.intervalMs;
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeLoop = () => {
        this.wakeLoop = undefined;
        done();
      };
    });
  }

  /** One snapshot as of now: computed, or the previous numbers when nothing they depend on changed. */
  private async tick(): Promise<Snapshot> {
    const { store, metrics } = this.deps;
    const at = this.deps.now();
    const lastDeadline = this.watchers.size === 0 ? Infinity : Math.max(...[...this.watchers].map((w) => w.deadline));
    const filter: MetricsFilter = { ...metricsFilter(this.request, at), maxTimeMS: Math.max(1, Math.min(COMPUTE_BUDGET_MS, lastDeadline - Date.now())) };
    await this.deps.requireComplete();
    // Read before the numbers, so that a write landing during the computation moves the next
    // tick's signature. The local counter is exact for this process; the versions digest
    // covers other servers' writes; days moves for an open period as it grows.
    const signature = `${store.changeCount}|${filter.window.days}|${await store.rollups.fingerprint(filter.window, filter.variant, filter)}`;
    const previous = this.latest;
    const start = filter.window.start.getTime();
    if (
      previous !== undefined &&
      previous.signature === signature &&
      at.getTime() - previous.computedAt < FORCED_REFRESH_MS &&
      // A trailing window moves with time: only events between its old and new start leave it.
      !(await anyEventBetween(store.collections, new Date(previous.start), filter.window.start, filter))
    ) {
      this.hub.stats.reuses++;
      // The same numbers, verified as of `at`: the snapshot describes `at`.
      const snapshot = { ...previous.snapshot, timestamp: responseTime(at) };
      this.latest = { ...previous, snapshot, at: at.getTime() };
      return snapshot;
    }
    this.hub.stats.computations++;
    const snapshot = await computeSnapshot(metrics, filter, at);
    this.latest = { snapshot, at: at.getTime(), computedAt: at.getTime(), start, signature };
    return snapshot;
  }
}

/** The registry of questions being watched, and the stream caps. */
export class WatchHub {
  readonly stats: WatchStats = { streams: 0, questions: 0, computations: 0, reuses: 0, delivered: 0, superseded: 0 };
  readonly limits: WatchLimits;
  private readonly questions = new Map<string, Question>();
  private readonly perToken = new Map<string, number>();

  constructor(private readonly deps: WatchDeps) {
    this.limits = {
      maxStreams: deps.limits?.maxStreams ?? DEFAULT_WATCH_MAX_STREAMS,
      maxStreamsPerToken: deps.limits?.maxStreamsPerToken,
    };
  }

  /** The snapshots of one stream until `stop` aborts; validates the request before anything else. */
  async *watch(request: WatchMetricsRequest, ctx: CallContext, stop: AbortSignal): AsyncGenerator<Snapshot> {
    const intervalMs = watchInterval(request.intervalSeconds) * 1000;
    const filter = metricsFilter(request, this.deps.now()); // bad filters are refused before the first snapshot
    const release = this.admit(ctx);
    const watcher = new Watcher(this.stats, ctx.deadline);
    let question: Question | undefined;
    try {
      const key = JSON.stringify([
        filter.userId ?? null,
        filter.variant ?? null,
        // A trailing window by its days, a period by its bounds (open-ended or not).
        request.startTime === undefined ? `last ${filter.window.days}d` : [filter.window.start.getTime(), filter.window.until?.getTime() ?? null],
        intervalMs,
      ]);
      question = this.questions.get(key);
      if (question === undefined) {
        question = new Question(this, this.deps, request, intervalMs);
        this.questions.set(key, question);
        this.keys.set(question, key);
        this.stats.questions = this.questions.size;
      }
      question.join(watcher);
      for (;;) {
        const snapshot = await watcher.next(stop);
        if (snapshot === undefined) return;
        yield snapshot;
      }
    } finally {
      if (question?.leave(watcher)) this.forget(question);
      release();
    }
  }

  private readonly keys = new WeakMap<Question, string>();

  /** Drops a question that ended (no watchers left, or its computation failed). */
  forget(question: Question): void {
    const key = this.keys.get(question);
    if (key !== undefined && this.questions.get(key) === question) this.questions.delete(key);
    this.stats.questions = this.questions.size;
  }

  /**
   * Counts the stream in, or refuses it with RESOURCE_EXHAUSTED naming the limit; returns its
   * release. Synchronous, so concurrent calls cannot overshoot.
   */
  private admit(ctx: CallContext): () => void {
    const { maxStreams, maxStreamsPerToken } = this.limits;
    if (this.stats.streams >= maxStreams) {
      throw new DomainError("resource_exhausted", `too many WatchMetrics streams: this server allows ${maxStreams} at once (WATCH_MAX_STREAMS); close one or retry later`);
    }
    const token = maxStreamsPerToken === undefined ? undefined : bearerToken(ctx);
    // Counted by a digest: the token itself is never kept.
    const tokenKey = token === undefined ? undefined : createHash("sha256").update(token, "utf8").digest("base64url");
    if (tokenKey !== undefined && (this.perToken.get(tokenKey) ?? 0) >= maxStreamsPerToken!) {
      throw new DomainError("resource_exhausted", `too many WatchMetrics streams for this token: at most ${maxStreamsPerToken} at once (WATCH_MAX_STREAMS_PER_TOKEN); close one or retry later`);
    }
    this.stats.streams++;
    if (tokenKey !== undefined) this.perToken.set(tokenKey, (this.perToken.get(tokenKey) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.stats.streams--;
      if (tokenKey === undefined) return;
      const n = (this.perToken.get(tokenKey) ?? 1) - 1;
      if (n > 0) this.perToken.set(tokenKey, n);
      else this.perToken.delete(tokenKey);
    };
  }
}
