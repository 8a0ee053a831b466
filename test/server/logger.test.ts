/**
 * The server's log lines go to stderr asynchronously (a call's line is not written on its answer's
 * path); none may be lost when the process ends right after logging: on process.exit, or on an
 * uncaught exception. The compiled logger (dist/, built by test/build-setup.ts) in a child process.
 */
import { spawn } from "node:child_process";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { expect, it } from "vitest";

const LOGGER = pathToFileURL(join(resolve(import.meta.dirname, "../.."), "dist/src/server/logger.js")).href;
const LINES = 5_000;

/** Runs `ending` after logging LINES lines as fast as it can; resolves with stderr and the exit code. */
function logThen(ending: string): Promise<{ stderr: string; code: number | null }> {
  const script = `const { createLogger } = await import(${JSON.stringify(LOGGER)});
const log = createLogger("info");
for (let i = 0; i < ${LINES}; i++) log.info({ i }, "line");
${ending}`;
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ stderr, code }));
  });
}

const loggedLines = (stderr: string) => stderr.split("\n").filter((l) => l.startsWith("{") && (JSON.parse(l) as { msg?: string }).msg === "line");

it("writes every line logged before process.exit", { timeout: 30_000 }, async () => {
  const { stderr, code } = await logThen("process.exit(3);");
  expect(code).toBe(3);
  const lines = loggedLines(stderr);
  expect(lines).toHaveLength(LINES);
  expect((JSON.parse(lines.at(-1)!) as { i: number }).i).toBe(LINES - 1);
});

it("writes every line logged before an uncaught exception ends the process", { timeout: 30_000 }, async () => {
  const { stderr, code } = await logThen('throw new Error("boom");');
  expect(code).toBe(1);
  expect(stderr).toContain("boom");
  expect(loggedLines(stderr)).toHaveLength(LINES);
});
