/** Server configuration from the environment, validated once at start. */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { ROLES, type AccessToken, type Role } from "./auth.js";
import { LOG_LEVELS, type LogLevel } from "./logger.js";
import { DEFAULT_WATCH_MAX_STREAMS, DEFAULT_WATCH_MAX_STREAMS_PER_TOKEN } from "./watch.js";
import { DEFAULT_PING_INTERVAL_MS, DEFAULT_PING_TIMEOUT_MS } from "../store/click-store.js";
import { DEFAULT_STREAM_IDLE_TIMEOUT_MS, DEFAULT_STREAMS_PER_CONNECTION } from "./grpc-adapter.js";

export interface TlsConfig {
  /** PEM certificate chain the server presents. */
  cert: Buffer;
  /** PEM private key of that certificate. */
  key: Buffer;
  /** PEM CA bundle; when set, clients must present a certificate it signed. */
  clientCa?: Buffer | undefined;
}

export interface EnvConfig {
  host: string;
  port: number;
  /** Absent: run the embedded engine on dataDir. */
  mongoUri?: string | undefined;
  dbName: string;
  dataDir: string;
  adminToken?: string | undefined;
  /** From CLICK_ANALYTICS_TOKENS and CLICK_ANALYTICS_TOKENS_FILE; any token turns access control on. */
  tokens: AccessToken[];
  tls?: TlsConfig | undefined;
  logLevel: LogLevel;
  shutdownGraceMs: number;
  /** Local spool for acknowledged events while MongoDB is unreachable. */
  spool: { dir: string; maxBytes: number };
  writeConcern: { w: number | "majority"; journal: boolean };
  rollupRepairAfterMs: number;
  /** RAW_RETENTION_DAYS: raw events are expired after this many days; undefined (unset or 0) keeps them. */
  rawRetentionDays: number | undefined;
  /** Prometheus metrics HTTP port (0 picks a free one); undefined when METRICS_PORT=off. */
  metricsPort: number | undefined;
  metricsHost: string;
  /** Concurrent WatchMetrics streams on this server, and per bearer token with access control on. */
  watchMaxStreams: number;
  watchMaxStreamsPerToken: number;
  /** STORAGE_PING_INTERVAL_MS / STORAGE_PING_TIMEOUT_MS: the engine's watchdog. */
  storagePingIntervalMs: number;
  storagePingTimeoutMs: number;
  /** STREAM_IDLE_TIMEOUT_MS and STREAMS_PER_CONNECTION: limits of StreamEvents calls. */
  streamIdleTimeoutMs: number;
  streamsPerConnection: number;
}

