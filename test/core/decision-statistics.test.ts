// Reference values for the decision engine's estimators, from published implementations.
//
// GrowthBook = github.com/growthbook/growthbook at commit 8f1db4456915a8e7b7faf23d5632ca7219d2f469,
// packages/stats. "printed" values are the expectations written in its test files; "computed"
// values come from running that commit's gbstats code (frequentist/tests.py, models/statistics.py)
// on the inputs of those same tests with SciPy 1.17.1, once, not at test time (the snippet is in
// the comment). GrowthBook's p-values for fixed-horizon tests use Student's t with Welch df, ours
// the normal approximation (see delta-method.ts), so fixed-horizon checks compare variances and
// standard errors; its sequential test is normal, so those compare intervals and p-values.
import { describe, expect, it } from "vitest";
import { cupedRatioDifference, deltaMethodRatio, flooredVariance, ratioEstimate, ratioSums, varianceFloor, type PrePostSums } from "../../src/core/delta-method.js";
import { differenceTest, fiellerInterval, holmAdjust, independentArms, mixtureSprt, sequentialRho2, sequentialTau2 } from "../../src/core/inference.js";
import { zCritical } from "../../src/core/special-functions.js";
import { USER_BUCKETS, addBucketSums, emptyBucketSums, userBucket } from "../../src/core/user-buckets.js";

/** GrowthBook's utils.variance_of_ratios with zero covariance: the variance of a relative difference. */
function relativeVariance(meanB: number, varMeanB: number, meanA: number, varMeanA: number): number {
  return varMeanB / meanA ** 2 + (varMeanA * meanB ** 2) / meanA ** 4;
}

describe("userBucket (stored format)", () => {
  it("is FNV-1a 32 over UTF-8, xor-folded to 8 bits", () => {
    // FNV-1a 32 test vectors (draft-eastlake-fnv): "a" -> 0xe40c292c, "foobar" -> 0xbf9cf968; folded by hand.
    expect(userBucket("a")).toBe((0xe4 ^ 0x0c ^ 0x29 ^ 0x2c) & 0xff);
    expect(userBucket("foobar")).toBe((0xbf ^ 0x9c ^ 0xf9 ^ 0x68) & 0xff);
    // Python: h = FNV-1a over s.encode('utf-8'); (h ^ h>>8 ^ h>>16 ^ h>>24) & 0xff
    expect(["", "user-1", "user-2", "ünïcødé", "😀x"].map(userBucket)).toEqual([197, 171, 248, 76, 200]);
  });

  it("spreads sequential ids evenly over the 256 buckets", () => {
    const counts = new Array<number>(USER_BUCKETS).fill(0);
    const n = 256_000;
    for (let i = 0; i < n; i++) counts[userBucket(`user-${i}`)]! += 1;
    const expected = n / USER_BUCKETS;
    const chi2 = counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
    // chi-square with 255 df: mean 255, sd ~22.6; 400 is p ~ 1e-8.
    expect(chi2).toBeLessThan(400);
  });

  it("merges bucket sums by adding", () => {
    const a = emptyBucketSums();
    const b = emptyBucketSums();
    a.clicks[3] = 2;
    b.clicks[3] = 5;
    b.noResults[255] = 1;
    addBucketSums(a, b);
    expect([a.clicks[3], a.noResults[255], a.impressions[0]]).toEqual([7, 1, 0]);
  });
});

