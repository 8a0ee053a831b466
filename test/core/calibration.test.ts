// Seeded simulations with the data's real shape (test/support/ab-simulation.ts): per-user
// randomisation, Pareto activity, per-user click and no-result propensities (Beta), several clicks
// per clicked search, users hashed into the 256 buckets as storage will. They check the "Done
// when" bounds of issue 11 and print every figure (console.log) so it can be quoted.
import { describe, expect, it } from "vitest";
import { compareVariants } from "../../src/core/comparison.js";
import { comparisonSettings, type MetricName, type VariantData } from "../../src/core/comparison-model.js";
import { deltaMethodRatio, ratioSums } from "../../src/core/delta-method.js";
import { poissonRateTest, twoProportionZTest } from "../../src/core/statistics.js";
import { simulate, variantData, type SimulationConfig } from "../support/ab-simulation.js";

/** The metrics the simulation (ab-simulation.ts) generates: it has no first clicks, so no MRR or abandonment to check. */
const METRICS = ["searchCtr", "ctr", "noResultsRate"] as const satisfies readonly MetricName[];

const RUNS = 1000;
const SLICES = 10;
const CLICK_MEAN = 0.3; // Beta(3, 7)
const EXTRA_CLICKS = 0.4; // a clicked search has 1 + Poisson(0.4) clicks
const shape = {
  // 2000 users; Pareto(alpha 2, scale 2.5) expected searches per user (mean 5, infinite variance
  // below the cap of 1000): the heaviest user of an arm often makes 100+ searches.
  users: 2000,
  paretoAlpha: 2,
  paretoScale: 2.5,
  activityCap: 1000,
  clickBeta: [3, 7],
  noResultBeta: [1, 19],
  extraClicks: EXTRA_CLICKS,
  slices: SLICES,
} as const satisfies Partial<SimulationConfig>;

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]) => {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function ab(seed: number, lift = 0, pre = false) {
  const arms = simulate({ ...shape, seed, arms: ["control", "treatment"], lifts: [0, lift], pre });
  return { control: arms.get("control")!, treatment: arms.get("treatment")! };
}

function data(sim: ReturnType<typeof ab>, upTo: number, withPre = false): Map<string, VariantData> {
  return new Map([
    ["control", variantData(sim.control, upTo, withPre)],
    ["treatment", variantData(sim.treatment, upTo, withPre)],
  ]);
}

describe("calibration (A/A)", () => {
  it("false positives, SRM, sequential peeking, CUPED, the i.i.d. test and bucket vs per-user SE", () => {
    const fixed = comparisonSettings({ control: "control", expectedSplit: { control: 1, treatment: 1 }, minImpressions: 0 });
    const sequential = { ...fixed, sequential: true };
    const cuped = { ...fixed, cuped: true };
    const falsePositives = { fixed: new Map<MetricName, number>(), sequential: new Map<MetricName, number>(), cuped: new Map<MetricName, number>() };
    for (const m of Object.values(falsePositives)) for (const metric of METRICS) m.set(metric, 0);
    let srmAlarms = 0;
    let iidSearchCtr = 0;
    let iidCtr = 0;
    const seRatios: number[] = [];
    const cupedReductions: number[] = [];
    const relativeMdes: number[] = [];
    const sequentialRelativeMdes: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const sim = ab(1_000_000 + run, 0, true);
      const full = data(sim, SLICES);
      const r = compareVariants(full, fixed);
      const c = r.comparisons[0]!;
      for (const metric of METRICS) if (c[metric]!.significant) falsePositives.fixed.set(metric, falsePositives.fixed.get(metric)! + 1);
      if (r.srmDetected) srmAlarms++;
      relativeMdes.push(c.searchCtr!.relativeMde!);

      const rc = compareVariants(data(sim, SLICES, true), cuped).comparisons[0]!;
      for (const metric of METRICS) if (rc[metric]!.significant) falsePositives.cuped.set(metric, falsePositives.cuped.get(metric)! + 1);
      cupedReductions.push(rc.searchCtr!.cupedVarianceReduction!);

      // Sequential: a look after every 10% of the data; any significant look is a false positive.
      const anyLook = new Set<MetricName>();
      for (let look = 1; look <= SLICES; look++) {
        const rs = compareVariants(look === SLICES ? full : data(sim, look), sequential).comparisons[0]!;
        for (const metric of METRICS) if (rs[metric]?.significant) anyLook.add(metric);
        if (look === SLICES) sequentialRelativeMdes.push(rs.searchCtr!.relativeMde!);
      }
      for (const metric of anyLook) falsePositives.sequential.set(metric, falsePositives.sequential.get(metric)! + 1);

      // The old search-level (i.i.d.) tests on the same data.
      const t = full.get("treatment")!;
      const k = full.get("control")!;
      if (twoProportionZTest(k.searchesWithClicks, k.impressions, t.searchesWithClicks, t.impressions)!.pValue < 0.05) iidSearchCtr++;
      if (poissonRateTest(k.clicks, k.impressions, t.clicks, t.impressions)!.pValue < 0.05) iidCtr++;

      // Bucketed delta-method SE of the search-CTR difference against the exact per-user one.
      const se = (units: "buckets" | "users") => {
        const v = (arm: typeof sim.control, d: VariantData) =>
          units === "buckets"
            ? deltaMethodRatio(ratioSums(d.buckets.searchesWithClicks, d.buckets.impressions))!.variance
            : deltaMethodRatio(ratioSums(arm.perUser.searchesWithClicks, arm.perUser.impressions))!.variance;
        return Math.sqrt(v(sim.control, k) + v(sim.treatment, t));
      };
      seRatios.push(se("buckets") / se("users"));
    }
    const rate = (n: number) => n / RUNS;
    for (const metric of METRICS) {
      console.log(
        `A/A ${RUNS} runs, ${metric}: false positives fixed ${pct(rate(falsePositives.fixed.get(metric)!))}, ` +
          `CUPED ${pct(rate(falsePositives.cuped.get(metric)!))}, sequential (10 looks, any) ${pct(rate(falsePositives.sequential.get(metric)!))}`,
      );
    }
    console.log(`A/A: SRM false alarms (users, p < 0.001) ${pct(rate(srmAlarms))}`);
    console.log(`A/A: old search-level i.i.d. tests: search CTR ${pct(rate(iidSearchCtr))}, CTR (Poisson) ${pct(rate(iidCtr))}`);
    console.log(`A/A: bucketed / per-user delta-method SE: mean ${mean(seRatios).toFixed(4)}, sd ${sd(seRatios).toFixed(4)}, min ${Math.min(...seRatios).toFixed(3)}, max ${Math.max(...seRatios).toFixed(3)}`);
    console.log(`A/A: CUPED variance reduction (search CTR): mean ${pct(mean(cupedReductions))}, median ${pct(median(cupedReductions))}`);
    console.log(`A/A: median relative MDE (search CTR, 80% power): fixed ${pct(median(relativeMdes))}, sequential ${pct(median(sequentialRelativeMdes))}`);

    for (const metric of METRICS) {
      expect(rate(falsePositives.fixed.get(metric)!)).toBeGreaterThanOrEqual(0.035);
      expect(rate(falsePositives.fixed.get(metric)!)).toBeLessThanOrEqual(0.065);
      expect(rate(falsePositives.cuped.get(metric)!)).toBeGreaterThanOrEqual(0.035);
      expect(rate(falsePositives.cuped.get(metric)!)).toBeLessThanOrEqual(0.065);
      expect(rate(falsePositives.sequential.get(metric)!)).toBeLessThanOrEqual(0.055);
    }
    expect(rate(srmAlarms)).toBeLessThanOrEqual(0.005);
    expect(rate(iidSearchCtr)).toBeGreaterThan(0.1);
    expect(mean(seRatios)).toBeGreaterThanOrEqual(0.9);
    expect(mean(seRatios)).toBeLessThanOrEqual(1.1);
    expect(mean(cupedReductions)).toBeGreaterThan(0);
  });
});

