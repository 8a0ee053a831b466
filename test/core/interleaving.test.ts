/**
 * Interleaving: the credit rule and the preference on a hand-computed example, team-draft
 * interleaving's properties, and a seeded simulation of how many users interleaving needs to
 * detect a better ranker, against an A/B test of the same two rankers on search CTR.
 */
import { describe, expect, it } from "vitest";
import { teamDraftInterleave } from "../../src/client/interleave.js";
import { differenceTest, independentArms } from "../../src/core/inference.js";
import { ratioEstimate } from "../../src/core/delta-method.js";
import { EXACT_USERS, MONTE_CARLO_USERS, preferenceTest, type PreferenceTest, type UserScore } from "../../src/core/preference-test.js";
import { impressionOutcome, interleavingResult, mirrorResult, MultileaveTally, type InterleavedImpression } from "../../src/core/interleaving.js";
import { mulberry32 } from "../support/prng.js";

describe("the preference from interleaved clicks", () => {
  it("credits each shown position once to its team and computes delta by hand", () => {
    const T = ["a", "b", "a", "b", "a", "b"];
    // u1: a wins (clicks on 0 and 2 -> a 2, b 0); tie (1 and 2 -> 1:1); b wins (3).
    // u2: a wins (4); no credited click (rank 9 beyond the list: uncredited); no click at all.
    // u3: b wins (1 and 5 and 0 -> b 2, a 1).
    // u5: rank 0 clicked three times and rank 1 once: one position each, a tie (was a win for a).
    const impressions: InterleavedImpression[] = [
      { userId: "u1", teams: T, clickedRanks: [0, 2] },
      { userId: "u1", teams: T, clickedRanks: [1, 2] },
      { userId: "u1", teams: T, clickedRanks: [3] },
      { userId: "u2", teams: T, clickedRanks: [4] },
      { userId: "u2", teams: T, clickedRanks: [9] },
      { userId: "u2", teams: T, clickedRanks: [] },
      { userId: "u3", teams: T, clickedRanks: [1, 5, 0] },
      { userId: "u5", teams: ["a", "b"], clickedRanks: [0, 0, 1, 0] },
      // Rankers neither a nor b: not part of this comparison.
      { userId: "u4", teams: ["x", "y"], clickedRanks: [0] },
      // Only a and c shown: not an (a, b) search, whatever a's clicks.
      { userId: "u6", teams: ["c", "a", "c"], clickedRanks: [1] },
      // b's position was not shown (results_count 1): not an (a, b) search either.
      { userId: "u7", teams: ["a", "b"], clickedRanks: [0], resultsCount: 1 },
    ];
    expect(impressions.map((i) => impressionOutcome(i.teams, i.clickedRanks, "a", "b", i.resultsCount))).toEqual(["a", "tie", "b", "a", "none", "none", "b", "tie", "none", "none", "none"]);
    const r = interleavingResult(impressions, "a", "b", 0.95);
    expect(r).toMatchObject({ impressions: 8, winsA: 2, winsB: 2, ties: 2, uncreditedClicks: 1, users: 4, usersPreferringA: 1, usersPreferringB: 1, usersTied: 2 });
    // (2 + 2/2) / 6 - 1/2 = 0
    expect(r.delta!.value).toBe(0);
    // Users' d = wins_a - wins_b: u1 0, u2 +1, u3 -1, u5 0 (4 users: every sign vector). |D*| >= 0
    // always: p = 1, and no c is rejected: the interval is all of delta's range.
    expect(r.test).toBe("exact");
    expect(r.pValue).toBe(1);
    expect(r.delta).toEqual({ value: 0, low: -0.5, high: 0.5 });
    expect(r.significant).toBe(false);
    // Swapping the rankers mirrors everything.
    const swapped = interleavingResult(impressions, "b", "a", 0.95);
    expect([swapped.winsA, swapped.winsB, swapped.usersPreferringA, swapped.delta!.low]).toEqual([r.winsB, r.winsA, r.usersPreferringB, -r.delta!.high]);
  });

  it("is valid at three users: three users each preferring a are p = 0.25 (2 of 8 sign vectors), not a winner", () => {
    // Issue 21: this was p = 0.0052, significant, interval [0.149, 0.851] (outside delta's range).
    const impressions = ["u1", "u2", "u3"].map((userId) => ({ userId, teams: ["a", "b"], clickedRanks: [0] }));
    const r = interleavingResult(impressions, "a", "b", 0.95);
    expect(r).toMatchObject({ winsA: 3, users: 3, pValue: 0.25, significant: false, test: "exact" });
    expect(r.delta).toEqual({ value: 0.5, low: -0.5, high: 0.5 });
  });

  it("computes the exact sign-flip p-value and interval by hand for five users", () => {
    // d = (2, 1, 1, 1, -1), n = (2, 1, 1, 1, 1): D = 4, N = 6, delta = 1/3.
    const impressions: InterleavedImpression[] = [];
    const add = (user: string, rank: number) => impressions.push({ userId: user, teams: ["a", "b"], clickedRanks: [rank] });
    add("u1", 0);
    add("u1", 0);
    add("u2", 0);
    add("u3", 0);
    add("u4", 0);
    add("u5", 1);
    const r = interleavingResult(impressions, "a", "b", 0.9);
    expect(r.delta!.value).toBeCloseTo(1 / 3, 15);
    // |sum s d| >= 4 over the 32 sign vectors of (2, 1, 1, 1, 1): sums of +-1 over four ones are
    // 4 (1), 2 (4), 0 (6), -2 (4), -4 (1); with +-2: |2 + x| >= 4 for x in {4, 2} (5 vectors),
    // |-2 + x| >= 4 for x in {-4, -2} (5): 10 of 32.
    expect(r.pValue).toBe(10 / 32);
    expect(r.significant).toBe(false);
    // At level 0.1 a c is rejected only when at most 3 of 32 vectors reach |D - cN|: the
    // interval is all c whose count is at least 4 (0.125 >= 0.1); with so few users, all of it.
    expect(r.delta!.low).toBeGreaterThanOrEqual(-0.5);
    expect(r.delta!.high).toBeLessThanOrEqual(0.5);
    expect(r.delta!.low).toBeLessThanOrEqual(0);
  });

  it("is significant exactly when the interval excludes 0, at every test regime", () => {
    for (const users of [8, 60, 700]) {
      const impressions: InterleavedImpression[] = [];
      for (let u = 0; u < users; u++) for (let k = 0; k < 3; k++) impressions.push({ userId: `u${u}`, teams: ["a", "b"], clickedRanks: [(u + k) % 5 === 0 ? 1 : 0] });
      const r = interleavingResult(impressions, "a", "b", 0.95);
      expect(r.test).toBe(users <= EXACT_USERS ? "exact" : users <= MONTE_CARLO_USERS ? "monte-carlo" : "normal");
      expect(r.delta!.value).toBeGreaterThan(0);
      expect(r.significant).toBe(r.delta!.low > 0);
      expect(r.significant).toBe(true);
      expect(r.delta!.high).toBeLessThanOrEqual(0.5);
      expect(r.delta!.low).toBeLessThan(r.delta!.value);
      // Asked the other way round: the mirror image to the last bit (Monte Carlo included).
      expect(interleavingResult(impressions, "b", "a", 0.95)).toEqual(mirrorResult(r));
    }
  });

  it("compares every pair of rankers shown together (multileaving), each search once per pair", () => {
    const tally = new MultileaveTally();
    // x, y, z shown; clicks on y's and z's positions: y vs z tie, y beats x, z beats x.
    tally.add({ userId: "u1", teams: ["x", "y", "z"], clickedRanks: [1, 2, 7] });
    tally.add({ userId: "u2", teams: ["x", "y"], clickedRanks: [0] });
    expect([...tally.pairs.keys()].map((k) => k.split("\u0000").join("/")).sort()).toEqual(["x/y", "x/z", "y/z"]);
    expect(tally.result("y", "x", 0.95)).toMatchObject({ rankerA: "y", rankerB: "x", impressions: 2, winsA: 1, winsB: 1, ties: 0, uncreditedClicks: 1 });
    expect(tally.result("y", "z", 0.95)).toMatchObject({ impressions: 1, ties: 1, uncreditedClicks: 1 });
    const none = tally.result("x", "q", 0.95);
    expect(none).toMatchObject({ impressions: 0, users: 0, significant: false });
    expect(none.delta).toBeUndefined();
  });
});