describe("delta method for ratio metrics", () => {
  // GrowthBook packages/stats/tests/test_gbstats.py RATIO_STATISTICS_DF: per-unit sums of a
  // ratio metric; variation "zero" is the control, "one" the treatment.
  const control = { units: 100, numerator: 270, numeratorSquares: 848.79, denominator: 510, denominatorSquares: 810, products: -900 };
  const treatment = { units: 120, numerator: 300, numeratorSquares: 869, denominator: 500, denominatorSquares: 800, products: -905 };

  it("matches GrowthBook's RatioStatistic", () => {
    const c = deltaMethodRatio(control)!;
    const t = deltaMethodRatio(treatment)!;
    // printed (test_get_metric_dfs_frequentist_ratio): cr 0.529411765 and 0.6, relative lift 0.133333333
    expect(c.value).toBeCloseTo(0.529411765, 9);
    expect(t.value).toBeCloseTo(0.6, 12);
    expect(t.value / c.value - 1).toBeCloseTo(0.133333333, 9);
    // computed: RatioStatistic(...).variance (per unit) -> 0.7878692336373639 and 1.0856873949579828
    expect(c.variance * 100).toBeCloseTo(0.7878692336373639, 13);
    expect(t.variance * 120).toBeCloseTo(1.0856873949579828, 13);
    // computed: TwoSidedTTest(difference_type="absolute").uplift.stddev -> 0.1301002970571429,
    // and "relative" -> 0.2615080376577792 (whose Welch-t p-value is the printed 0.610663339)
    expect(Math.sqrt(c.variance + t.variance)).toBeCloseTo(0.1301002970571429, 13);
    expect(Math.sqrt(relativeVariance(t.value, t.variance, c.value, c.variance))).toBeCloseTo(0.2615080376577792, 13);
  });

  it("equals the textbook formula on raw units, and counts empty units", () => {
    const y = [3, 0, 1, 0, 7];
    const d = [10, 0, 4, 0, 20];
    const m = deltaMethodRatio(ratioSums(y, d))!;
    const n = 5;
    const my = 11 / n;
    const md = 34 / n;
    const r = 11 / 34;
    const cov = (a: number[], b: number[], ma: number, mb: number) => a.reduce((s, ai, i) => s + (ai - ma) * (b[i]! - mb), 0) / (n - 1);
    const expected = (cov(y, y, my, my) - 2 * r * cov(y, d, my, md) + r * r * cov(d, d, md, md)) / (n * md * md);
    expect(m.value).toBeCloseTo(r, 15);
    expect(m.variance).toBeCloseTo(expected, 15);
    expect(m.units).toBe(5);
  });

  it("floors the variance so that no interval has zero width", () => {
    const zeros = ratioEstimate([0, 0, 0], [10, 20, 5], "proportion")!;
    expect(zeros.value).toBe(0);
    expect(zeros.variance).toBeCloseTo(varianceFloor("proportion", 0, 35), 18);
    expect(varianceFloor("proportion", 0, 35)).toBeCloseTo((1 / 37) * (36 / 37) / 37, 18);
    const all = ratioEstimate([10, 20, 5], [10, 20, 5], "proportion")!;
    expect(all.variance).toBeGreaterThan(0);
    expect(ratioEstimate([0, 0], [10, 20], "rate")!.variance).toBeCloseTo(1 / 900, 18);
    expect(ratioEstimate([0, 0], [0, 0], "rate")).toBeUndefined();
    // the comparison's floor: Agresti-Caffo where the units show less spread than one pseudo-event,
    // q (1 - q) / (N + 2) with q = 1 / (N + 2) whatever the kind and level; else none
    expect(ratioEstimate([0, 0, 0], [10, 20, 5], "proportion", "degenerate")!.variance).toBeCloseTo(varianceFloor("proportion", 0, 35), 18);
    for (const kind of ["proportion", "rate"] as const) {
      expect(varianceFloor(kind, 0, 35, "degenerate")).toBeCloseTo((1 / 37) * (36 / 37) / 37, 18);
      expect(varianceFloor(kind, 20, 35, "degenerate")).toBeCloseTo((1 / 37) * (36 / 37) / 37, 18);
      // below one pseudo-event's variance the arm is degenerate: the i.i.d. floor with pseudo-counts
      expect(flooredVariance(kind, 1e-9, 20, 35, "degenerate")).toBe(varianceFloor(kind, 20, 35, "agresti-caffo"));
      expect(flooredVariance(kind, 0.01, 20, 35, "degenerate")).toBe(0.01);
    }
  });
});

