/**
 * The benchmark's metrics client: a process of its own (so that its CPU does not compete with
 * the orchestrator's bookkeeping inside one event loop), started by bench.ts. It calls every
 * metrics RPC shape, one call at a time, after a short warm-up. On stdout: one JSON line
 * `{"shape": ShapeResult}` as each shape finishes, then the whole ClientReport as the last line.
 * Progress goes to stderr.
 *
 *   node dist/bench/bench-client.js --address 127.0.0.1:PORT [--iterations 200] [--warmup 5]
 *     [--users 10000] [--seed 1] [--timeout-ms 120000]
 *
 * The shapes (METRIC_SHAPES) and the latency summary are also used by bench.ts, which runs the
 * same shapes as raw aggregations for comparison.
 */
import { realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { createClickAnalyticsClient, Granularity, type ClickAnalyticsClient } from "../src/client/index.js";
import { INTERLEAVED_RANKERS } from "../src/cli/traffic-generator.js";
import { Rng } from "../src/cli/traffic-random.js";
import { userIdOf, VARIANTS } from "../src/cli/traffic-population.js";
import { createProgress } from "../src/cli/progress.js";
import { MongoClient } from "mongodb";
import { commandsBetween, engineCommands, totalCommands, type CommandCounts } from "./engine-commands.js";
import { cpuSeconds } from "./engine-cpu.js";

export type MetricRpc = "GetCtr" | "GetRankMetrics" | "GetResponseTimeMetrics" | "GetUserSummary" | "GetVariantComparison" | "GetTopQueries" | "GetTimeSeries" | "GetInterleavingResult";

export interface MetricShape {
  /** Unique, e.g. "GetCtr user 30d". */
  name: string;
  rpc: MetricRpc;
  days: number;
  /** A random variant / user per call. */
  filter?: "variant" | "user";
  granularity?: "day" | "hour";
  /** Timed calls at most, whatever --iterations says: for a shape that reads raw events and takes seconds at 1M. */
  maxIterations?: number;
}

/** Every metrics RPC in the shapes people call it with. */
export const METRIC_SHAPES: readonly MetricShape[] = [
  { name: "GetCtr 1d", rpc: "GetCtr", days: 1 },
  { name: "GetCtr 7d", rpc: "GetCtr", days: 7 },
  { name: "GetCtr 30d", rpc: "GetCtr", days: 30 },
  { name: "GetCtr variant 30d", rpc: "GetCtr", days: 30, filter: "variant" },
  { name: "GetCtr user 30d", rpc: "GetCtr", days: 30, filter: "user" },
  { name: "GetRankMetrics 30d", rpc: "GetRankMetrics", days: 30 },
  { name: "GetResponseTimeMetrics 30d", rpc: "GetResponseTimeMetrics", days: 30 },
  { name: "GetUserSummary 30d", rpc: "GetUserSummary", days: 30, filter: "user" },
  { name: "GetVariantComparison 7d", rpc: "GetVariantComparison", days: 7 },
  { name: "GetVariantComparison 30d", rpc: "GetVariantComparison", days: 30 },
  { name: "GetTopQueries 7d", rpc: "GetTopQueries", days: 7 },
  { name: "GetTimeSeries day 30d", rpc: "GetTimeSeries", days: 30, granularity: "day" },
  { name: "GetTimeSeries hour 2d", rpc: "GetTimeSeries", days: 2, granularity: "hour" },
  // ranker_a against ranker_b over the dataset's interleaved searches (~10% of them), read from
  // the interleaving rollups; the preference test runs on the users' totals (normal above 500 users).
  { name: "GetInterleavingResult 30d", rpc: "GetInterleavingResult", days: 30 },
];

/** The parameters of one call of a shape (the same for the RPC and the raw aggregation). */
export interface ShapeParams {
  days: number;
  userId?: string;
  variant?: string;
  granularity?: "day" | "hour";
}

/** Picks the random users and variants of successive calls, reproducibly. */
export class ParamSource {
  private readonly rng: Rng;
  private turn = 0;

  constructor(
    private readonly users: number,
    seed: number,
    stream = 10,
  ) {
    this.rng = new Rng(seed, stream);
  }

  next(shape: MetricShape): ShapeParams {
    const params: ShapeParams = { days: shape.days };
    if (shape.filter === "user") params.userId = userIdOf(this.rng.int(this.users));
    if (shape.filter === "variant") params.variant = VARIANTS[this.turn++ % VARIANTS.length]!;
    if (shape.granularity) params.granularity = shape.granularity;
    return params;
  }
}

/** Top queries are asked for the way a dashboard does: the top 10 by searches. */
export const TOP_QUERIES_LIMIT = 10;

/** One call of the shape through the typed client. */
export function callShape(client: ClickAnalyticsClient, shape: MetricShape, p: ShapeParams, timeoutMs: number): Promise<unknown> {
  const o = { timeoutMs };
  switch (shape.rpc) {
    case "GetCtr":
      return client.getCtr({ days: p.days, userId: p.userId ?? "", variant: p.variant ?? "" }, o);
    case "GetRankMetrics":
      return client.getRankMetrics({ days: p.days }, o);
    case "GetResponseTimeMetrics":
      return client.getResponseTimeMetrics({ days: p.days }, o);
    case "GetUserSummary":
      return client.getUserSummary({ days: p.days, userId: p.userId ?? userIdOf(0) }, o);
    case "GetVariantComparison":
      return client.getVariantComparison({ days: p.days }, o);
    case "GetTopQueries":
      return client.getTopQueries({ days: p.days, limit: TOP_QUERIES_LIMIT }, o);
    case "GetTimeSeries":
      return client.getTimeSeries({ days: p.days, granularity: p.granularity === "hour" ? Granularity.HOUR : Granularity.DAY }, o);
    case "GetInterleavingResult":
      return client.getInterleavingResult({ days: p.days, rankerA: INTERLEAVED_RANKERS[0], rankerB: INTERLEAVED_RANKERS[1] }, o);
  }
}

export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** Percentiles with linear interpolation between closest ranks (numpy's default). */
export function summarize(samplesMs: readonly number[]): LatencySummary | null {
  if (samplesMs.length === 0) return null;
  const s = [...samplesMs].sort((a, b) => a - b);
  const at = (p: number) => {
    const h = (s.length - 1) * p;
    const lo = Math.floor(h);
    const hi = Math.ceil(h);
    return s[lo]! + (s[hi]! - s[lo]!) * (h - lo);
  };
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    count: s.length,
    p50: round(at(0.5)),
    p95: round(at(0.95)),
    p99: round(at(0.99)),
    mean: round(s.reduce((a, b) => a + b, 0) / s.length),
    min: round(s[0]!),
    max: round(s[s.length - 1]!),
  };
}

export interface ShapeResult {
  name: string;
  rpc: MetricRpc;
  calls: number;
  errors: number;
  firstError?: string;
  seconds: number;
  latencyMs: LatencySummary | null;
  /**
   * The engine's data commands per timed call (warm: after the warm-up calls), and by name over
   * all timed calls; absent without --mongodb-uri. The server's background work (lease renewals,
   * repairs) in that time counts too: a few commands over the whole shape.
   */
  engineCommandsPerCall?: number;
  engineCommands?: CommandCounts;
  /**
   * CPU of the server and engine processes (/proc, 10 ms ticks) over the timed calls, per call,
   * and over the warm-up calls before them, per call: whatever else those processes do meanwhile
   * counts too, so a figure above the same shape's in a quiet run shows background work.
   */
  cpuMicrosPerCall?: { server: number; engine: number; warmupServer: number; warmupEngine: number };
}

export interface ClientReport {
  iterations: number;
  warmup: number;
  shapes: ShapeResult[];
}

export interface RunShapesOptions {
  iterations: number;
  warmup: number;
  users: number;
  seed: number;
  timeoutMs: number;
  shapes?: readonly MetricShape[];
  onCall?: () => void;
  /** After each shape: a long run's log keeps what it measured even if it is interrupted later. */
  onShape?: (result: ShapeResult) => void;
  /** The engine's command totals so far (see engine-commands.ts): read around each shape's timed calls. */
  countCommands?: () => Promise<CommandCounts>;
  /** CPU seconds the server and the engine have used so far: read around each shape's warm-up and timed calls. */
  cpuSeconds?: () => { server: number; engine: number };
}

/** Runs every shape in turn: `warmup` untimed calls, then `iterations` timed ones, sequentially. */
export async function runShapes(client: ClickAnalyticsClient, options: RunShapesOptions): Promise<ClientReport> {
  const params = new ParamSource(options.users, options.seed);
  const shapes: ShapeResult[] = [];
  for (const shape of options.shapes ?? METRIC_SHAPES) {
    const cpuBeforeWarmup = options.cpuSeconds?.();
    for (let i = 0; i < options.warmup; i++) {
      await callShape(client, shape, params.next(shape), options.timeoutMs).catch(() => undefined);
      options.onCall?.();
    }
    const samples: number[] = [];
    let errors = 0;
    let firstError: string | undefined;
    const commandsBefore = await options.countCommands?.();
    const cpuBefore = options.cpuSeconds?.();
    const started = performance.now();
    const iterations = Math.min(options.iterations, shape.maxIterations ?? Infinity);
    for (let i = 0; i < iterations; i++) {
      const p = params.next(shape);
      const t0 = performance.now();
      try {
        await callShape(client, shape, p, options.timeoutMs);
        samples.push(performance.now() - t0);
      } catch (error) {
        errors++;
        firstError ??= error instanceof Error ? error.message : String(error);
      }
      options.onCall?.();
    }
    const result: ShapeResult = {
      name: shape.name,
      rpc: shape.rpc,
      calls: iterations,
      errors,
      ...(firstError === undefined ? {} : { firstError }),
      seconds: (performance.now() - started) / 1000,
      latencyMs: summarize(samples),
    };
    const cpuAfter = options.cpuSeconds?.();
    if (cpuBeforeWarmup && cpuBefore && cpuAfter) {
      const perCall = (seconds: number, calls: number) => (calls === 0 ? 0 : Math.round((seconds * 1e6) / calls));
      result.cpuMicrosPerCall = {
        server: perCall(cpuAfter.server - cpuBefore.server, iterations),
        engine: perCall(cpuAfter.engine - cpuBefore.engine, iterations),
        warmupServer: perCall(cpuBefore.server - cpuBeforeWarmup.server, options.warmup),
        warmupEngine: perCall(cpuBefore.engine - cpuBeforeWarmup.engine, options.warmup),
      };
    }
    if (commandsBefore !== undefined && options.countCommands) {
      const commands = commandsBetween(commandsBefore, await options.countCommands());
      result.engineCommands = commands;
      result.engineCommandsPerCall = totalCommands(commands) / Math.max(1, iterations);
    }
    shapes.push(result);
    options.onShape?.(result);
  }
  return { iterations: options.iterations, warmup: options.warmup, shapes };
}

/** One line for a log: "GetCtr 30d: 200 calls, p50 1.2 / p95 3.4 / p99 5.6 ms, 0 errors". */
export function describeShape(r: Pick<ShapeResult, "name" | "calls" | "errors" | "latencyMs" | "firstError" | "engineCommandsPerCall" | "cpuMicrosPerCall">): string {
  const l = r.latencyMs;
  const figures = l ? `p50 ${l.p50.toFixed(2)} / p95 ${l.p95.toFixed(2)} / p99 ${l.p99.toFixed(2)} ms` : "no successful call";
  const commands = r.engineCommandsPerCall === undefined ? "" : `, ${r.engineCommandsPerCall.toFixed(1)} engine commands per call`;
  const c = r.cpuMicrosPerCall;
  const cpu = c === undefined ? "" : `, CPU per call: server ${c.server} µs, engine ${c.engine} µs (warm-up ${c.warmupServer} / ${c.warmupEngine} µs)`;
  return `${r.name}: ${r.calls} calls, ${figures}${commands}${cpu}, ${r.errors} errors${r.firstError ? ` (first: ${r.firstError})` : ""}`;
}

/** On a terminal the progress bar owns the current line: start a new one first. */
const progressBreak = () => (process.stderr.isTTY ? "\r\x1b[K" : "");

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      address: { type: "string" },
      iterations: { type: "string", default: "200" },
      warmup: { type: "string", default: "5" },
      users: { type: "string", default: "10000" },
      seed: { type: "string", default: "1" },
      "timeout-ms": { type: "string", default: "120000" },
      "mongodb-uri": { type: "string" },
      "server-pid": { type: "string" },
      "engine-pid": { type: "string" },
    },
    strict: true,
  });
  const int = (name: string, raw: string, min: number) => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got "${raw}"`);
    return n;
  };
  if (!values.address) throw new Error("--address is required");
  const options = {
    iterations: int("iterations", values.iterations, 1),
    warmup: int("warmup", values.warmup, 0),
    users: int("users", values.users, 1),
    seed: int("seed", values.seed, Number.MIN_SAFE_INTEGER),
    timeoutMs: int("timeout-ms", values["timeout-ms"], 1),
  };
  const client = createClickAnalyticsClient(values.address, { defaultTimeoutMs: options.timeoutMs });
  // The engine the server uses, for its command counts per read.
  const engine = values["mongodb-uri"] === undefined ? undefined : new MongoClient(values["mongodb-uri"], { serverSelectionTimeoutMS: 30_000 });
  try {
    await client.waitForReady(30_000);
    let calls = 0;
    const progress = createProgress({ label: "metrics", total: METRIC_SHAPES.reduce((n, shape) => n + Math.min(options.iterations, shape.maxIterations ?? Infinity) + options.warmup, 0), unit: "calls" });
    const pid = (name: "server-pid" | "engine-pid") => (values[name] === undefined ? undefined : int(name, values[name], 1));
    const [serverPid, enginePid] = [pid("server-pid"), pid("engine-pid")];
    const report = await runShapes(client, {
      ...options,
      ...(serverPid === undefined || enginePid === undefined ? {} : { cpuSeconds: () => ({ server: cpuSeconds(serverPid), engine: cpuSeconds(enginePid) }) }),
      ...(engine === undefined ? {} : { countCommands: () => engineCommands(engine.db("admin")) }),
      onCall: () => progress.update(++calls),
      onShape: (r) => {
        process.stdout.write(JSON.stringify({ shape: r }) + "\n");
        process.stderr.write(`${progressBreak()}bench-client: ${describeShape(r)}\n`);
      },
    });
    progress.finish();
    process.stdout.write(JSON.stringify(report) + "\n");
  } finally {
    client.close();
    await engine?.close();
  }
}

// Run only as a program, not when bench.ts or a test imports the shapes.
const invokedAs = process.argv[1];
if (invokedAs !== undefined && import.meta.url === pathToFileURL(realpathSync(invokedAs)).href) {
  process.on("SIGTERM", () => process.exit(143));
  main().catch((error: unknown) => {
    process.stderr.write(`bench-client: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
