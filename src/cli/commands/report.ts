/** `click-analytics report`: the variant comparison as a terminal table, JSON or an HTML page. */
import { rename, rm, writeFile } from "node:fs/promises";
import { toJsonString } from "@bufbuild/protobuf";
import { GetVariantComparisonResponseSchema, type GetVariantComparisonResponse } from "../../client/index.js";
import { decimal, integer, NO_DATA, pEquals, percent, percentInterval, points, pointsInterval, pValue, signedMs, signedPercent, signedPercentInterval, table, type Style } from "../format.js";
import { renderHtmlReport } from "../report-html.js";
import {
  CliError,
  COLOR_HELP,
  COLOR_OPTIONS,
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  connectionFrom,
  DAYS_HELP,
  daysFlag,
  numberFlag,
  parseFlags,
  stringFlag,
  styleFor,
  withClient,
  type Command,
  type Io,
} from "./common.js";
import { comparisonRequest, fetchReportData, orderedVariants, poissonRateInterval } from "./report-data.js";

export const REPORT_USAGE = `usage: click-analytics report [flags]

Compares the A/B-test variants (GetVariantComparison): per variant CTR and search CTR with
intervals, then every variant against the control: lifts with intervals, p-values, latency, the
sample-ratio check and the recommendation.

${DAYS_HELP}
  --control VARIANT       the baseline (default: the server's, search_v1)
  --confidence X          confidence level in (0, 1) (default 0.95)
  --json                  print the GetVariantComparison response as JSON (proto3 JSON mapping)
  --html FILE             write a self-contained HTML page with charts to FILE (works offline)
  --time-zone ZONE        IANA time zone of the HTML report's days (default UTC)
${COLOR_HELP}
  -h, --help              this help

${CONNECTION_HELP}`;

/** CTR interval per variant: the Poisson score interval of clicks per search (not sent by the server). */
function ctrInterval(v: GetVariantComparisonResponse["variants"][string], confidence: number) {
  return poissonRateInterval(Number(v.totalClicks), Number(v.totalImpressions), confidence);
}

