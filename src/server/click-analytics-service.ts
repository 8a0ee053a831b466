import { ClickAnalytics, EventOutcome as OutcomeProto, type EventResult } from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import { requireBatchSize, tally, type EventOutcome } from "../core/batch.js";
import { InvalidArgumentError } from "../core/errors.js";
import { requireId } from "../core/events.js";
import { ratio, winnerByCtr } from "../core/metrics.js";
import { timeWindow } from "../core/window.js";
import type { ClickStore } from "../store/click-store.js";
import { findOriginalClick, findOriginalImpression } from "../store/event-writer.js";
import { ctrTotals, rankMetrics, responseTimeStats, userActivity, variantActivity } from "../store/metrics-queries.js";
import { requireAdmin } from "./auth.js";
import type { ServiceImpl } from "./grpc-adapter.js";
import { clickFromRequest, impressionFromRequest, ingestBatch, ingestOne } from "./ingest.js";
import { metricsFilter, responseTime } from "./request-mapping.js";

const MAX_REPORTED_REJECTIONS = 20;

const OUTCOME: Record<EventOutcome["outcome"], OutcomeProto> = {
  accepted: OutcomeProto.ACCEPTED,
  duplicate: OutcomeProto.DUPLICATE,
  rejected: OutcomeProto.REJECTED,
};

function eventResult(o: EventOutcome): Omit<EventResult, "$typeName" | "$unknown"> {
  return { index: BigInt(o.index), outcome: OUTCOME[o.outcome], eventId: o.eventId, field: o.field ?? "", reason: o.reason ?? "" };
}

export interface ServiceDeps {
  store: ClickStore;
  adminToken?: string | undefined;
  now?: () => Date;
}

/** The ClickAnalytics handlers: validate, delegate to the store, shape the response. */
export function clickAnalyticsService(deps: ServiceDeps): ServiceImpl<typeof ClickAnalytics> {
  const { store } = deps;
  const now = deps.now ?? (() => new Date());
  const count = (n: number) => BigInt(n);

  return {
    async logClick(req, ctx) {
      const event = clickFromRequest(req, ctx, now());
      if (await ingestOne(store.collections, { kind: "click", event })) {
        return { eventId: event.eventId, userId: event.userId, productId: event.productId, rank: event.rank, timestamp: responseTime(event.timestamp) };
      }
      // A retry: answer with the event as first recorded.
      const original = await findOriginalClick(store.collections, event.eventId);
      if (!original) throw new Error(`duplicate click ${event.eventId} has no original`);
      return { eventId: original.event_id, userId: original.user_id, productId: original.product_id, rank: original.rank, timestamp: responseTime(original.timestamp) };
    },

    async logImpression(req, ctx) {
      const event = impressionFromRequest(req, ctx, now());
      if (await ingestOne(store.collections, { kind: "impression", event })) {
        return { impressionId: event.impressionId, userId: event.userId, query: event.query, variant: event.variant, timestamp: responseTime(event.timestamp) };
      }
      const original = await findOriginalImpression(store.collections, event.eventId, event.impressionId);
      if (!original) throw new Error(`duplicate impression ${event.eventId} has no original`);
      return { impressionId: original.impression_id, userId: original.user_id, query: original.query, variant: original.variant, timestamp: responseTime(original.timestamp) };
    },

    async logEvents(req, ctx) {
      requireBatchSize(req.events.length);
      const outcomes = await ingestBatch(store.collections, req.events, ctx, now());
      const totals = tally(outcomes);
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
      // One message at a time: the next is not read until this one is written, so a fast
      // client is held back by HTTP/2 flow control instead of filling this process's memory.
      for await (const message of requests) {
        if (ctx.signal.aborted) break;
        requireBatchSize(message.events.length, `batches[${batches}].events`);
        const outcomes = await ingestBatch(store.collections, message.events, ctx, now(), position);
        batches++;
        position += message.events.length;
        const t = tally(outcomes);
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

    async getCtr(req) {
      const filter = metricsFilter(req, now());
      const totals = await ctrTotals(store.collections, filter);
      const variants = Object.fromEntries(
        [...totals.variants].map(([name, v]) => [name, { ctr: ratio(v.clicks, v.impressions), clicks: count(v.clicks), impressions: count(v.impressions) }]),
      );
      return {
        ctr: ratio(totals.clicks, totals.impressions),
        clicks: count(totals.clicks),
        impressions: count(totals.impressions),
        periodDays: filter.window.days,
        variants,
      };
    },

    async getRankMetrics(req) {
      const stats = await rankMetrics(store.collections, metricsFilter(req, now()));
      return {
        avgRank: stats.avg,
        medianRank: stats.median,
        minRank: stats.min,
        maxRank: stats.max,
        clicksByRank: Object.fromEntries([...stats.clicksByRank].map(([rank, n]) => [rank, count(n)])),
        totalClicks: count(stats.total),
      };
    },

    async getResponseTimeMetrics(req) {
      const s = await responseTimeStats(store.collections, metricsFilter(req, now()));
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

    async getUserSummary(req) {
      if (req.userId === "") throw new InvalidArgumentError("user_id", "is required");
      const userId = requireId("user_id", req.userId);
      const window = timeWindow(req.days, now());
      const a = await userActivity(store.collections, userId, { window });
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

    async getVariantComparison(req) {
      const window = timeWindow(req.days, now());
      const activity = await variantActivity(store.collections, { window });
      const variants = Object.fromEntries(
        [...activity].map(([name, v]) => [
          name,
          {
            ctr: ratio(v.clicks, v.impressions),
            avgResponseTimeMs: v.avgResponseTimeMs,
            avgRankClicked: v.avgRankClicked,
            totalClicks: count(v.clicks),
            totalImpressions: count(v.impressions),
          },
        ]),
      );
      return {
        periodDays: window.days,
        variants,
        winnerByCtr: winnerByCtr([...activity].map(([variant, v]) => ({ variant, clicks: v.clicks, impressions: v.impressions }))),
      };
    },

    async reset(_req, ctx) {
      requireAdmin(ctx, deps.adminToken);
      await store.reset();
      return { message: "all tracking data deleted", timestamp: responseTime(now()) };
    },
  };
}
