/**
 * A very heavy user (a bot) in a user-filtered read: one user's ~650,000 searches with a first
 * click in the window. The one-user totals (GetCtr with user_id) gathered each variant's first
 * clicks of the user into one array, which passed the engine's 100 MB limit for one `$push` (and
 * would have passed 16 MB for a document next): the read failed. Now its rows are by first click
 * (rank and delay), streamed. Real engine, documents inserted straight into a database of the
 * test's own (no indexes: the engine scans; the answer is the same).
 */
import { randomUUID } from "node:crypto";
import { MongoClient } from "mongodb";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { latencyBucket } from "../../../src/core/sketches.js";
import { timeWindow } from "../../../src/core/window.js";
import { collections, type Collections } from "../../../src/store/schema/documents.js";
import { eventTotals } from "../../../src/store/read/metrics-queries.js";

const DAY = 86_400_000;
let mongo: MongoClient;
let c: Collections;

beforeAll(async () => {
  mongo = await new MongoClient(inject("mongoUri")).connect();
  c = collections(mongo.db(`heavy_${randomUUID().replaceAll("-", "").slice(0, 12)}`));
});
afterAll(async () => {
  await c.db.dropDatabase();
  await mongo.close();
});

it("answers a user-filtered read of a user with 720,000 searches (650,000 first-clicked) in the window, exactly", { timeout: 240_000 }, async () => {
  const now = Date.now();
  const N = 720_000;
  // What the read should find, counted here as the documents are made.
  const expected = { impressions: 0, searchesWithClicks: 0, noResults: 0, searchesWithResults: 0, ranks: new Map<number, number>(), delays: new Map<number, number>() };
  const count = (m: Map<number, number>, k: number) => m.set(k, (m.get(k) ?? 0) + 1);
  for (let start = 0; start < N; start += 50_000) {
    const docs = [];
    for (let i = start; i < Math.min(N, start + 50_000); i++) {
      const timestamp = new Date(now - 60_000 - (i % (20 * 86_400)) * 1000);
      const resultsCount = i % 50 === 0 ? 0 : 5;
      const firstClick = resultsCount > 0 && i % 13 !== 0;
      const rank = i % 7;
      // ~35,000 distinct (rank, delay) pairs: as many rows.
      const delay = 200 + ((i * 7919) % 5_000);
      docs.push({
        user_id: "bot",
        variant: "a",
        results_count: resultsCount,
        response_time_ms: 10 + (i % 40),
        timestamp,
        ...(firstClick ? { clicked: true, fc_t: new Date(timestamp.getTime() + delay), fc_r: rank } : {}),
      });
      expected.impressions++;
      if (firstClick) (expected.searchesWithClicks++, count(expected.ranks, rank), count(expected.delays, latencyBucket(delay)));
      if (resultsCount === 0) expected.noResults++;
      else expected.searchesWithResults++;
    }
    await c.impressions.insertMany(docs as never[], { ordered: false });
  }
  // Another user's search, and the bot's clicks (counted per variant from the clicks collection).
  await c.impressions.insertOne({ user_id: "someone", variant: "a", results_count: 3, response_time_ms: 5, timestamp: new Date(now - DAY), clicked: true, fc_t: new Date(now - DAY + 100), fc_r: 0 } as never);
  await c.clicks.insertMany(Array.from({ length: 1_000 }, (_, i) => ({ user_id: "bot", variant: "a", rank: i % 7, timestamp: new Date(now - 120_000 - i * 1000) })) as never[]);

  const t = await eventTotals(c, { window: timeWindow(30, new Date(now)), userId: "bot" });
  expect([...t.variants.keys()]).toEqual(["a"]);
  const a = t.overall;
  expect({ impressions: a.impressions, clicks: a.clicks, searchesWithClicks: a.searchesWithClicks, noResults: a.noResults, users: a.users }).toEqual({
    impressions: expected.impressions,
    clicks: 1_000,
    searchesWithClicks: expected.searchesWithClicks,
    noResults: expected.noResults,
    users: 1,
  });
  expect(a.firstClicks.searchesWithResults).toBe(expected.searchesWithResults);
  expect(new Map([...a.firstClicks.ranks].sort(([x], [y]) => x - y))).toEqual(new Map([...expected.ranks].sort(([x], [y]) => x - y)));
  expect(new Map([...a.firstClicks.delays].sort(([x], [y]) => x - y))).toEqual(new Map([...expected.delays].sort(([x], [y]) => x - y)));
  expect(t.variants.get("a")!.firstClicks.ranks).toEqual(a.firstClicks.ranks);
});
