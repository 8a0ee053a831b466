import { describe, expect, it } from "vitest";
import { chiSquareSurvival, normalCdf, normalQuantile, zCritical } from "../../src/core/special-functions.js";
import { poissonRateTest, proportionDifference, proportionRelativeLift, rateDifference, rateRelativeLift, sampleRatioTest, twoProportionZTest, wilsonInterval } from "../../src/core/statistics.js";

// Unless stated otherwise, expected values were computed once with SciPy 1.17.1 in Python 3
// (never at test time) and hard-coded here; the snippet that produced each is in its comment.

/** Relative closeness, for values far from 1 in magnitude (tail probabilities). */
function expectRelativelyClose(actual: number | undefined, expected: number, digits: number): void {
  expect(actual).toBeDefined();
  expect(actual! / expected).toBeCloseTo(1, digits);
}

describe("normalQuantile", () => {
  it("matches textbook quantiles", () => {
    // scipy.stats.norm.ppf(0.975)
    expect(normalQuantile(0.975)).toBeCloseTo(1.959963984540054, 14);
    // scipy.stats.norm.ppf(0.025), the mirror image
    expect(normalQuantile(0.025)).toBeCloseTo(-1.9599639845400545, 14);
    // scipy.stats.norm.ppf(0.5)
    expect(normalQuantile(0.5)).toBe(0);
    // scipy.stats.norm.ppf(0.3): central region, below the median
    expect(normalQuantile(0.3)).toBeCloseTo(-0.5244005127080409, 14);
    // scipy.stats.norm.ppf(0.999)
    expect(normalQuantile(0.999)).toBeCloseTo(3.090232306167813, 13);
  });

  it("is accurate far into the tails (all three AS 241 regions)", () => {
    // scipy.stats.norm.ppf(1e-10): tail region r <= 5
    expect(normalQuantile(1e-10)).toBeCloseTo(-6.361340902404056, 12);
    // scipy.stats.norm.ppf(1e-300): far-tail region r > 5
    expect(normalQuantile(1e-300)).toBeCloseTo(-37.0470962993612, 11);
  });

  it("inverts normalCdf", () => {
    for (const p of [1e-8, 0.01, 0.2, 0.5, 0.77, 0.95, 0.9999]) {
      expect(normalCdf(normalQuantile(p)) / p).toBeCloseTo(1, 12);
    }
  });

  it("rejects p outside (0, 1)", () => {
    for (const p of [0, 1, -0.1, 1.5, Number.NaN]) expect(() => normalQuantile(p)).toThrow(RangeError);
  });
});

describe("normalCdf", () => {
  it("matches textbook values", () => {
    // Phi(0) = 1/2 by symmetry
    expect(normalCdf(0)).toBe(0.5);
    // scipy.stats.norm.cdf(1.96)
    expect(normalCdf(1.96)).toBeCloseTo(0.9750021048517795, 14);
    // scipy.stats.norm.cdf(0.3): Cody's first region (|z| / sqrt 2 <= 0.46875)
    expect(normalCdf(0.3)).toBeCloseTo(0.6179114221889526, 14);
    // scipy.stats.norm.cdf(5): close to 1
    expect(normalCdf(5)).toBeCloseTo(0.9999997133484281, 14);
  });

  it("keeps relative accuracy in the lower tail", () => {
    // scipy.stats.norm.cdf(-3) = 0.0013498980316300933
    expectRelativelyClose(normalCdf(-3), 0.0013498980316300933, 12);
    // scipy.stats.norm.cdf(-10) = 7.61985302416047e-24 (Cody's asymptotic region)
    expectRelativelyClose(normalCdf(-10), 7.61985302416047e-24, 12);
  });

  it("is symmetric: Phi(-z) = 1 - Phi(z)", () => {
    for (const z of [0.1, 0.7, 1.5, 2.8, 4.5]) expect(normalCdf(-z) + normalCdf(z)).toBeCloseTo(1, 15);
  });

  it("has the right limits and rejects NaN", () => {
    expect(normalCdf(-Infinity)).toBe(0);
    expect(normalCdf(Infinity)).toBe(1);
    expect(normalCdf(-40)).toBe(0);
    expect(() => normalCdf(Number.NaN)).toThrow(RangeError);
  });
});