describe("interleaving A/A: false winners at every size (simulation)", () => {
  // Both rankers return the same list, so only team-draft's coin decides which team a position
  // belongs to: any "winner" is noise. Users differ a lot: activity is Pareto (a few users make
  // most searches), inclination to click log-normal, clicks by position with 1 / (rank + 1).
  const RANKING = Array.from({ length: 10 }, (_, i) => i);
  function experiment(users: number, rand: () => number): InterleavedImpression[] {
    const impressions: InterleavedImpression[] = [];
    for (let u = 0; u < users; u++) {
      const searches = Math.min(200, Math.ceil(1 / Math.pow(1 - rand(), 1 / 1.2)));
      const inclination = Math.exp(Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand()) - 0.5);
      for (let s = 0; s < searches; s++) {
        const { teams } = teamDraftInterleave(RANKING, RANKING, { seed: `${u}:${s}:${rand()}` });
        const clicked: number[] = [];
        teams.forEach((_, rank) => {
          if (rand() < Math.min(1, (0.3 * inclination) / (rank + 1))) clicked.push(rank);
        });
        impressions.push({ userId: `u${u}`, teams, clickedRanks: clicked });
      }
    }
    return impressions;
  }

  it("declares a winner in at most 6.5% of A/A experiments from 3 to 1,000 users", { timeout: 900_000 }, () => {
    const rows: string[] = [];
    // Each regime at its boundaries: exact up to 12 users, Monte Carlo 13-500, normal above (issue
    // 21). More runs at 501, the first size of the normal form: 300 runs there saw 23 winners
    // (7.7%), which 800 runs at other seeds did not repeat (4.25%, 4.75%).
    for (const [users, runs] of [[3, 2000], [5, 2000], [10, 2000], [12, 1000], [13, 1000], [20, 1000], [50, 1000], [100, 1000], [200, 400], [500, 300], [501, 1000], [1000, 300]] as const) {
      const rand = mulberry32(2100 + users);
      const started = Date.now();
      let winners = 0;
      let outside = 0;
      for (let i = 0; i < runs; i++) {
        const r = interleavingResult(experiment(users, rand), "a", "b", 0.95);
        if (r.significant) winners++;
        if (r.delta !== undefined && (r.delta.low < -0.5 || r.delta.high > 0.5)) outside++;
      }
      rows.push(`${users} users: ${((100 * winners) / runs).toFixed(2)}% false winners of ${runs} (${Date.now() - started} ms)`);
      expect(outside, `${users} users: intervals outside [-1/2, 1/2]`).toBe(0);
      expect(winners / runs, `${users} users`).toBeLessThanOrEqual(0.065);
    }
    console.log(`interleaving A/A: ${rows.join("; ")}`);
  });
});

