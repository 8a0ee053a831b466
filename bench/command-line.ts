/** The floor tools' command lines: a mistake is answered with its message and the usage, exit 2, no stack trace. */
import { parseArgs, type ParseArgsConfig } from "node:util";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** A mistake in the command line (its message ends with the usage). */
export class UsageError extends Error {}

/** parseArgs, strict, with any refusal turned into a UsageError carrying `usage`. */
export function parseCommandLine<T extends Options>(options: T, usage: string): ReturnType<typeof parseArgs<{ options: T; strict: true; allowPositionals: false }>> {
  try {
    return parseArgs({ options, strict: true, allowPositionals: false });
  } catch (error) {
    throw new UsageError(`${error instanceof Error ? error.message : String(error)}\n${usage}`);
  }
}

/** Runs a tool's main: a UsageError exits 2 with `<tool>: message`, anything else 1 with its stack. */
export function runTool(tool: string, main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    if (error instanceof UsageError) process.stderr.write(`${tool}: ${error.message}\n`);
    else process.stderr.write(`${tool}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(error instanceof UsageError ? 2 : 1);
  });
}