describe("calibration (planted effect)", () => {
  it("covers the true difference and detects a lift equal to the reported MDE about 80% of the time", () => {
    const settings = comparisonSettings({ control: "control", expectedSplit: { control: 1, treatment: 1 }, minImpressions: 0 });
    // The lift to plant: the relative MDE the engine reports on A/A data of this shape, as the
    // root mean square over 200 runs (the MDE at the average variance; heavy tails skew the
    // variance estimate, so its median sits below the true standard error).
    const pilot: number[] = [];
    for (let run = 0; run < 200; run++) pilot.push(compareVariants(data(ab(2_000_000 + run), SLICES), settings).comparisons[0]!.searchCtr!.relativeMde!);
    const lift = Math.sqrt(mean(pilot.map((m) => m * m)));
    const truth: Record<(typeof METRICS)[number], number> = { searchCtr: CLICK_MEAN * lift, ctr: CLICK_MEAN * lift * (1 + EXTRA_CLICKS), noResultsRate: 0 };
    const covered = new Map<MetricName, number>(METRICS.map((m) => [m, 0]));
    let detected = 0;
    let detectedSequentialEnd = 0;
    let detectedSequentialAnyLook = 0;
    const sequential = { ...settings, sequential: true };
    for (let run = 0; run < RUNS; run++) {
      const sim = ab(3_000_000 + run, lift);
      const full = data(sim, SLICES);
      const c = compareVariants(full, settings).comparisons[0]!;
      for (const metric of METRICS) {
        const l = c[metric]!.lift;
        if (l.low <= truth[metric] && truth[metric] <= l.high) covered.set(metric, covered.get(metric)! + 1);
      }
      if (c.searchCtr!.significant && c.searchCtr!.lift.value > 0) detected++;
      let any = false;
      for (let look = 1; look <= SLICES; look++) {
        const s = compareVariants(look === SLICES ? full : data(sim, look), sequential).comparisons[0]!.searchCtr!;
        const hit = s.significant && s.lift.value > 0;
        any ||= hit;
        if (look === SLICES && hit) detectedSequentialEnd++;
      }
      if (any) detectedSequentialAnyLook++;
    }
    const rate = (n: number) => n / RUNS;
    console.log(`Planted relative lift ${pct(lift)} (the reported MDE, root mean square over 200 A/A runs; median ${pct(median(pilot))}) on click propensity, ${RUNS} runs:`);
    for (const metric of METRICS) console.log(`  95% interval coverage of the true ${metric} difference: ${pct(rate(covered.get(metric)!))}`);
    console.log(`  detected (significant, positive) fixed horizon: ${pct(rate(detected))}`);
    console.log(`  detected with sequential on: at the final look ${pct(rate(detectedSequentialEnd))}, at any of 10 looks ${pct(rate(detectedSequentialAnyLook))}`);
    for (const metric of METRICS) {
      expect(rate(covered.get(metric)!)).toBeGreaterThanOrEqual(0.935);
      expect(rate(covered.get(metric)!)).toBeLessThanOrEqual(0.965);
    }
    expect(rate(detected)).toBeGreaterThanOrEqual(0.75);
    expect(rate(detected)).toBeLessThanOrEqual(0.85);
  });
});

