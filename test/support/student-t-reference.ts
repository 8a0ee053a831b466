/**
 * Student's t for integer degrees of freedom, computed independently of src/core/student-t.ts:
 * the density's constant from Gamma at integers and half-integers (exact recurrences), the tail
 * by Simpson's rule on the density, the critical value by bisection on that tail.
 */
function gammaHalfInteger(twice: number): number {
  // Gamma(twice / 2) for twice >= 1: Gamma(1) = 1, Gamma(1/2) = sqrt(pi), Gamma(x + 1) = x Gamma(x)
  let x = twice % 2 === 0 ? 1 : 0.5;
  let g = twice % 2 === 0 ? 1 : Math.sqrt(Math.PI);
  while (2 * x < twice) {
    g *= x;
    x += 1;
  }
  return g;
}

/** P(|T| > x) for T ~ t with integer df. */
export function referenceTTwoSided(x: number, df: number): number {
  const c = gammaHalfInteger(df + 1) / (Math.sqrt(df * Math.PI) * gammaHalfInteger(df));
  const f = (u: number) => c * (1 + (u * u) / df) ** (-(df + 1) / 2);
  const steps = 20_000;
  const h = x / steps;
  let sum = f(0) + f(x);
  for (let i = 1; i < steps; i++) sum += (i % 2 === 1 ? 4 : 2) * f(i * h);
  return 1 - (2 * sum * h) / 3;
}

/** The x with P(|T| > x) = tail, integer df. */
export function referenceTCritical(tail: number, df: number): number {
  let low = 0;
  let high = 100;
  for (let i = 0; i < 80; i++) {
    const mid = (low + high) / 2;
    if (referenceTTwoSided(mid, df) > tail) low = mid;
    else high = mid;
  }
  return (low + high) / 2;
}
