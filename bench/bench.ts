/**
 * `npm run bench`: an end-to-end benchmark of ClickAnalytics on this machine.
 *
 * Starts the embedded MongoDB engine (or uses --mongodb-uri) and the compiled server as a child
 * process, then: loads a realistic generated dataset through StreamEvents; measures the engine's
 * raw insertMany capacity with the same indexes; measures unary LogClick throughput with 64
 * concurrent clients; times every metrics RPC shape from a separate client process; runs the same
 * questions as straightforward aggregations over the raw events for comparison; samples the
 * server's and the engine's memory throughout. Prints one table and, with --json, writes every
 * figure to a file. Run `npm run bench -- --help` for the flags.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once, setMaxListeners } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { MongoClient, type Db, type Document, type IndexDescription } from "mongodb";
import { createClickAnalyticsClient, type ClickAnalyticsClient } from "../src/client/index.js";
import { startEmbeddedMongo, type EmbeddedMongo } from "../src/store/engine/embedded-engine.js";
import { EVENT_INDEXES } from "../src/store/schema/indexes.js";
import {
  describeShape,
  METRIC_SHAPES,
  ParamSource,
  summarize,
  type ClientReport,
  type LatencySummary,
  type MetricRpc,
  type MetricShape,
  type ShapeResult,
} from "./bench-client.js";
import { buildVocabulary, userIdOf, VARIANTS, variantOf } from "../src/cli/traffic-population.js";
import { chunks, DEFAULT_QUERIES, generateEvents, INTERLEAVED_RANKERS } from "../src/cli/traffic-generator.js";
import { fnv1a, Rng } from "../src/cli/traffic-random.js";
import { loadDataset } from "../src/cli/traffic-loader.js";
import { createProgress, formatDuration, formatInteger } from "../src/cli/progress.js";
import { commandsBetween, engineCommands, totalCommands, type CommandCounts } from "./engine-commands.js";
import { toDocument } from "./raw-documents.js";
import { CLICKS, IMPRESSIONS, RAW_QUERIES, rawInterleaving, type RawInterleaving } from "./raw-queries.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** dist/bench -> dist/src/server/main.js */
const SERVER_MAIN = path.resolve(HERE, "../src/server/main.js");
/** Node's flags from package.json's start script (the heap's cap and its starting size), so the server runs as deployed. */
const SERVER_NODE_FLAGS = startScriptNodeFlags(readFileSync(packageJsonAbove(HERE), "utf8"));
const CLIENT_MAIN = path.resolve(HERE, "bench-client.js");

const BATCH_SIZE = 1_000;
const RAW_WRITERS = 4;
const RAW_INSERT_MAX_DOCS = 100_000;
const UNARY_CLIENTS = 64;
const RSS_INTERVAL_MS = 200;

const USAGE = `usage: npm run bench -- [flags]

Loads a generated dataset into a fresh ClickAnalytics server and measures ingest, raw insert
capacity, unary LogClick, every metrics RPC (from a separate client process) against
straightforward raw aggregations, and memory. Progress on stderr, the table on stdout.

  --events N          events to generate and load (default 1000000)
  --days N            spread over the last N days, 1..365 (default 30)
  --users N           distinct users (default 10000)
  --seed N            dataset seed; the same seed gives the same data (default 1)
  --streams N         parallel StreamEvents calls for the load (default 4)
  --iterations N      timed calls per metrics shape (default 200); raw baselines run
                      iterations/40 times, between 3 and 20 (user-filtered ones N times)
  --unary-seconds N   how long to run unary LogClick (default 10)
  --json PATH         also write every figure as JSON to PATH
  --data-dir DIR      embedded engine's data directory (default: a fresh temp dir, removed at
                      exit; a given one is kept, with the loaded database in it)
  --mongodb-uri URI   use this MongoDB instead of the embedded engine (databases bench_* are
                      created there and dropped at exit)
  --skip-raw          skip the raw insertMany and raw aggregation baselines
  --skip-unary        skip the unary LogClick measurement
  --watch-streams N   WatchMetrics streams at a 1 s interval over 10 distinct questions, with
                      GetCtr timed idle and during them (default 500; 0 skips)
  --watch-seconds N   how long the streams run (default 30)
  --server-cpu-prof DIR  run the server under Node's --cpu-prof, writing its profile to DIR at
                      exit (open it in Chrome DevTools; the figures then include the profiler's cost)
  --help              this text

The default size takes several minutes; e.g. --events 100000 --iterations 50 is quicker.`;

export interface BenchOptions {
  events: number;
  days: number;
  users: number;
  seed: number;
  streams: number;
  iterations: number;
  unarySeconds: number;
  json?: string | undefined;
  dataDir?: string | undefined;
  mongodbUri?: string | undefined;
  skipRaw: boolean;
  skipUnary: boolean;
  serverCpuProfDir?: string | undefined;
  watchStreams: number;
  watchSeconds: number;
}

class UsageError extends Error {}

function parseOptions(argv: string[]): BenchOptions | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        events: { type: "string", default: "1000000" },
        days: { type: "string", default: "30" },
        users: { type: "string", default: "10000" },
        seed: { type: "string", default: "1" },
        streams: { type: "string", default: "4" },
        iterations: { type: "string", default: "200" },
        "unary-seconds": { type: "string", default: "10" },
        json: { type: "string" },
        "data-dir": { type: "string" },
        "mongodb-uri": { type: "string" },
        "skip-raw": { type: "boolean", default: false },
        "skip-unary": { type: "boolean", default: false },
        "server-cpu-prof": { type: "string" },
        "watch-streams": { type: "string", default: "500" },
        "watch-seconds": { type: "string", default: "30" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const v = parsed.values;
  if (v.help) return "help";
  const number = (name: string, raw: string, min: number, max: number, integer = true): number => {
    const n = Number(raw.replace(/[_,]/g, ""));
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
      throw new UsageError(`--${name} must be ${integer ? "an integer" : "a number"} between ${min} and ${max}, got "${raw}"`);
    }
    return n;
  };
  if (v["data-dir"] !== undefined && v["mongodb-uri"] !== undefined) throw new UsageError("--data-dir and --mongodb-uri exclude each other");
  return {
    events: number("events", v.events, 1, 1e9),
    days: number("days", v.days, 1, 365),
    users: number("users", v.users, 1, 1e8),
    seed: number("seed", v.seed, -(2 ** 31), 2 ** 31 - 1),
    streams: number("streams", v.streams, 1, 64),
    iterations: number("iterations", v.iterations, 1, 1e6),
    unarySeconds: number("unary-seconds", v["unary-seconds"], 0.1, 3600, false),
    json: v.json,
    dataDir: v["data-dir"],
    mongodbUri: v["mongodb-uri"],
    skipRaw: v["skip-raw"],
    skipUnary: v["skip-unary"],
    serverCpuProfDir: v["server-cpu-prof"],
    watchStreams: number("watch-streams", v["watch-streams"], 0, 10_000),
    watchSeconds: number("watch-seconds", v["watch-seconds"], 3, 3600, false),
  };
}

