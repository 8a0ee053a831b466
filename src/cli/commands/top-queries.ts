/** `click-analytics top-queries`: GetTopQueries as a table or JSON. */
import { toJsonString } from "@bufbuild/protobuf";
import { GetTopQueriesResponseSchema, TopQueriesOrder, type GetTopQueriesResponse } from "../../client/index.js";
import { decimal, integer, percent, table, type Style } from "../format.js";
import {
  choiceFlag,
  COLOR_HELP,
  COLOR_OPTIONS,
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  connectionFrom,
  DAYS_HELP,
  daysFlag,
  intFlag,
  parseFlags,
  stringFlag,
  styleFor,
  withClient,
  type Command,
  type Io,
} from "./common.js";

const ORDERS = { searches: TopQueriesOrder.SEARCHES, clicks: TopQueriesOrder.CLICKS, ctr: TopQueriesOrder.CTR, "no-results": TopQueriesOrder.NO_RESULTS } as const;
type OrderName = keyof typeof ORDERS;

export const TOP_QUERIES_USAGE = `usage: click-analytics top-queries [flags]

The most searched queries (normalised: trimmed, case-folded, white space collapsed) with their
clicks, CTR, search CTR, average clicked rank, searches without results, COEC (the
position-debiased CTR: clicks at shown ranks over the clicks the window's CTR per rank expects of
the ranks their searches showed; 1: as their positions predict; n/a when nothing is expected),
MRR (mean of 1/(rank+1) of each search's first click, 0 without one) and abandonment (searches
with results and no click at a shown rank) (GetTopQueries). A click linked to a search counts
under that search's query; "outside" counts linked clicks at ranks their search did not show.

${DAYS_HELP}
  --variant VARIANT       only this variant (default: all)
  --limit N               how many, 1..1000 (default 10)
  --order-by ORDER        searches, clicks, ctr or no-results (default searches)
  --json                  print the GetTopQueries response as JSON
${COLOR_HELP}
  -h, --help              this help

${CONNECTION_HELP}`;

export function renderTopQueries(r: GetTopQueriesResponse, order: OrderName, variant: string | undefined, style: Style): string {
  const title = style.bold(`Top queries by ${order}: last ${r.periodDays} days, ${variant ? `variant ${variant}` : "all variants"}`);
  if (r.queries.length === 0) return `${title}\n\nNo searches in the window.`;
  return `${title}\n\n${table(
    [
      { header: "#", align: "right" },
      { header: "query" },
      { header: "searches", align: "right" },
      { header: "clicks", align: "right" },
      { header: "CTR", align: "right" },
      { header: "search CTR", align: "right" },
      { header: "avg rank", align: "right" },
      { header: "no results", align: "right" },
      { header: "COEC", align: "right" },
      { header: "MRR", align: "right" },
      { header: "abandoned", align: "right" },
      { header: "outside", align: "right" },
    ],
    r.queries.map((q, i) => [
      String(i + 1),
      JSON.stringify(q.query).slice(1, -1),
      integer(q.searches),
      integer(q.clicks),
      percent(q.ctr, 1),
      percent(q.searchCtr, 1),
      decimal(q.avgClickRank),
      integer(q.noResults),
      decimal(q.coec),
      decimal(q.mrr, 3),
      percent(q.abandonmentRate, 1),
      integer(q.clicksOutsideResults),
    ]),
    style,
  )}`;
}

export const topQueriesCommand: Command = {
  name: "top-queries",
  summary: "the most searched (clicked, ...) queries with their CTR",
  usage: TOP_QUERIES_USAGE,
  async run(argv: string[], io: Io): Promise<number> {
    const values = parseFlags(argv, { ...CONNECTION_OPTIONS, ...COLOR_OPTIONS, days: { type: "string" }, variant: { type: "string" }, limit: { type: "string" }, "order-by": { type: "string" }, json: { type: "boolean" } }, TOP_QUERIES_USAGE, io);
    if (values === undefined) return 0;
    const days = daysFlag(values, TOP_QUERIES_USAGE);
    const limit = intFlag(values, "limit", 10, 1, 1000, TOP_QUERIES_USAGE);
    const order = choiceFlag(values, "order-by", Object.keys(ORDERS) as OrderName[], "searches", TOP_QUERIES_USAGE);
    const variant = stringFlag(values, "variant");
    const conn = connectionFrom(values, TOP_QUERIES_USAGE, io.env);
    const response = await withClient(conn, (client) => client.getTopQueries({ days, variant: variant ?? "", limit, orderBy: ORDERS[order] }));
    if (values.json === true) io.stdout.write(`${toJsonString(GetTopQueriesResponseSchema, response, { prettySpaces: 2 })}\n`);
    else io.stdout.write(`${renderTopQueries(response, order, variant, styleFor(values, io))}\n`);
    return 0;
  },
};
