/**
 * Mergeable sketches for pre-aggregating search analytics in MongoDB rollup documents.
 *
 * Both sketches are stored as plain "decimal integer key -> number" sub-documents so that a rollup
 * bucket (hour, day) can be updated with a single atomic operator and any set of buckets can be
 * combined at read time without losing accuracy:
 *
 * - Latency: a DDSketch-style log-bucketed histogram with 1% relative accuracy. Stored as
 *   `{ "<bucket>": count }`, updated with `$inc`, merged by per-key sum.
 * - Distinct users: a HyperLogLog with precision 14 (16384 registers, ~0.8% standard error).
 *   Stored sparsely as `{ "<register>": rank }`, updated with `$max`, merged by per-key max.
 *
 * Bucket keys and hash points are a storage format: changing gamma, the key offset, the hash or its
 * seeds would silently corrupt merges with documents already written.
 *
 * Everything here is pure and dependency-free. Invalid input (a negative or NaN latency, a
 * malformed stored key or value, p outside [0, 1]) is a caller bug or corrupt data and throws a
 * RangeError, following the convention of statistics.ts.
 *
 * References:
 * - C. Masson, J. E. Rim, H. K. Lee (2019), "DDSketch: A fast and fully-mergeable quantile sketch
 *   with relative-error guarantees", PVLDB 12(12).
 * - P. Flajolet, É. Fusy, O. Gandouet, F. Meunier (2007), "HyperLogLog: the analysis of a
 *   near-optimal cardinality estimation algorithm", AofA 2007.
 * - O. Ertl (2017), "New cardinality estimation algorithms for HyperLogLog sketches",
 *   arXiv:1702.01284 (the improved raw estimator used by hllEstimate).
 * - A. Appleby, MurmurHash3 (x86_32 variant), public domain.
 */

// ---------------------------------------------------------------------------------------------
// Latency: DDSketch-style log-bucketed histogram
// ---------------------------------------------------------------------------------------------

/** Every value is reported within 1% of itself (relative error of a bucket's representative). */
export const LATENCY_RELATIVE_ACCURACY = 0.01;

/** Latencies below this (in ms) are indistinguishable from 0 for our purposes: the zero bucket. */
export const LATENCY_MIN_MS = 0.001;

const GAMMA = (1 + LATENCY_RELATIVE_ACCURACY) / (1 - LATENCY_RELATIVE_ACCURACY);
const LN_GAMMA = Math.log(GAMMA);
// Precomputed so that latencyBucket is one log, one multiply, one ceil and one add.
const INV_LN_GAMMA = 1 / LN_GAMMA;
// Shifts the smallest non-zero index (that of LATENCY_MIN_MS, about -345) to 1 so every stored key
// is a non-negative integer and 0 is free for the zero bucket. Computed with the same expression as
// latencyBucket, so x >= LATENCY_MIN_MS can never round to a key below 1.
const LATENCY_KEY_OFFSET = 1 - Math.ceil(Math.log(LATENCY_MIN_MS) * INV_LN_GAMMA);
// 2 / (gamma + 1): the bucket (gamma^(i-1), gamma^i] is represented by 2 gamma^i / (gamma + 1),
// the point with equal relative distance a to both ends.
const REPRESENTATIVE_FACTOR = 2 / (GAMMA + 1);

/**
 * Bucket key for a latency value in ms (x >= 0, finite). Values below LATENCY_MIN_MS (0.001) all map
 * to key 0 ("zero bucket"); others to ceil(log_gamma(x)) + OFFSET, always an integer >= 1,
 * gamma = (1+a)/(1-a).
 */
export function latencyBucket(ms: number): number {
  // Hot path first: a normal latency costs two comparisons and a log.
  if (ms >= LATENCY_MIN_MS && ms <= Number.MAX_VALUE) {
    return Math.ceil(Math.log(ms) * INV_LN_GAMMA) + LATENCY_KEY_OFFSET;
  }
  if (ms >= 0 && ms < LATENCY_MIN_MS) return 0;
  throw new RangeError(`latency must be a finite non-negative number of ms, got ${ms}`);
}

