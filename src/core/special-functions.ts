/**
 * The special functions the statistics (statistics.ts, inference.ts) stand on: the normal
 * quantile and distribution function, critical values, log-gamma and the chi-square survival
 * function. Pure, and total as statistics.ts describes; invalid input throws a RangeError.
 *
 * References:
 * - M. J. Wichura (1988), "Algorithm AS 241: The percentage points of the normal distribution",
 *   Applied Statistics 37(3), 477-484 (normalQuantile).
 * - W. J. Cody (1969), "Rational Chebyshev approximations for the error function",
 *   Math. Comp. 23, 631-637; SPECFUN CALERF (normalCdf).
 * - C. Lanczos (1964) with g = 7, n = 9 coefficients; W. H. Press et al., Numerical Recipes,
 *   ch. 6.1-6.2 (log-gamma and the incomplete gamma function).
 */

export function assertConfidence(confidence: number): void {
  if (!Number.isFinite(confidence) || confidence <= 0 || confidence >= 1) {
    throw new RangeError(`confidence must be strictly between 0 and 1, got ${confidence}`);
  }
}

// Special functions
// ---------------------------------------------------------------------------------------------

/** Evaluates c[0] + c[1] x + c[2] x^2 + ... by Horner's rule. */
function polynomial(coefficients: readonly number[], x: number): number {
  let result = 0;
  for (let i = coefficients.length - 1; i >= 0; i--) result = result * x + coefficients[i]!;
  return result;
}

// Wichura's AS 241 (PPND16) coefficients, ascending powers. Region |p - 0.5| <= 0.425:
const AS241_A = [
  3.387132872796366608, 1.3314166789178437745e2, 1.9715909503065514427e3, 1.3731693765509461125e4,
  4.5921953931549871457e4, 6.7265770927008700853e4, 3.3430575583588128105e4, 2.5090809287301226727e3,
];
const AS241_B = [
  1, 4.2313330701600911252e1, 6.871870074920579083e2, 5.3941960214247511077e3, 2.1213794301586595867e4,
  3.930789580009271061e4, 2.8729085735721942674e4, 5.226495278852854561e3,
];
// Tail region with r = sqrt(-ln(min(p, 1 - p))) <= 5:
const AS241_C = [
  1.42343711074968357734, 4.6303378461565452959, 5.7694972214606914055, 3.64784832476320460504,
  1.27045825245236838258, 2.4178072517745061177e-1, 2.27238449892691845833e-2, 7.7454501427834140764e-4,
];
const AS241_D = [
  1, 2.05319162663775882187, 1.6763848301838038494, 6.8976733498510000455e-1, 1.4810397642748007459e-1,
  1.51986665636164571966e-2, 5.475938084995344946e-4, 1.05075007164441684324e-9,
];
// Far tail, r > 5 (p below about 1e-11):
const AS241_E = [
  6.6579046435011037772, 5.4637849111641143699, 1.7848265399172913358, 2.9656057182850489123e-1,
  2.6532189526576123093e-2, 1.2426609473880784386e-3, 2.71155556874348757815e-5, 2.01033439929228813265e-7,
];
const AS241_F = [
  1, 5.9983220655588793769e-1, 1.3692988092273580531e-1, 1.48753612908506148525e-2, 7.868691311456132591e-4,
  1.8463183175100546818e-5, 1.4215117583164458887e-7, 2.04426310338993978564e-15,
];

/**
 * The standard normal quantile: z such that P(Z <= z) = p, for 0 < p < 1.
 * Wichura's AS 241 (PPND16), relative accuracy about 1e-16. Throws a RangeError outside (0, 1),
 * where the quantile is infinite or undefined.
 */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`normalQuantile needs 0 < p < 1, got ${p}`);
  const q = p - 0.5;
  if (Math.abs(q) <= 0.425) {
    // Central region: z = q * A(r) / B(r) with r = 0.425^2 - q^2.
    const r = 0.180625 - q * q;
    return (q * polynomial(AS241_A, r)) / polynomial(AS241_B, r);
  }
  // Tails: rational function of r = sqrt(-ln(tail probability)), sign restored afterwards.
  let r = Math.sqrt(-Math.log(q < 0 ? p : 1 - p));
  let z: number;
  if (r <= 5) {
    r -= 1.6;
    z = polynomial(AS241_C, r) / polynomial(AS241_D, r);
  } else {
    r -= 5;
    z = polynomial(AS241_E, r) / polynomial(AS241_F, r);
  }
  return q < 0 ? -z : z;
}

