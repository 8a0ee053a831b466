// Regenerates the command transcripts the docs show, from the real tools: a server on the
// embedded engine in a temporary directory, 100,000 events from `click-analytics load`, then
// each command piped (so no colours, and the progress bar prints a line per tenth). Each
// transcript replaces the ```console block after its `<!-- transcript: name -->` marker.
//
//   npm run docs:transcripts
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createClickAnalyticsClient } from "../dist/src/client/index.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const CLI = path.join(ROOT, "dist/src/cli/main.js");
const HOUR = 3_600_000;

/** The docs' default port when it is free (so the transcripts show the address a reader sees), else any. */
const freePort = (preferred = 50051) =>
  new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(preferred === 0 ? Promise.reject(new Error("no free port")) : freePort(0)));
    s.listen(preferred, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

/** Runs `click-analytics <args>` against the server, returning "$ click-analytics …" and its output. */
async function run(args, env) {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const [code] = await once(child, "exit");
  if (code !== 0) throw new Error(`click-analytics ${args.join(" ")} exited with ${code}:\n${out}`);
  return `$ click-analytics ${args.join(" ")}\n${out.trimEnd()}`;
}

async function replaceTranscript(file, name, transcript) {
  const full = path.join(ROOT, file);
  const text = await readFile(full, "utf8");
  const marker = `<!-- transcript: ${name} -->\n\`\`\`console\n`;
  const at = text.indexOf(marker);
  if (at < 0) throw new Error(`${file}: no ${marker.trim()}`);
  const end = text.indexOf("\n```", at + marker.length);
  await writeFile(full, text.slice(0, at + marker.length) + transcript + text.slice(end));
  console.log(`${file}: ${name} (${transcript.split("\n").length} lines)`);
}

const dataDir = await mkdtemp(path.join(os.tmpdir(), "ca-transcripts-"));
const port = await freePort();
const address = `localhost:${port}`;
const server = spawn(process.execPath, [CLI, "serve", "--host", "127.0.0.1", "--port", String(port), "--data-dir", dataDir, "--log-level", "warn"], { stdio: "inherit", env: { ...process.env, METRICS_PORT: "off" } });
try {
  const client = createClickAnalyticsClient(address);
  await client.waitForReady(60_000);
  client.close();
  const env = { CLICK_ANALYTICS_ADDRESS: address };
  const tour = [
    await run(["load", "--events", "100000", "--seed", "42"], env),
    await run(["report", "--days", "30"], env),
    await run(["top-queries", "--limit", "5"], env),
  ];
  await replaceTranscript("README.md", "tour", tour.join("\n"));
  // CUPED over the last 14 days (from a whole hour), against each user bucket's previous 14.
  const start = new Date(Math.floor((Date.now() - 14 * 24 * HOUR) / HOUR) * HOUR).toISOString().replace(".000Z", "Z");
  await replaceTranscript("docs/statistics.md", "cuped", await run(["report", "--start", start, "--cuped"], env));
} finally {
  server.kill("SIGTERM");
  await once(server, "exit");
  await rm(dataDir, { recursive: true, force: true });
}
