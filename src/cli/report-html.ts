/**
 * `click-analytics report --html`: one self-contained HTML page. Every chart is inline SVG drawn
 * here; no script, font, stylesheet or image is fetched (a Content-Security-Policy of
 * `default-src 'none'` says so to the browser), so the file opens offline and can be mailed.
 *
 * Charts: daily CTR per variant with its interval band (Poisson score interval: CTR is clicks per
 * search and can exceed 1), daily search CTR with its Wilson band, clicks by rank (share of each
 * variant's clicks) and latency percentiles per variant; above them the comparison in tables.
 */
import type { Interval } from "../core/statistics.js";
import { cappingLine, comparisonLines, CTR_RANKS, FIRST_CLICK_NOTE, firstClickTable, inferenceLabel, POSITION_BIAS_NOTE, positionBiasTable, sampleRatioLine, type DayPoint, type ReportData, type VariantDetail } from "./commands/report-data.js";
import { INTERLEAVING_HEADERS, INTERLEAVING_NOTE, interleavingRows, pairCells } from "./interleaving-view.js";
import { integer, ms, NO_DATA, percent, percentInterval } from "./format.js";

/** Okabe-Ito: distinguishable with the common colour-vision deficiencies. */
export const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"] as const;

export function colorOf(index: number): string {
  return PALETTE[index % PALETTE.length]!;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

const W = 760;
const H = 300;
const M = { left: 64, right: 20, top: 20, bottom: 44 };
const PLOT_W = W - M.left - M.right;
const PLOT_H = H - M.top - M.bottom;

const f1 = (x: number) => (Math.round(x * 10) / 10).toString();

/** About `count` round tick values from 0 to at least `max`. */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0) || !Number.isFinite(max)) return [0, 1];
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
  const ticks: number[] = [];
  for (let v = 0; v < max + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1]! < max) ticks.push(Number((ticks[ticks.length - 1]! + step).toPrecision(12)));
  return ticks;
}

interface Axis {
  /** Value -> y pixel. */
  y(v: number): number;
  svg: string;
}

function yAxis(max: number, label: (v: number) => string, title: string): Axis {
  const ticks = niceTicks(max);
  const top = ticks[ticks.length - 1]!;
  const y = (v: number) => M.top + PLOT_H - (Math.max(0, Math.min(v, top)) / top) * PLOT_H;
  const lines = ticks
    .map((t) => `<line class="grid" x1="${M.left}" x2="${M.left + PLOT_W}" y1="${f1(y(t))}" y2="${f1(y(t))}"/><text class="tick" x="${M.left - 6}" y="${f1(y(t) + 4)}" text-anchor="end">${escapeHtml(label(t))}</text>`)
    .join("");
  const axisTitle = `<text class="axis-title" transform="translate(14 ${M.top + PLOT_H / 2}) rotate(-90)" text-anchor="middle">${escapeHtml(title)}</text>`;
  return { y, svg: lines + axisTitle };
}

function legend(names: readonly string[]): string {
  return `<ul class="legend">${names.map((n, i) => `<li><span class="swatch" style="background:${colorOf(i)}"></span>${escapeHtml(n)}</li>`).join("")}</ul>`;
}

function svgOpen(chart: string, title: string): string {
  return `<svg data-chart="${chart}" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escapeHtml(title)}" xmlns="http://www.w3.org/2000/svg"><title>${escapeHtml(title)}</title>`;
}

function noData(chart: string, title: string): string {
  return `${svgOpen(chart, title)}<text class="empty" x="${W / 2}" y="${H / 2}" text-anchor="middle">no data in the window</text></svg>`;
}

function figure(chart: string, caption: string, names: readonly string[], svg: string, note = ""): string {
  return `<figure class="chart" id="${chart}"><figcaption>${escapeHtml(caption)}</figcaption>${legend(names)}${svg}${note === "" ? "" : `<p class="note">${escapeHtml(note)}</p>`}</figure>`;
}