describe("zCritical", () => {
  it("gives the familiar two-sided critical values", () => {
    // scipy.stats.norm.ppf(1 - (1 - c) / 2) for c = 0.90, 0.95, 0.99
    expect(zCritical(0.9)).toBeCloseTo(1.6448536269514722, 14);
    expect(zCritical(0.95)).toBeCloseTo(1.959963984540054, 14);
    expect(zCritical(0.99)).toBeCloseTo(2.5758293035489004, 14);
  });

  it("stays finite for a confidence within one ulp of 1", () => {
    // scipy.stats.norm.isf((1 - 0.9999999999999999) / 2) = 8.292361075813597
    // (1 - (1 - c) / 2 itself rounds to exactly 1.0 in doubles.)
    expect(zCritical(0.9999999999999999)).toBeCloseTo(8.292361075813597, 10);
  });

  it("rejects confidences outside (0, 1)", () => {
    for (const c of [0, 1, -0.5, 95, Number.NaN, Infinity]) expect(() => zCritical(c)).toThrow(RangeError);
  });
});

describe("chiSquareSurvival", () => {
  it("df = 1: the 5% critical value and the link to the normal", () => {
    // scipy.stats.chi2.sf(3.841458820694124, 1) = 0.05 (3.8415 = 1.95996^2)
    expect(chiSquareSurvival(3.841458820694124, 1)).toBeCloseTo(0.05, 14);
    // scipy.stats.chi2.sf(0.02, 1): series branch (x/2 < a + 1)
    expect(chiSquareSurvival(0.02, 1)).toBeCloseTo(0.887537083981715, 13);
    // P(chi2_1 >= z^2) = 2 Phi(-|z|)
    for (const z of [0.5, 1.96, 3.3]) expect(chiSquareSurvival(z * z, 1)).toBeCloseTo(2 * normalCdf(-z), 13);
  });

  it("df = 2 is the exponential distribution: Q = exp(-x / 2)", () => {
    // scipy.stats.chi2.sf(10, 2) = exp(-5) = 0.006737946999085467
    expect(chiSquareSurvival(10, 2)).toBeCloseTo(Math.exp(-5), 15);
    expect(chiSquareSurvival(1, 2)).toBeCloseTo(Math.exp(-0.5), 14);
    // scipy.stats.chi2.sf(200, 2) = 3.7200759760208177e-44
    expectRelativelyClose(chiSquareSurvival(200, 2), 3.7200759760208177e-44, 11);
  });

  it("df = 5, including the far upper tail", () => {
    // scipy.stats.chi2.sf(11.070497693516351, 5) = 0.05 (the textbook 5% critical value 11.07)
    expect(chiSquareSurvival(11.070497693516351, 5)).toBeCloseTo(0.05, 13);
    // scipy.stats.chi2.sf(1, 5)
    expect(chiSquareSurvival(1, 5)).toBeCloseTo(0.9625657732472964, 13);
    // scipy.stats.chi2.sf(0.3, 5)
    expect(chiSquareSurvival(0.3, 5)).toBeCloseTo(0.9976430862605289, 13);
    // scipy.stats.chi2.sf(100, 5) = 5.285148360943219e-20
    expectRelativelyClose(chiSquareSurvival(100, 5), 5.285148360943219e-20, 11);
  });

  it("handles large x and fractional df", () => {
    // scipy.stats.chi2.sf(50, 1) = 1.537459794428033e-12
    expectRelativelyClose(chiSquareSurvival(50, 1), 1.537459794428033e-12, 11);
    // scipy.stats.chi2.sf(4, 0.5)
    expect(chiSquareSurvival(4, 0.5)).toBeCloseTo(0.017286011859516785, 13);
    expect(chiSquareSurvival(1e6, 3)).toBe(0);
    expect(chiSquareSurvival(Infinity, 3)).toBe(0);
  });

  it("is 1 at and below zero", () => {
    expect(chiSquareSurvival(0, 3)).toBe(1);
    expect(chiSquareSurvival(-2, 3)).toBe(1);
  });

  it("rejects bad arguments", () => {
    expect(() => chiSquareSurvival(Number.NaN, 1)).toThrow(RangeError);
    for (const df of [0, -1, Number.NaN, Infinity]) expect(() => chiSquareSurvival(1, df)).toThrow(RangeError);
  });
});

