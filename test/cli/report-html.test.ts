/**
 * `click-analytics report --html`: the compiled CLI writes the page from a live server, and a real
 * browser (headless Chromium) renders it. Checked: the file references nothing outside itself,
 * Chromium's DOM holds every chart with non-degenerate lines, bands and bars, and a screenshot
 * shows the variants' colours. The tables' numbers are read by column header and row label and
 * compared with the server's answer (test/support/html-tables.ts). Chromium comes from
 * test/support/chromium.ts: installed with apt where missing, else the browser test is skipped
 * with the reason, except on CI, where a missing Chromium fails the run.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { inflateSync } from "node:zlib";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EventSchema } from "../../src/client/index.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { pValue } from "../../src/cli/format.js";
import { chromiumArgs, chromiumOrSkip, ensureChromium, type ChromiumLookup } from "../support/chromium.js";
import { startHarness, type Harness } from "../support/harness.js";
import { expectP, expectPercent, expectPercentInterval, expectShown, tableRows } from "../support/html-tables.js";

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, "../..");
const CLI = path.join(ROOT, "dist/src/cli/main.js");
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

// ---------------------------------------------------------------------------------------------
// PNG (just enough to read Chromium's screenshots: 8-bit RGB or RGBA, non-interlaced)

function decodePng(png: Buffer): { width: number; height: number; channels: number; pixels: Uint8Array } {
  expect(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true);
  let offset = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  while (offset < png.length) {
    const length = png.readUInt32BE(offset);
    const type = png.toString("latin1", offset + 4, offset + 8);
    const data = png.subarray(offset + 8, offset + 8 + length);
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const bitDepth = data[8]!;
      const colorType = data[9]!;
      expect(bitDepth).toBe(8);
      expect(data[12]).toBe(0); // not interlaced
      channels = colorType === 6 ? 4 : colorType === 2 ? 3 : 0;
      expect(channels, `PNG colour type ${colorType}`).toBeGreaterThan(0);
    } else if (type === "IDAT") idat.push(data);
    else if (type === "IEND") break;
    offset += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const pixels = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? pixels[y * stride + x - channels]! : 0;
      const b = y > 0 ? pixels[(y - 1) * stride + x]! : 0;
      const c = x >= channels && y > 0 ? pixels[(y - 1) * stride + x - channels]! : 0;
      let predictor = 0;
      if (filter === 1) predictor = a;
      else if (filter === 2) predictor = b;
      else if (filter === 3) predictor = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      pixels[y * stride + x] = (line[x]! + predictor) & 0xff;
    }
  }
  return { width, height, channels, pixels };
}

function countColor(image: ReturnType<typeof decodePng>, hex: string, tolerance = 12): number {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)) as [number, number, number];
  let n = 0;
  for (let i = 0; i < image.pixels.length; i += image.channels) {
    if (Math.abs(image.pixels[i]! - r) <= tolerance && Math.abs(image.pixels[i + 1]! - g) <= tolerance && Math.abs(image.pixels[i + 2]! - b) <= tolerance) n++;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// SVG geometry from Chromium's DOM

/** The numbers of a path's `d` as [x, y] pairs (the report draws with M/L/Z only). */
function pathPoints(d: string): [number, number][] {
  const numbers = (d.match(/-?\d+(?:\.\d+)?/g) ?? []).map(Number);
  const out: [number, number][] = [];
  for (let i = 0; i + 1 < numbers.length; i += 2) out.push([numbers[i]!, numbers[i + 1]!]);
  return out;
}

function extent(points: [number, number][]): { width: number; height: number } {
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  return { width: Math.max(...xs) - Math.min(...xs), height: Math.max(...ys) - Math.min(...ys) };
}

