/**
 * What every `click-analytics` command shares: flag parsing with usage errors, the connection
 * flags (address, token, TLS) and the typed client they build, and turning a failed call into
 * one clear line with a distinct exit code.
 */
import { readFileSync } from "node:fs";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClickAnalyticsClient, Status, type ClickAnalyticsClient, type ClientTlsOptions, type ServiceError } from "../../client/index.js";
import { wantsColor, createStyle, type Style } from "../format.js";

/** Exit codes (sysexits-style where one fits). */
export const EXIT = {
  ok: 0,
  /** The server answered with an error not covered below. */
  failure: 1,
  /** The server could not be reached (or did not answer in time, or is itself unavailable). */
  unreachable: 2,
  /** The token was missing, unknown, or lacks the role for the call. */
  auth: 3,
  /** Bad flags or arguments (EX_USAGE). */
  usage: 64,
  /** Interrupted by Ctrl-C while the work was unfinished. */
  interrupted: 130,
} as const;

/** A failure the command reports as one line on stderr, exiting with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failure,
  ) {
    super(message);
    this.name = "CliError";
  }
}

/** Bad flags: the message, then the command's usage, exit 64. */
export class UsageError extends CliError {
  constructor(
    message: string,
    readonly usage?: string,
  ) {
    super(message, EXIT.usage);
    this.name = "UsageError";
  }
}

/** Where a command writes; tests and the entry point pass process streams. */
export interface Io {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
  /** Aborted on Ctrl-C (SIGINT) or SIGTERM. */
  signal: AbortSignal;
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(argv: string[], io: Io): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig["options"]>;
export type FlagValues = Record<string, string | boolean | undefined>;

/** Flags every command takes. */
export const COMMON_OPTIONS = {
  help: { type: "boolean", short: "h" },
} as const satisfies Options;

/**
 * parseArgs, strictly: unknown flags, missing values and stray arguments are usage errors.
 * Returns undefined when --help was asked for (the usage is printed on stdout).
 */
export function parseFlags(argv: string[], options: Options, usage: string, io: Io): FlagValues | undefined {
  let values: FlagValues;
  try {
    ({ values } = parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...options }, strict: true, allowPositionals: false }) as { values: FlagValues });
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/\. To specify a positional argument.*$/s, "."), usage);
  }
  if (values.help === true) {
    io.stdout.write(`${usage}\n`);
    return undefined;
  }
  return values;
}

