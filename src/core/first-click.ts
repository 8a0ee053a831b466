/**
 * Search-quality metrics of a search's FIRST click: mean reciprocal rank (MRR), abandonment and
 * time to first click.
 *
 * Definitions (the contract; the proto comments say the same):
 * - A search "with results" has results_count > 0; only those count here.
 * - Its first click is, among its linked clicks (clicks naming its impression_id), the one with
 *   the earliest timestamp; ties go to the lowest rank.
 * - Its reciprocal rank is 1 / (rank + 1) of the first click (ranks are 0-based), 0 without a click.
 * - MRR = sum of reciprocal ranks / searches with results; `clickedMrr` the same over searches
 *   with results that have a click.
 * - Abandonment rate = searches with results and no linked click / searches with results.
 * - Time to first click = first click's timestamp - the search's timestamp in ms, clamped at 0
 *   (a click timestamped before its search counts as 0 ms), kept in the log-bucket latency
 *   sketch (sketches.ts): percentiles within its 1% relative accuracy.
 *
 * Everything is kept as histograms (first-click rank -> searches, sketch bucket -> searches), so
 * any set of hours, days and raw edges merges exactly, and MRR summed in rank order is the same
 * number whatever the order the parts were merged in.
 */
import { latencyBucket, positiveLatencyQuantiles } from "./sketches.js";

export interface FirstClickStats {
  /** Searches with results_count > 0. */
  searchesWithResults: number;
  /** Rank of the first click -> searches with results whose first click it was. */
  ranks: Map<number, number>;
  /** Time to first click: latency-sketch bucket of the ms -> searches with results. */
  delays: Map<number, number>;
}

export interface FirstClickMetrics {
  searchesWithResults: number;
  /** Searches with results and a click. */
  clicked: number;
  /** Searches with results and no click. */
  abandoned: number;
  mrr?: number | undefined;
  clickedMrr?: number | undefined;
  abandonmentRate?: number | undefined;
  timeToFirstClickP50Ms?: number | undefined;
  timeToFirstClickP90Ms?: number | undefined;
}

export const emptyFirstClickStats = (): FirstClickStats => ({ searchesWithResults: 0, ranks: new Map(), delays: new Map() });

/** 1 / (rank + 1): rank 0 (the top result) scores 1. */
export const reciprocalRank = (rank: number): number => 1 / (rank + 1);

/** ms from a search to a click, 0 when the click is timestamped before its search. */
export const timeToClickMs = (searchMs: number, clickMs: number): number => Math.max(0, clickMs - searchMs);

/** Which of two clicks comes first: earlier timestamp, then lower rank. */
export const isEarlierClick = (a: { t: number; r: number }, b: { t: number; r: number }): boolean => a.t < b.t || (a.t === b.t && a.r < b.r);

/** Adds (or, with n = -1, removes) one search's first click. */
export function addFirstClick(s: FirstClickStats, rank: number, delayMs: number, n = 1): FirstClickStats {
  s.ranks.set(rank, (s.ranks.get(rank) ?? 0) + n);
  const k = latencyBucket(delayMs);
  s.delays.set(k, (s.delays.get(k) ?? 0) + n);
  return s;
}

export function mergeFirstClickStats(into: FirstClickStats, from: FirstClickStats): FirstClickStats {
  into.searchesWithResults += from.searchesWithResults;
  for (const [k, n] of from.ranks) into.ranks.set(k, (into.ranks.get(k) ?? 0) + n);
  for (const [k, n] of from.delays) into.delays.set(k, (into.delays.get(k) ?? 0) + n);
  return into;
}

/** The metrics of a set of searches; ratios and percentiles over nothing are undefined. */
export function firstClickMetrics(s: FirstClickStats): FirstClickMetrics {
  // In rank order, so every source of the same histogram gives the same floating-point sum.
  // (A count can be briefly below 0 while a moved first click is half counted: skipped.)
  const ranks: number[] = [];
  s.ranks.forEach((n, rank) => {
    if (n > 0) ranks.push(rank);
  });
  ranks.sort((a, b) => a - b);
  let clicked = 0;
  let rrSum = 0;
  for (const rank of ranks) {
    const n = s.ranks.get(rank)!;
    clicked += n;
    rrSum += n * reciprocalRank(rank);
  }
  const [p50, p90] = positiveLatencyQuantiles(s.delays, [0.5, 0.9]);
  const withResults = s.searchesWithResults;
  return {
    searchesWithResults: withResults,
    clicked,
    abandoned: withResults - clicked,
    mrr: withResults > 0 ? rrSum / withResults : undefined,
    clickedMrr: clicked > 0 ? rrSum / clicked : undefined,
    abandonmentRate: withResults > 0 ? (withResults - clicked) / withResults : undefined,
    timeToFirstClickP50Ms: p50,
    timeToFirstClickP90Ms: p90,
  };
}
