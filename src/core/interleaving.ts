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
import { normalCdf, zCritical } from "./special-functions.js";
import type { Estimate } from "./statistics.js";

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

/** How the test was computed (see the file comment). */
export type InterleavingTest = "exact" | "monte-carlo" | "normal";

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

/** A user's total: d = wins_a - wins_b, n = decided searches (> 0). */
export interface UserScore {
  d: number;
  n: number;
}

/** Users up to which every sign vector is enumerated. */
export const EXACT_USERS = 12;
/** Users up to which seeded random sign vectors are drawn; the normal approximation beyond. */
export const MONTE_CARLO_USERS = 500;
export const MONTE_CARLO_DRAWS = 4_999;

export interface PreferenceTest {
  delta: Estimate;
  pValue: number;
  significant: boolean;
  test: InterleavingTest;
}

/**
 * The sign-flip test of "no preference" over users and the interval it inverts to (see the file
 * comment); undefined without a decided search. The answer does not depend on the order of
 * `units`.
 */
export function preferenceTest(units: readonly UserScore[], confidence: number): PreferenceTest | undefined {
  const alpha = 1 - zCriticalGuard(confidence);
  const m = units.length;
  let D = 0;
  let N = 0;
  for (const u of units) {
    D += u.d;
    N += u.n;
  }
  if (m === 0 || !(N > 0)) return undefined;
  const estimate = D / N;
  // The same users in the same order whatever order the caller found them in (the Monte Carlo
  // draws are assigned by position). The normal form needs no order: its sums are of integers.
  const sorted = m <= MONTE_CARLO_USERS ? [...units].sort((x, y) => x.d - y.d || x.n - y.n) : units;
  let accepted: (c: number) => boolean;
  let pValue: number;
  let region: (lo: number, hi: number) => [number, number];
  let test: InterleavingTest;
  if (m <= MONTE_CARLO_USERS) {
    test = m <= EXACT_USERS ? "exact" : "monte-carlo";
    const draws = m <= EXACT_USERS ? allSigns(sorted) : randomSigns(sorted, MONTE_CARLO_DRAWS, 0x9e3779b9);
    const extra = test === "exact" ? 0 : 1;
    const total = draws.A.length + extra;
    const tolerance = 1e-9 * (sumAbs(sorted) + 1);
    const count = (c: number) => {
      const observed = Math.abs(D - c * N) - tolerance;
      let k = extra;
      for (let i = 0; i < draws.A.length; i++) if (Math.abs(draws.A[i]! - c * draws.B[i]!) >= observed) k++;
      return k;
    };
    pValue = count(0) / total;
    accepted = (c) => count(c) / total >= alpha;
    region = (lo, hi) => acceptedComponent(draws, D, N, estimate, alpha, total, extra, lo, hi);
  } else {
    test = "normal";
    let sdd = 0;
    let sdn = 0;
    let snn = 0;
    for (const u of sorted) {
      sdd += u.d * u.d;
      sdn += u.d * u.n;
      snn += u.n * u.n;
    }
    const z = zCritical(confidence);
    pValue = sdd > 0 ? Math.min(1, 2 * normalCdf(-Math.abs(D) / Math.sqrt(sdd))) : 1;
    // (D - cN)^2 <= z^2 sum (d - c n)^2: a quadratic q(c) <= 0.
    const qa = N * N - z * z * snn;
    const qb = -2 * (D * N - z * z * sdn);
    const qc = D * D - z * z * sdd;
    accepted = (c) => qa * c * c + qb * c + qc <= 1e-9 * (D * D + z * z * sdd + 1);
    region = (lo, hi) => componentOfRoots(quadraticRoots(qa, qb, qc), accepted, estimate, lo, hi);
  }
  let [low, high] = region(-1, 1);
  const significant = pValue < alpha;
  // A not-rejected 0 is always inside the interval (the accepted set need not be connected).
  if (!significant && accepted(0)) {
    low = Math.min(low, 0);
    high = Math.max(high, 0);
  }
  return { delta: { value: estimate / 2, low: low / 2, high: high / 2 }, pValue: Math.min(1, pValue), significant, test };
}

/** 1 - confidence as the level alpha, checked. */
function zCriticalGuard(confidence: number): number {
  zCritical(confidence); // throws on a confidence outside (0, 1)
  return confidence;
}

const sumAbs = (units: readonly UserScore[]) => units.reduce((s, u) => s + Math.abs(u.d) + u.n, 0);

interface SignDraws {
  /** Per sign vector: sum s_u d_u and sum s_u n_u. */
  A: Float64Array;
  B: Float64Array;
}

function allSigns(units: readonly UserScore[]): SignDraws {
  const m = units.length;
  const V = 1 << m;
  const A = new Float64Array(V);
  const B = new Float64Array(V);
  for (let v = 0; v < V; v++) {
    let a = 0;
    let b = 0;
    for (let i = 0; i < m; i++) {
      const s = (v >> i) & 1 ? -1 : 1;
      a += s * units[i]!.d;
      b += s * units[i]!.n;
    }
    A[v] = a;
    B[v] = b;
  }
  return { A, B };
}