/** Consecutive runs of days that have a value. */
function runs<T>(items: readonly T[], has: (item: T) => boolean): T[][] {
  const out: T[][] = [];
  let run: T[] = [];
  for (const item of items) {
    if (has(item)) run.push(item);
    else if (run.length > 0) (out.push(run), (run = []));
  }
  if (run.length > 0) out.push(run);
  return out;
}

function dayFormatter(timeZone: string, options: Intl.DateTimeFormatOptions): Intl.DateTimeFormat {
  try {
    return new Intl.DateTimeFormat("en-US", { timeZone, ...options });
  } catch {
    return new Intl.DateTimeFormat("en-US", { timeZone: "UTC", ...options });
  }
}

/**
 * A daily line per variant with its interval as a translucent band; days without impressions
 * leave a gap. Single days are drawn as a point with an error bar.
 */
function dailyChart(
  chart: string,
  caption: string,
  data: ReportData,
  value: (d: DayPoint) => number | undefined,
  interval: (d: DayPoint) => Interval | undefined,
  note: string,
): string {
  const names = data.variants.map((v) => v.variant);
  const allDays = [...new Set(data.variants.flatMap((v) => v.days.map((d) => d.startMs)))].sort((a, b) => a - b);
  const max = Math.max(0, ...data.variants.flatMap((v) => v.days.flatMap((d) => [value(d) ?? 0, interval(d)?.high ?? 0])));
  if (allDays.length === 0 || max === 0) return figure(chart, caption, names, noData(chart, caption), note);
  const first = allDays[0]!;
  const last = allDays[allDays.length - 1]!;
  const x = (t: number) => M.left + (last === first ? PLOT_W / 2 : ((t - first) / (last - first)) * PLOT_W);
  const axis = yAxis(max, (v) => percent(v, v < 0.1 && v !== 0 ? 1 : 0), caption.startsWith("Daily search") ? "search CTR" : "CTR");
  const short = dayFormatter(data.timeZone, { month: "short", day: "numeric" });
  const every = Math.max(1, Math.ceil(allDays.length / 8));
  const xTicks = allDays
    .filter((_, i) => i % every === 0)
    .map((t) => `<line class="axis" x1="${f1(x(t))}" x2="${f1(x(t))}" y1="${M.top + PLOT_H}" y2="${M.top + PLOT_H + 4}"/><text class="tick" x="${f1(x(t))}" y="${M.top + PLOT_H + 18}" text-anchor="middle">${escapeHtml(short.format(t))}</text>`)
    .join("");
  const long = dayFormatter(data.timeZone, { year: "numeric", month: "short", day: "numeric" });
  const series = data.variants
    .map((v, i) => {
      const color = colorOf(i);
      const segments = runs(v.days, (d) => value(d) !== undefined);
      const bands = segments
        .map((seg) => {
          const withInterval = seg.filter((d) => interval(d) !== undefined);
          if (withInterval.length === 0) return "";
          if (withInterval.length === 1) {
            const d = withInterval[0]!;
            const iv = interval(d)!;
            const top = axis.y(iv.high);
            return `<rect class="band" data-variant="${escapeHtml(v.variant)}" x="${f1(x(d.startMs) - 4)}" y="${f1(top)}" width="8" height="${f1(Math.max(1, axis.y(iv.low) - top))}" fill="${color}" fill-opacity="0.18"/>`;
          }
          const upper = withInterval.map((d) => `${f1(x(d.startMs))} ${f1(axis.y(interval(d)!.high))}`);
          const lower = withInterval.map((d) => `${f1(x(d.startMs))} ${f1(axis.y(interval(d)!.low))}`).reverse();
          return `<path class="band" data-variant="${escapeHtml(v.variant)}" d="M${upper.join(" L")} L${lower.join(" L")} Z" fill="${color}" fill-opacity="0.18" stroke="none"/>`;
        })
        .join("");
      const lines = segments
        .filter((seg) => seg.length > 1)
        .map((seg) => `<path class="line" data-variant="${escapeHtml(v.variant)}" d="M${seg.map((d) => `${f1(x(d.startMs))} ${f1(axis.y(value(d)!))}`).join(" L")}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round"/>`)
        .join("");
      const dots = segments
        .flat()
        .map((d) => {
          const iv = interval(d);
          const tip = `${v.variant} ${long.format(d.startMs)}: ${percent(value(d))}${iv ? ` ${percentInterval(iv.low, iv.high)}` : ""} (${integer(d.clicks)} clicks, ${integer(d.impressions)} searches)`;
          return `<circle class="point" data-variant="${escapeHtml(v.variant)}" cx="${f1(x(d.startMs))}" cy="${f1(axis.y(value(d)!))}" r="2.5" fill="${color}"><title>${escapeHtml(tip)}</title></circle>`;
        })
        .join("");
      return `<g class="series" data-variant="${escapeHtml(v.variant)}">${bands}${lines}${dots}</g>`;
    })
    .join("");
  const frame = `<line class="axis" x1="${M.left}" x2="${M.left + PLOT_W}" y1="${M.top + PLOT_H}" y2="${M.top + PLOT_H}"/>`;
  return figure(chart, caption, names, `${svgOpen(chart, caption)}${axis.svg}${frame}${xTicks}${series}</svg>`, note);
}