// Cody's CALERF coefficients. erf(x) on |x| <= 0.46875:
const CODY_A = [3.1611237438705656, 1.13864154151050156e2, 3.77485237685302021e2, 3.20937758913846947e3, 1.85777706184603153e-1];
const CODY_B = [2.36012909523441209e1, 2.44024637934444173e2, 1.28261652607737228e3, 2.84423683343917062e3];
// erfc(x) * exp(x^2) on 0.46875 < x <= 4:
const CODY_C = [
  5.64188496988670089e-1, 8.88314979438837594, 6.61191906371416295e1, 2.98635138197400131e2, 8.8195222124176909e2,
  1.71204761263407058e3, 2.05107837782607147e3, 1.23033935479799725e3, 2.15311535474403846e-8,
];
const CODY_D = [
  1.57449261107098347e1, 1.17693950891312499e2, 5.37181101862009858e2, 1.62138957456669019e3, 3.29079923573345963e3,
  4.36261909014324716e3, 3.43936767414372164e3, 1.23033935480374942e3,
];
// erfc(x) * exp(x^2) * x on x > 4, as a rational function of 1/x^2:
const CODY_P = [
  3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2,
  6.58749161529837803e-4, 1.63153871373020978e-2,
];
const CODY_Q = [2.56852019228982242, 1.87295284992346047, 5.27905102951428412e-1, 6.05183413124413191e-2, 2.33520497626869185e-3];
/** 1 / sqrt(pi). */
const ONE_OVER_SQRT_PI = 5.6418958354775628695e-1;
/** Beyond this, erfc(x) underflows a double. */
const ERFC_UNDERFLOW = 26.543;

/**
 * The complementary error function erfc(x) = 1 - erf(x), after W. J. Cody's CALERF (1969).
 * Relative accuracy near machine precision, including far into the upper tail where 1 - erf(x)
 * would cancel to zero.
 */
function erfc(x: number): number {
  const y = Math.abs(x);
  if (y <= 0.46875) {
    // erf(x) = x * A(x^2) / B(x^2); erfc is its complement (no cancellation: erf <= 0.5 here).
    const ysq = y * y;
    let num = CODY_A[4]! * ysq;
    let den = ysq;
    for (let i = 0; i < 3; i++) {
      num = (num + CODY_A[i]!) * ysq;
      den = (den + CODY_B[i]!) * ysq;
    }
    return 1 - (x * (num + CODY_A[3]!)) / (den + CODY_B[3]!);
  }
  let result: number;
  if (y <= 4) {
    // erfc(y) = exp(-y^2) * C(y) / D(y).
    let num = CODY_C[8]! * y;
    let den = y;
    for (let i = 0; i < 7; i++) {
      num = (num + CODY_C[i]!) * y;
      den = (den + CODY_D[i]!) * y;
    }
    result = (num + CODY_C[7]!) / (den + CODY_D[7]!);
  } else if (y >= ERFC_UNDERFLOW) {
    result = 0;
  } else {
    // erfc(y) = exp(-y^2) / y * (1/sqrt(pi) - (1/y^2) P(1/y^2) / Q(1/y^2)), the asymptotic form.
    const ysq = 1 / (y * y);
    let num = CODY_P[5]! * ysq;
    let den = ysq;
    for (let i = 0; i < 4; i++) {
      num = (num + CODY_P[i]!) * ysq;
      den = (den + CODY_Q[i]!) * ysq;
    }
    result = (ONE_OVER_SQRT_PI - (ysq * (num + CODY_P[4]!)) / (den + CODY_Q[4]!)) / y;
  }
  if (result !== 0) {
    // Multiply by exp(-y^2), splitting y^2 = ysq16^2 + del so the large part is exact.
    const ysq16 = Math.trunc(y * 16) / 16;
    const del = (y - ysq16) * (y + ysq16);
    result = Math.exp(-ysq16 * ysq16) * Math.exp(-del) * result;
  }
  // erfc(-y) = 2 - erfc(y).
  return x < 0 ? 2 - result : result;
}

/**
 * The standard normal CDF Phi(z) = P(Z <= z) = erfc(-z / sqrt(2)) / 2, accurate to about 1e-15
 * (relative, also in the lower tail). Phi(-Infinity) = 0 and Phi(Infinity) = 1; NaN throws.
 */
export function normalCdf(z: number): number {
  if (Number.isNaN(z)) throw new RangeError("normalCdf needs a number, got NaN");
  return 0.5 * erfc(-z / Math.SQRT2);
}

/** Two-sided normal p-value for a z statistic: P(|Z| >= |z|) = 2 * Phi(-|z|) = erfc(|z| / sqrt(2)). */
export function twoSidedNormalPValue(z: number): number {
  return Math.min(1, erfc(Math.abs(z) / Math.SQRT2));
}