const log = (message: string) => process.stderr.write(`bench: ${message}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// Memory sampling

interface ProcMemory {
  /** VmRSS, bytes. */
  rss: number;
  /** VmHWM (the kernel's own peak RSS), bytes. */
  hwm: number;
  /** CPU time used so far (user + system), seconds. */
  cpuSeconds: number;
}

/** Linux's USER_HZ: /proc/<pid>/stat counts CPU time in these ticks (100 on every Linux ABI Node runs on). */
const CLOCK_TICKS_PER_SECOND = 100;

async function procMemory(pid: number): Promise<ProcMemory | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0) * 1024;
    // Fields 14 and 15 (utime, stime), counted after the command name's closing parenthesis.
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { rss: kb("VmRSS"), hwm: kb("VmHWM"), cpuSeconds: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND };
  } catch {
    return null; // gone, or not Linux
  }
}

interface MemoryFigures {
  pid: number;
  /** Highest VmRSS seen by sampling every 200 ms. */
  peakRssBytes: number;
  /** VmHWM read at the end (0 when unavailable). */
  vmHwmBytes: number;
  lastRssBytes: number;
  samples: number;
  /** Highest sampled VmRSS per phase. */
  peakRssByPhaseBytes: Record<string, number>;
  /** CPU seconds used per phase (between samples, credited to the phase at the later sample). */
  cpuSecondsByPhase: Record<string, number>;
  /** The last sample's CPU reading, for the next difference. */
  lastCpuSeconds?: number;
}

const HAVE_PROC = existsSync("/proc/self/status");

class RssSampler {
  private readonly tracked = new Map<string, MemoryFigures>();
  private readonly onGone = new Map<string, () => void>();
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  phase = "start";

  /** `onGone` is called once if the process disappears while sampling runs. */
  track(name: string, pid: number, onGone?: () => void): void {
    this.tracked.set(name, { pid, peakRssBytes: 0, vmHwmBytes: 0, lastRssBytes: 0, samples: 0, peakRssByPhaseBytes: {}, cpuSecondsByPhase: {} });
    if (onGone && HAVE_PROC) this.onGone.set(name, onGone);
  }

  start(): void {
    this.timer = setInterval(() => void this.sample(), RSS_INTERVAL_MS);
  }

  async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (const [name, figures] of this.tracked) {
        const m = await procMemory(figures.pid);
        if (!m && this.timer !== undefined) {
          const gone = this.onGone.get(name);
          this.onGone.delete(name);
          gone?.();
        }
        if (!m || m.rss === 0) continue;
        figures.samples++;
        figures.lastRssBytes = m.rss;
        figures.peakRssBytes = Math.max(figures.peakRssBytes, m.rss);
        figures.vmHwmBytes = Math.max(figures.vmHwmBytes, m.hwm);
        figures.peakRssByPhaseBytes[this.phase] = Math.max(figures.peakRssByPhaseBytes[this.phase] ?? 0, m.rss);
        if (figures.lastCpuSeconds !== undefined) figures.cpuSecondsByPhase[this.phase] = (figures.cpuSecondsByPhase[this.phase] ?? 0) + m.cpuSeconds - figures.lastCpuSeconds;
        figures.lastCpuSeconds = m.cpuSeconds;
      }
    } finally {
      this.busy = false;
    }
  }

  /** Takes a sample now (after any in progress): at a phase's end, so that its CPU time is its own. */
  async settle(): Promise<void> {
    while (this.busy) await sleep(10);
    await this.sample();
  }

  /** Takes a last sample and stops. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.onGone.clear();
    await this.settle();
  }

  figures(name: string): MemoryFigures | null {
    return this.tracked.get(name) ?? null;
  }
}

// ---------------------------------------------------------------------------------------------
// The server process

export interface ServerLog {
  warnings: number;
  errors: number;
  messages: Record<string, number>;
  /** The first line logged of each kind, in full (up to 1,000 characters): the error behind it. */
  samples: Record<string, string>;
}

interface ServerHandle {
  child: ChildProcess;
  pid: number;
  address: string;
  /** The server's Prometheus endpoint (its batches written: see serverBatches). */
  metricsPort: number | undefined;
  /** Warnings and errors the server logged: counts, and how often each message came. */
  log: ServerLog;
  stop(): Promise<void>;
}

/** Variables that would change what is measured (access control, TLS, another storage). */
const SERVER_ENV_DROPPED = ["CLICK_ANALYTICS_TOKENS", "CLICK_ANALYTICS_TOKENS_FILE", "CLICK_ANALYTICS_ADMIN_TOKEN", "TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE", "DATA_DIR"];

async function startServerProcess(mongoUri: string, dbName: string, onUnexpectedExit: (reason: string) => void, cpuProfDir?: string): Promise<ServerHandle> {
  // A short shutdown grace: at exit nothing of ours is worth waiting for. Free ports only (the
  // Prometheus endpoint too), so that a bench runs next to anything else on the machine.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    MONGODB_URI: mongoUri,
    MONGODB_DB: dbName,
    HOST: "127.0.0.1",
    PORT: "0",
    METRICS_HOST: "127.0.0.1",
    METRICS_PORT: "0",
    LOG_LEVEL: "info",
    SHUTDOWN_GRACE_MS: "2000",
  };
  for (const name of SERVER_ENV_DROPPED) delete env[name];
  // With the Node flags `npm start` gives the server (package.json), so memory is measured as deployed.
  const profile = cpuProfDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${path.resolve(cpuProfDir)}`];
  const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, ...profile, SERVER_MAIN], { env, stdio: ["ignore", "ignore", "pipe"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let stopping = false;
  const handle: ServerHandle = {
    child,
    pid: child.pid ?? -1,
    address: "",
    metricsPort: undefined,
    log: { warnings: 0, errors: 0, messages: {}, samples: {} },
    async stop() {
      stopping = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
  const port = await new Promise<number>((resolve, reject) => {
    const recent: string[] = [];
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the server did not report its port within 60 s:\n${recent.join("\n")}`));
    }, 60_000);
    createInterface({ input: child.stderr! }).on("line", (line) => {
      recent.push(line);
      if (recent.length > 20) recent.shift();
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        entry = { level: "error", msg: line };
      }
      if (entry.level === "warn" || entry.level === "error") {
        if (entry.level === "warn") handle.log.warnings++;
        else handle.log.errors++;
        const key = `${entry.level}: ${String(entry.msg)}`;
        // A bounded set of distinct messages: one for every kind, not every occurrence.
        if (key in handle.log.messages || Object.keys(handle.log.messages).length < 50) {
          handle.log.messages[key] = (handle.log.messages[key] ?? 0) + 1;
          handle.log.samples[key] ??= line.slice(0, 1_000);
        }
      }
      if (entry.msg === "click-analytics listening" && typeof entry.port === "number") {
        clearTimeout(timer);
        if (typeof entry.metricsPort === "number") handle.metricsPort = entry.metricsPort;
        resolve(entry.port);
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the server exited before listening (code ${code}, signal ${signal}):\n${recent.join("\n")}`));
    });
  });
  child.once("exit", (code, signal) => {
    if (!stopping) onUnexpectedExit(`the server process exited unexpectedly (code ${code}, signal ${signal})`);
  });
  return Object.assign(handle, { address: `127.0.0.1:${port}` });
}

/** The server's batches written so far (its write_batch_events histogram and committed calls), from its Prometheus endpoint. */
interface BatchCounts {
  batches: number;
  events: number;
  writes: number;
}

