// Makes docs/dashboard.png, the README's picture of `click-analytics dashboard`, from the real
// tools: a server on the embedded engine in a temporary directory, `click-analytics load` for
// traffic, the dashboard, and headless Chromium (playwright-core) for the screenshot.
//
//   npm run build && node scripts/dashboard-screenshot.mjs [--chromium /usr/bin/chromium] [--out docs/dashboard.png]
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { createClickAnalyticsClient } from "../dist/src/client/index.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const CLI = path.join(ROOT, "dist/src/cli/main.js");
const { values } = parseArgs({ options: { chromium: { type: "string", default: "/usr/bin/chromium" }, out: { type: "string", default: path.join(ROOT, "docs/dashboard.png") } } });

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

const cli = (args, stdio = "inherit") => spawn(process.execPath, [CLI, ...args], { stdio });

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  await once(child, "exit");
}

const dataDir = await mkdtemp(path.join(os.tmpdir(), "ca-dashboard-shot-"));
const address = `127.0.0.1:${await freePort()}`;
const server = cli(["serve", "--host", "127.0.0.1", "--port", address.split(":")[1], "--data-dir", dataDir, "--log-level", "warn"]);
let dashboard;
let browser;
try {
  const client = createClickAnalyticsClient(address);
  await client.waitForReady(60_000);
  client.close();
  const load = cli(["load", "--events", "30000", "--seed", "42", "--address", address]);
  const [loaded] = await once(load, "exit");
  if (loaded !== 0) throw new Error(`load exited with ${loaded}`);

  dashboard = cli(["dashboard", "--address", address, "--port", "0", "--interval", "2"], ["ignore", "pipe", "inherit"]);
  const [line] = await once(createInterface({ input: dashboard.stdout }), "line");
  const url = /(http:\/\/\S+)/.exec(line)[1];

  browser = await chromium.launch({ executablePath: values.chromium, args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"] });
  const page = await browser.newPage({ viewport: { width: 1000, height: 1040 } });
  await page.goto(url);
  await page.waitForSelector('#status[data-state="live"]', { state: "attached", timeout: 30_000 });
  await page.waitForFunction(() => Number(document.getElementById("board").dataset.sequence) >= 2);
  await page.screenshot({ path: values.out });
  console.log(`wrote ${values.out}`);
} finally {
  await browser?.close();
  if (dashboard) await stop(dashboard);
  await stop(server);
  await rm(dataDir, { recursive: true, force: true });
}
