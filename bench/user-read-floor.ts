/**
 * The floor for the benchmark's user-filtered reads (`GetCtr user 30d`, `GetUserSummary 30d`):
 * the same raw aggregations the benchmark times as "raw" (raw-queries.ts), sent by a server that
 * does nothing else, behind one gRPC hop. Three ways, for the same random users, taking turns call
 * by call so that the machine's moods fall on all three alike:
 *
 * - raw: the raw aggregations from this process (the benchmark's raw baseline);
 * - floor: a bare grpc-js server (child process; protobuf-es (de)serialisation, the service's
 *   channel options, no logging, no checks) whose GetCtr and GetUserSummary run exactly those
 *   aggregations and answer with their figures;
 * - service: the service itself (dist/src/server/main.js, child process, its defaults).
 *
 * Every call's answer is checked against the raw one for the same user (CTR and users; clicks,
 * impressions and variants), so the three are doing the same work.
 *
 *   node dist/bench/user-read-floor.js --mongodb-uri URI --db NAME [--engine-pid PID]
 *   node dist/bench/user-read-floor.js --dbpath DIR --db NAME        (starts the embedded engine there)
 *     [--calls 200] [--users 10000] [--days 30] [--seed 1] [--json]
 *
 * `--users` and `--seed` pick users as the benchmark does (user_0 .. user_{users-1}).
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseCommandLine, runTool, UsageError } from "./command-line.js";
import { MongoClient, type Db } from "mongodb";
import { ClickAnalytics } from "../gen/clickanalytics/v1/click_analytics_pb.js";
import { createClickAnalyticsClient, type ClickAnalyticsClient } from "../src/client/index.js";
import { SERVER_CHANNEL_OPTIONS } from "../src/client/transport.js";
import { userIdOf } from "../src/cli/traffic-population.js";
import { Rng } from "../src/cli/traffic-random.js";
import { startEmbeddedMongo, type EmbeddedMongo } from "../src/store/engine/embedded-engine.js";
import { summarize, type LatencySummary } from "./bench-client.js";
import { cpuSeconds } from "./engine-cpu.js";
import { RAW_QUERIES } from "./raw-queries.js";

const WAYS = ["raw", "floor", "service"] as const;
type Way = (typeof WAYS)[number];
const RPCS = ["GetCtr", "GetUserSummary"] as const;
type Rpc = (typeof RPCS)[number];

/** What each way's answer is checked by: the same for the same user and window. */
interface Answer {
  ctr: number | undefined;
  users: number;
}

/** The raw GetUserSummary's figures, and its CTR as the service gives it (none without impressions). */
type RawSummary = { clicks: number; impressions: number; variants: string[] };
const summaryCtr = (s: RawSummary) => (s.impressions > 0 ? s.clicks / s.impressions : undefined);

const rawAnswer = async (db: Db, rpc: Rpc, userId: string, days: number): Promise<Answer> => {
  if (rpc === "GetCtr") return (await RAW_QUERIES.GetCtr(db, { days, userId })) as Answer;
  const s = (await RAW_QUERIES.GetUserSummary(db, { days, userId })) as RawSummary;
  return { ctr: summaryCtr(s), users: s.clicks + s.impressions > 0 ? 1 : 0 };
};

