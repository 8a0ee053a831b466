/**
 * Interleaving: the credit rule and the preference on a hand-computed example, team-draft
 * interleaving's properties, and a seeded simulation of how many users interleaving needs to
 * detect a better ranker, against an A/B test of the same two rankers on search CTR.
 */
import { describe, expect, it } from "vitest";
import { teamDraftInterleave } from "../../src/client/interleave.js";
import { differenceTest, independentArms } from "../../src/core/inference.js";
import { ratioEstimate } from "../../src/core/delta-method.js";
import { impressionOutcome, interleavingResult, type InterleavedImpression } from "../../src/core/interleaving.js";
import { mulberry32 } from "../support/prng.js";

describe("the preference from interleaved clicks", () => {
  it("credits each click to the team of its position and computes delta by hand", () => {
    const T = ["a", "b", "a", "b", "a", "b"];
    // u1: a wins (clicks on 0 and 2 -> a 2, b 0); tie (1 and 2 -> 1:1); b wins (3).
    // u2: a wins (4); no credited click (rank 9 beyond the list); no click at all.
    // u3: b wins (1 and 5 and 0 -> b 2, a 1).
    const impressions: InterleavedImpression[] = [
      { userId: "u1", teams: T, clickedRanks: [0, 2] },
      { userId: "u1", teams: T, clickedRanks: [1, 2] },
      { userId: "u1", teams: T, clickedRanks: [3] },
      { userId: "u2", teams: T, clickedRanks: [4] },
      { userId: "u2", teams: T, clickedRanks: [9] },
      { userId: "u2", teams: T, clickedRanks: [] },
      { userId: "u3", teams: T, clickedRanks: [1, 5, 0] },
      // Rankers neither a nor b: not part of this comparison.
      { userId: "u4", teams: ["x", "y"], clickedRanks: [0] },
    ];
    expect(impressions.map((i) => impressionOutcome(i.teams, i.clickedRanks, "a", "b"))).toEqual(["a", "tie", "b", "a", "none", "none", "b", "none"]);
    const r = interleavingResult(impressions, "a", "b", 0.95);
    expect(r).toMatchObject({ impressions: 7, winsA: 2, winsB: 2, ties: 1, users: 3, usersPreferringA: 1, usersPreferringB: 1, usersTied: 1 });
    // (2 + 1/2) / 5 - 1/2 = 0
    expect(r.delta!.value).toBe(0);
    // Users' scores (1.5, 1, 0) over decided impressions (3, 1, 1): the delta-method variance over
    // the three users, by hand: R = 2.5 / 5 = 0.5, residuals y - R n = (0, 0.5, -0.5), mean n = 5/3,
    // var = sum(res^2) / (n - 1) / (n mean_n^2) = 0.25 / (3 * 25/9) = 0.03; below the floor for so
    // few users, Agresti-Caffo's p~ (1 - p~) / (5 + 2) with p~ = (2.5 + 1) / 7 = 0.5: 0.25 / 7.
    expect(r.delta!.high - r.delta!.value).toBeCloseTo(1.959963984540054 * Math.sqrt(Math.max(0.03, 0.25 / 7)), 12);
    expect(r.pValue).toBe(1);
    expect(r.significant).toBe(false);
    // Swapping the rankers mirrors everything.
    const swapped = interleavingResult(impressions, "b", "a", 0.95);
    expect([swapped.winsA, swapped.winsB, swapped.usersPreferringA]).toEqual([r.winsB, r.winsA, r.usersPreferringB]);
  });

  it("is significant exactly when the interval excludes 0", () => {
    const impressions: InterleavedImpression[] = [];
    for (let u = 0; u < 60; u++) for (let k = 0; k < 3; k++) impressions.push({ userId: `u${u}`, teams: ["a", "b"], clickedRanks: [(u + k) % 5 === 0 ? 1 : 0] });
    const r = interleavingResult(impressions, "a", "b", 0.95);
    expect(r.delta!.value).toBeGreaterThan(0);
    expect(r.significant).toBe(r.delta!.low > 0);
    expect(r.significant).toBe(true);
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
