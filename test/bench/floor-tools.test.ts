/**
 * The floor tools docs/benchmark.md quotes: they run as documented, on small inputs, and what they
 * report holds together (phases, command counts per batch, ratios, both unary servers).
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { MongoClient } from "mongodb";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startHarness } from "../support/harness.js";

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const tool = (name: string) => path.join(ROOT, "dist", "bench", name);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "floor-tools-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

interface Phase {
  microsPerEvent: number;
  commandsPerBatch: number;
  commands: { name: string; count: number }[];
}

describe("ingest-floor", () => {
  it("refuses a bad count or an unknown flag with a message and its usage, and prints the usage on --help", async () => {
    const refused = async (...args: string[]) => (await run(process.execPath, [tool("ingest-floor.js"), ...args], { cwd: ROOT }).catch((e: unknown) => e)) as { code: number; stderr: string };
    const bad = await refused("--events", "many");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^ingest-floor: --events must be a positive integer, got "many"\nusage:/);
    const unknown = await refused("--engine", "x");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^ingest-floor: Unknown option '--engine'/);
    expect(unknown.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const help = await run(process.execPath, [tool("ingest-floor.js"), "--help"], { cwd: ROOT });
    expect(help.stdout).toMatch(/^usage: node dist\/bench\/ingest-floor.js \[--events 200000\]/);
  });

  it("measures raw, statements, documents, fields and the service on the same events", { timeout: 120_000 }, async () => {
    const json = path.join(dir, "ingest-floor.json");
    await run(process.execPath, [tool("ingest-floor.js"), "--events", "3000", "--json", json], { cwd: ROOT, timeout: 110_000 });
    const r = JSON.parse(await readFile(json, "utf8")) as Record<string, Phase> & { ratios: Record<string, number>; dataset: { clicks: number; impressions: number } };
    expect(r.dataset.clicks + r.dataset.impressions).toBe(3_000);
    const count = (p: Phase, name: string) => p.commands.find((c) => c.name === name)?.count ?? 0;
    for (const phase of ["raw", "statements", "documents", "fields", "service"]) {
      expect(r[phase]!.microsPerEvent, phase).toBeGreaterThan(0);
      // Every phase stores every batch's searches and clicks, one insert per collection and batch.
      expect(count(r[phase]!, "insert impressions"), phase).toBe(3);
      expect(count(r[phase]!, "insert click_events"), phase).toBe(3);
    }
    // raw and documents insert and do nothing else; statements and fields send the same commands.
    expect(r.raw!.commandsPerBatch).toBe(2);
    expect(r.documents!.commandsPerBatch).toBe(2);
    expect(r.fields!.commandsPerBatch).toBe(r.statements!.commandsPerBatch);
    expect(count(r.fields!, "update rollups")).toBe(3);
    // The service sends more commands per batch than the least statements (its record, reads, versions).
    expect(r.service!.commandsPerBatch).toBeGreaterThan(r.fields!.commandsPerBatch);
    expect(r.ratios.documentsToRaw).toBeCloseTo(r.documents!.microsPerEvent / r.raw!.microsPerEvent, 9);
    expect(r.ratios.fieldsToRaw).toBeCloseTo(r.fields!.microsPerEvent / r.raw!.microsPerEvent, 9);
  });
});

describe("unary-server-floor", () => {
  interface Figures {
    mode: string;
    calls: number;
    callsPerSecond: number;
    serverCpuMicrosPerCall: number;
    callersCpuMicrosPerCall: number;
  }
  const floor = async (...args: string[]) => JSON.parse((await run(process.execPath, [tool("unary-server-floor.js"), "--json", ...args], { cwd: ROOT, timeout: 60_000 })).stdout) as Figures[];

  it("drives a plain grpc-js server and the service's adapter with 64 callers and reads each server's CPU", { timeout: 60_000 }, async () => {
    const figures = await floor("--seconds", "0.5");
    expect(figures.map((f) => f.mode)).toEqual(["grpc-js", "adapter"]);
    for (const f of figures) {
      expect(f.calls, f.mode).toBeGreaterThan(64);
      expect(f.serverCpuMicrosPerCall, f.mode).toBeGreaterThan(0);
      expect(f.callersCpuMicrosPerCall, f.mode).toBeGreaterThan(0);
    }
  });

  it("answers each call --latency-ms late, so N callers make at most N calls per latency", { timeout: 60_000 }, async () => {
    for (const f of await floor("--seconds", "0.5", "--clients", "8", "--latency-ms", "50")) {
      expect(f.calls, f.mode).toBeGreaterThan(0);
      // 8 callers, 50 ms a call: at most 160 calls/s (a little timer slack either way).
      expect(f.callsPerSecond, f.mode).toBeLessThanOrEqual(8 / 0.05 * 1.05);
    }
  });

  it("refuses a bad flag value with a message", async () => {
    const error = (await run(process.execPath, [tool("unary-server-floor.js"), "--seconds", "0"], { cwd: ROOT }).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(error.code).toBe(1);
    expect(error.stderr).toMatch(/--seconds must be > 0/);
  });
});

describe("user-read-floor", () => {
  interface Way {
    latencyMs: { count: number; p50: number } | null;
    serverCpuMicrosPerCall: number | null;
    engineCpuMicrosPerCall: number | null;
  }
  type Figures = { calls: number; rpcs: Record<string, Record<"raw" | "floor" | "service", Way> & { floorToRaw: number; serviceToRaw: number; serviceToFloor: number }> };

  it("times the raw aggregations from the tool, behind a bare gRPC server and through the service, for the same users, with the same answers", { timeout: 120_000 }, async () => {
    // 30 users' searches and clicks over the last 20 days, stored through the service.
    const hi = await startHarness();
    const at = (i: number) => ({ seconds: BigInt(Math.floor((Date.now() - ((i * 7919) % (20 * 86_400_000))) / 1000)), nanos: 0 });
    const events = Array.from({ length: 600 }, (_, i) => {
      const userId = `user_${i % 30}`;
      const variant = i % 30 < 15 ? "a" : "b";
      return i % 3 === 2
        ? { kind: { case: "click" as const, value: { eventId: `c${i}`, impressionId: `s${i - 1}`, userId, productId: "p", rank: i % 5, searchQuery: "q", variant, responseTimeMs: 9, timestamp: at(i - 1) } } }
        : { kind: { case: "impression" as const, value: { eventId: `s${i}`, impressionId: `s${i}`, userId, query: "q", variant, resultsCount: i % 7, responseTimeMs: 5 + (i % 90), timestamp: at(i) } } };
    });
    await hi.client.logEvents({ events });
    // The tool starts a service of its own on the same database: this one steps aside (keeping the data).
    hi.client.close();
    await hi.server.close();
    const mongo = new MongoClient(inject("mongoUri"));
    try {
      const { stdout } = await run(process.execPath, [tool("user-read-floor.js"), "--mongodb-uri", inject("mongoUri"), "--db", hi.dbName, "--users", "30", "--calls", "6", "--json"], { cwd: ROOT, timeout: 110_000 });
      const r = JSON.parse(stdout) as Figures;
      expect(r.calls).toBe(6);
      expect(Object.keys(r.rpcs)).toEqual(["GetCtr", "GetUserSummary"]);
      for (const [rpc, f] of Object.entries(r.rpcs)) {
        for (const way of ["raw", "floor", "service"] as const) {
          expect(f[way].latencyMs?.count, `${rpc} ${way}`).toBe(6);
          expect(f[way].latencyMs!.p50, `${rpc} ${way}`).toBeGreaterThan(0);
          // No engine process given: no engine CPU; the raw way has no server.
          expect(f[way].engineCpuMicrosPerCall).toBeNull();
          if (way === "raw") expect(f[way].serverCpuMicrosPerCall).toBeNull();
          else expect(f[way].serverCpuMicrosPerCall).toBeGreaterThanOrEqual(0);
        }
        expect(f.floorToRaw).toBeCloseTo(f.floor.latencyMs!.p50 / f.raw.latencyMs!.p50, 9);
        expect(f.serviceToFloor).toBeCloseTo(f.service.latencyMs!.p50 / f.floor.latencyMs!.p50, 9);
      }
      // (The tool fails when two ways answer a user differently: these answers agreed.)
    } finally {
      await mongo.db(hi.dbName).dropDatabase();
      await mongo.close();
    }
  });

  it("refuses a missing database or an unknown flag with a message and its usage, and prints the usage on --help", async () => {
    const refused = async (...args: string[]) => (await run(process.execPath, [tool("user-read-floor.js"), ...args], { cwd: ROOT }).catch((e: unknown) => e)) as { code: number; stderr: string };
    const missing = await refused("--mongodb-uri", "mongodb://127.0.0.1:1");
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^user-read-floor: --db is required/);
    const unknown = await refused("--dbpath", "/tmp", "--db", "x", "--json", "out.json");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/Unexpected argument 'out.json'/);
    expect(unknown.stderr).toMatch(/usage:/);
    expect(unknown.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const help = await run(process.execPath, [tool("user-read-floor.js"), "--help"], { cwd: ROOT });
    expect(help.stdout).toMatch(/--calls 200/);
  });
});
