/**
 * Interleaving: comparing rankers on the same searches. Each result list mixes the rankers'
 * results (team-draft interleaving, Radlinski, Kurup, Joachims, CIKM 2008; with more than two
 * rankers, team-draft multileaving, Schuth et al., CIKM 2014), every shown position labelled with
 * the ranker ("team") that contributed it.
 *
 * Credit (the contract; the proto comments say the same):
 * - The shown positions of a search are 0 .. min(len(teams), results_count) - 1.
 * - Each shown position that has at least one linked click credits its team once, however often
 *   it was clicked (team-draft credits clicked documents, not clicks).
 * - A click at a position that was not shown credits no one and is counted as uncredited.
 * - A search counts for the pair (A, B) only when both A and B contributed shown positions; it is
 *   a win for the one credited with more positions, a tie when both got as many (> 0), and
 *   undecided without credit to either.
 * - Every pair of rankers present in a search is compared on it (pairwise multileaving).
 *
 * The preference for A is (Chapelle, Joachims, Radlinski, Yue, TOIS 2012)
 *   delta = (wins_a + ties / 2) / (wins_a + wins_b + ties) - 1/2 = D / (2 N),
 * with D = wins_a - wins_b and N = wins_a + wins_b + ties summed over users.
 *
 * The test takes the USER as the unit, and is valid at any number of users: a sign-flip
 * (randomisation) test on the users' totals d_u = wins_a - wins_b. When the rankers are
 * interchangeable (an A/A test, or no preference), team-draft's coin makes each user's d_u
 * symmetric about 0 and independent of the others', so flipping signs gives the exact null
 * distribution of D. Up to EXACT_USERS users every one of the 2^m sign vectors is enumerated
 * (exact; 3 users can never reach p < 0.25); up to MONTE_CARLO_USERS users MONTE_CARLO_DRAWS seeded
 * random sign vectors are drawn and p = (1 + #{|D*| >= |D|}) / (1 + draws), which is valid for
 * any number of draws; beyond that, the normal approximation of the self-normalised sum
 * D / sqrt(sum d_u^2), which is the same test's large-sample form. The interval inverts the
 * same test on the residuals d_u - c n_u (every c whose test does not reject, c = 2 delta), so
 * it lies in [-1/2, 1/2] and excludes 0 exactly when the result is significant.
 */
import type { Estimate } from "./statistics.js";
import { preferenceTest, type InterleavingTest, type UserScore } from "./preference-test.js";

/** One interleaved search: its user, the team of each position, its result count, and the ranks clicked (one per click). */
export interface InterleavedImpression {
  userId: string;
  teams: readonly string[];
  clickedRanks: readonly number[];
  /** Results shown; positions from here on were not shown (default: as many as teams). */
  resultsCount?: number | undefined;
}

export type Outcome = "a" | "b" | "tie" | "none";

/** The credit of one search: credited positions per ranker, and clicks on positions not shown. */
export interface SearchCredit {
  /** Ranker -> shown positions credited (clicked at least once); every ranker with a shown position is present. */
  credit: Map<string, number>;
  uncreditedClicks: number;
}

export function searchCredit(teams: readonly string[], clickedRanks: readonly number[], resultsCount = teams.length): SearchCredit {
  const shown = Math.max(0, Math.min(teams.length, resultsCount));
  const credit = new Map<string, number>();
  for (let r = 0; r < shown; r++) if (!credit.has(teams[r]!)) credit.set(teams[r]!, 0);
  const seen = new Set<number>();
  let uncreditedClicks = 0;
  for (const rank of clickedRanks) {
    if (!(rank >= 0 && rank < shown)) {
      uncreditedClicks++;
      continue;
    }
    if (seen.has(rank)) continue;
    seen.add(rank);
    const team = teams[rank]!;
    credit.set(team, credit.get(team)! + 1);
  }
  return { credit, uncreditedClicks };
}

