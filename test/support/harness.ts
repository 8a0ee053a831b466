/** A real server on 127.0.0.1:0 over the shared test MongoDB, and a typed client talking to it. */
import { randomUUID } from "node:crypto";
import { inject } from "vitest";
import { createClickAnalyticsClient, type ClickAnalyticsClient, type ClientOptions } from "../../src/client/index.js";
import { createLogger, type Logger } from "../../src/server/logger.js";
import { startServer, type RunningServer, type ServerConfig } from "../../src/server/server.js";

export interface Harness {
  server: RunningServer;
  client: ClickAnalyticsClient;
  dbName: string;
  close(): Promise<void>;
}

export async function startHarness(overrides: Partial<ServerConfig> = {}, clientOptions: ClientOptions = {}, logger?: Logger): Promise<Harness> {
  const dbName = `test_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const server = await startServer(
    { host: "127.0.0.1", port: 0, mongoUri: inject("mongoUri"), dbName, shutdownGraceMs: 2_000, ...overrides },
    logger ?? createLogger(process.env.TEST_LOG_LEVEL === "debug" ? "info" : "silent"),
  );
  const client = createClickAnalyticsClient(server.address, clientOptions);
  return {
    server,
    client,
    dbName,
    async close() {
      client.close();
      await server.store.db.dropDatabase().catch(() => undefined);
      await server.close();
    },
  };
}
