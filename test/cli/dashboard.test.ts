/**
 * `click-analytics dashboard`: the compiled CLI serves its page from a live server and headless
 * Chromium (driven by playwright-core) shows it. Checked against the server's own answers, read
 * through the typed client: the numbers on the page (live table, comparison tables, verdict);
 * that they change without a reload when events are logged; that a restart of the server shows
 * "reconnecting … (attempt n)" and then "live" with current numbers; and that SIGTERM stops the
 * command cleanly. Without a browser: bad flags, "connecting" attempts while no server answers,
 * and exit 3 on a refused token. Without Chromium the browser tests are skipped (failed on CI),
 * as the HTML report's are.
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { createInterface } from "node:readline";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { chromium as playwright, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Inference, type EventSchema } from "../../src/client/index.js";
import { CHROMIUM_FLAGS, chromiumOrSkip, ensureChromium, type ChromiumLookup } from "../support/chromium.js";
import { startHarness, type Harness } from "../support/harness.js";
import { expectP, expectPercent, expectPercentInterval, expectShown, tableRows } from "../support/html-tables.js";
import { freePort } from "../support/server-process.js";

const CLI = path.join(path.resolve(import.meta.dirname, "../.."), "dist/src/cli/main.js");
const HOUR = 3_600_000;
const VARIANTS = ["search_v1", "search_v2"] as const;

// ---------------------------------------------------------------------------------------------
// Data: `searches` searches per variant over the last day, every `clickEvery`-th clicked once.

type EventInit = MessageInitShape<typeof EventSchema>;

function batch(tag: string, variant: string, searches: number, clickEvery: number, latencyBase: number, now: number): EventInit[] {
  const events: EventInit[] = [];
  for (let i = 0; i < searches; i++) {
    const id = `${tag}-${variant}-${i}`;
    const userId = `${variant}-u${i % 20}`;
    const ts = now - HOUR - i * 60_000;
    events.push({ kind: { case: "impression", value: { eventId: id, impressionId: id, userId, query: `q${i % 7}`, variant, resultsCount: 10, responseTimeMs: latencyBase + ((i * 37) % 90), timestamp: timestampFromMs(ts) } } });
    if (i % clickEvery === 0) events.push({ kind: { case: "click", value: { eventId: `${id}-c`, impressionId: id, userId, productId: `p${i}`, rank: i % 5, searchQuery: `q${i % 7}`, variant, responseTimeMs: 30, timestamp: timestampFromMs(ts + 4_000) } } });
  }
  return events;
}

async function logAll(h: Harness, events: EventInit[]): Promise<void> {
  for (let i = 0; i < events.length; i += 1000) {
    const r = await h.client.logEvents({ events: events.slice(i, i + 1000) });
    expect(Number(r.rejected)).toBe(0);
  }
}

// ---------------------------------------------------------------------------------------------
// The page

let port: number;
let h: Harness;
let chromium: ChromiumLookup;
let browser: Browser | undefined;
let page: Page;
let dashboard: ChildProcess;
let url: string;
const dashboardErr: string[] = [];

/** The board's HTML as the browser has it now. */
const board = () => page.$eval("#board", (el) => el.innerHTML);
const status = async () => ({ state: await page.getAttribute("#status", "data-state"), text: await page.textContent("#status .text"), detail: await page.textContent("#status .detail") });
/** Waits until the status line is in `state`. */
const waitForState = (state: string, timeout = 15_000) => page.waitForSelector(`#status[data-state="${state}"]`, { state: "attached", timeout });
const sequence = async () => Number(await page.getAttribute("#board", "data-sequence"));
const stale = async () => ((await page.getAttribute("#board", "class")) ?? "").split(" ").includes("stale");

/** The live table's row of a variant (the control's label carries " (control)"). */
function liveRow(html: string, variant: string): Record<string, string> {
  const row = tableRows(html, "live").rows.find((r) => r.variant!.replace(/ \(control\)$/, "") === variant);
  expect(row, `live row of ${variant}`).toBeDefined();
  return row!;
}

