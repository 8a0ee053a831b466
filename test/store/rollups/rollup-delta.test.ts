/**
 * A batch's query-table increments as RollupDelta builds them: summed per query and named once
 * per batch, with a field written exactly where a non-zero increment touched it (a zero creates
 * no field; a count that returns to zero is written as 0, as the engine's $inc of it would
 * leave it). Pure: the update documents are compared, no engine needed.
 */
import { describe, expect, it } from "vitest";
import { RollupDelta } from "../../../src/store/rollups/rollup-delta.js";
import { firstClickCounter, histogramCounter, queryField, queryFieldPrefix } from "../../../src/store/schema/query-table-fields.js";

const at = new Date("2026-03-02T10:15:00Z");
const search = (query: string, resultsCount: number) => ({
  user_id: "u1",
  variant: "search_v1",
  results_count: resultsCount,
  response_time_ms: 40,
  timestamp: at,
  query_normalized: query,
});

/** The query-table update's increments, by field. */
function tableIncrements(delta: RollupDelta): Map<string, number> {
  const tables = delta.unguardedUpdates().filter((u) => String(u.q._id).startsWith("qh"));
  expect(tables).toHaveLength(1);
  return tables[0]!.u.$inc as Map<string, number>;
}

/** The increments of `query`'s own fields, without its prefix. */
function fieldsOf(inc: Map<string, number>, query: string): Record<string, number> {
  const prefix = queryFieldPrefix(query);
  return Object.fromEntries([...inc].filter(([field]) => field.startsWith(prefix)).map(([field, n]) => [field.slice(prefix.length), n]));
}

describe("RollupDelta's query-table increments", () => {
  it("sums each query's counters over a batch, each under its own name", () => {
    const delta = new RollupDelta();
    for (let i = 0; i < 3; i++) delta.addImpression({ ...search("red shoes", 12), clicked_on_insert: undefined, fi_t: undefined, fi_r: undefined, li: undefined }, 1);
    delta.addImpression({ ...search("red shoes", 0), clicked_on_insert: undefined, fi_t: undefined, fi_r: undefined, li: undefined }, 2);
    delta.addImpression({ ...search("a.b$c%", 5), clicked_on_insert: undefined, fi_t: undefined, fi_r: undefined, li: undefined }, 3);
    delta.addClick({ user_id: "u1", variant: "search_v1", rank: 4, timestamp: at, query_normalized: "blue hat", impression_id: undefined }, 1);
    const inc = tableIncrements(delta);
    expect(fieldsOf(inc, "red shoes")).toEqual({ i: 4, n: 1, [histogramCounter(12)]: 3 });
    // Escaped: "." and "$" would otherwise nest or read as an operator.
    expect(inc.get(queryField("a.b$c%", "i"))).toBe(1);
    expect(fieldsOf(inc, "blue hat")).toEqual({ c: 1, r: 4 });
  });

  it("writes no field for a zero increment, and a zero where increments cancel", () => {
    const delta = new RollupDelta();
    const s = search("lamp", 8);
    // Linked clicks with no rank sum and none outside the results: r and o stay unwritten.
    delta.linked(s, { n: 2, s: 0, o: 0, k: [{ r: 1, n: 2 }] }, 1);
    delta.firstClick(s, new Date(at.getTime() + 2_000), 3, 1);
    delta.firstClick(s, new Date(at.getTime() + 2_000), 3, -1);
    delta.firstClick(s, new Date(at.getTime() + 1_000), 1, 1);
    delta.clicked(s);
    expect(fieldsOf(tableIncrements(delta), "lamp")).toEqual({ c: 2, k: 2, s: 1, [firstClickCounter(3)]: 0, [firstClickCounter(1)]: 1 });
  });

  it("keeps no query table when asked for the rollups alone", () => {
    const delta = new RollupDelta(false);
    delta.addImpression({ ...search("lamp", 8), clicked_on_insert: undefined, fi_t: undefined, fi_r: undefined, li: undefined }, 1);
    expect(delta.unguardedUpdates().map((u) => String(u.q._id).slice(0, 2))).not.toContain("qh");
  });
});