describe("wilsonInterval", () => {
  it("matches Newcombe's worked example, 81/263", () => {
    // R. G. Newcombe (1998), Statistics in Medicine 17:857-872, Table I: 81/263 -> Wilson
    // 0.2553 to 0.3662. Full precision from the Wilson formula in Python with
    // z = scipy.stats.norm.ppf(0.975):
    //   c = (p + z^2/2n) / (1 + z^2/n), h = z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
    const ci = wilsonInterval(81, 263, 0.95)!;
    expect(ci.low).toBeCloseTo(0.2552885198782742, 13);
    expect(ci.high).toBeCloseTo(0.36620957698280004, 13);
  });

  it("widens with the confidence level", () => {
    // Same formula with z = scipy.stats.norm.ppf(0.995)
    const ci = wilsonInterval(81, 263, 0.99)!;
    expect(ci.low).toBeCloseTo(0.24013690268760773, 13);
    expect(ci.high).toBeCloseTo(0.38528250231822986, 13);
  });

  it("is sensible at s = 0 and s = n", () => {
    // Same formula: 0/10 -> [0, 0.2775327998628892]; 10/10 -> [0.7224672001371107, 1]
    const none = wilsonInterval(0, 10, 0.95)!;
    expect(none.low).toBe(0);
    expect(none.high).toBeCloseTo(0.2775327998628892, 13);
    const all = wilsonInterval(10, 10, 0.95)!;
    expect(all.low).toBeCloseTo(0.7224672001371107, 13);
    expect(all.high).toBe(1);
  });

  it("is undefined without trials", () => {
    expect(wilsonInterval(0, 0, 0.95)).toBeUndefined();
  });

  it("rejects bad input", () => {
    expect(() => wilsonInterval(-1, 10, 0.95)).toThrow(RangeError);
    expect(() => wilsonInterval(11, 10, 0.95)).toThrow(/must not exceed/);
    expect(() => wilsonInterval(1.5, 10, 0.95)).toThrow(RangeError);
    expect(() => wilsonInterval(1, Infinity, 0.95)).toThrow(RangeError);
    expect(() => wilsonInterval(1, Number.NaN, 0.95)).toThrow(RangeError);
    expect(() => wilsonInterval(1, 10, 1)).toThrow(/confidence/);
  });
});

describe("twoProportionZTest", () => {
  it("200/1000 vs 250/1000", () => {
    // By hand: pooled p = 450/2000 = 0.225, se = sqrt(0.225 * 0.775 * (2/1000)) = 0.0186748...,
    // z = 0.05 / se = 2.677397763008329; p = 2 * scipy.stats.norm.sf(z) = 0.007419649261025687.
    // Cross-check: scipy.stats.chi2_contingency([[200, 800], [250, 750]], correction=False)
    // gives chi2 = 7.168458781362007 = z^2 and the same p-value.
    const r = twoProportionZTest(200, 1000, 250, 1000)!;
    expect(r.z).toBeCloseTo(2.677397763008329, 12);
    expect(r.z * r.z).toBeCloseTo(7.168458781362007, 11);
    expect(r.pValue).toBeCloseTo(0.007419649261025687, 14);
  });

  it("z is negative when the treatment is lower, and the p-value symmetric", () => {
    const r = twoProportionZTest(250, 1000, 200, 1000)!;
    expect(r.z).toBeCloseTo(-2.677397763008329, 12);
    expect(r.pValue).toBeCloseTo(0.007419649261025687, 14);
  });

  it("gives p = 1 for identical proportions", () => {
    const r = twoProportionZTest(30, 100, 60, 200)!;
    expect(r.z).toBe(0);
    expect(r.pValue).toBe(1);
  });

  it("is undefined without trials or without variance", () => {
    expect(twoProportionZTest(0, 0, 5, 10)).toBeUndefined();
    expect(twoProportionZTest(5, 10, 0, 0)).toBeUndefined();
    expect(twoProportionZTest(0, 10, 0, 20)).toBeUndefined(); // pooled p = 0
    expect(twoProportionZTest(10, 10, 20, 20)).toBeUndefined(); // pooled p = 1
  });

  it("rejects bad input", () => {
    expect(() => twoProportionZTest(5, 4, 1, 10)).toThrow(/sControl/);
    expect(() => twoProportionZTest(1, 10, -1, 10)).toThrow(/sTreatment/);
    expect(() => twoProportionZTest(1, 10, 1, Number.NaN)).toThrow(/nTreatment/);
  });
});

