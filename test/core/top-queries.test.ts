/** Ranking top queries in the server must give exactly the order MongoDB's $sort gives the raw pipeline. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compareCodePoints, topRows, type QueryRow, type TopQueriesOrder } from "../../src/core/top-queries.js";

/** MongoDB's order for strings without a collation: their UTF-8 bytes. */
const utf8Order = (a: string, b: string) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));

/** The reference: every row sorted as {key: -1, query: 1} with null keys last, then cut. */
function referenceTop(rows: QueryRow[], order: TopQueriesOrder, limit: number): QueryRow[] {
  const key = (r: QueryRow) => (order === "ctr" ? (r.searches > 0 ? r.clicks / r.searches : null) : order === "no_results" ? r.noResults : r[order]);
  return [...rows]
    .sort((a, b) => {
      const [x, y] = [key(a), key(b)];
      if (x !== y) return x === null ? 1 : y === null ? -1 : y - x;
      return utf8Order(a.query, b.query);
    })
    .slice(0, limit);
}

// Characters on both sides of the UTF-16 / code point disagreement (U+E000..U+FFFF vs astral).
const queryText = fc.string({ unit: fc.constantFrom("a", "b", "é", "\uE000", "\uFFFD", "🦄", "𝔸", " "), maxLength: 4 });
const row = fc.record({
  query: queryText,
  searches: fc.nat({ max: 5 }),
  clicks: fc.nat({ max: 5 }),
  searchesWithClicks: fc.nat({ max: 5 }),
  noResults: fc.nat({ max: 3 }),
  rankSum: fc.nat({ max: 20 }),
  clicksOutsideResults: fc.nat({ max: 3 }),
});

describe("top query ranking", () => {
  it("compares strings in UTF-8 byte order, as MongoDB does", () => {
    fc.assert(fc.property(queryText, queryText, (a, b) => Math.sign(compareCodePoints(a, b)) === Math.sign(utf8Order(a, b))));
    expect(compareCodePoints("\uFFFD", "🦄")).toBeLessThan(0); // UTF-16 code units would say otherwise
  });

  it("equals a full sort then cut, for every order and limit, ties and null CTRs included", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(row, { selector: (r) => r.query, maxLength: 60 }),
        fc.constantFrom<TopQueriesOrder>("searches", "clicks", "ctr", "no_results"),
        fc.integer({ min: 1, max: 70 }),
        (rows, order, limit) => {
          expect(topRows(rows, order, limit)).toEqual(referenceTop(rows, order, limit));
        },
      ),
      { numRuns: 500 },
    );
  });
});
