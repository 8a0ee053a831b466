/**
 * Assigning users to an experiment's arms, in the search service, the same way everywhere.
 *
 * The function is GrowthBook's "v2" hashing (packages/sdk-js/src/util.ts, `hash` with version 2,
 * and `getBucketRanges`/`chooseVariation`), so that any of GrowthBook's SDKs (JavaScript, Python,
 * Go, Java, ...) with the same seed and weights reproduces it, and its published test vectors
 * (packages/sdk-js/test/cases.json) pin ours:
 *
 *   fnv1a32(s)  = FNV-1a, 32 bits (offset basis 0x811c9dc5, prime 16777619), over the UTF-16 code
 *                 units of s (as JavaScript's charCodeAt; the same as bytes for ASCII ids)
 *   n           = (fnv1a32(String(fnv1a32(seed + userId))) mod 10000) / 10000, in [0, 1)
 *   seed        = the experiment's key
 *   ranges      = arm i gets [c_i, c_i + coverage * w_i), c_i = w_0 + ... + w_{i-1}, with the
 *                 weights w normalised to sum to 1
 *   arm         = the arm whose range holds n; none (not in the experiment) when no range does
 *
 * Deterministic and sticky: a user keeps their arm as long as the key, the arms (in order) and
 * their weights do not change, which is why a RUNNING experiment's arms are frozen server-side.
 * Raising coverage only adds users (each range grows at its end). Tag what you log with the
 * result: `client.logImpression({ ..., variant: assign(experiment, userId).variant })`.
 */

/** FNV-1a over UTF-16 code units, as GrowthBook's hashFnv32a. */
export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * GrowthBook's `hash(seed, value, version)`: a number in [0, 1). Version 2 is what assign uses;
 * version 1 (biased, kept by GrowthBook for old experiments) is here for completeness. Other
 * versions: null.
 */
export function hash(seed: string, value: string, version: number): number | null {
  if (version === 2) return (fnv1a32(String(fnv1a32(seed + value))) % 10000) / 10000;
  if (version === 1) return (fnv1a32(value + seed) % 1000) / 1000;
  return null;
}

export type BucketRange = [start: number, end: number];

/**
 * GrowthBook's getBucketRanges, including its fallbacks (coverage clamped to [0, 1]; weights of
 * the wrong length or not summing to 1 within 0.01 replaced by equal weights). assign normalises
 * the weights first, so the fallbacks never apply there.
 */
export function bucketRanges(numVariations: number, coverage: number | undefined, weights?: readonly number[] | null): BucketRange[] {
  let cov = coverage ?? 1;
  if (cov < 0) cov = 0;
  else if (cov > 1) cov = 1;
  const equal = numVariations <= 0 ? [] : new Array<number>(numVariations).fill(1 / numVariations);
  let w = weights ?? equal;
  if (w.length !== numVariations) w = equal;
  const total = w.reduce((s, x) => s + x, 0);
  if (total < 0.99 || total > 1.01) w = equal;
  let cumulative = 0;
  return w.map((x) => {
    const start = cumulative;
    cumulative += x;
    return [start, start + cov * x];
  });
}

/** The index of the range holding n (start inclusive, end exclusive), or -1. */
export function chooseVariation(n: number, ranges: readonly BucketRange[]): number {
  for (let i = 0; i < ranges.length; i++) if (n >= ranges[i]![0] && n < ranges[i]![1]) return i;
  return -1;
}

/** What assign needs of an experiment: the Experiment message from GetExperiment/ListExperiments fits. */
export interface AssignableExperiment {
  key: string;
  arms: readonly { variant: string; weight: number }[];
  /** (0, 1]; unset means 1. */
  coverage?: number | undefined;
  /** ExperimentStatus; when given, only a RUNNING experiment (2) assigns anyone. */
  status?: number | undefined;
}

/** ExperimentStatus.RUNNING (experiments.proto). */
const RUNNING = 2;

export interface Assignment {
  /** The arm's variant, to log as events' `variant`; undefined when the user is outside the coverage. */
  variant: string | undefined;
  /** The arm's index in `arms`, or -1. */
  index: number;
  inExperiment: boolean;
  /** The user's hash in [0, 1). */
  hash: number;
}

/**
 * The arm of `userId` in `experiment` (see the module comment for the function); none while the
 * experiment carries a status other than RUNNING (a draft, or one that has stopped: show those
 * users what ships). Throws a TypeError for an experiment without a key or arms, non-positive
 * weights, or an empty user id.
 */
export function assign(experiment: AssignableExperiment, userId: string): Assignment {
  if (experiment.key === "") throw new TypeError("assign: the experiment has no key");
  if (userId === "") throw new TypeError("assign: userId must not be empty");
  const weights = experiment.arms.map((a) => a.weight);
  if (weights.length === 0 || weights.some((w) => !(Number.isFinite(w) && w > 0))) throw new TypeError("assign: every arm needs a finite weight > 0");
  const total = weights.reduce((s, w) => s + w, 0);
  const n = hash(experiment.key, userId, 2)!;
  const running = experiment.status === undefined || experiment.status === RUNNING;
  const index = running ? chooseVariation(n, bucketRanges(weights.length, experiment.coverage ?? 1, weights.map((w) => w / total))) : -1;
  return { variant: index < 0 ? undefined : experiment.arms[index]!.variant, index, inExperiment: index >= 0, hash: n };
}
