// Seeded per-user simulations for the comparison over users (issue 21): each user's totals per time
// slice, handed to compareVariants as the service hands it the per-user rollups (VariantData.perUser).
// Two shapes: issue 21's heavy users, and the older Pareto shape of ab-simulation.ts.
import type { VariantData } from "../../src/core/comparison-model.js";
import { emptyBucketSums, userBucket } from "../../src/core/user-buckets.js";
import type { UserTotals } from "../../src/core/user-totals.js";
import { Random } from "./ab-simulation.js";

/** Gamma(shape) for any shape > 0 (Marsaglia-Tsang; boosted below 1). */
export function gamma(rng: Random, shape: number): number {
  if (shape < 1) return gamma(rng, shape + 1) * Math.pow(rng.uniform(), 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = rng.gauss();
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rng.uniform();
    if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

export const beta = (rng: Random, a: number, b: number) => {
  const x = gamma(rng, a);
  return x / (x + gamma(rng, b));
};

export interface UserShape {
  /** Searches of a user over the period. */
  searches: (rng: Random) => number;
  /** The user's probability that a search with results gets a click. */
  propensity: (rng: Random) => number;
  /** Probability that a search has no results (never clicked). */
  noResults: (rng: Random) => number;
  /** Extra clicks of a clicked search: 1 + Poisson(extra). */
  extraClicks: number;
}

/**
 * Issue 21's heavy users: searches lognormal(1, 1.1) (at least 1), 0.1% of users with
 * 1,000-2,500 searches, 30% who never click, propensity Beta(0.7, 2.5), 1 + Poisson(0.5) clicks
 * per clicked search, 6% of searches without results.
 */
export const HEAVY_USERS: UserShape = {
  searches: (rng) => (rng.uniform() < 0.001 ? 1000 + Math.floor(rng.uniform() * 1501) : Math.max(1, Math.round(Math.exp(1 + 1.1 * rng.gauss())))),
  propensity: (rng) => (rng.uniform() < 0.3 ? 0 : beta(rng, 0.7, 2.5)),
  noResults: () => 0.06,
  extraClicks: 0.5,
};

/** The shape of test/core/calibration.test.ts: Pareto(2.5, 2) activity capped at 1,000, Poisson searches, Beta(3, 7) clicks, Beta(1, 19) no results. */
export const PARETO_USERS: UserShape = {
  searches: (rng) => rng.poisson(Math.min(1000, rng.pareto(2.5, 2))),
  propensity: (rng) => beta(rng, 3, 7),
  noResults: (rng) => beta(rng, 1, 19),
  extraClicks: 0.4,
};

/** One arm: per user and slice, searches, clicked searches, clicks and no-result searches. */
export interface SimulatedUsers {
  slices: number;
  /** [user * slices + slice] */
  searches: Float64Array;
  clicked: Float64Array;
  clicks: Float64Array;
  noResults: Float64Array;
  users: number;
}

/** `users` users split at random between arms (weights equal), treatment propensities times (1 + lift). */
export function simulateUsers(seed: number, users: number, shape: UserShape, lifts: readonly number[], slices = 1): SimulatedUsers[] {
  const rng = new Random(seed);
  const rows: { arm: number; searches: number[]; clicked: number[]; clicks: number[]; noResults: number[] }[] = [];
  for (let u = 0; u < users; u++) {
    const arm = Math.floor(rng.uniform() * lifts.length);
    const n = shape.searches(rng);
    const p = Math.min(1, shape.propensity(rng) * (1 + lifts[arm]!));
    const q = shape.noResults(rng);
    const row = { arm, searches: new Array<number>(slices).fill(0), clicked: new Array<number>(slices).fill(0), clicks: new Array<number>(slices).fill(0), noResults: new Array<number>(slices).fill(0) };
    for (let s = 0; s < n; s++) {
      const k = slices === 1 ? 0 : Math.floor(rng.uniform() * slices);
      row.searches[k]! += 1;
      if (rng.uniform() < q) row.noResults[k]! += 1;
      else if (p > 0 && rng.uniform() < p) {
        row.clicked[k]! += 1;
        row.clicks[k]! += 1 + rng.poisson(shape.extraClicks);
      }
    }
    if (n > 0) rows.push(row);
  }
  return lifts.map((_, arm) => {
    const mine = rows.filter((r) => r.arm === arm);
    const out: SimulatedUsers = { slices, users: mine.length, searches: new Float64Array(mine.length * slices), clicked: new Float64Array(mine.length * slices), clicks: new Float64Array(mine.length * slices), noResults: new Float64Array(mine.length * slices) };
    mine.forEach((r, i) => {
      out.searches.set(r.searches, i * slices);
      out.clicked.set(r.clicked, i * slices);
      out.clicks.set(r.clicks, i * slices);
      out.noResults.set(r.noResults, i * slices);
    });
    return out;
  });
}

/** What storage would hand the comparison for slices [0, upTo): per-user totals (users seen so far) and their buckets. */
export function userVariantData(arm: SimulatedUsers, upTo = arm.slices, idOffset = 0): VariantData {
  const n = arm.users;
  const sum = (a: Float64Array) => {
    const out = new Float64Array(n);
    for (let u = 0; u < n; u++) for (let k = 0; k < upTo; k++) out[u]! += a[u * arm.slices + k]!;
    return out;
  };
  const [searches, clicked, clicks, noResults] = [sum(arm.searches), sum(arm.clicked), sum(arm.clicks), sum(arm.noResults)];
  const seen: number[] = [];
  for (let u = 0; u < n; u++) if (searches[u]! > 0) seen.push(u);
  const pick = (a: Float64Array) => Float64Array.from(seen, (u) => a[u]!);
  const perUser: UserTotals = {
    ids: Float64Array.from(seen, (u) => u + idOffset),
    impressions: pick(searches),
    clicks: pick(clicks),
    searchesWithClicks: pick(clicked),
    noResults: pick(noResults),
    firstClicked: pick(clicked),
    // No ranks simulated: every first click at rank 0.
    reciprocalRanks: pick(clicked),
  };
  const buckets = emptyBucketSums();
  for (const u of seen) {
    const b = userBucket(`u${u + idOffset}`);
    buckets.impressions[b]! += searches[u]!;
    buckets.clicks[b]! += clicks[u]!;
    buckets.searchesWithClicks[b]! += clicked[u]!;
    buckets.noResults[b]! += noResults[u]!;
    buckets.firstClicked[b]! += clicked[u]!;
    buckets.reciprocalRanks[b]! += clicked[u]!;
  }
  const total = (a: ArrayLike<number>) => {
    let sum = 0;
    for (let i = 0; i < a.length; i++) sum += a[i]!;
    return sum;
  };
  return { impressions: total(perUser.impressions), clicks: total(perUser.clicks), searchesWithClicks: total(perUser.searchesWithClicks), noResults: total(perUser.noResults), users: seen.length, buckets, perUser };
}
