/**
 * The benchmark tool: its dataset generator (unit), and the compiled `npm run bench` end to end
 * at tiny sizes against its own embedded engine (dist/ is built by test/build-setup.ts).
 */
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { METRIC_SHAPES, summarize } from "../../bench/bench-client.js";
import { createDatasetStats, DAY_MS, generateBatches, generateEvents, INTERLEAVED_RANKERS, toStreamEvent, type DatasetEvent, type DatasetOptions } from "../../src/cli/traffic-generator.js";
import { variantOf } from "../../src/cli/traffic-population.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const BENCH = path.join(ROOT, "dist/bench/bench.js");
const run = promisify(execFile);

const NOW = Date.UTC(2026, 0, 15, 12, 30);
const OPTIONS: DatasetOptions = { events: 30_000, days: 7, users: 500, seed: 42, now: NOW };

describe("dataset generator", () => {
  const events: DatasetEvent[] = [...generateEvents(OPTIONS)];

  it("produces exactly the requested events, the same ones for the same seed", () => {
    expect(events).toHaveLength(OPTIONS.events);
    // Compared as text: a deep equality over 30,000 objects is slow.
    expect(JSON.stringify([...generateEvents(OPTIONS)]) === JSON.stringify(events)).toBe(true);
    const other = [...generateEvents({ ...OPTIONS, seed: 43 })];
    expect(other).toHaveLength(OPTIONS.events);
    expect(other.slice(0, 50)).not.toEqual(events.slice(0, 50));
  });

  it("keeps every event inside the window, none in the future", () => {
    const start = NOW - OPTIONS.days * DAY_MS;
    expect(events.filter((e) => !(e.timestampMs >= start && e.timestampMs < NOW))).toEqual([]);
    // Spread over the whole window, not bunched up at one end.
    const days = new Set(events.map((e) => Math.floor((e.timestampMs - start) / DAY_MS)));
    expect(days.size).toBe(OPTIONS.days);
  });

  it("gives every event a unique id and links every click to an earlier impression of the dataset", () => {
    expect(new Set(events.map((e) => e.eventId)).size).toBe(events.length);
    const impressions = new Map<string, DatasetEvent>();
    const problems: string[] = [];
    let clicks = 0;
    for (const e of events) {
      if (e.kind === "impression") {
        if (impressions.has(e.impressionId)) problems.push(`impression id ${e.impressionId} repeated`);
        impressions.set(e.impressionId, e);
        continue;
      }
      clicks++;
      const search = impressions.get(e.impressionId);
      if (search?.kind !== "impression") problems.push(`click ${e.eventId} -> unknown ${e.impressionId}`);
      else if (search.userId !== e.userId || search.variant !== e.variant || search.query !== e.searchQuery) problems.push(`click ${e.eventId} differs from its search`);
      else if (e.rank >= search.resultsCount) problems.push(`click ${e.eventId} at rank ${e.rank} of ${search.resultsCount} results`);
      else if (e.timestampMs < search.timestampMs) problems.push(`click ${e.eventId} before its search`);
    }
    expect(problems).toEqual([]);
    expect(clicks).toBeGreaterThan(0);
  });

  it("has the advertised shape: ~20% of searches clicked, ~3% without results, most clicks at ranks 0-2, 50/50 variants by user", () => {
    const stats = createDatasetStats();
    const ranks: number[] = [];
    const variantByUser = new Map<string, string>();
    for (const e of generateEvents(OPTIONS, stats)) {
      if (e.kind === "click") ranks.push(e.rank);
      variantByUser.set(e.userId, e.variant);
    }
    expect(stats.events).toBe(OPTIONS.events);
    expect(stats.impressions + stats.clicks).toBe(OPTIONS.events);
    expect(stats.clickedSearches / stats.impressions).toBeGreaterThan(0.17);
    expect(stats.clickedSearches / stats.impressions).toBeLessThan(0.23);
    expect(stats.multiClickSearches).toBeGreaterThan(0);
    expect(stats.noResultsSearches / stats.impressions).toBeGreaterThan(0.015);
    expect(stats.noResultsSearches / stats.impressions).toBeLessThan(0.045);
    expect(ranks.filter((r) => r <= 2).length / ranks.length).toBeGreaterThan(0.6);
    // One variant per user, by the hash of the id, whatever event is looked at.
    const misplaced = events.filter((e) => e.variant !== variantOf(e.userId));
    expect(misplaced).toEqual([]);
    const v1Users = [...variantByUser.values()].filter((v) => v === "search_v1").length;
    expect(v1Users / variantByUser.size).toBeGreaterThan(0.4);
    expect(v1Users / variantByUser.size).toBeLessThan(0.6);
    // Skewed activity: the busiest tenth of users has far more than a tenth of the searches.
    const perUser = new Map<string, number>();
    for (const e of events) if (e.kind === "impression") perUser.set(e.userId, (perUser.get(e.userId) ?? 0) + 1);
    const counts = [...perUser.values()].sort((a, b) => b - a);
    const top = counts.slice(0, Math.ceil(counts.length / 10)).reduce((a, b) => a + b, 0);
    expect(top / stats.impressions).toBeGreaterThan(0.3);
  });

  it("interleaves ~10% of the searches with results: a team-draft page of both rankers, logged with its teams", () => {
    const stats = createDatasetStats();
    const interleaved = [...generateEvents(OPTIONS, stats)].filter((e) => e.kind === "impression" && e.teams !== undefined);
    expect(interleaved).toHaveLength(stats.interleavedSearches);
    const withResults = stats.impressions - stats.noResultsSearches;
    expect(stats.interleavedSearches / withResults).toBeGreaterThan(0.08);
    expect(stats.interleavedSearches / withResults).toBeLessThan(0.12);
    const [a, b] = INTERLEAVED_RANKERS;
    const problems: string[] = [];
    for (const e of interleaved) {
      if (e.kind !== "impression" || e.teams === undefined) continue;
      if (e.teams.length !== Math.min(e.resultsCount, 20)) problems.push(`${e.impressionId}: ${e.teams.length} teams for ${e.resultsCount} results`);
      // Team draft: every round (positions 2k, 2k + 1) has one pick of each ranker.
      for (let k = 0; k + 1 < e.teams.length; k += 2) if ([e.teams[k], e.teams[k + 1]].sort().join() !== `${a},${b}`) problems.push(`${e.impressionId}: round ${k / 2} is ${e.teams[k]}, ${e.teams[k + 1]}`);
      if (e.teams.some((t) => t !== a && t !== b)) problems.push(`${e.impressionId}: teams ${e.teams.join()}`);
      const v = toStreamEvent(e).kind;
      if (v?.case !== "impression" || v.value.teams?.join() !== e.teams.join()) problems.push(`${e.impressionId}: teams not sent`);
    }
    expect(problems).toEqual([]);
    // The coin tosses follow the search: each ranker leads on some searches.
    const leads = new Set(interleaved.map((e) => (e.kind === "impression" ? e.teams![0] : "")));
    expect([...leads].sort()).toEqual([a, b]);
    // An ordinary search carries no teams, in the message sent either.
    const ordinary = events.find((e) => e.kind === "impression" && e.teams === undefined)!;
    expect(ordinary).not.toHaveProperty("teams");
    expect(toStreamEvent(ordinary).kind?.value).not.toHaveProperty("teams");
  });

  it("plants a small preference for ranker_a in the clicks on interleaved searches", () => {
    // Enough searches to measure it: ~16,000 interleaved, ~3,000 with a credited click.
    const teams = new Map<string, string[]>();
    const credit = new Map<string, { a: number; b: number }>();
    const [a, b] = INTERLEAVED_RANKERS;
    for (const e of generateEvents({ ...OPTIONS, events: 200_000, users: 5_000 })) {
      if (e.kind === "impression") {
        if (e.teams) teams.set(e.impressionId, e.teams);
        continue;
      }
      const page = teams.get(e.impressionId);
      const team = page?.[e.rank];
      if (team === undefined) continue;
      const c = credit.get(e.impressionId) ?? { a: 0, b: 0 };
      if (team === a) c.a++;
      if (team === b) c.b++;
      credit.set(e.impressionId, c);
    }
    let winsA = 0;
    let winsB = 0;
    let ties = 0;
    for (const c of credit.values()) {
      if (c.a > c.b) winsA++;
      else if (c.b > c.a) winsB++;
      else ties++;
    }
    const decided = winsA + winsB + ties;
    expect(decided).toBeGreaterThan(2_000);
    // Δ ≈ +0.05 by construction (a tenth of ranker_b's clicks move to ranker_a's result beside it).
    const delta = (winsA + ties / 2) / decided - 0.5;
    expect(delta).toBeGreaterThan(0.03);
    expect(delta).toBeLessThan(0.07);
  });

  it("streams lazily in batches of at most 1,000 events", async () => {
    const sizes: number[] = [];
    for await (const batch of generateBatches({ ...OPTIONS, events: 2_500 })) sizes.push(batch.events?.length ?? 0);
    expect(sizes).toEqual([1_000, 1_000, 500]);
    // A billion events: only what is asked for is ever produced.
    const huge = generateBatches({ ...OPTIONS, events: 1_000_000_000 });
    const first = await huge.next();
    expect(first.done).toBe(false);
    expect(first.value?.events).toHaveLength(1_000);
    await huge.return();
  });

  it("summarises latencies with interpolated percentiles", () => {
    expect(summarize([])).toBeNull();
    expect(summarize([4, 1, 3, 2, 5])).toMatchObject({ count: 5, p50: 3, min: 1, max: 5, mean: 3 });
    expect(summarize([0, 10])?.p95).toBeCloseTo(9.5);
  });
});