export class ConfigError extends Error {}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got "${raw}"`);
  return value;
}

// Error messages below never include a token, not even part of one.
const TOKEN = /^[\x21-\x7e]+$/;
const isRole = (value: unknown): value is Role => ROLES.includes(value as Role);

function checkedToken(token: string, where: string): string {
  if (!TOKEN.test(token)) throw new ConfigError(`${where}: the token must be non-empty visible ASCII without spaces`);
  return token;
}

/** `role:token` pairs, comma-separated. */
type Located = AccessToken & { where: string };

function tokensFromList(raw: string): Located[] {
  const entries = raw.split(",").map((e) => e.trim()).filter((e) => e !== "");
  if (entries.length === 0) throw new ConfigError("CLICK_ANALYTICS_TOKENS is set but lists no tokens; expected role:token pairs separated by commas");
  return entries.map((entry, i) => {
    const where = `CLICK_ANALYTICS_TOKENS entry ${i + 1}`;
    const colon = entry.indexOf(":");
    if (colon < 0) throw new ConfigError(`${where} must be role:token (roles: ${ROLES.join(", ")})`);
    const role = entry.slice(0, colon).trim();
    if (!isRole(role)) throw new ConfigError(`${where} has an unknown role; expected one of ${ROLES.join(", ")}`);
    return { role, token: checkedToken(entry.slice(colon + 1).trim(), where), where };
  });
}

/** `{ "tokens": [{ "token": "...", "role": "reader", "name": "dashboards" }] }` */
function tokensFromFile(path: string): Located[] {
  const name = "CLICK_ANALYTICS_TOKENS_FILE";
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    // JSON.parse's message can quote the file, tokens included: say only what kind of failure.
    const reason = error instanceof SyntaxError ? "is not valid JSON" : `cannot be read (${(error as NodeJS.ErrnoException).code ?? "error"})`;
    throw new ConfigError(`${name} "${path}" ${reason}`);
  }
  const list = (parsed as { tokens?: unknown } | null)?.tokens;
  if (!Array.isArray(list)) throw new ConfigError(`${name} "${path}" must be a JSON object with a "tokens" array`);
  if (list.length === 0) throw new ConfigError(`${name} "${path}" lists no tokens`);
  return list.map((entry: unknown, i) => {
    const where = `${name} tokens[${i}]`;
    const { token, role, name: label } = (entry ?? {}) as Record<string, unknown>;
    if (typeof token !== "string") throw new ConfigError(`${where}.token must be a string`);
    if (!isRole(role)) throw new ConfigError(`${where}.role must be one of ${ROLES.join(", ")}`);
    if (label !== undefined && typeof label !== "string") throw new ConfigError(`${where}.name must be a string`);
    return { token: checkedToken(token, where), role, name: label, where };
  });
}

/** All configured tokens; the same token may appear twice only with the same role. */
function accessTokens(env: NodeJS.ProcessEnv, adminToken: string | undefined): AccessToken[] {
  const tokens = [
    ...(env.CLICK_ANALYTICS_TOKENS ? tokensFromList(env.CLICK_ANALYTICS_TOKENS) : []),
    ...(env.CLICK_ANALYTICS_TOKENS_FILE ? tokensFromFile(env.CLICK_ANALYTICS_TOKENS_FILE) : []),
  ];
  const seen = new Map<string, Located>();
  for (const t of [...tokens, ...(adminToken === undefined ? [] : [{ token: adminToken, role: "admin" as const, where: "CLICK_ANALYTICS_ADMIN_TOKEN" }])]) {
    const earlier = seen.get(t.token);
    if (earlier && earlier.role !== t.role) throw new ConfigError(`${t.where} repeats the token of ${earlier.where} with a different role (${t.role}, not ${earlier.role})`);
    seen.set(t.token, t);
  }
  return tokens.map(({ token, role, name }) => ({ token, role, name }));
}

function pemFile(env: NodeJS.ProcessEnv, name: string): Buffer {
  const path = env[name]!;
  try {
    return readFileSync(path);
  } catch (error) {
    throw new ConfigError(`${name} "${path}" cannot be read (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
}

function tlsFromEnv(env: NodeJS.ProcessEnv): TlsConfig | undefined {
  const { TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile, TLS_CLIENT_CA_FILE: caFile } = env;
  if (!certFile && !keyFile) {
    if (caFile) throw new ConfigError("TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE");
    return undefined;
  }
  if (!certFile || !keyFile) throw new ConfigError(`TLS_CERT_FILE and TLS_KEY_FILE go together; ${certFile ? "TLS_KEY_FILE" : "TLS_CERT_FILE"} is not set`);
  const cert = pemFile(env, "TLS_CERT_FILE");
  const key = pemFile(env, "TLS_KEY_FILE");
  const clientCa = caFile ? pemFile(env, "TLS_CLIENT_CA_FILE") : undefined;
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    throw new ConfigError(`TLS_CERT_FILE "${certFile}" is not a PEM certificate`);
  }
  let matches: boolean;
  try {
    matches = x509.checkPrivateKey(createPrivateKey(key));
  } catch {
    throw new ConfigError(`TLS_KEY_FILE "${keyFile}" is not an unencrypted PEM private key`);
  }
  if (!matches) throw new ConfigError(`TLS_KEY_FILE "${keyFile}" is not the key of the certificate in TLS_CERT_FILE`);
  if (clientCa) {
    try {
      new X509Certificate(clientCa);
    } catch {
      throw new ConfigError(`TLS_CLIENT_CA_FILE "${caFile}" is not a PEM certificate`);
    }
  }
  return { cert, key, clientCa };
}