describe("proportionDifference", () => {
  it("200/1000 vs 250/1000 at 95%", () => {
    // By hand: 0.25 - 0.20 = 0.05, se = sqrt(0.25 * 0.75 / 1000 + 0.2 * 0.8 / 1000),
    // 0.05 -+ scipy.stats.norm.ppf(0.975) * se = [0.01346362168753984, 0.08653637831246014]
    const d = proportionDifference(200, 1000, 250, 1000, 0.95)!;
    expect(d.value).toBeCloseTo(0.05, 15);
    expect(d.low).toBeCloseTo(0.01346362168753984, 13);
    expect(d.high).toBeCloseTo(0.08653637831246014, 13);
  });

  it("is undefined without trials", () => {
    expect(proportionDifference(0, 0, 1, 10, 0.95)).toBeUndefined();
    expect(proportionDifference(1, 10, 0, 0, 0.95)).toBeUndefined();
  });

  it("rejects a bad confidence", () => {
    expect(() => proportionDifference(1, 10, 2, 10, 0)).toThrow(RangeError);
  });
});

describe("proportionRelativeLift", () => {
  it("200/1000 vs 250/1000 at 95% (Katz log risk-ratio interval)", () => {
    // By hand: ratio 0.25 / 0.2 = 1.25, se = sqrt((1 - 0.25) / 250 + (1 - 0.2) / 200) = sqrt(0.007),
    // exp(ln 1.25 -+ scipy.stats.norm.ppf(0.975) * se) - 1 = [0.06094625083756311, 0.47274190258600335]
    const l = proportionRelativeLift(200, 1000, 250, 1000, 0.95)!;
    expect(l.value).toBeCloseTo(0.25, 14);
    expect(l.low).toBeCloseTo(0.06094625083756311, 13);
    expect(l.high).toBeCloseTo(0.47274190258600335, 13);
  });

  it("is undefined when either arm has no successes", () => {
    expect(proportionRelativeLift(0, 100, 5, 100, 0.95)).toBeUndefined();
    expect(proportionRelativeLift(5, 100, 0, 100, 0.95)).toBeUndefined();
    expect(proportionRelativeLift(0, 0, 0, 0, 0.95)).toBeUndefined();
  });
});