/** Representative value of a bucket: 0 for key 0, else 2*gamma^i/(gamma+1) (relative error <= a for any x in the bucket). */
export function latencyBucketValue(key: number): number {
  if (key === 0) return 0;
  return Math.exp((key - LATENCY_KEY_OFFSET) * LN_GAMMA) * REPRESENTATIVE_FACTOR;
}

/**
 * Quantile p (0..1) of the multiset a bucket->count histogram describes, using linear interpolation between
 * closest ranks exactly like numpy's default: h = (n-1)p, value = v[floor h] + (v[ceil h] - v[floor h]) * (h - floor h),
 * where v[k] is the representative value of the bucket holding the k-th smallest (0-based) item. Optionally clamp
 * the result into [min, max] when they are given (exact min/max are kept separately). undefined when the histogram is empty.
 *
 * With bounds, the smallest and largest items are known exactly, so v[0] = min and v[n-1] = max
 * (p = 0 and p = 1 are then exact) before the result is clamped.
 */
export function latencyQuantile(
  histogram: ReadonlyMap<number, number>,
  p: number,
  bounds?: { min: number; max: number },
): number | undefined {
  return latencyQuantiles(histogram, [p], bounds)[0];
}

/** Several quantiles with one pass over the sorted buckets. */
export function latencyQuantiles(
  histogram: ReadonlyMap<number, number>,
  ps: readonly number[],
  bounds?: { min: number; max: number },
): (number | undefined)[] {
  return quantilesOf(histogram, ps, bounds, false);
}

/**
 * latencyQuantiles of the buckets with a positive count: a histogram of differences can hold a
 * bucket briefly at 0 or below (a first click moved away before its replacement is counted).
 */
export function positiveLatencyQuantiles(histogram: ReadonlyMap<number, number>, ps: readonly number[]): (number | undefined)[] {
  return quantilesOf(histogram, ps, undefined, true);
}

function quantilesOf(histogram: ReadonlyMap<number, number>, ps: readonly number[], bounds: { min: number; max: number } | undefined, positiveOnly: boolean): (number | undefined)[] {
  for (const p of ps) {
    if (!(p >= 0 && p <= 1)) throw new RangeError(`quantile must be between 0 and 1, got ${p}`);
  }
  if (bounds !== undefined && !(Number.isFinite(bounds.min) && Number.isFinite(bounds.max) && bounds.min <= bounds.max)) {
    throw new RangeError(`bounds must be finite with min <= max, got [${bounds.min}, ${bounds.max}]`);
  }

  // Keys sorted as a typed array (numeric order without a comparator: every read of a time series
  // sorts dozens of these). forEach, not for-of, so that no [key, count] pair is allocated.
  const keys = new Float64Array(histogram.size);
  let size = 0;
  histogram.forEach((count, key) => {
    if (positiveOnly && !(count > 0)) return;
    assertHistogramCount(key, count);
    if (count > 0) keys[size++] = key;
  });
  if (size === 0) return ps.map(() => undefined);
  const sorted = keys.subarray(0, size).sort();

  // upTo[j] = number of items in buckets sorted[0..j], so item k lives in the first j with upTo[j] > k.
  const upTo = new Float64Array(size);
  let n = 0;
  for (let j = 0; j < size; j++) {
    n += histogram.get(sorted[j]!)!;
    upTo[j] = n;
  }
  const last = n - 1;

  // Value of the k-th smallest item, scanning forward from bucket `from` (ranks are asked in
  // non-decreasing order, so the whole sweep is linear in the number of buckets).
  const bucketOf = (k: number, from: number): number => {
    let j = from;
    while (upTo[j]! <= k) j++;
    return j;
  };
  const valueAt = (k: number, j: number): number => {
    if (bounds !== undefined) {
      if (k === 0) return bounds.min;
      if (k === last) return bounds.max;
    }
    return latencyBucketValue(sorted[j]!);
  };

  // Visit the quantiles in ascending order but answer them in the caller's order.
  const order = ps.map((_, i) => i).sort((a, b) => ps[a]! - ps[b]!);
  const result = new Array<number | undefined>(ps.length);
  let cursor = 0;
  for (const i of order) {
    const h = last * ps[i]!;
    const lo = Math.floor(h);
    const hi = Math.ceil(h);
    cursor = bucketOf(lo, cursor);
    const low = valueAt(lo, cursor);
    let value = hi === lo ? low : low + (valueAt(hi, bucketOf(hi, cursor)) - low) * (h - lo);
    if (bounds !== undefined) value = Math.min(Math.max(value, bounds.min), bounds.max);
    result[i] = value;
  }
  return result;
}

