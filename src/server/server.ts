import * as grpc from "@grpc/grpc-js";
import { ClickAnalytics } from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { SERVER_CHANNEL_OPTIONS } from "../client/transport.js";
import { ClickStore, type SpoolOptions, fastMetrics } from "../store/click-store.js";
import { accessGuard, ROLES, type AccessToken } from "./auth.js";
import type { CallRecord } from "./call-tracking.js";
import { clickAnalyticsService, requireCountComplete } from "./click-analytics-service.js";
import { DEFAULT_WATCH_MAX_STREAMS, DEFAULT_WATCH_MAX_STREAMS_PER_TOKEN, WatchHub, type WatchStats } from "./watch.js";
import type { TlsConfig } from "./config.js";
import { DEFAULT_STREAM_IDLE_TIMEOUT_MS, DEFAULT_STREAMS_PER_CONNECTION, grpcService, type AdapterOptions } from "./grpc-adapter.js";
import { HealthMonitor } from "./health.js";
import { createLogger, type Logger } from "./logger.js";
import { logCall, serveMetrics, ServerMetrics, type MetricsEndpoint } from "./observability.js";
import { DescriptorIndex, reflectionServices, reflectionV1, reflectionV1Alpha } from "./reflection.js";
import { createTracing } from "./tracing.js";
import type { Tracer } from "@opentelemetry/api";

export interface ServerConfig {
  /** Where acknowledged events wait while MongoDB is unreachable (directory, size bound). */
  spool?: SpoolOptions | undefined;
  /** When a write counts as done; default majority-acknowledged and journaled. */
  writeConcern?: { w: number | "majority"; journal: boolean } | undefined;
  /** Rollup work of earlier versions (which name no writer) left unfinished this long is finished by another (default 60 s). */
  rollupRepairAfterMs?: number | undefined;
  /** Raw events older than this many days are expired; reads that need them get FAILED_PRECONDITION. Undefined keeps them. */
  rawRetentionDays?: number | undefined;
  /** Where MongoDB has no TTL monitor, how often the service expires raw events itself (default 10 min). */
  retentionSweepMs?: number | undefined;
  /** e.g. "0.0.0.0" or "127.0.0.1" */
  host: string;
  /** 0 picks a free port. */
  port: number;
  mongoUri: string;
  dbName: string;
  /** Enables Reset for this bearer token; with `tokens` it is one more admin token. */
  adminToken?: string | undefined;
  /**
   * Bearer tokens with roles. Any token turns access control on for every ClickAnalytics RPC;
   * none leaves the service open (Reset still needs adminToken). Health and reflection stay open.
   */
  tokens?: readonly AccessToken[] | undefined;
  /** Serve TLS (mutual TLS with clientCa); plaintext without. */
  tls?: TlsConfig | undefined;
  /** How long a storage operation waits for a reachable MongoDB before failing UNAVAILABLE. */
  storageTimeoutMs?: number;
  /** How long shutdown waits for in-flight calls before cancelling them. */
  shutdownGraceMs?: number;
  healthIntervalMs?: number;
  /** Serve Prometheus metrics on this HTTP port (0 picks a free one); unset serves none. */
  metricsPort?: number | undefined;
  /** Address of the metrics port; default `host`. */
  metricsHost?: string | undefined;
  /** Concurrent WatchMetrics streams beyond which new ones are RESOURCE_EXHAUSTED (default 1000). */
  watchMaxStreams?: number | undefined;
  /** The same per bearer token, when access control is on (default 500). */
  watchMaxStreamsPerToken?: number | undefined;
  /** How often the engine is pinged (default 1 s), and how long an unanswered ping takes to mark it unresponsive (default 2.5 s). */
  storagePingIntervalMs?: number | undefined;
  storagePingTimeoutMs?: number | undefined;
  /** StreamEvents with no message for this long is ended DEADLINE_EXCEEDED (default 60 s). */
  streamIdleTimeoutMs?: number | undefined;
  /** StreamEvents calls open at once on one connection; more are RESOURCE_EXHAUSTED (default 100). */
  streamsPerConnection?: number | undefined;
  /** OpenTelemetry tracer: a span per call (continuing the caller's traceparent) and per MongoDB command. Unset: no tracing. */
  tracer?: Tracer | undefined;
}