describe("poissonRateTest", () => {
  it("exact test for small counts: 10 clicks / 100 vs 25 clicks / 120", () => {
    // scipy.stats.binomtest(25, 35, 120 / 220).pvalue = 0.06039892674739904
    const r = poissonRateTest(10, 100, 25, 120)!;
    expect(r.method).toBe("exact");
    expect(r.pValue).toBeCloseTo(0.06039892674739904, 9);
  });

  it("exact test for a few more small cases", () => {
    // scipy.stats.binomtest(3, 6, 2 / 3).pvalue = 0.4074074074074075 (= 297 / 729)
    expect(poissonRateTest(3, 1, 3, 2)!.pValue).toBeCloseTo(0.4074074074074075, 9);
    // scipy.stats.binomtest(10, 10, 0.5).pvalue = 0.001953125 (= 2 / 2^10)
    expect(poissonRateTest(0, 1, 10, 1)!.pValue).toBeCloseTo(0.001953125, 12);
    // scipy.stats.binomtest(4, 6, 0.5).pvalue = 0.6875 (= 44 / 64)
    expect(poissonRateTest(2, 1, 4, 1)!.pValue).toBeCloseTo(0.6875, 12);
  });

  it("follows binom.test's relative tolerance for tied outcome probabilities", () => {
    // Binomial(5, 1/3): P(X = 1) = P(X = 2) = 80/243 exactly, but not in floating point; with the
    // 1 + 1e-7 tolerance the observed 2 is as extreme as the mode, so every outcome counts.
    // scipy.stats.binomtest(2, 5, 1 / 3).pvalue = 1.0 (0.6708 without the tolerance)
    expect(poissonRateTest(3, 2, 2, 1)!.pValue).toBeCloseTo(1, 12);
    // The same tie seen from the other side: scipy.stats.binomtest(1, 5, 1 / 3).pvalue = 1.0
    // (163/243 = 0.6708 if the tied outcome 2 were left out of the upper tail)
    expect(poissonRateTest(4, 2, 1, 1)!.pValue).toBeCloseTo(1, 12);
    // scipy.stats.binomtest(0, 7, 0.5).pvalue = 0.015625 (both tails, 2 / 2^7; 0.0078 one-sided)
    expect(poissonRateTest(7, 1, 0, 1)!.pValue).toBeCloseTo(0.015625, 12);
  });

  it("gives p = 1 when the observed count equals its expectation", () => {
    expect(poissonRateTest(50, 1000, 50, 1000)).toEqual({ pValue: 1, method: "exact" });
  });

  it("switches from exact to normal above 10000 total events", () => {
    // C = 10000: scipy.stats.binomtest(5100, 10000, 0.5).pvalue = 0.04658552770494645
    const exact = poissonRateTest(4900, 1e5, 5100, 1e5)!;
    expect(exact.method).toBe("exact");
    expect(exact.pValue).toBeCloseTo(0.04658552770494645, 9);
    // C = 10001: z = (5101 - 10001 * 0.5) / sqrt(10001 * 0.25) = 2.009899507536872,
    // p = 2 * scipy.stats.norm.sf(z) = 0.04444182590017675 (the exact test would give 0.0455).
    const normal = poissonRateTest(4900, 1e5, 5101, 1e5)!;
    expect(normal.method).toBe("normal");
    expect(normal.pValue).toBeCloseTo(0.04444182590017675, 12);
  });

  it("normal approximation for large counts", () => {
    // z = (50000 - 102000 * 0.5) / sqrt(102000 * 0.25) = -6.262242910851494,
    // p = 2 * scipy.stats.norm.sf(6.262242910851494) = 3.794791883144954e-10
    const down = poissonRateTest(52000, 1e6, 50000, 1e6)!;
    expect(down.method).toBe("normal");
    expectRelativelyClose(down.pValue, 3.794791883144954e-10, 10);
    // z = 11.043152607484654, p = 2 * scipy.stats.norm.sf(z) = 2.3658387347659077e-28
    expectRelativelyClose(poissonRateTest(100000, 2e6, 105000, 2e6)!.pValue, 2.3658387347659077e-28, 10);
  });

  it("is undefined without exposure or without events", () => {
    expect(poissonRateTest(0, 0, 5, 100)).toBeUndefined();
    expect(poissonRateTest(5, 100, 0, 0)).toBeUndefined();
    expect(poissonRateTest(0, 100, 0, 100)).toBeUndefined();
  });

  it("rejects bad input", () => {
    expect(() => poissonRateTest(-1, 100, 5, 100)).toThrow(/cControl/);
    expect(() => poissonRateTest(1.5, 100, 5, 100)).toThrow(/non-negative integer/);
    expect(() => poissonRateTest(1, -100, 5, 100)).toThrow(/tControl/);
    expect(() => poissonRateTest(1, 100, 5, Infinity)).toThrow(/tTreatment/);
  });
});