describe("calibration (4 treatments, no effect)", () => {
  it("recommends something in at most 5.5% of experiments", () => {
    const arms = ["control", "t1", "t2", "t3", "t4"];
    const settings = comparisonSettings({ control: "control", expectedSplit: Object.fromEntries(arms.map((a) => [a, 1])), minImpressions: 0 });
    let recommended = 0;
    let rawAnyPositive = 0;
    const reasons = new Map<string, number>();
    for (let run = 0; run < RUNS; run++) {
      const sims = simulate({ ...shape, users: 2500, seed: 4_000_000 + run, arms, pre: false, latency: { medianMs: 80, sigma: 0.5 } });
      const r = compareVariants(new Map(arms.map((a) => [a, variantData(sims.get(a)!, SLICES, false)])), settings);
      if (r.recommendation !== "") recommended++;
      if (r.comparisons.some((c) => c.searchCtr!.significant && c.searchCtr!.lift.value > 0)) rawAnyPositive++;
      reasons.set(r.reason, (reasons.get(r.reason) ?? 0) + 1);
    }
    console.log(
      `4 treatments, no effect, ${RUNS} runs: any recommendation ${pct(recommended / RUNS)} ` +
        `(without Holm, some treatment "significantly better": ${pct(rawAnyPositive / RUNS)}); reasons ${JSON.stringify(Object.fromEntries(reasons))}`,
    );
    expect(recommended / RUNS).toBeLessThanOrEqual(0.055);
  }, 120_000);
});
