/**
 * The live dashboard's experiments pages in headless Chromium: /experiments lists the RUNNING
 * experiments (not drafts) with their health at a glance, as the server's scorecards say, and
 * links to each experiment's scorecard page. UPDATE_SCREENSHOT=1 writes docs/experiments.png.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { chromium as playwright, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { assign, ExperimentMetric, ExperimentStatus, type EventSchema, type Experiment } from "../../src/client/index.js";
import { CHROMIUM_FLAGS, chromiumOrSkip, ensureChromium, type ChromiumLookup } from "../support/chromium.js";
import { startHarness, type Harness } from "../support/harness.js";
import { mulberry32 } from "../support/prng.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const CLI = path.join(ROOT, "dist/src/cli/main.js");
type EventInit = MessageInitShape<typeof EventSchema>;

let h: Harness;
let chromium: ChromiumLookup;
let browser: Browser | undefined;
let page: Page;
let dashboard: ChildProcess | undefined;
let url: string;

async function running(key: string, displayName: string, arms: string[], weights: number[]): Promise<Experiment> {
  await h.client.createExperiment({
    experimentId: key,
    experiment: { displayName, arms: arms.map((variant, i) => ({ variant, weight: weights[i]! })), startTime: timestampFromMs(Date.now() - 3_600_000), guardrails: [{ metric: ExperimentMetric.P95_LATENCY, threshold: 0.2 }] },
  });
  return (await h.client.updateExperiment({ experiment: { name: `experiments/${key}`, status: ExperimentStatus.RUNNING }, updateMask: { paths: ["status"] } })).experiment!;
}

/** `users` users, each in the arm `arm` gives, two searches each within the last half hour. */
function traffic(seed: number, prefix: string, users: number, arm: (userId: string) => string): EventInit[] {
  const random = mulberry32(seed);
  const events: EventInit[] = [];
  for (let u = 0; u < users; u++) {
    const userId = `${prefix}-${u}`;
    const variant = arm(userId);
    for (let s = 0; s < 2; s++) {
      const id = `${userId}-${s}`;
      const ts = Date.now() - Math.floor(random() * 1_800_000);
      events.push({ kind: { case: "impression", value: { impressionId: id, userId, query: "q", variant, resultsCount: 10, responseTimeMs: 50 + random() * 20, timestamp: timestampFromMs(ts) } } });
      if (random() < 0.3) events.push({ kind: { case: "click", value: { eventId: `${id}-c`, impressionId: id, userId, productId: "p", rank: 0, searchQuery: "q", variant, responseTimeMs: 50, timestamp: timestampFromMs(ts + 1000) } } });
    }
  }
  return events;
}

beforeAll(async () => {
  const [lookup, harness] = await Promise.all([ensureChromium(), startHarness()]);
  chromium = lookup;
  h = harness;
  const fair = await running("ranker-v2", "Learning-to-rank v2", ["rank_v1", "rank_v2"], [1, 1]);
  await running("autocomplete", "Autocomplete typo tolerance", ["ac_old", "ac_new"], [1, 1]);
  await h.client.createExperiment({ experimentId: "not-started", experiment: { displayName: "Draft", arms: [{ variant: "x", weight: 1 }, { variant: "y", weight: 1 }] } });
  // ranker-v2 assigned by the client: a fair split. autocomplete: three users in four in ac_old (a broken split).
  const events = [...traffic(1, "shopper", 1200, (u) => assign(fair, u).variant!), ...traffic(2, "typist", 800, (u) => (Number(u.split("-")[1]) % 4 === 0 ? "ac_new" : "ac_old"))];
  for (let i = 0; i < events.length; i += 1000) expect((await h.client.logEvents({ events: events.slice(i, i + 1000) })).rejected).toBe(0n);
  dashboard = spawn(process.execPath, [CLI, "dashboard", "--address", h.server.address, "--port", "0", "--interval", "2", "--days", "1"], { stdio: ["ignore", "pipe", "ignore"] });
  url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: dashboard!.stdout! }).once("line", (line) => {
      const m = /^dashboard at (http:\/\/127\.0\.0\.1:\d+\/) /.exec(line);
      if (m) resolve(m[1]!);
      else reject(new Error(`unexpected first line: ${line}`));
    });
  });
  if (chromium.path) {
    browser = await playwright.launch({ executablePath: chromium.path, args: CHROMIUM_FLAGS });
    page = await browser.newPage({ viewport: { width: 1200, height: 520 } });
  }
}, 600_000);

afterAll(async () => {
  await browser?.close();
  if (dashboard && dashboard.exitCode === null) dashboard.kill("SIGKILL");
  await h?.close();
});

it("lists the running experiments with their health as the server's scorecards say, linking to each scorecard", async (ctx) => {
  if (!chromiumOrSkip(chromium, ctx)) return;
  const response = await page.goto(new URL("experiments", url).href);
  expect(response?.status()).toBe(200);
  expect(response?.headers().refresh).toBe("2");
  const rows = await page.$$eval("table.experiments tbody tr", (trs) =>
    trs.map((tr) => ({ key: tr.getAttribute("data-key"), healthy: tr.getAttribute("data-healthy"), cells: [...tr.querySelectorAll("td")].map((td) => (td as unknown as { innerText: string }).innerText.trim()) })),
  );
  // Running ones only, by key; the draft is not listed.
  expect(rows.map((r) => r.key)).toEqual(["autocomplete", "ranker-v2"]);
  for (const row of rows) {
    const s = (await h.client.getVariantComparison({ experiment: row.key! })).scorecard!;
    expect(row.healthy).toBe(String(s.health!.healthy));
    expect(row.cells[4], `${row.key} users`).toBe(Number(s.users).toLocaleString("en-US"));
    expect(row.cells[5], `${row.key} users needed`).toBe(s.usersNeeded === undefined ? "-" : Number(s.usersNeeded).toLocaleString("en-US"));
    expect(row.cells[6]).toMatch(s.health!.srmDetected ? /^MISMATCH$/ : /^ok \(p 0\.\d{3}\)$/);
  }
  const [autocomplete, ranker] = rows;
  expect(ranker!.healthy).toBe("true");
  expect(ranker!.cells.at(-1)).toBe("healthy");
  expect(ranker!.cells[4]).toBe("1,200");
  expect(autocomplete!.healthy).toBe("false");
  expect(autocomplete!.cells.at(-1)).toMatch(/^unhealthy\s+srm$/);
  if (process.env.UPDATE_SCREENSHOT) await page.screenshot({ path: path.join(ROOT, "docs/experiments.png") });

  // Each links to its scorecard.
  await page.click('a[href="/experiments/ranker-v2"]');
  await page.waitForURL(/\/experiments\/ranker-v2$/);
  const text = await page.textContent("pre.scorecard");
  expect(text).toMatch(/^Experiment experiments\/ranker-v2 \(RUNNING\): running 1h 0m$/m);
  expect(text).toMatch(/^Users: +1,200 so far/m);
  expect(text).toMatch(/^Health: +healthy$/m);
  expect(text).toContain("control rank_v1");
  expect(await page.title()).toBe("Learning-to-rank v2 (experiments/ranker-v2)");
  const missing = await page.goto(new URL("experiments/nope", url).href);
  expect(missing?.status()).toBe(502);
  expect(await page.textContent("p.error")).toMatch(/NOT_FOUND: experiments\/nope does not exist/);
});
