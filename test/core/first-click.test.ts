import { describe, expect, it } from "vitest";
import { addFirstClick, emptyFirstClickStats, firstClickMetrics, isEarlierClick, mergeFirstClickStats, timeToClickMs } from "../../src/core/first-click.js";

describe("first-click metrics", () => {
  it("the README's example: MRR 0.45, clicked MRR 0.5625, abandonment 0.2; percentiles within 1%", () => {
    const s = emptyFirstClickStats();
    s.searchesWithResults = 5;
    for (const [rank, delay] of [[0, 5_000], [3, 12_000], [1, timeToClickMs(0, -1_000)], [1, 30_000]] as const) addFirstClick(s, rank, delay);
    const m = firstClickMetrics(s);
    expect(m).toMatchObject({ searchesWithResults: 5, clicked: 4, abandoned: 1, mrr: 0.45, clickedMrr: 0.5625, abandonmentRate: 0.2 });
    expect(Math.abs(m.timeToFirstClickP50Ms! - 8_500)).toBeLessThanOrEqual(85);
    expect(Math.abs(m.timeToFirstClickP90Ms! - 24_600)).toBeLessThanOrEqual(246);
  });

  it("nothing to take a ratio over is undefined, not 0", () => {
    expect(firstClickMetrics(emptyFirstClickStats())).toEqual({ searchesWithResults: 0, clicked: 0, abandoned: 0, mrr: undefined, clickedMrr: undefined, abandonmentRate: undefined, timeToFirstClickP50Ms: undefined, timeToFirstClickP90Ms: undefined });
    const none = { ...emptyFirstClickStats(), searchesWithResults: 3 };
    expect(firstClickMetrics(none)).toMatchObject({ mrr: 0, abandonmentRate: 1, clickedMrr: undefined, timeToFirstClickP50Ms: undefined });
  });

  it("the same histogram merged in any order gives the same MRR to the last bit", () => {
    const parts = [0, 1, 2, 5, 9, 2, 0, 30].map((rank, i) => addFirstClick({ ...emptyFirstClickStats(), searchesWithResults: 3 }, rank, i * 1000));
    const forward = parts.reduce((a, p) => mergeFirstClickStats(a, p), emptyFirstClickStats());
    const backward = [...parts].reverse().reduce((a, p) => mergeFirstClickStats(a, p), emptyFirstClickStats());
    expect(firstClickMetrics(forward).mrr).toBe(firstClickMetrics(backward).mrr);
  });

  it("a moved first click (removed, then added elsewhere) leaves only the new one; a count briefly below 0 is skipped", () => {
    const s = addFirstClick({ ...emptyFirstClickStats(), searchesWithResults: 1 }, 4, 9_000);
    addFirstClick(s, 4, 9_000, -1);
    addFirstClick(s, 1, 2_000);
    expect(firstClickMetrics(s)).toMatchObject({ mrr: 0.5, clicked: 1 });
    const early = addFirstClick({ ...emptyFirstClickStats(), searchesWithResults: 1 }, 4, 9_000, -1);
    addFirstClick(early, 1, 2_000);
    expect(firstClickMetrics(early)).toMatchObject({ mrr: 0.5, clicked: 1 });
  });

  it("first is the earliest timestamp, then the lowest rank; time to click never below 0", () => {
    expect(isEarlierClick({ t: 1, r: 9 }, { t: 2, r: 0 })).toBe(true);
    expect(isEarlierClick({ t: 2, r: 1 }, { t: 2, r: 3 })).toBe(true);
    expect(isEarlierClick({ t: 2, r: 3 }, { t: 2, r: 3 })).toBe(false);
    expect(timeToClickMs(10_000, 9_000)).toBe(0);
    expect(timeToClickMs(10_000, 12_500)).toBe(2_500);
  });
});
