// Issue 21 part 3 (non-inferiority) and issue 27 (the guardrail follows the confidence): the
// status rule on constructed latencies, and seeded simulations of latencies clustered by user
// (printed so they can be quoted).
import { describe, expect, it } from "vitest";
import { latencyGuardrail, p95Interval, type GuardrailStatus, type LatencySketch } from "../../src/core/latency-guardrail.js";
import { coarseLatencyBucket, coarseShareBelow } from "../../src/core/user-totals.js";
import { LATENCY_RELATIVE_ACCURACY, latencyBucket } from "../../src/core/sketches.js";
import { Random } from "../support/ab-simulation.js";

function sketch(values: number[]): LatencySketch {
  const histogram = new Map<number, number>();
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    const bucket = latencyBucket(v);
    histogram.set(bucket, (histogram.get(bucket) ?? 0) + 1);
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  return { histogram, bounds: { min, max } };
}

/** n latencies 1..100 ms (evenly), times factor. */
const even = (n: number, factor = 1) => sketch(Array.from({ length: n }, (_, i) => (1 + ((i * 100) / n)) * factor));

describe("latency guardrail: non-inferiority", () => {
  it("ok only when the upper end is below the threshold, regression when the lower end is above it, else inconclusive", () => {
    const control = even(20_000);
    const ok = latencyGuardrail(even(20_000, 1.03), control, 0.95, 0.1);
    expect(ok.status).toBe("ok");
    expect(ok.relativeDiff!.high).toBeLessThan(0.1);
    const worse = latencyGuardrail(even(20_000, 1.3), control, 0.95, 0.1);
    expect(worse.status).toBe("regression");
    expect(worse.relativeDiff!.low).toBeGreaterThan(0.1);
    // +10%: the interval straddles the threshold
    const edge = latencyGuardrail(even(20_000, 1.1), control, 0.95, 0.1);
    expect(edge.status).toBe("inconclusive");
    expect(edge.relativeDiff!.low).toBeLessThan(0.1);
    expect(edge.relativeDiff!.high).toBeGreaterThan(0.1);
    // few searches: equal latencies but a wide interval: not "ok" any more (was "ok" before issue 21)
    const few = latencyGuardrail(even(150), even(150), 0.95, 0.1);
    expect(few.status).toBe("inconclusive");
    expect(few.relativeDiff!.high).toBeGreaterThan(0.1);
  });

  it("follows the confidence (issue 27): ok at 90%, inconclusive at 99% on the same data", () => {
    // found by scanning factors: the upper end crosses 10% between 90% and 99%
    const control = even(3000);
    const at = (confidence: number, factor: number) => latencyGuardrail(even(3000, factor), control, confidence, 0.1);
    let factor = 1;
    while (at(0.99, factor).status === "inconclusive" && at(0.9, factor).status === "ok") factor -= 0.001;
    for (factor = 1; factor < 1.2 && !(at(0.9, factor).status === "ok" && at(0.99, factor).status === "inconclusive"); factor += 0.001);
    expect(factor).toBeLessThan(1.2);
    expect(at(0.9, factor).relativeDiff!.high).toBeLessThan(0.1);
    expect(at(0.99, factor).relativeDiff!.high).toBeGreaterThan(0.1);
    // the same for regression: the lower end crosses 10% between 90% and 99%
    let worse = 1.1;
    for (; worse < 1.4 && !(at(0.9, worse).status === "regression" && at(0.99, worse).status === "inconclusive"); worse += 0.001);
    expect(worse).toBeLessThan(1.4);
    expect(at(0.9, worse).relativeDiff!.low).toBeGreaterThan(at(0.99, worse).relativeDiff!.low);
  });
});

