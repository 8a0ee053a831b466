/**
 * Binary search over anything sorted by a number (cached rows by time offset, searches by time):
 * the readers' caches answer any stretch of an hour from rows kept in order.
 */

/** The first index i in [0, length) whose key(i) is at least `x` (length if none); keys ascending. */
export function lowerBound(length: number, key: (i: number) => number, x: number): number {
  let lo = 0;
  let hi = length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (key(mid) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