describe("Holm adjustment", () => {
  // statsmodels statsmodels/stats/tests/test_multi.py at commit 0123770f843f5d1f20912249ee2510ffad2fbed1,
  // res_multtest1 (R multtest mt.rawp2adjp): column 0 raw p, column 2 Holm.
  it("matches R multtest via statsmodels' test table", () => {
    const raw = [5.23656777208e-5, 2.8140506198e-4, 1.49877310796e-2, 2.02732688798e-2, 0.177096952723, 0.642193923795, 0.680845947633, 0.71626938238, 0.838541367553, 0.967833824309];
    const holm = [5.2365677720800005e-4, 2.5326455578199999e-3, 1.1990184863680001e-1, 1.4191288215860001e-1, 1, 1, 1, 1, 1, 1];
    holmAdjust(raw).forEach((p, i) => expect(p).toBeCloseTo(holm[i]!, 15));
    // res_multtest3 (same file): raw .001 .. .005, .05 .. .09 -> Holm .01 .018 .024 .028 .03 .25 x5
    const raw3 = [0.001, 0.002, 0.003, 0.004, 0.005, 0.05, 0.06, 0.07, 0.08, 0.09];
    const holm3 = [0.01, 0.018, 0.024, 0.028, 0.03, 0.25, 0.25, 0.25, 0.25, 0.25];
    // in shuffled order: adjusted values follow their raw p-values
    const perm = [7, 2, 9, 0, 5, 1, 8, 3, 6, 4];
    holmAdjust(perm.map((i) => raw3[i]!)).forEach((p, k) => expect(p).toBeCloseTo(holm3[perm[k]!]!, 15));
  });

  it("is monotone and capped at 1", () => {
    expect(holmAdjust([0.04, 0.03, 0.5])).toEqual([0.08, 0.09, 0.5].map((x, i) => (i === 0 ? 0.09 : x)));
    expect(holmAdjust([0.6, 0.7])).toEqual([1, 1]);
    expect(holmAdjust([])).toEqual([]);
  });
});

describe("sequential (mixture SPRT)", () => {
  // GrowthBook packages/stats/tests/frequentist/test_tests.py, TestSequentialTTest and the
  // one-sided tests' stat_a = SampleMeanStatistic(sum=1396.87, sum_squares=52377.9767, n=3000),
  // stat_b = SampleMeanStatistic(sum=2422.7, sum_squares=134698.29, n=3461): n = 6461 units.
  const units = 6461;

  it("matches GrowthBook's printed confidence sequences", () => {
    // printed (OneSidedTreatmentGreaterTTest): relative mean 0.5033610858562358, stddev 0.3334122146400735
    const delta = 0.5033610858562358;
    const v = 0.3334122146400735 ** 2;
    // printed (test_sequential_test_runs, sequential_tuning_parameter=1000): ci (-0.55844, 1.56516)
    const { halfWidth } = mixtureSprt(delta, v, sequentialTau2(v, units, 0.05, 1000), 0.05);
    expect(delta - halfWidth).toBeCloseTo(-0.55844, 5);
    expect(delta + halfWidth).toBeCloseTo(1.56516, 5);
    // computed: same with the default tuning 5000 -> (-0.5097177608556427, 1.5164399325681144)
    const h5000 = mixtureSprt(delta, v, sequentialTau2(v, units, 0.05), 0.05).halfWidth;
    expect(delta - h5000).toBeCloseTo(-0.5097177608556427, 12);
    expect(delta + h5000).toBeCloseTo(1.5164399325681144, 12);
  });

  it("matches GrowthBook's printed interval for proportions", () => {
    // printed (test_sequential_test_runs_prop): ProportionStatistic(1396, 3000) vs (2422, 3461),
    // relative, default tuning: expected 0.50386, ci (0.40098, 0.60675), stddev 0.03386
    const pa = 1396 / 3000;
    const pb = 2422 / 3461;
    const v = relativeVariance(pb, (pb * (1 - pb)) / 3461, pa, (pa * (1 - pa)) / 3000);
    const delta = (pb - pa) / pa;
    expect(Math.sqrt(v)).toBeCloseTo(0.03386, 5);
    const { halfWidth, pValue } = mixtureSprt(delta, v, sequentialTau2(v, 6461, 0.05), 0.05);
    expect(delta - halfWidth).toBeCloseTo(0.40098, 5);
    expect(delta + halfWidth).toBeCloseTo(0.60675, 5);
    expect(pValue).toBeLessThan(1e-12); // printed pValue 0.0 (rounded to 5 decimals)
  });

  it("matches GrowthBook's always-valid p-values", () => {
    // computed: SequentialTwoSidedTTest([(stat_a, stat_b)], SequentialConfig(difference_type="absolute")):
    // expected 0.23437666666666668, stddev 0.12983081254184736, ci (-0.16011652842982782, 0.6288698617631612), p 0.7601250075467714
    const delta = 0.23437666666666668;
    const v = 0.12983081254184736 ** 2;
    const r = mixtureSprt(delta, v, sequentialTau2(v, units, 0.05), 0.05);
    expect(r.pValue).toBeCloseTo(0.7601250075467714, 12);
    expect(delta - r.halfWidth).toBeCloseTo(-0.16011652842982782, 12);
    // computed: ProportionStatistic(1396, 3000) vs (1500, 3000), absolute: p 0.12321895816960504,
    // ci (-0.004489370149719452, 0.07382270348305281)
    const pa = 1396 / 3000;
    const pb = 1500 / 3000;
    const vp = (pa * (1 - pa)) / 3000 + (pb * (1 - pb)) / 3000;
    const rp = mixtureSprt(pb - pa, vp, sequentialTau2(vp, 6000, 0.05), 0.05);
    expect(rp.pValue).toBeCloseTo(0.12321895816960504, 12);
    expect(pb - pa - rp.halfWidth).toBeCloseTo(-0.004489370149719452, 12);
    expect(pb - pa + rp.halfWidth).toBeCloseTo(0.07382270348305281, 12);
  });

  it("uses GrowthBook's rho (eq. 161 of arXiv:2103.06476v7)", () => {
    const a = -2 * Math.log(0.05);
    expect(sequentialRho2(0.05, 5000)).toBeCloseTo((a + Math.log(a + 1)) / 5000, 18);
  });
});