describe("team-draft interleaving", () => {
  const A = ["d1", "d2", "d3", "d4", "d5", "d6"];
  const B = ["d3", "d1", "d7", "d2", "d8"];

  it("shows each result once, alternates fairly, keeps each ranker's order, and is the same for the same seed", () => {
    for (let seed = 0; seed < 200; seed++) {
      const { results, teams } = teamDraftInterleave(A, B, { seed: `q${seed}` });
      expect(new Set(results).size).toBe(results.length);
      expect(new Set(results)).toEqual(new Set([...A, ...B]));
      // While both rankers have results left, every prefix has picks differing by at most one.
      let a = 0;
      let b = 0;
      for (const t of teams.slice(0, 4)) {
        if (t === "a") a++;
        else b++;
        expect(Math.abs(a - b)).toBeLessThanOrEqual(1);
      }
      // A team's picks come in its own ranking's order.
      for (const [team, ranking] of [["a", A], ["b", B]] as const) {
        const picked = results.filter((_, i) => teams[i] === team).map((r) => ranking.indexOf(r));
        expect(picked).toEqual([...picked].sort((x, y) => x - y));
      }
      expect(teamDraftInterleave(A, B, { seed: `q${seed}` })).toEqual({ results, teams });
    }
    // Both coin outcomes happen.
    const firsts = new Set(Array.from({ length: 50 }, (_, i) => teamDraftInterleave(A, B, { seed: `s${i}` }).teams[0]));
    expect(firsts).toEqual(new Set(["a", "b"]));
  });

  it("takes team names, a length and a key", () => {
    const r = teamDraftInterleave([{ id: 1 }, { id: 2 }], [{ id: 2 }, { id: 3 }], { seed: "x", teamA: "bm25", teamB: "neural", length: 2 }, (d) => d.id);
    expect(r.results).toHaveLength(2);
    expect(new Set(r.teams)).toEqual(new Set(["bm25", "neural"]));
    expect(() => teamDraftInterleave(A, B, { seed: "x", teamA: "same", teamB: "same" })).toThrow(/must differ/);
  });
});

