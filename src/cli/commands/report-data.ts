/**
 * What `click-analytics report` shows, fetched through the typed client: the variant comparison
 * and, for the HTML page, each variant's daily series, clicks by rank and latency percentiles.
 * Also the per-day and per-variant intervals the report draws, computed here from counts.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Granularity, Inference, LatencyStatus, type CallOptions, type MetricComparison, type ClickAnalyticsClient, type FirstClickMetrics, type GetInterleavingResultResponse, type GetResponseTimeMetricsResponse, type GetVariantComparisonResponse } from "../../client/index.js";
import { wilsonInterval, type Interval } from "../../core/statistics.js";
import { zCritical } from "../../core/special-functions.js";
import { decimal, integer, NO_DATA, pEquals, percent, percentInterval, points, pointsInterval, pValue, signedMs, signedPercent, signedPercentInterval } from "../format.js";
import { windowRequest, type WindowFlags } from "./common.js";

export interface ReportRequest {
  window: WindowFlags;
  control?: string | undefined;
  confidence?: number | undefined;
  sequential?: boolean | undefined;
  cuped?: boolean | undefined;
  /** Expected users per variant (weights). */
  expectedSplit?: Record<string, number> | undefined;
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
  /** Position bias: clicks at each rank over the searches that showed it (GetRankMetrics.ctr_by_rank). */
  ctrByRank: Map<number, number>;
  totalClicks: number;
  latency: Pick<GetResponseTimeMetricsResponse, "avgResponseTimeMs" | "p50ResponseTimeMs" | "p95ResponseTimeMs" | "p99ResponseTimeMs"> & { count: number };
}

export interface ReportData {
  address: string;
  generatedAt: Date;
  days: number;
  /** "last 30 days" or the period. */
  windowLabel: string;
  timeZone: string;
  comparison: GetVariantComparisonResponse;
  /** Control first, then the others by name. */
  variants: VariantDetail[];
  /** Every ranker pair of the window's interleaved searches (GetInterleavingResult without rankers). */
  interleaving: GetInterleavingResultResponse;
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
  return {
    ...windowRequest(r.window),
    control: r.control ?? "",
    ...(r.confidence === undefined ? {} : { confidence: r.confidence }),
    inference: r.sequential ? Inference.SEQUENTIAL : Inference.FIXED_HORIZON,
    cuped: r.cuped === true,
    expectedSplit: r.expectedSplit ?? {},
  };
}

