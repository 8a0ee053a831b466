import { describe, expect, it } from "vitest";
import { compareVariants } from "../../src/core/comparison.js";
import { comparisonSettings, METRICS, type VariantData } from "../../src/core/comparison-model.js";
import { ratioInterval } from "../../src/core/arm-estimates.js";
import { deltaMethodRatio, ratioSums, varianceFloor } from "../../src/core/delta-method.js";
import { holmAdjust } from "../../src/core/inference.js";
import { latencyGuardrail, quantileRankInterval } from "../../src/core/latency-guardrail.js";
import { latencyBucket, latencyValueAt } from "../../src/core/sketches.js";
import { zCritical } from "../../src/core/special-functions.js";
import { USER_BUCKETS, emptyBucketSums } from "../../src/core/user-buckets.js";
import { Random } from "../support/ab-simulation.js";

const settings = (over: Partial<Parameters<typeof comparisonSettings>[0]> = {}) => comparisonSettings({ control: "", expectedSplit: {}, minImpressions: 0, ...over });

/** Latencies as a sketch histogram with exact bounds. */
function latencies(values: number[]): VariantData["latency"] {
  const histogram = new Map<number, number>();
  for (const v of values) histogram.set(latencyBucket(v), (histogram.get(latencyBucket(v)) ?? 0) + 1);
  return { histogram, bounds: { min: Math.min(...values), max: Math.max(...values) } };
}

/**
 * A variant whose searches are spread evenly over the 256 buckets, each search one user's, with
 * exactly `searchesWithClicks` of them clicked and the no-result ones chosen at random (seeded by
 * the arguments): so the delta-method variance is about the i.i.d. one. `users` users and
 * latencies 1..100 ms times `latencyFactor`.
 */
function variant(impressions: number, searchesWithClicks: number, o: { clicks?: number; noResults?: number; users?: number; latencyFactor?: number; latency?: boolean; pre?: boolean; seed?: number } = {}): VariantData {
  const buckets = emptyBucketSums();
  for (let b = 0; b < USER_BUCKETS; b++) buckets.impressions[b] = Math.floor(impressions / USER_BUCKETS) + (b < impressions % USER_BUCKETS ? 1 : 0);
  const clicks = o.clicks ?? searchesWithClicks;
  const noResults = o.noResults ?? Math.round(impressions / 20);
  const pickRng = new Random((impressions * 7919 + searchesWithClicks * 104729 + clicks * 31 + noResults * 17 + (o.seed ?? 0)) >>> 0);
  /** `count` distinct searches at random (partial Fisher-Yates), as their buckets: search i is in bucket i mod 256. */
  const choose = (count: number): number[] => {
    const order = Uint32Array.from({ length: impressions }, (_, i) => i);
    const out: number[] = [];
    for (let k = 0; k < Math.min(count, impressions); k++) {
      const j = k + Math.floor(pickRng.uniform() * (impressions - k));
      [order[k], order[j]] = [order[j]!, order[k]!];
      out.push(order[k]! % USER_BUCKETS);
    }
    return out;
  };
  const clicked = choose(searchesWithClicks);
  for (const b of clicked) buckets.searchesWithClicks[b]! += 1;
  // one click per clicked search, the rest (if any) on clicked searches at random
  clicked.forEach((b, k) => (buckets.clicks[b]! += Math.floor(clicks / clicked.length) + (k < clicks % Math.max(clicked.length, 1) ? 1 : 0)));
  for (const b of choose(noResults)) buckets.noResults[b]! += 1;
  const latencyValues = Array.from({ length: Math.max(impressions, 1) }, (_, i) => (1 + (i % 100)) * (o.latencyFactor ?? 1));
  let pre: VariantData["pre"];
  if (o.pre) {
    // a pre-period that predicts the post-period bucket by bucket
    const rng = new Random(o.seed ?? 1);
    pre = emptyBucketSums();
    // buckets differ in activity and click propensity (as users do), and keep both in the pre-period
    for (let b = 0; b < USER_BUCKETS; b++) {
      const activity = 0.2 + 1.6 * rng.uniform();
      const propensity = 0.4 + 1.2 * rng.uniform();
      buckets.impressions[b] = Math.round(buckets.impressions[b]! * activity);
      buckets.searchesWithClicks[b] = Math.round(buckets.searchesWithClicks[b]! * activity * propensity);
      pre.impressions[b] = buckets.impressions[b]!;
      pre.searchesWithClicks[b] = Math.round(buckets.searchesWithClicks[b]! * (0.95 + 0.1 * rng.uniform()));
      pre.clicks[b] = pre.searchesWithClicks[b]!;
      pre.noResults[b] = Math.round(pre.impressions[b]! / 20);
    }
  }
  const sum = (a: Float64Array) => a.reduce((x, y) => x + y, 0);
  return {
    impressions: sum(buckets.impressions),
    clicks: sum(buckets.clicks),
    searchesWithClicks: sum(buckets.searchesWithClicks),
    noResults: sum(buckets.noResults),
    users: o.users ?? Math.ceil(impressions / 5),
    buckets,
    pre,
    latency: o.latency === false ? undefined : latencies(latencyValues),
  };
}