/** Grouped bars: one group per category, one bar per variant. */
function groupedBars(
  chart: string,
  caption: string,
  names: readonly string[],
  categories: readonly string[],
  value: (variant: number, category: number) => number | undefined,
  label: (v: number) => string,
  axisTitle: string,
  tip: (variant: number, category: number) => string,
  note = "",
): string {
  const values = names.flatMap((_, vi) => categories.map((_, ci) => value(vi, ci) ?? 0));
  const max = Math.max(0, ...values);
  if (names.length === 0 || categories.length === 0 || max === 0) return figure(chart, caption, names, noData(chart, caption), note);
  const axis = yAxis(max, label, axisTitle);
  const groupW = PLOT_W / categories.length;
  const barW = Math.max(1, Math.min(28, (groupW * 0.8) / names.length));
  const bars = categories
    .map((category, ci) => {
      const left = M.left + ci * groupW + (groupW - barW * names.length) / 2;
      const group = names
        .map((name, vi) => {
          const v = value(vi, ci);
          if (v === undefined || v <= 0) return "";
          const top = axis.y(v);
          return `<rect class="bar" data-variant="${escapeHtml(name)}" data-category="${escapeHtml(category)}" x="${f1(left + vi * barW)}" y="${f1(top)}" width="${f1(barW - 1)}" height="${f1(Math.max(0.5, M.top + PLOT_H - top))}" fill="${colorOf(vi)}"><title>${escapeHtml(tip(vi, ci))}</title></rect>`;
        })
        .join("");
      const text = `<text class="tick" x="${f1(M.left + ci * groupW + groupW / 2)}" y="${M.top + PLOT_H + 18}" text-anchor="middle">${escapeHtml(category)}</text>`;
      return group + text;
    })
    .join("");
  const frame = `<line class="axis" x1="${M.left}" x2="${M.left + PLOT_W}" y1="${M.top + PLOT_H}" y2="${M.top + PLOT_H}"/>`;
  return figure(chart, caption, names, `${svgOpen(chart, caption)}${axis.svg}${frame}${bars}</svg>`, note);
}

/** Ranks shown one by one; beyond, one "N+" group. */
const MAX_RANK_BARS = 20;