/** A grpc-js method definition for one of the service's unary methods, with protobuf-es (de)serialisation. */
function unaryDefinition<I extends DescMessage, O extends DescMessage>(name: string, input: I, output: O): grpc.MethodDefinition<MessageShape<I>, MessageShape<O>> {
  return {
    path: `/${ClickAnalytics.typeName}/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: (m) => Buffer.from(toBinary(input, m)),
    requestDeserialize: (b) => fromBinary(input, b),
    responseSerialize: (m) => Buffer.from(toBinary(output, m)),
    responseDeserialize: (b) => fromBinary(output, b),
  };
}

/** The child: the bare server over `uri`/`dbName`; prints its port, runs until killed. */
async function serveFloor(uri: string, dbName: string): Promise<void> {
  const mongo = await new MongoClient(uri).connect();
  const db = mongo.db(dbName);
  const ctr = ClickAnalytics.method.getCtr;
  const summary = ClickAnalytics.method.getUserSummary;
  const answer =
    <O extends DescMessage>(output: O, run: (req: { userId: string; days: number }) => Promise<MessageInitShape<O>>) =>
    (call: grpc.ServerUnaryCall<{ userId: string; days: number }, unknown>, callback: grpc.sendUnaryData<unknown>) =>
      void run(call.request).then(
        (init) => callback(null, create(output, init)),
        (e: unknown) => callback({ code: grpc.status.UNAVAILABLE, details: String((e as Error).message) }),
      );
  const server = new grpc.Server(SERVER_CHANNEL_OPTIONS);
  server.addService(
    { getCtr: unaryDefinition(ctr.name, ctr.input, ctr.output), getUserSummary: unaryDefinition(summary.name, summary.input, summary.output) },
    {
      getCtr: answer(ctr.output, async (req) => {
        const a = (await RAW_QUERIES.GetCtr(db, { days: req.days, userId: req.userId })) as Answer;
        return { ctr: a.ctr, users: BigInt(a.users), periodDays: req.days };
      }),
      getUserSummary: answer(summary.output, async (req) => {
        const s = (await RAW_QUERIES.GetUserSummary(db, { days: req.days, userId: req.userId })) as RawSummary;
        return { userId: req.userId, periodDays: req.days, totalClicks: BigInt(s.clicks), totalImpressions: BigInt(s.impressions), ctr: summaryCtr(s), variantsUsed: s.variants };
      }),
    },
  );
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  process.stdout.write(`${port}\n`);
}

/** A child server: its process and a client of it, once it says where it listens. */
async function startChild(args: string[], env: NodeJS.ProcessEnv, portOf: (line: string) => number | undefined): Promise<{ child: ChildProcess; client: ClickAnalyticsClient }> {
  const child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    // Read every line (an unread pipe would stall the child), look only until the port is known.
    let found = false;
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on("line", (line) => {
        if (found) return;
        if (lines.length < 20) lines.push(line);
        const p = portOf(line);
        if (p !== undefined) ((found = true), resolve(p));
      });
    }
    child.once("exit", (code) => reject(new Error(`${args.join(" ")} exited with ${code}: ${lines.join("\n")}`)));
  });
  const client = createClickAnalyticsClient(`127.0.0.1:${port}`, { defaultTimeoutMs: 60_000 });
  await client.waitForReady(30_000);
  return { child, client };
}

/** Waits (at most `limitMs`) for a second in which the process uses under 5% of a core. */
async function quiet(pid: number, limitMs: number): Promise<void> {
  for (const until = Date.now() + limitMs; Date.now() < until; ) {
    const before = cpuSeconds(pid);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    if (cpuSeconds(pid) - before < 0.05) return;
  }
}

interface WayFigures {
  latencyMs: LatencySummary | null;
  /** The way's server process's CPU per call (µs); raw has none. */
  serverCpuMicrosPerCall: number | null;
  /** The engine's CPU per call (µs), when its process is known. */
  engineCpuMicrosPerCall: number | null;
}

export interface UserReadFloorReport {
  calls: number;
  days: number;
  users: number;
  rpcs: Record<Rpc, Record<Way, WayFigures> & { floorToRaw: number | null; serviceToRaw: number | null; serviceToFloor: number | null }>;
}

async function measure(o: { uri: string; dbName: string; enginePid: number | undefined; calls: number; users: number; days: number; seed: number }): Promise<UserReadFloorReport> {
  const mongo = await new MongoClient(o.uri).connect();
  const db = mongo.db(o.dbName);
  const spoolDir = await mkdtemp(path.join(os.tmpdir(), "user-read-floor-"));
  const children: ChildProcess[] = [];
  const clients: ClickAnalyticsClient[] = [];
  try {
    const self = fileURLToPath(import.meta.url);
    const floor = await startChild([self, "--serve-floor", "--mongodb-uri", o.uri, "--db", o.dbName], process.env, (line) => (/^\d+$/.test(line) ? Number(line) : undefined));
    const serverMain = path.resolve(path.dirname(self), "../src/server/main.js");
    const env = { ...process.env, MONGODB_URI: o.uri, MONGODB_DB: o.dbName, HOST: "127.0.0.1", PORT: "0", METRICS_PORT: "off", LOG_LEVEL: "info", SPOOL_DIR: spoolDir };
    const service = await startChild([serverMain], env, (line) => (line.includes('"click-analytics listening"') ? Number((JSON.parse(line) as { port: number }).port) : undefined));
    children.push(floor.child, service.child);
    clients.push(floor.client, service.client);
    // The service's start-up work (its lease, indexes, rollup checks) must not fall into the timed calls.
    await quiet(service.child.pid!, 60_000);

    const call = async (way: Way, rpc: Rpc, userId: string): Promise<Answer> => {
      if (way === "raw") return rawAnswer(db, rpc, userId, o.days);
      const client = way === "floor" ? floor.client : service.client;
      if (rpc === "GetCtr") {
        const r = await client.getCtr({ userId, days: o.days });
        return { ctr: r.ctr, users: Number(r.users) };
      }
      const r = await client.getUserSummary({ userId, days: o.days });
      return { ctr: r.ctr, users: r.totalClicks + r.totalImpressions > 0n ? 1 : 0 };
    };
    const pidOf: Record<Way, number | undefined> = { raw: undefined, floor: floor.child.pid, service: service.child.pid };
    const report = { calls: o.calls, days: o.days, users: o.users, rpcs: {} } as UserReadFloorReport;
    for (const rpc of RPCS) {
      const rng = new Rng(o.seed, 11);
      const nextUser = () => userIdOf(rng.int(o.users));
      // Warm-up: connections, JIT, the service's first call of the method.
      for (let i = 0; i < 10; i++) for (const way of WAYS) await call(way, rpc, nextUser());
      const samples: Record<Way, number[]> = { raw: [], floor: [], service: [] };
      const cpu: Record<Way, { server: number; engine: number }> = { raw: { server: 0, engine: 0 }, floor: { server: 0, engine: 0 }, service: { server: 0, engine: 0 } };
      for (let i = 0; i < o.calls; i++) {
        const userId = nextUser();
        let expected: Answer | undefined;
        // Each way goes first in turn.
        for (let k = 0; k < WAYS.length; k++) {
          const way = WAYS[(i + k) % WAYS.length]!;
          const pid = pidOf[way];
          const [server0, engine0] = [pid === undefined ? 0 : cpuSeconds(pid), o.enginePid === undefined ? 0 : cpuSeconds(o.enginePid)];
          const t0 = performance.now();
          const got = await call(way, rpc, userId);
          samples[way].push(performance.now() - t0);
          cpu[way].server += pid === undefined ? 0 : cpuSeconds(pid) - server0;
          cpu[way].engine += o.enginePid === undefined ? 0 : cpuSeconds(o.enginePid) - engine0;
          expected ??= got;
          if (got.users !== expected.users || (got.ctr ?? -1) !== (expected.ctr ?? -1)) {
            throw new Error(`${rpc} for ${userId}: ${way} answered ${JSON.stringify(got)}, another way ${JSON.stringify(expected)}`);
          }
        }
      }
      const figures = (way: Way): WayFigures => ({
        latencyMs: summarize(samples[way]),
        serverCpuMicrosPerCall: pidOf[way] === undefined ? null : (cpu[way].server * 1e6) / o.calls,
        engineCpuMicrosPerCall: o.enginePid === undefined ? null : (cpu[way].engine * 1e6) / o.calls,
      });
      const byWay = { raw: figures("raw"), floor: figures("floor"), service: figures("service") };
      const p50 = (way: Way) => byWay[way].latencyMs?.p50;
      const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? null : a / b);
      report.rpcs[rpc] = { ...byWay, floorToRaw: ratio(p50("floor"), p50("raw")), serviceToRaw: ratio(p50("service"), p50("raw")), serviceToFloor: ratio(p50("service"), p50("floor")) };
    }
    return report;
  } finally {
    for (const c of clients) c.close();
    for (const child of children) child.kill("SIGTERM");
    await Promise.all(children.map((child) => (child.exitCode === null && child.signalCode === null ? new Promise((r) => child.once("exit", r)) : undefined)));
    await mongo.close();
    await rm(spoolDir, { recursive: true, force: true });
  }
}

const USAGE = `usage:
  node dist/bench/user-read-floor.js --mongodb-uri URI --db NAME [--engine-pid PID]
  node dist/bench/user-read-floor.js --dbpath DIR --db NAME        (starts the embedded engine there)
    [--calls 200] [--users 10000] [--days 30] [--seed 1] [--json]
--json prints the figures as JSON on stdout.`;

const OPTIONS = {
  help: { type: "boolean", default: false },
  "serve-floor": { type: "boolean", default: false },
  "mongodb-uri": { type: "string" },
  dbpath: { type: "string" },
  db: { type: "string" },
  "engine-pid": { type: "string" },
  calls: { type: "string", default: "200" },
  users: { type: "string", default: "10000" },
  days: { type: "string", default: "30" },
  seed: { type: "string", default: "1" },
  json: { type: "boolean", default: false },
} as const;

async function main(): Promise<void> {
  const { values } = parseCommandLine(OPTIONS, USAGE);
  if (values.help) return console.log(USAGE);
  if (values.db === undefined) throw new UsageError(`--db is required (the database the benchmark loaded)\n${USAGE}`);
  if ((values["mongodb-uri"] === undefined) === (values.dbpath === undefined)) throw new UsageError(`give one of --mongodb-uri and --dbpath\n${USAGE}`);
  if (values["serve-floor"]) return serveFloor(values["mongodb-uri"]!, values.db);
  const positive = (name: "calls" | "users" | "days" | "seed") => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer`);
    return n;
  };
  const [calls, users, days, seed] = [positive("calls"), positive("users"), positive("days"), positive("seed")];
  let engine: EmbeddedMongo | undefined;
  try {
    if (values.dbpath !== undefined) engine = await startEmbeddedMongo({ dbPath: values.dbpath, port: 0 });
    const uri = engine?.socketUri ?? values["mongodb-uri"]!;
    const enginePid = engine?.pid ?? (values["engine-pid"] === undefined ? undefined : Number(values["engine-pid"]));
    const r = await measure({ uri, dbName: values.db, enginePid, calls, users, days, seed });
    if (values.json) return console.log(JSON.stringify(r, null, 2));
    const us = (x: number | null) => (x === null ? "-" : `${x.toFixed(0)} µs`);
    for (const rpc of RPCS) {
      const f = r.rpcs[rpc];
      console.log(`${rpc} (${calls} users, ${days} days):`);
      for (const way of WAYS) {
        const l = f[way].latencyMs;
        console.log(`  ${way.padEnd(8)} p50 ${l?.p50.toFixed(2)} ms  p99 ${l?.p99.toFixed(2)} ms  CPU per call: server ${us(f[way].serverCpuMicrosPerCall)}, engine ${us(f[way].engineCpuMicrosPerCall)}`);
      }
      console.log(`  p50 floor/raw ${f.floorToRaw?.toFixed(2)}, service/raw ${f.serviceToRaw?.toFixed(2)}, service/floor ${f.serviceToFloor?.toFixed(2)}`);
    }
  } finally {
    await engine?.stop();
  }
}

runTool("user-read-floor", main);