describe("compareVariants", () => {
  it("recommends a variant with a significant search-CTR lift and an ok guardrail", () => {
    const r = compareVariants(new Map([["search_v1", variant(20000, 4000)], ["search_v2", variant(20000, 5000)]]), settings());
    expect([r.recommendation, r.reason, r.mode]).toEqual(["search_v2", "significant lift", "fixed horizon"]);
    const c = r.comparisons[0]!;
    expect(c.variant).toBe("search_v2");
    expect(c.searchCtr!.lift.value).toBeCloseTo(0.05, 12);
    expect(c.searchCtr!.relativeLift!.value).toBeCloseTo(0.25, 12);
    expect(c.searchCtr!.significant).toBe(true);
    expect(c.latency.status).toBe("ok");
    expect(c.cuped).toBe("not requested");
    expect(r.srmDetected).toBe(false);
    const interval = r.searchCtrIntervals.get("search_v1")!;
    expect((interval.low + interval.high) / 2).toBeCloseTo(0.2, 10);
  });

  it("says 'not significant' when the difference may be noise", () => {
    const r = compareVariants(new Map([["search_v1", variant(1000, 200)], ["search_v2", variant(1000, 210)]]), settings());
    expect([r.recommendation, r.reason]).toEqual(["", "not significant"]);
    expect(r.comparisons[0]!.searchCtr!.significant).toBe(false);
  });

  it("significant holds exactly when the interval and the relative interval exclude 0", () => {
    const rng = new Random(7);
    for (let i = 0; i < 200; i++) {
      const n = 500 + Math.floor(rng.uniform() * 5000);
      const s1 = Math.floor(n * (0.1 + 0.2 * rng.uniform()));
      const s2 = Math.floor(n * (0.1 + 0.2 * rng.uniform()));
      for (const sequential of [false, true]) {
        const r = compareVariants(new Map([["search_v1", variant(n, s1, { clicks: 2 * s1 })], ["search_v2", variant(n, s2, { clicks: 2 * s2 })]]), settings({ sequential }));
        for (const metric of METRICS) {
          const m = r.comparisons[0]![metric]!;
          expect(m.lift.low > 0 || m.lift.high < 0).toBe(m.significant);
          if (m.relativeLift) expect(m.relativeLift.low > 0 || m.relativeLift.high < 0).toBe(m.significant);
          expect(m.pValue < 0.05).toBe(m.significant);
        }
      }
    }
  });

  it("never gives a zero-width interval, even at zero successes", () => {
    const r = compareVariants(new Map([["search_v1", variant(1000, 0)], ["search_v2", variant(1000, 0)]]), settings());
    const m = r.comparisons[0]!.searchCtr!;
    expect(m.lift.high - m.lift.low).toBeGreaterThan(0);
    expect(m.significant).toBe(false);
    const i = r.searchCtrIntervals.get("search_v1")!;
    expect(i.high).toBeGreaterThan(i.low);
  });

  it("scales interval widths by the z ratio at a non-default confidence", () => {
    const data = new Map([["search_v1", variant(20000, 4000)], ["search_v2", variant(20000, 4300)]]);
    const at95 = compareVariants(data, settings()).comparisons[0]!;
    const at99 = compareVariants(data, settings({ confidence: 0.99 })).comparisons[0]!;
    for (const metric of METRICS) {
      const w95 = at95[metric]!.lift.high - at95[metric]!.lift.low;
      const w99 = at99[metric]!.lift.high - at99[metric]!.lift.low;
      expect(w99 / w95).toBeCloseTo(zCritical(0.99) / zCritical(0.95), 12);
    }
  });

  it("uses Holm-adjusted p-values for decisions with several treatments", () => {
    const data = new Map([
      ["search_v1", variant(10000, 2000)],
      ["search_v2", variant(10000, 2120)],
      ["search_v3", variant(10000, 2060)],
      ["search_v4", variant(10000, 2010)],
    ]);
    const r = compareVariants(data, settings());
    const raw = r.comparisons.map((c) => c.searchCtr!.pValue);
    const adjusted = holmAdjust(raw);
    r.comparisons.forEach((c, i) => {
      expect(c.searchCtr!.adjustedPValue).toBeCloseTo(adjusted[i]!, 15);
      expect(c.searchCtr!.significantAdjusted).toBe(adjusted[i]! < 0.05);
    });
    // search_v2 alone is significant raw (p ~ 0.04) but not after adjustment over three treatments
    const v2 = r.comparisons.find((c) => c.variant === "search_v2")!.searchCtr!;
    expect(v2.pValue).toBeLessThan(0.05);
    expect(v2.adjustedPValue).toBeGreaterThan(0.05);
    expect([r.recommendation, r.reason]).toEqual(["", "not significant"]);
  });

  it("says 'latency regression' only when the data show the variant slower by more than the threshold", () => {
    const slow = compareVariants(new Map([["search_v1", variant(20000, 4000)], ["search_v2", variant(20000, 5000, { latencyFactor: 1.5 })]]), settings());
    expect([slow.recommendation, slow.reason]).toEqual(["", "latency regression"]);
    expect(slow.comparisons[0]!.latency.status).toBe("regression");
    expect(slow.comparisons[0]!.latency.relativeDiff!.value).toBeCloseTo(0.5, 1);
    expect(slow.comparisons[0]!.latency.relativeDiff!.low).toBeGreaterThan(0.1);
    // 5% slower is within the 10% threshold; 15% slower at a 20% threshold is too
    expect(compareVariants(new Map([["search_v1", variant(20000, 4000)], ["search_v2", variant(20000, 5000, { latencyFactor: 1.05 })]]), settings()).recommendation).toBe("search_v2");
    expect(compareVariants(new Map([["search_v1", variant(20000, 4000)], ["search_v2", variant(20000, 5000, { latencyFactor: 1.15 })]]), settings({ latencyThreshold: 0.2 })).recommendation).toBe("search_v2");
  });

  it("never recommends without latencies: a missing p95 is 'latency insufficient data'", () => {
    for (const [control, treatment] of [
      [variant(20000, 4000), variant(20000, 5000, { latency: false })],
      [variant(20000, 4000, { latency: false }), variant(20000, 5000)],
    ] as const) {
      const r = compareVariants(new Map([["search_v1", control], ["search_v2", treatment]]), settings());
      expect([r.recommendation, r.reason]).toEqual(["", "latency insufficient data"]);
      expect(r.comparisons[0]!.latency.status).toBe("insufficient data");
    }
    // a point p95 alone is not enough either
    const pointOnly = { ...variant(20000, 5000, { latency: false }), p95ResponseTimeMs: 50 };
    expect(compareVariants(new Map([["search_v1", variant(20000, 4000)], ["search_v2", pointOnly]]), settings()).reason).toBe("latency insufficient data");
  });

  it("detects a 58/42 user split and a dead expected arm", () => {
    const split = compareVariants(new Map([["search_v1", variant(20000, 4000, { users: 5800 })], ["search_v2", variant(20000, 5000, { users: 4200 })]]), settings());
    expect(split.srmDetected).toBe(true);
    expect(split.srmPValue!).toBeLessThan(1e-50);
    expect([split.recommendation, split.reason]).toEqual(["", "srm"]);
    const fair = compareVariants(new Map([["search_v1", variant(20000, 4000, { users: 5030 })], ["search_v2", variant(20000, 5000, { users: 4970 })]]), settings());
    expect(fair.srmDetected).toBe(false);

    const dead = compareVariants(
      new Map([["search_v1", variant(20000, 4000, { users: 5000 })], ["search_v2", variant(20000, 5000, { users: 5000 })]]),
      settings({ expectedSplit: { search_v1: 1, search_v2: 1, search_v3: 1 } }),
    );
    expect(dead.sampleRatio.users.get("search_v3")).toBe(0);
    expect(dead.srmDetected).toBe(true);
    expect(dead.reason).toBe("srm");
  });

  it("is never trustworthy when no sample-ratio test can be computed", () => {
    // Arms with searches but no users counted (nothing to test the split on): no SRM p-value, so
    // not trustworthy and nothing recommended, however large the lift.
    const r = compareVariants(new Map([["search_v1", variant(20000, 4000, { users: 0 })], ["search_v2", variant(20000, 8000, { users: 0 })]]), settings());
    expect(r.srmPValue).toBeUndefined();
    expect([r.srmDetected, r.trustworthy, r.recommendation]).toEqual([false, false, ""]);
    const ok = compareVariants(new Map([["search_v1", variant(20000, 4000)], ["search_v2", variant(20000, 8000)]]), settings());
    expect([ok.trustworthy, ok.recommendation]).toEqual([true, "search_v2"]);
  });

  it("tests users against the expected split like scipy.stats.chisquare", () => {
    // scipy.stats.chisquare docstring: chisquare([16, 18, 16, 14, 12, 12]) -> pvalue 0.84914503608460956,
    // and with f_exp=[16, 16, 16, 16, 16, 8] -> pvalue 0.62338762774958223
    const users = [16, 18, 16, 14, 12, 12];
    const data = new Map(users.map((u, i) => [`v${i}`, variant(200, 40, { users: u })]));
    expect(compareVariants(data, settings({ control: "v0" })).srmPValue).toBeCloseTo(0.84914503608460956, 13);
    const weights = Object.fromEntries([16, 16, 16, 16, 16, 8].map((w, i) => [`v${i}`, w]));
    expect(compareVariants(data, settings({ control: "v0", expectedSplit: weights })).srmPValue).toBeCloseTo(0.62338762774958223, 13);
  });

  it("reports users seen in several arms and their share", () => {
    const r = compareVariants(new Map([["search_v1", variant(2000, 400, { users: 510 })], ["search_v2", variant(2000, 400, { users: 500 })]]), settings(), 10);
    expect(r.sampleRatio.usersInSeveralArms).toBe(10);
    expect(r.sampleRatio.usersInSeveralArmsShare).toBeCloseTo(10 / 1000, 15);
    expect(compareVariants(new Map([["search_v1", variant(2000, 400)], ["search_v2", variant(2000, 400)]]), settings()).sampleRatio.usersInSeveralArms).toBeUndefined();
  });

  it("needs enough impressions in every compared variant, and a control", () => {
    expect(compareVariants(new Map([["search_v1", variant(99, 10)], ["search_v2", variant(50000, 40000)]]), settings({ minImpressions: 100 })).reason).toBe("insufficient data");
    expect(compareVariants(new Map([["search_v2", variant(5000, 4000)], ["search_v3", variant(5000, 100)]]), settings()).reason).toBe("insufficient data");
    const small = compareVariants(new Map([["search_v1", variant(20000, 4000)], ["search_v2", variant(99, 90, { users: 4000 })], ["search_v3", variant(20000, 5000)]]), settings({ minImpressions: 100 }));
    expect(small.comparisons.find((c) => c.variant === "search_v2")!.enoughData).toBe(false);
    expect([small.recommendation, small.reason]).toEqual(["search_v3", "significant lift"]);
  });

  it("recommends keeping the control when every other variant is significantly worse", () => {
    const r = compareVariants(new Map([["base", variant(20000, 6000)], ["search_v2", variant(20000, 4000)]]), settings({ control: "base" }));
    expect([r.recommendation, r.reason]).toEqual(["base", "control is better"]);
  });

  it("sequential mode: wider intervals and always-valid p-values", () => {
    const data = new Map([["search_v1", variant(20000, 4000)], ["search_v2", variant(20000, 4200)]]);
    const fixed = compareVariants(data, settings()).comparisons[0]!.searchCtr!;
    const seq = compareVariants(data, settings({ sequential: true }));
    expect(seq.mode).toBe("sequential");
    const s = seq.comparisons[0]!.searchCtr!;
    expect(s.lift.high - s.lift.low).toBeGreaterThan(fixed.lift.high - fixed.lift.low);
    expect(s.pValue).toBeGreaterThan(fixed.pValue);
    expect(s.mde).toBeGreaterThan(fixed.mde);
  });

  it("applies CUPED only when both arms have pre-period data, and reports the variance reduction", () => {
    const withPre = new Map([["search_v1", variant(20000, 4000, { pre: true, seed: 1 })], ["search_v2", variant(20000, 4200, { pre: true, seed: 2 })]]);
    const on = compareVariants(withPre, settings({ cuped: true })).comparisons[0]!;
    expect(on.cuped).toBe("applied");
    expect(on.searchCtr!.cupedVarianceReduction!).toBeGreaterThan(0.3);
    const off = compareVariants(withPre, settings()).comparisons[0]!;
    expect(off.cuped).toBe("not requested");
    expect(off.searchCtr!.cupedVarianceReduction).toBeUndefined();
    const oneSided = new Map([["search_v1", variant(20000, 4000, { pre: true })], ["search_v2", variant(20000, 4200)]]);
    expect(compareVariants(oneSided, settings({ cuped: true })).comparisons[0]!.cuped).toBe("no pre-period data");
  });

  it("validates its settings", () => {
    for (const confidence of [1, 0, 1e-9, 0.49, 0.99991, Number.NaN]) expect(() => settings({ confidence })).toThrow(/^confidence: must be between 0.5 and 0.9999 \(inclusive\)/);
    expect(settings({ confidence: 0.5 }).confidence).toBe(0.5);
    expect(settings({ confidence: 0.9999 }).confidence).toBe(0.9999);
    expect(() => settings({ latencyThreshold: -0.1 })).toThrow(/latency_threshold/);
    for (const w of [0, -1, 1e-300, 1e300, 9.9e-7, 1.01e6, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => settings({ expectedSplit: { a: w } })).toThrow(/^expected_split\[a\]: must be a finite weight between 0.000001 and 1000000/);
    }
    expect(settings({ expectedSplit: { a: 1e-6, b: 1e6 } }).expectedSplit.get("b")).toBe(1e6);
    expect(settings()).toMatchObject({ sequential: false, cuped: false, confidence: 0.95 });
    expect(() => compareVariants(new Map([["search_v1", variant(10, 1)], ["x", variant(10, 1)]]), settings({ expectedSplit: { search_v1: 1 } }))).toThrow(
      /expected_split: must give a weight for every variant with impressions \(missing: x\)/,
    );
  });
});

