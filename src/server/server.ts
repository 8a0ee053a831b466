import * as grpc from "@grpc/grpc-js";
import { ClickAnalytics } from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { SERVER_CHANNEL_OPTIONS } from "../client/transport.js";
import { ClickStore } from "../store/click-store.js";
import { clickAnalyticsService } from "./click-analytics-service.js";
import { grpcService, type AdapterOptions } from "./grpc-adapter.js";
import { HealthMonitor } from "./health.js";
import { createLogger, type Logger } from "./logger.js";
import { DescriptorIndex, reflectionServices, reflectionV1, reflectionV1Alpha } from "./reflection.js";

export interface ServerConfig {
  /** e.g. "0.0.0.0" or "127.0.0.1" */
  host: string;
  /** 0 picks a free port. */
  port: number;
  mongoUri: string;
  dbName: string;
  adminToken?: string | undefined;
  /** How long a storage operation waits for a reachable MongoDB before failing UNAVAILABLE. */
  storageTimeoutMs?: number;
  /** How long shutdown waits for in-flight calls before cancelling them. */
  shutdownGraceMs?: number;
  healthIntervalMs?: number;
}

export interface RunningServer {
  readonly port: number;
  /** host:port to dial */
  readonly address: string;
  readonly store: ClickStore;
  readonly health: HealthMonitor;
  /** Stops taking calls, drains in-flight ones (up to the grace period), then closes storage. */
  close(): Promise<void>;
}

export async function startServer(config: ServerConfig, logger: Logger = createLogger()): Promise<RunningServer> {
  const store = await ClickStore.open({ uri: config.mongoUri, dbName: config.dbName, serverSelectionTimeoutMS: config.storageTimeoutMs });
  const server = new grpc.Server(SERVER_CHANNEL_OPTIONS);
  const health = new HealthMonitor([ClickAnalytics.typeName], () => store.isReachable(), config.healthIntervalMs);
  const options: AdapterOptions = { logger };
  const add = <S extends Parameters<typeof grpcService>[0]>(service: S, impl: Parameters<typeof grpcService<S>>[1]) => {
    const { definition, implementation } = grpcService(service, impl, options);
    server.addService(definition, implementation);
  };
  // Long-lived streams (WatchMetrics) end when shutdown begins, so draining does not wait on them.
  const shuttingDown = new AbortController();
  add(ClickAnalytics, clickAnalyticsService({ store, adminToken: config.adminToken, shutdown: shuttingDown.signal }));
  add(Health, health.service());
  const index = new DescriptorIndex([ClickAnalytics, Health, ...reflectionServices]);
  add(reflectionServices[0], reflectionV1(index));
  add(reflectionServices[1], reflectionV1Alpha(index));

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${config.host}:${config.port}`, grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    await health.start();
  } catch (error) {
    server.forceShutdown();
    await store.close();
    throw error;
  }
  logger.info({ host: config.host, port, db: config.dbName }, "click-analytics listening");

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
      await store.close();
      logger.info({}, "click-analytics stopped");
    })());

  return { port, address: `${config.host === "0.0.0.0" ? "127.0.0.1" : config.host}:${port}`, store, health, close };
}