describe("latency guardrail: calibration (latencies clustered by user)", () => {
  /**
   * One arm: `users` users with 1 + Poisson(searchesPerUser - 1) searches, latency lognormal(ln 80 ms,
   * 0.5) per search times a per-user factor lognormal(0, userSigma) times the arm's factor.
   */
  function arm(rng: Random, users: number, searchesPerUser: number, userSigma: number, factor: number): LatencySketch {
    const values: number[] = [];
    for (let u = 0; u < users; u++) {
      const userFactor = Math.exp(userSigma * rng.gauss());
      const n = 1 + rng.poisson(searchesPerUser - 1);
      for (let s = 0; s < n; s++) values.push(80 * Math.exp(0.5 * rng.gauss()) * userFactor * factor);
    }
    return sketch(values);
  }
  const RUNS = 200;
  function rates(seed: number, users: number, perUser: number, userSigma: number, factor: number): Record<GuardrailStatus, number> {
    const out: Record<GuardrailStatus, number> = { ok: 0, regression: 0, inconclusive: 0, "insufficient data": 0 };
    for (let run = 0; run < RUNS; run++) {
      const rng = new Random(seed + run);
      const c = arm(rng, users, perUser, userSigma, 1);
      const t = arm(rng, users, perUser, userSigma, factor);
      out[latencyGuardrail(t, c, 0.95, 0.1).status]++;
    }
    return out;
  }
  const show = (r: Record<GuardrailStatus, number>) => Object.entries(r).map(([k, v]) => `${k} ${((100 * v) / RUNS).toFixed(1)}%`).join(", ");

  it("a +50% p95 regression at 1,000 users per arm (10 searches each) is flagged; +20% is never 'ok'", () => {
    const plus50 = rates(21_300_000, 1000, 10, 0.45, 1.5);
    const plus20 = rates(21_310_000, 1000, 10, 0.45, 1.2);
    const plus20small = rates(21_320_000, 100, 10, 0.45, 1.2);
    const aa = rates(21_330_000, 500, 10, 0.45, 1);
    const aaIid = rates(21_340_000, 500, 10, 0, 1);
    console.log(`guardrail, ${RUNS} runs each, per-user latency factor lognormal(0, 0.45), threshold 10%, 95%:`);
    console.log(`  +50% p95, 1,000 users per arm: ${show(plus50)}`);
    console.log(`  +20% p95, 1,000 users per arm: ${show(plus20)}`);
    console.log(`  +20% p95, 100 users per arm: ${show(plus20small)}`);
    console.log(`  A/A, 500 users per arm: ${show(aa)}`);
    console.log(`  A/A, 500 users per arm, no user factor (i.i.d. searches): ${show(aaIid)}`);
    expect(plus50.regression / RUNS).toBeGreaterThanOrEqual(0.8);
    // non-inferiority: a real regression above the threshold is never passed
    expect(plus20.ok).toBe(0);
    expect(plus20small.ok).toBe(0);
    expect(aaIid.regression / RUNS).toBeLessThanOrEqual(0.05);
    // the user-clustered A/A (factor lognormal 0.45, 500 users per arm): false REGRESSION at most 5%
    expect(aa.regression / RUNS).toBeLessThanOrEqual(0.05);
  }, 120_000);
});