/** The comparison as text (colour through `style`). */
export function renderComparison(c: GetVariantComparisonResponse, style: Style): string {
  const confidence = c.confidence || 0.95;
  const conf = `${Math.round(confidence * 1000) / 10}%`;
  const names = orderedVariants(c);
  const out: string[] = [];
  out.push(style.bold(`Variant comparison: last ${c.periodDays} days, control ${c.control}, ${conf} confidence`));
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
        const ci = ctrInterval(v, confidence);
        return [
          name === c.control ? `${name} (control)` : name,
          integer(v.totalImpressions),
          integer(v.totalClicks),
          integer(v.users),
          percent(v.ctr),
          ci ? percentInterval(ci.low, ci.high) : "",
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
  if (c.comparisons.length === 0) {
    out.push(c.variants[c.control] ? "No other variant to compare with the control." : style.yellow(`The control ${c.control} has no searches in the window.`));
  } else {
    const signed = (significant: boolean, value: number | undefined, text: string) => (!significant || value === undefined ? text : value > 0 ? style.green(text) : style.red(text));
    const rows: string[][] = [];
    for (const x of c.comparisons) {
      const sc = x.searchCtrSignificant;
      const cs = x.ctrSignificant;
      rows.push([
        x.variant,
        "search CTR",
        signed(sc, x.searchCtrLift?.value, x.searchCtrLift ? points(x.searchCtrLift.value) : NO_DATA),
        x.searchCtrLift ? pointsInterval(x.searchCtrLift.low, x.searchCtrLift.high) : "",
        x.searchCtrRelativeLift ? signedPercent(x.searchCtrRelativeLift.value) : NO_DATA,
        x.searchCtrRelativeLift ? signedPercentInterval(x.searchCtrRelativeLift.low, x.searchCtrRelativeLift.high) : "",
        signed(sc, x.searchCtrLift?.value, `${pValue(x.searchCtrPValue)}${sc ? "*" : ""}`),
      ]);
      rows.push([
        "",
        "CTR",
        signed(cs, x.ctrLift?.value, x.ctrLift ? points(x.ctrLift.value) : NO_DATA),
        x.ctrLift ? pointsInterval(x.ctrLift.low, x.ctrLift.high) : "",
        x.ctrRelativeLift ? signedPercent(x.ctrRelativeLift.value) : NO_DATA,
        x.ctrRelativeLift ? signedPercentInterval(x.ctrRelativeLift.low, x.ctrRelativeLift.high) : "",
        signed(cs, x.ctrLift?.value, `${pValue(x.ctrPValue)}${cs ? "*" : ""}`),
      ]);
      const regression = x.latencyRegression ? style.red : (text: string) => text;
      rows.push(["", "p95 latency", regression(signedMs(x.p95LatencyDiffMs)), "", regression(signedPercent(x.p95LatencyRelativeDiff)), "", x.latencyRegression ? style.red("REGRESSION") : x.p95LatencyDiffMs === undefined ? "" : "ok"]);
    }
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
        ],
        rows,
        style,
      ),
    );
    out.push(style.dim(`lift = variant - control (pp = percentage points); * significant at p < ${Math.round((1 - confidence) * 1000) / 1000}`));
  }
  out.push("");
  if (c.srmPValue === undefined) out.push(`Sample ratio:   ${NO_DATA} (fewer than two variants)`);
  else if (c.srmDetected) out.push(style.red(`Sample ratio:   MISMATCH (${pEquals(c.srmPValue)}): searches are not split as expected; do not trust this comparison`));
  else out.push(`Sample ratio:   ok (${pEquals(c.srmPValue)})`);
  out.push(`Highest CTR:    ${c.winnerByCtr || "none (a tie or no searches)"}`);
  out.push(
    c.recommendation
      ? style.green(style.bold(`Recommendation: ship ${c.recommendation}`)) + (c.recommendationReason ? ` (${c.recommendationReason})` : "")
      : style.yellow(`Recommendation: none (${c.recommendationReason || "no data"})`),
  );
  return out.join("\n");
}

export const reportCommand: Command = {
  name: "report",
  summary: "variant comparison as a table, JSON (--json) or an HTML page with charts (--html)",
  usage: REPORT_USAGE,
  async run(argv: string[], io: Io): Promise<number> {
    const values = parseFlags(
      argv,
      { ...CONNECTION_OPTIONS, ...COLOR_OPTIONS, days: { type: "string" }, control: { type: "string" }, confidence: { type: "string" }, json: { type: "boolean" }, html: { type: "string" }, "time-zone": { type: "string" } },
      REPORT_USAGE,
      io,
    );
    if (values === undefined) return 0;
    const request = {
      days: daysFlag(values, REPORT_USAGE),
      control: stringFlag(values, "control"),
      confidence: numberFlag(values, "confidence", undefined, 0, 1, REPORT_USAGE, true),
      timeZone: stringFlag(values, "time-zone"),
    };
    const conn = connectionFrom(values, REPORT_USAGE, io.env);
    const htmlPath = stringFlag(values, "html");
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
      io.stderr.write(`wrote ${htmlPath} (${data.variants.length} variant${data.variants.length === 1 ? "" : "s"}, last ${data.days} days)\n`);
      if (values.json === true) io.stdout.write(`${toJsonString(GetVariantComparisonResponseSchema, data.comparison, { prettySpaces: 2 })}\n`);
      return 0;
    }
    const comparison = await withClient(conn, (client) => client.getVariantComparison(comparisonRequest(request)));
    if (values.json === true) io.stdout.write(`${toJsonString(GetVariantComparisonResponseSchema, comparison, { prettySpaces: 2 })}\n`);
    else io.stdout.write(`${renderComparison(comparison, styleFor(values, io))}\n`);
    return 0;
  },
};