function rankChart(data: ReportData): string {
  const names = data.variants.map((v) => v.variant);
  const maxRank = Math.max(-1, ...data.variants.flatMap((v) => [...v.clicksByRank.keys()]));
  const shown = Math.min(maxRank + 1, MAX_RANK_BARS);
  const tail = maxRank + 1 > MAX_RANK_BARS;
  const categories = [...Array.from({ length: shown }, (_, r) => String(r)), ...(tail ? [`${MAX_RANK_BARS}+`] : [])];
  const clicksAt = (v: VariantDetail, ci: number) => (tail && ci === MAX_RANK_BARS ? [...v.clicksByRank].filter(([r]) => r >= MAX_RANK_BARS).reduce((s, [, n]) => s + n, 0) : (v.clicksByRank.get(ci) ?? 0));
  const share = (vi: number, ci: number) => {
    const v = data.variants[vi]!;
    return v.totalClicks > 0 ? clicksAt(v, ci) / v.totalClicks : undefined;
  };
  return groupedBars(
    "clicks-by-rank",
    "Clicks by rank (share of each variant's clicks; rank 0 is the top result)",
    names,
    categories,
    share,
    (v) => percent(v, 0),
    "share of clicks",
    (vi, ci) => `${names[vi]} rank ${categories[ci]}: ${integer(clicksAt(data.variants[vi]!, ci))} clicks (${percent(share(vi, ci), 1)})`,
  );
}

/** Position bias: CTR at each rank over the searches that showed it, per variant. */
function ctrByRankChart(data: ReportData): string {
  const names = data.variants.map((v) => v.variant);
  const categories = Array.from({ length: CTR_RANKS }, (_, r) => String(r));
  const ctr = (vi: number, ci: number) => data.variants[vi]!.ctrByRank.get(ci);
  return groupedBars(
    "ctr-by-rank",
    "CTR by rank (clicks at the rank over the searches that showed it; position bias)",
    names,
    categories,
    ctr,
    (v) => percent(v, 0),
    "CTR at rank",
    (vi, ci) => `${names[vi]} rank ${ci}: CTR ${percent(ctr(vi, ci), 2)}`,
    "How much more the top positions are clicked whatever they hold: what COEC corrects for.",
  );
}

/** Position bias per variant and every ranker pair's interleaving result (classes "position-bias" and "interleaving"). */
export function qualityTables(data: ReportData): string {
  const bias = positionBiasTable(data);
  const rows = interleavingRows(data.interleaving);
  const conf = `${Math.round((data.interleaving.confidence || 0.95) * 1000) / 10}%`;
  const interleaving =
    rows.length === 0
      ? `<p>No interleaved searches showing two rankers in the window.</p>`
      : `<div class="scroll"><table class="interleaving">${headerRow(INTERLEAVING_HEADERS.map((h) => (h === "interval" ? `${conf} interval` : h)))}${rows.map((p) => dataRow(pairCells(p), p.significant ? "good" : "", 2)).join("")}</table></div>
<p class="note">${escapeHtml(INTERLEAVING_NOTE)}</p>`;
  return `<div class="scroll"><table class="position-bias">${headerRow(bias.headers)}${bias.rows.map((cells) => dataRow(cells)).join("")}</table></div>
<p class="note">${escapeHtml(POSITION_BIAS_NOTE)}</p>
<h2>Interleaving</h2>
${interleaving}`;
}

function latencyChart(data: ReportData): string {
  const names = data.variants.map((v) => v.variant);
  const keys = [
    ["avg", "avgResponseTimeMs"],
    ["p50", "p50ResponseTimeMs"],
    ["p95", "p95ResponseTimeMs"],
    ["p99", "p99ResponseTimeMs"],
  ] as const;
  const value = (vi: number, ci: number) => data.variants[vi]!.latency[keys[ci]![1]];
  return groupedBars(
    "latency",
    "Search latency per variant (ms; percentiles over searches)",
    names,
    keys.map(([k]) => k),
    value,
    (v) => `${v}`,
    "ms",
    (vi, ci) => `${names[vi]} ${keys[ci]![0]}: ${ms(value(vi, ci))} over ${integer(data.variants[vi]!.latency.count)} searches`,
  );
}