/** Adds counts of `from` into `into` (per-key sum). Accepts plain objects with string keys (as stored in MongoDB) or Maps. */
export function mergeLatency(
  into: Map<number, number>,
  from: ReadonlyMap<number, number> | Readonly<Record<string, number>>,
): Map<number, number> {
  if (from instanceof Map) {
    for (const [key, count] of from as ReadonlyMap<number, number>) {
      assertHistogramCount(key, count);
      into.set(key, (into.get(key) ?? 0) + count);
    }
  } else {
    for (const name of Object.keys(from)) {
      const key = parseKey(name, "latency bucket");
      const count = (from as Readonly<Record<string, number>>)[name]!;
      assertHistogramCount(key, count);
      into.set(key, (into.get(key) ?? 0) + count);
    }
  }
  return into;
}

function assertHistogramCount(key: number, count: number): void {
  if (!Number.isSafeInteger(key) || key < 0) {
    throw new RangeError(`latency bucket key must be a non-negative integer, got ${key}`);
  }
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new RangeError(`latency bucket ${key} must hold a non-negative integer count, got ${count}`);
  }
}

/** A stored key must be a canonical decimal integer ("12", not "012", "1e3" or ""). */
function parseKey(name: string, what: string): number {
  const key = Number(name);
  if (!Number.isSafeInteger(key) || key < 0 || String(key) !== name) {
    throw new RangeError(`${what} key must be a non-negative decimal integer, got "${name}"`);
  }
  return key;
}

// ---------------------------------------------------------------------------------------------
// Distinct users: HyperLogLog
// ---------------------------------------------------------------------------------------------

export const HLL_PRECISION = 14;
export const HLL_REGISTERS = 16384;

/** With a 64-bit hash, the rank counts leading zeros of the 64 - 14 = 50 bits left after the index. */
const HLL_MAX_RANK = 64 - HLL_PRECISION + 1;

// MurmurHash3 x86_32 seeds of the two 32-bit halves (arbitrary but fixed: part of the storage format).
const SEED_HIGH = 0x9747b28c;
const SEED_LOW = 0x5bd1e995;
const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

// Reused UTF-8 buffer so hashing an id allocates nothing; grows to 3 bytes per UTF-16 unit (the
// worst case) of the longest id seen.
let utf8 = new Uint8Array(256);

/** Encodes `s` as UTF-8 (lone surrogates become U+FFFD, like TextEncoder) into `utf8`; returns the length. */
function encodeUtf8(s: string): number {
  const length = s.length;
  if (utf8.length < length * 3) utf8 = new Uint8Array(Math.max(length * 3, utf8.length * 2));
  const out = utf8;
  let n = 0;
  for (let i = 0; i < length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      out[n++] = c;
    } else if (c < 0x800) {
      out[n++] = 0xc0 | (c >> 6);
      out[n++] = 0x80 | (c & 0x3f);
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = i + 1 < length ? s.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          const cp = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
          out[n++] = 0xf0 | (cp >> 18);
          out[n++] = 0x80 | ((cp >> 12) & 0x3f);
          out[n++] = 0x80 | ((cp >> 6) & 0x3f);
          out[n++] = 0x80 | (cp & 0x3f);
          i++;
          continue;
        }
        c = 0xfffd;
      }
      out[n++] = 0xe0 | (c >> 12);
      out[n++] = 0x80 | ((c >> 6) & 0x3f);
      out[n++] = 0x80 | (c & 0x3f);
    }
  }
  return n;
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Register index (0..16383) and rank (1..51) for an id, from a 64-bit hash of its UTF-8 bytes.
 *
 * The 64-bit hash is murmur3_32(utf8, SEED_HIGH) : murmur3_32(utf8, SEED_LOW) (standard
 * MurmurHash3 x86_32, so other services can reproduce it). Both halves are computed in one pass:
 * the per-block key mixing does not depend on the seed, only the running state does.
 */