describe("interleaving against an A/B test (simulation)", () => {
  // Ten results of graded relevance; users examine rank r with probability 1 / (r + 1) and click
  // what they examine with probability relevance x their own inclination (log-normal, mean 1).
  // Ranker b orders by relevance; ranker a swaps its 2nd and 3rd results: worse, though it shows
  // the same results, which moves little in "did the search get a click".
  const RELEVANCE = [0.6, 0.5, 0.3, 0.25, 0.2, 0.15, 0.1, 0.08, 0.05, 0.05];
  const RANKING_B = RELEVANCE.map((_, i) => i);
  const RANKING_A = [0, 2, 1, 3, 4, 5, 6, 7, 8, 9];
  const SEARCHES_PER_USER = 4;

  function clicks(ranking: readonly number[], inclination: number, rand: () => number): number[] {
    const clicked: number[] = [];
    ranking.forEach((doc, rank) => {
      if (rand() < (1 / (rank + 1)) * Math.min(1, RELEVANCE[doc]! * inclination)) clicked.push(rank);
    });
    return clicked;
  }
  const inclinationOf = (rand: () => number) => Math.exp(0.5 * Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand()) - 0.125);

  /** Detected "b better" at 5% (two-sided) in one simulated experiment of `users` users. */
  function interleavingDetects(users: number, rand: () => number): boolean {
    const impressions: InterleavedImpression[] = [];
    for (let u = 0; u < users; u++) {
      const inclination = inclinationOf(rand);
      for (let s = 0; s < SEARCHES_PER_USER; s++) {
        const { results, teams } = teamDraftInterleave(RANKING_A, RANKING_B, { seed: `${u}:${s}:${rand()}` });
        impressions.push({ userId: `u${u}`, teams, clickedRanks: clicks(results, inclination, rand) });
      }
    }
    const r = interleavingResult(impressions, "a", "b", 0.95);
    return r.significant && r.delta!.value < 0;
  }

  function abDetects(users: number, rand: () => number): boolean {
    // Per user: searches and searches with a click, each user in one arm (50/50).
    const arms = [0, 1].map(() => ({ clicked: [] as number[], searches: [] as number[] }));
    for (let u = 0; u < users; u++) {
      const arm = u % 2;
      const inclination = inclinationOf(rand);
      let clicked = 0;
      for (let s = 0; s < SEARCHES_PER_USER; s++) if (clicks(arm === 0 ? RANKING_A : RANKING_B, inclination, rand).length > 0) clicked++;
      arms[arm]!.clicked.push(clicked);
      arms[arm]!.searches.push(SEARCHES_PER_USER);
    }
    const [a, b] = arms.map((x) => ratioEstimate(x.clicked, x.searches, "proportion")!);
    const test = differenceTest(independentArms(b!, a!), 0.95);
    return test.significant && test.difference.value > 0;
  }

  /** The smallest user count on a doubling grid with at least 80% power over `runs` experiments. */
  function usersFor80(detects: (users: number, rand: () => number) => boolean, from: number, to: number, runs: number, seed: number): { users: number; power: number } | undefined {
    for (let users = from; users <= to; users *= 2) {
      const rand = mulberry32(seed + users);
      let hits = 0;
      for (let i = 0; i < runs; i++) if (detects(users, rand)) hits++;
      if (hits / runs >= 0.8) return { users, power: hits / runs };
    }
    return undefined;
  }

  it("detects the better ranker with far fewer users than the A/B test on search CTR needs", { timeout: 120_000 }, () => {
    const interleaving = usersFor80(interleavingDetects, 25, 3_200, 100, 11)!;
    const ab = usersFor80(abDetects, 100, 102_400, 60, 12);
    console.log(
      `interleaving simulation: 80% power with ${interleaving.users} users (power ${interleaving.power}); ` +
        `A/B test on search CTR: ${ab ? `${ab.users} users (power ${ab.power})` : "not reached by 102,400 users"}`,
    );
    expect(interleaving).toBeDefined();
    // Far fewer: at least ten times fewer users.
    expect((ab?.users ?? 204_800) / interleaving.users).toBeGreaterThanOrEqual(10);
  });
});