/** Everything the HTML report draws: one comparison, then per variant three calls, all in parallel; `call` applies to each. */
export async function fetchReportData(client: ClickAnalyticsClient, address: string, r: ReportRequest, call: CallOptions = {}): Promise<ReportData> {
  const comparison = await client.getVariantComparison(comparisonRequest(r), call);
  const confidence = comparison.confidence || 0.95;
  const timeZone = r.timeZone ?? "UTC";
  const interleaving = client.getInterleavingResult({ ...windowRequest(r.window), confidence }, call);
  const variants = await Promise.all(
    orderedVariants(comparison).map(async (variant): Promise<VariantDetail> => {
      const [series, ranks, latency] = await Promise.all([
        client.getTimeSeries({ ...windowRequest(r.window), variant, granularity: Granularity.DAY, timeZone }, call),
        client.getRankMetrics({ ...windowRequest(r.window), variant }, call),
        client.getResponseTimeMetrics({ ...windowRequest(r.window), variant }, call),
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
        ctrByRank: new Map(Object.entries(ranks.ctrByRank).map(([rank, x]) => [Number(rank), x])),
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
  return { address, generatedAt: new Date(), days: comparison.periodDays || r.window.days, windowLabel: windowLabel(comparison, r.window.startTime !== undefined), timeZone, comparison, variants, interleaving: await interleaving };
}

const INFERENCE_NAME: Record<number, string> = { [Inference.UNSPECIFIED]: "fixed-horizon", [Inference.FIXED_HORIZON]: "fixed-horizon", [Inference.SEQUENTIAL]: "sequential (always valid)" };

/** "fixed-horizon inference" or "sequential (always valid) inference, CUPED". */
export function inferenceLabel(c: Pick<GetVariantComparisonResponse, "inference" | "cuped">): string {
  return `${INFERENCE_NAME[c.inference] ?? "fixed-horizon"} inference${c.cuped ? ", CUPED" : ""}`;
}

/** "last 30 days" or "period 2026-11-01 00:00 – 2026-11-15 00:00 UTC". */
export function windowLabel(c: Pick<GetVariantComparisonResponse, "periodDays" | "startTime" | "endTime">, explicit: boolean): string {
  if (!explicit || !c.startTime) return `last ${c.periodDays} days`;
  const at = (t: NonNullable<typeof c.startTime>) => new Date(timestampMs(t)).toISOString().slice(0, 16).replace("T", " ");
  return `period ${at(c.startTime)} – ${c.endTime ? at(c.endTime) : "now"} UTC`;
}

/** An interval of signed milliseconds: "[-3.1, +12.0] ms". */
function msInterval(i: { low: number; high: number } | undefined): string {
  if (!i) return "";
  const s = (v: number) => `${v >= 0 ? "+" : ""}${v.toFixed(1)}`;
  return `[${s(i.low)}, ${s(i.high)}] ms`;
}

const LATENCY_STATUS: Record<number, string> = {
  [LatencyStatus.UNSPECIFIED]: "",
  [LatencyStatus.OK]: "ok",
  [LatencyStatus.REGRESSION]: "REGRESSION",
  [LatencyStatus.INSUFFICIENT_DATA]: "insufficient data",
  [LatencyStatus.INCONCLUSIVE]: "inconclusive",
};

/** One line of the comparison table, as text, with the tone it is shown in. */
export interface ComparisonLine {
  variant: string;
  metric: string;
  lift: string;
  liftInterval: string;
  relative: string;
  relativeInterval: string;
  p: string;
  pAdjusted: string;
  mde: string;
  note: string;
  /** good/bad: a decisive (Holm-adjusted when several) result for or against the variant; warn: no verdict possible. */
  tone: "good" | "bad" | "warn" | "";
}

/** Every variant against the control: five ratio metrics and the latency guardrail each (the terminal and HTML tables). */
export function comparisonLines(c: GetVariantComparisonResponse): ComparisonLine[] {
  const several = c.comparisons.length > 1;
  return c.comparisons.flatMap((x) => {
    const metrics: [string, MetricComparison | undefined, boolean][] = [
      ["search CTR", x.searchCtr, true],
      ["CTR", x.ctr, true],
      ["no results", x.noResultsRate, false],
      ["MRR", x.mrr, true],
      ["abandonment", x.abandonmentRate, false],
    ];
    const lines = metrics.map(([metric, m, higherIsBetter], i): ComparisonLine => {
      const decisive = several ? m?.significantAdjusted === true : m?.significant === true;
      return {
        variant: i === 0 ? x.variant : "",
        metric,
        lift: m?.lift ? points(m.lift.value) : NO_DATA,
        liftInterval: m?.lift ? pointsInterval(m.lift.low, m.lift.high) : "",
        relative: m?.relativeLift ? signedPercent(m.relativeLift.value) : NO_DATA,
        relativeInterval: m?.relativeLift ? signedPercentInterval(m.relativeLift.low, m.relativeLift.high) : "",
        p: `${pValue(m?.pValue)}${m?.significant ? "*" : ""}`,
        pAdjusted: `${pValue(m?.pValueAdjusted)}${m?.significantAdjusted ? "*" : ""}`,
        mde: m?.mde === undefined ? NO_DATA : `±${points(m.mde).slice(1)}${m.relativeMde === undefined ? "" : ` (±${signedPercent(m.relativeMde).slice(1)})`}`,
        // A reduction below 0 (CUPED made it worse, which happens when the pre-period predicts nothing) shows as an increase.
        note: m?.varianceReduction === undefined ? "" : `CUPED: variance ${m.varianceReduction >= 0 ? "-" : "+"}${Math.abs(m.varianceReduction * 100).toFixed(1)}%`,
        tone: !decisive || m?.lift === undefined ? "" : m.lift.value > 0 === higherIsBetter ? "good" : "bad",
      };
    });
    const lat = x.latency;
    const status = lat?.status ?? LatencyStatus.UNSPECIFIED;
    lines.push({
      variant: "",
      metric: "p95 latency",
      lift: signedMs(lat?.p95DiffMs),
      liftInterval: msInterval(lat?.p95DiffMsInterval),
      relative: signedPercent(lat?.p95RelativeDiff),
      relativeInterval: lat?.p95RelativeDiffInterval ? signedPercentInterval(lat.p95RelativeDiffInterval.low, lat.p95RelativeDiffInterval.high) : "",
      p: LATENCY_STATUS[status] ?? "",
      pAdjusted: "",
      mde: "",
      note: "",
      tone: status === LatencyStatus.REGRESSION ? "bad" : status === LatencyStatus.INSUFFICIENT_DATA || status === LatencyStatus.INCONCLUSIVE ? "warn" : "",
    });
    return lines;
  });
}

/**
 * How heavy users were capped and bots left out (GetVariantComparisonResponse.capping): the
 * percentile, users capped for search CTR, and each variant's capped search CTR, which the
 * intervals and tests are about.
 */
export function cappingLine(c: GetVariantComparisonResponse): string {
  const k = c.capping;
  if (k === undefined) return NO_DATA;
  if (!k.applied) return "not applied (no per-user totals for this window): uncapped, over user buckets";
  const bots = k.botSearchesPerDay > 0n ? `; bots (> ${integer(k.botSearchesPerDay)} searches in a day) left out: ${orderedVariants(c).map((n) => `${n} ${integer(k.botUsers[n] ?? 0n)}`).join(", ")}` : "";
  if (k.percentile >= 1) return `off${bots}`;
  const m = k.searchCtr;
  const capped = orderedVariants(c).reduce((sum, n) => sum + (m?.cappedUsers[n] ?? 0n), 0n);
  const values = orderedVariants(c)
    .map((n) => `${n} ${percent(m?.value[n])}`)
    .join(", ");
  const pct = `${Number((k.percentile * 100).toFixed(3))}th`;
  return `each user's totals capped at the ${pct} percentile (search CTR: ${integer(capped)} user(s) capped at ${decimal(m?.denominatorCap, 0)} searches / ${decimal(m?.numeratorCap, 0)} clicked); capped search CTR ${values}: intervals and tests are of the capped metrics${bots}`;
}

/** The sample-ratio verdict over users, with the users per variant and any leak between variants. */
export function sampleRatioLine(c: GetVariantComparisonResponse): string {
  const usersBy = orderedVariants(c)
    .map((n) => `${n} ${integer(c.variants[n]!.users)}`)
    .join(", ");
  const leak = c.usersInSeveralVariants > 0n ? `; ${integer(c.usersInSeveralVariants)} user(s) in several variants (${percent(c.usersInSeveralVariantsShare, 1)})` : "";
  if (c.srmPValue === undefined) return `${NO_DATA} (fewer than two variants)`;
  if (c.srmDetected) return `MISMATCH (${pEquals(c.srmPValue)}): users are not split as expected (${usersBy}); do not trust this comparison${leak}`;
  return `ok (${pEquals(c.srmPValue)}): users ${usersBy}${leak}`;
}

/** A time to first click: "850 ms", "12.4 s". */
export function clickDelay(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return NO_DATA;
  return ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Search quality from first clicks, as columns: the watch view's and, with intervals, the report's. */
export const FIRST_CLICK_HEADERS = ["MRR", "clicked MRR", "abandoned", "1st click p50", "1st click p90"] as const;

export function firstClickCells(f: FirstClickMetrics | undefined): string[] {
  return [decimal(f?.mrr, 3), decimal(f?.clickedMrr, 3), percent(f?.abandonmentRate, 1), clickDelay(f?.timeToFirstClickP50Ms), clickDelay(f?.timeToFirstClickP90Ms)];
}

/** `key=value` fields of watch's line output. */
export function firstClickFields(f: FirstClickMetrics | undefined): string[] {
  return [`mrr=${decimal(f?.mrr, 4)}`, `abandonment=${decimal(f?.abandonmentRate, 4)}`, `first_click_p50_ms=${decimal(f?.timeToFirstClickP50Ms, 0)}`, `first_click_p90_ms=${decimal(f?.timeToFirstClickP90Ms, 0)}`];
}

/** The report's search-quality table (terminal and HTML): per variant, MRR and abandonment with their intervals over users, and time to first click. */
export function firstClickTable(c: GetVariantComparisonResponse, intervalWord = "CI"): { headers: string[]; rows: string[][] } {
  const conf = `${Math.round((c.confidence || 0.95) * 1000) / 10}% ${intervalWord}`;
  const interval = (i: { low: number; high: number } | undefined, asPercent: boolean) => (i === undefined ? "" : asPercent ? percentInterval(i.low, i.high, 1) : `[${i.low.toFixed(3)}, ${i.high.toFixed(3)}]`);
  return {
    headers: ["variant", "searches with results", "MRR", conf, "clicked MRR", "abandoned", conf, "1st click p50", "1st click p90"],
    rows: orderedVariants(c).map((name) => {
      const v = c.variants[name]!;
      const [mrr, clickedMrr, abandoned, p50, p90] = firstClickCells(v.firstClick);
      return [name === c.control ? `${name} (control)` : name, integer(v.firstClick?.searchesWithResults ?? 0n), mrr!, interval(v.mrrInterval, false), clickedMrr!, abandoned!, interval(v.abandonmentRateInterval, true), p50!, p90!];
    }),
  };
}

/** Below the search-quality table. */
export const FIRST_CLICK_NOTE =
  "Over searches with results: MRR = mean of 1/(rank+1) of each search's first click (0 without one); clicked MRR over searches with a click; abandoned = no click; 1st click = time from the search to its first click (within 1%). MRR lifts are in hundredths (pp).";

/** Ranks the position-bias tables show (0 .. CTR_RANKS - 1). */
export const CTR_RANKS = 10;

/** Per variant: COEC and CTR at ranks 0 .. CTR_RANKS - 1, as cells. */
export function positionBiasTable(data: Pick<ReportData, "comparison" | "variants">): { headers: string[]; rows: string[][] } {
  const headers = ["variant", "COEC", ...Array.from({ length: CTR_RANKS }, (_, r) => `CTR@${r}`)];
  const rows = data.variants.map((v) => [v.variant, decimal(data.comparison.variants[v.variant]?.coec, 3), ...Array.from({ length: CTR_RANKS }, (_, r) => percent(v.ctrByRank.get(r), 1))]);
  return { headers, rows };
}

export const POSITION_BIAS_NOTE =
  "COEC: linked clicks at shown ranks over the clicks the window's CTR per rank (all variants) expects of the ranks this variant's searches showed (1: as its positions predict). CTR@r: clicks linked to a search that showed rank r, at rank r, over the searches that showed it (unlinked clicks and clicks outside a search's results count in neither).";
