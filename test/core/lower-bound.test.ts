/** lowerBound against a linear scan, over sorted keys with repeats, at, between and beyond them. */
import { expect, it } from "vitest";
import { lowerBound } from "../../src/core/lower-bound.js";
import { mulberry32 } from "../support/prng.js";

it("finds the first index whose key is at least x, as a linear scan does", () => {
  const rand = mulberry32(7);
  for (let t = 0; t < 300; t++) {
    const keys = Array.from({ length: Math.floor(rand() * 20) }, () => Math.floor(rand() * 10)).sort((a, b) => a - b);
    for (let x = -1; x <= 11; x += 0.5) {
      const scan = keys.findIndex((k) => k >= x);
      expect(lowerBound(keys.length, (i) => keys[i]!, x)).toBe(scan === -1 ? keys.length : scan);
    }
  }
});
