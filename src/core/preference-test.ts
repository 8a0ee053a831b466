/**
 * The interleaving preference test (interleaving.ts, whose file comment gives the method): the
 * sign-flip test of "no preference" over users' totals, exact, Monte Carlo or normal by the
 * number of users, and the interval it inverts to.
 */
import { normalCdf, zCritical } from "./special-functions.js";
import type { Estimate } from "./statistics.js";

/** How the test was computed (see the file comment). */
export type InterleavingTest = "exact" | "monte-carlo" | "normal";

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

/**
 * `draws` seeded random sign vectors: one 32-bit word of the generator per 32 users, bit i of it
 * the sign of user i (set: -1). Summed a byte at a time: each run of 8 users has the sums of its
 * 256 sign patterns tabled, so a draw costs m/8 additions instead of m (the test's users are at
 * most MONTE_CARLO_USERS; the d and n are integers, whose sums are exact in any order).
 */
function randomSigns(units: readonly UserScore[], draws: number, seed: number): SignDraws {
  const next = prng(seed);
  const m = units.length;
  const groups = Math.ceil(m / 8);
  const tableA = new Float64Array(groups * 256);
  const tableB = new Float64Array(groups * 256);
  for (let g = 0; g < groups; g++) {
    for (let pattern = 0; pattern < 256; pattern++) {
      let a = 0;
      let b = 0;
      for (let j = 0; j < 8 && g * 8 + j < m; j++) {
        const u = units[g * 8 + j]!;
        const s = (pattern >>> j) & 1 ? -1 : 1;
        a += s * u.d;
        b += s * u.n;
      }
      tableA[g * 256 + pattern] = a;
      tableB[g * 256 + pattern] = b;
    }
  }
  const A = new Float64Array(draws);
  const B = new Float64Array(draws);
  for (let v = 0; v < draws; v++) {
    let a = 0;
    let b = 0;
    for (let g = 0; g < groups; g += 4) {
      const bits = next();
      for (let byte = 0; byte < 4 && g + byte < groups; byte++) {
        const at = (g + byte) * 256 + ((bits >>> (8 * byte)) & 255);
        a += tableA[at]!;
        b += tableB[at]!;
      }
    }
    A[v] = a;
    B[v] = b;
  }
  return { A, B };
}

/**
 * Real roots of a c^2 + b c + k = 0 (any degree) written to `out`; returns how many (0-2). Without
 * allocation: the randomisation test solves one per sign vector.
 */
function realRoots(a: number, b: number, k: number, out: Float64Array): number {
  const scale = Math.max(Math.abs(a), Math.abs(b), Math.abs(k));
  if (scale === 0) return 0;
  if (Math.abs(a) <= 1e-12 * scale) {
    if (Math.abs(b) <= 1e-12 * scale) return 0;
    out[0] = -k / b;
    return Number.isFinite(out[0]) ? 1 : 0;
  }
  const disc = b * b - 4 * a * k;
  if (disc < 0) return 0;
  const s = Math.sqrt(disc);
  // Numerically stable pair.
  const q = -0.5 * (b + (b >= 0 ? s : -s));
  if (q === 0) {
    out[0] = 0;
    return 1;
  }
  let n = 0;
  const first = q / a;
  const second = k / q;
  if (Number.isFinite(first)) out[n++] = first;
  if (Number.isFinite(second)) out[n++] = second;
  return n;
}

/** Real roots of a c^2 + b c + k = 0 (any degree). */
function quadraticRoots(a: number, b: number, k: number): number[] {
  const out = new Float64Array(2);
  return Array.from(out.subarray(0, realRoots(a, b, k, out)));
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
  const roots = new Float64Array(2);
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
    // Its roots inside (lo, hi), in order, then the stretches between them where it counts.
    let inside = 0;
    for (let r = 0, found = realRoots(qa, qb, qc, roots); r < found; r++) if (roots[r]! > lo && roots[r]! < hi) roots[inside++] = roots[r]!;
    if (inside === 2 && roots[0]! > roots[1]!) roots.reverse();
    let from = lo;
    for (let i = 0; i <= inside; i++) {
      const to = i < inside ? roots[i]! : hi;
      const c = (from + to) / 2;
      if (to > from && qa * c * c + qb * c + qc >= tolerance) {
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
