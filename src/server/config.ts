/** Server configuration from the environment, validated once at start. */
import type { LogLevel } from "./logger.js";

export interface EnvConfig {
  host: string;
  port: number;
  /** Absent: run the embedded engine on dataDir. */
  mongoUri?: string | undefined;
  dbName: string;
  dataDir: string;
  adminToken?: string | undefined;
  logLevel: LogLevel;
  shutdownGraceMs: number;
}

export class ConfigError extends Error {}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got "${raw}"`);
  return value;
}

export function configFromEnv(env: NodeJS.ProcessEnv = process.env): EnvConfig {
  const logLevel = (env.LOG_LEVEL || "info") as LogLevel;
  if (!["debug", "info", "warn", "error", "silent"].includes(logLevel)) throw new ConfigError(`LOG_LEVEL must be one of debug, info, warn, error, silent, got "${logLevel}"`);
  const adminToken = env.CLICK_ANALYTICS_ADMIN_TOKEN || undefined;
  return {
    host: env.HOST || "0.0.0.0",
    port: integer(env, "PORT", 50051, 0, 65535),
    mongoUri: env.MONGODB_URI || undefined,
    dbName: env.MONGODB_DB || "click_analytics",
    dataDir: env.DATA_DIR || "./data",
    adminToken,
    logLevel,
    shutdownGraceMs: integer(env, "SHUTDOWN_GRACE_MS", 10_000, 0, 600_000),
  };
}
