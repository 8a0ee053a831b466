/**
 * Per-call deadlines: a call whose deadline passes fails with DEADLINE_EXCEEDED, the server
 * abandons its work (a stream stops being consumed, nothing more is written for it), logs no
 * internal error for it, and keeps serving everyone else.
 */
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { CommandStartedEvent } from "mongodb";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
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

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
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
    // A second connection, connected before the load: its calls must not be held up by the
    // first one's expiring calls.
    const other = createClickAnalyticsClient(h.server.address);
    try {
      expect((await other.getCtr({ days: 1 })).periodDays).toBe(1);
      let pending = 20;
      const expiring = Array.from({ length: 20 }, (_, i) =>
        statusOf(i % 2 ? h.client.getTimeSeries({ days: 365, granularity: Granularity.HOUR }, { timeoutMs: 5 }) : h.client.streamEvents([{ events: [clickEvent(`many-${randomUUID()}`, "many")] }], { timeoutMs: 5 })).finally(() => pending--),
      );
      // GetCtr after GetCtr while the calls expire, and one after.
      const took: number[] = [];
      do {
        const started = Date.now();
        expect((await other.getCtr({ days: 1 })).periodDays).toBe(1);
        took.push(Date.now() - started);
      } while (pending > 0);
      console.log(`another client's GetCtr answered in ${took.join(", ")} ms while 20 calls with 5 ms deadlines expired`);
      // An idle GetCtr takes a few ms; one held up behind the expiring calls would not.
      expect(Math.max(...took), "another client's GetCtr was held up by the expiring calls").toBeLessThan(2_000);
      for (const s of await Promise.all(expiring)) expect(["OK", "DEADLINE_EXCEEDED"]).toContain(Status[s.code]);
    } finally {
      other.close();
    }
    await sleep(300);
    await expectServing();
    expect(internalErrors()).toEqual([]);
  });

  it("hands every MongoDB read of a metrics call the call's remaining deadline (maxTimeMS)", { timeout: 60_000 }, async () => {
    // A server of its own whose MongoDB client reports every command it sends.
    const uri = new URL(inject("mongoUri"));
    uri.searchParams.set("monitorCommands", "true");
    const m = await startHarness({ mongoUri: uri.toString() });
    const seen: { name: string; coll: string; maxTimeMS: unknown; body: string }[] = [];
    const mongo = m.server.store.db.client;
    const onCommand = (e: CommandStartedEvent) => {
      if (e.databaseName !== m.dbName || !["find", "aggregate", "count", "distinct"].includes(e.commandName)) return;
      const body = JSON.stringify(e.command);
      // The writer's background repair pass (a timer, not part of any call).
      if (e.command[e.commandName] === "pending_batches" || /pending_rollup|click_claim/.test(body)) return;
      seen.push({ name: e.commandName, coll: String(e.command[e.commandName]), maxTimeMS: e.command.maxTimeMS, body });
    };
    mongo.on("commandStarted", onCommand);
    try {
      // Events three and two days ago (finished days: stored day tables, then compacted), an hour
      // ago and in the last minutes (hourly tables), so that every read path has data.
      const now = Date.now();
      const at = [3 * DAY + 5 * HOUR, 2 * DAY + 3 * HOUR, 90 * 60_000, 2 * 60_000];
      await m.client.logEvents({
        events: at.flatMap((ago, k) =>
          Array.from({ length: 20 }, (_, i) => [
            { kind: { case: "impression" as const, value: { eventId: `mt-${k}-${i}`, impressionId: `mt-${k}-${i}`, userId: `u${i % 3}`, query: `q${i % 4}`, variant: i % 2 ? "search_v1" : "search_v2", resultsCount: 3, responseTimeMs: i, timestamp: timestampFromMs(now - ago - i * 1000) } } },
            { kind: { case: "click" as const, value: { eventId: `mt-${k}-${i}-c`, impressionId: `mt-${k}-${i}`, userId: `u${i % 3}`, productId: "p", rank: i % 5, searchQuery: `q${i % 4}`, variant: i % 2 ? "search_v1" : "search_v2", responseTimeMs: i, timestamp: timestampFromMs(now - ago - i * 1000 + 500) } } },
          ]).flat(),
        ),
      });
      const TIMEOUT = 10_000;
      const o = { timeoutMs: TIMEOUT };
      const calls: [string, () => Promise<unknown>][] = [
        ["getCtr", () => m.client.getCtr({ days: 7 }, o)],
        ["getCtr user", () => m.client.getCtr({ days: 7, userId: "u1" }, o)],
        ["getRankMetrics", () => m.client.getRankMetrics({ days: 7, variant: "search_v1" }, o)],
        ["getRankMetrics user", () => m.client.getRankMetrics({ days: 7, userId: "u1" }, o)],
        ["getResponseTimeMetrics", () => m.client.getResponseTimeMetrics({ days: 7 }, o)],
        ["getResponseTimeMetrics user", () => m.client.getResponseTimeMetrics({ days: 7, userId: "u2" }, o)],
        ["getUserSummary", () => m.client.getUserSummary({ userId: "u1", days: 7 }, o)],
        ["getVariantComparison", () => m.client.getVariantComparison({ days: 7 }, o)],
        ["getTimeSeries hour", () => m.client.getTimeSeries({ days: 7, granularity: Granularity.HOUR }, o)],
        ["getTimeSeries day Kolkata", () => m.client.getTimeSeries({ days: 7, timeZone: "Asia/Kolkata" }, o)],
        ["getTimeSeries user", () => m.client.getTimeSeries({ days: 7, userId: "u1", granularity: Granularity.HOUR }, o)],
        // Twice: the first compacts and stores finished days, the second reads the stored ones.
        ["getTopQueries", () => m.client.getTopQueries({ days: 7 }, o)],
        ["getTopQueries again", () => m.client.getTopQueries({ days: 7, variant: "search_v2" }, o)],
        ["getTopQueries user-less raw edge", () => m.client.getTopQueries({ days: 1 }, o)],
        [
          "watchMetrics",
          async () => {
            for await (const _ of m.client.watchMetrics({ days: 7 }, o)) return;
          },
        ],
      ];
      for (const [name, call] of calls) {
        const from = seen.length;
        await call();
        const mine = seen.slice(from);
        expect(mine.length, `${name}: no MongoDB command observed`).toBeGreaterThan(0);
        for (const c of mine) {
          expect(typeof c.maxTimeMS, `${name}: ${c.name} on ${c.coll} without maxTimeMS: ${c.body.slice(0, 300)}`).toBe("number");
          expect(Number(c.maxTimeMS), `${name}: ${c.name} on ${c.coll}`).toBeGreaterThan(0);
          expect(Number(c.maxTimeMS), `${name}: ${c.name} on ${c.coll}`).toBeLessThanOrEqual(TIMEOUT);
        }
      }
      // Every read path was taken: rollup listings and documents, query tables (hourly, and the
      // stored day tables), raw events of both kinds.
      expect(seen.some((c) => c.coll === "rollups" && c.body.includes('"qh|'))).toBe(true);
      expect(seen.some((c) => c.coll === "rollups" && c.body.includes('"qd|'))).toBe(true);
      expect(seen.some((c) => c.coll === "rollups" && c.body.includes('"h|'))).toBe(true);
      expect(seen.some((c) => c.coll === "rollups" && c.body.includes('"d|'))).toBe(true);
      expect(seen.some((c) => c.coll === "click_events") && seen.some((c) => c.coll === "impressions")).toBe(true);
    } finally {
      mongo.off("commandStarted", onCommand);
      await m.close();
    }
  });

  // Data enough that GetTopQueries over a year outlasts its deadline; MongoDB then stops the
  // call's reads at their maxTimeMS (see the test above for every read carrying one).
  it("abandons the MongoDB work of a unary read whose deadline passed", { timeout: 60_000 }, async () => {
    // Enough impressions that GetTopQueries over a year takes several times its 20 ms deadline
    // (however fast the machine: more data until it does). An explicit period is one aggregation
    // over the raw events in MongoDB (a trailing window reads query tables: many short reads).
    const now = Math.floor(Date.now() / 1000);
    const year = { startTime: { seconds: BigInt(now - 364 * 86_400), nanos: 0 }, endTime: { seconds: BigInt(now), nanos: 0 }, limit: 1000 };
    for (let b = 0; b < 100; b++) {
      await h.client.logEvents({
        events: Array.from({ length: 1000 }, (_, i) => ({
          kind: { case: "impression" as const, value: { userId: `u${i % 300}`, query: `query ${(b * 1000 + i) % 5000}`, variant: i % 2 ? "search_v1" : "search_v2", resultsCount: 3, responseTimeMs: i, timestamp: { seconds: BigInt(now - ((b * 1000 + i) * 997) % (360 * 86_400)), nanos: 0 } } },
        })),
      });
      if (b % 10 === 9) {
        const started = Date.now();
        await h.client.getTopQueries(year);
        if (Date.now() - started >= 120) break;
      }
    }
    const admin = h.server.store.db.admin();
    const running = async () => ((await admin.command({ currentOp: 1, active: true })).inprog as { ns?: string }[]).filter((op) => op.ns?.startsWith(`${h.dbName}.`)).length;
    // The engine's own count of operations it stopped because their maxTimeMS ran out: proof that
    // the call's work was abandoned for its deadline, not merely finished. (How soon after the
    // deadline it stops depends on the engine's interrupt checks and a shared machine's load,
    // so the test waits for it, within a bound far below the seconds a year of reads may take.)
    const killedForTime = async () => Number((await admin.command({ serverStatus: 1 })).metrics.operation.killedDueToMaxTimeMSExpired);
    const killedBefore = await killedForTime();
    const s = await statusOf(h.client.getTopQueries(year, { timeoutMs: 20 }));
    expect(Status[s.code]).toBe("DEADLINE_EXCEEDED");
    const waitedFrom = Date.now();
    let [stillRunning, killed] = [await running(), (await killedForTime()) - killedBefore];
    while ((stillRunning > 0 || killed === 0) && Date.now() - waitedFrom < 2_000) {
      await sleep(5);
      [stillRunning, killed] = [await running(), (await killedForTime()) - killedBefore];
    }
    console.log(`GetTopQueries, 20 ms deadline: ${killed} MongoDB operation(s) stopped for their maxTimeMS, none left running ${Date.now() - waitedFrom} ms after DEADLINE_EXCEEDED`);
    expect(killed).toBeGreaterThan(0);
    expect(stillRunning).toBe(0);
  });
});
