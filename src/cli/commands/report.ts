/** `click-analytics report`: the variant comparison as a terminal table, JSON or an HTML page. */
import { rename, rm, writeFile } from "node:fs/promises";
import { toJsonString } from "@bufbuild/protobuf";
import { GetVariantComparisonResponseSchema, Inference, type GetVariantComparisonResponse } from "../../client/index.js";
import { decimal, integer, percent, percentInterval, table, type Style } from "../format.js";
import { renderHtmlReport } from "../report-html.js";
import {
  CliError,
  COLOR_HELP,
  COLOR_OPTIONS,
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  connectionFrom,
  parseFlags,
  stringFlag,
  styleFor,
  UsageError,
  withClient,
  type Command,
  type Io,
} from "./common.js";
import { experimentRequest, renderScorecard } from "./experiments.js";
import { COMPARISON_HELP, COMPARISON_OPTIONS, comparisonFlags, SPLIT_HELP, WINDOW_HELP } from "./comparison-flags.js";
import { renderInterleaving } from "./interleaving.js";
import { cappingLine, comparisonLines, comparisonRequest, fetchReportData, FIRST_CLICK_NOTE, firstClickTable, inferenceLabel, orderedVariants, POSITION_BIAS_NOTE, positionBiasTable, sampleRatioLine, windowLabel, type ReportData } from "./report-data.js";

export const REPORT_USAGE = `usage: click-analytics report [flags]

Compares the A/B-test variants (GetVariantComparison): per variant CTR and search CTR with
intervals, then every variant against the control: lifts with intervals, p-values (Holm-adjusted
with several variants), minimum detectable effects, the latency guardrail, the sample-ratio
check on users and the recommendation. Statistics treat users as the unit (delta method).

${WINDOW_HELP}
${COMPARISON_HELP}
  --sequential            always-valid p-values and confidence sequences (safe to look at
                          repeatedly, e.g. while the experiment runs); default fixed-horizon
${SPLIT_HELP}
  --experiment KEY        the experiment's period, control, split, confidence, inference and
                          guardrails (flags given explicitly override them), and its scorecard:
                          run time, users against the MDE's need, health
  --json                  print the GetVariantComparison response as JSON (proto3 JSON mapping)
  --html FILE             write a self-contained HTML page with charts to FILE (works offline)
  --time-zone ZONE        IANA time zone of the HTML report's days (default UTC)
${COLOR_HELP}
  -h, --help              this help

${CONNECTION_HELP}`;

/** The comparison as text (colour through `style`). `explicitPeriod`: the request named a period. */
export function renderComparison(c: GetVariantComparisonResponse, style: Style, explicitPeriod = false): string {
  const confidence = c.confidence || 0.95;
  const conf = `${Math.round(confidence * 1000) / 10}%`;
  const alpha = Math.round((1 - confidence) * 1000) / 1000;
  const names = orderedVariants(c);
  const out: string[] = [];
  out.push(style.bold(`Variant comparison: ${windowLabel(c, explicitPeriod)}, control ${c.control}, ${conf} confidence, ${inferenceLabel(c)}`));
  out.push("");
  if (names.length === 0) {
    out.push("No searches in the window.");
    return out.join("\n");
  }
  out.push(
    table(
      [
        { header: "variant" },
        { header: "searches", align: "right" },
        { header: "clicks", align: "right" },
        { header: "users", align: "right" },
        { header: "CTR", align: "right" },
        { header: `${conf} CI`, align: "right" },
        { header: "search CTR", align: "right" },
        { header: `${conf} CI`, align: "right" },
        { header: "avg rank", align: "right" },
        { header: "avg ms", align: "right" },
        { header: "p95 ms", align: "right" },
      ],
      names.map((name) => {
        const v = c.variants[name]!;
        return [
          name === c.control ? `${name} (control)` : name,
          integer(v.totalImpressions),
          integer(v.totalClicks),
          integer(v.users),
          percent(v.ctr),
          v.ctrInterval ? percentInterval(v.ctrInterval.low, v.ctrInterval.high) : "",
          percent(v.searchCtr),
          v.searchCtrInterval ? percentInterval(v.searchCtrInterval.low, v.searchCtrInterval.high) : "",
          decimal(v.avgRankClicked),
          decimal(v.avgResponseTimeMs, 1),
          decimal(v.p95ResponseTimeMs, 1),
        ];
      }),
      style,
    ),
  );
  out.push("");
  const quality = firstClickTable(c);
  out.push(table(quality.headers.map((header, i) => ({ header, align: i === 0 ? ("left" as const) : ("right" as const) })), quality.rows, style));
  out.push(style.dim(FIRST_CLICK_NOTE));
  out.push("");
  const several = c.comparisons.length > 1;
  if (c.comparisons.length === 0) {
    out.push(c.variants[c.control] ? "No other variant to compare with the control." : style.yellow(`The control ${c.control} has no searches in the window.`));
  } else {
    const rows = comparisonLines(c).map((line) => {
      const colour = line.tone === "good" ? style.green : line.tone === "bad" ? style.red : line.tone === "warn" ? style.yellow : (t: string) => t;
      return [line.variant, line.metric, colour(line.lift), line.liftInterval, colour(line.relative), line.relativeInterval, colour(line.p), ...(several ? [colour(line.pAdjusted)] : []), line.mde, line.note];
    });
    out.push(
      table(
        [
          { header: `vs ${c.control}` },
          { header: "metric" },
          { header: "lift", align: "right" },
          { header: `${conf} CI`, align: "right" },
          { header: "relative", align: "right" },
          { header: `${conf} CI`, align: "right" },
          { header: "p", align: "right" },
          ...(several ? [{ header: "p Holm", align: "right" as const }] : []),
          { header: "MDE (80%)", align: "right" },
          { header: "" },
        ],
        rows,
        style,
      ),
    );
    out.push(style.dim(`lift = variant - control (pp = percentage points); intervals and p-values over users (delta method); * significant at p < ${alpha}`));
    if (several) out.push(style.dim(`p Holm: adjusted for ${c.comparisons.length} comparisons with the control; the recommendation uses it`));
    out.push(style.dim(`MDE (80%): the smallest lift this sample detects with 80% power${c.inference === Inference.SEQUENTIAL ? " (sequential)" : ""}`));
  }
  out.push("");
  const srm = sampleRatioLine(c);
  out.push(`Sample ratio:   ${c.srmDetected ? style.red(srm) : srm}`);
  out.push(`Heavy users:    ${cappingLine(c)}`);
  out.push(`Highest CTR:    ${c.winnerByCtr || "none (a tie or no searches)"}`);
  out.push(
    c.recommendation
      ? style.green(style.bold(`Recommendation: ship ${c.recommendation}`)) + (c.recommendationReason ? ` (${c.recommendationReason})` : "")
      : style.yellow(`Recommendation: none (${c.recommendationReason || "no data"})`),
  );
  return out.join("\n");
}

