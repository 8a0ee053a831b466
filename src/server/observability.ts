/**
 * Request logs and Prometheus metrics. One "rpc" log line per call; a prom-client registry per
 * server (never the global one, so that several servers in one process keep their own counts),
 * served as the Prometheus text format on `GET /metrics` of a separate plain HTTP port.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ClickStore } from "../store/click-store.js";
import { codeName, type CallRecord } from "./call-tracking.js";
import { ServingStatus, type HealthMonitor } from "./health.js";
import type { Logger } from "./logger.js";
import type { WatchStats } from "./watch.js";

/** Codes that point at the server (or its storage) rather than at the caller: their rpc lines are warnings. */
const SERVER_FAULTS: ReadonlySet<grpc.status> = new Set([
  grpc.status.UNKNOWN,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.UNIMPLEMENTED,
  grpc.status.INTERNAL,
  grpc.status.UNAVAILABLE,
  grpc.status.DATA_LOSS,
]);

const HEALTH_PREFIX = "/grpc.health.v1.Health/";

/**
 * The one line per call: `{"level":"info","msg":"rpc","method":"/clickanalytics.v1.ClickAnalytics/GetCtr",
 * "code":0,"codeName":"OK","durationMs":3.2,"peer":"10.0.0.7:51234","requestId":"…"}`. Server faults
 * are `warn`; successful health checks (balancers poll them) are `debug`; everything else `info`.
 */
export function logCall(logger: Logger, record: CallRecord): void {
  const fields = { method: record.method, code: record.code, codeName: codeName(record.code), durationMs: record.durationMs, peer: record.peer, requestId: record.requestId, ...(record.traceId === undefined ? {} : { trace_id: record.traceId }) };
  if (SERVER_FAULTS.has(record.code)) logger.warn(fields, "rpc");
  else if (record.code === grpc.status.OK && record.method.startsWith(HEALTH_PREFIX)) logger.debug?.(fields, "rpc");
  else logger.info(fields, "rpc");
}

export const METRIC_PREFIX = "click_analytics_";

/** RPCs take milliseconds: 1 ms .. 10 s (streams count their whole life and may land in +Inf). */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export type IngestOutcome = "accepted" | "duplicate" | "rejected";

/** What the gauges read at scrape time. */
export interface MetricsSources {
  store: Pick<ClickStore, "writer">;
  health: Pick<HealthMonitor, "current">;
  /** WatchMetrics streams and their shared computations (see watch.ts). */
  watch?: Readonly<WatchStats> | undefined;
}

