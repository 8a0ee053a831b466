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

/** A growable column of numbers (the users of one arm, slice by slice). */
class Column {
  values = new Float64Array(1024);
  length = 0;
  /** Appends `count` zeros; returns where they start. */
  grow(count: number): number {
    const at = this.length;
    if (at + count > this.values.length) {
      const bigger = new Float64Array(Math.max(2 * this.values.length, at + count));
      bigger.set(this.values.subarray(0, at));
      this.values = bigger;
    }
    this.values.fill(0, at, at + count);
    this.length += count;
    return at;
  }
  take(): Float64Array {
    return this.values.slice(0, this.length);
  }
}

/** `users` users split at random between arms (weights equal), treatment propensities times (1 + lift). */
export function simulateUsers(seed: number, users: number, shape: UserShape, lifts: readonly number[], slices = 1): SimulatedUsers[] {
  const rng = new Random(seed);
  const arms = lifts.map(() => ({ users: 0, searches: new Column(), clicked: new Column(), clicks: new Column(), noResults: new Column() }));
  for (let u = 0; u < users; u++) {
    const arm = Math.floor(rng.uniform() * lifts.length);
    const n = shape.searches(rng);
    const p = Math.min(1, shape.propensity(rng) * (1 + lifts[arm]!));
    const q = shape.noResults(rng);
    if (n <= 0) continue; // a user without searches is never seen (and draws nothing more)
    const into = arms[arm]!;
    into.users++;
    const at = into.searches.grow(slices);
    into.clicked.grow(slices);
    into.clicks.grow(slices);
    into.noResults.grow(slices);
    const [searches, clicked, clicks, noResults] = [into.searches.values, into.clicked.values, into.clicks.values, into.noResults.values];
    for (let s = 0; s < n; s++) {
      const k = at + (slices === 1 ? 0 : Math.floor(rng.uniform() * slices));
      searches[k]! += 1;
      if (rng.uniform() < q) noResults[k]! += 1;
      else if (p > 0 && rng.uniform() < p) {
        clicked[k]! += 1;
        clicks[k]! += 1 + rng.poisson(shape.extraClicks);
      }
    }
  }
  return arms.map((a) => ({ slices, users: a.users, searches: a.searches.take(), clicked: a.clicked.take(), clicks: a.clicks.take(), noResults: a.noResults.take() }));
}

/** Storage's bucket of user `u${id}`, remembered: the simulations ask for the same ids again and again. */
const bucketOfId = new Map<number, number>();
function bucketOf(id: number): number {
  let b = bucketOfId.get(id);
  if (b === undefined) bucketOfId.set(id, (b = userBucket(`u${id}`)));
  return b;
}

/** What storage would hand the comparison for slices [0, upTo): per-user totals (users seen so far) and their buckets. */
export function userVariantData(arm: SimulatedUsers, upTo = arm.slices, idOffset = 0): VariantData {
  const n = arm.users;
  const sum = (a: Float64Array) => {
    if (upTo === arm.slices && arm.slices === 1) return a;
    const out = new Float64Array(n);
    for (let u = 0; u < n; u++) for (let k = 0; k < upTo; k++) out[u]! += a[u * arm.slices + k]!;
    return out;
  };
  const [searches, clicked, clicks, noResults] = [sum(arm.searches), sum(arm.clicked), sum(arm.clicks), sum(arm.noResults)];
  const seen = new Int32Array(n);
  let users = 0;
  for (let u = 0; u < n; u++) if (searches[u]! > 0) seen[users++] = u;
  const pick = (a: Float64Array) => {
    const out = new Float64Array(users);
    for (let i = 0; i < users; i++) out[i] = a[seen[i]!]!;
    return out;
  };
  const ids = new Float64Array(users);
  for (let i = 0; i < users; i++) ids[i] = seen[i]! + idOffset;
  const perUser: UserTotals = {
    ids,
    impressions: pick(searches),
    clicks: pick(clicks),
    searchesWithClicks: pick(clicked),
    noResults: pick(noResults),
    firstClicked: pick(clicked),
    // No ranks simulated: every first click at rank 0.
    reciprocalRanks: pick(clicked),
  };
  const buckets = emptyBucketSums();
  for (let i = 0; i < users; i++) {
    const u = seen[i]!;
    const b = bucketOf(u + idOffset);
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
  return { impressions: total(perUser.impressions), clicks: total(perUser.clicks), searchesWithClicks: total(perUser.searchesWithClicks), noResults: total(perUser.noResults), users, buckets, perUser };
}