async function serverBatches(metricsPort: number | undefined): Promise<BatchCounts | null> {
  if (metricsPort === undefined) return null;
  try {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^click_analytics_${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
    const counts = { batches: value("write_batch_events_count"), events: value("write_batch_events_sum"), writes: value("write_calls_committed_total") };
    return Object.values(counts).every(Number.isFinite) ? counts : null;
  } catch {
    return null;
  }
}

/** What a write phase asked of the engine, per batch the server committed (the engine's own command counts). */
export interface WriteEngineWork {
  /** Batches the server committed, and the events and calls' writes they combined. */
  batches: number;
  events: number;
  writes: number;
  eventsPerBatch: number | null;
  writesPerBatch: number | null;
  /** Data commands the engine ran during the phase (insert, update, find, aggregate, ...), by name. */
  commands: CommandCounts;
  commandsPerBatch: number | null;
  commandsPerEvent: number | null;
}

/** Starts counting a write phase; the returned function ends it. Null figures where the engine or the endpoint could not be read. */
async function countWriteWork(db: Db, metricsPort: number | undefined): Promise<() => Promise<WriteEngineWork | null>> {
  const [commands0, batches0] = await Promise.all([engineCommands(db).catch(() => null), serverBatches(metricsPort)]);
  return async () => {
    const [commands1, batches1] = await Promise.all([engineCommands(db).catch(() => null), serverBatches(metricsPort)]);
    if (!commands0 || !commands1 || !batches0 || !batches1) return null;
    const commands = commandsBetween(commands0, commands1);
    const batches = batches1.batches - batches0.batches;
    const events = batches1.events - batches0.events;
    const total = totalCommands(commands);
    const per = (n: number, d: number) => (d > 0 ? n / d : null);
    return { batches, events, writes: batches1.writes - batches0.writes, eventsPerBatch: per(events, batches), writesPerBatch: per(batches1.writes - batches0.writes, batches), commands, commandsPerBatch: per(total, batches), commandsPerEvent: per(total, events) };
  };
}

const describeWriteWork = (w: WriteEngineWork | null | undefined) =>
  w ? `${w.eventsPerBatch?.toFixed(1) ?? "-"} events (${w.writesPerBatch?.toFixed(1) ?? "-"} calls) per batch, ${w.commandsPerBatch?.toFixed(1) ?? "-"} engine commands per batch (${Object.entries(w.commands).map(([k, n]) => `${k} ${formatInteger(n)}`).join(", ")})` : "batches not measured";

// ---------------------------------------------------------------------------------------------
// Raw insert capacity: the documents as the service stores them (raw-documents.ts)

/** EVENT_INDEXES plus whatever else the service created on the collection (its key indexes). */
async function serviceIndexes(db: Db, collection: string): Promise<IndexDescription[]> {
  const indexes: IndexDescription[] = [...EVENT_INDEXES];
  const names = new Set(indexes.map((i) => i.name));
  const existing = await db.collection(collection).listIndexes().toArray().catch(() => [] as Document[]);
  for (const ix of existing) {
    if (ix.name === "_id_" || names.has(ix.name)) continue;
    const description: IndexDescription = { key: ix.key, name: ix.name };
    if (ix.unique) description.unique = true;
    if (ix.sparse) description.sparse = true;
    if (ix.partialFilterExpression) description.partialFilterExpression = ix.partialFilterExpression;
    indexes.push(description);
  }
  return indexes;
}

interface RawInsertResult {
  docs: number;
  writers: number;
  batchSize: number;
  seconds: number;
  docsPerSecond: number;
  indexes: { clicks: string[]; impressions: string[] };
}

/** Plain parallel insertMany of pre-generated documents into a scratch database. */
async function measureRawInsert(mongo: MongoClient, scratchName: string, serviceDb: Db, o: BenchOptions, now: number, signal: AbortSignal): Promise<RawInsertResult> {
  const docs = Math.min(RAW_INSERT_MAX_DOCS, Math.max(o.events, 4 * BATCH_SIZE));
  const batches: { clicks: Document[]; impressions: Document[] }[] = [];
  for (const chunk of chunks(generateEvents({ events: docs, days: o.days, users: o.users, seed: o.seed + 1, idPrefix: "raw-", now }), BATCH_SIZE)) {
    const batch = { clicks: [] as Document[], impressions: [] as Document[] };
    for (const e of chunk) (e.kind === "click" ? batch.clicks : batch.impressions).push(toDocument(e));
    batches.push(batch);
  }
  const db = mongo.db(scratchName);
  await db.dropDatabase();
  const [clickIndexes, impressionIndexes] = await Promise.all([serviceIndexes(serviceDb, CLICKS), serviceIndexes(serviceDb, IMPRESSIONS)]);
  await Promise.all([db.collection(CLICKS).createIndexes(clickIndexes), db.collection(IMPRESSIONS).createIndexes(impressionIndexes)]);

  const progress = createProgress({ label: "raw insert", total: docs, unit: "docs" });
  let next = 0;
  let written = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: RAW_WRITERS }, async () => {
      for (let i = next++; i < batches.length && !signal.aborted; i = next++) {
        const { clicks, impressions } = batches[i]!;
        await Promise.all([
          clicks.length > 0 ? db.collection(CLICKS).insertMany(clicks, { ordered: false }) : undefined,
          impressions.length > 0 ? db.collection(IMPRESSIONS).insertMany(impressions, { ordered: false }) : undefined,
        ]);
        written += clicks.length + impressions.length;
        progress.update(written);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  progress.finish();
  if (signal.aborted) throw new Error("raw insert stopped");
  await db.dropDatabase();
  return {
    docs,
    writers: RAW_WRITERS,
    batchSize: BATCH_SIZE,
    seconds,
    docsPerSecond: docs / seconds,
    indexes: { clicks: clickIndexes.map((i) => String(i.name)), impressions: impressionIndexes.map((i) => String(i.name)) },
  };
}


interface RawQueryResult {
  name: string;
  calls: number;
  errors: number;
  firstError?: string;
  latencyMs: LatencySummary | null;
}

/**
 * Raw calls per shape: `iterations`, but a user-filtered shape's raw read (one user's events, as
 * cheap as the service's) as often as the service's timed calls, so that both medians are over
 * many random users rather than a handful.
 */
const rawCallsOf = (shape: MetricShape, iterations: number, serviceIterations: number) => (shape.filter === "user" ? serviceIterations : iterations);

async function measureRawQueries(db: Db, o: BenchOptions, iterations: number, signal: AbortSignal): Promise<RawQueryResult[]> {
  const params = new ParamSource(o.users, o.seed, 11);
  const progress = createProgress({ label: "raw queries", total: METRIC_SHAPES.reduce((n, shape) => n + rawCallsOf(shape, iterations, o.iterations) + 1, 0), unit: "calls" });
  let done = 0;
  const results: RawQueryResult[] = [];
  for (const shape of METRIC_SHAPES) {
    const calls = rawCallsOf(shape, iterations, o.iterations);
    const query = RAW_QUERIES[shape.rpc];
    await query(db, params.next(shape)).catch(() => undefined); // warm-up
    progress.update(++done);
    const samples: number[] = [];
    let errors = 0;
    let firstError: string | undefined;
    for (let i = 0; i < calls && !signal.aborted; i++) {
      const p = params.next(shape);
      const t0 = performance.now();
      try {
        await query(db, p);
        samples.push(performance.now() - t0);
      } catch (error) {
        errors++;
        firstError ??= (error as Error).message;
      }
      progress.update(++done);
    }
    if (signal.aborted) throw new Error("raw queries stopped");
    const result: RawQueryResult = { name: shape.name, calls, errors, ...(firstError === undefined ? {} : { firstError }), latencyMs: summarize(samples) };
    results.push(result);
    if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
    log(`raw ${describeShape(result)}`);
  }
  progress.finish();
  return results;
}

/** What GetInterleavingResult answers over the whole dataset, against the generator's count and the raw aggregation. */
export interface InterleavingCheck {
  rankerA: string;
  rankerB: string;
  impressions: number;
  /** Interleaved searches generated. */
  expected: number;
  winsA: number;
  winsB: number;
  ties: number;
  users: number;
  delta: number | null;
  pValue: number | null;
  preferred: string;
  /** The raw aggregation's counts (null with --skip-raw), and whether they are the service's. */
  raw: RawInterleaving | null;
  rawAgrees: boolean | null;
  ok: boolean;
}

async function verifyInterleaving(client: ClickAnalyticsClient, db: Db | undefined, days: number, expected: number): Promise<InterleavingCheck> {
  const [rankerA, rankerB] = INTERLEAVED_RANKERS;
  const x = await client.getInterleavingResult({ days, rankerA, rankerB });
  const raw = db === undefined ? null : await rawInterleaving(db, { days });
  const counts = { impressions: Number(x.impressions), winsA: Number(x.winsA), winsB: Number(x.winsB), ties: Number(x.ties), users: Number(x.users) };
  const perUser = [Number(x.usersPreferringA), Number(x.usersPreferringB), Number(x.usersTied)];
  const rawAgrees = raw === null ? null : Object.entries(counts).every(([k, v]) => raw[k as keyof typeof counts] === v) && [raw.usersPreferringA, raw.usersPreferringB, raw.usersTied].every((v, i) => v === perUser[i]);
  return { rankerA, rankerB, ...counts, expected, delta: x.delta?.value ?? null, pValue: x.pValue ?? null, preferred: x.preferred, raw, rawAgrees, ok: counts.impressions === expected && rawAgrees !== false };
}

// ---------------------------------------------------------------------------------------------
// The metrics client process

/** Runs bench-client.js; `onShape` sees each shape's result as soon as it is measured. */
async function runMetricsClient(
  address: string,
  mongoUri: string,
  o: BenchOptions,
  warmup: number,
  pids: { server: number; engine: number } | undefined,
  track: (child: ChildProcess | undefined) => void,
  onShape: (shape: ShapeResult) => void,
): Promise<ClientReport> {
  const args = [CLIENT_MAIN, "--address", address, "--iterations", String(o.iterations), "--warmup", String(warmup), "--users", String(o.users), "--seed", String(o.seed), "--mongodb-uri", mongoUri];
  if (pids) args.push("--server-pid", String(pids.server), "--engine-pid", String(pids.engine));
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
  track(child);
  let report: ClientReport | undefined;
  const lines = createInterface({ input: child.stdout! });
  lines.on("line", (line) => {
    const message = JSON.parse(line) as { shape: ShapeResult } | ClientReport;
    if ("shape" in message) onShape(message.shape);
    else report = message;
  });
  const [[code, signal]] = (await Promise.all([once(child, "exit"), once(lines, "close")])) as [[number | null, NodeJS.Signals | null], unknown];
  track(undefined);
  if (code !== 0 || report === undefined) throw new Error(`bench-client exited with code ${code} (signal ${signal})`);
  return report;
}

// ---------------------------------------------------------------------------------------------
// Unary LogClick

interface UnaryResult {
  rpc: "LogClick";
  clients: number;
  seconds: number;
  calls: number;
  errors: number;
  firstError?: string;
  callsPerSecond: number;
  latencyMs: LatencySummary | null;
  /** CPU time per call of the server, the engine and this process (the 64 callers), during the run. */
  cpuMicrosPerCall?: { server: number | null; engine: number | null; callers: number };
  /** Batches the server committed during the run, their size, and the engine's commands per batch (null: not measured). */
  engineWork?: WriteEngineWork | null;
}

export interface WatchResult {
  streams: number;
  /** Distinct (window, variant) questions among the streams. */
  questions: number;
  intervalSeconds: number;
  seconds: number;
  snapshots: number;
  errors: number;
  firstError?: string;
  /** Time between consecutive snapshots of a stream, over every stream. */
  gapMs: LatencySummary | null;
  /** The highest of the streams' own p99 gaps: "every stream" in one number. */
  worstStreamGapP99Ms: number | null;
  /** From opening a stream to its first snapshot. */
  firstSnapshotMs: LatencySummary | null;
  /** GetCtr over 30 days from another connection, before the streams open and while they run. */
  getCtrIdleMs: LatencySummary | null;
  getCtrDuringMs: LatencySummary | null;
}

const WATCH_CHANNELS = 10;
const WATCH_GETCTR_CALLS = 100;

/**
 * `o.watchStreams` WatchMetrics streams at a 1 s interval over 10 distinct questions (1, 7 and 30
 * days, each unfiltered and per variant, and 14 days), spread over 10 connections, for
 * `o.watchSeconds`; GetCtr over 30 days is timed from its own connection before and during.
 */
async function measureWatch(address: string, o: BenchOptions, register: (c: ClickAnalyticsClient) => void, signal: AbortSignal): Promise<WatchResult> {
  const connect = () => {
    const c = createClickAnalyticsClient(address, { defaultTimeoutMs: 30_000, channelOptions: { "grpc.use_local_subchannel_pool": 1 } });
    register(c);
    return c;
  };
  const reader = connect();
  const channels = Array.from({ length: WATCH_CHANNELS }, connect);
  await Promise.all([reader, ...channels].map((c) => c.waitForReady(30_000)));
  const timeGetCtr = async () => {
    const samples: number[] = [];
    for (let i = 0; i < WATCH_GETCTR_CALLS && !signal.aborted; i++) {
      const t = performance.now();
      await reader.getCtr({ days: 30 });
      samples.push(performance.now() - t);
    }
    return summarize(samples);
  };
  await timeGetCtr(); // warm: the same state the streams' numbers start from
  const getCtrIdleMs = await timeGetCtr();

  const questions = [1, 7, 30].flatMap((days) => [{ days }, ...VARIANTS.map((variant) => ({ days, variant }))]);
  questions.push({ days: 14 });
  log(`watch: ${o.watchStreams} WatchMetrics streams at 1 s over ${questions.length} questions for ${o.watchSeconds} s`);
  const stop = new AbortController();
  setMaxListeners(0, stop.signal); // one listener per stream
  const onAbort = () => stop.abort();
  signal.addEventListener("abort", onAbort);
  let errors = 0;
  let firstError: string | undefined;
  const started = performance.now();
  const streams = Array.from({ length: o.watchStreams }, (_, i) => {
    const seen: number[] = [];
    const opened = performance.now();
    const done = (async () => {
      try {
        for await (const _ of channels[i % WATCH_CHANNELS]!.watchMetrics({ ...questions[i % questions.length]!, intervalSeconds: 1 }, { signal: stop.signal })) seen.push(performance.now());
      } catch (error) {
        if (!stop.signal.aborted) {
          errors++;
          firstError ??= (error as Error).message;
        }
      }
    })();
    return { seen, opened, done };
  });
  await sleep(Math.min(3_000, (o.watchSeconds * 1000) / 3)); // every stream has its first snapshot
  const getCtrDuringMs = await timeGetCtr();
  await sleep(Math.max(0, started + o.watchSeconds * 1000 - performance.now()));
  const seconds = (performance.now() - started) / 1000;
  stop.abort();
  signal.removeEventListener("abort", onAbort);
  await Promise.all(streams.map((x) => x.done));
  const gapsOf = (seen: number[]) => seen.slice(1).map((t, k) => t - seen[k]!);
  const perStreamP99 = streams.map((x) => summarize(gapsOf(x.seen))?.p99).filter((x): x is number => x !== undefined);
  return {
    streams: o.watchStreams,
    questions: questions.length,
    intervalSeconds: 1,
    seconds,
    snapshots: streams.reduce((n, x) => n + x.seen.length, 0),
    errors,
    ...(firstError === undefined ? {} : { firstError }),
    gapMs: summarize(streams.flatMap((x) => gapsOf(x.seen))),
    worstStreamGapP99Ms: perStreamP99.length > 0 ? Math.max(...perStreamP99) : null,
    firstSnapshotMs: summarize(streams.flatMap((x) => (x.seen.length > 0 ? [x.seen[0]! - x.opened] : []))),
    getCtrIdleMs,
    getCtrDuringMs,
  };
}

async function measureUnary(
  address: string,
  o: BenchOptions,
  searches: number,
  idPrefix: string,
  runTag: string,
  register: (c: ClickAnalyticsClient) => void,
  signal: AbortSignal,
): Promise<UnaryResult> {
  // One connection per client (no shared subchannel pool), as 64 separate callers would have.
  const clients = Array.from({ length: UNARY_CLIENTS }, () => createClickAnalyticsClient(address, { defaultTimeoutMs: 30_000, channelOptions: { "grpc.use_local_subchannel_pool": 1 } }));
  clients.forEach(register);
  await Promise.all(clients.map((c) => c.waitForReady(30_000)));
  // One untimed call each: connects the channel that event-id calls take (the retrying one).
  await Promise.all(
    clients.map((c, k) => c.logClick({ eventId: `unary-${runTag}-${k}-warmup`, userId: userIdOf(0), productId: "prod_0", rank: 0, searchQuery: "warm-up", variant: variantOf(userIdOf(0)) }).catch(() => undefined)),
  );
  const vocabulary = buildVocabulary(Math.min(DEFAULT_QUERIES, 2_000), o.seed);
  const samples: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  log(`unary LogClick: ${UNARY_CLIENTS} clients for ${o.unarySeconds} s`);
  const started = performance.now();
  const deadline = started + o.unarySeconds * 1000;
  await Promise.all(
    clients.map(async (client, k) => {
      const rng = new Rng(o.seed, 100 + k);
      for (let i = 0; performance.now() < deadline && !signal.aborted; i++) {
        const userId = userIdOf(rng.int(o.users));
        const searchQuery = vocabulary[rng.int(vocabulary.length)]!;
        const rank = rng.geometric(0.42);
        const request = {
          eventId: `unary-${runTag}-${k}-${i}`,
          impressionId: searches > 0 ? `${idPrefix}q${rng.int(searches)}` : "",
          userId,
          productId: `prod_${(fnv1a(searchQuery) + rank * 7_919) % 100_000}`,
          rank,
          searchQuery,
          variant: variantOf(userId),
          responseTimeMs: Math.round(rng.logNormal(60, 0.45) * 100) / 100,
        };
        const t0 = performance.now();
        try {
          await client.logClick(request);
          samples.push(performance.now() - t0);
        } catch (error) {
          errors++;
          firstError ??= (error as Error).message;
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  for (const c of clients) c.close();
  return {
    rpc: "LogClick",
    clients: UNARY_CLIENTS,
    seconds,
    calls: samples.length,
    errors,
    ...(firstError === undefined ? {} : { firstError }),
    callsPerSecond: samples.length / seconds,
    latencyMs: summarize(samples),
  };
}

// ---------------------------------------------------------------------------------------------
// Output

type Align = "l" | "r";

function table(rows: readonly (readonly string[])[], align: readonly Align[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => (align[i] === "r" ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

const ms = (x: number | undefined) => (x === undefined ? "-" : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : formatInteger(x));
const mb = (bytes: number) => (bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(0)} MiB`);
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

export interface BenchReport {
  tool: "click-analytics bench";
  /** false when the run failed part-way (see `error`): the figures are those measured until then. */
  complete: boolean;
  error?: string;
  startedAt: string;
  finishedAt: string;
  seconds: number;
  machine: {
    cpus: number;
    cpuModel: string;
    memoryBytes: number;
    node: string;
    platform: string;
    loadAverageAtStart: number[];
    loadAverageAtEnd: number[];
    /** CPU ms of one fixed piece of work (speedProbeMs) at the start and at the end: higher is a slower machine. */
    speedProbeMs: { atStart: number; atEnd: number | null };
  };
  options: BenchOptions;
  storage: { engine: "embedded" | "external"; dataDir: string | null; database: string };
  /** Node flags the server ran with (package.json's start script). */
  serverNodeFlags: string[];
  dataset: {
    events: number;
    impressions: number;
    clicks: number;
    clickedSearches: number;
    multiClickSearches: number;
    noResultsSearches: number;
    interleavedSearches: number;
    interleavedPairSearches: number;
    activeUsers: number;
    clickedShare: number;
    noResultsShare: number;
    ctr: number;
    variants: Record<string, { impressions: number; clicks: number; clickedSearches: number }>;
    windowStart: string;
    windowEnd: string;
  };
  ingest: {
    rpc: "StreamEvents";
    streams: number;
    batchSize: number;
    events: number;
    batches: number;
    accepted: number;
    duplicates: number;
    rejected: number;
    seconds: number;
    eventsPerSecond: number;
    /** The rate over each tenth of the load, in order: a decline shows at a glance. */
    perTenth: { tenth: number; eventsPerSecond: number }[];
    /** The rate over the first and the last 100,000 events (loads of at least 200,000). */
    edges?: { events: number; firstEventsPerSecond: number; lastEventsPerSecond: number; lastToFirst: number };
    /** CPU time per event stored, during the load: where the work goes (null: not sampled, e.g. an external MongoDB). */
    cpuMicrosPerEvent: { server: number | null; engine: number | null };
    /** Batches the server committed during the load, their size, and the engine's commands per batch (null: not measured). */
    engineWork: WriteEngineWork | null;
  };
  verify: { days: number; clicks: number; impressions: number; total: number; expected: number; storedDocuments: number; interleaving: InterleavingCheck; ok: boolean };
  rawInsert: (RawInsertResult & { serviceToRawRatio: number; engineCpuMicrosPerDoc: number | null }) | null;
  unary: UnaryResult | null;
  watch: WatchResult | null;
  metrics: {
    iterations: number;
    warmup: number;
    rawIterations: number | null;
    shapes: {
      name: string;
      rpc: MetricRpc;
      calls: number;
      errors: number;
      firstError?: string;
      latencyMs: LatencySummary | null;
      /** The engine's data commands per timed (warm) call, and by name over the shape's timed calls (see engine-commands.ts). */
      engineCommandsPerCall: number | null;
      engineCommands: CommandCounts | null;
      /** Server and engine CPU per timed call and per warm-up call (bench-client.ts, ShapeResult); null with an external engine. */
      cpuMicrosPerCall: ShapeResult["cpuMicrosPerCall"] | null;
      raw: { calls: number; errors: number; firstError?: string; latencyMs: LatencySummary | null } | null;
      /** raw p50 / service p50: how many times faster the service answers than the raw aggregation. */
      speedup: number | null;
    }[];
  };
  memory: { sampleIntervalMs: number; server: MemoryFigures | null; engine: MemoryFigures | null };
  serverLog: ServerLog;
}

function printReport(r: BenchReport): string {
  const out: string[] = [];
  const d = r.dataset;
  out.push(`ClickAnalytics bench: ${formatInteger(d.events)} events over ${r.options.days} days, ${formatInteger(r.options.users)} users, seed ${r.options.seed}`);
  const load = (l: number[]) => l.map((x) => x.toFixed(1)).join(" ");
  out.push(`machine: ${r.machine.cpus} x ${r.machine.cpuModel}, ${mb(r.machine.memoryBytes)}, Node ${r.machine.node}, ${r.machine.platform}; storage: ${r.storage.engine} MongoDB`);
  out.push(`load average: ${load(r.machine.loadAverageAtStart)} at start, ${load(r.machine.loadAverageAtEnd)} at the end`);
  const probe = r.machine.speedProbeMs;
  out.push(`speed probe: ${probe.atStart.toFixed(1)} ms of CPU at start, ${probe.atEnd?.toFixed(1) ?? "-"} ms at the end (the same fixed work; higher is slower)`);
  out.push("");
  out.push(
    `dataset: ${formatInteger(d.impressions)} searches + ${formatInteger(d.clicks)} clicks; ${pct(d.clickedShare)} of searches clicked (${formatInteger(d.multiClickSearches)} with 2+), ` +
      `${pct(d.noResultsShare)} no results, ${formatInteger(d.interleavedSearches)} interleaved (${INTERLEAVED_RANKERS.join(" vs ")}), CTR ${d.ctr.toFixed(3)}, ${formatInteger(d.activeUsers)} active users`,
  );
  const v = r.verify;
  const vi = v.interleaving;
  const countsOk = v.total === v.expected && v.storedDocuments === v.expected && v.clicks === d.clicks;
  out.push(
    `verified: GetCtr over ${v.days} days = ${formatInteger(v.clicks)} clicks + ${formatInteger(v.impressions)} impressions = ${formatInteger(v.total)} ` +
      `(generated ${formatInteger(v.expected)}, documents stored ${formatInteger(v.storedDocuments)}): ${countsOk ? "OK" : "MISMATCH"}`,
  );
  out.push(
    `verified: GetInterleavingResult over ${v.days} days = ${formatInteger(vi.impressions)} interleaved searches showing both rankers (generated ${formatInteger(vi.expected)}); ` +
      `wins ${vi.rankerA} ${formatInteger(vi.winsA)}, ${vi.rankerB} ${formatInteger(vi.winsB)}, ties ${formatInteger(vi.ties)}, ` +
      `delta ${vi.delta === null ? "-" : vi.delta.toFixed(4)} (p ${vi.pValue === null ? "-" : vi.pValue.toPrecision(2)}), preferred ${vi.preferred || "neither"}` +
      `${vi.rawAgrees === null ? "" : vi.rawAgrees ? "; the raw aggregation counts the same" : "; the raw aggregation counts otherwise"}: ${vi.ok ? "OK" : "MISMATCH"}`,
  );
  out.push("");

  const writes: string[][] = [["writes", "count", "seconds", "rate", "p50 ms", "p99 ms", ""]];
  writes.push([`StreamEvents ingest (${r.ingest.streams} streams)`, formatInteger(r.ingest.events), r.ingest.seconds.toFixed(1), `${formatInteger(r.ingest.eventsPerSecond)} events/s`, "", "", ""]);
  const cpu = r.ingest.cpuMicrosPerEvent;
  if (cpu.server !== null) writes.push([`  CPU per event: server ${cpu.server.toFixed(1)} µs${cpu.engine === null ? "" : `, engine ${cpu.engine.toFixed(1)} µs`}`, "", "", "", "", "", ""]);
  if (r.ingest.engineWork) writes.push([`  ${describeWriteWork(r.ingest.engineWork)}`, "", "", "", "", "", ""]);
  const edges = r.ingest.edges;
  if (edges) writes.push([`  first / last ${formatInteger(edges.events)} events`, "", "", `${formatInteger(edges.firstEventsPerSecond)} / ${formatInteger(edges.lastEventsPerSecond)} events/s`, "", "", `last/first ${edges.lastToFirst.toFixed(2)}`]);
  for (const x of r.ingest.perTenth) writes.push([`  tenth ${x.tenth} of the load`, formatInteger(r.ingest.events / 10), "", `${formatInteger(x.eventsPerSecond)} events/s`, "", "", ""]);
  if (r.rawInsert) {
    writes.push([`raw insertMany (${r.rawInsert.writers} writers x ${formatInteger(r.rawInsert.batchSize)})`, formatInteger(r.rawInsert.docs), r.rawInsert.seconds.toFixed(1), `${formatInteger(r.rawInsert.docsPerSecond)} docs/s`, "", "", `service/raw ${r.rawInsert.serviceToRawRatio.toFixed(2)}${r.rawInsert.engineCpuMicrosPerDoc === null ? "" : `; engine CPU ${r.rawInsert.engineCpuMicrosPerDoc.toFixed(1)} µs/doc`}`]);
  }
  if (r.unary) {
    const u = r.unary;
    writes.push([`unary LogClick (${u.clients} clients)`, formatInteger(u.calls), u.seconds.toFixed(1), `${formatInteger(u.callsPerSecond)} calls/s`, ms(u.latencyMs?.p50), ms(u.latencyMs?.p99), u.errors > 0 ? `${u.errors} errors` : ""]);
    const cpu = u.cpuMicrosPerCall;
    if (cpu) writes.push([`  CPU per call: server ${cpu.server?.toFixed(0) ?? "-"} µs, engine ${cpu.engine?.toFixed(0) ?? "-"} µs, callers ${cpu.callers.toFixed(0)} µs`, "", "", "", "", "", ""]);
    if (u.engineWork) writes.push([`  ${describeWriteWork(u.engineWork)}`, "", "", "", "", "", ""]);
  }
  out.push(table(writes, ["l", "r", "r", "r", "r", "r", "l"]));
  out.push("");

  if (r.watch) {
    const w = r.watch;
    out.push(
      `live views: ${formatInteger(w.streams)} WatchMetrics streams at ${w.intervalSeconds} s over ${w.questions} questions for ${w.seconds.toFixed(0)} s: ${formatInteger(w.snapshots)} snapshots, ` +
        `gap p50 ${ms(w.gapMs?.p50)} / p99 ${ms(w.gapMs?.p99)} ms (worst stream's p99 ${ms(w.worstStreamGapP99Ms ?? undefined)} ms), first snapshot p99 ${ms(w.firstSnapshotMs?.p99)} ms; ` +
        `GetCtr 30d p50 ${ms(w.getCtrIdleMs?.p50)} ms idle, ${ms(w.getCtrDuringMs?.p50)} ms during${w.errors > 0 ? `; ${w.errors} stream errors: ${w.firstError}` : ""}`,
    );
    out.push("");
  }

  const m = r.metrics;
  const rawLabel = m.rawIterations === null ? "raw skipped" : `raw x${m.rawIterations}, user-filtered x${m.iterations}`;
  const rows: string[][] = [[`metrics (${m.iterations} sequential calls each)`, "p50 ms", "p95 ms", "p99 ms", "raw p50 ms", "speed-up", "cmds/call", ""]];
  for (const s of m.shapes) {
    const notes = [s.errors > 0 ? `${s.errors} errors` : "", s.raw && s.raw.errors > 0 ? `${s.raw.errors} raw errors` : ""].filter(Boolean).join(", ");
    rows.push([s.name, ms(s.latencyMs?.p50), ms(s.latencyMs?.p95), ms(s.latencyMs?.p99), ms(s.raw?.latencyMs?.p50), s.speedup === null ? "-" : `${s.speedup >= 10 ? s.speedup.toFixed(0) : s.speedup.toFixed(1)}x`, s.engineCommandsPerCall === null ? "-" : s.engineCommandsPerCall.toFixed(1), notes]);
  }
  out.push(table(rows, ["l", "r", "r", "r", "r", "r", "r", "l"]));
  out.push(`(speed-up = raw p50 / service p50, ${rawLabel}; calls issued one at a time from a separate process; cmds/call = the engine's data commands per warm call)`);
  out.push("");

  const mem: string[][] = [["memory (VmRSS sampled every 200 ms)", "peak RSS", "VmHWM", "by phase"]];
  for (const [name, f] of [["server process", r.memory.server], ["MongoDB engine", r.memory.engine]] as const) {
    if (!f) continue;
    mem.push([`${name} (pid ${f.pid})`, mb(f.peakRssBytes), f.vmHwmBytes ? mb(f.vmHwmBytes) : "-", Object.entries(f.peakRssByPhaseBytes).map(([phase, b]) => `${phase} ${mb(b)}`).join(", ")]);
  }
  out.push(table(mem, ["l", "r", "r", "l"]));
  const logged = Object.entries(r.serverLog.messages);
  if (logged.length > 0) out.push(`\nserver log: ${r.serverLog.warnings} warning(s), ${r.serverLog.errors} error(s): ${logged.map(([m, n]) => `${m} (x${n})`).join("; ")}`);
  out.push(`\ntotal ${formatDuration(r.seconds)}`);
  return out.join("\n");
}

/**
 * Runs `load` while polling the stored event count every 100 ms; `times[k]` is when `marks[k]`
 * events were stored (the start for a mark of 0; marks ascending; the load's end at the latest).
 */
async function timeMarks<T>(db: Db, marks: readonly number[], load: () => Promise<T>): Promise<{ result: T; times: number[] }> {
  const started = performance.now();
  const times: number[] = [];
  const passed = (stored: number, at: number) => {
    while (times.length < marks.length && stored >= marks[times.length]!) times.push(at);
  };
  passed(0, started);
  let polling = true;
  const poll = (async () => {
    while (polling && times.length < marks.length) {
      const stored = (await db.collection(CLICKS).estimatedDocumentCount()) + (await db.collection(IMPRESSIONS).estimatedDocumentCount());
      passed(stored, performance.now());
      await sleep(100);
    }
  })();
  try {
    return { result: await load(), times };
  } finally {
    polling = false;
    await poll.catch(() => undefined);
    // Whatever the last poll missed was stored by the time the load returned.
    passed(Infinity, performance.now());
  }
}

/** How many events the first and last stretch of the load are (issue: "the last 100,000 vs the first"). */
const EDGE_STRETCH = 100_000;

// ---------------------------------------------------------------------------------------------
// The run

interface Resources {
  /** Stops everything in flight (closing a channel does not): at cleanup, or when the run fails. */
  abort: AbortController;
  /** Why the run cannot go on (the engine or the server died). */
  fatal?: string;
  tempDir?: string;
  engine?: EmbeddedMongo;
  enginePending?: Promise<EmbeddedMongo>;
  server?: ServerHandle;
  mongo?: MongoClient;
  child?: ChildProcess;
  clients: ClickAnalyticsClient[];
  sampler?: RssSampler;
  /** Databases to drop at exit (on an external MongoDB, or a kept data directory). */
  drop: string[];
  /** The figures so far: with --json they are written even when the run fails part-way. */
  report: Partial<BenchReport>;
  t0: number;
}

/** The run cannot go on: say why once, stop what is in flight. */
function fail(res: Resources, reason: string): void {
  if (res.fatal !== undefined || res.abort.signal.aborted) return;
  res.fatal = reason;
  if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
  log(`${reason}: stopping the run`);
  res.abort.abort();
  if (res.child && res.child.exitCode === null && res.child.signalCode === null) res.child.kill("SIGTERM");
}

/** Between steps: a failure elsewhere (or an interrupt) ends the run here. */
function checkpoint(res: Resources): void {
  if (res.fatal !== undefined) throw new Error(res.fatal);
  if (res.abort.signal.aborted) throw new Error("interrupted");
}

async function cleanUp(res: Resources): Promise<void> {
  const step = async (what: string, f: () => unknown) => {
    try {
      await f();
    } catch (error) {
      log(`cleanup: ${what}: ${(error as Error).message}`);
    }
  };
  res.abort.abort();
  await step("sampler", () => res.sampler?.stop());
  for (const c of res.clients.splice(0)) await step("client", () => c.close());
  if (res.child && res.child.exitCode === null && res.child.signalCode === null) res.child.kill("SIGTERM");
  await step("server", () => res.server?.stop());
  if (res.mongo) {
    // Quick: a dead engine must not hold the exit up for a server-selection timeout.
    for (const name of res.drop) await step(`drop ${name}`, () => Promise.race([res.mongo?.db(name).dropDatabase(), sleep(5_000)]));
    await step("mongo client", () => Promise.race([res.mongo?.close(), sleep(5_000)]));
  }
  if (!res.engine && res.enginePending) res.engine = await Promise.race([res.enginePending.catch(() => undefined), sleep(60_000).then(() => undefined)]);
  await step("engine", () => res.engine?.stop());
  if (res.tempDir) await step("temp dir", () => rm(res.tempDir!, { recursive: true, force: true }));
}

/**
 * CPU ms this process spends on one fixed piece of arithmetic, the least of three tries: the same
 * code's CPU per event or per call moved 1.3–2.3× between runs an hour apart on the shared
 * machine, with no other work running; this says how fast the machine was at each end of a run.
 */
let probeSink = 0; // what the probe computed, kept so that its work cannot be optimised away

function speedProbeMs(): number {
  let best = Infinity;
  for (let attempt = 0; attempt < 3; attempt++) {
    const before = process.cpuUsage();
    const values = new Float64Array(1 << 16);
    let x = 1;
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < values.length; i++) {
        x = (x * 1_103_515_245 + 12_345) % 2_147_483_648;
        values[i] = values[i]! + Math.sqrt(x / 2_147_483_648 + i);
      }
    }
    probeSink += values[7]!;
    const used = process.cpuUsage(before);
    best = Math.min(best, (used.user + used.system) / 1000);
  }
  return best;
}

/** Fills in what is known at the end (or at a failure): times, load, memory, the server's log. */
function finishReport(res: Resources): void {
  const r = res.report;
  r.finishedAt = new Date().toISOString();
  r.seconds = (performance.now() - res.t0) / 1000;
  if (r.machine) {
    r.machine.loadAverageAtEnd = os.loadavg();
    r.machine.speedProbeMs.atEnd = speedProbeMs();
  }
  r.memory = { sampleIntervalMs: RSS_INTERVAL_MS, server: res.sampler?.figures("server") ?? null, engine: res.sampler?.figures("engine") ?? null };
  if (res.server) r.serverLog = res.server.log;
}

async function run(o: BenchOptions, res: Resources): Promise<{ report: BenchReport; ok: boolean }> {
  const r = res.report;
  const runTag = `${Date.now().toString(36)}${Math.floor(Math.random() * 36 ** 4).toString(36)}`;
  const dbName = `bench_${runTag}`;
  const scratchName = `bench_raw_${runTag}`;
  const idPrefix = `s${o.seed}-`;
  const sampler = (res.sampler = new RssSampler());
  const cpus = os.cpus();
  r.tool = "click-analytics bench";
  r.complete = false;
  r.startedAt = new Date().toISOString();
  r.machine = {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? "unknown",
    memoryBytes: os.totalmem(),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    // Other work on the machine skews every figure; the load average says how much there was.
    loadAverageAtStart: os.loadavg(),
    loadAverageAtEnd: [],
    speedProbeMs: { atStart: speedProbeMs(), atEnd: null },
  };
  r.options = o;

  // Storage
  let mongoUri: string;
  let dataDir: string | null = null;
  if (o.mongodbUri) {
    mongoUri = o.mongodbUri;
    res.drop.push(dbName, scratchName);
  } else {
    dataDir = o.dataDir ? path.resolve(o.dataDir) : (res.tempDir = await mkdtemp(path.join(os.tmpdir(), "click-analytics-bench-")));
    if (o.dataDir) res.drop.push(scratchName);
    log(`starting the embedded MongoDB engine in ${dataDir}`);
    res.enginePending = startEmbeddedMongo({ dbPath: dataDir });
    res.engine = await res.enginePending;
    // As `npm start` connects to its embedded engine: through its Unix socket.
    mongoUri = res.engine.socketUri;
    log(`engine pid ${res.engine.pid} at ${mongoUri}`);
    sampler.track("engine", res.engine.pid, () => fail(res, `the MongoDB engine (pid ${res.engine?.pid}) exited unexpectedly during ${sampler.phase}`));
  }
  r.storage = { engine: o.mongodbUri ? "external" : "embedded", dataDir, database: dbName };
  r.serverNodeFlags = SERVER_NODE_FLAGS;
  res.mongo = new MongoClient(mongoUri, { serverSelectionTimeoutMS: 30_000 });
  await res.mongo.connect();

  // Server
  log(`starting the server (database ${dbName})`);
  res.server = await startServerProcess(mongoUri, dbName, (reason) => fail(res, `${reason} during ${sampler.phase}`), o.serverCpuProfDir);
  log(`server pid ${res.server.pid} listening on ${res.server.address}`);
  sampler.track("server", res.server.pid);
  sampler.start();
  const client = createClickAnalyticsClient(res.server.address, { defaultTimeoutMs: 120_000 });
  res.clients.push(client);
  await client.waitForReady(30_000);

  // 1-2. Generate and load
  sampler.phase = "load";
  const now = Date.now();
  const progress = createProgress({ label: "ingest", total: o.events, unit: "events" });
  // When each tenth of the load was stored: the engine's document count, polled. (When the
  // streams had sent it says little: the server reads ahead of what it has written.) The rate per
  // tenth shows whether ingest slows down as the collections grow.
  const serviceDb = res.mongo.db(dbName);
  // Marks: every tenth, and the first and last EDGE_STRETCH events (when the load has room for both).
  const tenthMarks = Array.from({ length: 11 }, (_, k) => (o.events * k) / 10);
  const edgeMarks = o.events >= 2 * EDGE_STRETCH ? [EDGE_STRETCH, o.events - EDGE_STRETCH] : [];
  const marks = [...tenthMarks, ...edgeMarks].sort((a, b) => a - b);
  const loadWork = await countWriteWork(res.mongo.db("admin"), res.server.metricsPort);
  const tenthAt = await timeMarks(serviceDb, marks, async () => {
    const load = await loadDataset(client, { events: o.events, days: o.days, users: o.users, seed: o.seed, idPrefix, now, streams: o.streams, signal: res.abort.signal }, (p) => progress.update(p.sent));
    progress.finish();
    return load;
  });
  const load = tenthAt.result;
  const timeAt = (mark: number) => tenthAt.times[marks.indexOf(mark)]!;
  await sampler.settle(); // credits the load's last CPU time to the load
  const loadEngineWork = await loadWork();
  const cpuPerEvent = (name: string) => {
    const seconds = sampler.figures(name)?.cpuSecondsByPhase.load;
    return seconds === undefined ? null : (seconds * 1e6) / o.events;
  };
  checkpoint(res);
  const s = load.stats;
  r.dataset = {
    events: s.events,
    impressions: s.impressions,
    clicks: s.clicks,
    clickedSearches: s.clickedSearches,
    multiClickSearches: s.multiClickSearches,
    noResultsSearches: s.noResultsSearches,
    interleavedSearches: s.interleavedSearches,
    interleavedPairSearches: s.interleavedPairSearches,
    activeUsers: s.activeUsers,
    clickedShare: s.impressions ? s.clickedSearches / s.impressions : 0,
    noResultsShare: s.impressions ? s.noResultsSearches / s.impressions : 0,
    ctr: s.impressions ? s.clicks / s.impressions : 0,
    variants: s.variants,
    windowStart: new Date(s.windowStartMs).toISOString(),
    windowEnd: new Date(s.windowEndMs).toISOString(),
  };
  r.ingest = {
    rpc: "StreamEvents",
    streams: load.streams,
    batchSize: BATCH_SIZE,
    events: s.events,
    batches: load.batches,
    accepted: load.accepted,
    duplicates: load.duplicates,
    rejected: load.rejected,
    seconds: load.seconds,
    eventsPerSecond: load.eventsPerSecond,
    cpuMicrosPerEvent: { server: cpuPerEvent("server"), engine: cpuPerEvent("engine") },
    engineWork: loadEngineWork,
    perTenth: tenthMarks.slice(1).map((mark, i) => ({ tenth: i + 1, eventsPerSecond: o.events / 10 / Math.max(1e-3, (timeAt(mark) - timeAt(tenthMarks[i]!)) / 1000) })),
    ...(edgeMarks.length === 0
      ? {}
      : (() => {
          const first = EDGE_STRETCH / Math.max(1e-3, (timeAt(EDGE_STRETCH) - timeAt(0)) / 1000);
          const last = EDGE_STRETCH / Math.max(1e-3, (timeAt(o.events) - timeAt(o.events - EDGE_STRETCH)) / 1000);
          return { edges: { events: EDGE_STRETCH, firstEventsPerSecond: first, lastEventsPerSecond: last, lastToFirst: last / first } };
        })()),
  };
  log(`ingest: ${formatInteger(s.events)} events in ${load.seconds.toFixed(1)} s = ${formatInteger(load.eventsPerSecond)} events/s (${load.accepted} accepted)`);
  log(`ingest: ${describeWriteWork(loadEngineWork)}`);
  log(`ingest per tenth of the load (events/s): ${r.ingest.perTenth.map((x) => formatInteger(x.eventsPerSecond)).join(" ")}`);
  if (load.rejected > 0) log(`the server rejected ${load.rejected} event(s), e.g. ${JSON.stringify(load.rejections[0])}`);
  if (load.duplicates > 0) log(`the server saw ${load.duplicates} duplicate(s)`);

  // Verify: the whole period, one day more so that nothing has slid out of the window.
  sampler.phase = "verify";
  const verifyDays = Math.min(365, o.days + 1);
  const ctr = await client.getCtr({ days: verifyDays });
  const stored = (await serviceDb.collection(CLICKS).countDocuments({})) + (await serviceDb.collection(IMPRESSIONS).countDocuments({}));
  const verify = {
    days: verifyDays,
    clicks: Number(ctr.clicks),
    impressions: Number(ctr.impressions),
    total: Number(ctr.clicks + ctr.impressions),
    expected: s.events,
    storedDocuments: stored,
    interleaving: await verifyInterleaving(client, o.skipRaw ? undefined : serviceDb, verifyDays, s.interleavedPairSearches),
    ok: false,
  };
  verify.ok = Number(ctr.clicks + ctr.impressions) === s.events && stored === s.events && Number(ctr.clicks) === s.clicks && verify.interleaving.ok;
  r.verify = verify;
  log(`verify: ${JSON.stringify(verify)}`);

  // 3. Raw insert capacity
  r.rawInsert = null;
  if (!o.skipRaw) {
    await sampler.settle(); // nothing of the verify phase counts as the raw insert's
    sampler.phase = "raw-insert";
    const raw = await measureRawInsert(res.mongo, scratchName, serviceDb, o, now, res.abort.signal);
    await sampler.settle();
    const engineCpu = sampler.figures("engine")?.cpuSecondsByPhase["raw-insert"];
    r.rawInsert = { ...raw, serviceToRawRatio: load.eventsPerSecond / raw.docsPerSecond, engineCpuMicrosPerDoc: engineCpu === undefined ? null : (engineCpu * 1e6) / raw.docs };
    log(`raw insert: ${formatInteger(raw.docs)} docs in ${raw.seconds.toFixed(1)} s = ${formatInteger(raw.docsPerSecond)} docs/s; service/raw ${r.rawInsert.serviceToRawRatio.toFixed(2)}`);
  }
  checkpoint(res);

  // Reads are measured once the engine has written the load out (a checkpoint): right after a
  // million events, a large cache holds ~1 GB of dirty pages whose checkpoint, minutes long,
  // doubled read latency in an earlier run. Measured, printed, and not counted as reading.
  const flushStarted = performance.now();
  const flushed = await res.mongo.db("admin").command({ fsync: 1 }).then(() => true, (error: unknown) => (log(`fsync before the reads failed (${(error as Error).message}); reading anyway`), false));
  if (flushed) log(`engine checkpoint before the reads: ${((performance.now() - flushStarted) / 1000).toFixed(1)} s`);

  // 5. Metrics from a separate process
  sampler.phase = "metrics";
  const warmup = Math.min(5, Math.max(1, Math.ceil(o.iterations / 40)));
  log(`metrics: ${METRIC_SHAPES.length} shapes x ${o.iterations} calls (after ${warmup} warm-up calls each), one at a time`);
  const shapes: BenchReport["metrics"]["shapes"] = [];
  // Filled in shape by shape, so that a run failing later still reports the shapes it measured.
  r.metrics = { iterations: o.iterations, warmup, rawIterations: null, shapes };
  await runMetricsClient(
    res.server.address,
    mongoUri,
    o,
    warmup,
    res.engine === undefined ? undefined : { server: res.server.pid, engine: res.engine.pid },
    (child) => (res.child = child),
    (shape) =>
      shapes.push({
        name: shape.name,
        rpc: shape.rpc,
        calls: shape.calls,
        errors: shape.errors,
        ...(shape.firstError === undefined ? {} : { firstError: shape.firstError }),
        latencyMs: shape.latencyMs,
        engineCommandsPerCall: shape.engineCommandsPerCall ?? null,
        engineCommands: shape.engineCommands ?? null,
        cpuMicrosPerCall: shape.cpuMicrosPerCall ?? null,
        raw: null,
        speedup: null,
      }),
  );
  checkpoint(res);

  // 6. Live views: many WatchMetrics streams, and what they cost a unary reader (before the raw
  // aggregations, whose minutes of work leave the engine slower for a while)
  r.watch = null;
  if (o.watchStreams > 0) {
    await sampler.settle();
    sampler.phase = "watch";
    r.watch = await measureWatch(res.server.address, o, (c) => res.clients.push(c), res.abort.signal);
    checkpoint(res);
    const w = r.watch;
    log(`watch: ${w.streams} streams over ${w.questions} questions for ${w.seconds.toFixed(1)} s: gap p50 ${ms(w.gapMs?.p50)} / p99 ${ms(w.gapMs?.p99)} ms, worst stream's p99 ${ms(w.worstStreamGapP99Ms ?? undefined)} ms; GetCtr 30d p50 idle ${ms(w.getCtrIdleMs?.p50)} ms, during ${ms(w.getCtrDuringMs?.p50)} ms`);
  }

  // 7. The same questions as raw aggregations
  if (!o.skipRaw) {
    sampler.phase = "raw-queries";
    const rawIterations = (r.metrics.rawIterations = Math.min(20, Math.max(3, Math.ceil(o.iterations / 40))));
    log(`raw aggregations: ${METRIC_SHAPES.length} shapes x ${rawIterations} calls`);
    const rawQueries = await measureRawQueries(serviceDb, o, rawIterations, res.abort.signal);
    for (const shape of shapes) {
      const raw = rawQueries.find((q) => q.name === shape.name);
      if (!raw) continue;
      shape.raw = { calls: raw.calls, errors: raw.errors, ...(raw.firstError === undefined ? {} : { firstError: raw.firstError }), latencyMs: raw.latencyMs };
      const service = shape.latencyMs?.p50;
      const rawP50 = raw.latencyMs?.p50;
      shape.speedup = service !== undefined && rawP50 !== undefined && service > 0 ? rawP50 / service : null;
    }
  }
  checkpoint(res);

  // 8. Unary LogClick (last: its clicks would otherwise change the dataset the metrics read)
  r.unary = null;
  if (!o.skipUnary) {
    await sampler.settle();
    sampler.phase = "unary";
    const callersBefore = process.cpuUsage();
    const unaryWork = await countWriteWork(res.mongo.db("admin"), res.server.metricsPort);
    const unary = await measureUnary(res.server.address, o, s.impressions, idPrefix, runTag, (c) => res.clients.push(c), res.abort.signal);
    const callers = process.cpuUsage(callersBefore);
    unary.engineWork = await unaryWork();
    await sampler.settle();
    checkpoint(res);
    const perCall = (name: string) => {
      const seconds = sampler.figures(name)?.cpuSecondsByPhase.unary;
      return seconds === undefined || unary.calls === 0 ? null : (seconds * 1e6) / unary.calls;
    };
    unary.cpuMicrosPerCall = { server: perCall("server"), engine: perCall("engine"), callers: unary.calls === 0 ? 0 : (callers.user + callers.system) / unary.calls };
    r.unary = unary;
    log(`unary: ${formatInteger(unary.callsPerSecond)} calls/s; ${describeShape({ name: "LogClick", calls: unary.calls, errors: unary.errors, latencyMs: unary.latencyMs, ...(unary.firstError === undefined ? {} : { firstError: unary.firstError }) })}; ${describeWriteWork(unary.engineWork)}`);
  }

  // 9. Memory: a last sample, and the kernel's own peak (VmHWM)
  sampler.phase = "end";
  await sampler.stop();
  for (const name of ["server", "engine"]) {
    const f = sampler.figures(name);
    const m = f && (await procMemory(f.pid));
    if (f && m) f.vmHwmBytes = Math.max(f.vmHwmBytes, m.hwm);
  }
  r.complete = true;
  finishReport(res);

  const failedShapes = shapes.filter((x) => x.latencyMs === null).map((x) => x.name);
  if (failedShapes.length > 0) log(`every call failed for: ${failedShapes.join(", ")}`);
  const erroneous = shapes.filter((x) => x.errors > 0).map((x) => `${x.name} (${x.errors})`);
  if (erroneous.length > 0) log(`calls failed for: ${erroneous.join(", ")}`);
  return { report: r as BenchReport, ok: verify.ok && failedShapes.length === 0 };
}

async function writeJson(file: string, report: Partial<BenchReport>): Promise<void> {
  await mkdir(path.dirname(path.resolve(file)), { recursive: true });
  await writeFile(file, JSON.stringify(report, null, 2) + "\n");
}

async function main(): Promise<number> {
  let options: BenchOptions | "help";
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`bench: ${error.message}\n\n${USAGE}\n`);
    return 2;
  }
  if (options === "help") {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const o = options;
  const res: Resources = { abort: new AbortController(), clients: [], drop: [], report: {}, t0: performance.now() };
  let cleaning: Promise<void> | undefined;
  const cleanUpOnce = () => (cleaning ??= cleanUp(res));
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) {
      log("second signal: exiting without cleaning up");
      process.exit(130);
    }
    interrupted = true;
    log(`${signal}: stopping the server and the engine, removing temporary data`);
    void cleanUpOnce().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    const { report, ok } = await run(o, res);
    if (o.json) await writeJson(o.json, report);
    process.stdout.write(`\n${printReport(report)}\n`);
    if (o.json) process.stdout.write(`figures written to ${o.json}\n`);
    return ok ? 0 : 1;
  } catch (error) {
    if (interrupted) await new Promise(() => {}); // the signal handler exits
    // A dead engine fails the metrics client too, often before the sampler's next look (every
    // RSS_INTERVAL_MS): look again, twice, so the run says what died rather than what followed.
    for (let look = 0; look < 2 && res.fatal === undefined && res.sampler !== undefined; look++) {
      await res.sampler.settle().catch(() => undefined);
      if (res.fatal === undefined && look === 0) await sleep(RSS_INTERVAL_MS);
    }
    const message = res.fatal ?? (error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.stderr.write(`bench failed: ${message}\n`);
    if (o.json && res.report.startedAt !== undefined) {
      finishReport(res);
      await writeJson(o.json, { ...res.report, complete: false, error: res.fatal ?? (error instanceof Error ? error.message : String(error)) }).then(
        () => log(`the figures measured so far are in ${o.json} ("complete": false)`),
        () => undefined,
      );
    }
    return 1;
  } finally {
    if (!interrupted) await cleanUpOnce();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);

/** The `--` flags given to node in a package.json's start script (`... && node --a --b main.js serve`). */
export function startScriptNodeFlags(packageJson: string): string[] {
  const start = (JSON.parse(packageJson) as { scripts?: { start?: string } }).scripts?.start ?? "";
  const command = start.split("&&").map((part) => part.trim().split(/\s+/)).find((words) => words[0] === "node") ?? [];
  return command.slice(1).filter((word) => word.startsWith("--"));
}

/** The nearest package.json at or above `dir` (dist/bench at run time). */
function packageJsonAbove(dir: string): string {
  for (let d = dir; ; d = path.dirname(d)) {
    const candidate = path.join(d, "package.json");
    if (existsSync(candidate)) return candidate;
    if (path.dirname(d) === d) throw new Error(`no package.json above ${dir}`);
  }
}
