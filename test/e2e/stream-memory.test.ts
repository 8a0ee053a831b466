/** 100,000 events through StreamEvents into a real server process whose memory stays flat. */
import { randomUUID } from "node:crypto";
import { MongoClient } from "mongodb";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { createClickAnalyticsClient, type StreamBatch } from "../../src/client/index.js";
import { startServerProcess, type ServerProcess } from "../support/server-process.js";

const EVENTS = Number(process.env.STREAM_TEST_EVENTS ?? 100_000);
const BATCH = 1_000;
const dbName = `stream_${randomUUID().slice(0, 8)}`;
let server: ServerProcess;

beforeAll(async () => {
  // A small old-space limit: V8 then collects instead of growing the heap, so RSS shows what is
  // really retained, and a server that buffered the stream would run out of memory outright. A
  // small young generation too: V8 otherwise grows it (by up to 32 MB of RSS) at a moment of its
  // choosing, which says nothing about what the server retains (a leaner write path made that
  // step fall after the stream's half, and the halves' peaks then differed by 27 MB).
  server = await startServerProcess({ MONGODB_URI: inject("mongoUri"), MONGODB_DB: dbName, NODE_OPTIONS: "--max-old-space-size=64 --max-semi-space-size=2" });
});
afterAll(async () => {
  await server.stop();
  const mongo = new MongoClient(inject("mongoUri"));
  await mongo.db(dbName).dropDatabase();
  await mongo.close();
});

it("streams 100k events with flat server memory", { timeout: 240_000 }, async () => {
  const client = createClickAnalyticsClient(server.address);
  const samples: { batch: number; rss: number }[] = [];
  let sent = 0;
  // Generated lazily: the stream, not this test, decides how fast batches are produced.
  async function* batches(): AsyncGenerator<StreamBatch> {
    for (let b = 0; b < EVENTS / BATCH; b++) {
      if (b % 5 === 0) samples.push({ batch: b, rss: await server.rss() });
      yield {
        events: Array.from({ length: BATCH }, (_, i) => {
          const n = b * BATCH + i;
          const common = { eventId: `evt-${n}`, userId: `user-${n % 997}`, variant: n % 2 ? "search_v1" : "search_v2", responseTimeMs: 20 + (n % 180) };
          return n % 4 === 0
            ? { kind: { case: "click" as const, value: { ...common, productId: `product-${n % 5000}`, rank: n % 10, searchQuery: `query ${n % 300}` } } }
            : { kind: { case: "impression" as const, value: { ...common, query: `query ${n % 300}`, resultsCount: 20 } } };
        }),
      };
      sent += BATCH;
    }
  }
  try {
    const res = await client.streamEvents(batches());
    samples.push({ batch: EVENTS / BATCH, rss: await server.rss() });
    expect(sent).toBe(EVENTS);
    expect([res.accepted, res.duplicates, res.rejected, res.batches]).toEqual([BigInt(EVENTS), 0n, 0n, BigInt(EVENTS / BATCH)]);
    expect((await client.getCtr({})).clicks + (await client.getCtr({})).impressions).toBe(BigInt(EVENTS));
  } finally {
    client.close();
  }
  // Flat: the second half of the stream needs no more memory than the first did.
  const half = EVENTS / BATCH / 2;
  const peakOf = (from: number, to: number) => Math.max(...samples.filter((s) => s.batch >= from && s.batch <= to).map((s) => s.rss));
  console.log(`server RSS over the stream (MB): ${samples.map((s) => (s.rss / 2 ** 20).toFixed(0)).join(" ")}`);
  expect(peakOf(half, Infinity)).toBeLessThan(peakOf(0, half) + 24 * 2 ** 20);
  expect(peakOf(0, Infinity)).toBeLessThan(300 * 2 ** 20);
});