/** Waits until the live table shows `searches` for every variant. */
async function waitForSearches(expected: Record<string, number>): Promise<void> {
  await expect
    .poll(async () => {
      const html = await board();
      return html.includes('class="live"') ? Object.fromEntries(VARIANTS.map((v) => [v, liveRow(html, v).searches])) : {};
    }, { timeout: 20_000, interval: 200 })
    .toEqual(Object.fromEntries(Object.entries(expected).map(([v, n]) => [v, n.toLocaleString("en-US")])));
}

/** Every number the page shows, against the server's answers now: GetCtr, GetResponseTimeMetrics, GetVariantComparison. */
async function expectPageMatchesServer(client: Harness["client"], expected: Record<string, { searches: number; clicks: number }>): Promise<void> {
  const html = await board();
  const [ctr, comparison, ...latency] = await Promise.all([
    client.getCtr({ days: 30 }),
    client.getVariantComparison({ days: 30, inference: Inference.SEQUENTIAL }),
    ...VARIANTS.map((variant) => client.getResponseTimeMetrics({ days: 30, variant })),
  ]);
  for (const [i, variant] of VARIANTS.entries()) {
    const row = liveRow(html, variant);
    const v = ctr.variants[variant]!;
    expect([row.searches, row.clicks], `${variant}: searches, clicks`).toEqual([expected[variant]!.searches, expected[variant]!.clicks].map((n) => n.toLocaleString("en-US")));
    expect([v.impressions, v.clicks], `${variant}: the server's counts`).toEqual([BigInt(expected[variant]!.searches), BigInt(expected[variant]!.clicks)]);
    expectPercent(`${variant} CTR`, row.CTR!, v.ctr);
    expectPercent(`${variant} search CTR`, row["search CTR"]!, v.searchCtr);
    const l = latency[i]!;
    expectShown(`${variant} p50`, row["p50 ms"]!, l.p50ResponseTimeMs);
    expectShown(`${variant} p95`, row["p95 ms"]!, l.p95ResponseTimeMs);
    expectShown(`${variant} p99`, row["p99 ms"]!, l.p99ResponseTimeMs);
  }
  const all = tableRows(html, "live").rows.find((r) => r.variant === "all")!;
  expectPercent("overall CTR", all.CTR!, ctr.ctr);

  // The comparison: per variant CTR with its interval, then the lifts of search_v2 with intervals and p-values.
  const variants = tableRows(html, "variants");
  expect(variants.conf).toBe("95%");
  for (const row of variants.rows) {
    const name = row.variant!.replace(/ \(control\)$/, "");
    const v = comparison.variants[name]!;
    expect(row.users, `${name} users`).toBe(v.users.toLocaleString("en-US"));
    expectPercent(`${name} CTR`, row.CTR!, v.ctr);
    expectPercentInterval(`${name} CTR interval`, row["CTR interval"]!, v.ctrInterval);
  }
  const x = comparison.comparisons.find((c) => c.variant === "search_v2")!;
  const lines = tableRows(html, "comparisons").rows;
  for (const [metric, m] of [
    ["search CTR", x.searchCtr],
    ["CTR", x.ctr],
  ] as const) {
    const line = lines.find((l) => l.metric === metric)!;
    expect(line, metric).toBeDefined();
    expectPercent(`${metric} lift`, line.lift!, m!.lift?.value, " pp");
    expectPercentInterval(`${metric} lift interval`, line["lift interval"]!, m!.lift, " pp");
    expectP(`${metric} p`, line.p!, m!.pValue, m!.significant);
  }
  expect(html).toContain("sequential (always valid) inference");
  expect(html).toContain(comparison.recommendation ? `Recommendation: ship <strong>${comparison.recommendation}</strong>` : `Recommendation: none (${comparison.recommendationReason}`);
}

