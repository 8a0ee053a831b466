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
import { afterAll, beforeAll, describe, expect, it } from "vitest";

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
