/**
 * A MongoDB that stops answering without closing its sockets (SIGSTOP: a hung host, a long GC
 * pause, a partition) under load from clients that set no deadline. The watchdog must notice within
 * STORAGE_PING_INTERVAL_MS + STORAGE_PING_TIMEOUT_MS (3.5 s by default): writes are then answered
 * from the spool, reads UNAVAILABLE, health NOT_SERVING, and no call waits longer than the
 * documented bound (5 s). After SIGCONT every acknowledged event is stored exactly once.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { MongoClient } from "mongodb";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createClickAnalyticsClient, ExportKind, Status, type ServiceError } from "../../src/client/index.js";
import { startEmbeddedMongo, type EmbeddedMongo } from "../../src/store/engine/embedded-engine.js";
import { freePort, startServerProcess, type ServerProcess } from "../support/server-process.js";

/** The README's bound for a call without a deadline while the engine stalls, with the default watchdog settings. */
const CALL_BOUND_MS = 5_000;

let dir: string;
let port: number;
let engine: EmbeddedMongo;
let server: ServerProcess;
let stopped = false;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ca-stall-"));
  port = await freePort();
  engine = await startEmbeddedMongo({ dbPath: join(dir, "db"), port });
  server = await startServerProcess({ MONGODB_URI: `mongodb://127.0.0.1:${port}/?directConnection=true`, MONGODB_DB: "stall", SPOOL_DIR: join(dir, "spool") });
});
afterAll(async () => {
  if (stopped) process.kill(engine.pid, "SIGCONT");
  await server?.stop("SIGKILL");
  await engine?.stop();
  await rm(dir, { recursive: true, force: true });
});

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

function healthOf(address: string): Promise<number> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise<number>((resolve, reject) => {
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      () => Buffer.alloc(0), // HealthCheckRequest{service: ""}
      (b: Buffer) => (b.length === 0 ? 0 : b[1]!), // field 1 varint: the status
      {},
      { deadline: Date.now() + 2_000 },
      (error, status) => {
        client.close();
        if (error) reject(error);
        else resolve(status as number);
      },
    );
  });
}

it("MongoDB SIGSTOPped under load from clients without deadlines: spooled within 5 s, no call waits past the bound, reads UNAVAILABLE, health NOT_SERVING; acknowledged = stored after SIGCONT", { timeout: 120_000 }, async () => {
  const client = createClickAnalyticsClient(server.address, { defaultTimeoutMs: Infinity });
  const acked = new Set<string>();
  const sent = new Set<string>();
  const calls: { method: string; start: number; end: number; code: number }[] = [];
  let running = true;
  const timed = async (method: string, work: () => Promise<unknown>) => {
    const start = Date.now();
    let code: number = Status.OK;
    try {
      await work();
    } catch (error) {
      code = (error as ServiceError).code;
    }
    calls.push({ method, start, end: Date.now(), code });
    return code;
  };
  const unary = (w: number) =>
    (async () => {
      for (let n = 0; running; n++) {
        const id = `c-${w}-${n}`;
        sent.add(id);
        // No deadline: the call must still be answered within the bound.
        const code = await timed("LogClick", () => client.logClick({ eventId: id, userId: `u${w}`, productId: "p", rank: 0, searchQuery: "q", variant: "v", responseTimeMs: 1 }));
        if (code === Status.OK) acked.add(id);
        else await pause(50);
      }
    })();
  const reads = (async () => {
    while (running) {
      await timed("GetCtr", () => client.getCtr({ days: 1 }));
      await pause(100);
    }
  })();
  const load = [...Array.from({ length: 6 }, (_, w) => unary(w)), reads];

  await pause(1_500);
  const ackedBefore = acked.size;
  expect(ackedBefore).toBeGreaterThan(0);
  process.kill(engine.pid, "SIGSTOP");
  stopped = true;
  const stalledAt = Date.now();
  await pause(7_000);
  const health = await healthOf(server.address);
  process.kill(engine.pid, "SIGCONT");
  stopped = false;
  const resumedAt = Date.now();
  await pause(3_000);
  running = false;
  await Promise.all(load);

  const firstSpooled = calls.filter((c) => c.method === "LogClick" && c.code === Status.OK && c.start >= stalledAt && c.end < resumedAt).map((c) => c.end - stalledAt);
  // Calls begun after SIGSTOP can only be acknowledged from the spool.
  expect(firstSpooled.length, "writes acknowledged (from the spool) while MongoDB was stopped").toBeGreaterThan(0);
  expect(Math.min(...firstSpooled), "first spooled write after the stall began (ms)").toBeLessThanOrEqual(5_000);
  const slowest = calls.reduce((worst, c) => (c.end - c.start > worst.end - worst.start ? c : worst));
  expect(slowest.end - slowest.start, `slowest call: ${JSON.stringify(slowest)}`).toBeLessThanOrEqual(CALL_BOUND_MS);
  const readsWhileStalled = calls.filter((c) => c.method === "GetCtr" && c.start > stalledAt + 4_000 && c.end < resumedAt);
  expect(readsWhileStalled.length).toBeGreaterThan(0);
  expect(new Set(readsWhileStalled.map((c) => Status[c.code]))).toEqual(new Set(["UNAVAILABLE"]));
  expect(health, "health while stalled").toBe(2); // NOT_SERVING
  const codes = new Set(calls.map((c) => c.code));
  expect([...codes].filter((c) => c !== Status.OK && c !== Status.UNAVAILABLE)).toEqual([]);

  const mongo = new MongoClient(`mongodb://127.0.0.1:${port}/?directConnection=true`);
  try {
    const clicks = mongo.db("stall").collection("click_events");
    const until = Date.now() + 30_000;
    for (;;) {
      const stored = await clicks.countDocuments();
      const res = await client.getCtr({ days: 1 }, { timeoutMs: 5_000 }).catch((e: unknown) => e as ServiceError);
      if ("clicks" in res && Number(res.clicks) === stored && stored >= acked.size) break;
      if (Date.now() > until) throw new Error(`never recovered: stored ${stored}, acked ${acked.size}, read ${"clicks" in res ? res.clicks : res.details}`);
      await pause(200);
    }
    const ids = (await clicks.distinct("event_id")) as string[];
    expect(await clicks.countDocuments(), "no event stored twice").toBe(ids.length);
    const stored = new Set(ids);
    expect([...acked].filter((id) => !stored.has(id)), "acknowledged but not stored").toEqual([]);
    expect(ids.filter((id) => !sent.has(id))).toEqual([]);
    expect(await healthOf(server.address)).toBe(1); // SERVING again
  } finally {
    await mongo.close();
    client.close();
  }
  console.log(`stalled-engine: first spooled write ${Math.min(...firstSpooled)} ms after SIGSTOP; slowest call ${slowest.end - slowest.start} ms (${slowest.method}); ${acked.size} acknowledged (${ackedBefore} before the stall)`);
});