/** A table's header row. */
export function headerRow(cells: readonly string[]): string {
  return `<tr>${cells.map((h) => `<th>${escapeHtml(h)}</th>`).join("")}</tr>`;
}

/** A table row: the first `textColumns` cells are text, the others right-aligned numbers. */
export function dataRow(cells: readonly string[], cls = "", textColumns = 1): string {
  return `<tr${cls ? ` class="${cls}"` : ""}>${cells.map((x, i) => `<td${i >= textColumns ? ' class="num"' : ""}>${escapeHtml(x)}</td>`).join("")}</tr>`;
}

/** The variants table and the comparisons table (class "variants" and "comparisons"). */
export function summaryTables(data: ReportData): string {
  const c = data.comparison;
  const names = data.variants.map((v) => v.variant);
  const variantRows = names.map((name) => {
    const v = c.variants[name]!;
    return dataRow([
      name === c.control ? `${name} (control)` : name,
      integer(v.totalImpressions),
      integer(v.totalClicks),
      integer(v.users),
      percent(v.ctr),
      v.ctrInterval ? percentInterval(v.ctrInterval.low, v.ctrInterval.high) : NO_DATA,
      percent(v.searchCtr),
      v.searchCtrInterval ? percentInterval(v.searchCtrInterval.low, v.searchCtrInterval.high) : NO_DATA,
      percent(v.noResultsRate),
      v.avgRankClicked === undefined ? NO_DATA : v.avgRankClicked.toFixed(2),
      ms(v.avgResponseTimeMs),
      ms(v.p95ResponseTimeMs),
    ]);
  });
  const several = c.comparisons.length > 1;
  const comparisonRows = comparisonLines(c).map((line) =>
    dataRow(
      [line.variant, line.metric, line.lift, line.liftInterval, `${line.relative} ${line.relativeInterval}`.trim(), line.p, ...(several ? [line.pAdjusted] : []), line.mde, line.note],
      line.tone === "warn" ? "warn" : line.tone,
      2,
    ),
  );
  const conf = `${Math.round((c.confidence || 0.95) * 1000) / 10}%`;
  const quality = firstClickTable(c, "interval");
  return `<div class="scroll"><table class="variants">${headerRow(["variant", "searches", "clicks", "users", "CTR", `${conf} interval`, "search CTR", `${conf} interval`, "no results", "avg rank", "avg ms", "p95 ms"])}${variantRows.join("")}</table></div>
<div class="scroll"><table class="first-click">${headerRow(quality.headers)}${quality.rows.map((cells) => dataRow(cells)).join("")}</table></div>
<p class="note">${escapeHtml(FIRST_CLICK_NOTE)}</p>
${
  c.comparisons.length === 0
    ? `<p>No variant to compare with the control${c.control ? ` ${escapeHtml(c.control)}` : ""}.</p>`
    : `<div class="scroll"><table class="comparisons">${headerRow([`vs ${c.control}`, "metric", "lift", `${conf} interval`, "relative", "p", ...(several ? ["p Holm"] : []), "MDE (80% power)", ""])}${comparisonRows.join("")}</table></div>
<p class="note">Lift = variant − control (pp = percentage points); intervals at ${conf} confidence and p-values over users (delta method, ${escapeHtml(inferenceLabel(c))}); * significant (p &lt; ${escapeHtml(String(Math.round((1 - (c.confidence || 0.95)) * 1000) / 1000))})${several ? "; p Holm: adjusted for the comparisons with the control, as the recommendation uses it" : ""}. MDE: the smallest lift this sample detects with 80% power.</p>`
}`;
}