/** The compiled dashboard, with its stderr lines collected; resolves once it names its page. */
async function startDashboard(args: string[], stderr: string[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [CLI, "dashboard", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  createInterface({ input: child.stderr! }).on("line", (line) => stderr.push(line));
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", (line) => {
      const m = /^dashboard at (http:\/\/127\.0\.0\.1:\d+\/) /.exec(line);
      if (m) resolve(m[1]!);
      else reject(new Error(`unexpected first line: ${line}`));
    });
    child.once("exit", (code) => reject(new Error(`dashboard exited with ${code}: ${stderr.join("\n")}`)));
  });
  return { child, url };
}

async function exitCode(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const [code] = (await once(child, "exit")) as [number | null];
  return code;
}

beforeAll(async () => {
  port = await freePort();
  const [browserLookup, harness] = await Promise.all([ensureChromium(), startHarness({ port })]);
  chromium = browserLookup;
  h = harness;
  const now = Date.now();
  await logAll(h, [...batch("a", "search_v1", 120, 5, 20, now), ...batch("a", "search_v2", 120, 4, 28, now)]);
  ({ child: dashboard, url } = await startDashboard(["--address", h.server.address, "--port", "0", "--interval", "1", "--days", "30"], dashboardErr));
  if (chromium.path) {
    browser = await playwright.launch({ executablePath: chromium.path, args: CHROMIUM_FLAGS });
    page = await browser.newPage({ viewport: { width: 1000, height: 1200 } });
  }
}, 600_000);

afterAll(async () => {
  await browser?.close();
  if (dashboard && dashboard.exitCode === null && dashboard.signalCode === null) dashboard.kill("SIGKILL");
  await h?.close();
});

