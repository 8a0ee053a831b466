/**
 * Bucket starts: UTC (the default zone, computed from Date alone) agrees with the same zone read
 * through Intl ("Etc/UTC"), and a zone with daylight saving starts its days at local midnight.
 */
import { expect, it } from "vitest";
import { bucketStarts } from "../../src/core/time-buckets.js";
import { mulberry32 } from "../support/prng.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

it("UTC buckets are the whole UTC hours and midnights, the same as Etc/UTC's through Intl", () => {
  const rand = mulberry32(23);
  for (let i = 0; i < 200; i++) {
    const from = Date.UTC(2026, 0, 1) + Math.floor(rand() * 365 * DAY);
    const to = from + Math.floor(rand() * 40 * DAY);
    for (const unit of ["hour", "day"] as const) {
      const starts = bucketStarts("UTC", unit, new Date(from), new Date(to)).map((d) => d.getTime());
      expect(starts).toEqual(bucketStarts("Etc/UTC", unit, new Date(from), new Date(to)).map((d) => d.getTime()));
      const size = unit === "hour" ? HOUR : DAY;
      expect(starts[0]).toBe(Math.floor(from / size) * size);
      starts.forEach((s, k) => expect(s).toBe(starts[0]! + k * size));
      expect(starts.at(-1)!).toBeLessThanOrEqual(to);
      expect(starts.at(-1)! + size).toBeGreaterThan(to);
    }
  }
});

it("days in a zone with daylight saving start at local midnight, 23 or 25 hours apart on the switch", () => {
  // Europe/Berlin switches to summer time on 29 March 2026 and back on 25 October 2026.
  const spring = bucketStarts("Europe/Berlin", "day", new Date(Date.UTC(2026, 2, 28, 12)), new Date(Date.UTC(2026, 2, 30, 12))).map((d) => d.toISOString());
  expect(spring).toEqual(["2026-03-27T23:00:00.000Z", "2026-03-28T23:00:00.000Z", "2026-03-29T22:00:00.000Z"]);
  const autumn = bucketStarts("Europe/Berlin", "day", new Date(Date.UTC(2026, 9, 24, 12)), new Date(Date.UTC(2026, 9, 26, 12))).map((d) => d.toISOString());
  expect(autumn).toEqual(["2026-10-23T22:00:00.000Z", "2026-10-24T22:00:00.000Z", "2026-10-25T23:00:00.000Z"]);
});
