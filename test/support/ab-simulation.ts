// Seeded simulation of A/B data with the real shape: users randomised (not searches), heavy-tailed
// activity, per-user click and no-result propensities, several clicks per search, and users hashed
// into USER_BUCKETS exactly as storage does (userBucket on the user id).
import type { VariantData } from "../../src/core/comparison-model.js";
import { latencyBucket } from "../../src/core/sketches.js";
import { USER_BUCKETS, emptyBucketSums, userBucket, type BucketSums } from "../../src/core/user-buckets.js";
import { mulberry32 } from "./prng.js";

export { mulberry32 } from "./prng.js";

export class Random {
  private readonly next: () => number;
  private spare: number | undefined;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  uniform(): number {
    return this.next();
  }
  /** Standard normal (Box-Muller). */
  gauss(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    const u = 1 - this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  /** Poisson: Knuth's product method for small means, the rounded normal approximation above 30. */
  poisson(mean: number): number {
    if (mean > 30) return Math.max(0, Math.round(mean + Math.sqrt(mean) * this.gauss()));
    const limit = Math.exp(-mean);
    let k = 0;
    let p = this.next();
    while (p > limit) {
      k++;
      p *= this.next();
    }
    return k;
  }
  /** Gamma with an integer shape: a sum of exponentials. */
  private gammaInt(shape: number): number {
    let s = 0;
    for (let i = 0; i < shape; i++) s -= Math.log(1 - this.next());
    return s;
  }
  /** Beta(a, b) for integer a, b. */
  beta(a: number, b: number): number {
    const x = this.gammaInt(a);
    return x / (x + this.gammaInt(b));
  }
  /** Pareto with scale xm and shape alpha. */
  pareto(xm: number, alpha: number): number {
    return xm * Math.pow(1 - this.next(), -1 / alpha);
  }
}

/** Size of the sampled quantile tables that stand in for Beta and lognormal draws (speed). */
const TABLE_SIZE = 1 << 14;
const tables = new Map<string, Float64Array>();

/**
 * A sorted table of TABLE_SIZE draws (fixed seed) of a distribution; sampling an index uniformly is
 * then a draw from a 16384-atom approximation of it, one uniform instead of tens of logarithms.
 */
function table(name: string, draw: (rng: Random) => number): Float64Array {
  let t = tables.get(name);
  if (t === undefined) {
    const rng = new Random(0x5eed);
    t = Float64Array.from({ length: TABLE_SIZE }, () => draw(rng)).sort();
    tables.set(name, t);
  }
  return t;
}

export interface SimulationConfig {
  seed: number;
  users: number;
  /** Arm names, control first, with their assignment weights (default equal). */
  arms: readonly string[];
  weights?: readonly number[];
  /** Relative lift of each arm's click propensity (default 0 everywhere). */
  lifts?: readonly number[];
  /** Pareto activity: expected searches per user over the period = min(cap, Pareto(xm, alpha)). */
  paretoAlpha: number;
  paretoScale: number;
  activityCap: number;
  /** Per-user probability that a search gets a click ~ Beta(a, b) (mean a / (a + b)). */
  clickBeta: readonly [number, number];
  /** Per-user probability of a no-result search ~ Beta(a, b). */
  noResultBeta: readonly [number, number];
  /** A clicked search has 1 + Poisson(extraClicks) clicks. */
  extraClicks: number;
  /** Time slices (looks): every search falls in one uniformly. */
  slices: number;
  /** Also a pre-period with the same activity and propensities (for CUPED). */
  pre: boolean;
  /**
   * Also first clicks (MRR, abandonment): a no-result search is never clicked, a clicked search
   * with results has its first click at rank Geometric(rankP) (0-based), reciprocal rank 1 / (rank + 1).
   * Off by default (and then the random stream is the one of earlier versions).
   */
  firstClicks?: { rankP: number } | undefined;
  /** Also per-search latencies, lognormal(ln(median), sigma) times each arm's factor. */
  latency?: { medianMs: number; sigma: number; factors?: readonly number[] } | undefined;
}

export interface SimulatedArm {
  /** Bucket sums of each time slice (not cumulative). */
  slices: BucketSums[];
  /** Distinct users first seen in each slice. */
  firstSeen: number[];
  pre: BucketSums;
  /** Per-user totals over the whole period (users with at least one search). */
  perUser: { impressions: number[]; searchesWithClicks: number[]; clicks: number[]; noResults: number[]; firstClicked: number[]; reciprocalRanks: number[] };
  latency: Map<number, number>;
  latencyMin: number;
  latencyMax: number;
}

export function simulate(config: SimulationConfig): Map<string, SimulatedArm> {
  const rng = new Random(config.seed);
  const weights = config.weights ?? config.arms.map(() => 1);
  const totalWeight = weights.reduce((a, b) => a + b, 0);
  const arms = config.arms.map(
    (): SimulatedArm => ({
      slices: Array.from({ length: config.slices }, emptyBucketSums),
      firstSeen: new Array<number>(config.slices).fill(0),
      pre: emptyBucketSums(),
      perUser: { impressions: [], searchesWithClicks: [], clicks: [], noResults: [], firstClicked: [], reciprocalRanks: [] },
      latency: new Map(),
      latencyMin: Infinity,
      latencyMax: -Infinity,
    }),
  );
  const [ca, cb] = config.clickBeta;
  const [na, nb] = config.noResultBeta;
  const clickTable = table(`beta ${ca} ${cb}`, (r) => r.beta(ca, cb));
  const noResultTable = table(`beta ${na} ${nb}`, (r) => r.beta(na, nb));
  const latencyTable = config.latency ? table(`lognormal ${config.latency.medianMs} ${config.latency.sigma}`, (r) => config.latency!.medianMs * Math.exp(config.latency!.sigma * r.gauss())) : undefined;
  const pick = (t: Float64Array) => t[Math.floor(rng.uniform() * TABLE_SIZE)]!;
  for (let u = 0; u < config.users; u++) {
    let at = rng.uniform() * totalWeight;
    let armIndex = 0;
    while (armIndex < weights.length - 1 && at >= weights[armIndex]!) at -= weights[armIndex++]!;
    const arm = arms[armIndex]!;
    const bucket = userBucket(`u${config.seed}-${u}`);
    const activity = Math.min(config.activityCap, rng.pareto(config.paretoScale, config.paretoAlpha));
    const baseClick = pick(clickTable);
    const noResult = pick(noResultTable);
    const click = Math.min(1, baseClick * (1 + (config.lifts?.[armIndex] ?? 0)));
    const latencyFactor = config.latency?.factors?.[armIndex] ?? 1;
    const searches = rng.poisson(activity);
    let firstSlice = config.slices;
    let tClicked = 0;
    let tClicks = 0;
    let tNoResults = 0;
    let tFirst = 0;
    let tRr = 0;
    for (let s = 0; s < searches; s++) {
      const slice = Math.floor(rng.uniform() * config.slices);
      if (slice < firstSlice) firstSlice = slice;
      const sums = arm.slices[slice]!;
      sums.impressions[bucket]! += 1;
      if (config.firstClicks) {
        if (rng.uniform() < noResult) {
          sums.noResults[bucket]! += 1;
          tNoResults += 1;
        } else if (rng.uniform() < click) {
          const clicks = 1 + (config.extraClicks > 0 ? rng.poisson(config.extraClicks) : 0);
          let rank = 0;
          while (rng.uniform() >= config.firstClicks.rankP) rank++;
          sums.searchesWithClicks[bucket]! += 1;
          sums.clicks[bucket]! += clicks;
          sums.firstClicked[bucket]! += 1;
          sums.reciprocalRanks[bucket]! += 1 / (rank + 1);
          tClicked += 1;
          tClicks += clicks;
          tFirst += 1;
          tRr += 1 / (rank + 1);
        }
      } else if (rng.uniform() < click) {
        const clicks = 1 + (config.extraClicks > 0 ? rng.poisson(config.extraClicks) : 0);
        sums.searchesWithClicks[bucket]! += 1;
        sums.clicks[bucket]! += clicks;
        tClicked += 1;
        tClicks += clicks;
      }
      if (!config.firstClicks && rng.uniform() < noResult) {
        sums.noResults[bucket]! += 1;
        tNoResults += 1;
      }
      if (latencyTable) {
        const ms = pick(latencyTable) * latencyFactor;
        const key = latencyBucket(ms);
        arm.latency.set(key, (arm.latency.get(key) ?? 0) + 1);
        if (ms < arm.latencyMin) arm.latencyMin = ms;
        if (ms > arm.latencyMax) arm.latencyMax = ms;
      }
    }
    if (searches > 0) {
      arm.firstSeen[firstSlice]! += 1;
      arm.perUser.impressions.push(searches);
      arm.perUser.searchesWithClicks.push(tClicked);
      arm.perUser.clicks.push(tClicks);
      arm.perUser.noResults.push(tNoResults);
      arm.perUser.firstClicked.push(tFirst);
      arm.perUser.reciprocalRanks.push(tRr);
    }
    if (config.pre) {
      const preSearches = rng.poisson(activity);
      for (let s = 0; s < preSearches; s++) {
        arm.pre.impressions[bucket]! += 1;
        if (rng.uniform() < baseClick) {
          arm.pre.searchesWithClicks[bucket]! += 1;
          arm.pre.clicks[bucket]! += 1 + (config.extraClicks > 0 ? rng.poisson(config.extraClicks) : 0);
        }
        if (rng.uniform() < noResult) arm.pre.noResults[bucket]! += 1;
      }
    }
  }
  return new Map(config.arms.map((name, i) => [name, arms[i]!]));
}

/** The VariantData storage would return for slices [0, upTo) of a simulated arm. */
export function variantData(arm: SimulatedArm, upTo: number, withPre: boolean): VariantData {
  const buckets = emptyBucketSums();
  let users = 0;
  for (let k = 0; k < upTo; k++) {
    const s = arm.slices[k]!;
    for (let b = 0; b < USER_BUCKETS; b++) {
      buckets.impressions[b]! += s.impressions[b]!;
      buckets.clicks[b]! += s.clicks[b]!;
      buckets.searchesWithClicks[b]! += s.searchesWithClicks[b]!;
      buckets.noResults[b]! += s.noResults[b]!;
      buckets.firstClicked[b]! += s.firstClicked[b]!;
      buckets.reciprocalRanks[b]! += s.reciprocalRanks[b]!;
    }
    users += arm.firstSeen[k]!;
  }
  const total = (a: Float64Array) => a.reduce((x, y) => x + y, 0);
  return {
    impressions: total(buckets.impressions),
    clicks: total(buckets.clicks),
    searchesWithClicks: total(buckets.searchesWithClicks),
    noResults: total(buckets.noResults),
    users,
    buckets,
    pre: withPre ? arm.pre : undefined,
    latency: arm.latency.size > 0 ? { histogram: arm.latency, bounds: { min: arm.latencyMin, max: arm.latencyMax } } : undefined,
  };
}
