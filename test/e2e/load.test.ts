/**
 * Load: 64 concurrent clients against the compiled server as its own process, over loopback, for
 * a bounded time (15 s in `npm test`; LOAD_TEST_SECONDS=60 for the full run), mixing writes
 * (~70% LogClick/LogImpression with event ids, ~10% LogEvents batches) and reads (~20% GetCtr,
 * GetRankMetrics, GetResponseTimeMetrics, GetVariantComparison, GetUserSummary).
 *
 * Zero errors; every acknowledged event stored exactly once; the server's RSS flat (the second
 * half's peak within 20% or 40 MB of the first half's, after warm-up). Reports calls/s, p50/p99
 * per kind and peak RSS.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { MongoClient } from "mongodb";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { createClickAnalyticsClient, EventOutcome, type ClickAnalyticsClient, type ServiceError } from "../../src/client/index.js";
import { startServerProcess, type ServerProcess } from "../support/server-process.js";
import { mulberry32 } from "../support/prng.js";

const SECONDS = Number(process.env.LOAD_TEST_SECONDS ?? 15);
const CONCURRENCY = 64;
/** Typed clients (one HTTP/2 connection each) shared by the loops. */
const CLIENTS = 8;
/** A hard bound besides the clock. */
const MAX_CALLS_PER_LOOP = 100_000;
const BATCH = 20;
const WARMUP_MS = Math.min(3_000, SECONDS * 200);
const RSS_EVERY_MS = 250;
const MB = 2 ** 20;
const VARIANTS = ["search_v1", "search_v2", "search_v3"];

const dbName = `load_${randomUUID().slice(0, 8)}`;
let server: ServerProcess;
let spoolDir: string;

beforeAll(async () => {
  spoolDir = await mkdtemp(join(tmpdir(), "load-spool-"));
  // A bounded old space (as in stream-memory.test.ts): V8 then collects instead of growing its
  // heap through the first ~15 s, so RSS shows what the server really retains and a short run can
  // tell flat from leaking (a leak would grow to the limit and crash). LOAD_TEST_NODE_OPTIONS=""
  // runs with V8's defaults.
  server = await startServerProcess({ MONGODB_URI: inject("mongoUri"), MONGODB_DB: dbName, SPOOL_DIR: spoolDir, NODE_OPTIONS: process.env.LOAD_TEST_NODE_OPTIONS ?? "--max-old-space-size=96" });
});
afterAll(async () => {
  await server?.stop();
  const mongo = new MongoClient(inject("mongoUri"));
  await mongo.db(dbName).dropDatabase();
  await mongo.close();
  if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
});