/** An integer flag in [min, max], or the default when absent. */
export function intFlag(values: FlagValues, name: string, fallback: number, min: number, max: number, usage: string): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = typeof raw === "string" && /^-?\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer between ${min} and ${max}, got "${String(raw)}"`, usage);
  return n;
}

/** A number flag in [min, max] (inclusive unless `exclusive`), or the default when absent. */
export function numberFlag(values: FlagValues, name: string, fallback: number | undefined, min: number, max: number, usage: string, exclusive = false): number | undefined {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : Number.NaN;
  const inRange = exclusive ? n > min && n < max : n >= min && n <= max;
  if (!Number.isFinite(n) || !inRange) throw new UsageError(`--${name} must be a number ${exclusive ? "strictly " : ""}between ${min} and ${max}, got "${String(raw)}"`, usage);
  return n;
}

/** One of a fixed set of words. */
export function choiceFlag<T extends string>(values: FlagValues, name: string, choices: readonly T[], fallback: T, usage: string): T {
  const raw = values[name];
  if (raw === undefined) return fallback;
  if (!choices.includes(raw as T)) throw new UsageError(`--${name} must be one of ${choices.join(", ")}, got "${String(raw)}"`, usage);
  return raw as T;
}

export function stringFlag(values: FlagValues, name: string): string | undefined {
  const raw = values[name];
  return typeof raw === "string" ? raw : undefined;
}

// ---------------------------------------------------------------------------------------------
// Colour

export const COLOR_OPTIONS = {
  color: { type: "boolean" },
  "no-color": { type: "boolean" },
} as const satisfies Options;

export const COLOR_HELP = `  --color / --no-color    force colour on / off (default: on for a terminal, off when NO_COLOR is set)`;

export function styleFor(values: FlagValues, io: Io): Style {
  return createStyle(wantsColor(io.stdout, { color: values.color === true, noColor: values["no-color"] === true }, io.env));
}

// ---------------------------------------------------------------------------------------------
// Connection

export const DEFAULT_ADDRESS = "localhost:50051";
export const DEFAULT_TIMEOUT_S = 10;

export const CONNECTION_OPTIONS = {
  address: { type: "string" },
  token: { type: "string" },
  "tls-ca": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "tls-server-name": { type: "string" },
  timeout: { type: "string" },
} as const satisfies Options;

export const CONNECTION_HELP = `Connection:
  --address HOST:PORT     the ClickAnalytics server (default $CLICK_ANALYTICS_ADDRESS or ${DEFAULT_ADDRESS})
  --token TOKEN           bearer token (default $CLICK_ANALYTICS_TOKEN; the variable keeps it out of
                          the process list)
  --tls-ca FILE           connect with TLS, trusting this PEM CA bundle
  --tls-cert FILE         client certificate (PEM) for mutual TLS; with --tls-key
  --tls-key FILE          its private key (PEM)
  --tls-server-name NAME  check the server certificate against NAME instead of the address's host
  --timeout SECONDS       deadline of each call (default ${DEFAULT_TIMEOUT_S})`;

export interface Connection {
  address: string;
  token?: string | undefined;
  tls?: ClientTlsOptions | undefined;
  timeoutMs: number;
}

function pemFile(values: FlagValues, name: string, usage: string): Buffer | undefined {
  const path = stringFlag(values, name);
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (error) {
    throw new UsageError(`--${name} ${path}: cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`, usage);
  }
}

export function connectionFrom(values: FlagValues, usage: string, env: NodeJS.ProcessEnv): Connection {
  const address = stringFlag(values, "address") ?? (env.CLICK_ANALYTICS_ADDRESS || DEFAULT_ADDRESS);
  if (address.trim() === "") throw new UsageError("--address must not be empty", usage);
  const token = stringFlag(values, "token") ?? (env.CLICK_ANALYTICS_TOKEN || undefined);
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) throw new UsageError("--token must be visible ASCII without spaces", usage);
  const ca = pemFile(values, "tls-ca", usage);
  const cert = pemFile(values, "tls-cert", usage);
  const key = pemFile(values, "tls-key", usage);
  const serverNameOverride = stringFlag(values, "tls-server-name");
  if ((cert === undefined) !== (key === undefined)) throw new UsageError("--tls-cert and --tls-key go together", usage);
  const useTls = ca !== undefined || cert !== undefined || serverNameOverride !== undefined;
  const timeoutS = numberFlag(values, "timeout", DEFAULT_TIMEOUT_S, 0, 86_400, usage, true)!;
  return {
    address,
    token,
    tls: !useTls ? undefined : cert !== undefined && key !== undefined ? { ca, serverNameOverride, cert, key } : { ca, serverNameOverride },
    timeoutMs: Math.round(timeoutS * 1000),
  };
}

/** The published typed client for these flags. */
export function openClient(conn: Connection): ClickAnalyticsClient {
  return createClickAnalyticsClient(conn.address, { token: conn.token, tls: conn.tls, defaultTimeoutMs: conn.timeoutMs });
}

function isServiceError(error: unknown): error is ServiceError {
  return typeof error === "object" && error !== null && typeof (error as ServiceError).code === "number" && "details" in error;
}

/** UNAVAILABLE that the server itself sent (it is up, its storage is not), as opposed to no connection. */
const SERVER_SIDE_UNAVAILABLE = /^(storage is unavailable|metrics are unavailable|the export is unavailable)/;

/** grpc-js connection messages on one line, without their empty "Resolution note:" tail. */
export function tidyDetails(details: string): string {
  return details
    .replace(/\s*\n\s*/g, " ")
    .replace(/Last error: Error: /g, "Last error: ")
    .replace(/\.?\s*Resolution note:\s*$/, "")
    .trim();
}

/** A failed call as one line and an exit code; anything that is not a gRPC status passes through. */
export function callFailure(error: unknown, conn: Connection): unknown {
  if (!isServiceError(error)) return error;
  const details = tidyDetails(error.details || error.message);
  switch (error.code) {
    case Status.UNAVAILABLE:
      if (SERVER_SIDE_UNAVAILABLE.test(details)) return new CliError(`ClickAnalytics at ${conn.address} is unavailable: ${details}`, EXIT.unreachable);
      return new CliError(`cannot reach ClickAnalytics at ${conn.address}: ${details}`, EXIT.unreachable);
    case Status.DEADLINE_EXCEEDED:
      // grpc-js names the remote address once a connection was made.
      if (!/remote_addr=\S/.test(details)) return new CliError(`cannot reach ClickAnalytics at ${conn.address}: no connection within ${conn.timeoutMs / 1000} s (${details})`, EXIT.unreachable);
      return new CliError(`ClickAnalytics at ${conn.address} did not answer within ${conn.timeoutMs / 1000} s (--timeout): ${details}`, EXIT.unreachable);
    case Status.UNAUTHENTICATED:
      return new CliError(`authentication failed: ${details}`, EXIT.auth);
    case Status.PERMISSION_DENIED:
      return new CliError(`permission denied: ${details}`, EXIT.auth);
    case Status.INVALID_ARGUMENT:
      return new CliError(`invalid argument: ${details}`, EXIT.usage);
    case Status.CANCELLED:
      return new CliError("cancelled", EXIT.interrupted);
    default:
      return new CliError(`ClickAnalytics at ${conn.address} failed: ${Status[error.code] ?? error.code}: ${details}`, EXIT.failure);
  }
}

/** Runs `body` with a client for the connection, closing it afterwards and translating failures. */
export async function withClient<T>(conn: Connection, body: (client: ClickAnalyticsClient) => Promise<T>): Promise<T> {
  const client = openClient(conn);
  try {
    return await body(client);
  } catch (error) {
    throw callFailure(error, conn);
  } finally {
    client.close();
  }
}

/** The window flag shared by the reading commands. */
export const DAYS_HELP = `  --days N                look back N days, 1..365 (default 30)`;
export const DEFAULT_DAYS = 30;

export function daysFlag(values: FlagValues, usage: string): number {
  return intFlag(values, "days", DEFAULT_DAYS, 1, 365, usage);
}

/** A time flag: ISO 8601 (a date alone means its UTC midnight). */
export function timeFlag(values: FlagValues, name: string, usage: string): Date | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const t = typeof raw === "string" && raw.trim() !== "" ? new Date(raw.trim()) : new Date(Number.NaN);
  if (!Number.isFinite(t.getTime())) throw new UsageError(`--${name} must be a time in ISO 8601 (e.g. 2026-11-01 or 2026-11-01T09:00:00Z), got "${String(raw)}"`, usage);
  return t;
}

/** The window flags: --days, or the period --start [--end]. */
export interface WindowFlags {
  days: number;
  startTime?: Date | undefined;
  endTime?: Date | undefined;
}

export function windowFlags(values: FlagValues, usage: string): WindowFlags {
  const startTime = timeFlag(values, "start", usage);
  const endTime = timeFlag(values, "end", usage);
  if (startTime === undefined) {
    if (endTime !== undefined) throw new UsageError("--end needs --start", usage);
    return { days: daysFlag(values, usage) };
  }
  if (values.days !== undefined) throw new UsageError("--days and --start cannot be combined", usage);
  return { days: 0, startTime, endTime };
}

/** The request fields of window flags. */
export function windowRequest(w: WindowFlags) {
  return { days: w.days, ...(w.startTime ? { startTime: timestampFromDate(w.startTime) } : {}), ...(w.endTime ? { endTime: timestampFromDate(w.endTime) } : {}) };
}

/** `name=weight,name=weight`. */
export function splitFlag(values: FlagValues, name: string, usage: string): Record<string, number> | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const out: Record<string, number> = {};
  for (const part of String(raw).split(",")) {
    const [variant, weight] = part.split("=");
    const w = Number(weight);
    if (!variant || weight === undefined || !Number.isFinite(w) || w <= 0) throw new UsageError(`--${name} must be variant=weight pairs with positive weights, e.g. search_v1=1,search_v2=1; got "${String(raw)}"`, usage);
    out[variant.trim()] = w;
  }
  return out;
}

/** Writes text to a stream, waiting when it asks to (large outputs into a slow pipe). */
export async function writeText(stream: NodeJS.WritableStream, text: string): Promise<void> {
  if (!stream.write(text)) {
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error) => {
        stream.off("drain", done);
        stream.off("error", done);
        if (error) reject(error);
        else resolve();
      };
      stream.once("drain", done);
      stream.once("error", done);
    });
  }
}
