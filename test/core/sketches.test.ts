import { describe, expect, it } from "vitest";
import {
  HLL_PRECISION,
  HLL_REGISTERS,
  LATENCY_RELATIVE_ACCURACY,
  emptyHll,
  hllEstimate,
  hllPoint,
  latencyBucket,
  latencyBucketValue,
  latencyQuantile,
  latencyQuantiles,
  mergeHll,
  mergeLatency,
  positiveLatencyQuantiles,
} from "../../src/core/sketches.js";
import { mulberry32 } from "../support/prng.js";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** Standard normal deviate (Box-Muller) from a uniform PRNG. */
function gaussian(random: () => number): number {
  const u = 1 - random(); // (0, 1], keeps log finite
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

/** Log-uniform over [low, high]: exercises every bucket magnitude equally. */
function logUniform(random: () => number, low: number, high: number): number {
  return low * (high / low) ** random();
}

function relativeError(actual: number, expected: number): number {
  return Math.abs(actual - expected) / Math.abs(expected);
}

/** numpy.percentile(values, 100 p) with the default "linear" method, from sorted values. */
function exactQuantile(sorted: readonly number[], p: number): number {
  const h = (sorted.length - 1) * p;
  const lo = Math.floor(h);
  const hi = Math.ceil(h);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (h - lo);
}

function histogramOf(values: readonly number[]): Map<number, number> {
  const histogram = new Map<number, number>();
  for (const x of values) {
    const key = latencyBucket(x);
    histogram.set(key, (histogram.get(key) ?? 0) + 1);
  }
  return histogram;
}

/** The histogram as MongoDB stores it: a plain object with decimal string keys. */
function storedHistogram(histogram: ReadonlyMap<number, number>): Record<string, number> {
  const stored: Record<string, number> = {};
  for (const [key, count] of histogram) stored[String(key)] = count;
  return stored;
}

function registersOf(ids: Iterable<string>): Uint8Array {
  const registers = emptyHll();
  for (const id of ids) {
    const { register, rank } = hllPoint(id);
    if (rank > registers[register]!) registers[register] = rank;
  }
  return registers;
}

/** The sparse document `$max` updates would build: {"<register>": rank}. */
function storedRegisters(ids: Iterable<string>): Record<string, number> {
  const stored: Record<string, number> = {};
  for (const id of ids) {
    const { register, rank } = hllPoint(id);
    stored[String(register)] = Math.max(stored[String(register)] ?? 0, rank);
  }
  return stored;
}

function userIds(from: number, to: number): string[] {
  const ids: string[] = [];
  for (let i = from; i < to; i++) ids.push(`user-${i}`);
  return ids;
}

/**
 * Independent reference: textbook MurmurHash3 x86_32 over TextEncoder's UTF-8, written the
 * straightforward way (so it checks both the hand-rolled UTF-8 encoder and the fused two-seed loop).
 */
function murmur3(bytes: Uint8Array, seed: number): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  const mixKey = (k: number): number => Math.imul(Math.imul(k, c1) << 15 | Math.imul(k, c1) >>> 17, c2);
  let h = seed | 0;
  const blocks = Math.floor(bytes.length / 4);
  for (let b = 0; b < blocks; b++) {
    const i = 4 * b;
    const k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    h ^= mixKey(k);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  for (let i = bytes.length - 1; i >= 4 * blocks; i--) k = (k << 8) | bytes[i]!;
  if (bytes.length % 4 !== 0) h ^= mixKey(k);
  h ^= bytes.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

/** hllPoint recomputed from the reference hash with BigInt bit twiddling (slow but obviously right). */
function referencePoint(id: string): { register: number; rank: number } {
  const bytes = utf8(id);
  const hash = (BigInt(murmur3(bytes, 0x9747b28c)) << 32n) | BigInt(murmur3(bytes, 0x5bd1e995));
  const register = Number(hash >> BigInt(64 - HLL_PRECISION));
  let rank = 1;
  for (let bit = 64 - HLL_PRECISION - 1; bit >= 0 && ((hash >> BigInt(bit)) & 1n) === 0n; bit--) rank++;
  return { register, rank };
}

// ---------------------------------------------------------------------------------------------
// Latency histogram
// ---------------------------------------------------------------------------------------------

const A = LATENCY_RELATIVE_ACCURACY;
// Floating-point slack for values sitting exactly on a bucket boundary (error is then exactly a).
const ULP_SLACK = 1e-9;

describe("latencyBucket / latencyBucketValue", () => {
  it("represents every value across 0.01 ms .. 1 h within 1%", () => {
    const random = mulberry32(1);
    let worst = 0;
    let worstAt = Number.NaN;
    const check = (x: number): void => {
      const error = relativeError(latencyBucketValue(latencyBucket(x)), x);
      if (error > worst) [worst, worstAt] = [error, x];
    };
    for (let i = 0; i < 200_000; i++) check(logUniform(random, 0.01, 3.6e6));
    for (let i = 0; i < 20_000; i++) check(0.01 + random() * 3.6e6);
    for (let ms = 1; ms <= 10_000; ms++) check(ms); // whole milliseconds, the common case
    // Values on (or within rounding of) bucket boundaries gamma^i.
    const gamma = (1 + A) / (1 - A);
    for (let i = -230; i <= 760; i++) check(gamma ** i);
    check(0.001);
    check(3.6e6);
    expect(worst, `worst at x = ${worstAt}`).toBeLessThanOrEqual(A + ULP_SLACK);
    // The bound is tight: some value must come close to the 1% worst case, or buckets are too narrow.
    expect(worst).toBeGreaterThan(0.99 * A);
  });

  it("is monotone", () => {
    const random = mulberry32(2);
    const values = Array.from({ length: 100_000 }, () => logUniform(random, 0.0001, 3.6e6)).sort((a, b) => a - b);
    values.unshift(0, 1e-12, 0.000999999);
    const inversions = values.filter((x, i) => i > 0 && latencyBucket(x) < latencyBucket(values[i - 1]!));
    expect(inversions).toEqual([]);
    // Representative values are strictly increasing with the key.
    for (let key = 1; key < 1200; key++) {
      expect(latencyBucketValue(key)).toBeGreaterThan(latencyBucketValue(key - 1));
    }
  });

  it("maps 0 and sub-microsecond values to the zero bucket and everything else to integer keys >= 1", () => {
    for (const tiny of [0, -0, Number.MIN_VALUE, 1e-9, 0.0005, 0.000999999]) expect(latencyBucket(tiny)).toBe(0);
    expect(latencyBucketValue(0)).toBe(0);
    const random = mulberry32(3);
    for (let i = 0; i < 10_000; i++) {
      const key = latencyBucket(logUniform(random, 0.001, 1e9));
      expect(Number.isInteger(key)).toBe(true);
      expect(key).toBeGreaterThanOrEqual(1);
    }
    expect(latencyBucket(0.001)).toBe(1);
    expect(latencyBucket(Number.MAX_VALUE)).toBeGreaterThan(1);
  });

  it("keeps the stored bucket numbering stable (it is a storage format)", () => {
    // Pinned once; a change here means existing rollup documents would be misread.
    expect(latencyBucket(0.001)).toBe(1);
    expect(latencyBucket(1)).toBe(346);
    expect(latencyBucket(1000)).toBe(692);
    expect(latencyBucket(3.6e6)).toBe(1101);
    // 0.01 ms .. 1 h spans fewer than 1000 keys, so a rollup document stays small.
    expect(latencyBucket(3.6e6) - latencyBucket(0.01)).toBeLessThan(1000);
  });

  it("rejects negative, NaN and infinite latencies", () => {
    for (const bad of [-1, -1e-9, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      expect(() => latencyBucket(bad)).toThrow(RangeError);
    }
  });
});

describe("latencyQuantile", () => {
  const PS = [0, 0.5, 0.9, 0.95, 0.99, 1];
  const random = mulberry32(4);
  const dataSets: Record<string, number[]> = {
    uniform: Array.from({ length: 5000 }, () => 1 + random() * 999),
    logNormal: Array.from({ length: 20_000 }, () => Math.exp(Math.log(80) + 1.2 * gaussian(random))),
    // Few distinct values, so many quantiles fall on ties and between tied ranks.
    ties: Array.from({ length: 1000 }, () => [5, 5, 5, 12, 12, 300, 2500][Math.floor(random() * 7)]!),
    heavyTail: Array.from({ length: 3000 }, () => logUniform(random, 0.01, 3.6e6)),
    single: [42.5],
    two: [3, 900],
    small: [7, 1, 13, 2.5, 99],
  };

  for (const [name, values] of Object.entries(dataSets)) {
    it(`matches numpy's linear percentile within 1% (${name}, n = ${values.length})`, () => {
      const sorted = [...values].sort((a, b) => a - b);
      const histogram = histogramOf(values);
      const bounds = { min: sorted[0]!, max: sorted[sorted.length - 1]! };
      for (const p of PS) {
        const exact = exactQuantile(sorted, p);
        const estimate = latencyQuantile(histogram, p);
        expect(estimate).toBeDefined();
        expect(relativeError(estimate!, exact), `p = ${p}`).toBeLessThanOrEqual(A + ULP_SLACK);

        const bounded = latencyQuantile(histogram, p, bounds)!;
        expect(relativeError(bounded, exact), `p = ${p} with bounds`).toBeLessThanOrEqual(A + ULP_SLACK);
        expect(bounded).toBeGreaterThanOrEqual(bounds.min);
        expect(bounded).toBeLessThanOrEqual(bounds.max);
      }
      // The exact extremes are kept beside the histogram, so p = 0 and p = 1 are then exact.
      expect(latencyQuantile(histogram, 0, bounds)).toBe(bounds.min);
      expect(latencyQuantile(histogram, 1, bounds)).toBe(bounds.max);
    });
  }

  it("interpolates between the two closest ranks like numpy", () => {
    // Two items 3 and 900: the median is their midpoint, not either bucket.
    const histogram = histogramOf([3, 900]);
    const median = latencyQuantile(histogram, 0.5)!;
    const expected = (latencyBucketValue(latencyBucket(3)) + latencyBucketValue(latencyBucket(900))) / 2;
    expect(median).toBeCloseTo(expected, 9);
    // h = (n - 1) p = 0.25 for p = 0.25: a quarter of the way.
    const quarter = latencyQuantile(histogram, 0.25)!;
    expect(quarter).toBeCloseTo(0.75 * latencyBucketValue(latencyBucket(3)) + 0.25 * latencyBucketValue(latencyBucket(900)), 9);
    // With bounds the two items are the exact min and max.
    expect(latencyQuantile(histogram, 0.25, { min: 3, max: 900 })).toBeCloseTo(3 + (900 - 3) * 0.25, 9);
  });

  it("answers several quantiles in the caller's order, identical to one at a time", () => {
    const values = dataSets.logNormal!;
    const histogram = histogramOf(values);
    const ps = [0.99, 0, 0.5, 0.5, 1, 0.25, 0.999, 0.001];
    const bounds = { min: Math.min(...values), max: Math.max(...values) };
    expect(latencyQuantiles(histogram, ps)).toEqual(ps.map((p) => latencyQuantile(histogram, p)));
    expect(latencyQuantiles(histogram, ps, bounds)).toEqual(ps.map((p) => latencyQuantile(histogram, p, bounds)));
    expect(latencyQuantiles(histogram, [])).toEqual([]);
  });

  it("clamps into the given bounds", () => {
    // 100 lies in a bucket whose representative exceeds it; with max = 100 the answer cannot.
    const histogram = histogramOf([100, 100, 100]);
    expect(latencyBucketValue(latencyBucket(100))).not.toBe(100);
    expect(latencyQuantile(histogram, 0.5, { min: 100, max: 100 })).toBe(100);
  });

  it("is undefined for an empty histogram", () => {
    expect(latencyQuantile(new Map(), 0.5)).toBeUndefined();
    expect(latencyQuantile(new Map([[400, 0]]), 0.5)).toBeUndefined();
    expect(latencyQuantiles(new Map(), [0.5, 0.9])).toEqual([undefined, undefined]);
  });

  it("counts the zero bucket as value 0", () => {
    const histogram = histogramOf([0, 0, 0, 10]);
    expect(latencyQuantile(histogram, 0.5)).toBe(0);
    expect(relativeError(latencyQuantile(histogram, 1)!, 10)).toBeLessThanOrEqual(A);
  });

  it("rejects quantiles outside [0, 1], bad bounds and bad counts", () => {
    const histogram = histogramOf([1, 2, 3]);
    for (const p of [-0.01, 1.01, Number.NaN]) expect(() => latencyQuantile(histogram, p)).toThrow(RangeError);
    expect(() => latencyQuantile(histogram, 0.5, { min: 5, max: 1 })).toThrow(RangeError);
    expect(() => latencyQuantile(new Map([[400, -1]]), 0.5)).toThrow(RangeError);
    expect(() => latencyQuantile(new Map([[400, 1.5]]), 0.5)).toThrow(RangeError);
  });

  it("positiveLatencyQuantiles: the quantiles of the buckets counted above 0, the others skipped", () => {
    const rng = mulberry32(11);
    const kept = histogramOf(Array.from({ length: 500 }, () => Math.floor(rng() * 60_000)));
    // Buckets a moved first click left at 0 or -1, in among the others (keys inside and outside the kept range).
    const withDifferences = new Map(kept);
    for (const key of [0, 5, latencyBucket(30_000) + 1, latencyBucket(10_000_000)]) if (!kept.has(key)) withDifferences.set(key, key % 2 === 0 ? 0 : -1);
    expect(withDifferences.size).toBeGreaterThan(kept.size);
    const ps = [0.9, 0.5, 0, 1];
    expect(positiveLatencyQuantiles(withDifferences, ps)).toEqual(latencyQuantiles(kept, ps));
    expect(() => latencyQuantiles(withDifferences, ps)).toThrow(RangeError);
    expect(positiveLatencyQuantiles(new Map([[7, 0], [9, -2]]), [0.5])).toEqual([undefined]);
    expect(() => positiveLatencyQuantiles(new Map([[400, 1.5]]), [0.5])).toThrow(RangeError);
  });
});

describe("mergeLatency", () => {
  const random = mulberry32(5);
  const a = Array.from({ length: 4000 }, () => Math.exp(Math.log(30) + gaussian(random)));
  const b = Array.from({ length: 6000 }, () => Math.exp(Math.log(200) + 0.5 * gaussian(random)));

  it("merging two histograms equals the histogram of the union", () => {
    const union = histogramOf([...a, ...b]);
    const fromMaps = mergeLatency(mergeLatency(new Map(), histogramOf(a)), histogramOf(b));
    expect(fromMaps).toEqual(union);
    // Same from the stored (MongoDB) form, in either order and mixing forms.
    const fromStored = mergeLatency(mergeLatency(new Map(), storedHistogram(histogramOf(b))), storedHistogram(histogramOf(a)));
    expect(fromStored).toEqual(union);
    const mixed = mergeLatency(histogramOf(a), storedHistogram(histogramOf(b)));
    expect(mixed).toEqual(union);

    const ps = [0, 0.5, 0.9, 0.99, 1];
    expect(latencyQuantiles(fromStored, ps)).toEqual(latencyQuantiles(union, ps));
    const sorted = [...a, ...b].sort((x, y) => x - y);
    for (const p of ps) expect(relativeError(latencyQuantile(fromStored, p)!, exactQuantile(sorted, p))).toBeLessThanOrEqual(A);
  });

  it("returns and mutates `into`", () => {
    const into = new Map([[346, 2]]);
    expect(mergeLatency(into, { "346": 3, "0": 1 })).toBe(into);
    expect(into).toEqual(new Map([[346, 5], [0, 1]]));
  });

  it("rejects malformed stored keys and counts", () => {
    const badKeys: Record<string, number>[] = [{ "01": 1 }, { "": 1 }, { x: 1 }, { "-1": 1 }, { "1.5": 1 }, { "1e3": 1 }];
    for (const bad of badKeys) {
      expect(() => mergeLatency(new Map(), bad)).toThrow(RangeError);
    }
    for (const bad of [-1, 0.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => mergeLatency(new Map(), { "12": bad })).toThrow(RangeError);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// HyperLogLog
// ---------------------------------------------------------------------------------------------

describe("hllPoint", () => {
  it("uses standard MurmurHash3 x86_32 (reference implementation matches published vectors)", () => {
    // Published test vectors for MurmurHash3_x86_32; they validate the reference used below.
    expect(murmur3(utf8(""), 0)).toBe(0);
    expect(murmur3(utf8(""), 1)).toBe(0x514e28b7);
    expect(murmur3(utf8(""), 0xffffffff)).toBe(0x81f16f39);
    expect(murmur3(new Uint8Array(4), 0)).toBe(0x2362f9de);
    expect(murmur3(utf8("a"), 0x9747b28c)).toBe(0x7fa09ea6);
    expect(murmur3(utf8("aa"), 0x9747b28c)).toBe(0x5d211726);
    expect(murmur3(utf8("aaa"), 0x9747b28c)).toBe(0x283e0130);
    expect(murmur3(utf8("aaaa"), 0x9747b28c)).toBe(0x5a97808a);
    expect(murmur3(utf8("Hello, world!"), 0x9747b28c)).toBe(0x24884cba);
    expect(murmur3(utf8("The quick brown fox jumps over the lazy dog"), 0)).toBe(0x2e4ff723);
    expect(murmur3(utf8("The quick brown fox jumps over the lazy dog"), 0x9747b28c)).toBe(0x2fa826cd);
  });

  it("matches the reference hash for ASCII, multi-byte, astral and malformed UTF-16 ids of every tail length", () => {
    const ids = [
      "",
      "a",
      "ab",
      "abc",
      "abcd",
      "user-1",
      // Ranks >= 19: the first 18 rank bits are zero, so these reach into the second hash half.
      "user-29326",
      "user-60253",
      "user-149935",
      "550e8400-e29b-41d4-a716-446655440000",
      "ünïcødé",
      "日本語のユーザー",
      "emoji 😀🎉 user",
      "\u{10ffff}",
      "lone \ud800 high",
      "lone \udc00 low",
      "trailing \ud83d",
      "\u0000\u007f\u0080\u07ff\u0800\uffff",
      "x".repeat(1000),
      "é".repeat(333),
    ];
    const random = mulberry32(6);
    for (let i = 0; i < 500; i++) {
      // Random strings mixing all UTF-8 lengths, including lone surrogates.
      const length = Math.floor(random() * 24);
      let id = "";
      for (let j = 0; j < length; j++) {
        const kind = random();
        id += kind < 0.5 ? String.fromCharCode(32 + Math.floor(random() * 95))
          : kind < 0.7 ? String.fromCharCode(0x80 + Math.floor(random() * 0x780))
          : kind < 0.9 ? String.fromCharCode(0x800 + Math.floor(random() * 0xf7ff))
          : String.fromCodePoint(0x10000 + Math.floor(random() * 0xfffff));
      }
      ids.push(id);
    }
    for (const id of ids) expect(hllPoint(id), JSON.stringify(id)).toEqual(referencePoint(id));
  });

  it("is deterministic and keeps points stable (they are a storage format)", () => {
    // A point is a register of the sketch and a rank a 64-bit hash can give it.
    for (const id of ["user-1", "user-2", "", "日本語", "x".repeat(1000)]) {
      const { register, rank } = hllPoint(id);
      expect(Number.isInteger(register) && register >= 0 && register < 2 ** HLL_PRECISION, `${id}: register ${register}`).toBe(true);
      expect(Number.isInteger(rank) && rank >= 1 && rank <= 64 - HLL_PRECISION + 1, `${id}: rank ${rank}`).toBe(true);
    }
    // Pinned once; a change here means existing rollup documents can no longer be merged.
    expect(hllPoint("user-1")).toEqual(PINNED["user-1"]);
    expect(hllPoint("user-2")).toEqual(PINNED["user-2"]);
    expect(hllPoint("")).toEqual(PINNED[""]);
    expect(hllPoint("user-29326")).toEqual(PINNED["user-29326"]);
    expect(hllPoint("user-60253")).toEqual(PINNED["user-60253"]);
  });

  it("gives registers in range and ranks in 1..51 with the geometric distribution", () => {
    const rankCounts = new Array<number>(52).fill(0);
    const n = 200_000;
    let outOfRange = 0;
    for (let i = 0; i < n; i++) {
      const { register, rank } = hllPoint(`user-${i}`);
      if (!(Number.isInteger(register) && register >= 0 && register < HLL_REGISTERS)) outOfRange++;
      if (!(Number.isInteger(rank) && rank >= 1 && rank <= 51)) outOfRange++;
      else rankCounts[rank]!++;
    }
    expect(outOfRange).toBe(0);
    // P(rank = k) = 2^-k; check the well-populated ranks within 5 standard deviations.
    for (let k = 1; k <= 8; k++) {
      const expected = n * 2 ** -k;
      expect(Math.abs(rankCounts[k]! - expected), `rank ${k}`).toBeLessThan(5 * Math.sqrt(expected));
    }
  });

  it("spreads sequential ids uniformly over the registers (chi-square)", () => {
    const n = 163_840; // 10 per register
    const counts = new Array<number>(HLL_REGISTERS).fill(0);
    for (let i = 0; i < n; i++) counts[hllPoint(`user-${i}`).register]!++;
    const expected = n / HLL_REGISTERS;
    const chiSquare = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
    // df = 16383: mean 16383, sd sqrt(2 df) ~ 181; allow 5 sd either way.
    const df = HLL_REGISTERS - 1;
    expect(Math.abs(chiSquare - df)).toBeLessThan(5 * Math.sqrt(2 * df));
  });
});

// Computed once with the implementation after it matched the reference hash above.
const PINNED: Record<string, { register: number; rank: number }> = {
  "user-1": { register: 10222, rank: 5 },
  "user-2": { register: 1887, rank: 2 },
  "": { register: 15085, rank: 1 },
  "user-29326": { register: 6308, rank: 21 },
  "user-60253": { register: 9810, rank: 25 },
};

/**
 * Independent transcription of Ertl's improved raw estimator (arXiv:1702.01284, eq. for n-hat with
 * sigma and tau written as explicit series rather than the implementation's convergence loops and
 * Horner scheme): alpha_inf m^2 / (m sigma(C0/m) + sum_{k=1..q} C_k 2^-k + m tau(1 - C_{q+1}/m) 2^-q).
 */
function ertlEstimate(histogram: ReadonlyMap<number, number>): number {
  const m = HLL_REGISTERS;
  const q = 64 - HLL_PRECISION;
  const count = (k: number) => histogram.get(k) ?? 0;
  const sigma = (x: number) => {
    if (x === 1) return Number.POSITIVE_INFINITY;
    let sum = x;
    for (let k = 1; k <= 64; k++) sum += x ** (2 ** k) * 2 ** (k - 1);
    return sum;
  };
  const tau = (x: number) => {
    if (x === 0 || x === 1) return 0;
    let sum = 1 - x;
    for (let k = 1; k <= 64; k++) sum -= (1 - x ** (2 ** -k)) ** 2 * 2 ** -k;
    return sum / 3;
  };
  let z = m * sigma(count(0) / m) + m * tau(1 - count(q + 1) / m) * 2 ** -q;
  for (let k = 1; k <= q; k++) z += count(k) * 2 ** -k;
  return (m * m) / (2 * Math.LN2) / z;
}

/** Registers with exactly the given histogram {value: how many registers hold it} (counts sum to m), in a scattered order. */
function registersWithHistogram(histogram: ReadonlyMap<number, number>): Uint8Array {
  const registers = new Uint8Array(HLL_REGISTERS).fill(255);
  let next = 0;
  for (const [value, count] of histogram) {
    for (let i = 0; i < count; i++) {
      // 7919 is odd, so i -> 7919 i mod 2^14 visits every register once.
      registers[(next++ * 7919) % HLL_REGISTERS] = value;
    }
  }
  expect(next).toBe(HLL_REGISTERS);
  return registers;
}

describe("hllEstimate", () => {
  // One fixed id set lands somewhere in the error distribution (relative standard error about
  // 0.8% for the raw regime, less while registers are empty). These are deterministic: the hash is
  // pinned. Sequential ids at n = 100000 happen to sit at +1.1% (the old estimator gave the same:
  // it is this id set, not the estimator), so that one keeps a 2% bound.
  const tolerances: [number, number][] = [
    [1, 0.01],
    [10, 0.01],
    [100, 0.01],
    [1000, 0.01],
    [10_000, 0.01],
    [30_000, 0.01],
    [40_000, 0.01],
    [41_000, 0.01],
    [45_000, 0.01],
    [50_000, 0.01],
    [100_000, 0.02],
  ];
  for (const [n, tolerance] of tolerances) {
    it(`estimates ${n} sequential ids within ${tolerance * 100}%`, () => {
      const estimate = hllEstimate(registersOf(userIds(0, n)));
      expect(relativeError(estimate, n)).toBeLessThanOrEqual(tolerance);
    });
  }

  it("has the statistical accuracy of a 16384-register HLL over many independent id sets, with no bias near the old switch point", () => {
    // A single id set can land anywhere in the error distribution, so check the spread over 20
    // independent sets: theory gives a relative standard error of at most 1.04/sqrt(m) = 0.81%,
    // and the bias of the mean over 20 sets has a standard error of about 0.18%. The standard
    // estimator failed this between 40k and 50k (bias +1.8% at n = 40000, rms 2.6%), just above
    // its switch from linear counting to the raw estimate at 2.5 m = 40960.
    const checkpoints = [1000, 10_000, 30_000, 40_000, 41_000, 42_000, 45_000, 50_000, 100_000];
    const sets = 20;
    const errors = new Map(checkpoints.map((n) => [n, [] as number[]]));
    for (let set = 0; set < sets; set++) {
      // Each set's ids are prefixes of one sequence, so its registers grow through the checkpoints.
      const registers = emptyHll();
      for (let i = 0; i < checkpoints[checkpoints.length - 1]!; i++) {
        const { register, rank } = hllPoint(`set${set}:${i}`);
        if (rank > registers[register]!) registers[register] = rank;
        const atCheckpoint = errors.get(i + 1);
        if (atCheckpoint !== undefined) atCheckpoint.push(hllEstimate(registers) / (i + 1) - 1);
      }
    }
    for (const n of checkpoints) {
      const e = errors.get(n)!;
      expect(e).toHaveLength(sets);
      const rms = Math.sqrt(e.reduce((sum, x) => sum + x * x, 0) / sets);
      const bias = e.reduce((sum, x) => sum + x, 0) / sets;
      expect(rms, `rms at n = ${n}`).toBeLessThan(0.01);
      expect(Math.abs(bias), `bias at n = ${n}`).toBeLessThan(0.006);
    }
  });

  it("is 0 for no ids", () => {
    expect(hllEstimate(emptyHll())).toBe(0);
  });

  it("is Ertl's improved raw estimator of the register histogram", () => {
    const m = HLL_REGISTERS;
    const cases: [string, Map<number, number>][] = [
      ["one register", new Map([[0, m - 1], [1, 1]])],
      ["mostly empty", new Map([[0, m - 100], [1, 50], [2, 25], [3, 13], [4, 7], [5, 5]])],
      ["about 40% empty", new Map([[0, 6500], [1, 5000], [2, 2600], [3, 1300], [4, 600], [5, 250], [6, 100], [7, 29], [9, 4], [14, 1]])],
      ["one empty register", new Map([[0, 1], [1, m - 1]])],
      ["no empty register", new Map([[3, m - 2], [7, 1], [20, 1]])],
      ["empty and saturated registers", new Map([[0, 10], [3, m - 13], [50, 1], [51, 2]])],
      ["half saturated", new Map([[40, m / 2], [51, m / 2]])],
    ];
    for (const [name, histogram] of cases) {
      const expected = ertlEstimate(histogram);
      expect(Number.isFinite(expected) && expected > 0, name).toBe(true);
      expect(relativeError(hllEstimate(registersWithHistogram(histogram)), expected), name).toBeLessThan(1e-12);
    }
  });

  it("has the closed forms of the estimator where sigma and tau vanish", () => {
    // Every register at k (1 <= k <= q): sigma(0) = tau(1) = 0, so the estimate is alpha_inf m 2^k.
    const m = HLL_REGISTERS;
    const registers = emptyHll();
    for (const k of [1, 2, 10, 50]) {
      registers.fill(k);
      expect(relativeError(hllEstimate(registers), (m * 2 ** k) / (2 * Math.LN2)), `all ${k}`).toBeLessThan(1e-12);
    }
    // Every register saturated at q + 1 = 51: tau(0) = 0 too, the estimate is unbounded.
    registers.fill(51);
    expect(hllEstimate(registers)).toBe(Number.POSITIVE_INFINITY);
  });

  it("stays close to linear counting while most registers are empty", () => {
    // There m sigma(C0/m) dominates the denominator and the estimate agrees with m ln(m / C0) to
    // far better than its standard error. (With more registers filled the rest of the histogram
    // carries information linear counting ignores, and the two part: -0.9% at 3000 rank-1 registers.)
    const m = HLL_REGISTERS;
    for (const filled of [1, 10, 100, 1000]) {
      const histogram = new Map([[0, m - filled], [1, filled]]);
      const linearCounting = m * Math.log(m / (m - filled));
      expect(relativeError(hllEstimate(registersWithHistogram(histogram)), linearCounting), `${filled} filled`).toBeLessThan(0.001);
    }
  });

  it("ignores duplicates", () => {
    const ids = userIds(0, 5000);
    expect(hllEstimate(registersOf([...ids, ...ids, ...ids.slice(0, 100)]))).toBe(hllEstimate(registersOf(ids)));
  });

  it("rejects registers of the wrong size or holding ranks above 51", () => {
    expect(() => hllEstimate(new Uint8Array(100))).toThrow(RangeError);
    const registers = emptyHll();
    registers[7] = 52;
    expect(() => hllEstimate(registers)).toThrow(RangeError);
    registers[7] = 51;
    expect(hllEstimate(registers)).toBeGreaterThan(0);
  });
});

describe("mergeHll", () => {
  const a = userIds(0, 60_000);
  const b = userIds(40_000, 100_000);
  const union = registersOf(userIds(0, 100_000));

  it("merge(A, B) equals the registers of A ∪ B, from dense, sparse-object and Map forms", () => {
    const dense = mergeHll(registersOf(a), registersOf(b));
    expect(dense).toEqual(union);
    expect(hllEstimate(dense)).toBe(hllEstimate(union));

    const sparse = mergeHll(mergeHll(emptyHll(), storedRegisters(a)), storedRegisters(b));
    expect(sparse).toEqual(union);

    const asMap = new Map(Object.entries(storedRegisters(b)).map(([k, v]) => [Number(k), v]));
    expect(mergeHll(mergeHll(emptyHll(), storedRegisters(a)), asMap)).toEqual(union);

    // The sparse form is exactly the dense registers without the zeros.
    expect(mergeHll(emptyHll(), storedRegisters(a))).toEqual(registersOf(a));
  });

  it("is idempotent and commutative", () => {
    const once = mergeHll(emptyHll(), registersOf(a));
    const estimate = hllEstimate(once);
    mergeHll(once, registersOf(a));
    mergeHll(once, storedRegisters(a));
    expect(hllEstimate(once)).toBe(estimate);
    expect(once).toEqual(registersOf(a));
    expect(mergeHll(registersOf(b), registersOf(a))).toEqual(mergeHll(registersOf(a), registersOf(b)));
  });

  it("returns and mutates `into`", () => {
    const into = emptyHll();
    expect(mergeHll(into, { "5": 3 })).toBe(into);
    expect(into[5]).toBe(3);
    mergeHll(into, { "5": 2 });
    expect(into[5]).toBe(3);
  });

  it("rejects malformed registers", () => {
    const bads: Record<string, number>[] = [{ "16384": 1 }, { "-1": 1 }, { "01": 1 }, { x: 1 }, { "3": 52 }, { "3": 1.5 }, { "3": -1 }];
    for (const bad of bads) {
      expect(() => mergeHll(emptyHll(), bad)).toThrow(RangeError);
    }
    expect(() => mergeHll(emptyHll(), new Map([[16384, 1]]))).toThrow(RangeError);
    expect(() => mergeHll(emptyHll(), new Uint8Array(10))).toThrow(RangeError);
    expect(() => mergeHll(new Uint8Array(10), {})).toThrow(RangeError);
  });
});
