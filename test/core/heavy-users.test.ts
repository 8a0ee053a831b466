// Issue 21: calibration of the comparison over users, with heavy users capped as the service does
// (compareVariants with per-user totals, the default cap_percentile). Seeded; every figure printed
// so it can be quoted (README "How the comparison works").
import { describe, expect, it } from "vitest";
import { compareVariants } from "../../src/core/comparison.js";
import { comparisonSettings, type MetricName, type VariantData } from "../../src/core/comparison-model.js";
import { pooledCap } from "../../src/core/user-totals.js";
import { HEAVY_USERS, PARETO_USERS, simulateUsers, userVariantData, type SimulatedUsers, type UserShape } from "../support/user-simulation.js";

const METRICS = ["searchCtr", "ctr", "noResultsRate"] as const satisfies readonly MetricName[];
const RUNS = 1000;
const LOOKS = 10;
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

const settings = (extra: Partial<Parameters<typeof comparisonSettings>[0]> = {}) => comparisonSettings({ control: "c", expectedSplit: { c: 1, t: 1 }, minImpressions: 0, ...extra });
const pair = (arms: SimulatedUsers[], upTo?: number): Map<string, VariantData> =>
  new Map([
    ["c", userVariantData(arms[0]!, upTo, 0)],
    ["t", userVariantData(arms[1]!, upTo, 10_000_000)],
  ]);

/** Numerator and denominator per user of each metric, from the simulated totals. */
function columns(a: SimulatedUsers, metric: (typeof METRICS)[number]): { num: Float64Array; den: Float64Array } {
  const d = userVariantData(a).perUser!;
  const num = metric === "searchCtr" ? d.searchesWithClicks : metric === "ctr" ? d.clicks : d.noResults;
  return { num: Float64Array.from(num), den: Float64Array.from(d.impressions) };
}

/**
 * The capped metric's true difference: the same shape with 400,000 users per arm, capped at the
 * pooled percentile as the service caps (its own noise is under a tenth of an experiment's).
 */
function truth(shape: UserShape, lift: number, q: number): Record<(typeof METRICS)[number], number> {
  const [c, t] = simulateUsers(99, 800_000, shape, [0, lift]);
  const out = {} as Record<(typeof METRICS)[number], number>;
  for (const metric of METRICS) {
    const [cc, tt] = [columns(c!, metric), columns(t!, metric)];
    const nc = pooledCap([cc.num, tt.num], q);
    const dc = pooledCap([cc.den, tt.den], q);
    const ratio = (x: { num: Float64Array; den: Float64Array }) => {
      let a = 0;
      let b = 0;
      for (let i = 0; i < x.num.length; i++) {
        a += nc === undefined ? x.num[i]! : Math.min(x.num[i]!, nc);
        b += dc === undefined ? x.den[i]! : Math.min(x.den[i]!, dc);
      }
      return a / b;
    };
    out[metric] = ratio(tt) - ratio(cc);
  }
  return out;
}

