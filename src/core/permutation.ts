/**
 * A studentized permutation test over users for the difference of two ratio metrics, for arms
 * with few users (comparison.ts uses it when the smaller arm has at most PERMUTATION_MAX_USERS).
 *
 * The statistic is the one of the large-sample test: t = (R_t - R_c) / sqrt(V_t + V_c), each R the
 * ratio of the arm's (capped) per-user sums and V its delta-method variance (floored where
 * degenerate, as everywhere). Its reference distribution is that of t over re-assignments of the
 * users to the two arms (arm sizes kept): every one of the C(n_t + n_c, n_t) splits when there are
 * at most EXACT_SPLITS of them, else MONTE_CARLO_DRAWS seeded random splits. p-values:
 *   exact:       p = #{splits with |t*| >= |t|} / C   (the observed split is one of them),
 *   Monte Carlo: p = (1 + #{draws with |t*| >= |t|}) / (1 + draws)   (Phipson, Smyth 2010),
 * both valid at any number of users when the arms are exchangeable (an A/A test, or no effect on
 * anyone), and, because t is studentized, asymptotically valid when only the means are equal
 * (Janssen 1997; Chung, Romano 2013). Two users per arm can never reach p < 1/3 (6 splits, t and
 * -t always among them): the "2 users, p = 4.4e-5" is no longer possible.
 *
 * One method per metric still: the critical value c* is the order statistic of |t*| such that
 * p < alpha exactly when |t| > c*, and the interval is R_t - R_c +- c* sqrt(V_t + V_c), so
 * `significant` holds exactly when the interval excludes 0 (and Fieller's relative interval, with
 * the same c*). Every metric of a comparison is tested on the same splits. The splits are drawn
 * from a fixed seed: the same data give the same answer.
 *
 * References: E. J. G. Pitman (1937), "Significance tests which may be applied to samples from any
 * populations", JRSS Suppl. 4; A. Janssen (1997), "Studentized permutation tests for non-i.i.d.
 * hypotheses and the generalized Behrens-Fisher problem", Stat. Probab. Letters 36; E. Chung, J. P.
 * Romano (2013), "Exact and asymptotically robust permutation tests", Ann. Statist. 41(2);
 * B. Phipson, G. K. Smyth (2010), "Permutation P-values should never be zero", SAGMB 9(1).
 */

/** Arms with at most this many users (the smaller one) are tested by permutation. */
export const PERMUTATION_MAX_USERS = 200;
/** Up to this many splits, every split is enumerated (exact). */
export const EXACT_SPLITS = 5000;
/** Random splits otherwise. */
export const MONTE_CARLO_DRAWS = 2000;
const SEED = 0x21_2021;

/** One metric's per-user numerators and denominators in each arm, and the variance of a ratio from its sums. */
export interface PermutationMetric {
  treatment: { num: Float64Array; den: Float64Array };
  control: { num: Float64Array; den: Float64Array };
  /** The (floored) variance of a ratio estimate from its per-unit sums, as the large-sample test computes it; undefined when it has none. */
  variance: (s: Sums) => number | undefined;
}

/** Sufficient statistics of an arm's (Y_i, N_i). */
export interface Sums {
  units: number;
  numerator: number;
  denominator: number;
  numeratorSquares: number;
  denominatorSquares: number;
  products: number;
}

export interface PermutationResult {
  /** The observed statistic. */
  t: number;
  pValue: number;
  /** p < alpha exactly when |t| > critical. */
  critical: number;
  exact: boolean;
  splits: number;
}

function mulberry32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** C(n, k) as a float, or Infinity once above `limit`. */
function choose(n: number, k: number, limit: number): number {
  let c = 1;
  for (let i = 1; i <= k; i++) {
    c = (c * (n - k + i)) / i;
    if (c > limit) return Infinity;
  }
  return Math.round(c);
}

/** The statistic from the chosen side's sums and the totals: the chosen side is the treatment when `chosenIsTreatment`. `rest` is scratch space for the other side's sums. */
function statistic(m: PermutationMetric, chosen: Sums, total: Sums, chosenIsTreatment: boolean, rest: Sums = emptySums()): number {
  rest.units = total.units - chosen.units;
  rest.numerator = total.numerator - chosen.numerator;
  rest.denominator = total.denominator - chosen.denominator;
  rest.numeratorSquares = total.numeratorSquares - chosen.numeratorSquares;
  rest.denominatorSquares = total.denominatorSquares - chosen.denominatorSquares;
  rest.products = total.products - chosen.products;
  const t = chosenIsTreatment ? chosen : rest;
  const c = chosenIsTreatment ? rest : chosen;
  if (!(t.denominator > 0) || !(c.denominator > 0)) return Infinity;
  const vt = m.variance(t);
  const vc = m.variance(c);
  if (vt === undefined || vc === undefined || !(vt + vc > 0)) return Infinity;
  return (t.numerator / t.denominator - c.numerator / c.denominator) / Math.sqrt(vt + vc);
}

