/**
 * The package's `click-analytics/cli` entry (the `click-analytics` bin runs it from main.ts):
 * the command line of ClickAnalytics. `serve` runs the server; every other
 * command talks to a server through the published typed client.
 *
 * Exit codes: 0 ok, 1 the server answered with an error, 2 the server could not be reached (or
 * did not answer in time), 3 authentication or permission failure, 64 bad flags, 130 interrupted.
 */
import { readFileSync } from "node:fs";
import { CliError, EXIT, UsageError, type Command, type Io } from "./commands/common.js";
import { dashboardCommand } from "./commands/dashboard.js";
import { experimentsCommand } from "./commands/experiments.js";
import { exportCommand } from "./commands/export.js";
import { interleavingCommand } from "./commands/interleaving.js";
import { loadCommand } from "./commands/load.js";
import { reportCommand } from "./commands/report.js";
import { serveCommand } from "./commands/serve.js";
import { topQueriesCommand } from "./commands/top-queries.js";
import { watchCommand } from "./commands/watch.js";

export { EXIT, type Command, type Io } from "./commands/common.js";

export const COMMANDS: readonly Command[] = [serveCommand, reportCommand, topQueriesCommand, interleavingCommand, watchCommand, dashboardCommand, exportCommand, loadCommand, experimentsCommand];

export const USAGE = `usage: click-analytics <command> [flags]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(13)}${c.summary}`).join("\n")}

Run \`click-analytics <command> --help\` for a command's flags. Every command but serve talks to a
server at --address (default $CLICK_ANALYTICS_ADDRESS or localhost:50051), with --token (or
$CLICK_ANALYTICS_TOKEN) and TLS flags where needed.

Exit codes: 0 ok, 1 the server answered with an error, 2 the server could not be reached,
3 authentication failed (or the token's role may not call the method), 64 bad flags or arguments,
130 interrupted.`;

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version?: string };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}

/** Runs one command line; resolves with the exit code. Never throws. */
export async function runCli(argv: string[], io: Io): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    const topic = name === "help" ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    if (name === undefined) {
      io.stderr.write(`${USAGE}\n`);
      return EXIT.usage;
    }
    io.stdout.write(`${topic ? topic.usage : USAGE}\n`);
    return 0;
  }
  if (name === "--version" || name === "-V") {
    io.stdout.write(`click-analytics ${version()}\n`);
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    io.stderr.write(`click-analytics: unknown command "${name}"\n\n${USAGE}\n`);
    return EXIT.usage;
  }
  try {
    return await command.run(rest, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`click-analytics ${command.name}: ${error.message}\n\n${error.usage ?? command.usage}\n`);
      return error.exitCode;
    }
    if (error instanceof CliError) {
      io.stderr.write(`click-analytics ${command.name}: ${error.message}\n`);
      return error.exitCode;
    }
    io.stderr.write(`click-analytics ${command.name}: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return EXIT.failure;
  }
}