describe("dashboard", () => {
  it("rejects bad flags with a usage error naming the flag", async () => {
    for (const [flag, value] of [
      ["--port", "70000"],
      ["--interval", "0"],
    ] as const) {
      const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => execFile(process.execPath, [CLI, "dashboard", flag, value], (error, _stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, stderr })));
      expect(result.code, flag).toBe(64);
      expect(result.stderr).toContain(`click-analytics dashboard: ${flag} must be an integer`);
    }
  });

  it("says it is connecting, attempt after attempt, while no server answers", async () => {
    const closed = await freePort();
    const stderr: string[] = [];
    const { child, url: lonely } = await startDashboard(["--address", `127.0.0.1:${closed}`, "--port", "0"], stderr);
    try {
      const health = async () => {
        const r = await fetch(new URL("healthz", lonely));
        return { status: r.status, ...((await r.json()) as { state: string; attempt: number; error?: string }) };
      };
      await expect.poll(async () => (await health()).attempt, { timeout: 10_000, interval: 100 }).toBeGreaterThanOrEqual(3);
      const h503 = await health();
      expect([h503.status, h503.state]).toEqual([503, "connecting"]);
      expect(h503.error).toMatch(new RegExp(`^cannot reach ClickAnalytics at 127\\.0\\.0\\.1:${closed}: `));
      expect(stderr[0]).toMatch(new RegExp(`connecting to 127\\.0\\.0\\.1:${closed}… \\(attempt 2\\): cannot reach`));
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exitCode(child)).toBe(0);
  });

  it("stops with exit 3 when the server refuses it (retrying cannot help)", async () => {
    const guarded = await startHarness({ tokens: [{ token: "t", role: "reader" }] });
    try {
      const stderr: string[] = [];
      const { child } = await startDashboard(["--address", guarded.server.address, "--port", "0"], stderr);
      expect(await exitCode(child)).toBe(3);
      expect(stderr.join("\n")).toMatch(/^click-analytics dashboard: authentication failed: .*needs a token with role reader or admin$/m);
    } finally {
      await guarded.close();
    }
  });

  it("serves the page, its event stream and a health answer", async () => {
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-security-policy")).toMatch(/^default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-[A-Za-z0-9+/=]+'; connect-src 'self'$/);
    const html = await response.text();
    // Self-contained: nothing fetched but its own event stream.
    expect(html).not.toMatch(/<link|<img|<iframe|@import|url\(|\bsrc=|\bhref=/i);
    expect(html).toContain('new EventSource("events")');
    await expect.poll(async () => (await fetch(new URL("healthz", url))).status, { timeout: 15_000 }).toBe(200);
    expect((await fetch(new URL("nowhere", url))).status).toBe(404);
  });

  it("shows the server's numbers: live table, comparison and verdict", async (ctx) => {
    if (chromiumOrSkip(chromium, ctx) === undefined) return;
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
    await page.goto(url);
    await waitForState("live");
    expect((await status()).text).toBe(`live: ClickAnalytics at 127.0.0.1:${port}`);
    await waitForSearches({ search_v1: 120, search_v2: 120 });
    await expectPageMatchesServer(h.client, { search_v1: { searches: 120, clicks: 24 }, search_v2: { searches: 120, clicks: 30 } });
    expect(await page.$$eval("svg[data-chart]", (svgs) => svgs.map((s) => s.getAttribute("data-chart")))).toEqual(["ctr-daily", "search-ctr-daily", "clicks-by-rank", "ctr-by-rank", "latency"]);
    expect(errors, "no script errors (the CSP lets the page's own script run)").toEqual([]);
  });

  it("updates in place when events are logged", async (ctx) => {
    if (chromiumOrSkip(chromium, ctx) === undefined) return;
    // A mark on this document: a reload would lose it.
    const marker = await page.evaluate("window.marker = Math.random()");
    const before = await sequence();
    await logAll(h, [...batch("b", "search_v1", 40, 10, 20, Date.now()), ...batch("b", "search_v2", 60, 2, 90, Date.now())]);
    await waitForSearches({ search_v1: 160, search_v2: 180 });
    await expectPageMatchesServer(h.client, { search_v1: { searches: 160, clicks: 28 }, search_v2: { searches: 180, clicks: 60 } });
    expect(await page.evaluate("window.marker"), "the same document: no reload").toBe(marker);
    expect(await sequence()).toBeGreaterThan(before);
  });

  it("says it is reconnecting while the server restarts, then is live again with current numbers", { timeout: 60_000 }, async (ctx) => {
    if (chromiumOrSkip(chromium, ctx) === undefined) return;
    await h.server.close();
    h.client.close();
    await waitForState("reconnecting");
    // A few attempts fail against the closed port, each one on the page.
    await expect.poll(async () => Number(/\(attempt (\d+)\)$/.exec((await status()).text ?? "")?.[1] ?? 0), { timeout: 15_000, interval: 100 }).toBeGreaterThanOrEqual(3);
    const down = await status();
    expect(down.text).toMatch(new RegExp(`^reconnecting to 127\\.0\\.0\\.1:${port}… \\(attempt \\d+\\)$`));
    expect(down.detail).toMatch(new RegExp(`cannot reach ClickAnalytics at 127\\.0\\.0\\.1:${port}.*; retrying in \\d+\\.\\d s$`));
    expect(await stale(), "the last numbers are shown as stale").toBe(true);

    h = await startHarness({ port, dbName: h.dbName });
    await waitForState("live", 20_000);
    expect((await status()).text).toBe(`live: ClickAnalytics at 127.0.0.1:${port}`);
    expect(await stale()).toBe(false);
    // Numbers logged after the restart arrive too.
    await logAll(h, batch("c", "search_v1", 20, 1, 20, Date.now()));
    await waitForSearches({ search_v1: 180, search_v2: 180 });
    await expectPageMatchesServer(h.client, { search_v1: { searches: 180, clicks: 48 }, search_v2: { searches: 180, clicks: 60 } });
    expect(dashboardErr.join("\n")).toMatch(/reconnecting to 127\.0\.0\.1:\d+… \(attempt 2\): /);
  });

  it("stops cleanly on SIGTERM: exit 0, and an open page says so", async (ctx) => {
    dashboard.kill("SIGTERM");
    expect(await exitCode(dashboard)).toBe(0);
    expect(dashboardErr.at(-1)).toMatch(/stopped: the dashboard process has ended$/);
    if (chromiumOrSkip(chromium, ctx) === undefined) return;
    await waitForState("stopped", 5_000);
  });
});