describe("latency guardrail", () => {
  it("uses binomial order-statistic ranks", () => {
    // scipy.stats.binom: largest l with cdf(l-1) <= 0.025 and smallest u with sf(u-1) <= 0.025, p = 0.95
    expect(quantileRankInterval(100, 0.95, 0.95)).toEqual({ low: 90, high: 100 });
    expect(quantileRankInterval(500, 0.95, 0.95)).toEqual({ low: 465, high: 485 });
    expect(quantileRankInterval(1500, 0.95, 0.95)).toEqual({ low: 1408, high: 1442 });
    // normal approximation with continuity correction above 2000
    expect(quantileRankInterval(3000, 0.95, 0.95)).toEqual({ low: 2827, high: 2874 });
    // too few items for an upper rank
    expect(quantileRankInterval(50, 0.95, 0.95)).toBeUndefined();
  });

  it("reads order statistics from the sketch", () => {
    const l = latencies([5, 1, 3, 2, 4])!;
    expect(latencyValueAt(l.histogram, l.bounds, 0)).toBe(1);
    expect(latencyValueAt(l.histogram, l.bounds, 4)).toBe(5);
    expect(latencyValueAt(l.histogram, l.bounds, 2)! / 3).toBeCloseTo(1, 1);
    expect(latencyValueAt(l.histogram, l.bounds, 5)).toBeUndefined();
  });

  it("flags a control at 0 ms against a slow variant, and says 'insufficient data' with few latencies", () => {
    const zero = latencies(new Array<number>(200).fill(0));
    const slow = latencies(Array.from({ length: 200 }, (_, i) => 800 + i));
    expect(latencyGuardrail(slow, zero, 0.95, 0.1).status).toBe("regression");
    expect(latencyGuardrail(latencies([1, 2, 3]), slow, 0.95, 0.1).status).toBe("insufficient data");
    expect(latencyGuardrail(undefined, slow, 0.95, 0.1).status).toBe("insufficient data");
  });
});

