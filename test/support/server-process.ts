/** The compiled server (dist/, built by test/build-setup.ts) as a child process, for tests that watch a real process. */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import net from "node:net";
import { createInterface } from "node:readline";

export const SERVER_MAIN = join(resolve(import.meta.dirname, "../.."), "dist/src/server/main.js");

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  address: string;
  /** JSON log lines so far. */
  logs: Record<string, unknown>[];
  /** Resident set size now, in bytes. */
  rss(): Promise<number>;
  /** Sends the signal and resolves with the exit code (null when killed by a signal). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startServerProcess(env: Record<string, string>): Promise<ServerProcess> {
  const child = spawn(process.execPath, [SERVER_MAIN], { env: { ...process.env, HOST: "127.0.0.1", PORT: "0", METRICS_PORT: "0", LOG_LEVEL: "info", ...env }, stdio: ["ignore", "ignore", "pipe"] });
  const logs: Record<string, unknown>[] = [];
  const port = await new Promise<number>((resolvePort, reject) => {
    createInterface({ input: child.stderr! }).on("line", (line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry.msg === "click-analytics listening") resolvePort(entry.port as number);
      } catch {
        logs.push({ raw: line });
      }
    });
    child.once("exit", (code) => reject(new Error(`server exited with ${code}: ${JSON.stringify(logs)}`)));
  });
  return {
    child,
    port,
    address: `127.0.0.1:${port}`,
    logs,
    async rss() {
      const status = await readFile(`/proc/${child.pid}/status`, "utf8");
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
    },
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const [code] = (await once(child, "exit")) as [number | null];
      return code;
    },
  };
}

/** A TCP port free on 127.0.0.1 right now (for an engine that must come back on the same port). */
export function freePort(): Promise<number> {
  return new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