describe("the interleaving result follows the requested confidence (issue 27)", () => {
  // Users who each decided 4 searches, a slight lean to A: p between 0.01 and 0.10 in each regime.
  const lean = (users: number, seed: number, p: number): UserScore[] => {
    const rnd = mulberry32(seed);
    return Array.from({ length: users }, () => {
      let d = 0;
      for (let i = 0; i < 4; i++) d += rnd() < p ? 1 : -1;
      return { d, n: 4 };
    });
  };
  // Seeds whose data give p in (0.01, 0.10): found once by scanning seeds, fixed here.
  const SEED_900 = 1;
  const half = (t: PreferenceTest) => (t.delta.high - t.delta.low) / 2;

  it("normal regime (more than 500 users): the interval's half-width scales with z, significance flips between 90% and 99%", () => {
    const units = lean(900, SEED_900, 0.515);
    const at90 = preferenceTest(units, 0.9)!;
    const at99 = preferenceTest(units, 0.99)!;
    expect(at90.test).toBe("normal");
    expect(at90.pValue).toBeCloseTo(at99.pValue, 12);
    expect(at90.pValue).toBeGreaterThan(0.01);
    expect(at90.pValue).toBeLessThan(0.1);
    expect(at90.significant).toBe(true);
    expect(at99.significant).toBe(false);
    // z(0.995) / z(0.95) = 2.5758293 / 1.6448536 (scipy.stats.norm.ppf)
    expect(half(at99) / half(at90)).toBeCloseTo(2.5758293035489 / 1.6448536269514722, 2);
  });

  it("Monte Carlo regime: the p-value is the share of the 4,999 seeded sign vectors (with the observed one) at least as extreme, recounted user by user", () => {
    // The plain count the service's tabled sums must reproduce exactly: users sorted by (d, n),
    // one 32-bit word of mulberry32(0x9e3779b9) per 32 users, bit i set = user i's sign flipped.
    for (const [users, seed, p] of [[13, 3, 0.6], [37, 5, 0.55], [200, 7, 0.52], [500, 9, 0.51]] as const) {
      const units = lean(users, seed, p).map((u, i) => ({ d: u.d + (i % 3) - 1, n: u.n + (i % 3) }));
      const sorted = [...units].sort((x, y) => x.d - y.d || x.n - y.n);
      const word = mulberry32(0x9e3779b9);
      const D = sorted.reduce((sum, u) => sum + u.d, 0);
      const tolerance = 1e-9 * (sorted.reduce((sum, u) => sum + Math.abs(u.d) + u.n, 0) + 1);
      let atLeast = 0;
      for (let v = 0; v < 4_999; v++) {
        let a = 0;
        let bits = 0;
        for (let i = 0; i < sorted.length; i++) {
          if (i % 32 === 0) bits = word() * 4294967296;
          a += (bits >>> i % 32) & 1 ? -sorted[i]!.d : sorted[i]!.d;
        }
        if (Math.abs(a) >= Math.abs(D) - tolerance) atLeast++;
      }
      const test = preferenceTest(units, 0.95)!;
      expect(test.test, `${users} users`).toBe("monte-carlo");
      expect(test.pValue, `${users} users`).toBe((1 + atLeast) / 5_000);
    }
  });

  it("exact and Monte Carlo regimes: the 99% interval strictly contains the 90% one", () => {
    for (const users of [10, 200]) {
      const units = lean(users, 11, 0.6);
      const at90 = preferenceTest(units, 0.9)!;
      const at99 = preferenceTest(units, 0.99)!;
      expect(at99.delta.low, `${users} users`).toBeLessThan(at90.delta.low);
      expect(at99.delta.high, `${users} users`).toBeGreaterThan(at90.delta.high);
    }
  });
});
