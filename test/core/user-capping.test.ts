// Issue 21: the caps' percentile and the small-sample permutation test pinned against numpy and
// scipy (NumPy 2.4.6, SciPy 1.17.1, run on this machine; the Python is in each comment), the
// settings' bounds, and the bot rule.
import { describe, expect, it } from "vitest";
import { compareVariants } from "../../src/core/comparison.js";
import { comparisonSettings, type VariantData } from "../../src/core/comparison-model.js";
import { deltaMethodRatio, flooredVariance } from "../../src/core/delta-method.js";
import { permutationTests } from "../../src/core/permutation.js";
import { emptyBucketSums } from "../../src/core/user-buckets.js";
import { abandonedColumn, capIndexes, capInPlace, column, percentile, pooledCap, unionSize, withResultsColumn, type UserTotals } from "../../src/core/user-totals.js";

describe("the caps' percentile is numpy.quantile's default (linear)", () => {
  it("matches numpy on small and large arrays, near the top (the one-pass path) and below it", () => {
    // np.quantile([5,1,9,3,3,7,2,8,100,4], 0.99) = 91.81000000000002; ..., 0.9) = 18.099999999999966
    expect(percentile([5, 1, 9, 3, 3, 7, 2, 8, 100, 4], 0.99)).toBeCloseTo(91.81000000000002, 10);
    expect(percentile([5, 1, 9, 3, 3, 7, 2, 8, 100, 4], 0.9)).toBeCloseTo(18.099999999999966, 10);
    // np.quantile(np.arange(1, 1001) ** 1.5, 0.99) = 31150.09487379794
    expect(percentile(Array.from({ length: 1000 }, (_, i) => (i + 1) ** 1.5), 0.99)).toBeCloseTo(31150.09487379794, 8);
    expect(percentile([7], 0.99)).toBe(7);
    expect(percentile([], 0.99)).toBeUndefined();
  });
});

describe("the pooled cap's threshold pass equals selecting over every value (issue 21b)", () => {
  it("gives percentile()'s exact value on random heavy-tailed, tied and adversarial arms", () => {
    let seed = 7;
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const shapes: ((i: number) => number)[] = [
      () => Math.floor(Math.exp(random() * 6)),
      () => (random() < 0.995 ? 0 : Math.floor(random() * 50)),
      () => Math.floor(random() * 3),
      () => random() * 1000,
      (i) => i,
      (i) => -i,
      () => 5,
    ];
    for (const shape of shapes) {
      for (const sizes of [[5000, 5000], [4000, 1], [3000, 9000, 20], [30_000]]) {
        const arms = sizes.map((n) => Float64Array.from({ length: n }, (_, i) => shape(i)));
        const pooled = new Float64Array(sizes.reduce((a, b) => a + b, 0));
        let o = 0;
        for (const a of arms) (pooled.set(a, o), (o += a.length));
        for (const q of [0.9, 0.95, 0.99, 0.995, 0.999, 0.9999]) {
          const before = arms.map((a) => a.slice());
          expect(pooledCap(arms, q)).toBe(percentile(pooled, q));
          // The arms are left as they were.
          expect(arms.every((a, k) => a.every((x, i) => x === before[k]![i]))).toBe(true);
        }
      }
    }
  });

  it("counts users capped on either total as the per-user flags do", () => {
    let seed = 3;
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    for (let k = 0; k < 50; k++) {
      const n = 1 + Math.floor(random() * 500);
      const num = Float64Array.from({ length: n }, () => Math.floor(random() * 30));
      const den = Float64Array.from({ length: n }, () => Math.floor(random() * 40));
      const [capN, capD] = [k % 7 === 0 ? undefined : random() * 30, random() * 40];
      const [flagsN, flagsD] = [capInPlace(num.slice(), capN), capInPlace(den.slice(), capD)];
      const [a, b] = [num.slice(), den.slice()];
      const [ia, ib] = [capIndexes(a, capN), capIndexes(b, capD)];
      expect(a).toEqual((() => { const x = num.slice(); capInPlace(x, capN); return x; })());
      expect(unionSize(ia, ib)).toBe(flagsN.reduce((s, f, i) => s + (f || flagsD[i] ? 1 : 0), 0));
    }
  });

  it("takes every user's column as the indexed copy does, with every user kept or some left out", () => {
    const n = 300;
    const f = (k: number) => Float64Array.from({ length: n }, (_, i) => (i * 7 + k) % 13);
    const t: UserTotals = { ids: Uint32Array.from({ length: n }, (_, i) => i), impressions: f(20), clicks: f(1), searchesWithClicks: f(2), noResults: f(3), firstClicked: f(4), reciprocalRanks: f(5) };
    for (const kept of [Uint32Array.from({ length: n }, (_, i) => i), Uint32Array.from({ length: n / 3 }, (_, i) => i * 3)]) {
      const ref = (g: (i: number) => number) => Float64Array.from(kept, g);
      expect(column("clicks")(t, kept)).toEqual(ref((i) => t.clicks[i]!));
      expect(withResultsColumn(t, kept)).toEqual(ref((i) => t.impressions[i]! - t.noResults[i]!));
      expect(abandonedColumn(t, kept)).toEqual(ref((i) => t.impressions[i]! - t.noResults[i]! - t.firstClicked[i]!));
    }
  });
});

