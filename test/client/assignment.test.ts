/**
 * The typed client's assign(): GrowthBook's v2 hashing and bucket ranges, pinned by GrowthBook's
 * own published test vectors (growthbook/growthbook packages/sdk-js/test/cases.json at commit
 * 8f1db4456915a8e7b7faf23d5632ca7219d2f469: "hash", "getBucketRange", "chooseVariation"), and a
 * split of 100,000 users that the service's sample-ratio test accepts.
 */
import { describe, expect, it } from "vitest";
import { assign, bucketRanges, chooseVariation, ExperimentStatus, fnv1a32, hash, type BucketRange } from "../../src/client/index.js";
import { SRM_ALPHA } from "../../src/core/comparison-model.js";
import { sampleRatioTest } from "../../src/core/statistics.js";

const HASH_CASES: [string, string, number, number | null][] = [
  ["", "a", 1, 0.22],
  ["", "b", 1, 0.077],
  ["b", "a", 1, 0.946],
  ["ef", "d", 1, 0.652],
  ["asdf", "8952klfjas09ujk", 1, 0.549],
  ["", "123", 1, 0.011],
  ["", "___)((*\":&", 1, 0.563],
  ["seed", "a", 2, 0.0505],
  ["seed", "b", 2, 0.2696],
  ["foo", "ab", 2, 0.2575],
  ["foo", "def", 2, 0.2019],
  ["89123klj", "8952klfjas09ujkasdf", 2, 0.124],
  ["90850943850283058242805", "123", 2, 0.7516],
  ["()**(%$##$%#$#", "___)((*\":&", 2, 0.0128],
  ["abc", "def", 99, null],
];

const RANGE_CASES: [string, [number, number, number[] | null], BucketRange[]][] = [
  ["normal 50/50", [2, 1, null], [[0, 0.5], [0.5, 1]]],
  ["reduced coverage", [2, 0.5, null], [[0, 0.25], [0.5, 0.75]]],
  ["zero coverage", [2, 0, null], [[0, 0], [0.5, 0.5]]],
  ["4 variations", [4, 1, null], [[0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1]]],
  ["uneven weights", [2, 1, [0.4, 0.6]], [[0, 0.4], [0.4, 1]]],
  ["uneven weights, 3 variations", [3, 1, [0.2, 0.3, 0.5]], [[0, 0.2], [0.2, 0.5], [0.5, 1]]],
  ["uneven weights, reduced coverage, 3 variations", [3, 0.2, [0.2, 0.3, 0.5]], [[0, 0.04], [0.2, 0.26], [0.5, 0.6]]],
  ["negative coverage", [2, -0.2, null], [[0, 0], [0.5, 0.5]]],
  ["coverage above 1", [2, 1.5, null], [[0, 0.5], [0.5, 1]]],
  ["weights sum below 1", [2, 1, [0.4, 0.1]], [[0, 0.5], [0.5, 1]]],
  ["weights sum above 1", [2, 1, [0.7, 0.6]], [[0, 0.5], [0.5, 1]]],
  ["weights.length not equal to num variations", [4, 1, [0.4, 0.4, 0.2]], [[0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1]]],
  ["weights sum almost equals 1", [2, 1, [0.4, 0.5999]], [[0, 0.4], [0.4, 0.9999]]],
];

const CHOOSE_CASES: [string, number, BucketRange[], number][] = [
  ["even range, 0.2", 0.2, [[0, 0.5], [0.5, 1]], 0],
  ["even range, 0.4", 0.4, [[0, 0.5], [0.5, 1]], 0],
  ["even range, 0.6", 0.6, [[0, 0.5], [0.5, 1]], 1],
  ["even range, 0.8", 0.8, [[0, 0.5], [0.5, 1]], 1],
  ["even range, 0", 0, [[0, 0.5], [0.5, 1]], 0],
  ["even range, 0.5", 0.5, [[0, 0.5], [0.5, 1]], 1],
  ["reduced range, 0.2", 0.2, [[0, 0.25], [0.5, 0.75]], 0],
  ["reduced range, 0.4", 0.4, [[0, 0.25], [0.5, 0.75]], -1],
  ["reduced range, 0.6", 0.6, [[0, 0.25], [0.5, 0.75]], 1],
  ["reduced range, 0.8", 0.8, [[0, 0.25], [0.5, 0.75]], -1],
  ["reduced range, 0.25", 0.25, [[0, 0.25], [0.5, 0.75]], -1],
  ["reduced range, 0.5", 0.5, [[0, 0.25], [0.5, 0.75]], 1],
  ["zero range", 0.5, [[0, 0.5], [0.5, 0.5], [0.5, 1]], 2],
];

