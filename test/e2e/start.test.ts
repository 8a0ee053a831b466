/**
 * `npm start`'s program (compiled by test/build-setup.ts) as a real process: embedded engine on DATA_DIR, serving, SIGTERM shutdown,
 * and data kept across restarts.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createClickAnalyticsClient } from "../../src/client/index.js";
import { SERVER_MAIN as main, startServerProcess, type ServerProcess } from "../support/server-process.js";
let dataDir: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "ca-start-"));
});
afterAll(() => rm(dataDir, { recursive: true, force: true }));

const start = (env: Record<string, string>) => startServerProcess({ DATA_DIR: dataDir, ...env });
const stop = (s: ServerProcess, signal: NodeJS.Signals) => s.stop(signal);

it("serves with the embedded engine, stops cleanly on SIGTERM and keeps data across restarts", { timeout: 120_000 }, async () => {
  const first = await start({});
  const client = createClickAnalyticsClient(`127.0.0.1:${first.port}`);
  await client.logImpression({ userId: "restart-user", query: "kept", variant: "search_v1", resultsCount: 3, responseTimeMs: 9 });
  await client.logClick({ userId: "restart-user", productId: "p", rank: 0, searchQuery: "kept", variant: "search_v1", responseTimeMs: 9 });
  client.close();
  expect(await stop(first, "SIGTERM")).toBe(0);
  expect(first.logs.map((l) => l.msg)).toContain("click-analytics stopped");
  // Connected through the engine's own Unix socket, not its TCP front.
  expect(first.logs.find((l) => String(l.msg).startsWith("MONGODB_URI not set"))).toMatchObject({ uri: expect.stringMatching(/^mongodb:\/\/%2F.+\.sock\/\?directConnection=true$/) });

  const second = await start({});
  const again = createClickAnalyticsClient(`127.0.0.1:${second.port}`);
  try {
    expect(await again.getCtr({ userId: "restart-user" })).toMatchObject({ clicks: 1n, impressions: 1n, ctr: 1 });
  } finally {
    again.close();
    expect(await stop(second, "SIGINT")).toBe(0);
  }
});

it("the engine does not outlive a server that was killed", { timeout: 60_000 }, async () => {
  const s = await start({});
  const enginePid = s.logs.find((l) => typeof l.pid === "number")?.pid as number;
  expect(enginePid).toBeGreaterThan(0);
  expect(await stop(s, "SIGKILL")).toBeNull();
  const alive = () => {
    try {
      process.kill(enginePid, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 100 && alive(); i++) await new Promise((r) => setTimeout(r, 100));
  expect(alive()).toBe(false);
  // it closed cleanly: the directory opens again
  const again = await start({});
  expect(await stop(again, "SIGTERM")).toBe(0);
});

it("refuses invalid configuration with one clear message", async () => {
  const child = spawn(process.execPath, [main], { env: { ...process.env, PORT: "not-a-port" }, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, "exit")) as [number];
  expect(code).toBe(1);
  expect(stderr).toMatch(/invalid configuration: PORT must be an integer between 0 and 65535, got "not-a-port"/);
});