describe("the permutation test against scipy.stats.permutation_test", () => {
  it("3 users against 4: the exact p-value over all 35 splits of the studentized delta-method statistic", () => {
    // scipy.stats.permutation_test((idx_t, idx_c), |t|, permutation_type="independent",
    // n_resamples=np.inf, alternative="greater") with t the same floored delta-method statistic:
    // statistic 2.073821934433095, p-value 0.14285714285714285 (5 of 35 splits).
    const arm = (units: [number, number][]) => ({ num: Float64Array.from(units, (u) => u[0]), den: Float64Array.from(units, (u) => u[1]) });
    const variance = (s: Parameters<typeof deltaMethodRatio>[0]) => {
      const m = deltaMethodRatio(s);
      return m === undefined ? undefined : flooredVariance("proportion", m.variance, m.numerator, m.denominator, "degenerate");
    };
    const [r] = permutationTests([{ treatment: arm([[3, 10], [1, 8], [4, 12]]), control: arm([[1, 9], [0, 7], [2, 11], [1, 6]]), variance }], 0.05);
    expect(r!.exact).toBe(true);
    expect(r!.splits).toBe(35);
    expect(Math.abs(r!.t)).toBeCloseTo(2.073821934433095, 12);
    expect(r!.pValue).toBeCloseTo(0.14285714285714285, 15);
    // Not significant, so the critical value is at least |t| (the interval then contains 0).
    expect(r!.critical).toBeGreaterThanOrEqual(Math.abs(r!.t));
  });
});

/** An arm of users with the given (searches, clicked) totals and searches per day. */
function arm(users: [number, number][], offset: number): VariantData {
  const ids = Float64Array.from(users, (_, i) => offset + i);
  const searches = Float64Array.from(users, (u) => u[0]);
  const clicked = Float64Array.from(users, (u) => u[1]);
  const zeros = new Float64Array(users.length);
  const sum = (a: Float64Array) => a.reduce((x, y) => x + y, 0);
  return {
    impressions: sum(searches),
    clicks: sum(clicked),
    searchesWithClicks: sum(clicked),
    noResults: 0,
    users: users.length,
    buckets: emptyBucketSums(),
    perUser: { ids, impressions: searches, clicks: clicked, searchesWithClicks: clicked, noResults: zeros, firstClicked: clicked, reciprocalRanks: clicked, maxDaySearches: searches },
  };
}

