/**
 * `click-analytics watch`: live metrics from WatchMetrics. On a terminal the view is redrawn in
 * place; otherwise (a pipe, a log) one line per snapshot. Ends on Ctrl-C or after --count.
 */
import { toJsonString } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { WatchMetricsResponseSchema, type MetricsSnapshot, type WatchMetricsResponse } from "../../client/index.js";
import { decimal, integer, percent, table, visibleWidth, type Style } from "../format.js";
import { FIRST_CLICK_HEADERS, firstClickCells, firstClickFields } from "./report-data.js";
import {
  callFailure,
  CliError,
  COLOR_HELP,
  COLOR_OPTIONS,
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  connectionFrom,
  DAYS_HELP,
  daysFlag,
  EXIT,
  intFlag,
  openClient,
  parseFlags,
  stringFlag,
  styleFor,
  type Command,
  type Io,
} from "./common.js";

export const WATCH_USAGE = `usage: click-analytics watch [flags]

Live metrics (WatchMetrics): searches, clicks, CTR, search CTR, rank and latency, overall and per
variant, refreshed every interval. On a terminal the view is redrawn in place; piped, it prints
one line per snapshot. Ctrl-C stops it.

${DAYS_HELP}
  --variant VARIANT       only this variant
  --experiment KEY        the experiment's period (unless --days is given)
  --user-id ID            only this user
  --interval SECONDS      seconds between snapshots, 1..3600 (default 5)
  --count N               stop after N snapshots (default: until Ctrl-C)
  --json                  one JSON object (the WatchMetrics message) per line
${COLOR_HELP}
  -h, --help              this help

${CONNECTION_HELP}`;

function when(r: WatchMetricsResponse): string {
  return r.timestamp ? timestampDate(r.timestamp).toISOString() : new Date().toISOString();
}

/** One line per snapshot, `key=value` pairs: easy to grep and to parse. */
export function snapshotLine(r: WatchMetricsResponse): string {
  const fields = (s: MetricsSnapshot | undefined) =>
    s === undefined
      ? "no data"
      : [
          `impressions=${s.impressions}`,
          `clicks=${s.clicks}`,
          `ctr=${decimal(s.ctr, 4)}`,
          `search_ctr=${decimal(s.searchCtr, 4)}`,
          `avg_rank=${decimal(s.avgRank)}`,
          `p50_ms=${decimal(s.p50ResponseTimeMs, 1)}`,
          `p95_ms=${decimal(s.p95ResponseTimeMs, 1)}`,
          ...firstClickFields(s.firstClick),
        ].join(" ");
  const variants = Object.keys(r.variants)
    .sort()
    .map((name) => ` | ${name}: ${fields(r.variants[name])}`)
    .join("");
  return `${when(r)} overall: ${fields(r.overall)}${variants}`;
}

/** The terminal view of one snapshot. */
/** What watch says of statistics: none here; sequential (always-valid) ones in `report --sequential`. */
export const WATCH_INFERENCE_NOTE = "Descriptive only, no tests. While an experiment runs, decide with `click-analytics report --sequential`: its always-valid p-values stay valid however often you look.";

export function snapshotView(r: WatchMetricsResponse, header: string, style: Style): string {
  const row = (name: string, s: MetricsSnapshot | undefined) => [
    name,
    integer(s?.impressions ?? 0n),
    integer(s?.clicks ?? 0n),
    percent(s?.ctr),
    percent(s?.searchCtr),
    decimal(s?.avgRank),
    decimal(s?.medianRank, 1),
    decimal(s?.p50ResponseTimeMs, 1),
    decimal(s?.p95ResponseTimeMs, 1),
    ...firstClickCells(s?.firstClick),
  ];
  const names = Object.keys(r.variants).sort();
  return [
    style.bold(header),
    style.dim(`${when(r)}  (Ctrl-C to stop)`),
    "",
    table(
      [
        { header: "variant" },
        { header: "searches", align: "right" },
        { header: "clicks", align: "right" },
        { header: "CTR", align: "right" },
        { header: "search CTR", align: "right" },
        { header: "avg rank", align: "right" },
        { header: "median", align: "right" },
        { header: "p50 ms", align: "right" },
        { header: "p95 ms", align: "right" },
        ...FIRST_CLICK_HEADERS.map((header) => ({ header, align: "right" as const })),
      ],
      [row("all", r.overall), ...names.map((n) => row(n, r.variants[n]))],
      style,
    ),
    "",
    // Looking every few seconds at fixed-horizon p-values inflates false positives: say where the valid ones are.
    style.dim(WATCH_INFERENCE_NOTE),
  ].join("\n");
}

