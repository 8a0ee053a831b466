import { ClickAnalytics, EventOutcome as OutcomeProto, Granularity, InterleavingTest, type EventResult } from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import { bucketStarts, requireTimeZone } from "../core/time-buckets.js";
import { requireBatchSize, tally, type EventOutcome } from "../core/batch.js";
import { DomainError, InvalidArgumentError } from "../core/errors.js";
import { optionalVariant, requireId, requireVariant } from "../core/events.js";
import { rankStats, ratio } from "../core/metrics.js";
import { type ClickStore, findOriginalClick, findOriginalImpression, userActivity, type MetricsFilter, fastMetrics, type MetricsSource, RESULTS_COUNT_CAP, rawInterleavingPairs, ExperimentStore } from "../store/click-store.js";
import { requireAdmin } from "./auth.js";
import { variantComparison } from "./comparison-response.js";
import { emptyPairTally, mirrorResult, pairKey, pairResult, type InterleavingResult, type PairTally } from "../core/interleaving.js";
import { MAX_CONFIDENCE, MIN_CONFIDENCE } from "../core/comparison-model.js";
import { ComposedCache } from "../core/composed-cache.js";
import { ctrByRank, groupCoec, searchesShowingRank } from "../core/position-bias.js";
import { ctrFields, queryFirstClicks, timeSeriesPointFields } from "./ctr-fields.js";
import { exportEvents } from "./export.js";
import type { CallContext, ServiceImpl } from "./grpc-adapter.js";
import { clickFromRequest, impressionFromRequest, ingestBatch, ingestOne, prepareEvents, writePrepared } from "./ingest.js";
import { metricsFilter, windowOf, queryLimit, responseTime, topQueriesOrder } from "./request-mapping.js";
import { WatchHub } from "./watch.js";
import { experimentsService } from "./experiments-service.js";
import { experimentComparison, namedExperiment, resolveWatchRequest } from "./experiment-scorecard.js";

const MAX_REPORTED_REJECTIONS = 20;

const INTERLEAVING_TEST = { none: InterleavingTest.UNSPECIFIED, exact: InterleavingTest.EXACT, "monte-carlo": InterleavingTest.MONTE_CARLO, normal: InterleavingTest.NORMAL } as const;

const OUTCOME: Record<EventOutcome["outcome"], OutcomeProto> = {
  accepted: OutcomeProto.ACCEPTED,
  duplicate: OutcomeProto.DUPLICATE,
  rejected: OutcomeProto.REJECTED,
};

function eventResult(o: EventOutcome): Omit<EventResult, "$typeName" | "$unknown"> {
  return { index: BigInt(o.index), outcome: OUTCOME[o.outcome], eventId: o.eventId, field: o.field ?? "", reason: o.reason ?? "" };
}

/**
 * Never wrong numbers: while acknowledged events still wait in the spool, reads are
 * unavailable; and whatever is stored is counted first (batches of dead writers included).
 */
export async function requireCountComplete(store: ClickStore): Promise<void> {
  const pending = store.writer.pending;
  if (pending > 0) throw new DomainError("unavailable", `metrics are unavailable while ${pending} acknowledged batch(es) are recovered from the local spool; retry shortly`);
  await store.countEverythingStored();
}

export interface ServiceDeps {
  store: ClickStore;
  /** Where metrics come from; rollups with a raw-event fallback by default. */
  metrics?: MetricsSource;
  /** Aborted when the server begins to shut down: open streams end cleanly. */
  shutdown?: AbortSignal;
  adminToken?: string | undefined;
  now?: () => Date;
  /** Told the outcomes of every write call or stream batch (the events_ingested metric). */
  onIngested?: ((counts: Partial<Record<"accepted" | "duplicate" | "rejected", number>>) => void) | undefined;
  /** GetInterleavingResult straight from the raw events instead of the interleaving rollups (a reference for tests). */
  rawInterleaving?: boolean | undefined;
  /** Shares WatchMetrics computations between streams and caps them; one with default limits if unset. */
  watch?: WatchHub | undefined;
  /** Where experiments are kept; the store's database by default. */
  experiments?: ExperimentStore | undefined;
}