export function hllPoint(id: string): { register: number; rank: number } {
  const length = encodeUtf8(id);
  const bytes = utf8;
  let h1 = SEED_HIGH | 0;
  let h2 = SEED_LOW | 0;
  const blocksEnd = length & ~3;
  for (let i = 0; i < blocksEnd; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h1 ^= k;
    h1 = (h1 << 13) | (h1 >>> 19);
    h1 = (Math.imul(h1, 5) + 0xe6546b64) | 0;
    h2 ^= k;
    h2 = (h2 << 13) | (h2 >>> 19);
    h2 = (Math.imul(h2, 5) + 0xe6546b64) | 0;
  }
  const tail = length & 3;
  if (tail !== 0) {
    let k = bytes[blocksEnd]!;
    if (tail >= 2) k |= bytes[blocksEnd + 1]! << 8;
    if (tail === 3) k |= bytes[blocksEnd + 2]! << 16;
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h1 ^= k;
    h2 ^= k;
  }
  h1 = fmix32(h1 ^ length);
  h2 = fmix32(h2 ^ length);

  // Top 14 bits pick the register; the remaining 18 + 32 = 50 bits give the rank: the position of
  // their first 1 bit (51 when all are zero).
  const register = h1 >>> (32 - HLL_PRECISION);
  const rest = h1 & ((1 << (32 - HLL_PRECISION)) - 1);
  const rank = rest !== 0 ? Math.clz32(rest) - HLL_PRECISION + 1 : 32 - HLL_PRECISION + 1 + Math.clz32(h2);
  return { register, rank };
}

export function emptyHll(): Uint8Array {
  return new Uint8Array(HLL_REGISTERS);
}

/** Dense registers (Uint8Array of HLL_REGISTERS) merged per-key max from sparse maps/objects ({"register": rank}). */
export function mergeHll(
  into: Uint8Array,
  from: Readonly<Record<string, number>> | ReadonlyMap<number, number> | Uint8Array,
): Uint8Array {
  assertRegisters(into);
  if (from instanceof Uint8Array) {
    assertRegisters(from);
    for (let i = 0; i < HLL_REGISTERS; i++) {
      const rank = from[i]!;
      if (rank > into[i]!) into[i] = rank;
    }
  } else if (from instanceof Map) {
    for (const [register, rank] of from as ReadonlyMap<number, number>) mergeRegister(into, register, rank);
  } else {
    for (const name of Object.keys(from)) {
      mergeRegister(into, parseKey(name, "HLL register"), (from as Readonly<Record<string, number>>)[name]!);
    }
  }
  return into;
}

function mergeRegister(into: Uint8Array, register: number, rank: number): void {
  if (!Number.isInteger(register) || register < 0 || register >= HLL_REGISTERS) {
    throw new RangeError(`HLL register must be an integer in [0, ${HLL_REGISTERS}), got ${register}`);
  }
  if (!Number.isInteger(rank) || rank < 0 || rank > HLL_MAX_RANK) {
    throw new RangeError(`HLL register ${register} must hold an integer rank in [0, ${HLL_MAX_RANK}], got ${rank}`);
  }
  if (rank > into[register]!) into[register] = rank;
}

function assertRegisters(registers: Uint8Array): void {
  if (registers.length !== HLL_REGISTERS) {
    throw new RangeError(`HLL must have ${HLL_REGISTERS} registers, got ${registers.length}`);
  }
}

// Ertl's estimator works on the register histogram C[0..q+1], where q = 64 - p = 50 is the number
// of hash bits the rank looks at (so ranks are 1..q+1 = 51 and q+1 means "all q bits were zero").
const HLL_Q = 64 - HLL_PRECISION;
// alpha_inf m^2 with alpha_inf = 1 / (2 ln 2), the limit of alpha_m for m -> infinity.
const HLL_ALPHA_INF_M2 = (HLL_REGISTERS * HLL_REGISTERS) / (2 * Math.LN2);
// Scratch histogram reused by every call (hllEstimate is synchronous and not reentrant). 256 slots so
// any byte indexes it without a bounds check; slots above q+1 must stay empty.
const registerHistogram = new Int32Array(256);

