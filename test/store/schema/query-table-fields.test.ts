/**
 * The query tables' in-memory form: histograms packed as one-byte strings (query-table-fields.ts)
 * decode to exactly what was packed, and a stored table survives decode and encode unchanged.
 */
import { describe, expect, it } from "vitest";
import { decodeQueryTable, eachPair, encodeQueryTable, packPairs, type StoredQueryCounts } from "../../../src/store/schema/query-table-fields.js";
import { mulberry32 } from "../../support/prng.js";

const unpack = (packed: ReturnType<typeof packPairs>) => {
  const out: [number, number][] = [];
  eachPair(packed, (key, n) => out.push([key, n]));
  return out;
};

describe("packed histograms", () => {
  it("round-trip any integers below 2^52 in magnitude, in order, as one-byte strings", () => {
    const random = mulberry32(23);
    const edge = [0, 1, -1, 63, 64, -64, -65, 127, 128, 255, 256, 2 ** 31 - 1, -(2 ** 31), 2 ** 32, 2 ** 52 - 1, -(2 ** 52 - 1)];
    for (let trial = 0; trial < 500; trial++) {
      const pairs: [number, number][] = Array.from({ length: Math.floor(random() * 20) + 1 }, () => [
        Math.floor(random() * 200),
        random() < 0.2 ? edge[Math.floor(random() * edge.length)]! : Math.floor((random() - 0.1) * 10 ** Math.floor(random() * 10)),
      ]);
      const packed = packPairs(pairs)!;
      expect(unpack(packed)).toEqual(pairs);
      for (let i = 0; i < packed.length; i++) expect(packed.charCodeAt(i)).toBeLessThan(256);
    }
    expect(packPairs([])).toBeUndefined();
    expect(unpack(undefined)).toEqual([]);
    expect(() => packPairs([[1, 0.5]])).toThrow(/not an integer/);
    expect(() => packPairs([[1, 2 ** 52]])).toThrow(/below 2\^52/);
  });

  it("a stored table decodes and encodes back to itself (first-click ranks moved away to 0 dropped)", () => {
    const random = mulberry32(7);
    expect(decodeQueryTable(undefined).size).toBe(0);
    const queries = Array.from({ length: 300 }, (_, i) => `q${i} ${"x.$%".slice(0, i % 5)}`);
    const stored = new Map<string, StoredQueryCounts>();
    for (const q of queries) {
      const n: StoredQueryCounts = { i: 1 + Math.floor(random() * 1000), c: Math.floor(random() * 50), s: 3, n: 1, r: 7 };
      for (let k = 1; k < 12; k++) if (random() < 0.5) n[`h${k}`] = 1 + Math.floor(random() * 100_000);
      for (let r = 0; r < 12; r++) if (random() < 0.3) n[`f${r}`] = random() < 0.2 ? 0 : 1 + Math.floor(random() * 500);
      stored.set(q, n);
    }
    // Stored through the encoder, so buckets and escaping are the real ones.
    const decoded = decodeQueryTable(encodeQueryTable(new Map([...stored].map(([q, n]) => [q, { i: n.i!, c: n.c!, s: n.s!, n: n.n!, r: n.r!, k: 0, o: 0, h: packPairs(Object.entries(n).filter(([f]) => f[0] === "h").map(([f, v]) => [Number(f.slice(1)), v])), f: packPairs(Object.entries(n).filter(([f]) => f[0] === "f").map(([f, v]) => [Number(f.slice(1)), v])) }]))));
    for (const [q, n] of stored) {
      const entry = decoded.get(q)!;
      expect(entry.i).toBe(n.i);
      const h = Object.entries(n).filter(([f]) => f[0] === "h").map(([f, v]) => [Number(f.slice(1)), v]);
      const f = Object.entries(n).filter(([f, v]) => f[0] === "f" && v !== 0).map(([f, v]) => [Number(f.slice(1)), v]);
      expect(unpack(entry.h).sort((a, b) => a[0]! - b[0]!)).toEqual(h.sort((a, b) => a[0]! - b[0]!));
      expect(unpack(entry.f).sort((a, b) => a[0]! - b[0]!)).toEqual(f.sort((a, b) => a[0]! - b[0]!));
    }
    expect(encodeQueryTable(decoded)).toEqual(encodeQueryTable(decodeQueryTable(encodeQueryTable(decoded))));
  });
});