describe("CUPED for ratio metrics", () => {
  // GrowthBook packages/stats/tests/frequentist/test_tests.py, test_two_sided_ttest_test_runs_ratio_ra:
  // RegressionAdjustedRatioStatistic inputs, n = 100 per arm. Variables: (m_post, d_post, m_pre, d_pre).
  const arm = (s: number[], ss: number[], p: { mPostDPost: number; mPostMPre: number; mPostDPre: number; mPreDPost: number; dPostDPre: number; mPreDPre: number }): PrePostSums => ({
    units: 100,
    sums: [s[0]!, s[1]!, s[2]!, s[3]!],
    products: [
      [ss[0]!, p.mPostDPost, p.mPostMPre, p.mPostDPre],
      [p.mPostDPost, ss[1]!, p.mPreDPost, p.dPostDPre],
      [p.mPostMPre, p.mPreDPost, ss[2]!, p.mPreDPre],
      [p.mPostDPre, p.dPostDPre, p.mPreDPre, ss[3]!],
    ],
  });
  const control = arm(
    [485.112236689623, 679.9093275844917, 192.59138069991536, 290.1398399750233],
    [2715.484666118136, 4939.424001640236, 460.076026390857, 920.9461385038898],
    { mPostDPost: 3602.146836776702, mPostMPre: 1113.6215759318352, mPostDPre: 1559.2878434944676, mPreDPost: 1460.3181079276983, dPostDPre: 2130.9404074446747, mPreDPre: 634.239482353647 },
  );
  const treatment = arm(
    [514.7757826608777, 705.4090874383759, 206.94157227402536, 302.54389139107326],
    [2994.897482705013, 5291.36604146392, 514.2903702246757, 994.4506208125663],
    { mPostDPost: 3918.1561431600717, mPostMPre: 1237.0953021125997, mPostDPre: 1701.0287270040265, mPreDPost: 1604.0759503266522, dPostDPre: 2292.081739775257, mPreDPre: 698.4173425817908 },
  );

  it("matches GrowthBook's RegressionAdjustedRatioStatistic", () => {
    const r = cupedRatioDifference(treatment, control)!;
    // computed: compute_theta_regression_adjusted_ratio(a, b) -> 0.8290044254063292
    expect(r.theta).toBeCloseTo(0.8290044254063292, 13);
    // computed: create_theta_adjusted_statistics: a.variance 0.00033595017597942847, a.mean_post 0.7134954868365716
    expect(r.control.variance * 100).toBeCloseTo(0.00033595017597942847, 16);
    expect(r.control.unadjusted).toBeCloseTo(0.7134954868365716, 14);
    // computed: TwoSidedTTest(difference_type="absolute"): expected -0.0005005051931390447, stddev 0.0027882397747049296
    expect(r.difference).toBeCloseTo(-0.0005005051931390447, 15);
    expect(Math.sqrt(r.variance)).toBeCloseTo(0.0027882397747049296, 15);
    // printed: relative expected -0.0007 (= difference / control's unadjusted mean)
    expect(r.difference / r.control.unadjusted).toBeCloseTo(-0.0007, 5);
    // computed: the unadjusted RatioStatistic difference's stddev 0.01968244615428237
    expect(Math.sqrt(r.unadjustedVariance)).toBeCloseTo(0.01968244615428237, 14);
    expect(r.varianceReduction).toBeCloseTo(1 - (0.0027882397747049296 / 0.01968244615428237) ** 2, 12);
  });

  it("has nothing to adjust with when the pre-period has no variance", () => {
    const flat = { ...control, sums: [control.sums[0], control.sums[1], 100, 100] as const, products: control.products.map((row, k) => row.map((x, l) => (k >= 2 && l >= 2 ? 100 : x)) as unknown as readonly [number, number, number, number]) };
    expect(cupedRatioDifference(flat, flat)).toBeUndefined();
  });
});

