/** `npm start`: configuration from the environment, storage, the gRPC server, signal handling. */
import { realpathSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { startEmbeddedMongo, type EmbeddedMongo } from "../store/click-store.js";
import { ConfigError, configFromEnv } from "./config.js";
import { createLogger } from "./logger.js";
import { startServer, type RunningServer } from "./server.js";
import { tracingFromEnv } from "./tracing-setup.js";

async function main(): Promise<void> {
  const config = configFromEnv();
  const logger = createLogger(config.logLevel);
  const tracing = await tracingFromEnv();
  let embedded: EmbeddedMongo | undefined;
  let server: RunningServer | undefined;

  // Installed before anything starts, so a signal during start-up still shuts down cleanly.
  let stopping: Promise<void> | undefined;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    logger.info({ signal }, "shutting down");
    stopping = (async () => {
      await server?.close();
      await tracing?.shutdown().catch(() => undefined);
      await embedded?.stop();
    })().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: String(error) }, "error during shutdown");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);

  let mongoUri = config.mongoUri;
  if (mongoUri === undefined) {
    const dbPath = resolve(config.dataDir);
    embedded = await startEmbeddedMongo({ dbPath });
    // Its own Unix socket: the same engine without its TCP front's hop each way (embedded-engine.ts).
    mongoUri = embedded.socketUri;
    logger.info({ dbPath, pid: embedded.pid, uri: mongoUri }, "MONGODB_URI not set: using the embedded MongoDB engine (development only)");
  }
  if (stopping) return;
  try {
    server = await startServer({ ...config, mongoUri, tracer: tracing?.tracer }, logger);
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
  if (tracing) logger.info({ endpoint: process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT }, "tracing on: spans exported over OTLP/HTTP");
  if (stopping) await server.close();
}

/** Runs the server configured by process.env until a signal stops it (`click-analytics serve` calls this). */
export function runServer(): void {
  main().catch((error: unknown) => {
    const message = error instanceof ConfigError ? `invalid configuration: ${error.message}` : error instanceof Error ? (error.stack ?? error.message) : String(error);
    process.stderr.write(`click-analytics failed to start: ${message}\n`);
    process.exit(1);
  });
}

/** True when node was started on this file (`node dist/src/server/main.js`), not when it is imported. */
function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  const self = fileURLToPath(import.meta.url);
  for (const candidate of [entry, `${entry}.js`]) {
    try {
      if (realpathSync(candidate) === self) return true;
    } catch {
      // not this one
    }
  }
  return false;
}

if (isEntryPoint()) runServer();