describe("latency guardrail over users (issue 21): the design effect of per-user latencies", () => {
  /**
   * One arm as storage keeps it: the 1% sketch of every search, and per user its searches and a
   * coarse latency histogram (user-totals.ts). Latency lognormal(ln 80 ms, 0.5) per search times a
   * per-user factor lognormal(0, userSigma) times the arm's factor; 1 + Poisson(perUser - 1) searches.
   */
  function clusteredArm(rng: Random, users: number, perUser: number, userSigma: number, factor: number): LatencySketch & { values: number[][] } {
    const values: number[][] = [];
    for (let u = 0; u < users; u++) {
      const f = Math.exp(userSigma * rng.gauss());
      const n = 1 + rng.poisson(perUser - 1);
      values.push(Array.from({ length: n }, () => 80 * Math.exp(0.5 * rng.gauss()) * f * factor));
    }
    const s = sketch(values.flat());
    // Each user's coarse histogram as (bucket, count) pairs in the order first seen.
    const coarse = values.map((v) => {
      const h = new Map<number, number>();
      for (const ms of v) {
        const bucket = coarseLatencyBucket(ms);
        h.set(bucket, (h.get(bucket) ?? 0) + 1);
      }
      return { buckets: Float64Array.from(h.keys()), counts: Float64Array.from(h.values()) };
    });
    const below = (ms: number) => {
      const out = new Float64Array(coarse.length);
      coarse.forEach(({ buckets, counts }, u) => {
        let sum = 0;
        for (let i = 0; i < buckets.length; i++) sum += counts[i]! * coarseShareBelow(buckets[i]!, ms);
        out[u] = sum;
      });
      return out;
    };
    return { ...s, users: { searches: values.map((v) => v.length), below }, values };
  }
  const RUNS = 200;
  const statuses = (seed: number, users: number, perUser: number, factor: number) => {
    const out: Record<GuardrailStatus, number> = { ok: 0, regression: 0, inconclusive: 0, "insufficient data": 0 };
    for (let run = 0; run < RUNS; run++) {
      const rng = new Random(seed + run);
      const c = clusteredArm(rng, users, perUser, 0.45, 1);
      const t = clusteredArm(rng, users, perUser, 0.45, factor);
      out[latencyGuardrail(t, c, 0.95, 0.1).status]++;
    }
    return out;
  };
  const show = (r: Record<GuardrailStatus, number>) => Object.entries(r).map(([k, v]) => `${k} ${((100 * v) / RUNS).toFixed(1)}%`).join(", ");

  it("A/A false REGRESSION at most 5% (500 users per arm), +50% flagged in at least 80% (1,000 users per arm), +20% reported", { timeout: 300_000 }, () => {
    const aa = statuses(21_400_000, 500, 10, 1);
    const plus50 = statuses(21_410_000, 1000, 10, 1.5);
    const plus20 = statuses(21_420_000, 1000, 10, 1.2);
    const plus20big = statuses(21_430_000, 5000, 10, 1.2);
    console.log(`guardrail over users (design effect), ${RUNS} runs each, per-user factor lognormal(0, 0.45), 10 searches per user on average, threshold 10%, 95%:`);
    console.log(`  A/A, 500 users per arm: ${show(aa)}`);
    console.log(`  +50% p95, 1,000 users per arm: ${show(plus50)}`);
    console.log(`  +20% p95, 1,000 users per arm: ${show(plus20)}`);
    console.log(`  +20% p95, 5,000 users per arm: ${show(plus20big)}`);
    expect(aa.regression / RUNS).toBeLessThanOrEqual(0.05);
    expect(plus50.regression / RUNS).toBeGreaterThanOrEqual(0.8);
    expect(plus20.ok + plus20big.ok).toBe(0);
  });

  it("each arm's interval covers the true p95 about as often as it says, where the search-level one does not; its width matches a bootstrap over users", { timeout: 300_000 }, () => {
    // Every search's latency is lognormal(ln 80, sqrt(0.5^2 + 0.45^2)) (searches per user do not
    // depend on the user's factor): the true p95 is 80 exp(1.6448536269514722 sqrt(0.4525)).
    const trueP95 = 80 * Math.exp(1.6448536269514722 * Math.sqrt(0.25 + 0.45 * 0.45));
    let coveredUsers = 0;
    let coveredSearches = 0;
    const widthRatios: number[] = [];
    const effects: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const rng = new Random(21_440_000 + run);
      const arm = clusteredArm(rng, 500, 10, 0.45, 1);
      const users = p95Interval(arm, 0.95)!;
      const searches = p95Interval({ histogram: arm.histogram, bounds: arm.bounds }, 0.95)!;
      effects.push(users.designEffect!);
      if (users.low <= trueP95 && trueP95 <= users.high) coveredUsers++;
      if (searches.low <= trueP95 && trueP95 <= searches.high) coveredSearches++;
      if (run < 20) {
        // A percentile bootstrap over users (resampling whole users), computed independently: the
        // exact p95 (numpy's linear interpolation) of each resample's searches.
        const p95 = (xs: number[]) => {
          const s = Float64Array.from(xs).sort();
          const h = 0.95 * (s.length - 1);
          const lo = Math.floor(h);
          return s[lo]! + (h - lo) * (s[Math.min(lo + 1, s.length - 1)]! - s[lo]!);
        };
        const boot: number[] = [];
        for (let b = 0; b < 400; b++) {
          const sample: number[] = [];
          for (let u = 0; u < arm.values.length; u++) sample.push(...arm.values[Math.floor(rng.uniform() * arm.values.length)]!);
          boot.push(p95(sample));
        }
        boot.sort((a, b) => a - b);
        // The interval's ends, less the sketch's 1% widening (latency-guardrail.ts), against the bootstrap's exact values.
        widthRatios.push((users.high * (1 - LATENCY_RELATIVE_ACCURACY) - users.low * (1 + LATENCY_RELATIVE_ACCURACY)) / (boot[389]! - boot[9]!));
      }
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    console.log(
      `p95 intervals at 95%, ${RUNS} arms of 500 users (10 searches each, per-user factor lognormal(0, 0.45)): coverage over users ${((100 * coveredUsers) / RUNS).toFixed(1)}%, ` +
        `treating searches as independent ${((100 * coveredSearches) / RUNS).toFixed(1)}%; design effect mean ${mean(effects).toFixed(2)}; width (less the sketch's 1% widening) / bootstrap-over-users width (20 arms, 400 resamples) mean ${mean(widthRatios).toFixed(3)}`,
    );
    expect(coveredUsers / RUNS).toBeGreaterThanOrEqual(0.92);
    expect(coveredSearches / RUNS).toBeLessThan(0.9);
    expect(mean(widthRatios)).toBeGreaterThanOrEqual(0.85);
    expect(mean(widthRatios)).toBeLessThanOrEqual(1.15);
  });
});