/** Which of `a` and `b` a search's clicks favour; "none" also when it does not count for the pair. */
export function impressionOutcome(teams: readonly string[], clickedRanks: readonly number[], a: string, b: string, resultsCount?: number): Outcome {
  const { credit } = searchCredit(teams, clickedRanks, resultsCount);
  const ca = credit.get(a);
  const cb = credit.get(b);
  if (ca === undefined || cb === undefined) return "none";
  return outcomeOf(ca, cb);
}

const outcomeOf = (ca: number, cb: number): Outcome => (ca === 0 && cb === 0 ? "none" : ca > cb ? "a" : cb > ca ? "b" : "tie");

export interface InterleavingResult {
  rankerA: string;
  rankerB: string;
  /** Searches that count for the pair (both rankers shown). */
  impressions: number;
  winsA: number;
  winsB: number;
  ties: number;
  /** Clicks on those searches at positions that were not shown. */
  uncreditedClicks: number;
  /** Users with at least one decided search (win or tie). */
  users: number;
  usersPreferringA: number;
  usersPreferringB: number;
  usersTied: number;
  /** Preference for ranker a, with its interval; undefined without wins or ties. */
  delta?: Estimate | undefined;
  pValue?: number | undefined;
  significant: boolean;
  test?: InterleavingTest | undefined;
}

/**
 * One pair's mergeable state: counts, and per user (any key: a user id, or a user number)
 * d = wins_a - wins_b and n = decided searches. Adding two tallies of disjoint searches gives the
 * tally of their union (a user's sums add up).
 */
export interface PairTally<K = string> {
  a: string;
  b: string;
  impressions: number;
  winsA: number;
  winsB: number;
  ties: number;
  uncreditedClicks: number;
  users: Map<K, { d: number; n: number }>;
}

export const emptyPairTally = <K>(a: string, b: string): PairTally<K> => ({ a, b, impressions: 0, winsA: 0, winsB: 0, ties: 0, uncreditedClicks: 0, users: new Map() });

/** Pair key of two rankers, in order (a < b). */
export const pairKey = (a: string, b: string) => `${a}\u0000${b}`;

/** Adds `from` into `into` (same pair and orientation). */
export function mergePairTally<K>(into: PairTally<K>, from: PairTally<K>): PairTally<K> {
  into.impressions += from.impressions;
  into.winsA += from.winsA;
  into.winsB += from.winsB;
  into.ties += from.ties;
  into.uncreditedClicks += from.uncreditedClicks;
  for (const [k, u] of from.users) {
    const have = into.users.get(k);
    if (have) {
      have.d += u.d;
      have.n += u.n;
    } else into.users.set(k, { d: u.d, n: u.n });
  }
  return into;
}

/**
 * Every pair of rankers of a set of searches (pairs keyed a < b), one search at a time: what it
 * keeps is per pair and user, so a caller can stream a window's searches through it.
 */
export class MultileaveTally<K = string> {
  readonly pairs = new Map<string, PairTally<K>>();

  add(imp: InterleavedImpression, user: K = imp.userId as unknown as K): void {
    const { credit, uncreditedClicks } = searchCredit(imp.teams, imp.clickedRanks, imp.resultsCount);
    if (credit.size < 2) return;
    const rankers = [...credit.keys()].sort();
    for (let i = 0; i < rankers.length; i++) {
      for (let j = i + 1; j < rankers.length; j++) {
        const [a, b] = [rankers[i]!, rankers[j]!];
        const key = pairKey(a, b);
        let p = this.pairs.get(key);
        if (!p) this.pairs.set(key, (p = emptyPairTally<K>(a, b)));
        p.impressions++;
        p.uncreditedClicks += uncreditedClicks;
        const outcome = outcomeOf(credit.get(a)!, credit.get(b)!);
        if (outcome === "none") continue;
        if (outcome === "a") p.winsA++;
        else if (outcome === "b") p.winsB++;
        else p.ties++;
        let u = p.users.get(user);
        if (!u) p.users.set(user, (u = { d: 0, n: 0 }));
        u.d += outcome === "a" ? 1 : outcome === "b" ? -1 : 0;
        u.n++;
      }
    }
  }

