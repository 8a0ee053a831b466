/**
 * Student's t distribution with real (non-integer) degrees of freedom, for small-sample tests
 * (Welch-Satterthwaite degrees of freedom are rarely integers).
 *
 * Two-sided tail P(|T| > t) = I_x(df / 2, 1 / 2) with x = df / (df + t^2), I the regularized
 * incomplete beta function, evaluated by its continued fraction (modified Lentz), with the
 * symmetry I_x(a, b) = 1 - I_{1-x}(b, a) where the fraction converges slowly, and ln Gamma by
 * Lanczos' approximation (g = 7, 9 terms). Quantiles by bisection on the tail (monotone), to
 * double precision. Checked against scipy.stats.t in test/core/small-samples.test.ts.
 *
 * References: M. Abramowitz, I. Stegun (1964), "Handbook of Mathematical Functions", 26.7.1 and
 * 26.5.8; W. J. Lentz (1976), Applied Optics 15(3); C. Lanczos (1964), SIAM J. Numer. Anal. B 1.
 */

const LANCZOS = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];

/** ln Gamma(x) for x > 0. */
export function lnGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - lnGamma(1 - x);
  const z = x - 1;
  let a = LANCZOS[0]!;
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += LANCZOS[i]! / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** The continued fraction of I_x(a, b) (Lentz). */
function betaFraction(x: number, a: number, b: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 10_000; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return h;
}

/** The regularized incomplete beta function I_x(a, b), a, b > 0, x in [0, 1]. */
export function regularizedBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const lnFront = lnGamma(a + b) - lnGamma(a) - lnGamma(b) + a * Math.log(x) + b * Math.log1p(-x);
  if (x < (a + 1) / (a + b + 2)) return (Math.exp(lnFront) * betaFraction(x, a, b)) / a;
  return 1 - (Math.exp(lnFront) * betaFraction(1 - x, b, a)) / b;
}

/** P(|T| > |t|) for T ~ Student t with `df` > 0 degrees of freedom; df = Infinity is the normal. */
export function studentTTwoSided(t: number, df: number): number {
  if (!(df > 0)) throw new RangeError(`Student's t needs df > 0, got ${df}`);
  if (!Number.isFinite(t)) return 0;
  const x = df / (df + t * t);
  return regularizedBeta(x, df / 2, 0.5);
}

/** The t with P(|T| > t) = tail (two-sided), i.e. the (1 - tail / 2) quantile; tail in (0, 1). */
export function studentTCritical(tail: number, df: number): number {
  if (!(tail > 0 && tail < 1)) throw new RangeError(`studentTCritical needs a tail in (0, 1), got ${tail}`);
  const byDf = criticalValues.get(tail);
  const known = byDf?.get(df);
  if (known !== undefined) return known;
  const t = solveCritical(tail, df);
  if (byDf === undefined) {
    if (criticalValues.size >= 64) criticalValues.clear();
    criticalValues.set(tail, new Map([[df, t]]));
  } else {
    if (byDf.size >= 4096) byDf.clear();
    byDf.set(df, t);
  }
  return t;
}

/**
 * Critical values already solved, by tail and df: comparisons ask for the same few again and again
 * (each arm's interval at its confidence on users - 1), and each is ~50 evaluations of the
 * incomplete beta function. Bounded: cleared when full.
 */
const criticalValues = new Map<number, Map<number, number>>();

function solveCritical(tail: number, df: number): number {
  let low = 0;
  let high = 1;
  while (studentTTwoSided(high, df) > tail) high *= 2;
  for (let i = 0; i < 200 && high - low > 1e-15 * high; i++) {
    const mid = (low + high) / 2;
    if (studentTTwoSided(mid, df) > tail) low = mid;
    else high = mid;
  }
  return (low + high) / 2;
}

/** The p quantile of Student's t (any p in (0, 1)). */
export function studentTQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`studentTQuantile needs p in (0, 1), got ${p}`);
  if (p === 0.5) return 0;
  const t = studentTCritical(2 * Math.min(p, 1 - p), df);
  return p > 0.5 ? t : -t;
}

/** Welch-Satterthwaite degrees of freedom of V1 + V2 with df1 and df2. */
export function welchDf(v1: number, df1: number, v2: number, df2: number): number {
  const num = (v1 + v2) ** 2;
  const den = (v1 * v1) / df1 + (v2 * v2) / df2;
  return den > 0 ? num / den : Math.min(df1, df2);
}