/** The recommendation, the sample-ratio check and the highest CTR, as paragraphs. */
export function verdict(data: ReportData): string {
  const c = data.comparison;
  const rec = c.recommendation ? `<p class="verdict good">Recommendation: ship <strong>${escapeHtml(c.recommendation)}</strong>${c.recommendationReason ? ` (${escapeHtml(c.recommendationReason)})` : ""}</p>` : `<p class="verdict neutral">Recommendation: none (${escapeHtml(c.recommendationReason || "no data")})</p>`;
  const srm = `<p${c.srmDetected ? ' class="bad"' : ""}>Sample ratio: ${escapeHtml(sampleRatioLine(c))}</p><p>Heavy users: ${escapeHtml(cappingLine(c))}</p>`;
  const winner = `<p>Highest CTR: ${c.winnerByCtr ? escapeHtml(c.winnerByCtr) : "none (a tie or no searches)"}</p>`;
  return rec + srm + winner;
}

/** The report's stylesheet; the live dashboard (dashboard-page.ts) uses it too. */
export const REPORT_CSS = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24; margin: 24px auto; max-width: 980px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #57606a; margin: 0 0 16px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { padding: 4px 7px; border-bottom: 1px solid #d0d7de; text-align: left; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
tr.good td { background: #e6f4ea; } tr.bad td { background: #fde8e8; } tr.warn td { background: #fff8c5; }
.verdict { font-size: 16px; } .good { color: #116329; } .bad { color: #a40e26; } .neutral { color: #7d4e00; }
.note { color: #57606a; font-size: 12px; margin: 4px 0; }
figure.chart { margin: 20px 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
ul.legend { list-style: none; padding: 0; margin: 0 0 4px; display: flex; gap: 16px; flex-wrap: wrap; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
svg { display: block; max-width: 100%; height: auto; background: #fff; }
svg .grid { stroke: #eaeef2; stroke-width: 1; } svg .axis { stroke: #8c959f; stroke-width: 1; }
svg text { font: 11px system-ui, sans-serif; fill: #57606a; } svg .axis-title { font-size: 12px; }
svg .empty { font-size: 14px; fill: #8c959f; }
`;

/** Every chart of the report: daily CTR and search CTR with bands, clicks by rank, latency. */
export function reportCharts(data: ReportData): string {
  if (data.variants.length === 0) return `<p>No searches in the window.</p>`;
  const conf = Math.round((data.comparison.confidence || 0.95) * 1000) / 10;
  return [
    dailyChart("ctr-daily", "Daily CTR (clicks per search) per variant", data, (d) => d.ctr, (d) => d.ctrInterval, `Bands: ${conf}% score interval of the daily click rate (clicks per search is a Poisson rate and can exceed 100%). Days in ${data.timeZone}.`),
    dailyChart("search-ctr-daily", "Daily search CTR (searches with a click) per variant", data, (d) => d.searchCtr, (d) => d.searchCtrInterval, `Bands: ${conf}% Wilson score interval of the daily share of searches with at least one click. Days in ${data.timeZone}.`),
    rankChart(data),
    ctrByRankChart(data),
    latencyChart(data),
  ].join("\n");
}

/** A whole HTML document titled `title`: its policy (our own constant, not escaped), its stylesheet, then `body` under the title. */
export function htmlDocument(title: string, contentSecurityPolicy: string, css: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${contentSecurityPolicy}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${css}</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${body}
</body>
</html>
`;
}

/** The whole page, as one string. */
export function renderHtmlReport(data: ReportData): string {
  const c = data.comparison;
  const conf = Math.round((c.confidence || 0.95) * 1000) / 10;
  const title = `ClickAnalytics report: ${data.windowLabel}`;
  return htmlDocument(
    title,
    "default-src 'none'; style-src 'unsafe-inline'",
    REPORT_CSS,
    `<p class="meta">Server ${escapeHtml(data.address)} · control ${escapeHtml(c.control)} · ${conf}% confidence · ${escapeHtml(inferenceLabel(c))} · generated ${escapeHtml(data.generatedAt.toISOString())}</p>
${verdict(data)}
<h2>Variants</h2>
${summaryTables(data)}
<h2>Position bias</h2>
${qualityTables(data)}
<h2>Charts</h2>
${reportCharts(data)}`,
  );
}
