/** `npm start`: configuration from the environment, storage, the gRPC server, signal handling. */
import { resolve } from "node:path";
import { startEmbeddedMongo } from "../store/embedded-engine.js";
import { ConfigError, configFromEnv } from "./config.js";
import { createLogger } from "./logger.js";
import { startServer } from "./server.js";

async function main(): Promise<void> {
  const config = configFromEnv();
  const logger = createLogger(config.logLevel);
  let embedded: Awaited<ReturnType<typeof startEmbeddedMongo>> | undefined;
  let mongoUri = config.mongoUri;
  if (mongoUri === undefined) {
    const dbPath = resolve(config.dataDir);
    embedded = await startEmbeddedMongo({ dbPath });
    mongoUri = embedded.uri;
    logger.info({ dbPath, pid: embedded.pid }, "MONGODB_URI not set: using the embedded MongoDB engine (development only)");
  }
  const server = await startServer({ ...config, mongoUri }, logger).catch(async (error: unknown) => {
    await embedded?.stop();
    throw error;
  });
  if (config.adminToken === undefined) logger.warn({}, "CLICK_ANALYTICS_ADMIN_TOKEN not set: Reset is disabled");

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "shutting down");
    void server
      .close()
      .then(() => embedded?.stop())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ err: String(error) }, "error during shutdown");
          process.exit(1);
        },
      );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

main().catch((error: unknown) => {
  const message = error instanceof ConfigError ? `invalid configuration: ${error.message}` : error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.stderr.write(`click-analytics failed to start: ${message}\n`);
  process.exit(1);
});
