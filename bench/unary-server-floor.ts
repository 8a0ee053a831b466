/**
 * The server's floor for the benchmark's unary LogClick work: the CPU a server process spends per
 * call when it does nothing but take the call and answer it, driven the way `npm run bench` drives
 * the service (64 callers in this process, one connection each, the published client, the same
 * requests). No engine is involved; the figure is what the gRPC transport alone costs a server on
 * this machine, to set against the bench's `unary.cpuMicrosPerCall.server`.
 *
 *   node dist/bench/unary-server-floor.js [--seconds 10] [--clients 64] [--latency-ms 0]
 *
 * `--latency-ms` has each call answered that long after it arrives (a timer), as the service
 * answers after its batch is written: at the bench's unary latency (~150 ms) the calls arrive at
 * the bench's rate, a few hundred a second, instead of as fast as the transport allows, and with
 * fewer calls per event-loop turn each costs more.
 *
 * Two servers, each in a child process of its own (its CPU read from /proc):
 *
 * - grpc-js: a plain grpc-js server with the same channel options as the service and
 *   protobuf-es (de)serialisation, whose LogClick answers with the request's fields at once;
 * - adapter: the service's own adapter (grpc-adapter.ts: call contexts, request ids, the status
 *   mapping) around a LogClick that does the same.
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ClickAnalytics, LogClickRequestSchema, LogClickResponseSchema, type LogClickRequest } from "../gen/clickanalytics/v1/click_analytics_pb.js";
import { createClickAnalyticsClient } from "../src/client/index.js";
import { SERVER_CHANNEL_OPTIONS } from "../src/client/transport.js";
import { buildVocabulary, userIdOf, variantOf } from "../src/cli/traffic-population.js";
import { Rng } from "../src/cli/traffic-random.js";
import { grpcService, type ServiceImpl } from "../src/server/grpc-adapter.js";
import { createLogger } from "../src/server/logger.js";
import { cpuSeconds } from "./engine-cpu.js";

type Mode = "grpc-js" | "adapter";
const MODES: readonly Mode[] = ["grpc-js", "adapter"];

const echo = (req: LogClickRequest) => ({ eventId: req.eventId, userId: req.userId, productId: req.productId, rank: req.rank, timestamp: req.timestamp });

const after = <T>(ms: number, value: T): Promise<T> => (ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms, value)) : Promise.resolve(value));

/** The child: serves LogClick in `mode` on 127.0.0.1, answering each call `latencyMs` after it arrives; prints its port, runs until killed. */
async function serve(mode: Mode, latencyMs: number): Promise<void> {
  const server = new grpc.Server(SERVER_CHANNEL_OPTIONS);
  if (mode === "grpc-js") {
    const method = ClickAnalytics.method.logClick;
    server.addService(
      {
        logClick: {
          path: `/${ClickAnalytics.typeName}/${method.name}`,
          requestStream: false,
          responseStream: false,
          requestSerialize: (m: LogClickRequest) => Buffer.from(toBinary(LogClickRequestSchema, m)),
          requestDeserialize: (b: Buffer) => fromBinary(LogClickRequestSchema, b),
          responseSerialize: (m: ReturnType<typeof create<typeof LogClickResponseSchema>>) => Buffer.from(toBinary(LogClickResponseSchema, m)),
          responseDeserialize: (b: Buffer) => fromBinary(LogClickResponseSchema, b),
        },
      },
      {
        logClick: (call: grpc.ServerUnaryCall<LogClickRequest, unknown>, callback: grpc.sendUnaryData<unknown>) =>
          void after(latencyMs, echo(call.request)).then((init) => callback(null, create(LogClickResponseSchema, init))),
      },
    );
  } else {
    const impl = new Proxy({}, { get: (_, name) => (name === "logClick" ? (req: LogClickRequest) => after(latencyMs, echo(req)) : () => Promise.reject(new Error("not served here"))) });
    const { definition, implementation } = grpcService(ClickAnalytics, impl as ServiceImpl<typeof ClickAnalytics>, { logger: createLogger("silent") });
    server.addService(definition, implementation);
  }
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  process.stdout.write(`${port}\n`);
}

interface Figures {
  mode: Mode;
  calls: number;
  seconds: number;
  callsPerSecond: number;
  serverCpuMicrosPerCall: number;
  callersCpuMicrosPerCall: number;
}