  /** The comparison of `a` against `b` (either order), or an empty one when no search showed both. */
  result(a: string, b: string, confidence: number): InterleavingResult {
    return orientedResult(this.pairs, a, b, confidence);
  }

  /** The tally of `a` against `b` in that orientation (empty when none). */
  pair(a: string, b: string): PairTally<K> {
    const p = this.pairs.get(a < b ? pairKey(a, b) : pairKey(b, a));
    if (!p) return emptyPairTally<K>(a, b);
    return a < b ? p : flipPair(p);
  }
}

/**
 * The comparison of `a` against `b` from tallies keyed by pairKey (a < b): tested in that
 * canonical orientation and mirrored for the other, so (a, b) and (b, a) are mirror images to the
 * last bit (the Monte Carlo draws are assigned to users in an order of their totals, which
 * mirroring would change).
 */
export function orientedResult<K>(pairs: ReadonlyMap<string, PairTally<K>>, a: string, b: string, confidence: number): InterleavingResult {
  const canonical = a < b;
  const p = pairs.get(canonical ? pairKey(a, b) : pairKey(b, a)) ?? emptyPairTally<K>(canonical ? a : b, canonical ? b : a);
  const r = pairResult(p, confidence);
  return canonical ? r : mirrorResult(r);
}

/** A result seen from the other ranker: wins and preferences swapped, delta and its interval negated. */
export function mirrorResult(r: InterleavingResult): InterleavingResult {
  return {
    ...r,
    rankerA: r.rankerB,
    rankerB: r.rankerA,
    winsA: r.winsB,
    winsB: r.winsA,
    usersPreferringA: r.usersPreferringB,
    usersPreferringB: r.usersPreferringA,
    delta: r.delta === undefined ? undefined : { value: -r.delta.value, low: -r.delta.high, high: -r.delta.low },
  };
}

/** The same tally seen from the other ranker. */
export function flipPair<K>(p: PairTally<K>): PairTally<K> {
  return {
    a: p.b,
    b: p.a,
    impressions: p.impressions,
    winsA: p.winsB,
    winsB: p.winsA,
    ties: p.ties,
    uncreditedClicks: p.uncreditedClicks,
    users: new Map([...p.users].map(([k, u]) => [k, { d: -u.d, n: u.n }])),
  };
}

/** The comparison of rankers `a` and `b` over `impressions`. */
export function interleavingResult(impressions: Iterable<InterleavedImpression>, a: string, b: string, confidence: number): InterleavingResult {
  const tally = new MultileaveTally();
  for (const imp of impressions) tally.add(imp);
  return tally.result(a, b, confidence);
}

/** The result of one pair's tally: counts, users' preferences, delta and its test. */
export function pairResult<K>(p: PairTally<K>, confidence: number): InterleavingResult {
  const out: InterleavingResult = {
    rankerA: p.a,
    rankerB: p.b,
    impressions: p.impressions,
    winsA: p.winsA,
    winsB: p.winsB,
    ties: p.ties,
    uncreditedClicks: p.uncreditedClicks,
    users: 0,
    usersPreferringA: 0,
    usersPreferringB: 0,
    usersTied: 0,
    significant: false,
  };
  const units: UserScore[] = [];
  for (const u of p.users.values()) {
    if (u.n <= 0) continue;
    units.push({ d: u.d, n: u.n });
    if (u.d > 0) out.usersPreferringA++;
    else if (u.d < 0) out.usersPreferringB++;
    else out.usersTied++;
  }
  out.users = units.length;
  const test = preferenceTest(units, confidence);
  if (test === undefined) return out;
  return { ...out, ...test };
}