/** CPU seconds a process has used (user + system), from /proc (Linux). */
async function cpuSeconds(pid: number | undefined): Promise<number> {
  try {
    const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ").at(-1)!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

const KINDS = ["LogClick", "LogImpression", "LogEvents", "GetCtr", "GetRankMetrics", "GetResponseTimeMetrics", "GetVariantComparison", "GetUserSummary"] as const;
type Kind = (typeof KINDS)[number];

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const h = (sorted.length - 1) * p;
  const lo = Math.floor(h);
  return sorted[lo]! + (sorted[Math.ceil(h)]! - sorted[lo]!) * (h - lo);
}

it(`serves ${CONCURRENCY} concurrent clients for ${SECONDS} s with zero errors and flat memory`, { timeout: SECONDS * 1000 + 180_000 }, async () => {
  const run = randomUUID().slice(0, 8);
  const clients: ClickAnalyticsClient[] = Array.from({ length: CLIENTS }, () => createClickAnalyticsClient(server.address, { defaultTimeoutMs: 30_000 }));
  await Promise.all(clients.map((c) => c.waitForReady(10_000)));

  const latencies = new Map<Kind, number[]>();
  const errors: string[] = [];
  let acknowledged = 0; // events the server said it stored (OK unary writes, ACCEPTED batch events)
  let calls = 0;
  /** Calls each loop made. */
  const perLoop: number[] = Array.from({ length: CONCURRENCY }, () => 0);

  const rss: { t: number; bytes: number }[] = [];
  const serverCpu = await cpuSeconds(server.child.pid);
  const testCpu = process.cpuUsage();
  const start = Date.now();
  const deadline = start + SECONDS * 1000;
  const sampler = setInterval(() => {
    server.rss().then(
      (bytes) => rss.push({ t: Date.now() - start, bytes }),
      () => undefined,
    );
  }, RSS_EVERY_MS);

  async function timed<T>(kind: Kind, call: () => Promise<T>): Promise<T | undefined> {
    const t = performance.now();
    try {
      const result = await call();
      const list = latencies.get(kind) ?? [];
      list.push(performance.now() - t);
      latencies.set(kind, list);
      return result;
    } catch (error) {
      const e = error as Partial<ServiceError>;
      errors.push(`${kind}: ${e.code ?? ""} ${e.details ?? String(error)}`);
      return undefined;
    } finally {
      calls++;
    }
  }

  async function loop(n: number): Promise<void> {
    const rnd = mulberry32(n + 1);
    const client = clients[n % CLIENTS]!;
    const users = Array.from({ length: 20 }, (_, i) => `${run}-user-${n}-${i}`);
    const pick = <T,>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)]!;
    const searches: string[] = [];
    for (let i = 0; i < MAX_CALLS_PER_LOOP && Date.now() < deadline; i++) {
      perLoop[n] = i + 1;
      const r = rnd();
      const userId = pick(users);
      const variant = pick(VARIANTS);
      const key = `${run}-${n}-${i}`;
      if (r < 0.35) {
        const res = await timed("LogImpression", () => client.logImpression({ impressionId: key, userId, query: `query ${Math.floor(rnd() * 200)}`, variant, resultsCount: Math.floor(rnd() * 50), responseTimeMs: 5 + rnd() * 200 }));
        if (res) {
          acknowledged++;
          searches.push(res.impressionId);
          if (searches.length > 50) searches.shift();
        }
      } else if (r < 0.7) {
        const res = await timed("LogClick", () =>
          client.logClick({ eventId: key, impressionId: searches.length > 0 ? pick(searches) : "", userId, productId: `product-${Math.floor(rnd() * 1000)}`, rank: Math.floor(rnd() * 20), searchQuery: `query ${Math.floor(rnd() * 200)}`, variant, responseTimeMs: 5 + rnd() * 200 }),
        );
        if (res) acknowledged++;
      } else if (r < 0.8) {
        const events = Array.from({ length: BATCH }, (_, j) =>
          j % 3 === 0
            ? { kind: { case: "click" as const, value: { eventId: `${key}-${j}`, userId, productId: `product-${j}`, rank: j % 10, searchQuery: "batch query", variant, responseTimeMs: 20 + j } } }
            : { kind: { case: "impression" as const, value: { eventId: `${key}-${j}`, userId, query: "batch query", variant, resultsCount: j, responseTimeMs: 20 + j } } },
        );
        const res = await timed("LogEvents", () => client.logEvents({ events }));
        if (res) {
          acknowledged += res.results.filter((x) => x.outcome === EventOutcome.ACCEPTED).length;
          if (res.accepted !== BigInt(BATCH)) errors.push(`LogEvents: ${res.accepted} of ${BATCH} accepted (${res.duplicates} duplicates, ${res.rejected} rejected)`);
        }
      } else {
        const read = rnd();
        if (read < 0.25) await timed("GetCtr", () => client.getCtr({ days: 1, ...(rnd() < 0.5 ? { variant } : {}) }));
        else if (read < 0.45) await timed("GetRankMetrics", () => client.getRankMetrics({ days: 1 }));
        else if (read < 0.65) await timed("GetResponseTimeMetrics", () => client.getResponseTimeMetrics({ days: 1, variant }));
        else if (read < 0.8) await timed("GetVariantComparison", () => client.getVariantComparison({ days: 1 }));
        else await timed("GetUserSummary", () => client.getUserSummary({ userId, days: 1 }));
      }
    }
  }

  try {
    await Promise.all(Array.from({ length: CONCURRENCY }, (_, n) => loop(n)));
  } finally {
    clearInterval(sampler);
  }
  const elapsed = (Date.now() - start) / 1000;
  const serverCpuUsed = (await cpuSeconds(server.child.pid)) - serverCpu;
  const testCpuUsed = process.cpuUsage(testCpu);
  rss.push({ t: Date.now() - start, bytes: await server.rss() });

  // What was acknowledged is stored, exactly once: directly in MongoDB and through the rollups.
  const mongo = new MongoClient(inject("mongoUri"));
  let stored: number;
  try {
    const db = mongo.db(dbName);
    stored = (await db.collection("click_events").countDocuments()) + (await db.collection("impressions").countDocuments());
  } finally {
    await mongo.close();
  }
  const ctr = await clients[0]!.getCtr({ days: 1 });
  for (const c of clients) c.close();

  // Report.
  const lines = [...latencies]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([kind, list]) => {
      const sorted = [...list].sort((a, b) => a - b);
      return `  ${kind.padEnd(24)} ${String(list.length).padStart(7)} calls  p50 ${percentile(sorted, 0.5).toFixed(1).padStart(7)} ms  p99 ${percentile(sorted, 0.99).toFixed(1).padStart(7)} ms  max ${sorted.at(-1)!.toFixed(1).padStart(7)} ms`;
    });
  const all = [...latencies.values()].flat().sort((a, b) => a - b);
  const mid = start + (SECONDS * 1000) / 2 - start;
  const peak = (from: number, to: number) => Math.max(0, ...rss.filter((s) => s.t >= from && s.t < to).map((s) => s.bytes));
  const firstHalf = peak(WARMUP_MS, mid);
  const secondHalf = peak(mid, Infinity);
  console.log(
    [
      `load: ${CONCURRENCY} loops on ${CLIENTS} connections for ${elapsed.toFixed(1)} s: ${calls} calls (${(calls / elapsed).toFixed(0)} calls/s), ${errors.length} errors, ${acknowledged} events acknowledged, ${stored} stored`,
      `  ${"all".padEnd(24)} ${String(all.length).padStart(7)} calls  p50 ${percentile(all, 0.5).toFixed(1).padStart(7)} ms  p99 ${percentile(all, 0.99).toFixed(1).padStart(7)} ms  max ${(all.at(-1) ?? NaN).toFixed(1).padStart(7)} ms`,
      ...lines,
      `  server RSS: peak ${(Math.max(...rss.map((s) => s.bytes)) / MB).toFixed(0)} MB; first half (after ${WARMUP_MS / 1000} s warm-up) ${(firstHalf / MB).toFixed(0)} MB, second half ${(secondHalf / MB).toFixed(0)} MB; ${rss.length} samples`,
      `  CPU: server ${((100 * serverCpuUsed) / elapsed).toFixed(0)}% of a core, load-test clients ${((100 * (testCpuUsed.user + testCpuUsed.system)) / 1e6 / elapsed).toFixed(0)}% (machine: ${availableParallelism()} cores)`,
      `  RSS (MB) every ${RSS_EVERY_MS * 4} ms: ${rss.filter((_, i) => i % 4 === 0).map((s) => (s.bytes / MB).toFixed(0)).join(" ")}`,
    ].join("\n"),
  );

  expect(errors.slice(0, 20)).toEqual([]);
  // Every kind of call was served, again and again, by every loop: not one call each and a stall.
  expect([...latencies.keys()].sort()).toEqual([...KINDS].sort());
  for (const [kind, list] of latencies) expect(list.length, kind).toBeGreaterThanOrEqual(10);
  expect(Math.min(...perLoop), "calls made by the slowest loop").toBeGreaterThanOrEqual(5);
  expect(stored).toBe(acknowledged);
  expect(Number(ctr.clicks + ctr.impressions)).toBe(acknowledged);
  // Flat: the second half needs no more memory than the first did, within 20% or 40 MB.
  expect(rss.filter((s) => s.t >= WARMUP_MS && s.t < mid).length).toBeGreaterThan(2);
  expect(secondHalf).toBeLessThanOrEqual(firstHalf + Math.max(0.2 * firstHalf, 40 * MB));
  // The server logged no error while under load.
  expect(server.logs.filter((l) => l.level === "error")).toEqual([]);
});