describe("heavy users (issue 21's shape), capped as the service caps", () => {
  it("A/A false positives in [3.5, 6.5]% fixed horizon and at most 5.5% over 10 sequential looks; uncapped for comparison", { timeout: 300_000 }, () => {
    const fixed = settings();
    const sequential = settings({ sequential: true });
    const uncapped = settings({ capPercentile: 1 });
    const fp = { fixed: new Map<string, number>(), sequential: new Map<string, number>(), uncapped: new Map<string, number>() };
    for (const m of Object.values(fp)) for (const metric of METRICS) m.set(metric, 0);
    let capped = 0;
    let heavy = 0;
    // The fixed-horizon rate over twice the runs: its bounds are tight (+-1.5 points around 5%).
    for (let run = 0; run < 2 * RUNS; run++) {
      const arms = simulateUsers(21_500_000 + run, 6000, HEAVY_USERS, [0, 0], LOOKS);
      const full = pair(arms);
      const result = compareVariants(full, fixed);
      const r = result.comparisons[0]!;
      const u = compareVariants(full, uncapped).comparisons[0]!;
      for (const metric of METRICS) {
        if (r[metric]!.significant) fp.fixed.set(metric, fp.fixed.get(metric)! + 1);
        if (u[metric]!.significant) fp.uncapped.set(metric, fp.uncapped.get(metric)! + 1);
      }
      const k = result.capping.metrics.get("searchCtr")!;
      capped += k.cappedUsers.get("c")! + k.cappedUsers.get("t")!;
      for (const d of full.values()) for (const n of d.perUser!.impressions as Float64Array) if (n >= 1000) heavy++;
      if (run >= RUNS) continue;
      const any = new Set<string>();
      for (let look = 1; look <= LOOKS; look++) {
        const s = compareVariants(look === LOOKS ? full : pair(arms, look), sequential).comparisons[0]!;
        for (const metric of METRICS) if (s[metric]?.significant) any.add(metric);
      }
      for (const metric of any) fp.sequential.set(metric, fp.sequential.get(metric)! + 1);
    }
    const rate = (n: number) => n / (2 * RUNS);
    const sequentialRate = (n: number) => n / RUNS;
    console.log(`heavy users, A/A, ${2 * RUNS} experiments of 6,000 users (${(heavy / (2 * RUNS)).toFixed(1)} users with 1,000+ searches, ${(capped / (2 * RUNS)).toFixed(1)} users capped for search CTR on average):`);
    for (const metric of METRICS) {
      console.log(`  ${metric}: false positives capped (99th) ${pct(rate(fp.fixed.get(metric)!))}, uncapped ${pct(rate(fp.uncapped.get(metric)!))}; sequential over ${LOOKS} looks (${RUNS} experiments) ${pct(sequentialRate(fp.sequential.get(metric)!))}`);
    }
    for (const metric of METRICS) {
      expect(rate(fp.fixed.get(metric)!), metric).toBeGreaterThanOrEqual(0.035);
      expect(rate(fp.fixed.get(metric)!), metric).toBeLessThanOrEqual(0.065);
      expect(sequentialRate(fp.sequential.get(metric)!), metric).toBeLessThanOrEqual(0.055);
    }
  });

  it("the interval of a planted +10% lift covers the capped metric's true difference 93.5-96.5% of the time", { timeout: 300_000 }, () => {
    const lift = 0.1;
    const s = settings();
    const truth10 = truth(HEAVY_USERS, lift, s.capPercentile);
    const covered = new Map<string, number>(METRICS.map((m) => [m, 0]));
    let detected = 0;
    for (let run = 0; run < RUNS; run++) {
      const r = compareVariants(pair(simulateUsers(21_600_000 + run, 6000, HEAVY_USERS, [0, lift])), s).comparisons[0]!;
      for (const metric of METRICS) {
        const l = r[metric]!.lift;
        if (l.low <= truth10[metric] && truth10[metric] <= l.high) covered.set(metric, covered.get(metric)! + 1);
      }
      if (r.searchCtr!.significant && r.searchCtr!.lift.value > 0) detected++;
    }
    console.log(
      `heavy users, +10% propensity, ${RUNS} experiments: true capped differences ${METRICS.map((m) => `${m} ${truth10[m].toFixed(5)}`).join(", ")}; ` +
        `coverage ${METRICS.map((m) => `${m} ${pct(covered.get(m)! / RUNS)}`).join(", ")}; search CTR detected ${pct(detected / RUNS)}`,
    );
    for (const metric of METRICS) {
      expect(covered.get(metric)! / RUNS, metric).toBeGreaterThanOrEqual(0.935);
      expect(covered.get(metric)! / RUNS, metric).toBeLessThanOrEqual(0.965);
    }
  });
});

describe("the older Pareto shape over users: the power cost of capping", () => {
  it("A/A stays calibrated capped, and a planted lift is found at least as often capped as uncapped", { timeout: 300_000 }, () => {
    const capped = settings();
    const uncapped = settings({ capPercentile: 1 });
    const lift = 0.1;
    let fpCapped = 0;
    let fpUncapped = 0;
    let powerCapped = 0;
    let powerUncapped = 0;
    const mde = { capped: [] as number[], uncapped: [] as number[] };
    for (let run = 0; run < RUNS; run++) {
      const aa = pair(simulateUsers(21_700_000 + run, 2000, PARETO_USERS, [0, 0]));
      if (compareVariants(aa, capped).comparisons[0]!.searchCtr!.significant) fpCapped++;
      if (compareVariants(aa, uncapped).comparisons[0]!.searchCtr!.significant) fpUncapped++;
      const ab = pair(simulateUsers(21_800_000 + run, 2000, PARETO_USERS, [0, lift]));
      const c = compareVariants(ab, capped).comparisons[0]!.searchCtr!;
      const u = compareVariants(ab, uncapped).comparisons[0]!.searchCtr!;
      if (c.significant && c.lift.value > 0) powerCapped++;
      if (u.significant && u.lift.value > 0) powerUncapped++;
      mde.capped.push(c.relativeMde!);
      mde.uncapped.push(u.relativeMde!);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    console.log(
      `Pareto shape, 2,000 users, ${RUNS} experiments: A/A search CTR false positives capped ${pct(fpCapped / RUNS)}, uncapped ${pct(fpUncapped / RUNS)}; ` +
        `+10% propensity detected capped ${pct(powerCapped / RUNS)}, uncapped ${pct(powerUncapped / RUNS)}; median relative MDE capped ${pct(median(mde.capped))}, uncapped ${pct(median(mde.uncapped))}`,
    );
    expect(fpCapped / RUNS).toBeGreaterThanOrEqual(0.035);
    expect(fpCapped / RUNS).toBeLessThanOrEqual(0.065);
    // Capping costs no power here: heavy users add more noise than signal.
    expect(powerCapped).toBeGreaterThanOrEqual(powerUncapped - 0.02 * RUNS);
  });
});