/** One server's metrics, in its own registry. */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly rpcRequests: Counter<"method" | "code">;
  private readonly rpcDuration: Histogram<"method">;
  private readonly eventsIngested: Counter<"outcome">;
  private readonly batchEvents: Histogram;
  private readonly writesCommitted: Counter;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    this.rpcRequests = new Counter({
      name: `${METRIC_PREFIX}rpc_requests_total`,
      help: "Finished RPCs by method (/package.Service/Method) and gRPC status code name.",
      labelNames: ["method", "code"] as const,
      registers,
    });
    this.rpcDuration = new Histogram({
      name: `${METRIC_PREFIX}rpc_duration_seconds`,
      help: "RPC duration from the handler's start to the status (streams: the whole stream), by method.",
      labelNames: ["method"] as const,
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.eventsIngested = new Counter({
      name: `${METRIC_PREFIX}events_ingested_total`,
      help: "Clicks and impressions received by LogClick, LogImpression, LogEvents and StreamEvents, by outcome.",
      labelNames: ["outcome"] as const,
      registers,
    });
    for (const outcome of ["accepted", "duplicate", "rejected"] as const) this.eventsIngested.inc({ outcome }, 0);
    this.batchEvents = new Histogram({
      name: `${METRIC_PREFIX}write_batch_events`,
      help: "Events per batch written to MongoDB; concurrent calls' writes are combined into one batch (group commit).",
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 4000],
      registers,
    });
    this.writesCommitted = new Counter({
      name: `${METRIC_PREFIX}write_calls_committed_total`,
      help: "Calls' writes committed to MongoDB; divided by write_batch_events_count, how many writes a batch combines.",
      registers,
    });
    const { store, health } = sources;
    new Gauge({
      name: `${METRIC_PREFIX}spool_pending_batches`,
      help: "Acknowledged batches waiting in the local spool for MongoDB.",
      registers,
      collect() {
        this.set(store.writer.pending);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}spool_bytes`,
      help: "Bytes of acknowledged events waiting in the local spool for MongoDB.",
      registers,
      collect() {
        this.set(store.writer.spoolBytes);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}storage_up`,
      help: "1 while MongoDB answers the health monitor's ping (health SERVING), else 0 (also while shutting down).",
      registers,
      collect() {
        this.set(health.current("") === ServingStatus.SERVING ? 1 : 0);
      },
    });
    const { watch } = sources;
    if (watch !== undefined) {
      const gauge = (name: string, help: string, read: () => number) =>
        new Gauge({
          name: `${METRIC_PREFIX}${name}`,
          help,
          registers,
          collect() {
            this.set(read());
          },
        });
      // Counters that live in the watch hub: read at scrape time (prom-client counters cannot be set).
      const counter = (name: string, help: string, read: () => number) =>
        new Counter({
          name: `${METRIC_PREFIX}${name}`,
          help,
          registers,
          collect() {
            this.reset();
            this.inc(read());
          },
        });
      gauge("watch_streams", "Open WatchMetrics streams.", () => watch.streams);
      gauge("watch_questions", "Distinct questions (filter, window, interval) the open WatchMetrics streams ask: one shared computation each per interval.", () => watch.questions);
      counter("watch_snapshots_computed_total", "WatchMetrics snapshots computed from storage (one per question and tick when something changed).", () => watch.computations);
      counter("watch_snapshots_reused_total", "WatchMetrics ticks that found nothing the numbers depend on changed and reused them.", () => watch.reuses);
      counter("watch_snapshots_superseded_total", "WatchMetrics snapshots replaced by a newer one before a slow stream took them.", () => watch.superseded);
    }
    collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX });
  }

  /** Counts a finished call (the adapter's observe hook). */
  readonly recordCall = (record: CallRecord): void => {
    this.rpcRequests.inc({ method: record.method, code: codeName(record.code) });
    this.rpcDuration.observe({ method: record.method }, record.durationMs / 1000);
  };

  /** Records one batch written to MongoDB (the writer's `committed` event). */
  readonly recordBatch = (events: number, writes: number): void => {
    this.batchEvents.observe(events);
    this.writesCommitted.inc(writes);
  };

  /** Counts ingested events by outcome (called by the service once per call or batch). */
  readonly countIngested = (counts: Partial<Record<IngestOutcome, number>>): void => {
    for (const [outcome, n] of Object.entries(counts)) if (n !== undefined && n > 0) this.eventsIngested.inc({ outcome }, n);
  };
}

export interface MetricsEndpoint {
  /** The bound port (useful when asked for 0). */
  readonly port: number;
  close(): Promise<void>;
}

/** Serves `GET /metrics` (and HEAD) in the Prometheus text format; every other request is 404. */
export async function serveMetrics(registry: Registry, host: string, port: number, logger: Logger): Promise<MetricsEndpoint> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0];
    if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found; metrics are at GET /metrics\n");
      return;
    }
    registry.metrics().then(
      (body) => {
        res.writeHead(200, { "content-type": registry.contentType, "cache-control": "no-store" });
        res.end(req.method === "HEAD" ? undefined : body);
      },
      (error: unknown) => {
        logger.error({ err: error instanceof Error ? (error.stack ?? error.message) : String(error) }, "collecting metrics failed");
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end("collecting metrics failed\n");
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    const refused = (error: NodeJS.ErrnoException) => reject(new Error(`the metrics endpoint cannot listen on ${host}:${port} (METRICS_HOST, METRICS_PORT): ${error.code ?? error.message}`));
    server.once("error", refused);
    server.listen(port, host, () => {
      server.off("error", refused);
      resolve();
    });
  });
  server.on("error", (error) => logger.error({ err: String(error) }, "metrics endpoint error"));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // A scraper's idle keep-alive connection must not hold shutdown up.
        server.closeAllConnections();
      }),
  };
}