describe("rateDifference", () => {
  it("10/100 vs 25/120 at 95%", () => {
    // By hand: 25/120 - 10/100 = 0.10833333333333334, se = sqrt(25 / 120^2 + 10 / 100^2),
    // -+ scipy.stats.norm.ppf(0.975) * se = [0.005811832358284308, 0.21085483430838237]
    const d = rateDifference(10, 100, 25, 120, 0.95)!;
    expect(d.value).toBeCloseTo(0.10833333333333334, 14);
    expect(d.low).toBeCloseTo(0.005811832358284308, 13);
    expect(d.high).toBeCloseTo(0.21085483430838237, 13);
  });

  it("CTR above 1 (clicks exceed impressions): 1200/1000 vs 1300/1000", () => {
    // By hand: 1.3 - 1.2 = 0.1, se = sqrt(1300 / 1000^2 + 1200 / 1000^2) = 0.05;
    // 0.1 -+ 1.959963984540054 * 0.05 = [0.0020018007729974002, 0.1979981992270028]
    const d = rateDifference(1200, 1000, 1300, 1000, 0.95)!;
    expect(d.value).toBeCloseTo(0.1, 14);
    expect(d.low).toBeCloseTo(0.0020018007729974002, 13);
    expect(d.high).toBeCloseTo(0.1979981992270028, 13);
  });

  it("is undefined without exposure, or when the numbers overflow", () => {
    expect(rateDifference(1, 0, 1, 10, 0.95)).toBeUndefined();
    expect(rateDifference(1, 10, 1, 0, 0.95)).toBeUndefined();
    // 1 / (1e-200)^2 overflows to Infinity: undefined rather than a non-finite interval.
    expect(rateDifference(1, 1e-200, 1, 1, 0.95)).toBeUndefined();
  });
});

describe("rateRelativeLift", () => {
  it("10/100 vs 25/120 at 95% (log rate-ratio interval)", () => {
    // By hand: ratio (25/120) / (10/100) = 2.0833333333333335, se = sqrt(1/25 + 1/10),
    // exp(ln ratio -+ scipy.stats.norm.ppf(0.975) * se) - 1 = [0.0006179939032771031, 3.3375971691723576]
    const l = rateRelativeLift(10, 100, 25, 120, 0.95)!;
    expect(l.value).toBeCloseTo(1.0833333333333335, 14);
    expect(l.low).toBeCloseTo(0.0006179939032771031, 13);
    expect(l.high).toBeCloseTo(3.3375971691723576, 12);
  });

  it("1200/1000 vs 1300/1000 at 95% and 90%", () => {
    // Same formula: 95% -> [0.0015826050810241465, 0.1717566830308228];
    // 90% (scipy.stats.norm.ppf(0.95)) -> [0.014297103805273492, 0.15706838431081938]
    const l95 = rateRelativeLift(1200, 1000, 1300, 1000, 0.95)!;
    expect(l95.value).toBeCloseTo(0.08333333333333348, 14);
    expect(l95.low).toBeCloseTo(0.0015826050810241465, 13);
    expect(l95.high).toBeCloseTo(0.1717566830308228, 13);
    const l90 = rateRelativeLift(1200, 1000, 1300, 1000, 0.9)!;
    expect(l90.low).toBeCloseTo(0.014297103805273492, 13);
    expect(l90.high).toBeCloseTo(0.15706838431081938, 13);
  });

  it("is undefined when either count or exposure is 0", () => {
    expect(rateRelativeLift(0, 100, 5, 100, 0.95)).toBeUndefined();
    expect(rateRelativeLift(5, 100, 0, 100, 0.95)).toBeUndefined();
    expect(rateRelativeLift(5, 0, 5, 100, 0.95)).toBeUndefined();
  });

  it("rejects bad input", () => {
    expect(() => rateRelativeLift(5, 100, 5, 100, 1.2)).toThrow(/confidence/);
    expect(() => rateRelativeLift(5, Number.NaN, 5, 100, 0.95)).toThrow(/tControl/);
  });
});

