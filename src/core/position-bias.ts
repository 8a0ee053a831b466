/**
 * Position bias: users click the top of a list more whatever it holds, so raw CTR compares
 * rankers unfairly when they fill positions differently. Two measures:
 *
 * - CTR per rank over the searches that showed that rank: clicks at rank r / searches with
 *   results_count > r (a search with 3 results never showed rank 5).
 * - COEC, clicks over expected clicks (Zhang & Jones, 2007; Chapelle et al., "Click Models for
 *   Web Search", on position models): the expected clicks of a group of searches are, for every
 *   rank each showed, the click rate of that rank over all variants in the window — the
 *   estimator of the position's own pull is the pooled per-rank CTR above. COEC = clicks /
 *   expected clicks: 1 is what the positions alone predict, above 1 more clicks than its
 *   positions explain. Ranks from RESULTS_COUNT_CAP on are left out of both (their exposure is
 *   not kept exactly). Per variant (GetVariantComparison: clicksOverExpected) and per query
 *   (GetTopQueries: groupCoec), always against the pooled CTRs of all variants.
 */

/** Searches that showed each rank r < cap: those with results_count > r. `resultsCounts` maps a (capped) count to searches. */
export function searchesShowingRank(resultsCounts: ReadonlyMap<number, number>, cap: number): number[] {
  const shown = new Array<number>(cap).fill(0);
  for (const [count, searches] of resultsCounts) for (let r = 0; r < Math.min(count, cap); r++) shown[r]! += searches;
  return shown;
}

/** Clicks at rank r over the searches that showed it, for ranks shown at least once. */
export function ctrByRank(clicksByRank: ReadonlyMap<number, number>, shown: readonly number[]): Map<number, number> {
  const out = new Map<number, number>();
  shown.forEach((searches, rank) => {
    if (searches > 0) out.set(rank, (clicksByRank.get(rank) ?? 0) / searches);
  });
  return out;
}

/** The clicks `pooled` per-rank CTRs expect of searches that showed rank r `shown[r]` times. */
export function expectedClicks(shown: readonly number[], pooled: ReadonlyMap<number, number>): number {
  let expected = 0;
  shown.forEach((searches, rank) => {
    expected += searches * (pooled.get(rank) ?? 0);
  });
  return expected;
}

/** Clicks over the clicks `pooled` per-rank CTRs expect for these searches; undefined when nothing is expected. */
export function clicksOverExpected(clicksByRank: ReadonlyMap<number, number>, shown: readonly number[], pooled: ReadonlyMap<number, number>): number | undefined {
  const expected = expectedClicks(shown, pooled);
  let clicks = 0;
  for (let rank = 0; rank < shown.length; rank++) clicks += clicksByRank.get(rank) ?? 0;
  return expected > 0 ? clicks / expected : undefined;
}

/**
 * COEC of many groups of searches against the same pooled per-rank CTRs (GetTopQueries: one per
 * query), each group known by its searches per (capped) results_count and its clicks at ranks
 * below `cap`. A search with k results expects what one search showing ranks 0..min(k, cap)-1
 * expects (expectedClicks of searchesShowingRank), worked out once per distinct k; a group's
 * expected clicks are the sum over its searches. The same quantity as clicksOverExpected of the
 * group's searches, summed in another order (equal to rounding).
 */
export function groupCoec(pooled: ReadonlyMap<number, number>, cap: number): (clicksBelowCap: number, resultsCounts: ReadonlyMap<number, number>) => number | undefined {
  const perSearch = new Map<number, number>();
  const expectedOfOne = (count: number): number => {
    let e = perSearch.get(count);
    if (e === undefined) perSearch.set(count, (e = expectedClicks(searchesShowingRank(new Map([[count, 1]]), cap), pooled)));
    return e;
  };
  return (clicksBelowCap, resultsCounts) => {
    let expected = 0;
    for (const [count, searches] of resultsCounts) expected += searches * expectedOfOne(count);
    return expected > 0 ? clicksBelowCap / expected : undefined;
  };
}