export function configFromEnv(env: NodeJS.ProcessEnv = process.env): EnvConfig {
  const logLevel = (env.LOG_LEVEL || "info") as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got "${logLevel}"`);
  const adminToken = env.CLICK_ANALYTICS_ADMIN_TOKEN ? checkedToken(env.CLICK_ANALYTICS_ADMIN_TOKEN, "CLICK_ANALYTICS_ADMIN_TOKEN") : undefined;
  return {
    host: env.HOST || "0.0.0.0",
    port: integer(env, "PORT", 50051, 0, 65535),
    mongoUri: env.MONGODB_URI || undefined,
    dbName: env.MONGODB_DB || "click_analytics",
    dataDir: env.DATA_DIR || "./data",
    adminToken,
    tokens: accessTokens(env, adminToken),
    tls: tlsFromEnv(env),
    logLevel,
    shutdownGraceMs: integer(env, "SHUTDOWN_GRACE_MS", 10_000, 0, 600_000),
    spool: { dir: env.SPOOL_DIR || `${env.DATA_DIR || "./data"}/spool`, maxBytes: integer(env, "SPOOL_MAX_BYTES", 512 * 1024 * 1024, 1024, Number.MAX_SAFE_INTEGER) },
    writeConcern: writeConcernFromEnv(env),
    rollupRepairAfterMs: integer(env, "ROLLUP_REPAIR_AFTER_MS", 60_000, 1_000, 86_400_000),
    watchMaxStreams: integer(env, "WATCH_MAX_STREAMS", DEFAULT_WATCH_MAX_STREAMS, 1, 1_000_000),
    watchMaxStreamsPerToken: integer(env, "WATCH_MAX_STREAMS_PER_TOKEN", DEFAULT_WATCH_MAX_STREAMS_PER_TOKEN, 1, 1_000_000),
    rawRetentionDays: integer(env, "RAW_RETENTION_DAYS", 0, 0, 36_500) || undefined,
    storagePingIntervalMs: integer(env, "STORAGE_PING_INTERVAL_MS", DEFAULT_PING_INTERVAL_MS, 100, 60_000),
    storagePingTimeoutMs: integer(env, "STORAGE_PING_TIMEOUT_MS", DEFAULT_PING_TIMEOUT_MS, 100, 600_000),
    streamIdleTimeoutMs: integer(env, "STREAM_IDLE_TIMEOUT_MS", DEFAULT_STREAM_IDLE_TIMEOUT_MS, 1_000, 86_400_000),
    streamsPerConnection: integer(env, "STREAMS_PER_CONNECTION", DEFAULT_STREAMS_PER_CONNECTION, 1, 100_000),
    ...metricsFromEnv(env),
  };
}

/** METRICS_PORT (default 9464, 0 picks a free port, "off" serves none) and METRICS_HOST (default HOST). */
function metricsFromEnv(env: NodeJS.ProcessEnv): { metricsPort: number | undefined; metricsHost: string } {
  const host = env.HOST || "0.0.0.0";
  const metricsHost = env.METRICS_HOST || host;
  const raw = env.METRICS_PORT;
  if (raw === "off") return { metricsPort: undefined, metricsHost };
  const metricsPort = raw === undefined || raw === "" ? 9464 : Number(raw);
  if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535) throw new ConfigError(`METRICS_PORT must be an integer between 0 and 65535, or "off", got "${raw}"`);
  if (metricsPort !== 0 && metricsHost === host && metricsPort === Number(env.PORT || 50051)) throw new ConfigError(`METRICS_PORT must differ from PORT (both are ${metricsPort})`);
  return { metricsPort, metricsHost };
}

function writeConcernFromEnv(env: NodeJS.ProcessEnv): { w: number | "majority"; journal: boolean } {
  const w = env.MONGODB_WRITE_CONCERN || "majority";
  if (w !== "majority" && !/^[1-9][0-9]?$/.test(w)) throw new ConfigError(`MONGODB_WRITE_CONCERN must be "majority" or a number of nodes (1-99), got "${w}"`);
  const journal = env.MONGODB_JOURNAL || "true";
  if (journal !== "true" && journal !== "false") throw new ConfigError(`MONGODB_JOURNAL must be true or false, got "${journal}"`);
  return { w: w === "majority" ? w : Number(w), journal: journal === "true" };
}