/** Position bias (COEC, CTR per rank) per variant and the interleaving result of every ranker pair. */
export function renderQuality(data: ReportData, style: Style): string {
  const out: string[] = [];
  if (data.variants.length > 0) {
    const bias = positionBiasTable(data);
    out.push(style.bold("Position bias"));
    out.push(table(bias.headers.map((header, i) => ({ header, align: i === 0 ? ("left" as const) : ("right" as const) })), bias.rows, style));
    out.push(style.dim(POSITION_BIAS_NOTE));
    out.push("");
  }
  out.push(renderInterleaving(data.interleaving, undefined, style, data.windowLabel));
  return out.join("\n");
}

export const reportCommand: Command = {
  name: "report",
  summary: "variant comparison as a table, JSON (--json) or an HTML page with charts (--html)",
  usage: REPORT_USAGE,
  async run(argv: string[], io: Io): Promise<number> {
    const values = parseFlags(
      argv,
      {
        ...CONNECTION_OPTIONS,
        ...COLOR_OPTIONS,
        ...COMPARISON_OPTIONS,
        sequential: { type: "boolean" },
        json: { type: "boolean" },
        html: { type: "string" },
        experiment: { type: "string" },
      },
      REPORT_USAGE,
      io,
    );
    if (values === undefined) return 0;
    const request = comparisonFlags(values, REPORT_USAGE, values.sequential === true);
    const conn = connectionFrom(values, REPORT_USAGE, io.env);
    const htmlPath = stringFlag(values, "html");
    if (htmlPath !== undefined && values.experiment !== undefined) throw new UsageError("--experiment goes with the table or --json, not --html", REPORT_USAGE);
    if (htmlPath !== undefined) {
      const data = await withClient(conn, (client) => fetchReportData(client, conn.address, request));
      // Written next to the target, then renamed: never a half-written report.
      const partial = `${htmlPath}.partial`;
      try {
        await writeFile(partial, renderHtmlReport(data));
        await rename(partial, htmlPath);
      } catch (error) {
        await rm(partial, { force: true });
        throw new CliError(`cannot write ${htmlPath}: ${(error as Error).message}`);
      }
      io.stderr.write(`wrote ${htmlPath} (${data.variants.length} variant${data.variants.length === 1 ? "" : "s"}, ${data.windowLabel})\n`);
      if (values.json === true) io.stdout.write(`${toJsonString(GetVariantComparisonResponseSchema, data.comparison, { prettySpaces: 2 })}\n`);
      return 0;
    }
    const experiment = stringFlag(values, "experiment");
    if (values.json === true || experiment !== undefined) {
      // One comparison (an experiment's scorecard under it), or the comparison as JSON.
      const comparison = await withClient(conn, (client) => client.getVariantComparison(experiment === undefined ? comparisonRequest(request) : experimentRequest(values, request, experiment)));
      if (values.json === true) io.stdout.write(`${toJsonString(GetVariantComparisonResponseSchema, comparison, { prettySpaces: 2 })}\n`);
      else {
        const style = styleFor(values, io);
        io.stdout.write(`${renderComparison(comparison, style, true)}\n`);
        if (comparison.scorecard) io.stdout.write(`\n${renderScorecard(comparison.scorecard, style)}\n`);
      }
      return 0;
    }
    const data = await withClient(conn, (client) => fetchReportData(client, conn.address, request));
    const style = styleFor(values, io);
    io.stdout.write(`${renderComparison(data.comparison, style, request.window.startTime !== undefined)}\n\n${renderQuality(data, style)}\n`);
    return 0;
  },
};