/** Starts a server child in `mode`, drives it with `clients` callers for `seconds`, reads its CPU. */
async function measure(mode: Mode, clients: number, seconds: number, latencyMs: number): Promise<Figures> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "--serve", mode, "--latency-ms", String(latencyMs)], { stdio: ["ignore", "pipe", "inherit"] });
  let callers: ReturnType<typeof createClickAnalyticsClient>[] = [];
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
      child.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
    });
    // One connection per caller, as the bench's unary callers (and 64 separate services) have.
    callers = Array.from({ length: clients }, () => createClickAnalyticsClient(`127.0.0.1:${port}`, { defaultTimeoutMs: 30_000, channelOptions: { "grpc.use_local_subchannel_pool": 1 } }));
    await Promise.all(callers.map((c) => c.waitForReady(30_000)));
    const vocabulary = buildVocabulary(2_000, 1);
    const request = (rng: Rng, k: number, i: number) => {
      const userId = userIdOf(rng.int(10_000));
      return { eventId: `floor-${k}-${i}`, impressionId: `q${rng.int(1_000_000)}`, userId, productId: `prod_${rng.int(100_000)}`, rank: rng.geometric(0.42), searchQuery: vocabulary[rng.int(vocabulary.length)]!, variant: variantOf(userId), responseTimeMs: 60 };
    };
    // A second of warm-up (connections, JIT), then the timed run.
    const run = async (ms: number, tag: string) => {
      let calls = 0;
      const until = performance.now() + ms;
      await Promise.all(
        callers.map(async (client, k) => {
          const rng = new Rng(1, 100 + k);
          for (let i = 0; performance.now() < until; i++) {
            await client.logClick(request(rng, k, i), { timeoutMs: 30_000 }).catch((e: unknown) => {
              throw new Error(`${tag} call failed: ${(e as Error).message}`);
            });
            calls++;
          }
        }),
      );
      return calls;
    };
    await run(1_000, "warm-up");
    const serverBefore = cpuSeconds(child.pid!);
    const callersBefore = process.cpuUsage();
    const started = performance.now();
    const calls = await run(seconds * 1000, "timed");
    const elapsed = (performance.now() - started) / 1000;
    await new Promise((r) => setTimeout(r, 300)); // /proc ticks land late
    const serverCpu = cpuSeconds(child.pid!) - serverBefore;
    const callersCpu = process.cpuUsage(callersBefore);
    return {
      mode,
      calls,
      seconds: elapsed,
      callsPerSecond: calls / elapsed,
      serverCpuMicrosPerCall: (serverCpu * 1e6) / calls,
      callersCpuMicrosPerCall: (callersCpu.user + callersCpu.system) / calls,
    };
  } finally {
    // Also when a call failed: open channels would keep this process alive.
    for (const c of callers) c.close();
    child.kill();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { serve: { type: "string" }, seconds: { type: "string", default: "10" }, clients: { type: "string", default: "64" }, "latency-ms": { type: "string", default: "0" }, json: { type: "boolean", default: false } }, strict: true });
  if (values.serve !== undefined) {
    if (!MODES.includes(values.serve as Mode)) throw new Error(`--serve must be one of ${MODES.join(", ")}`);
    return serve(values.serve as Mode, Number(values["latency-ms"]));
  }
  const latencyMs = Number(values["latency-ms"]);
  if (!(latencyMs >= 0)) throw new Error("--latency-ms must be >= 0");
  const seconds = Number(values.seconds);
  const clients = Number(values.clients);
  if (!(seconds > 0) || !(Number.isInteger(clients) && clients > 0)) throw new Error("--seconds must be > 0 and --clients a positive integer");
  const results: Figures[] = [];
  for (const mode of MODES) {
    const f = await measure(mode, clients, seconds, latencyMs);
    results.push(f);
    if (!values.json) {
      console.log(
        `${mode.padEnd(8)} ${f.calls} calls in ${f.seconds.toFixed(1)} s: ${f.callsPerSecond.toFixed(0)} calls/s; CPU per call: server ${f.serverCpuMicrosPerCall.toFixed(0)} µs, callers ${f.callersCpuMicrosPerCall.toFixed(0)} µs`,
      );
    }
  }
  if (values.json) console.log(JSON.stringify(results, null, 2));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
