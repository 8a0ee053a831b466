import { ClickAnalytics } from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import { InvalidArgumentError } from "../core/errors.js";
import { requireId, validateClick, validateImpression } from "../core/events.js";
import { ratio, winnerByCtr } from "../core/metrics.js";
import { timeWindow } from "../core/window.js";
import type { ClickStore } from "../store/click-store.js";
import { ctrTotals, rankMetrics, responseTimeStats, userActivity, variantActivity } from "../store/metrics-queries.js";
import { requireAdmin } from "./auth.js";
import type { ServiceImpl } from "./grpc-adapter.js";
import { clickSource, identity, metricsFilter, requestTime, responseTime } from "./request-mapping.js";

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
      const event = validateClick(
        {
          ...identity(req, ctx),
          productId: req.productId,
          rank: req.rank,
          searchQuery: req.searchQuery,
          variant: req.variant,
          responseTimeMs: req.responseTimeMs,
          source: clickSource(req.source),
          timestamp: requestTime(req.timestamp),
        },
        now(),
      );
      await store.insertClick(event);
      return { eventId: event.eventId, userId: event.userId, productId: event.productId, rank: event.rank, timestamp: responseTime(event.timestamp) };
    },

    async logImpression(req, ctx) {
      const event = validateImpression(
        {
          ...identity(req, ctx),
          query: req.query,
          variant: req.variant,
          resultsCount: req.resultsCount,
          responseTimeMs: req.responseTimeMs,
          timestamp: requestTime(req.timestamp),
        },
        now(),
      );
      await store.insertImpression(event);
      return { impressionId: event.impressionId, userId: event.userId, query: event.query, variant: event.variant, timestamp: responseTime(event.timestamp) };
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
