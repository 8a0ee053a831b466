/**
 * Per-call deadlines: a call whose deadline passes fails with DEADLINE_EXCEEDED, the server
 * abandons its work (a stream stops being consumed, nothing more is written for it), logs no
 * internal error for it, and keeps serving everyone else.
 */
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { HealthCheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus as Serving } from "../../gen/grpc/health/v1/health_pb.js";
import { createClickAnalyticsClient, Granularity, Status, type ServiceError, type StreamBatch } from "../../src/client/index.js";
import { createLogger } from "../../src/server/logger.js";
import { startHarness, type Harness } from "../support/harness.js";
import { rawUnary } from "../support/raw-call.js";

let h: Harness;
const logs: { level: string; msg: string; method?: string; err?: string }[] = [];
beforeAll(async () => {
  h = await startHarness({}, {}, createLogger("info", (line) => logs.push(JSON.parse(line) as (typeof logs)[number])));
});
afterAll(() => h.close());
beforeEach(async () => {
  await h.server.store.reset();
  logs.length = 0;
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function statusOf(promise: Promise<unknown>): Promise<{ code: Status; details: string }> {
  try {
    await promise;
    return { code: Status.OK, details: "" };
  } catch (error) {
    const e = error as ServiceError;
    if (typeof e.code !== "number") throw error;
    return { code: e.code, details: e.details };
  }
}

/** Health says SERVING and a normal write and read go through. */
async function expectServing(): Promise<void> {
  const raw = new grpc.Client(h.server.address, grpc.credentials.createInsecure());
  try {
    const bytes = await rawUnary(raw, "/grpc.health.v1.Health/Check", toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service: "" })));
    expect(fromBinary(HealthCheckResponseSchema, bytes).status).toBe(Serving.SERVING);
  } finally {
    raw.close();
  }
  const userId = `alive-${randomUUID()}`;
  await h.client.logClick({ userId, productId: "p", rank: 0, searchQuery: "q", variant: "search_v1", responseTimeMs: 1 });
  expect((await h.client.getCtr({ userId, days: 1 })).clicks).toBe(1n);
}

/** Internal-error lines: a client's deadline is not one. */
const internalErrors = () => logs.filter((l) => l.level === "error");

const clickEvent = (eventId: string, userId: string) => ({ kind: { case: "click" as const, value: { eventId, userId, productId: "p", rank: 1, searchQuery: "q", variant: "search_v1", responseTimeMs: 5 } } });