describe("npm run bench (compiled, tiny sizes, its own embedded engine)", () => {
  let dir: string;
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("loads, measures every figure and cleans up", { timeout: 120_000 }, async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "bench-test-"));
    const json = path.join(dir, "out", "bench.json");
    const args = ["--events", "3000", "--days", "3", "--users", "200", "--iterations", "4", "--unary-seconds", "1", "--watch-streams", "40", "--watch-seconds", "4", "--json", json];
    // execFile rejects on a non-zero exit code.
    const { stdout } = await run(process.execPath, [BENCH, ...args], { cwd: ROOT, timeout: 100_000, maxBuffer: 16 * 2 ** 20 });
    const r = JSON.parse(await readFile(json, "utf8"));

    expect(r.complete).toBe(true);
    // The server ran with the Node flags of `npm start` (the heap's cap and starting size).
    const start = JSON.parse(await readFile(path.join(ROOT, "package.json"), "utf8")).scripts.start as string;
    expect(r.serverNodeFlags.length).toBeGreaterThan(0);
    for (const flag of r.serverNodeFlags as string[]) expect(start).toContain(` ${flag} `);
    expect(r.serverNodeFlags).toContain("--max-old-space-size=256");
    // The machine's speed at both ends: CPU ms of the same fixed work.
    expect(r.machine.speedProbeMs.atStart).toBeGreaterThan(0);
    expect(r.machine.speedProbeMs.atEnd).toBeGreaterThan(0);
    expect(stdout).toMatch(/^speed probe: [\d.]+ ms of CPU at start, [\d.]+ ms at the end/m);
    expect(r.dataset.events).toBe(3_000);
    expect(r.ingest).toMatchObject({ events: 3_000, accepted: 3_000, duplicates: 0, rejected: 0, streams: 4 });
    expect(r.ingest.eventsPerSecond).toBeGreaterThan(0);
    // CPU time of both processes, per event: the load's own work is measurable.
    expect(r.ingest.cpuMicrosPerEvent.server).toBeGreaterThan(0);
    expect(r.ingest.cpuMicrosPerEvent.engine).toBeGreaterThan(0);
    expect(stdout).toMatch(/CPU per event: server [\d.]+ µs, engine [\d.]+ µs/);
    // The batches the server committed (its metrics endpoint) hold every event of the load, and
    // the engine's own command counts say what each batch cost: at least its pending-batch
    // record, the insert, the rollup update and the record's removal.
    const load = r.ingest.engineWork;
    expect(load.events).toBe(3_000);
    expect(load.batches).toBeGreaterThanOrEqual(3);
    expect(load.eventsPerBatch).toBeCloseTo(3_000 / load.batches, 9);
    expect(load.commands).toMatchObject({ insert: expect.any(Number), update: expect.any(Number), delete: expect.any(Number) });
    expect(load.commands.delete).toBeGreaterThanOrEqual(load.batches);
    expect(load.commandsPerBatch).toBeGreaterThanOrEqual(4);
    expect(load.commandsPerBatch * load.batches).toBeCloseTo(Object.values(load.commands as Record<string, number>).reduce((a, b) => a + b, 0), 6);
    expect(stdout).toMatch(/^ +1000\.0 events \(1\.0 calls\) per batch, [\d.]+ engine commands per batch \(insert [\d,]+, update [\d,]+, delete [\d,]+/m);
    // Ten tenths, each a rate; together they take the whole load's time.
    expect(r.ingest.perTenth.map((x: { tenth: number }) => x.tenth)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const seconds = r.ingest.perTenth.reduce((sum: number, x: { eventsPerSecond: number }) => sum + 300 / x.eventsPerSecond, 0);
    expect(seconds).toBeGreaterThan(r.ingest.seconds * 0.5);
    expect(seconds).toBeLessThan(r.ingest.seconds * 1.5 + 0.5);
    // The server stored exactly what was generated, as GetCtr over the whole period reports it.
    expect(r.verify.clicks + r.verify.impressions).toBe(3_000);
    expect(r.verify).toMatchObject({ ok: true, expected: 3_000, storedDocuments: 3_000, clicks: r.dataset.clicks, impressions: r.dataset.impressions });
    // GetInterleavingResult finds every interleaved search generated, and the raw aggregation
    // (the shape's baseline) counts the same wins, ties and users.
    expect(r.dataset.interleavedSearches).toBeGreaterThan(0);
    const il = r.verify.interleaving;
    expect(il).toMatchObject({ ok: true, rawAgrees: true, rankerA: "ranker_a", rankerB: "ranker_b", impressions: r.dataset.interleavedPairSearches, expected: r.dataset.interleavedPairSearches });
    expect(il.winsA + il.winsB + il.ties).toBeGreaterThan(0);
    expect(il.raw).toMatchObject({ impressions: il.impressions, winsA: il.winsA, winsB: il.winsB, ties: il.ties, users: il.users });
    expect(stdout).toMatch(new RegExp(`verified: GetInterleavingResult over 4 days = ${r.dataset.interleavedPairSearches} interleaved searches showing both rankers \\(generated ${r.dataset.interleavedPairSearches}\\); wins ranker_a \\d+, ranker_b \\d+, ties \\d+, .*the raw aggregation counts the same: OK`));

    expect(r.rawInsert.docsPerSecond).toBeGreaterThan(0);
    expect(r.rawInsert.serviceToRawRatio).toBeGreaterThan(0);
    expect(r.rawInsert.indexes.impressions).toEqual(expect.arrayContaining(["user_id_1", "variant_1", "timestamp_1", "user_id_1_variant_1_timestamp_1"]));
    expect(r.rawInsert.engineCpuMicrosPerDoc).toBeGreaterThan(0);
    // Live views: every stream got snapshots about once a second, over ten distinct questions.
    expect(r.watch).toMatchObject({ streams: 40, questions: 10, intervalSeconds: 1, errors: 0 });
    expect(r.watch.snapshots).toBeGreaterThanOrEqual(40 * 3);
    expect(r.watch.gapMs.p50).toBeGreaterThan(500);
    expect(r.watch.gapMs.p50).toBeLessThan(2_000);
    expect(r.watch.worstStreamGapP99Ms).toBeGreaterThanOrEqual(r.watch.gapMs.p50);
    expect(r.watch.getCtrIdleMs.count).toBe(100);
    expect(r.watch.getCtrDuringMs.count).toBe(100);
    expect(stdout).toMatch(/live views: 40 WatchMetrics streams at 1 s over 10 questions/);
    expect(r.unary.callsPerSecond).toBeGreaterThan(0);
    expect(r.unary.errors).toBe(0);
    expect(r.unary.latencyMs.p50).toBeLessThanOrEqual(r.unary.latencyMs.p99);
    // Every LogClick (the 64 warm-up calls too) is one write of one event, committed in batches that combine calls.
    const unary = r.unary.engineWork;
    expect(unary.events).toBe(r.unary.calls + 64);
    expect(unary.writes).toBe(unary.events);
    expect(unary.batches).toBeGreaterThan(0);
    expect(unary.batches).toBeLessThanOrEqual(unary.events);
    expect(unary.eventsPerBatch).toBeCloseTo(unary.events / unary.batches, 9);
    expect(unary.commandsPerBatch).toBeGreaterThanOrEqual(4);

    expect(r.metrics.shapes.map((s: { name: string }) => s.name)).toEqual(METRIC_SHAPES.map((s) => s.name));
    // Interleaving is among the shapes measured, with its raw baseline.
    expect(r.metrics.shapes).toContainEqual(expect.objectContaining({ name: "GetInterleavingResult 30d", rpc: "GetInterleavingResult", errors: 0, raw: expect.objectContaining({ errors: 0 }) }));
    expect(stdout).toMatch(/^GetInterleavingResult 30d +[\d.,]+ +[\d.,]+ +[\d.,]+ +[\d.,]+ +[\d.,]+x +[\d.]+$/m);
    // Raw baselines: iterations/40 calls, at least 3; a user-filtered shape's as many as the service's.
    expect(r.metrics.rawIterations).toBe(3);
    expect(stdout).toContain("raw x3, user-filtered x4");
    for (const s of r.metrics.shapes) {
      expect(s.errors, `${s.name}: ${s.firstError}`).toBe(0);
      expect(s.latencyMs.count).toBe(4);
      expect(s.raw.calls).toBe(METRIC_SHAPES.find((m) => m.name === s.name)!.filter === "user" ? 4 : 3);
      expect(s.raw.latencyMs.count).toBe(s.raw.calls);
      expect(s.latencyMs.p50).toBeGreaterThan(0);
      expect(s.latencyMs.p50).toBeLessThanOrEqual(s.latencyMs.p99);
      expect(s.raw.errors, `${s.name} raw: ${s.raw.firstError}`).toBe(0);
      expect(s.raw.latencyMs.p50).toBeLessThanOrEqual(s.raw.latencyMs.p99);
      // The figure the table prints: the raw-event read's median over the service's.
      expect(s.speedup).toBeCloseTo(s.raw.latencyMs.p50 / s.latencyMs.p50, 9);
      // The engine's commands per warm call: every read asks the engine something, in whole commands.
      const commands = Object.values(s.engineCommands as Record<string, number>).reduce((a, b) => a + b, 0);
      expect(commands).toBeGreaterThanOrEqual(4);
      expect(s.engineCommandsPerCall).toBeCloseTo(commands / 4, 9);
      // Server and engine CPU per call, read from /proc around the shape's calls (10 ms ticks: may be 0 for 4 calls).
      expect(s.cpuMicrosPerCall).toEqual({ server: expect.any(Number), engine: expect.any(Number), warmupServer: expect.any(Number), warmupEngine: expect.any(Number) });
      for (const v of Object.values(s.cpuMicrosPerCall as Record<string, number>)) expect(v).toBeGreaterThanOrEqual(0);
      expect(stdout).toContain(s.name);
    }
    // Across the shapes (their first calls build caches), the server and the engine did work.
    const cpuTotal = (key: string) => r.metrics.shapes.reduce((sum: number, s: { cpuMicrosPerCall: Record<string, number> }) => sum + s.cpuMicrosPerCall[key]!, 0);
    expect(cpuTotal("server") + cpuTotal("warmupServer")).toBeGreaterThan(0);
    expect(cpuTotal("engine") + cpuTotal("warmupEngine")).toBeGreaterThan(0);

    expect(r.memory.server.peakRssBytes).toBeGreaterThan(0);
    expect(r.memory.server.samples).toBeGreaterThan(0);
    expect(r.memory.engine.peakRssBytes).toBeGreaterThan(0);
    expect(stdout).toMatch(/StreamEvents ingest .* events\/s/);
    expect(stdout).toMatch(/^ +tenth 10 of the load .* events\/s/m);

    // Everything it started is gone, and so is its temporary data directory.
    expect(existsSync(r.storage.dataDir)).toBe(false);
    expect(existsSync(`/proc/${r.memory.server.pid}`)).toBe(false);
    expect(existsSync(`/proc/${r.memory.engine.pid}`)).toBe(false);
  });

  it("stops the server and the engine and removes its data on SIGINT", { timeout: 90_000 }, async () => {
    const child = spawn(process.execPath, [BENCH, "--events", "200000", "--users", "500", "--days", "3"], { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
    const seen: { dataDir?: string; enginePid?: number; serverPid?: number } = {};
    const stderr: string[] = [];
    await new Promise<void>((resolve, reject) => {
      child.once("exit", (code) => reject(new Error(`bench exited early (${code}): ${stderr.join("\n")}`)));
      createInterface({ input: child.stderr! }).on("line", (line) => {
        stderr.push(line);
        seen.dataDir ??= /embedded MongoDB engine in (\S+)/.exec(line)?.[1];
        const engine = /engine pid (\d+)/.exec(line);
        if (engine) seen.enginePid = Number(engine[1]);
        const server = /server pid (\d+)/.exec(line);
        if (server) {
          seen.serverPid = Number(server[1]);
          // Interrupt in the middle of the load.
          setTimeout(resolve, 1_000);
        }
      });
    });
    child.removeAllListeners("exit");
    child.kill("SIGINT");
    const [code] = (await once(child, "exit")) as [number | null];
    expect(code).toBe(130);
    expect(seen.dataDir && existsSync(seen.dataDir)).toBe(false);
    expect(existsSync(`/proc/${seen.serverPid}`)).toBe(false);
    expect(existsSync(`/proc/${seen.enginePid}`)).toBe(false);
  });

  it("stops at once when the engine dies, and keeps what it measured", { timeout: 90_000 }, async () => {
    const json = path.join(dir, "partial.json");
    const child = spawn(process.execPath, [BENCH, "--events", "5000", "--users", "200", "--days", "3", "--iterations", "100000", "--json", json], {
      cwd: ROOT,
      stdio: ["ignore", "ignore", "pipe"],
    });
    let enginePid = 0;
    const stderr: string[] = [];
    const lines = createInterface({ input: child.stderr! });
    lines.on("line", (line) => {
      stderr.push(line);
      enginePid ||= Number(/engine pid (\d+)/.exec(line)?.[1] ?? 0);
      // The metrics client is at work: take the engine away from under it.
      if (line.startsWith("bench: metrics:")) setTimeout(() => process.kill(enginePid, "SIGKILL"), 500);
    });
    const exited = once(child, "exit") as Promise<[number | null]>;
    const [code] = await Promise.race([exited, sleep(60_000).then(() => [undefined] as const)]);
    if (code === undefined) child.kill("SIGKILL");
    expect(code, stderr.join("\n")).toBe(1);
    expect(stderr.join("\n")).toMatch(/MongoDB engine \(pid \d+\) exited unexpectedly during metrics/);
    const r = JSON.parse(await readFile(json, "utf8"));
    expect(r).toMatchObject({ complete: false, error: expect.stringContaining("exited unexpectedly") });
    expect(r.ingest.events).toBe(5_000);
    expect(r.metrics).toMatchObject({ iterations: 100_000, shapes: [] });
    expect(existsSync(r.storage.dataDir)).toBe(false);
    expect(existsSync(`/proc/${r.memory.server.pid}`)).toBe(false);
  });

  it("prints its flags with --help and refuses unknown ones", async () => {
    const help = await run(process.execPath, [BENCH, "--help"], { cwd: ROOT });
    for (const flag of ["--events", "--days", "--users", "--seed", "--streams", "--iterations", "--unary-seconds", "--json", "--data-dir", "--mongodb-uri", "--skip-raw", "--skip-unary", "--watch-streams", "--watch-seconds", "--server-cpu-prof"]) {
      expect(help.stdout).toContain(flag);
    }
    await expect(run(process.execPath, [BENCH, "--events", "many"], { cwd: ROOT })).rejects.toMatchObject({ code: 2 });
    await expect(run(process.execPath, [BENCH, "--bogus"], { cwd: ROOT })).rejects.toMatchObject({ code: 2 });
  });
});