it("streams open when MongoDB stalls (WatchMetrics, a half-read ExportEvents) end with UNAVAILABLE within the bound instead of hanging", { timeout: 120_000 }, async () => {
  const client = createClickAnalyticsClient(server.address, { defaultTimeoutMs: Infinity });
  try {
    // Enough searches that the export needs further cursor batches (1,000 each) after the stall.
    const now = Date.now();
    const batches = 30;
    for (let b = 0; b < batches; b++) {
      await client.logEvents({
        events: Array.from({ length: 1_000 }, (_, i) => ({ kind: { case: "impression" as const, value: { eventId: `s-${b}-${i}`, userId: `u${i % 50}`, query: "q", variant: "v", resultsCount: 3, responseTimeMs: 1, timestamp: { seconds: BigInt(Math.floor((now - 60_000) / 1000) - b), nanos: i } } } })),
      });
    }
    let firstExportBatch!: () => void;
    const exportStarted = new Promise<void>((resolve) => (firstExportBatch = resolve));
    const ended = (stream: AsyncIterable<unknown>, onMessage = () => {}) =>
      (async () => {
        let messages = 0;
        try {
          for await (const _ of stream) {
            messages++;
            onMessage();
          }
          return { code: Status.OK, at: Date.now(), messages };
        } catch (error) {
          return { code: (error as ServiceError).code, at: Date.now(), messages };
        }
      })();
    const watch = ended(client.watchMetrics({ days: 1, intervalSeconds: 1 }));
    await pause(500);
    // The stall begins as the export's first batch arrives: its cursors still have batches to fetch.
    const exported = ended(client.exportEvents({ days: 1, kind: ExportKind.IMPRESSIONS }), firstExportBatch);
    await exportStarted;
    process.kill(engine.pid, "SIGSTOP");
    stopped = true;
    const stalledAt = Date.now();
    const [w, e] = await Promise.all([watch, exported]);
    process.kill(engine.pid, "SIGCONT");
    stopped = false;
    expect(w.messages, "snapshots before the stall").toBeGreaterThan(0);
    expect(Status[w.code], "WatchMetrics").toBe("UNAVAILABLE");
    expect(w.at - stalledAt, "WatchMetrics ended after the stall (ms)").toBeLessThanOrEqual(CALL_BOUND_MS + 1_000);
    expect(e.messages, "export batches before the stall").toBeGreaterThan(0);
    expect(e.messages, "the export was cut short").toBeLessThan(batches);
    expect(Status[e.code], "ExportEvents").toBe("UNAVAILABLE");
    expect(e.at - stalledAt, "ExportEvents ended after the stall (ms)").toBeLessThanOrEqual(CALL_BOUND_MS + 1_000);
  } finally {
    client.close();
  }
});
