/**
 * What `click-analytics report` shows, fetched through the typed client: the variant comparison
 * and, for the HTML page, each variant's daily series, clicks by rank and latency percentiles.
 * Also the per-day and per-variant intervals the report draws, computed here from counts.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Granularity, type ClickAnalyticsClient, type GetResponseTimeMetricsResponse, type GetVariantComparisonResponse } from "../../client/index.js";
import { wilsonInterval, zCritical, type Interval } from "../../core/statistics.js";

export interface ReportRequest {
  days: number;
  control?: string | undefined;
  confidence?: number | undefined;
  timeZone?: string | undefined;
}

export interface DayPoint {
  /** Start of the day (local midnight in the report's time zone), ms since the epoch. */
  startMs: number;
  impressions: number;
  clicks: number;
  searchesWithClicks: number;
  /** clicks / impressions (a Poisson rate; can exceed 1); undefined without impressions. */
  ctr?: number | undefined;
  /** Score interval of the Poisson rate. */
  ctrInterval?: Interval | undefined;
  searchCtr?: number | undefined;
  /** Wilson score interval of the search CTR (a binomial proportion). */
  searchCtrInterval?: Interval | undefined;
  p95ResponseTimeMs?: number | undefined;
}

export interface VariantDetail {
  variant: string;
  days: DayPoint[];
  /** Clicks per 0-indexed rank. */
  clicksByRank: Map<number, number>;
  totalClicks: number;
  latency: Pick<GetResponseTimeMetricsResponse, "avgResponseTimeMs" | "p50ResponseTimeMs" | "p95ResponseTimeMs" | "p99ResponseTimeMs"> & { count: number };
}

export interface ReportData {
  address: string;
  generatedAt: Date;
  days: number;
  timeZone: string;
  comparison: GetVariantComparisonResponse;
  /** Control first, then the others by name. */
  variants: VariantDetail[];
}

/**
 * The score interval of a Poisson rate x / n (clicks per impression): the rates λ with
 * (x − λn)² / (λn) ≤ z², i.e. (x + z²/2 ± z √(x + z²/4)) / n. Lower bound exactly 0 at x = 0.
 */
export function poissonRateInterval(events: number, exposure: number, confidence: number): Interval | undefined {
  if (!(exposure > 0) || !(events >= 0)) return undefined;
  const z = zCritical(confidence);
  const z2 = z * z;
  const center = events + z2 / 2;
  const half = z * Math.sqrt(events + z2 / 4);
  return { low: events === 0 ? 0 : Math.max(0, (center - half) / exposure), high: (center + half) / exposure };
}

/** Variants of a comparison, the control first. */
export function orderedVariants(comparison: GetVariantComparisonResponse): string[] {
  const names = Object.keys(comparison.variants).sort();
  return [...names.filter((n) => n === comparison.control), ...names.filter((n) => n !== comparison.control)];
}

export function comparisonRequest(r: ReportRequest) {
  return { days: r.days, control: r.control ?? "", ...(r.confidence === undefined ? {} : { confidence: r.confidence }) };
}

/** Everything the HTML report draws: one comparison, then per variant three calls, all in parallel. */
export async function fetchReportData(client: ClickAnalyticsClient, address: string, r: ReportRequest): Promise<ReportData> {
  const comparison = await client.getVariantComparison(comparisonRequest(r));
  const confidence = comparison.confidence || 0.95;
  const timeZone = r.timeZone ?? "UTC";
  const variants = await Promise.all(
    orderedVariants(comparison).map(async (variant): Promise<VariantDetail> => {
      const [series, ranks, latency] = await Promise.all([
        client.getTimeSeries({ days: r.days, variant, granularity: Granularity.DAY, timeZone }),
        client.getRankMetrics({ days: r.days, variant }),
        client.getResponseTimeMetrics({ days: r.days, variant }),
      ]);
      return {
        variant,
        days: series.points.map((p): DayPoint => {
          const impressions = Number(p.impressions);
          const clicks = Number(p.clicks);
          // search_ctr is searchesWithClicks / impressions; the count comes back exactly.
          const searchesWithClicks = p.searchCtr === undefined ? 0 : Math.min(impressions, Math.round(p.searchCtr * impressions));
          return {
            startMs: p.start ? timestampMs(p.start) : 0,
            impressions,
            clicks,
            searchesWithClicks,
            ctr: p.ctr,
            ctrInterval: poissonRateInterval(clicks, impressions, confidence),
            searchCtr: p.searchCtr,
            searchCtrInterval: impressions > 0 ? wilsonInterval(searchesWithClicks, impressions, confidence) : undefined,
            p95ResponseTimeMs: p.p95ResponseTimeMs,
          };
        }),
        clicksByRank: new Map(Object.entries(ranks.clicksByRank).map(([rank, n]) => [Number(rank), Number(n)])),
        totalClicks: Number(ranks.totalClicks),
        latency: {
          avgResponseTimeMs: latency.avgResponseTimeMs,
          p50ResponseTimeMs: latency.p50ResponseTimeMs,
          p95ResponseTimeMs: latency.p95ResponseTimeMs,
          p99ResponseTimeMs: latency.p99ResponseTimeMs,
          count: Number(latency.count),
        },
      };
    }),
  );
  return { address, generatedAt: new Date(), days: comparison.periodDays || r.days, timeZone, comparison, variants };
}