/** mulberry32: small, seeded, portable. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function randomSigns(units: readonly UserScore[], draws: number, seed: number): SignDraws {
  const next = prng(seed);
  const A = new Float64Array(draws);
  const B = new Float64Array(draws);
  for (let v = 0; v < draws; v++) {
    let a = 0;
    let b = 0;
    let bits = 0;
    for (let i = 0; i < units.length; i++) {
      if (i % 32 === 0) bits = next();
      const s = (bits >>> i % 32) & 1 ? -1 : 1;
      a += s * units[i]!.d;
      b += s * units[i]!.n;
    }
    A[v] = a;
    B[v] = b;
  }
  return { A, B };
}

/** Real roots of a c^2 + b c + k = 0 (any degree). */
function quadraticRoots(a: number, b: number, k: number): number[] {
  const scale = Math.max(Math.abs(a), Math.abs(b), Math.abs(k));
  if (scale === 0) return [];
  if (Math.abs(a) <= 1e-12 * scale) return Math.abs(b) <= 1e-12 * scale ? [] : [-k / b];
  const disc = b * b - 4 * a * k;
  if (disc < 0) return [];
  const s = Math.sqrt(disc);
  // Numerically stable pair.
  const q = -0.5 * (b + (b >= 0 ? s : -s));
  const roots = q === 0 ? [0] : [q / a, k / q];
  return roots.filter(Number.isFinite);
}

/**
 * The connected part of [lo, hi] around `center` on which `accepted` holds, given every point
 * where it may change (`breaks`): tested at the middle of each piece between breaks.
 */
function componentOfRoots(breaks: readonly number[], accepted: (c: number) => boolean, center: number, lo: number, hi: number): [number, number] {
  const points = [lo, ...breaks.filter((x) => x > lo && x < hi), hi].sort((x, y) => x - y);
  const pieces: { from: number; to: number; ok: boolean }[] = [];
  for (let i = 0; i + 1 < points.length; i++) if (points[i + 1]! > points[i]!) pieces.push({ from: points[i]!, to: points[i + 1]!, ok: accepted((points[i]! + points[i + 1]!) / 2) });
  return grow(pieces, center);
}

/** From the piece(s) at `center`, the accepted pieces next to each other. */
function grow(pieces: readonly { from: number; to: number; ok: boolean }[], center: number): [number, number] {
  let low = center;
  let high = center;
  const at = pieces.findIndex((p) => p.from <= center && center <= p.to);
  if (at < 0) return [low, high];
  // center may sit on a break: both pieces that touch it are candidates.
  for (let i = at; i < pieces.length && pieces[i]!.from <= center; i++) {
    if (!pieces[i]!.ok) continue;
    let j = i;
    while (j + 1 < pieces.length && pieces[j + 1]!.ok) j++;
    let k = i;
    while (k - 1 >= 0 && pieces[k - 1]!.ok) k--;
    low = Math.min(low, pieces[k]!.from);
    high = Math.max(high, pieces[j]!.to);
  }
  return [low, high];
}

/**
 * The accepted component around the estimate for a randomisation test: each sign vector v counts
 * at c when (A_v - c B_v)^2 >= (D - c N)^2, a quadratic in c; the count changes only at its
 * roots, so the pieces between all roots are swept once, adding and removing each vector's
 * counted stretches.
 */
function acceptedComponent(draws: SignDraws, D: number, N: number, center: number, alpha: number, total: number, extra: number, lo: number, hi: number): [number, number] {
  const V = draws.A.length;
  // Each vector is counted on at most two stretches: their starts and ends, sorted apart.
  const starts = new Float64Array(2 * V);
  const ends = new Float64Array(2 * V);
  let k = 0;
  let base = extra;
  for (let v = 0; v < V; v++) {
    const A = draws.A[v]!;
    const B = draws.B[v]!;
    const qa = B * B - N * N;
    const qb = -2 * (A * B - D * N);
    const qc = A * A - D * D;
    const scale = Math.max(Math.abs(qa), Math.abs(qb), Math.abs(qc));
    if (scale <= 1e-12 * (A * A + B * B + D * D + N * N + 1)) {
      base++; // counted everywhere (the observed signs, or all flipped)
      continue;
    }
    const tolerance = -1e-9 * scale;
    const counted = (c: number) => qa * c * c + qb * c + qc >= tolerance;
    const roots = quadraticRoots(qa, qb, qc).filter((r) => r > lo && r < hi);
    if (roots.length === 2 && roots[0]! > roots[1]!) roots.reverse();
    let from = lo;
    for (let i = 0; i <= roots.length; i++) {
      const to = i < roots.length ? roots[i]! : hi;
      if (to > from && counted((from + to) / 2)) {
        starts[k] = from;
        ends[k++] = to;
      }
      from = Math.max(from, to);
    }
  }
  const s = starts.subarray(0, k).sort();
  const e = ends.subarray(0, k).sort();
  const pieces: { from: number; to: number; ok: boolean }[] = [];
  let count = base;
  let from = lo;
  let i = 0;
  let j = 0;
  while (i < k || j < k) {
    const at = Math.min(i < k ? s[i]! : Infinity, j < k ? e[j]! : Infinity);
    if (at > from) pieces.push({ from, to: at, ok: count / total >= alpha });
    while (i < k && s[i] === at) {
      count++;
      i++;
    }
    while (j < k && e[j] === at) {
      count--;
      j++;
    }
    from = Math.max(from, at);
  }
  if (hi > from) pieces.push({ from, to: hi, ok: count / total >= alpha });
  return grow(pieces, center);
}
