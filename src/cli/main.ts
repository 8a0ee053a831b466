#!/usr/bin/env node
/** The `click-analytics` bin: runs one command line (src/cli/index.ts) with process I/O and signals. */
import { EXIT } from "./commands/common.js";
import { runCli } from "./index.js";

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const controller = new AbortController();
  // serve installs the server's own signal handling; the other commands stop on the first
  // Ctrl-C (cleanly: a watch ends, an export removes its partial file) and exit on the second.
  if (argv[0] !== "serve") {
    const onSignal = () => {
      if (controller.signal.aborted) process.exit(EXIT.interrupted);
      controller.abort();
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  }
  // A closed pipe (`click-analytics export | head`) is not an error.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(0);
    throw error;
  });
  const code = await runCli(argv, { stdout: process.stdout, stderr: process.stderr, env: process.env, signal: controller.signal });
  process.exitCode = code;
  // Let stdout drain, then leave even if some handle (a grpc-js timer) lingers.
  const flushed = () => process.exit(code);
  if (process.stdout.writableLength === 0) flushed();
  else process.stdout.once("drain", flushed);
}

void main();