/** The writes: answered from the spool when the engine stalls, never given up on by the adapter. */
const WRITE_METHODS = new Set(["logClick", "logImpression", "logEvents"]);

export interface RunningServer {
  readonly port: number;
  /** host:port to dial */
  readonly address: string;
  readonly store: ClickStore;
  readonly health: HealthMonitor;
  /** The bound metrics port, when `metricsPort` was set. */
  readonly metricsPort: number | undefined;
  /** This server's metrics (its own registry), when `metricsPort` was set. */
  readonly metrics: ServerMetrics | undefined;
  /** WatchMetrics streams, shared questions and computations so far. */
  readonly watch: Readonly<WatchStats>;
  /** Stops taking calls, drains in-flight ones (up to the grace period), then closes storage. */
  close(): Promise<void>;
}

export async function startServer(config: ServerConfig, logger: Logger = createLogger()): Promise<RunningServer> {
  // Assigned once the store is open; the writer reports its batches to it from then on.
  let metrics: ServerMetrics | undefined;
  const tracing = config.tracer ? await createTracing(config.tracer) : undefined;
  const store = await ClickStore.open({
    uri: config.mongoUri,
    dbName: config.dbName,
    serverSelectionTimeoutMS: config.storageTimeoutMs,
    writeConcern: config.writeConcern,
    spool: config.spool,
    rollupRepairAfterMs: config.rollupRepairAfterMs,
    rawRetentionDays: config.rawRetentionDays,
    retentionSweepMs: config.retentionSweepMs,
    watchdog: { intervalMs: config.storagePingIntervalMs, timeoutMs: config.storagePingTimeoutMs },
    traceCommands: tracing?.traceCommands,
    writerEvents: {
      repaired: (events) => logger.warn({ events }, "finished rollup work an interrupted writer had left"),
      spooled: (events) => logger.warn({ events }, "storage unreachable: events spooled locally"),
      drained: (records) => logger.info({ records }, "spooled events written to storage"),
      drainFailed: (error) => logger.warn({ err: String(error) }, "spool not drained yet; retrying"),
      committed: (events, writes) => metrics?.recordBatch(events, writes),
      stalled: (batch) => logger.warn(batch, "a batch write has not ended"),
    },
  });
  if (store.writer.pending > 0) logger.warn({ batches: store.writer.pending }, "replaying events left in the spool by a previous run");
  const server = new grpc.Server(SERVER_CHANNEL_OPTIONS);
  const health = new HealthMonitor([ClickAnalytics.typeName], () => store.isReachable(), config.healthIntervalMs);
  // Health follows the watchdog at once, not at its next probe.
  store.watchdog.onChange((responsive) => {
    logger.warn({ responsive, pingTimeoutMs: store.watchdog.timeoutMs }, responsive ? "storage answers again" : "storage not responding: writes go to the spool, reads are UNAVAILABLE");
    void health.check();
  });
  const tokens = accessTokens(config);
  const watch = new WatchHub({
    store,
    metrics: fastMetrics(store.collections, store.rollups, store.queryTables, undefined, store.userRollups),
    requireComplete: () => requireCountComplete(store),
    now: () => new Date(),
    limits: {
      maxStreams: config.watchMaxStreams ?? DEFAULT_WATCH_MAX_STREAMS,
      // Only tokens tell callers apart: without access control there is the global cap alone.
      maxStreamsPerToken: tokens.length > 0 ? (config.watchMaxStreamsPerToken ?? DEFAULT_WATCH_MAX_STREAMS_PER_TOKEN) : undefined,
    },
  });
  metrics = config.metricsPort === undefined ? undefined : new ServerMetrics({ store, health, watch: watch.stats });
  // One log line and the metrics for every call of every service.
  const observe = (record: CallRecord) => {
    logCall(logger, record);
    metrics?.recordCall(record);
  };
  const add = <S extends Parameters<typeof grpcService>[0]>(service: S, impl: Parameters<typeof grpcService<S>>[1], options: AdapterOptions = { logger, observe, tracing }) => {
    const { definition, implementation } = grpcService(service, impl, options);
    server.addService(definition, implementation);
  };
  // Long-lived streams (WatchMetrics) end when shutdown begins, so draining does not wait on them.
  const shuttingDown = new AbortController();
  // Only ClickAnalytics is guarded: health checks and reflection (grpcurl list/describe) need no token.
  const guard = tokens.length > 0 ? accessGuard(tokens) : undefined;
  add(ClickAnalytics, clickAnalyticsService({ store, adminToken: config.adminToken, shutdown: shuttingDown.signal, onIngested: metrics?.countIngested, watch }), {
    logger,
    guard,
    observe,
    tracing,
    // A slow WatchMetrics client gets the latest snapshot when it reads again, not a backlog.
    oneInFlight: new Set(["watchMetrics"]),
    // Reads (and Reset) are answered UNAVAILABLE as soon as the engine stops responding.
    failFast: {
      methods: new Set(ClickAnalytics.methods.filter((m) => m.methodKind === "unary" && !WRITE_METHODS.has(m.localName)).map((m) => m.localName)),
      race: (work) => store.watchdog.race(work),
    },
    requestStreams: { idleMs: config.streamIdleTimeoutMs ?? DEFAULT_STREAM_IDLE_TIMEOUT_MS, perConnection: config.streamsPerConnection ?? DEFAULT_STREAMS_PER_CONNECTION },
  });
  add(Health, health.service());
  const index = new DescriptorIndex([ClickAnalytics, Health, ...reflectionServices]);
  add(reflectionServices[0], reflectionV1(index));
  add(reflectionServices[1], reflectionV1Alpha(index));

  let port: number;
  let metricsEndpoint: MetricsEndpoint | undefined;
  try {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${config.host}:${config.port}`, serverCredentials(config.tls), (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    await health.start();
    if (metrics !== undefined) metricsEndpoint = await serveMetrics(metrics.registry, config.metricsHost ?? config.host, config.metricsPort ?? 0, logger);
  } catch (error) {
    health.shutdown();
    server.forceShutdown();
    await store.close();
    throw error;
  }
  logAccess(logger, tokens, config.adminToken);
  logger.info({ host: config.host, port, db: config.dbName, tls: config.tls === undefined ? "off" : config.tls.clientCa === undefined ? "on" : "mutual", metricsPort: metricsEndpoint?.port ?? "off" }, "click-analytics listening");

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      health.shutdown();
      shuttingDown.abort();
      const graceMs = config.shutdownGraceMs ?? 10_000;
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          logger.warn({ graceMs }, "shutdown grace period over; cancelling remaining calls");
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await metricsEndpoint?.close();
      await store.close();
      logger.info({}, "click-analytics stopped");
    })());

  return { port, address: `${config.host === "0.0.0.0" ? "127.0.0.1" : config.host}:${port}`, store, health, metricsPort: metricsEndpoint?.port, metrics, watch: watch.stats, close };
}

/** Configured tokens plus the admin token, when access control is on at all. */
function accessTokens(config: ServerConfig): AccessToken[] {
  const tokens = [...(config.tokens ?? [])];
  if (tokens.length > 0 && config.adminToken !== undefined) tokens.push({ token: config.adminToken, role: "admin", name: "CLICK_ANALYTICS_ADMIN_TOKEN" });
  return tokens;
}

/** Says at start who may call what; counts and roles only, never a token. */
function logAccess(logger: Logger, tokens: readonly AccessToken[], adminToken: string | undefined): void {
  if (tokens.length > 0) {
    const perRole = Object.fromEntries(ROLES.map((role) => [role, tokens.filter((t) => t.role === role).length]));
    logger.info({ tokens: perRole }, "access control on: every ClickAnalytics call needs a bearer token with a role");
    return;
  }
  logger.warn(
    { reset: adminToken === undefined ? "disabled" : "admin token only" },
    "ACCESS CONTROL OFF: no CLICK_ANALYTICS_TOKENS or CLICK_ANALYTICS_TOKENS_FILE, so anyone who can reach this port may log events and read metrics; for local development only",
  );
  if (adminToken === undefined) logger.warn({}, "CLICK_ANALYTICS_ADMIN_TOKEN not set: Reset is disabled");
}

function serverCredentials(tls: TlsConfig | undefined): grpc.ServerCredentials {
  if (tls === undefined) return grpc.ServerCredentials.createInsecure();
  // With a client CA, clients must present a certificate it signed (mutual TLS).
  return grpc.ServerCredentials.createSsl(tls.clientCa ?? null, [{ private_key: tls.key, cert_chain: tls.cert }], tls.clientCa !== undefined);
}
