/** Ranking queries for GetTopQueries: the order MongoDB's `$sort` gives the raw pipeline. */

export type TopQueriesOrder = "searches" | "clicks" | "ctr" | "no_results";

export interface QueryRow {
  query: string;
  searches: number;
  clicks: number;
  searchesWithClicks: number;
  noResults: number;
  rankSum: number;
  /** Linked clicks of its searches at ranks they did not show (core/click-attribution.ts). */
  clicksOutsideResults: number;
  /** What the query's COEC, MRR and abandonment need (core/position-bias.ts, core/first-click.ts); absent where the stored counts lack it (see query-tables.ts). */
  positions?: QueryPositions | undefined;
}

export interface QueryPositions {
  /** Searches by results_count capped at RESULTS_COUNT_CAP, counts from 1 (a search without results shows no rank). */
  resultsCounts: Map<number, number>;
  /** Linked clicks of its searches at ranks they showed, below RESULTS_COUNT_CAP: COEC's clicks. */
  shownClicks: number;
  /** Searches with results by the rank of their first click, by rank ascending (MRR and abandonment). */
  firstClickRanks: Map<number, number>;
}

/** Binary (UTF-8 byte) order, which is code point order: MongoDB's order for strings. */
export function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

/** The sort key: clicks per search, or null (no searches), which sorts after every number. */
function orderValue(row: QueryRow, order: TopQueriesOrder): number | null {
  switch (order) {
    case "searches":
      return row.searches;
    case "clicks":
      return row.clicks;
    case "no_results":
      return row.noResults;
    case "ctr":
      return row.searches > 0 ? row.clicks / row.searches : null;
  }
}

/**
 * The first `limit` rows by `order` descending, ties by query text ascending. Only the rows that
 * can make the cut are sorted: those whose key reaches the `limit`-th largest key (found by a
 * numeric sort of the keys alone), ties at that key included.
 */
export function topRows(rows: Iterable<QueryRow>, order: TopQueriesOrder, limit: number): QueryRow[] {
  let keyed = [...rows].map((row) => ({ row, key: orderValue(row, order) }));
  if (limit <= 0) return [];
  if (keyed.length > limit) {
    const keys = Float64Array.from(keyed, (k) => k.key ?? -Infinity).sort();
    const cut = keys[keys.length - limit]!;
    keyed = keyed.filter((k) => (k.key ?? -Infinity) >= cut);
  }
  keyed.sort((a, b) => {
    if (a.key !== b.key) {
      if (a.key === null) return 1;
      if (b.key === null) return -1;
      return b.key - a.key;
    }
    return compareCodePoints(a.row.query, b.row.query);
  });
  return keyed.slice(0, limit).map((k) => k.row);
}