/** Every element `<tag ... class="cls" ...>` inside the chart's <svg>, as attribute maps. */
function elements(svg: string, tag: string, cls: string): Record<string, string>[] {
  const out: Record<string, string>[] = [];
  for (const m of svg.matchAll(new RegExp(`<${tag}\\b([^>]*)>`, "g"))) {
    const attrs = Object.fromEntries([...m[1]!.matchAll(/([\w:-]+)="([^"]*)"/g)].map((a) => [a[1]!, a[2]!]));
    if (attrs.class === cls) out.push(attrs);
  }
  return out;
}

function chartSvg(dom: string, chart: string): string {
  const start = dom.indexOf(`<svg data-chart="${chart}"`);
  expect(start, `chart ${chart} in the rendered DOM`).toBeGreaterThanOrEqual(0);
  return dom.slice(start, dom.indexOf("</svg>", start) + 6);
}

// ---------------------------------------------------------------------------------------------
// Data: 12 days of two variants, every search of search_v2 a bit more likely clicked.

type EventInit = MessageInitShape<typeof EventSchema>;

function dataset(now: number): EventInit[] {
  const events: EventInit[] = [];
  const variants = ["search_v1", "search_v2"];
  for (let day = 0; day < 12; day++) {
    for (const [vi, variant] of variants.entries()) {
      for (let i = 0; i < 24; i++) {
        const id = `h-${variant}-${day}-${i}`;
        const ts = now - day * DAY - 2 * HOUR - i * 60_000;
        events.push({ kind: { case: "impression", value: { eventId: id, impressionId: id, userId: `u${i % 9}-${vi}`, query: `query ${i % 5}`, variant, resultsCount: 20, responseTimeMs: 30 + vi * 8 + ((i * 7 + day) % 40), timestamp: timestampFromMs(ts) } } });
        // search_v1 clicks on 6 of 24 searches, search_v2 on 8 (plus a second click on some).
        if (i % 4 === 0 || (vi === 1 && i % 12 === 1)) {
          const rank = (i + day) % 6;
          events.push({ kind: { case: "click", value: { eventId: `${id}-c`, impressionId: id, userId: `u${i % 9}-${vi}`, productId: `p${i}`, rank, searchQuery: `query ${i % 5}`, variant, responseTimeMs: 40, timestamp: timestampFromMs(ts + 5_000) } } });
          if (i % 8 === 0) events.push({ kind: { case: "click", value: { eventId: `${id}-c2`, impressionId: id, userId: `u${i % 9}-${vi}`, productId: `q${i}`, rank: rank + 3, searchQuery: `query ${i % 5}`, variant, responseTimeMs: 40, timestamp: timestampFromMs(ts + 9_000) } } });
        }
      }
    }
  }
  return events;
}

// ---------------------------------------------------------------------------------------------

let h: Harness;
let dir: string;
let html: string;
let htmlPath: string;
let chromium: ChromiumLookup;

beforeAll(async () => {
  // Chromium's installation (a minute or two where missing) runs alongside the server's start.
  const [browser, harness] = await Promise.all([ensureChromium(), startHarness()]);
  chromium = browser;
  h = harness;
  dir = await mkdtemp(path.join(os.tmpdir(), "ca-report-html-"));
  const events = dataset(Date.now());
  for (let i = 0; i < events.length; i += 500) {
    const r = await h.client.logEvents({ events: events.slice(i, i + 500) });
    expect(Number(r.rejected)).toBe(0);
  }
  htmlPath = path.join(dir, "report.html");
  const { stdout, stderr } = await run(process.execPath, [CLI, "report", "--html", htmlPath, "--days", "30", "--address", h.server.address], { timeout: 30_000 });
  expect(stdout).toBe("");
  expect(stderr).toMatch(/^wrote .*report\.html \(2 variants, last 30 days\)\n$/);
  html = await readFile(htmlPath, "utf8");
}, 600_000);

afterAll(async () => {
  await h?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("report --html", () => {
  it("is one self-contained file: no script, no external reference, a CSP that forbids fetching", () => {
    expect(html.startsWith("<!DOCTYPE html>")).toBe(true);
    expect(html).toContain(`content="default-src 'none'; style-src 'unsafe-inline'"`);
    expect(html).not.toMatch(/<script|<link|<img|<iframe|@import|url\(|\bsrc=|\bhref=/i);
    // The only URL is the SVG namespace, which is a name, never fetched.
    expect(new Set([...html.matchAll(/https?:\/\/[^"'\s<)]+/g)].map((m) => m[0]))).toEqual(new Set(["http://www.w3.org/2000/svg"]));
    expect(existsSync(`${htmlPath}.partial`)).toBe(false);
  });

  it("states the comparison: both variants, the control, the recommendation", async () => {
    const c = await h.client.getVariantComparison({ days: 30 });
    expect(html).toContain("search_v1 (control)");
    expect(html).toContain("search_v2");
    expect(html).toContain(c.recommendation ? `ship <strong>${c.recommendation}</strong>` : `Recommendation: none (${c.recommendationReason}`);
  });

  it("shows in its tables the numbers the server answers: per variant and per comparison, read by column", async () => {
    const c = await h.client.getVariantComparison({ days: 30 });
    expect(c.control).toBe("search_v1");
    const conf = `${Math.round(c.confidence * 1000) / 10}%`;

    const variants = tableRows(html, "variants");
    expect(variants.conf).toBe(conf);
    expect(variants.rows.map((r) => r.variant)).toEqual(["search_v1 (control)", "search_v2"]);
    for (const row of variants.rows) {
      const name = row.variant!.replace(/ \(control\)$/, "");
      const v = c.variants[name]!;
      expect(v, name).toBeDefined();
      expect(v.totalImpressions, `${name}: searches`).toBeGreaterThan(0n);
      expect([row.searches, row.clicks, row.users], `${name}: searches, clicks, users`).toEqual([v.totalImpressions, v.totalClicks, v.users].map((n) => n.toLocaleString("en-US")));
      expectPercent(`${name} CTR`, row.CTR!, v.ctr);
      expectPercentInterval(`${name} CTR interval`, row["CTR interval"]!, v.ctrInterval);
      expectPercent(`${name} search CTR`, row["search CTR"]!, v.searchCtr);
      expectPercentInterval(`${name} search CTR interval`, row["search CTR interval"]!, v.searchCtrInterval);
    }
    // The data set's own counts, so that the server's answer is not the only witness: 12 days × 24 searches;
    // search_v1 clicks 6 searches a day, 3 of them twice; search_v2 8 searches, 3 twice.
    expect([variants.rows[0]!.searches, variants.rows[0]!.clicks, variants.rows[1]!.searches, variants.rows[1]!.clicks]).toEqual(["288", String(12 * 9), "288", String(12 * 11)]);

    const comparisons = tableRows(html, "comparisons");
    expect(comparisons.conf).toBe(conf);
    expect(c.comparisons.map((x) => x.variant)).toEqual(["search_v2"]);
    const x = c.comparisons[0]!;
    // The variant is named on its first line only; the lines below are its other metrics.
    let variant = "";
    const lines = comparisons.rows.map((r): Record<string, string> => ({ ...r, variant: (variant = r[`vs ${c.control}`] || variant) }));
    const line = (metric: string) => {
      const found = lines.filter((l) => l.variant === "search_v2" && l.metric === metric);
      expect(found.length, `one "${metric}" line for search_v2`).toBe(1);
      return found[0]!;
    };
    for (const [metric, m] of [
      ["search CTR", x.searchCtr],
      ["CTR", x.ctr],
    ] as const) {
      expect(m, metric).toBeDefined();
      const l = line(metric);
      expectPercent(`${metric} lift`, l.lift!, m!.lift?.value, " pp");
      expectPercentInterval(`${metric} lift interval`, l["lift interval"]!, m!.lift, " pp");
      const relative = /^(\S+)% (\[.*\])$/.exec(l.relative!);
      expect(relative, `${metric} relative: "${l.relative}"`).not.toBeNull();
      expectShown(`${metric} relative lift`, relative![1]!, m!.relativeLift?.value, 100);
      expectPercentInterval(`${metric} relative lift interval`, relative![2]!.replace(/^\[(\S+)%, (\S+)%\]$/, "[$1%, $2%]"), m!.relativeLift);
      expectP(`${metric} p`, l.p!, m!.pValue, m!.significant);
    }
    // Both lifts are 2/24 by construction (2 more clicked searches, 2 more clicks a day), but the
    // relative lifts (8/6 − 1 and 11/9 − 1) and p-values differ, so a swap of the two lines would show.
    expect(Math.abs(x.searchCtr!.relativeLift!.value - x.ctr!.relativeLift!.value)).toBeGreaterThan(0.05);
    expect(pValue(x.searchCtr!.pValue)).not.toBe(pValue(x.ctr!.pValue));
  });

  it("shows search quality from first clicks: MRR and abandonment with their intervals, time to first click, and their comparison lines", async () => {
    const c = await h.client.getVariantComparison({ days: 30 });
    const quality = tableRows(html, "first-click");
    expect(quality.rows.map((r) => r.variant)).toEqual(["search_v1 (control)", "search_v2"]);
    for (const row of quality.rows) {
      const name = row.variant!.replace(/ \(control\)$/, "");
      const f = c.variants[name]!.firstClick!;
      expect(row["searches with results"]).toBe(f.searchesWithResults.toLocaleString("en-US"));
      expectShown(`${name} MRR`, row.MRR!, f.mrr);
      expectShown(`${name} clicked MRR`, row["clicked MRR"]!, f.clickedMrr);
      expectPercent(`${name} abandoned`, row.abandoned!, f.abandonmentRate);
      expectPercentInterval(`${name} abandoned interval`, row["abandoned interval"]!, c.variants[name]!.abandonmentRateInterval);
      // Every first click of the data set comes 5 s after its search.
      expect([row["1st click p50"], row["1st click p90"]]).toEqual(["5.0 s", "5.0 s"]);
    }
    expect(quality.rows[1]!.MRR).not.toBe(quality.rows[0]!.MRR);
    const lines = tableRows(html, "comparisons").rows.map((r) => r.metric);
    expect(lines).toEqual(expect.arrayContaining(["MRR", "abandonment"]));
  });

  it("renders in headless Chromium with every chart drawn", { timeout: 120_000 }, async (ctx) => {
    const chromiumPath = chromiumOrSkip(chromium, ctx);
    if (chromiumPath === undefined) return;
    const profile = await mkdtemp(path.join(os.tmpdir(), "ca-chromium-"));
    try {
      const url = pathToFileURL(htmlPath).href;
      const { stdout: dom } = await run(chromiumPath, [...chromiumArgs(profile), "--dump-dom", url], { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
      expect(dom).toContain("ClickAnalytics report: last 30 days");

      // Daily CTR and daily search CTR: per variant a line over several days and a band with area.
      for (const chart of ["ctr-daily", "search-ctr-daily"]) {
        const svg = chartSvg(dom, chart);
        for (const variant of ["search_v1", "search_v2"]) {
          const lines = elements(svg, "path", "line").filter((e) => e["data-variant"] === variant);
          expect(lines.length, `${chart} ${variant} lines`).toBeGreaterThan(0);
          const points = lines.flatMap((l) => pathPoints(l.d!));
          expect(points.length, `${chart} ${variant} points`).toBeGreaterThanOrEqual(12);
          expect(extent(points).width).toBeGreaterThan(200);
          expect(points.every(([x, y]) => x >= 0 && x <= 760 && y >= 0 && y <= 300)).toBe(true);
          const bands = elements(svg, "path", "band").filter((e) => e["data-variant"] === variant);
          expect(bands.length, `${chart} ${variant} bands`).toBeGreaterThan(0);
          const band = extent(bands.flatMap((b) => pathPoints(b.d!)));
          expect(band.width).toBeGreaterThan(200);
          expect(band.height).toBeGreaterThan(5);
          expect(elements(svg, "circle", "point").filter((e) => e["data-variant"] === variant).length).toBeGreaterThanOrEqual(12);
        }
      }

      // Clicks by rank and latency: bars with real size for both variants.
      for (const chart of ["clicks-by-rank", "latency"]) {
        const bars = elements(chartSvg(dom, chart), "rect", "bar");
        for (const variant of ["search_v1", "search_v2"]) {
          const mine = bars.filter((b) => b["data-variant"] === variant);
          expect(mine.length, `${chart} ${variant} bars`).toBeGreaterThan(chart === "latency" ? 3 : 5);
          expect(mine.every((b) => Number(b.width) > 0 && Number(b.height) > 0)).toBe(true);
          expect(Math.max(...mine.map((b) => Number(b.height)))).toBeGreaterThan(50);
        }
      }
      expect(elements(chartSvg(dom, "latency"), "rect", "bar").map((b) => b["data-category"])).toEqual(expect.arrayContaining(["avg", "p50", "p95", "p99"]));

      // And pixels: the screenshot is not blank and shows both variants' colours.
      const png = path.join(profile, "report.png");
      await run(chromiumPath, [...chromiumArgs(profile), "--window-size=900,2600", `--screenshot=${png}`, url], { timeout: 60_000 });
      const image = decodePng(await readFile(png));
      expect(image.width).toBe(900);
      const blue = countColor(image, "#0072B2");
      const orange = countColor(image, "#E69F00");
      expect(blue, "search_v1's colour on screen").toBeGreaterThan(2_000);
      expect(orange, "search_v2's colour on screen").toBeGreaterThan(2_000);
    } finally {
      await rm(profile, { recursive: true, force: true });
    }
  });
});