describe("capping settings and the bot rule", () => {
  it("refuses a percentile outside [0.9, 1] and a negative bot threshold, naming the field", () => {
    const base = { control: "c", expectedSplit: {} };
    expect(() => comparisonSettings({ ...base, capPercentile: 0.5 })).toThrow(/^cap_percentile: must be between 0.9 and 1/);
    expect(() => comparisonSettings({ ...base, capPercentile: Number.NaN })).toThrow(/^cap_percentile/);
    expect(() => comparisonSettings({ ...base, botSearchesPerDay: -1 })).toThrow(/^bot_searches_per_day: must be a non-negative integer/);
    expect(comparisonSettings(base)).toMatchObject({ capPercentile: 0.99, botSearchesPerDay: 0 });
  });

  it("leaves out users above the threshold (counted), and caps the rest at the pooled percentile", () => {
    // 300 ordinary users per arm (10 searches, 2 clicked) and one bot in the treatment (5,000 searches, 4,000 clicked).
    const ordinary = Array.from({ length: 300 }, (): [number, number] => [10, 2]);
    const data = new Map([
      ["c", arm(ordinary, 0)],
      ["t", arm([...ordinary, [5000, 4000]], 1000)],
    ]);
    const withBot = compareVariants(data, comparisonSettings({ control: "c", expectedSplit: {}, minImpressions: 0 }));
    const noBot = compareVariants(data, comparisonSettings({ control: "c", expectedSplit: {}, minImpressions: 0, botSearchesPerDay: 1000 }));
    expect(noBot.capping.bots).toEqual(new Map([["c", 0], ["t", 1]]));
    expect(noBot.capping.metrics.get("searchCtr")!.values.get("t")).toBeCloseTo(0.2, 12);
    expect(noBot.comparisons[0]!.searchCtr!.lift.value).toBeCloseTo(0, 12);
    // Without the rule the bot is capped at the 99th percentile of 601 users' totals (10 searches, 2 clicked): it counts as an ordinary user.
    expect(withBot.capping.metrics.get("searchCtr")).toMatchObject({ numeratorCap: 2, denominatorCap: 10 });
    expect(withBot.capping.metrics.get("searchCtr")!.cappedUsers.get("t")).toBe(1);
    expect(withBot.comparisons[0]!.searchCtr!.lift.value).toBeCloseTo(0, 12);
    // Uncapped, the bot alone moves the treatment's search CTR from 20% to 4,600 / 8,000 = 57.5%.
    const uncapped = compareVariants(data, comparisonSettings({ control: "c", expectedSplit: {}, minImpressions: 0, capPercentile: 1 }));
    expect(uncapped.capping.metrics.get("searchCtr")!.values.get("t")).toBeCloseTo(4600 / 8000, 12);
  });

  it("gives each variant's interval around the rate it reports (uncapped), whatever the comparisons cap", () => {
    // A heavy user in the treatment: capped, the treatment's search CTR is 20%; as reported, 57.5%.
    const ordinary = Array.from({ length: 300 }, (_, i): [number, number] => [10, i % 5]);
    const data = new Map([
      ["c", arm(ordinary, 0)],
      ["t", arm([...ordinary, [5000, 4000]], 1000)],
    ]);
    const capped = compareVariants(data, comparisonSettings({ control: "c", expectedSplit: {}, minImpressions: 0 }));
    const uncapped = compareVariants(data, comparisonSettings({ control: "c", expectedSplit: {}, minImpressions: 0, capPercentile: 1 }));
    for (const [name, d] of data) {
      const reported = d.searchesWithClicks / d.impressions;
      const interval = capped.intervals.get(name)!.searchCtr!;
      expect(interval.low, name).toBeLessThanOrEqual(reported);
      expect(interval.high, name).toBeGreaterThanOrEqual(reported);
      // The same interval as with capping off: it does not depend on the caps.
      expect(interval, name).toEqual(uncapped.intervals.get(name)!.searchCtr);
    }
    // While the comparison is of the capped metric.
    expect(capped.capping.metrics.get("searchCtr")!.values.get("t")).toBeLessThan(0.25);
  });
});
