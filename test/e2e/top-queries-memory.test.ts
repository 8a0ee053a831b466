/**
 * GetTopQueries over a month of many distinct queries from server processes with a small heap:
 * day tables are compacted, stored, read back and merged one at a time, so neither the first
 * read nor a restarted server's read of the stored days runs out of memory, and both answer as
 * the raw events do.
 */
import { randomUUID } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { MongoClient } from "mongodb";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { createClickAnalyticsClient, type StreamBatch } from "../../src/client/index.js";
import { startServerProcess, type ServerProcess } from "../support/server-process.js";

const DAY = 86_400_000;
const DAYS = [...Array(28).keys()].map((d) => d + 2);
const VARIANTS = ["search_v1", "search_v2"];
const QUERIES = 3_200;
const dbName = `topq_${randomUUID().slice(0, 8)}`;
let server: ServerProcess;

// 64 MB of old space: the month's ~180,000 day-table entries, held together with their decoded
// documents, do not fit (a server reading them so died of it); merged one day at a time, they do.
const startCapped = () => startServerProcess({ MONGODB_URI: inject("mongoUri"), MONGODB_DB: dbName, NODE_OPTIONS: "--max-old-space-size=64" });

beforeAll(async () => {
  server = await startCapped();
});
afterAll(async () => {
  await server.stop();
  const mongo = new MongoClient(inject("mongoUri"));
  await mongo.db(dbName).dropDatabase();
  await mongo.close();
});

/** Every query searched once per finished day and variant, spread over the day, with a few results counts. */
async function* month(): AsyncGenerator<StreamBatch> {
  const searches: { id: string; q: number; variant: string; at: number }[] = [];
  for (const day of DAYS) {
    const midnight = Math.floor((Date.now() - day * DAY) / DAY) * DAY;
    for (const variant of VARIANTS) for (let q = 0; q < QUERIES; q++) searches.push({ id: `${day}-${variant}-${q}`, q, variant, at: midnight + Math.floor((q / QUERIES) * DAY) });
  }
  for (let i = 0; i < searches.length; i += 1_000) {
    yield {
      events: searches.slice(i, i + 1_000).map(({ id, q, variant, at }) => ({
        kind: { case: "impression" as const, value: { eventId: id, impressionId: id, userId: `user-${q % 50}`, query: `query ${q}`, variant, resultsCount: 1 + (q % 8), responseTimeMs: 20, timestamp: timestampFromDate(new Date(at)) } },
      })),
    };
  }
}

it("answers GetTopQueries over a month of many distinct queries within a 64 MB heap, first and after a restart, as the raw events do", { timeout: 240_000 }, async () => {
  let client = createClickAnalyticsClient(server.address);
  const o = { timeoutMs: 120_000 };
  try {
    const loaded = await client.streamEvents(month());
    expect(loaded.accepted).toBe(BigInt(DAYS.length * VARIANTS.length * QUERIES));
    // Trailing 30 days: from the query tables (its finished days compacted and stored now). An
    // explicit period: from the raw events.
    const fromTables = await client.getTopQueries({ days: 30, limit: 20 }, o);
    const now = Date.now();
    const fromEvents = await client.getTopQueries({ startTime: timestampFromDate(new Date(now - 30 * DAY)), endTime: timestampFromDate(new Date(now)), limit: 20 }, o);
    expect(fromTables.queries.length).toBe(20);
    expect(fromTables.queries.map((q) => [q.query, q.searches])).toEqual(fromEvents.queries.map((q) => [q.query, q.searches]));
    expect(fromTables.queries[0]!.searches).toBe(BigInt(DAYS.length * VARIANTS.length));
    expect((await client.getTopQueries({ days: 30, limit: 20 }, o)).queries).toEqual(fromTables.queries);

    // A new process reads the stored days back.
    client.close();
    expect(await server.stop()).toBe(0);
    server = await startCapped();
    client = createClickAnalyticsClient(server.address);
    expect((await client.getTopQueries({ days: 30, limit: 20 }, o)).queries).toEqual(fromTables.queries);
    expect(server.child.exitCode).toBeNull();
  } finally {
    client.close();
  }
});
