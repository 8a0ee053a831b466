/**
 * `click-analytics export`: the raw events of a window (ExportEvents) as CSV or JSON lines, for
 * notebooks. Rows are written as batches arrive; a slow disk or pipe slows the server's reads
 * rather than filling memory. With --output the file appears only when complete.
 */
import { createWriteStream, type WriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ClickSource, ExportedEventKind, ExportKind, type ExportedEvent } from "../../client/index.js";
import {
  callFailure,
  choiceFlag,
  CliError,
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  connectionFrom,
  DAYS_HELP,
  daysFlag,
  EXIT,
  openClient,
  parseFlags,
  stringFlag,
  writeText,
  type Command,
  type Io,
} from "./common.js";

export const EXPORT_USAGE = `usage: click-analytics export [flags]

Streams the stored clicks and impressions of a window (ExportEvents), oldest first, as CSV (with
a header line) or JSON lines. Columns / keys:

  ${"kind,event_id,user_id,session_id,timestamp,variant,query,product_id,rank,results_count,"}
  ${"response_time_ms,impression_id,source,clicked,teams"}

kind is click or impression; timestamp ISO 8601 UTC; query is the impression's query or the
click's search_query as typed; product_id, rank and source are for clicks, results_count and
clicked for impressions (empty in CSV, null in JSON lines otherwise); impression_id on a click is
the search it is linked to (empty when unlinked); teams, for an interleaved search, is the ranker
of each shown position, separated by spaces.

  --format csv|jsonl      output format (default csv)
${DAYS_HELP}
  --variant VARIANT       only this variant
  --user-id ID            only this user
  --kind KIND             clicks, impressions or all (default all)
  --output FILE           write to FILE (created when complete) instead of stdout
  -h, --help              this help

${CONNECTION_HELP}`;

export const EXPORT_COLUMNS = [
  "kind",
  "event_id",
  "user_id",
  "session_id",
  "timestamp",
  "variant",
  "query",
  "product_id",
  "rank",
  "results_count",
  "response_time_ms",
  "impression_id",
  "source",
  "clicked",
  "teams",
] as const;

type Row = Record<(typeof EXPORT_COLUMNS)[number], string | number | boolean | null>;

const KINDS = { all: ExportKind.ALL, clicks: ExportKind.CLICKS, impressions: ExportKind.IMPRESSIONS } as const;

/** One event as a flat row; null where a field does not apply or is absent. */
export function exportRow(e: ExportedEvent): Row {
  const click = e.kind === ExportedEventKind.CLICK;
  return {
    kind: click ? "click" : e.kind === ExportedEventKind.IMPRESSION ? "impression" : "unknown",
    event_id: e.eventId,
    user_id: e.userId,
    session_id: e.sessionId === "" ? null : e.sessionId,
    timestamp: e.timestamp ? timestampDate(e.timestamp).toISOString() : null,
    variant: e.variant,
    query: e.query,
    product_id: click ? e.productId : null,
    rank: e.rank ?? null,
    results_count: e.resultsCount ?? null,
    response_time_ms: e.responseTimeMs,
    impression_id: e.impressionId === "" ? null : e.impressionId,
    source: click ? (ClickSource[e.source] ?? String(e.source)) : null,
    clicked: e.clicked ?? null,
    // Team names are variant-like (no spaces), so one space between them reads back unambiguously.
    teams: click || e.teams.length === 0 ? null : e.teams.join(" "),
  };
}

/** RFC 4180: quoted when it holds a comma, quote or line break (or edge spaces, kept by quoting). */
export function csvField(value: string | number | boolean | null): string {
  if (value === null) return "";
  const text = String(value);
  return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export const CSV_HEADER = `${EXPORT_COLUMNS.join(",")}\r\n`;

export function csvLine(row: Row): string {
  return `${EXPORT_COLUMNS.map((c) => csvField(row[c])).join(",")}\r\n`;
}

export function jsonLine(row: Row): string {
  return `${JSON.stringify(row)}\n`;
}

export const exportCommand: Command = {
  name: "export",
  summary: "stream the raw events of a window as CSV or JSON lines",
  usage: EXPORT_USAGE,
  async run(argv: string[], io: Io): Promise<number> {
    const values = parseFlags(
      argv,
      { ...CONNECTION_OPTIONS, format: { type: "string" }, days: { type: "string" }, variant: { type: "string" }, "user-id": { type: "string" }, kind: { type: "string" }, output: { type: "string", short: "o" } },
      EXPORT_USAGE,
      io,
    );
    if (values === undefined) return 0;
    const format = choiceFlag(values, "format", ["csv", "jsonl"] as const, "csv", EXPORT_USAGE);
    const days = daysFlag(values, EXPORT_USAGE);
    const kind = choiceFlag(values, "kind", Object.keys(KINDS) as (keyof typeof KINDS)[], "all", EXPORT_USAGE);
    const variant = stringFlag(values, "variant") ?? "";
    const userId = stringFlag(values, "user-id") ?? "";
    const outputPath = stringFlag(values, "output");
    const conn = connectionFrom(values, EXPORT_USAGE, io.env);

    let out: NodeJS.WritableStream = io.stdout;
    let file: WriteStream | undefined;
    const partial = outputPath === undefined ? undefined : `${outputPath}.partial`;
    if (partial !== undefined) {
      file = createWriteStream(partial);
      await new Promise<void>((resolve, reject) => {
        file!.once("open", () => resolve());
        file!.once("error", (error) => reject(new CliError(`cannot write ${outputPath}: ${error.message}`)));
      });
      out = file;
    }

    const line = format === "csv" ? csvLine : jsonLine;
    const counts = { click: 0, impression: 0 };
    let ok = false;
    const client = openClient(conn);
    try {
      if (format === "csv") await writeText(out, CSV_HEADER);
      try {
        for await (const batch of client.exportEvents({ days, variant, userId, kind: KINDS[kind] }, { signal: io.signal })) {
          let text = "";
          for (const event of batch.events) {
            const row = exportRow(event);
            if (row.kind === "click") counts.click++;
            else counts.impression++;
            text += line(row);
          }
          await writeText(out, text);
        }
      } catch (error) {
        if (io.signal.aborted) throw new CliError("interrupted: the export is incomplete", EXIT.interrupted);
        throw callFailure(error, conn);
      }
      if (io.signal.aborted) throw new CliError("interrupted: the export is incomplete", EXIT.interrupted);
      if (file !== undefined) {
        await new Promise<void>((resolve, reject) => file!.end((error?: Error | null) => (error ? reject(error) : resolve())));
        await rename(partial!, outputPath!);
      }
      ok = true;
    } finally {
      client.close();
      if (!ok && file !== undefined) {
        file.destroy();
        await rm(partial!, { force: true });
      }
    }
    const total = counts.click + counts.impression;
    io.stderr.write(`exported ${total.toLocaleString("en-US")} events (${counts.impression.toLocaleString("en-US")} impressions, ${counts.click.toLocaleString("en-US")} clicks)${outputPath ? ` to ${outputPath}` : ""}\n`);
    return 0;
  },
};
