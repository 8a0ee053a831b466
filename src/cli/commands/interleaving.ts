/** `click-analytics interleaving`: GetInterleavingResult as a table (every ranker pair) or JSON. */
import { MAX_CONFIDENCE, MIN_CONFIDENCE } from "../../core/comparison-model.js";
import { toJsonString } from "@bufbuild/protobuf";
import { GetInterleavingResultResponseSchema, type GetInterleavingResultResponse } from "../../client/index.js";
import { table, type Style } from "../format.js";
import { INTERLEAVING_HEADERS, INTERLEAVING_NOTE, interleavingRows, pairCells } from "../interleaving-view.js";
import { COLOR_HELP, COLOR_OPTIONS, CONNECTION_HELP, CONNECTION_OPTIONS, connectionFrom, numberFlag, parseFlags, stringFlag, styleFor, UsageError, windowFlags, windowRequest, withClient, type Command, type Io } from "./common.js";
import { WINDOW_HELP } from "./comparison-flags.js";

export const INTERLEAVING_USAGE = `usage: click-analytics interleaving [flags]

Which ranker users prefer, from interleaved result lists (searches logged with \`teams\`, e.g.
built by the typed client's teamDraftInterleave): per pair of rankers the searches that showed
both, wins, ties, clicks past the shown list (uncredited), users, the preference Δ with its
interval and the p-value of a sign-flip test over users (GetInterleavingResult). Every pair of
rankers shown together in the window is listed (multileaving); --ranker-a and --ranker-b put
one pair first, in that orientation.

${WINDOW_HELP}
  --ranker-a NAME         with --ranker-b: the pair to show first (Δ > 0 prefers ranker A)
  --ranker-b NAME
  --variant VARIANT       only searches of this variant (default: all)
  --confidence X          confidence level in [0.5, 0.9999] (default 0.95)
  --json                  print the GetInterleavingResult response as JSON
${COLOR_HELP}
  -h, --help              this help

${CONNECTION_HELP}`;

export function renderInterleaving(r: GetInterleavingResultResponse, variant: string | undefined, style: Style, windowLabel = `last ${r.periodDays} days`): string {
  const conf = `${Math.round((r.confidence || 0.95) * 1000) / 10}%`;
  const title = style.bold(`Interleaving: ${windowLabel}, ${variant ? `variant ${variant}` : "all variants"}, ${conf} confidence`);
  const rows = interleavingRows(r);
  if (rows.length === 0) return `${title}\n\nNo interleaved searches showing two rankers in the window.`;
  const columns = INTERLEAVING_HEADERS.map((header, i) => ({ header: header === "interval" ? `${conf} interval` : header, align: i >= 2 && i <= 10 ? ("right" as const) : ("left" as const) }));
  const body = rows.map((p) => {
    const cells = pairCells(p);
    return p.significant ? cells.map((c, i) => (i === 12 || i === 8 ? style.green(c) : c)) : cells;
  });
  return `${title}\n\n${table(columns, body, style)}\n${style.dim(INTERLEAVING_NOTE)}`;
}

export const interleavingCommand: Command = {
  name: "interleaving",
  summary: "which ranker users prefer, from interleaved searches (every pair)",
  usage: INTERLEAVING_USAGE,
  async run(argv: string[], io: Io): Promise<number> {
    const values = parseFlags(
      argv,
      { ...CONNECTION_OPTIONS, ...COLOR_OPTIONS, days: { type: "string" }, start: { type: "string" }, end: { type: "string" }, "ranker-a": { type: "string" }, "ranker-b": { type: "string" }, variant: { type: "string" }, confidence: { type: "string" }, json: { type: "boolean" } },
      INTERLEAVING_USAGE,
      io,
    );
    if (values === undefined) return 0;
    const window = windowFlags(values, INTERLEAVING_USAGE);
    const rankerA = stringFlag(values, "ranker-a");
    const rankerB = stringFlag(values, "ranker-b");
    if ((rankerA === undefined) !== (rankerB === undefined)) throw new UsageError("--ranker-a and --ranker-b go together", INTERLEAVING_USAGE);
    const confidence = numberFlag(values, "confidence", undefined, MIN_CONFIDENCE, MAX_CONFIDENCE, INTERLEAVING_USAGE);
    const variant = stringFlag(values, "variant");
    const conn = connectionFrom(values, INTERLEAVING_USAGE, io.env);
    const response = await withClient(conn, (client) =>
      client.getInterleavingResult({ ...windowRequest(window), rankerA: rankerA ?? "", rankerB: rankerB ?? "", variant: variant ?? "", ...(confidence === undefined ? {} : { confidence }) }),
    );
    if (values.json === true) io.stdout.write(`${toJsonString(GetInterleavingResultResponseSchema, response, { prettySpaces: 2 })}\n`);
    else io.stdout.write(`${renderInterleaving(response, variant, styleFor(values, io), window.startTime ? `period from ${window.startTime.toISOString()}` : undefined)}\n`);
    return 0;
  },
};