describe("deadlines", () => {
  it("fails calls whose deadline is too short with DEADLINE_EXCEEDED and keeps serving", async () => {
    // Some data, so that the reads below have work to do.
    await h.client.logEvents({ events: Array.from({ length: 1000 }, (_, i) => clickEvent(`seed-${randomUUID()}-${i}`, `u${i % 50}`)) });
    const tag = `short-${randomUUID()}`;
    const batch = { events: Array.from({ length: 1000 }, (_, i) => clickEvent(`${tag}-${i}`, tag)) };
    const calls = {
      logEvents: statusOf(h.client.logEvents(batch, { timeoutMs: 1 })),
      getTimeSeries: statusOf(h.client.getTimeSeries({ days: 365, granularity: Granularity.HOUR }, { timeoutMs: 1 })),
      getTopQueries: statusOf(h.client.getTopQueries({ days: 365, limit: 1000 }, { timeoutMs: 1 })),
      getVariantComparison: statusOf(h.client.getVariantComparison({ days: 365 }, { timeoutMs: 1 })),
      getUserSummary: statusOf(h.client.getUserSummary({ userId: "u1", days: 365 }, { timeoutMs: 1 })),
      alreadyPast: statusOf(h.client.getCtr({}, { deadline: new Date(Date.now() - 1_000) })),
    };
    for (const [name, call] of Object.entries(calls)) {
      const s = await call;
      expect(Status[s.code], `${name}: ${s.details}`).toBe("DEADLINE_EXCEEDED");
    }
    await sleep(500);
    await expectServing();
    // The batch is one unit: either the server dropped it before starting or wrote all of it,
    // never part of it.
    const written = await h.server.store.collections.clicks.countDocuments({ user_id: tag });
    console.log(`LogEvents with a 1 ms deadline: ${written} of 1000 events written by the server after the client gave up`);
    expect([0, 1000]).toContain(written);
    expect(internalErrors()).toEqual([]);
  });

  it("stops consuming a StreamEvents whose deadline expires mid-stream: nothing more is written", async () => {
    const tag = `stream-${randomUUID()}`;
    const PER_BATCH = 50;
    const sentAt: number[] = [];
    const start = Date.now();
    async function* batches(): AsyncGenerator<StreamBatch> {
      // One batch every 100 ms for 1.5 s, well past the 350 ms deadline.
      for (let b = 0; b < 15; b++) {
        sentAt.push(Date.now() - start);
        yield { events: Array.from({ length: PER_BATCH }, (_, i) => clickEvent(`${tag}-${b}-${i}`, tag)) };
        await sleep(100);
      }
    }
    const s = await statusOf(h.client.streamEvents(batches(), { timeoutMs: 350 }));
    expect(Status[s.code], s.details).toBe("DEADLINE_EXCEEDED");
    const beforeDeadline = sentAt.filter((t) => t < 350).length;
    const count = () => h.server.store.collections.clicks.countDocuments({ user_id: tag });
    const atEnd = await count();
    await sleep(700);
    const later = await count();
    console.log(`StreamEvents, 350 ms deadline: ${sentAt.length} batches offered (${beforeDeadline} before the deadline); ${atEnd / PER_BATCH} written by the end of the call, ${later / PER_BATCH} 700 ms later`);
    // Batches were written until the deadline (all of them but perhaps the one in flight, on an
    // idle machine), none after it, and nothing more arrives later.
    expect(later).toBe(atEnd);
    expect(later).toBeGreaterThanOrEqual(PER_BATCH);
    expect(later).toBeLessThanOrEqual((beforeDeadline + 1) * PER_BATCH);
    const stored = await h.server.store.collections.clicks.distinct("event_id", { user_id: tag });
    const lastBatch = Math.max(...stored.map((id) => Number(String(id).split("-").at(-2))));
    expect(sentAt[lastBatch]!, `batch ${lastBatch} was offered after the deadline`).toBeLessThan(450);
    await expectServing();
    expect(internalErrors()).toEqual([]);
  });

  it("ends a StreamEvents that is idle at its deadline without logging an internal error", async () => {
    const tag = `idle-${randomUUID()}`;
    async function* batches(): AsyncGenerator<StreamBatch> {
      yield { events: [clickEvent(`${tag}-0`, tag)] };
      await sleep(1_000); // the server waits for the next message when the deadline passes
    }
    const s = await statusOf(h.client.streamEvents(batches(), { timeoutMs: 300 }));
    expect(Status[s.code], s.details).toBe("DEADLINE_EXCEEDED");
    await sleep(200);
    expect(await h.server.store.collections.clicks.countDocuments({ user_id: tag })).toBe(1);
    expect(internalErrors()).toEqual([]);
    await expectServing();
  });

  it("ends a WatchMetrics stream at its deadline and keeps serving", async () => {
    const got: number[] = [];
    const start = Date.now();
    const s = await statusOf(
      (async () => {
        for await (const _ of h.client.watchMetrics({ intervalSeconds: 1 }, { timeoutMs: 1_500 })) got.push(Date.now() - start);
      })(),
    );
    expect(Status[s.code], s.details).toBe("DEADLINE_EXCEEDED");
    // At once and after 1 s; none after the deadline.
    expect(got.length).toBeGreaterThanOrEqual(1);
    expect(got.length).toBeLessThanOrEqual(2);
    expect(Math.max(...got)).toBeLessThan(1_600);
    expect(Date.now() - start).toBeLessThan(2_500);
    await expectServing();
    expect(internalErrors()).toEqual([]);
  });

  it("keeps serving other clients while many calls expire at once", async () => {
    const expiring = Array.from({ length: 20 }, (_, i) =>
      statusOf(i % 2 ? h.client.getTimeSeries({ days: 365, granularity: Granularity.HOUR }, { timeoutMs: 5 }) : h.client.streamEvents([{ events: [clickEvent(`many-${randomUUID()}`, "many")] }], { timeoutMs: 5 })),
    );
    // A second connection: its calls must not be held up by the first one's expiring calls.
    const other = createClickAnalyticsClient(h.server.address);
    try {
      const started = Date.now();
      const ok = await other.getCtr({ days: 1 });
      expect(ok.periodDays).toBe(1);
      console.log(`another client's GetCtr answered in ${Date.now() - started} ms while 20 calls with 5 ms deadlines expired`);
    } finally {
      other.close();
    }
    for (const s of await Promise.all(expiring)) expect(["OK", "DEADLINE_EXCEEDED"]).toContain(Status[s.code]);
    await sleep(300);
    await expectServing();
    expect(internalErrors()).toEqual([]);
  });

  // NOT HONOURED (yet): unary handlers never look at CallContext.signal and the store takes no
  // signal or maxTimeMS, so a read whose deadline passed keeps its MongoDB aggregation running to
  // the end; only the answer is dropped. `it.fails` records that: once the work is abandoned (a
  // signal or maxTimeMS from the call's deadline passed down to the store), this test fails and
  // should become a plain `it`.
  it("abandons the MongoDB work of a unary read whose deadline passed", { timeout: 60_000 }, async () => {
    // Enough impressions that GetTopQueries over a year takes several times its 20 ms deadline
    // (however fast the machine: more data until it does).
    const now = Math.floor(Date.now() / 1000);
    for (let b = 0; b < 100; b++) {
      await h.client.logEvents({
        events: Array.from({ length: 1000 }, (_, i) => ({
          kind: { case: "impression" as const, value: { userId: `u${i % 300}`, query: `query ${(b * 1000 + i) % 5000}`, variant: i % 2 ? "search_v1" : "search_v2", resultsCount: 3, responseTimeMs: i, timestamp: { seconds: BigInt(now - ((b * 1000 + i) * 997) % (360 * 86_400)), nanos: 0 } } },
        })),
      });
      if (b % 10 === 9) {
        const started = Date.now();
        await h.client.getTopQueries({ days: 365, limit: 1000 });
        if (Date.now() - started >= 120) break;
      }
    }
    const admin = h.server.store.db.admin();
    const running = async () => ((await admin.command({ currentOp: 1, active: true })).inprog as { ns?: string }[]).filter((op) => op.ns?.startsWith(`${h.dbName}.`)).length;
    const s = await statusOf(h.client.getTopQueries({ days: 365, limit: 1000 }, { timeoutMs: 20 }));
    expect(Status[s.code]).toBe("DEADLINE_EXCEEDED");
    // Give the server a moment to notice, then look for the call's aggregation in MongoDB.
    await sleep(10);
    const stillRunning = await running();
    console.log(`GetTopQueries, 20 ms deadline: ${stillRunning} of its MongoDB operations still running 10 ms after DEADLINE_EXCEEDED`);
    expect(stillRunning).toBe(0);
  });
});