describe("sampleRatioTest", () => {
  it("5050 / 4950 against a 50/50 split is not a mismatch", () => {
    // scipy.stats.chisquare([5050, 4950], [5000, 5000]) -> statistic 1.0, pvalue 0.31731050786291115
    const r = sampleRatioTest([5050, 4950], [1, 1])!;
    expect(r.chiSquare).toBeCloseTo(1, 12);
    expect(r.pValue).toBeCloseTo(0.31731050786291115, 13);
    expect(r.pValue).toBeGreaterThan(0.001);
  });

  it("5200 / 4800 against a 50/50 split is a mismatch (p < 0.001)", () => {
    // scipy.stats.chisquare([5200, 4800], [5000, 5000]) -> statistic 16.0, pvalue 6.334248366623988e-05
    const r = sampleRatioTest([5200, 4800], [0.5, 0.5])!;
    expect(r.chiSquare).toBeCloseTo(16, 12);
    expectRelativelyClose(r.pValue, 6.334248366623988e-5, 11);
    expect(r.pValue).toBeLessThan(0.001);
  });

  it("normalises unequal expected weights", () => {
    // scipy.stats.chisquare([2100, 7900], [2000, 8000]) -> statistic 6.25, pvalue 0.01241933065155227
    const r = sampleRatioTest([2100, 7900], [20, 80])!;
    expect(r.chiSquare).toBeCloseTo(6.25, 12);
    expect(r.pValue).toBeCloseTo(0.01241933065155227, 13);
  });

  it("uses k - 1 degrees of freedom for three groups", () => {
    // scipy.stats.chisquare([3400, 3300, 3300]) -> statistic 2.0, pvalue 0.36787944117144245 (= e^-1, df 2)
    const even = sampleRatioTest([3400, 3300, 3300], [1, 1, 1])!;
    expect(even.chiSquare).toBeCloseTo(2, 12);
    expect(even.pValue).toBeCloseTo(0.36787944117144245, 13);
    // scipy.stats.chisquare([1000, 1050, 2100], [1037.5, 1037.5, 2075]) -> 1.8072289156626506, 0.40510278342823414
    const weighted = sampleRatioTest([1000, 1050, 2100], [1, 1, 2])!;
    expect(weighted.chiSquare).toBeCloseTo(1.8072289156626506, 12);
    expect(weighted.pValue).toBeCloseTo(0.40510278342823414, 13);
    // scipy.stats.chisquare([1000, 1000, 1000], [750, 750, 1500]) -> 333.3333333333333, 4.145590013564132e-73
    const broken = sampleRatioTest([1000, 1000, 1000], [1, 1, 2])!;
    expect(broken.chiSquare).toBeCloseTo(333.3333333333333, 10);
    expectRelativelyClose(broken.pValue, 4.145590013564132e-73, 10);
  });

  it("is undefined for fewer than two groups, no observations or a non-positive weight", () => {
    expect(sampleRatioTest([10], [1])).toBeUndefined();
    expect(sampleRatioTest([], [])).toBeUndefined();
    expect(sampleRatioTest([0, 0], [1, 1])).toBeUndefined();
    expect(sampleRatioTest([10, 10], [1, 0])).toBeUndefined();
    expect(sampleRatioTest([10, 10], [1, -1])).toBeUndefined();
  });

  it("rejects bad input", () => {
    expect(() => sampleRatioTest([10, 10], [1])).toThrow(/one expected weight per observed count/);
    expect(() => sampleRatioTest([10, -1], [1, 1])).toThrow(/observed\[1\]/);
    expect(() => sampleRatioTest([10, 2.5], [1, 1])).toThrow(RangeError);
    expect(() => sampleRatioTest([10, 10], [1, Number.NaN])).toThrow(/expectedWeights\[1\]/);
    expect(() => sampleRatioTest([10, 10], [1, Infinity])).toThrow(RangeError);
  });
});
