/**
 * The rollup reader's cache of decoded documents is bounded by size: a reader that may keep almost
 * nothing still answers windows and time series of many documents exactly, from the documents
 * each call read, and a repeated window or series needs none of them (their sums are kept).
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, expect, it } from "vitest";
import { timeWindow } from "../../../src/core/window.js";
import { bucketStarts } from "../../../src/core/time-buckets.js";
import { fastMetrics, rawMetrics } from "../../../src/store/read/metrics-source.js";
import { decodedBytes, RollupReader } from "../../../src/store/read/rollup-reader.js";
import { decode } from "../../../src/store/read/rollup-aggregate.js";
import type { MetricsFilter } from "../../../src/store/read/metrics-filter.js";
import { startHarness, type Harness } from "../../support/harness.js";
import { monitoredCollections } from "../../support/monitored.js";

const HOUR = 3_600_000;

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

it("answers windows and hourly series of many rollup documents exactly while keeping at most one", async () => {
  // Three days of searches (a few an hour, both variants) and clicks on some: ~150 rollup documents.
  const start = Math.floor((Date.now() - 3 * 24 * HOUR) / HOUR) * HOUR;
  const events = [];
  for (let i = 0; i < 3 * 24 * 2; i++) {
    const id = `r${i}`;
    const variant = i % 2 === 0 ? "a" : "b";
    const at = start + i * (HOUR / 2) + 60_000;
    events.push({ kind: { case: "impression" as const, value: { eventId: id, impressionId: id, userId: `u${i % 7}`, query: "q", variant, resultsCount: 5, responseTimeMs: 10 + (i % 13), timestamp: timestampFromDate(new Date(at)) } } });
    if (i % 3 === 0) events.push({ kind: { case: "click" as const, value: { eventId: `${id}-c`, impressionId: id, userId: `u${i % 7}`, productId: "p", rank: i % 4, searchQuery: "q", variant, responseTimeMs: 10, timestamp: timestampFromDate(new Date(at + 5_000)) } } });
  }
  await h.client.logEvents({ events });
  const c = h.server.store.collections;
  // One byte: every document read pushes the one before out.
  const reader = new RollupReader(c, 1);
  const fast = fastMetrics(c, reader);
  const raw = rawMetrics(c);
  const f: MetricsFilter = { window: timeWindow(4) };
  for (let round = 0; round < 2; round++) {
    expect(await fast.totals(f)).toEqual(await raw.totals(f));
    expect(await fast.ranks(f, true)).toEqual(await raw.ranks(f, true));
    const starts = bucketStarts("UTC", "hour", f.window.start, new Date());
    expect(await fast.timeSeries(f, "hour", "UTC", starts)).toEqual(await raw.timeSeries(f, "hour", "UTC", starts));
  }

  // Repeated through a client that sees every command: the listing of versions, and no document.
  const { monitored, commands, c: seen } = await monitoredCollections(h.dbName);
  try {
    const watched = new RollupReader(seen, 1);
    const whole = { start: new Date(start), until: new Date(start + 3 * 24 * HOUR) };
    const hours = bucketStarts("UTC", "hour", new Date(start), new Date(start + 3 * 24 * HOUR - 1));
    const once = await watched.buckets(new Date(start), hours);
    await watched.window(whole);
    commands.length = 0;
    expect(await watched.buckets(new Date(start), hours)).toEqual(once);
    await watched.window(whole);
    expect(commands).toEqual(["find rollups", "find rollups"]);
  } finally {
    await monitored.close();
  }
});

it("estimates a decoded document's size from what it holds", () => {
  const empty = decode({ _id: "h|x", g: "h", t: new Date(0), v: "a", ver: 1 } as never);
  const fuller = decode({ _id: "h|y", g: "h", t: new Date(0), v: "a", ver: 1, ranks: { 1: 3, 2: 1 }, rt: { 10: 2, 11: 1, 12: 1 }, ub: { 3: { i: 1 }, 9: { i: 2, c: 1 } } } as never);
  expect(decodedBytes(empty)).toBeGreaterThan(0);
  // 5 more histogram entries and 2 user buckets (6 sums and an index each).
  expect(decodedBytes(fuller) - decodedBytes(empty)).toBe(5 * 40 + 2 * (6 * 8 + 2));
});