export const watchCommand: Command = {
  name: "watch",
  summary: "live refreshing metrics (WatchMetrics)",
  usage: WATCH_USAGE,
  async run(argv: string[], io: Io): Promise<number> {
    const values = parseFlags(
      argv,
      { ...CONNECTION_OPTIONS, ...COLOR_OPTIONS, days: { type: "string" }, variant: { type: "string" }, "user-id": { type: "string" }, interval: { type: "string" }, count: { type: "string" }, json: { type: "boolean" }, experiment: { type: "string" } },
      WATCH_USAGE,
      io,
    );
    if (values === undefined) return 0;
    const experiment = stringFlag(values, "experiment") ?? "";
    // With an experiment, its period unless --days asks for a trailing window.
    const days = experiment !== "" && values.days === undefined ? 0 : daysFlag(values, WATCH_USAGE);
    const intervalSeconds = intFlag(values, "interval", 5, 1, 3600, WATCH_USAGE);
    const count = intFlag(values, "count", 0, 1, Number.MAX_SAFE_INTEGER, WATCH_USAGE);
    const variant = stringFlag(values, "variant") ?? "";
    const userId = stringFlag(values, "user-id") ?? "";
    const conn = connectionFrom(values, WATCH_USAGE, io.env);
    const style = styleFor(values, io);
    const live = io.stdout.isTTY === true && values.json !== true;
    const scope = [variant ? `variant ${variant}` : "", userId ? `user ${JSON.stringify(userId)}` : ""].filter(Boolean).join(", ");
    const header = `ClickAnalytics at ${conn.address}: ${days === 0 ? `experiment ${experiment}` : `last ${days} days`}${scope ? `, ${scope}` : ""}, every ${intervalSeconds}s`;

    const client = openClient(conn);
    let drawnLines = 0;
    let seen = 0;
    try {
      for await (const snapshot of client.watchMetrics({ days, variant, userId, intervalSeconds, experiment }, { signal: io.signal })) {
        seen++;
        if (values.json === true) {
          io.stdout.write(`${toJsonString(WatchMetricsResponseSchema, snapshot)}\n`);
        } else if (live) {
          const view = snapshotView(snapshot, header, style);
          // Back to the start of the previous view, clear it, draw the new one.
          const up = drawnLines > 0 ? `\x1b[${drawnLines}F\x1b[J` : "";
          io.stdout.write(`${up}${view}\n`);
          const columns = io.stdout.columns ?? 0;
          drawnLines = view.split("\n").reduce((n, line) => n + (columns > 0 ? Math.max(1, Math.ceil(visibleWidth(line) / columns)) : 1), 0);
        } else {
          io.stdout.write(`${snapshotLine(snapshot)}\n`);
        }
        if (count > 0 && seen >= count) break;
      }
    } catch (error) {
      throw callFailure(error, conn);
    } finally {
      client.close();
    }
    if (!io.signal.aborted && (count === 0 || seen < count)) {
      // The server ended the stream (it does so when it shuts down).
      throw new CliError(`ClickAnalytics at ${conn.address} ended the stream after ${seen} snapshot${seen === 1 ? "" : "s"} (server shutting down?)`, EXIT.unreachable);
    }
    return 0;
  },
};