/**
 * Cardinality estimate: O. Ertl's improved raw estimator ("New cardinality estimation algorithms
 * for HyperLogLog sketches", 2017, algorithm 6), computed from the histogram C of register values:
 *
 *   n = alpha_inf m^2 / (m sigma(C[0]/m) + sum_{k=1..q} C[k] 2^-k + m tau(1 - C[q+1]/m) 2^-q)
 *
 * sigma corrects for empty registers (replacing linear counting) and tau for saturated ones, so one
 * formula is nearly unbiased from 0 up to cardinalities approaching 2^64, with no switch point or
 * empirical bias table. 0 for empty registers; Infinity only if every register is saturated (rank
 * q+1 = 51), which needs on the order of 2^64 distinct ids. A rank above 51 is corrupt: RangeError.
 */
export function hllEstimate(registers: Uint8Array): number {
  assertRegisters(registers);
  const counts = registerHistogram;
  counts.fill(0);
  for (let i = 0; i < HLL_REGISTERS; i++) counts[registers[i]!]!++;
  for (let k = HLL_Q + 2; k < 256; k++) {
    if (counts[k] !== 0) {
      throw new RangeError(`HLL registers must hold ranks in [0, ${HLL_Q + 1}], found ${counts[k]} holding ${k}`);
    }
  }
  const empty = counts[0]!;
  if (empty === HLL_REGISTERS) return 0; // sigma(1) is infinite: no id was ever added.
  // Horner's scheme for sum_{k=1..q} C[k] 2^-k + m tau(1 - C[q+1]/m) 2^-q, from the top down.
  let z = HLL_REGISTERS * hllTau(1 - counts[HLL_Q + 1]! / HLL_REGISTERS);
  for (let k = HLL_Q; k >= 1; k--) z = 0.5 * (z + counts[k]!);
  z += HLL_REGISTERS * hllSigma(empty / HLL_REGISTERS);
  return HLL_ALPHA_INF_M2 / z;
}

/** sigma(x) = x + sum_{k>=1} x^(2^k) 2^(k-1) for 0 <= x < 1, summed until it no longer changes. */
function hllSigma(x: number): number {
  let z = x;
  let y = 1;
  for (;;) {
    x *= x;
    const previous = z;
    z += x * y;
    if (z === previous) return z;
    y += y;
  }
}

/** tau(x) = (1 - x - sum_{k>=1} (1 - x^(2^-k))^2 2^-k) / 3 for 0 <= x <= 1, summed until it no longer changes. */
function hllTau(x: number): number {
  if (x === 0 || x === 1) return 0;
  let z = 1 - x;
  let y = 1;
  for (;;) {
    x = Math.sqrt(x);
    const previous = z;
    y *= 0.5;
    z -= (1 - x) * (1 - x) * y;
    if (z === previous) return z / 3;
  }
}

// ---------------------------------------------------------------------------------------------
// Order statistics of the latency histogram
// ---------------------------------------------------------------------------------------------

/**
 * The value of the item at 0-based rank `position` (0 = smallest) of the multiset a latency
 * histogram describes: its bucket's representative (within LATENCY_RELATIVE_ACCURACY of the true
 * item), or with bounds the exact min / max for the first / last item. undefined when the
 * histogram is empty or the position is outside 0..n-1 (or not an integer).
 */
export function latencyValueAt(
  histogram: ReadonlyMap<number, number>,
  bounds: { min: number; max: number } | undefined,
  position: number,
): number | undefined {
  const keys: number[] = [];
  let n = 0;
  for (const [key, count] of histogram) {
    assertHistogramCount(key, count);
    if (count > 0) {
      keys.push(key);
      n += count;
    }
  }
  if (!Number.isSafeInteger(position) || position < 0 || position >= n) return undefined;
  if (bounds !== undefined) {
    if (position === 0) return bounds.min;
    if (position === n - 1) return bounds.max;
  }
  keys.sort((a, b) => a - b);
  let upTo = 0;
  for (const key of keys) {
    upTo += histogram.get(key)!;
    if (upTo > position) return latencyBucketValue(key);
  }
  return undefined;
}