/**
 * The two-sided critical value for a confidence level in (0, 1): normalQuantile(1 - (1 - confidence) / 2),
 * e.g. 1.959963984540054 for 0.95. Computed as -normalQuantile((1 - confidence) / 2), the same number
 * by symmetry, because 1 - (1 - confidence) / 2 rounds to 1 for confidences within 1e-16 of 1.
 */
export function zCritical(confidence: number): number {
  assertConfidence(confidence);
  return -normalQuantile((1 - confidence) / 2);
}

// Lanczos approximation with g = 7 and n = 9 coefficients (relative error about 1e-15).
const LANCZOS_G = 7;
const LANCZOS_COEFFICIENTS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];
/** ln(sqrt(2 pi)). */
const LN_SQRT_2PI = 0.5 * Math.log(2 * Math.PI);

/** ln Gamma(x) for x > 0 by the Lanczos approximation (reflection formula below 0.5). */
export function lnGamma(x: number): number {
  if (x < 0.5) {
    // Reflection: Gamma(x) Gamma(1 - x) = pi / sin(pi x), positive for 0 < x < 1.
    return Math.log(Math.PI / Math.sin(Math.PI * x)) - lnGamma(1 - x);
  }
  // Gamma(x) = sqrt(2 pi) t^(x - 1/2) e^(-t) A(x), with t = x - 1 + g + 1/2 and
  // A(x) = c0 + sum_i c_i / (x - 1 + i).
  const xm1 = x - 1;
  let a = LANCZOS_COEFFICIENTS[0]!;
  for (let i = 1; i < LANCZOS_COEFFICIENTS.length; i++) a += LANCZOS_COEFFICIENTS[i]! / (xm1 + i);
  const t = xm1 + LANCZOS_G + 0.5;
  return LN_SQRT_2PI + (xm1 + 0.5) * Math.log(t) - t + Math.log(a);
}

const GAMMA_EPSILON = 1e-15;
const GAMMA_MAX_ITERATIONS = 100_000;
/** Smallest representable magnitude for Lentz's algorithm, to avoid division by zero. */
const TINY = 1e-300;

/**
 * The regularized upper incomplete gamma function Q(a, x) = Gamma(a, x) / Gamma(a), for a > 0, x >= 0
 * (Numerical Recipes' gammq): the series for P(a, x) = 1 - Q when x < a + 1, otherwise the continued
 * fraction for Q directly (which keeps relative accuracy deep in the upper tail).
 */
function regularizedGammaQ(a: number, x: number): number {
  if (x <= 0) return 1;
  // The common prefactor x^a e^(-x) / Gamma(a), in log space.
  const lnPrefactor = a * Math.log(x) - x - lnGamma(a);
  if (x < a + 1) {
    // Series: P(a, x) = prefactor * sum_{n>=0} x^n / (a (a+1) ... (a+n)).
    let term = 1 / a;
    let sum = term;
    for (let n = 1; n < GAMMA_MAX_ITERATIONS; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * GAMMA_EPSILON) break;
    }
    return Math.min(1, Math.max(0, 1 - sum * Math.exp(lnPrefactor)));
  }
  // Continued fraction (modified Lentz): Q(a, x) = prefactor / (x + 1 - a - 1(1-a)/(x + 3 - a - 2(2-a)/(x + 5 - a - ...))).
  let b = x + 1 - a;
  let c = 1 / TINY;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < GAMMA_MAX_ITERATIONS; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < TINY) d = TINY;
    c = b + an / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < GAMMA_EPSILON) break;
  }
  return Math.min(1, Math.max(0, Math.exp(lnPrefactor) * h));
}

/**
 * The upper-tail probability P(X >= x) of a chi-square distribution with df > 0 degrees of
 * freedom: Q(df / 2, x / 2), the regularized upper incomplete gamma function. 1 for x <= 0,
 * 0 for x = Infinity. Throws a RangeError for NaN x or a non-positive / non-finite df.
 */
export function chiSquareSurvival(x: number, df: number): number {
  if (Number.isNaN(x)) throw new RangeError("chiSquareSurvival needs a number x, got NaN");
  if (!Number.isFinite(df) || df <= 0) {
    throw new RangeError(`chiSquareSurvival needs finite degrees of freedom > 0, got ${df}`);
  }
  if (x === Infinity) return 0;
  return regularizedGammaQ(df / 2, x / 2);
}

// ---------------------------------------------------------------------------------------------
// Proportions: search CTR (searches with at least one click / searches)
// ---------------------------------------------------------------------------------------------
