import { describe, expect, it } from "vitest";
import { percentile, rankStats, ratio, winnerByCtr } from "../../src/core/metrics.js";

describe("rankStats", () => {
  it("worked example: 0x5, 1x3, 2x2, 5x1", () => {
    const s = rankStats([[5, 1], [0, 5], [2, 2], [1, 3]]);
    expect(s).toMatchObject({ total: 11, min: 0, max: 5, median: 1 });
    expect(s.avg).toBeCloseTo(12 / 11, 14);
    expect([...s.clicksByRank]).toEqual([[0, 5], [1, 3], [2, 2], [5, 1]]);
  });

  it("averages the two middle values for an even count", () => {
    expect(rankStats([[1, 2], [4, 2]]).median).toBe(2.5);
    expect(rankStats([[3, 1], [7, 1]]).median).toBe(5);
    expect(rankStats([[3, 4]]).median).toBe(3);
  });

  it("agrees with sorting the expanded values", () => {
    const hist: [number, number][] = [[0, 7], [2, 1], [3, 4], [9, 2], [40, 1]];
    const values = hist.flatMap(([r, n]) => Array<number>(n).fill(r));
    expect(rankStats(hist).median).toBe(percentile(values, 0.5));
  });

  it("is empty, not zero, without clicks", () => {
    const s = rankStats([]);
    expect(s.total).toBe(0);
    expect([s.avg, s.median, s.min, s.max]).toEqual([undefined, undefined, undefined, undefined]);
  });
});

describe("percentile (linear interpolation between closest ranks, numpy's default)", () => {
  it("matches numpy on textbook values", () => {
    // numpy.percentile([1, 2, 3, 4], [25, 50, 90]) -> 1.75, 2.5, 3.7
    expect(percentile([4, 1, 3, 2], 0.25)).toBeCloseTo(1.75, 12);
    expect(percentile([4, 1, 3, 2], 0.5)).toBeCloseTo(2.5, 12);
    expect(percentile([4, 1, 3, 2], 0.9)).toBeCloseTo(3.7, 12);
    expect(percentile([15, 20, 35, 40, 50], 0.95)).toBeCloseTo(48, 12);
    expect(percentile([7], 0.99)).toBe(7);
    expect(percentile([], 0.5)).toBeUndefined();
  });
});

describe("ratio and winnerByCtr", () => {
  it("leaves a ratio over zero unset", () => {
    expect(ratio(3, 0)).toBeUndefined();
    expect(ratio(0, 4)).toBe(0);
  });

  it("picks the highest CTR among variants with impressions", () => {
    expect(winnerByCtr([{ variant: "search_v1", clicks: 4, impressions: 20 }, { variant: "search_v2", clicks: 6, impressions: 20 }])).toBe("search_v2");
    expect(winnerByCtr([{ variant: "a", clicks: 99, impressions: 0 }, { variant: "b", clicks: 1, impressions: 10 }])).toBe("b");
  });

  it("is empty on a tie at the top or with no candidate", () => {
    expect(winnerByCtr([{ variant: "a", clicks: 1, impressions: 3 }, { variant: "b", clicks: 2, impressions: 6 }, { variant: "c", clicks: 0, impressions: 5 }])).toBe("");
    expect(winnerByCtr([{ variant: "a", clicks: 5, impressions: 0 }])).toBe("");
    expect(winnerByCtr([])).toBe("");
  });
});