describe("decisions follow the requested confidence (issue 27)", () => {
  // scipy.stats.norm.ppf(0.95), ppf(0.975), ppf(0.995), ppf(0.8)
  const Z = { 0.9: 1.6448536269514722, 0.95: 1.959963984540054, 0.99: 2.5758293035489004 } as const;
  const Z80 = 0.8416212335729143;
  /** Control and two treatments: t1 with `clicked` searches with a click of 20,000, t2 equal to the control. */
  const three = (clicked: number) =>
    new Map([
      ["search_v1", variant(20000, 4000)],
      ["t1", variant(20000, clicked)],
      ["t2", variant(20000, 4000)],
    ]);
  /**
   * GrowthBook's sequential_interval_halfwidth (packages/stats/gbstats/frequentist/tests.py at
   * commit 8f1db4456915a8e7b7faf23d5632ca7219d2f469, eq. 9 of arXiv:2103.06476v7) with its
   * sequential_rho (eq. 161), written out here independently of inference.ts: s2 = V n is the
   * per-unit variance, n the units, tuning 5000.
   */
  const growthbookHalfWidth = (variance: number, n: number, alpha: number, tuning = 5000) => {
    const rho = Math.sqrt((-2 * Math.log(alpha) + Math.log(-2 * Math.log(alpha) + 1)) / tuning);
    const s2 = variance * n;
    return Math.sqrt(s2) * Math.sqrt((2 * (n * rho ** 2 + 1) * Math.log(Math.sqrt(n * rho ** 2 + 1) / alpha)) / (n * rho) ** 2);
  };

  it("Holm-adjusted decisions and the recommendation: adjusted p between 0.05 and 0.10, and between 0.01 and 0.05", () => {
    // t1: raw p ~0.035, Holm over 2 treatments ~0.070: significant after adjustment at 90% only.
    const at = (confidence: number, clicked: number) => compareVariants(three(clicked), settings({ confidence }));
    const r90 = at(0.9, 4170);
    const t90 = r90.comparisons.find((c) => c.variant === "t1")!.searchCtr!;
    expect(t90.adjustedPValue).toBeGreaterThan(0.05);
    expect(t90.adjustedPValue).toBeLessThan(0.1);
    expect(t90.adjustedPValue).toBeCloseTo(2 * t90.pValue, 14);
    expect([t90.significant, t90.significantAdjusted]).toEqual([true, true]);
    expect([r90.recommendation, r90.reason]).toEqual(["t1", "significant lift"]);
    const r95 = at(0.95, 4170);
    const t95 = r95.comparisons.find((c) => c.variant === "t1")!.searchCtr!;
    expect(t95.adjustedPValue).toBeCloseTo(t90.adjustedPValue, 14);
    expect([t95.significant, t95.significantAdjusted]).toEqual([true, false]);
    expect([r95.recommendation, r95.reason]).toEqual(["", "not significant"]);

    // t1: adjusted p ~0.026: significant after adjustment at 95%, not at 99%.
    const s95 = at(0.95, 4210);
    const u95 = s95.comparisons.find((c) => c.variant === "t1")!.searchCtr!;
    expect(u95.adjustedPValue).toBeGreaterThan(0.01);
    expect(u95.adjustedPValue).toBeLessThan(0.05);
    expect(u95.significantAdjusted).toBe(true);
    expect(s95.recommendation).toBe("t1");
    const s99 = at(0.99, 4210);
    const u99 = s99.comparisons.find((c) => c.variant === "t1")!.searchCtr!;
    expect([u99.significant, u99.significantAdjusted]).toEqual([false, false]);
    expect([s99.recommendation, s99.reason]).toEqual(["", "not significant"]);
  });

  it("fixed-horizon intervals and the MDE: z_{1-alpha/2} at 90%, 95% and 99%", () => {
    for (const confidence of [0.9, 0.95, 0.99] as const) {
      const c = compareVariants(three(4170), settings({ confidence })).comparisons.find((x) => x.variant === "t1")!.searchCtr!;
      const se = (c.lift.high - c.lift.low) / (2 * Z[confidence]);
      const seAt95 = (() => {
        const r = compareVariants(three(4170), settings({ confidence: 0.95 })).comparisons.find((x) => x.variant === "t1")!.searchCtr!;
        return (r.lift.high - r.lift.low) / (2 * Z[0.95]);
      })();
      expect(se).toBeCloseTo(seAt95, 14);
      expect(c.mde).toBeCloseTo((Z[confidence] + Z80) * se, 12);
    }
  });

  /** An arm whose buckets differ in activity and click propensity (as users do), so the delta-method variance is well above the floor. */
  const noisy = (seed: number, p: number): VariantData => {
    const rng = new Random(seed);
    const buckets = emptyBucketSums();
    for (let b = 0; b < USER_BUCKETS; b++) {
      const n = 20 + Math.floor(140 * rng.uniform());
      buckets.impressions[b] = n;
      buckets.searchesWithClicks[b] = Math.round(n * p * (0.3 + 1.4 * rng.uniform()));
      buckets.clicks[b] = buckets.searchesWithClicks[b]!;
    }
    const sum = (a: Float64Array) => a.reduce((x, y) => x + y, 0);
    return { impressions: sum(buckets.impressions), clicks: sum(buckets.clicks), searchesWithClicks: sum(buckets.searchesWithClicks), noResults: 0, users: 4000 + seed, buckets };
  };

  it("sequential intervals: per-variant and per-comparison half-widths equal GrowthBook's at 90%, 95% and 99%", () => {
    const data = new Map([["search_v1", noisy(1, 0.2)], ["t1", noisy(2, 0.21)]]);
    const control = data.get("search_v1")!;
    const t1 = data.get("t1")!;
    const v = (d: VariantData) => deltaMethodRatio(ratioSums(d.buckets.searchesWithClicks, d.buckets.impressions))!.variance;
    const widths: number[] = [];
    for (const confidence of [0.9, 0.95, 0.99]) {
      const s = settings({ confidence, sequential: true });
      // the floor does not bind on these arms: the delta-method variance is what is used
      expect(v(control)).toBeGreaterThan(varianceFloor("proportion", control.searchesWithClicks, control.impressions));
      const own = ratioInterval(control, "searchCtr", s)!;
      const half = growthbookHalfWidth(v(control), control.users, 1 - confidence);
      expect((own.high - own.low) / 2).toBeCloseTo(half, 12);
      const r = compareVariants(data, s);
      expect(r.searchCtrIntervals.get("search_v1")!.high - r.searchCtrIntervals.get("search_v1")!.low).toBeCloseTo(2 * half, 12);
      const lift = r.comparisons.find((x) => x.variant === "t1")!.searchCtr!.lift;
      const liftHalf = growthbookHalfWidth(v(control) + v(t1), control.users + t1.users, 1 - confidence);
      expect((lift.high - lift.low) / 2).toBeCloseTo(liftHalf, 12);
      widths.push(liftHalf);
    }
    expect(widths[0]!).toBeLessThan(widths[1]!);
    expect(widths[1]!).toBeLessThan(widths[2]!);
  });
});