const emptySums = (): Sums => ({ units: 0, numerator: 0, denominator: 0, numeratorSquares: 0, denominatorSquares: 0, products: 0 });

/**
 * Tests every metric on the same splits of the pooled users (see the file comment). Each metric's
 * arrays must hold the same users in the same order across metrics (treatment then control).
 */
export function permutationTests(metrics: readonly PermutationMetric[], alpha: number): (PermutationResult | undefined)[] {
  if (metrics.length === 0) return [];
  const nt = metrics[0]!.treatment.num.length;
  const nc = metrics[0]!.control.num.length;
  const n = nt + nc;
  // Pooled per-user values, treatment first; and each metric's totals.
  const pooled = metrics.map((m) => {
    const y = new Float64Array(n);
    const x = new Float64Array(n);
    y.set(m.treatment.num, 0);
    y.set(m.control.num, nt);
    x.set(m.treatment.den, 0);
    x.set(m.control.den, nt);
    return { y, x, total: sums(y, x, undefined, n) };
  });
  const observed = metrics.map((m, k) => statistic(m, sums(pooled[k]!.y, pooled[k]!.x, undefined, nt), pooled[k]!.total, true));
  // The smaller side is drawn (fewer additions per split).
  const size = Math.min(nt, nc);
  const chosenIsTreatment = nt <= nc;
  const splits = choose(n, size, EXACT_SPLITS);
  const exact = Number.isFinite(splits);
  const draws = exact ? splits : MONTE_CARLO_DRAWS;
  const stats = metrics.map(() => new Float64Array(draws));
  const index = new Uint32Array(size);
  // Scratch sums, reused by every split (a split's statistics allocate nothing of their own).
  const chosen = emptySums();
  const rest = emptySums();
  const record = (d: number) => {
    for (let k = 0; k < metrics.length; k++) {
      const p = pooled[k]!;
      stats[k]![d] = Math.abs(statistic(metrics[k]!, sums(p.y, p.x, index, size, chosen), p.total, chosenIsTreatment, rest));
    }
  };
  if (exact) {
    // Every size-subset of 0..n-1, in lexicographic order.
    for (let i = 0; i < size; i++) index[i] = i;
    for (let d = 0; d < draws; d++) {
      record(d);
      let i = size - 1;
      while (i >= 0 && index[i] === n - size + i) i--;
      if (i < 0) break;
      index[i]!++;
      for (let j = i + 1; j < size; j++) index[j] = index[j - 1]! + 1;
    }
  } else {
    const random = mulberry32(SEED);
    const order = Uint32Array.from({ length: n }, (_, i) => i);
    for (let d = 0; d < draws; d++) {
      // A partial Fisher-Yates shuffle: the first `size` entries are a uniform random subset.
      for (let i = 0; i < size; i++) {
        const j = i + Math.floor(random() * (n - i));
        const x = order[i]!;
        order[i] = order[j]!;
        order[j] = x;
        index[i] = order[i]!;
      }
      record(d);
    }
  }
  return metrics.map((_, k) => {
    const t = observed[k]!;
    if (!Number.isFinite(t)) return undefined;
    const sorted = stats[k]!.sort().reverse();
    const at = Math.abs(t);
    let count = 0;
    while (count < draws && sorted[count]! >= at) count++;
    const pValue = exact ? count / draws : (1 + count) / (1 + draws);
    // p < alpha  <=>  count <= m  <=>  |t| > sorted[m] (0-based: the (m+1)-th largest).
    const m = exact ? Math.ceil(alpha * draws) - 1 : Math.ceil(alpha * (1 + draws) - 1) - 1;
    // m < 0 (Monte Carlo at a tiny alpha): never significant; a critical value at or above |t| keeps the interval over 0.
    const critical = m < 0 ? Math.max(sorted[0]!, at) * (1 + 1e-12) : m >= draws ? 0 : sorted[m]!;
    return { t, pValue: Math.min(1, pValue), critical, exact, splits: draws };
  });
}

/** Sums over the entries `index` (or the first `size` entries when undefined), into `into` when given. */
function sums(y: Float64Array, x: Float64Array, index: Uint32Array | undefined, size: number, into: Sums = emptySums()): Sums {
  let numerator = 0;
  let denominator = 0;
  let numeratorSquares = 0;
  let denominatorSquares = 0;
  let products = 0;
  for (let j = 0; j < size; j++) {
    const i = index === undefined ? j : index[j]!;
    const a = y[i]!;
    const b = x[i]!;
    numerator += a;
    denominator += b;
    numeratorSquares += a * a;
    denominatorSquares += b * b;
    products += a * b;
  }
  into.units = size;
  into.numerator = numerator;
  into.denominator = denominator;
  into.numeratorSquares = numeratorSquares;
  into.denominatorSquares = denominatorSquares;
  into.products = products;
  return into;
}