describe("GrowthBook's published test vectors", () => {
  it.each(HASH_CASES)("hash(%j, %j, v%d) = %s", (seed, value, version, expected) => {
    expect(hash(seed, value, version)).toBe(expected);
  });

  it.each(RANGE_CASES)("getBucketRange: %s", (_name, [n, coverage, weights], expected) => {
    const ranges = bucketRanges(n, coverage, weights);
    expect(ranges).toHaveLength(expected.length);
    ranges.forEach(([start, end], i) => {
      expect(start).toBeCloseTo(expected[i]![0], 12);
      expect(end).toBeCloseTo(expected[i]![1], 12);
    });
  });

  it.each(CHOOSE_CASES)("chooseVariation: %s", (_name, n, ranges, expected) => {
    expect(chooseVariation(n, ranges)).toBe(expected);
  });

  it("is 32-bit FNV-1a (offset basis and the reference values of the FNV specification)", () => {
    // draft-eastlake-fnv: FNV-1a 32 of "" is the offset basis, of "a" 0xe40c292c, of "foobar" 0xbf9cf968.
    expect(fnv1a32("")).toBe(0x811c9dc5);
    expect(fnv1a32("a")).toBe(0xe40c292c);
    expect(fnv1a32("foobar")).toBe(0xbf9cf968);
  });
});

describe("assign", () => {
  const experiment = { key: "ranker-v2", arms: [{ variant: "search_v1", weight: 1 }, { variant: "search_v2", weight: 1 }] };
  const users = (n: number, prefix = "user-") => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

  it("is the published function: seed = the key, n = hash v2, arm = the range holding n", () => {
    for (const userId of users(1000)) {
      const a = assign(experiment, userId);
      const n = hash("ranker-v2", userId, 2)!;
      expect(a.hash).toBe(n);
      expect(a).toMatchObject({ index: n < 0.5 ? 0 : 1, variant: n < 0.5 ? "search_v1" : "search_v2", inExperiment: true });
    }
  });

  it("is deterministic and depends on the key", () => {
    const first = users(2000).map((u) => assign(experiment, u).variant);
    expect(users(2000).map((u) => assign(experiment, u).variant)).toEqual(first);
    const other = users(2000).map((u) => assign({ ...experiment, key: "other" }, u).variant);
    const agree = other.filter((v, i) => v === first[i]).length / first.length;
    expect(agree).toBeGreaterThan(0.45);
    expect(agree).toBeLessThan(0.55);
  });

  it.each([
    ["50/50", [1, 1], 1],
    ["1:2:1 (weights on any scale)", [10, 20, 10], 1],
    ["90/10 at 30% coverage", [9, 1], 0.3],
  ])("splits 100,000 users %s within the SRM test's tolerance", (_name, weights, coverage) => {
    const e = { key: `split-${weights.join("-")}`, coverage, arms: weights.map((weight, i) => ({ variant: `arm${i}`, weight })) };
    const counts = new Array<number>(weights.length).fill(0);
    let outside = 0;
    for (const userId of users(100_000, "u")) {
      const a = assign(e, userId);
      if (a.index < 0) outside++;
      else counts[a.index]!++;
    }
    const srm = sampleRatioTest(counts, weights)!;
    expect(srm.pValue).toBeGreaterThan(SRM_ALPHA);
    // Coverage: the share of users in the experiment, within 4.5 standard errors of a binomial.
    const inside = 100_000 - outside;
    const sd = Math.sqrt(100_000 * coverage * (1 - coverage));
    expect(Math.abs(inside - 100_000 * coverage)).toBeLessThanOrEqual(4.5 * sd + 1e-9);
    // And the test has teeth: the same counts against another split are a mismatch.
    expect(sampleRatioTest(counts, weights.map((w, i) => (i === 0 ? w * 1.1 : w)))!.pValue).toBeLessThan(SRM_ALPHA);
  });

  it("keeps users in their arm when coverage grows (ranges grow at their ends)", () => {
    const narrow = { ...experiment, coverage: 0.2 };
    const wide = { ...experiment, coverage: 0.8 };
    let moved = 0;
    let inNarrow = 0;
    for (const u of users(20_000)) {
      const a = assign(narrow, u);
      if (!a.inExperiment) continue;
      inNarrow++;
      if (assign(wide, u).variant !== a.variant) moved++;
    }
    expect(inNarrow).toBeGreaterThan(3000);
    expect(moved).toBe(0);
  });

  it("assigns nobody while the experiment is not RUNNING (when it says its status)", () => {
    const running = assign({ ...experiment, status: ExperimentStatus.RUNNING }, "user-1");
    expect(running).toEqual(assign(experiment, "user-1"));
    expect(running.inExperiment).toBe(true);
    for (const status of [ExperimentStatus.DRAFT, ExperimentStatus.STOPPED, ExperimentStatus.CONCLUDED]) {
      expect(assign({ ...experiment, status }, "user-1")).toEqual({ variant: undefined, index: -1, inExperiment: false, hash: running.hash });
    }
  });

  it("refuses experiments it cannot assign from", () => {
    expect(() => assign({ key: "", arms: experiment.arms }, "u")).toThrow(/no key/);
    expect(() => assign(experiment, "")).toThrow(/userId/);
    expect(() => assign({ key: "k", arms: [] }, "u")).toThrow(/weight/);
    expect(() => assign({ key: "k", arms: [{ variant: "a", weight: 0 }, { variant: "b", weight: 1 }] }, "u")).toThrow(/weight > 0/);
  });
});
