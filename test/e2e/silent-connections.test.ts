/**
 * The path to MongoDB drops every connection and then, for a while, accepts new ones that never
 * answer (through a TCP proxy: test/support/tcp-proxy.ts); then new connections work again, but
 * the silent ones stay silent. faults.test.ts once saw this after an engine restart: the driver's
 * monitor waited on such a connection for its connectTimeoutMS (30 s by default) while the
 * watchdog's pings went through, and until it gave up every command failed server selection with
 * the error of a connection closed long before, so the spool did not drain and reads stayed
 * UNAVAILABLE. Once the engine is reachable again, the service must be whole within RECOVERY_MS.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MongoClient } from "mongodb";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createClickAnalyticsClient, Status, type ServiceError } from "../../src/client/index.js";
import { startEmbeddedMongo, type EmbeddedMongo } from "../../src/store/engine/embedded-engine.js";
import { freePort, startServerProcess, type ServerProcess } from "../support/server-process.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";

/** From the engine reachable again to the spool drained and reads exact (well under the driver's 30 s). */
const RECOVERY_MS = 10_000;
/** How long the path stays silent: longer than the watchdog's ping timeout (2.5 s). */
const OUTAGE_MS = 5_000;

let dir: string;
let port: number;
let engine: EmbeddedMongo;
let proxy: TcpProxy;
let server: ServerProcess;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ca-silent-"));
  port = await freePort();
  engine = await startEmbeddedMongo({ dbPath: join(dir, "db"), port });
  proxy = await startTcpProxy(port);
  server = await startServerProcess({ MONGODB_URI: `mongodb://127.0.0.1:${proxy.port}/?directConnection=true`, MONGODB_DB: "silent", SPOOL_DIR: join(dir, "spool") });
});
afterAll(async () => {
  await server?.stop("SIGKILL");
  await proxy?.close();
  await engine?.stop();
  await rm(dir, { recursive: true, force: true });
});

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

it("connections to MongoDB dropped, then new ones silent for 5 s: within 10 s of MongoDB answering again the spool has drained and reads count every acknowledged event", { timeout: 120_000 }, async () => {
  const client = createClickAnalyticsClient(server.address);
  const acked = new Set<string>();
  const sent = new Set<string>();
  let running = true;
  const writers = Array.from({ length: 4 }, (_, w) =>
    (async () => {
      for (let n = 0; running; n++) {
        const id = `c-${w}-${n}`;
        sent.add(id);
        try {
          await client.logClick({ eventId: id, userId: `u${w}`, productId: "p", rank: 0, searchQuery: "q", variant: "v", responseTimeMs: 1 }, { timeoutMs: 5_000 });
          acked.add(id);
        } catch (error) {
          expect(Status[(error as ServiceError).code]).toBe("UNAVAILABLE");
          await pause(50);
        }
      }
    })(),
  );
  const mongo = new MongoClient(`mongodb://127.0.0.1:${port}/?directConnection=true`);
  try {
    await pause(1_500);
    const before = acked.size;
    expect(before, "acknowledged before the outage").toBeGreaterThan(0);
    proxy.blackhole();
    await pause(OUTAGE_MS);
    expect(acked.size, "acknowledged (from the spool) during the outage").toBeGreaterThan(before);
    running = false;
    await Promise.all(writers);
    proxy.restore();
    const restoredAt = Date.now();

    const clicks = mongo.db("silent").collection("click_events");
    let last = "";
    let recoveredMs: number | undefined;
    // Waits past the bound (up to the driver's 30 s and more) to report how long recovery took.
    while (Date.now() - restoredAt < 45_000) {
      const stored = await clicks.countDocuments();
      const res = await client.getCtr({ days: 1 }, { timeoutMs: 5_000 }).catch((e: unknown) => e as ServiceError);
      if ("clicks" in res && Number(res.clicks) === stored && stored >= acked.size) {
        recoveredMs = Date.now() - restoredAt;
        break;
      }
      last = JSON.stringify({ stored, acked: acked.size, read: "clicks" in res ? Number(res.clicks) : `${Status[res.code]}: ${res.details}` });
      await pause(200);
    }
    const warnings = server.logs.filter((l) => (l.level === "warn" || l.level === "error") && l.msg !== "rpc").slice(-4);
    console.log(`silent-connections: recovered ${recoveredMs ?? "never"} ms after the engine was reachable again; ${acked.size} acknowledged (${before} before the outage)`);
    expect(recoveredMs, `spool drained and reads exact (ms after the engine answered again); last: ${last}; server warnings: ${JSON.stringify(warnings)}`).toBeLessThanOrEqual(RECOVERY_MS);

    const ids = (await clicks.distinct("event_id")) as string[];
    expect(await clicks.countDocuments(), "no event stored twice").toBe(ids.length);
    const stored = new Set(ids);
    expect([...acked].filter((id) => !stored.has(id)), "acknowledged but not stored").toEqual([]);
    expect(ids.filter((id) => !sent.has(id))).toEqual([]);
  } finally {
    running = false;
    await Promise.all(writers);
    await mongo.close();
    client.close();
  }
});
