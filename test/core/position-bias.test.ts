/** Position bias: the per-group COEC of GetTopQueries is the per-variant COEC of GetVariantComparison applied to one group. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { clicksOverExpected, ctrByRank, groupCoec, searchesShowingRank } from "../../src/core/position-bias.js";

const CAP = 100;
/** Results counts on both sides of the cap, and 0 (which shows no rank). */
const resultsCount = fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 150 }), fc.constantFrom(99, 100, 101));
const histogram = fc.array(fc.tuple(resultsCount, fc.integer({ min: 1, max: 40 })), { maxLength: 12 }).map((pairs) => {
  const m = new Map<number, number>();
  for (const [k, n] of pairs) m.set(Math.min(k, CAP), (m.get(Math.min(k, CAP)) ?? 0) + n);
  return m;
});
const clicks = fc.array(fc.tuple(fc.integer({ min: 0, max: 130 }), fc.integer({ min: 1, max: 20 })), { maxLength: 20 }).map((pairs) => {
  const m = new Map<number, number>();
  for (const [r, n] of pairs) m.set(r, (m.get(r) ?? 0) + n);
  return m;
});

describe("groupCoec", () => {
  it("equals clicksOverExpected of the group's searches, against pooled CTRs of a larger population", () => {
    fc.assert(
      fc.property(histogram, clicks, histogram, clicks, (groupCounts, groupClicks, otherCounts, otherClicks) => {
        // The pooled population holds the group and others, as a window holds a query's searches.
        const allCounts = new Map(groupCounts);
        for (const [k, n] of otherCounts) allCounts.set(k, (allCounts.get(k) ?? 0) + n);
        const allClicks = new Map(groupClicks);
        for (const [r, n] of otherClicks) allClicks.set(r, (allClicks.get(r) ?? 0) + n);
        const pooled = ctrByRank(allClicks, searchesShowingRank(allCounts, CAP));
        const expected = clicksOverExpected(groupClicks, searchesShowingRank(groupCounts, CAP), pooled);
        const clicksBelowCap = [...groupClicks].reduce((sum, [r, n]) => sum + (r < CAP ? n : 0), 0);
        const actual = groupCoec(pooled, CAP)(clicksBelowCap, groupCounts);
        if (expected === undefined) expect(actual).toBeUndefined();
        else expect(Math.abs(actual! - expected)).toBeLessThanOrEqual(1e-12 * expected);
      }),
      { numRuns: 1000 },
    );
  });

  it("is undefined when nothing is expected: no searches with results, or no clicks at the ranks shown", () => {
    const pooled = ctrByRank(new Map([[0, 3]]), searchesShowingRank(new Map([[1, 5], [10, 5]]), CAP));
    const coec = groupCoec(pooled, CAP);
    expect(coec(2, new Map())).toBeUndefined();
    expect(coec(2, new Map([[0, 7]]))).toBeUndefined();
    // Rank 0 has CTR 3/10: one search with 10 results expects 0.3 clicks.
    expect(coec(3, new Map([[10, 1]]))).toBeCloseTo(10, 12);
    expect(coec(0, new Map([[10, 1]]))).toBe(0);
    expect(groupCoec(new Map([[5, 0]]), CAP)(1, new Map([[100, 3]]))).toBeUndefined();
  });
});
