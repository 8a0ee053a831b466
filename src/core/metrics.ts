/**
 * Metric math over aggregates that MongoDB has already reduced (counts, sums, histograms).
 * "No data is not zero": every ratio, mean or percentile over an empty set is `undefined`.
 */

export function ratio(numerator: number, denominator: number): number | undefined {
  return denominator === 0 ? undefined : numerator / denominator;
}

export interface RankStats {
  total: number;
  avg?: number | undefined;
  median?: number | undefined;
  min?: number | undefined;
  max?: number | undefined;
  /** rank -> clicks, unbucketed. */
  clicksByRank: Map<number, number>;
}

/** Exact rank statistics from the full rank histogram (ranks are integers, so it is small). */
export function rankStats(histogram: Iterable<readonly [rank: number, clicks: number]>): RankStats {
  const entries = [...histogram].filter(([, n]) => n > 0).sort((a, b) => a[0] - b[0]);
  const clicksByRank = new Map(entries);
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  if (total === 0) return { total, clicksByRank };
  const weighted = entries.reduce((sum, [rank, n]) => sum + rank * n, 0);
  return {
    total,
    avg: weighted / total,
    median: (valueAtPosition(entries, Math.floor((total - 1) / 2)) + valueAtPosition(entries, Math.ceil((total - 1) / 2))) / 2,
    min: entries[0]![0],
    max: entries[entries.length - 1]![0],
    clicksByRank,
  };
}

/** The value at 0-based position `pos` of the sorted multiset a histogram describes. */
function valueAtPosition(sortedHistogram: readonly (readonly [number, number])[], pos: number): number {
  let seen = 0;
  for (const [value, n] of sortedHistogram) {
    seen += n;
    if (pos < seen) return value;
  }
  throw new RangeError(`position ${pos} outside histogram of ${seen}`);
}

/**
 * Where percentile p (0..1) of n sorted values falls, by linear interpolation between closest
 * ranks (numpy's default): value = v[lower] + (v[upper] - v[lower]) * fraction.
 */
export function percentilePosition(n: number, p: number): { lower: number; upper: number; fraction: number } {
  const h = (n - 1) * p;
  const lower = Math.floor(h);
  return { lower, upper: Math.ceil(h), fraction: h - lower };
}

/** Linear-interpolation percentile given a lookup of the sorted values by position. */
export function interpolatePercentile(n: number, p: number, valueAt: (position: number) => number): number | undefined {
  if (n === 0) return undefined;
  const { lower, upper, fraction } = percentilePosition(n, p);
  const low = valueAt(lower);
  return low + (valueAt(upper) - low) * fraction;
}

/** Percentile of an in-memory sample (for reference computations and tests). */
export function percentile(values: readonly number[], p: number): number | undefined {
  const sorted = [...values].sort((a, b) => a - b);
  return interpolatePercentile(sorted.length, p, (i) => sorted[i]!);
}

export interface VariantCounts {
  variant: string;
  clicks: number;
  impressions: number;
}

/** Highest CTR among variants with impressions; empty when there is none or the top two tie. */
export function winnerByCtr(variants: readonly VariantCounts[]): string {
  const ranked = variants
    .filter((v) => v.impressions > 0)
    .map((v) => ({ variant: v.variant, ctr: v.clicks / v.impressions }))
    .sort((a, b) => b.ctr - a.ctr);
  const [first, second] = ranked;
  if (!first) return "";
  if (second && second.ctr === first.ctr) return "";
  return first.variant;
}