describe("differenceTest", () => {
  const t = { value: 0.22, variance: 0.0001 };
  const c = { value: 0.2, variance: 0.0001 };

  it("fixed horizon: z-test, Wald interval and Fieller's relative interval agree", () => {
    const r = differenceTest(independentArms(t, c), 0.95);
    const se = Math.sqrt(0.0002);
    expect(r.difference.value).toBeCloseTo(0.02, 15);
    expect(r.difference.high - r.difference.value).toBeCloseTo(zCritical(0.95) * se, 15);
    expect(r.criticalValue).toBeCloseTo(1.959963984540054, 14);
    expect(r.relative!.value).toBeCloseTo(0.1, 14);
    // Fieller in rho = T / C: |T - rho C| <= z sqrt(V_T + rho^2 V_C), at both ends
    for (const l of [r.relative!.low, r.relative!.high]) {
      const rho = 1 + l;
      expect(Math.abs(0.22 - rho * 0.2)).toBeCloseTo(r.criticalValue * Math.sqrt(0.0001 + rho * rho * 0.0001), 14);
    }
    expect(r.mde.absolute).toBeCloseTo((1.959963984540054 + 0.8416212335729143) * se, 14);
    expect(r.mde.relative).toBeCloseTo(r.mde.absolute / 0.2, 14);
  });

  it("is significant exactly when both intervals exclude 0, at the boundary", () => {
    for (const sequential of [false, true]) {
      const v = 0.0002;
      const design = sequential ? ({ sequential: true, tau2: 0.0003 } as const) : ({ sequential: false } as const);
      const half = differenceTest({ difference: 0, variance: v, control: 0.2, controlVariance: 0.0001, differenceControlCovariance: -0.0001 }, 0.95, design).difference.high;
      for (const factor of [1 - 1e-9, 1 + 1e-9]) {
        for (const sign of [1, -1]) {
          const r = differenceTest({ difference: sign * half * factor, variance: v, control: 0.2, controlVariance: 0.0001, differenceControlCovariance: -0.0001 }, 0.95, design);
          const excludes = r.difference.low > 0 || r.difference.high < 0;
          const relExcludes = r.relative!.low > 0 || r.relative!.high < 0;
          expect(r.significant).toBe(factor > 1);
          expect(excludes).toBe(r.significant);
          expect(relExcludes).toBe(r.significant);
          expect(r.pValue < 0.05).toBe(r.significant);
        }
      }
    }
  });

  it("has no relative interval when the control is indistinguishable from 0", () => {
    const r = differenceTest(independentArms({ value: 0.02, variance: 1e-4 }, { value: 0.01, variance: 1e-4 }), 0.95);
    expect(r.relative).toBeUndefined();
    expect(fiellerInterval(1, 0.1, 0.01, 0.1, 0, 1.96)).toBeUndefined();
  });

  it("sequential intervals are wider than fixed-horizon ones", () => {
    const input = independentArms(t, c);
    const fixed = differenceTest(input, 0.95);
    const seq = differenceTest(input, 0.95, { sequential: true, tau2: sequentialTau2(input.variance, 20_000, 0.05) });
    expect(seq.criticalValue).toBeGreaterThan(fixed.criticalValue);
    expect(seq.pValue).toBeGreaterThan(fixed.pValue);
    expect(seq.mde.absolute).toBeGreaterThan(fixed.mde.absolute);
  });
});
