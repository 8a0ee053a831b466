/**
 * Click attribution: which search a click belongs to, and which of its clicks the position
 * measures may count.
 *
 * - A click naming an `impression_id` (a linked click) belongs to that search: it counts under
 *   the search's timestamp, variant and normalised query, whatever the click itself carries,
 *   once the search is stored (a click may come in a later batch than its search, or before it).
 * - A linked click at a rank its search did not show (rank >= results_count) is outside its
 *   results: it is stored and counted as a click of the search, but kept out of CTR per rank,
 *   COEC, the first click (MRR, abandonment, time to first click) and interleaving, and counted
 *   in `clicks_outside_results`.
 * - A click without an `impression_id` (unlinked) has no search to say what was shown: it counts
 *   as a click under its own variant, query and time, and in no position measure (neither CTR
 *   per rank nor the pooled COEC reference).
 *
 * A search keeps its linked clicks summarised (LinkedClicks) and its first click; both are
 * rebuilt from all its stored clicks whenever a click for it arrives, so they do not depend on
 * the order or the batches the clicks came in.
 */
import { isEarlierClick } from "./first-click.js";

/** A search's linked clicks against what it showed (see the module comment). */
export interface LinkedClicks {
  /** Linked clicks in all. */
  n: number;
  /** The sum of their ranks. */
  s: number;
  /** Of them, at a rank the search did not show (rank >= results_count). */
  o: number;
  /** Clicks per shown rank below the cap of kept ranks, by rank ascending; ranks without clicks left out. */
  k: { r: number; n: number }[];
}

/** A search's stored clicks at one rank: how many, and the earliest one's timestamp (ms). */
export interface RankClicks {
  r: number;
  n: number;
  t: number;
}

/** The summary of a search's clicks (by rank) and its first click among shown ranks, if any. */
export function summariseClicks(byRank: readonly RankClicks[], resultsCount: number, cap: number): { linked: LinkedClicks; first?: { t: number; r: number } | undefined } {
  const linked: LinkedClicks = { n: 0, s: 0, o: 0, k: [] };
  let first: { t: number; r: number } | undefined;
  for (const { r, n, t } of [...byRank].sort((a, b) => a.r - b.r)) {
    linked.n += n;
    linked.s += n * r;
    if (r >= resultsCount) {
      linked.o += n;
      continue;
    }
    if (r < cap) linked.k.push({ r, n });
    if (first === undefined || isEarlierClick({ t, r }, first)) first = { t, r };
  }
  return { linked, first };
}

/** Clicks at shown ranks below the cap: what COEC and CTR per rank count of a search. */
export const shownClicks = (linked: LinkedClicks | undefined): number => (linked === undefined ? 0 : linked.k.reduce((sum, { n }) => sum + n, 0));