/** The ClickAnalytics handlers: validate, delegate to the store, shape the response. */
export function clickAnalyticsService(deps: ServiceDeps): ServiceImpl<typeof ClickAnalytics> {
  const { store } = deps;
  const metrics = deps.metrics ?? fastMetrics(store.collections, store.rollups, store.queryTables, store.retention, store.userRollups);
  const now = deps.now ?? (() => new Date());
  const count = (n: number) => BigInt(n);

  /** The caller's remaining time, handed to MongoDB so that an expired call's work is abandoned. */
  const withBudget = <F extends MetricsFilter>(f: F, ctx: CallContext): F => (Number.isFinite(ctx.deadline) ? { ...f, maxTimeMS: Math.max(1, ctx.deadline - Date.now()), deadline: ctx.deadline } : f);
  /** A unary write's event, counted as rejected when its request breaks a rule. */
  const validated = <T>(build: () => T): T => {
    try {
      return build();
    } catch (error) {
      if (error instanceof InvalidArgumentError) deps.onIngested?.({ rejected: 1 });
      throw error;
    }
  };

  const requireComplete = () => requireCountComplete(store);
  /**
   * Every ranker pair's tally over the window (users keyed however the source keys them): from
   * the interleaving rollups, or straight from the events when the service was built with raw
   * metrics (the reference the rollups are checked against).
   */
  const interleavingPairs = (f: MetricsFilter): Promise<Map<string, PairTally<unknown>>> => (deps.rawInterleaving === true ? rawInterleavingPairs(store.collections, f) : store.interleaving.pairs(f));
  // A pair's test over the same (cached, unchanged) tally at the same confidence is the same result.
  const pairResults = new ComposedCache<PairTally<unknown>, InterleavingResult>();
  const pairResultOf = (p: PairTally<unknown>, confidence: number) => pairResults.get(p, [confidence]) ?? pairResults.set(p, [confidence], pairResult(p, confidence));
  const watch = deps.watch ?? new WatchHub({ store, metrics, requireComplete, now });
  const experiments = deps.experiments ?? new ExperimentStore(store.db);

  return {
    ...experimentsService(experiments, now),

    async logClick(req, ctx) {
      const event = validated(() => clickFromRequest(req, ctx, now()));
      const fresh = await ingestOne(store.writer, { kind: "click", event });
      deps.onIngested?.(fresh ? { accepted: 1 } : { duplicate: 1 });
      if (fresh) {
        return { eventId: event.eventId, userId: event.userId, productId: event.productId, rank: event.rank, timestamp: responseTime(event.timestamp) };
      }
      // A retry: answer with the event as first recorded.
      const original = await findOriginalClick(store.collections, event.eventId);
      if (!original) throw new Error(`duplicate click ${event.eventId} has no original`);
      return { eventId: original.event_id, userId: original.user_id, productId: original.product_id, rank: original.rank, timestamp: responseTime(original.timestamp) };
    },

    async logImpression(req, ctx) {
      const event = validated(() => impressionFromRequest(req, ctx, now()));
      const fresh = await ingestOne(store.writer, { kind: "impression", event });
      deps.onIngested?.(fresh ? { accepted: 1 } : { duplicate: 1 });
      if (fresh) {
        return { impressionId: event.impressionId, userId: event.userId, query: event.query, variant: event.variant, timestamp: responseTime(event.timestamp) };
      }
      const original = await findOriginalImpression(store.collections, event.eventId, event.impressionId);
      if (!original) throw new Error(`duplicate impression ${event.eventId} has no original`);
      return { impressionId: original.impression_id, userId: original.user_id, query: original.query, variant: original.variant, timestamp: responseTime(original.timestamp) };
    },

    async logEvents(req, ctx) {
      requireBatchSize(req.events.length);
      const outcomes = await ingestBatch(store.writer, req.events, ctx, now());
      const totals = tally(outcomes);
      deps.onIngested?.(totals);
      return {
        results: outcomes.map(eventResult),
        accepted: count(totals.accepted),
        duplicates: count(totals.duplicate),
        rejected: count(totals.rejected),
      };
    },

    async streamEvents(requests, ctx) {
      const totals = { accepted: 0, duplicate: 0, rejected: 0 };
      const firstRejections: EventOutcome[] = [];
      let batches = 0;
      let position = 0;
      // One message at a time: the adapter reads about one ahead (grpc-adapter.ts, decodedStream),
      // so a fast client is held back by HTTP/2 flow control instead of filling this process's memory.
      for await (const message of requests) {
        if (ctx.signal.aborted) break;
        requireBatchSize(message.events.length, `batches[${batches}].events`);
        const count = message.events.length;
        const batch = prepareEvents(message.events, ctx, now(), position);
        // The decoded events are not needed past validation: let go now, they die young instead of
        // being copied by the garbage collector while the batch is written (this loop holds `message`).
        message.events = [];
        const outcomes = await writePrepared(store.writer, batch);
        batches++;
        position += count;
        const t = tally(outcomes);
        deps.onIngested?.(t);
        totals.accepted += t.accepted;
        totals.duplicate += t.duplicate;
        totals.rejected += t.rejected;
        for (const o of outcomes) if (o.outcome === "rejected" && firstRejections.length < MAX_REPORTED_REJECTIONS) firstRejections.push(o);
      }
      return {
        accepted: count(totals.accepted),
        duplicates: count(totals.duplicate),
        rejected: count(totals.rejected),
        batches: count(batches),
        firstRejections: firstRejections.map(eventResult),
      };
    },

    async getCtr(req, ctx) {
      const filter = withBudget(metricsFilter(req, now()), ctx);
      await requireComplete();
      const totals = await metrics.totals(filter);
      return {
        ...ctrFields(totals.overall),
        periodDays: filter.window.days,
        variants: Object.fromEntries([...totals.variants].map(([name, t]) => [name, ctrFields(t)])),
      };
    },

    async getRankMetrics(req, ctx) {
      const filter = withBudget(metricsFilter(req, now()), ctx);
      await requireComplete();
      // One read: the rank statistics (every click, as an event) and the position measures (linked clicks at shown ranks, with their searches).
      const positions = (await metrics.positions(filter, false)).get("");
      const stats = rankStats(positions?.clicksByRank ?? []);
      const shown = searchesShowingRank(positions?.resultsCounts ?? new Map(), RESULTS_COUNT_CAP);
      const linked = positions?.linkedClicksByRank ?? new Map<number, number>();
      return {
        avgRank: stats.avg,
        medianRank: stats.median,
        minRank: stats.min,
        maxRank: stats.max,
        clicksByRank: Object.fromEntries([...stats.clicksByRank].map(([rank, n]) => [rank, count(n)])),
        totalClicks: count(stats.total),
        searchesByRank: Object.fromEntries(shown.flatMap((n, rank) => (n > 0 ? [[rank, count(n)]] : []))),
        ctrByRank: Object.fromEntries(ctrByRank(linked, shown)),
        linkedClicksByRank: Object.fromEntries([...linked].filter(([, n]) => n > 0).map(([rank, n]) => [rank, count(n)])),
        clicksOutsideResults: count(positions?.clicksOutsideResults ?? 0),
      };
    },

    async getResponseTimeMetrics(req, ctx) {
      const filter = withBudget(metricsFilter(req, now()), ctx);
      await requireComplete();
      const s = await metrics.responseTimes(filter);
      return {
        avgResponseTimeMs: s.avg,
        minResponseTimeMs: s.min,
        maxResponseTimeMs: s.max,
        p50ResponseTimeMs: s.p50,
        p95ResponseTimeMs: s.p95,
        p99ResponseTimeMs: s.p99,
        count: count(s.count),
      };
    },

    async getUserSummary(req, ctx) {
      if (req.userId === "") throw new InvalidArgumentError("user_id", "is required");
      const userId = requireId("user_id", req.userId);
      const window = windowOf(req, now());
      // One user's events, read raw from the window's start.
      store.retention.require(window.start, "events");
      await requireComplete();
      const a = await userActivity(store.collections, userId, withBudget({ window }, ctx));
      return {
        userId,
        periodDays: window.days,
        totalClicks: count(a.clicks),
        totalImpressions: count(a.impressions),
        ctr: ratio(a.clicks, a.impressions),
        avgRankClicked: a.avgRankClicked,
        avgResponseTimeMs: a.avgResponseTimeMs,
        variantsUsed: a.variantsUsed,
      };
    },

    async getVariantComparison(req, ctx) {
      const compare = (r: typeof req, source = (m: MetricsSource) => m) => variantComparison(source(metrics), r, windowOf(r, now()), (f) => withBudget(f, ctx), requireComplete);
      // A named experiment supplies what the request leaves unset (experiment-scorecard.ts).
      return req.experiment === "" ? compare(req) : experimentComparison(experiments, req, compare, now);
    },

    async getTopQueries(req, ctx) {
      const filter = withBudget({ window: windowOf(req, now()), variant: optionalVariant("variant", req.variant) }, ctx);
      const [order, limit] = [topQueriesOrder(req.orderBy), queryLimit(req.limit)];
      await requireComplete();
      // COEC's expected click rate per rank: the window's, over all variants (as GetRankMetrics without a variant).
      const [rows, positions] = await Promise.all([metrics.topQueries(filter, order, limit), metrics.positions(withBudget({ window: filter.window }, ctx), false)]);
      const pooled = positions.get("");
      const coec = groupCoec(ctrByRank(pooled?.linkedClicksByRank ?? new Map(), searchesShowingRank(pooled?.resultsCounts ?? new Map(), RESULTS_COUNT_CAP)), RESULTS_COUNT_CAP);
      return {
        periodDays: filter.window.days,
        queries: rows.map((q) => ({
          query: q.query,
          searches: count(q.searches),
          clicks: count(q.clicks),
          ctr: ratio(q.clicks, q.searches),
          searchCtr: ratio(q.searchesWithClicks, q.searches),
          avgClickRank: ratio(q.rankSum, q.clicks),
          noResults: count(q.noResults),
          coec: q.positions && coec(q.positions.shownClicks, q.positions.resultsCounts),
          ...queryFirstClicks(q),
          clicksOutsideResults: count(q.clicksOutsideResults),
        })),
      };
    },

    async getTimeSeries(req, ctx) {
      const filter = withBudget(metricsFilter(req, now()), ctx);
      const zone = requireTimeZone("time_zone", req.timeZone);
      if (![Granularity.UNSPECIFIED, Granularity.HOUR, Granularity.DAY].includes(req.granularity)) {
        throw new InvalidArgumentError("granularity", `must be HOUR or DAY (got enum value ${req.granularity})`);
      }
      const unit = req.granularity === Granularity.HOUR ? "hour" : "day";
      // A period's end is exclusive: no bucket starts at it.
      const starts = bucketStarts(zone, unit, filter.window.start, filter.window.until ? new Date(filter.window.until.getTime() - 1) : filter.window.end);
      await requireComplete();
      const rows = await metrics.timeSeries(filter, unit, zone, starts);
      return {
        periodDays: filter.window.days,
        granularity: unit === "hour" ? Granularity.HOUR : Granularity.DAY,
        timeZone: zone,
        points: rows.map((r, i) => ({ start: responseTime(starts[i]!), ...timeSeriesPointFields(r) })),
      };
    },

    async *watchMetrics(req, ctx) {
      const resolved = req.experiment === "" ? req : resolveWatchRequest(req, await namedExperiment(experiments, req.experiment, now()));
      yield* watch.watch(resolved, ctx, AbortSignal.any([ctx.signal, ...(deps.shutdown ? [deps.shutdown] : [])]));
    },

    exportEvents: (req, ctx) => exportEvents(store, req, ctx, now()),

    async getInterleavingResult(req, ctx) {
      const filter = withBudget({ window: windowOf(req, now()), variant: optionalVariant("variant", req.variant) }, ctx);
      // Both empty: the matrix of every pair only.
      const matrixOnly = req.rankerA === "" && req.rankerB === "";
      const rankerA = matrixOnly ? "" : requireVariant("ranker_a", req.rankerA);
      const rankerB = matrixOnly ? "" : requireVariant("ranker_b", req.rankerB);
      if (!matrixOnly && rankerA === rankerB) throw new InvalidArgumentError("ranker_b", `must differ from ranker_a, got "${rankerB}" twice`);
      const confidence = req.confidence ?? 0.95;
      if (!(confidence >= MIN_CONFIDENCE && confidence <= MAX_CONFIDENCE)) throw new InvalidArgumentError("confidence", `must be between ${MIN_CONFIDENCE} and ${MAX_CONFIDENCE} (inclusive), got ${confidence}`);
      await requireComplete();
      const pairs = await interleavingPairs(filter);
      const fields = (r: InterleavingResult) => ({
        rankerA: r.rankerA,
        rankerB: r.rankerB,
        impressions: count(r.impressions),
        winsA: count(r.winsA),
        winsB: count(r.winsB),
        ties: count(r.ties),
        uncreditedClicks: count(r.uncreditedClicks),
        users: count(r.users),
        usersPreferringA: count(r.usersPreferringA),
        usersPreferringB: count(r.usersPreferringB),
        usersTied: count(r.usersTied),
        delta: r.delta,
        pValue: r.pValue,
        significant: r.significant,
        preferred: !r.significant || r.delta === undefined ? "" : r.delta.value > 0 ? r.rankerA : r.rankerB,
        test: INTERLEAVING_TEST[r.test ?? "none"],
      });
      // Each pair tested once, in byte order; the requested pair is one of them (or mirrors one).
      const results = new Map([...pairs].map(([k, p]) => [k, pairResultOf(p, confidence)]));
      const sorted = [...results.values()].sort((x, y) => (x.rankerA < y.rankerA ? -1 : x.rankerA > y.rankerA ? 1 : x.rankerB < y.rankerB ? -1 : x.rankerB > y.rankerB ? 1 : 0));
      const asked = () => {
        const canonical = rankerA < rankerB;
        const r = results.get(canonical ? pairKey(rankerA, rankerB) : pairKey(rankerB, rankerA)) ?? pairResult(emptyPairTally<unknown>(canonical ? rankerA : rankerB, canonical ? rankerB : rankerA), confidence);
        return canonical ? r : mirrorResult(r);
      };
      return {
        periodDays: filter.window.days,
        confidence,
        ...(matrixOnly ? { rankerA: "", rankerB: "" } : fields(asked())),
        pairs: sorted.map(fields),
      };
    },

    async reset(_req, ctx) {
      requireAdmin(ctx, deps.adminToken);
      await store.reset();
      return { message: "all tracking data deleted", timestamp: responseTime(now()) };
    },
  };
}
