/**
 * The compiled `click-analytics` command (dist/, built by test/build-setup.ts) run as a child
 * process against real servers loaded with a known dataset: what each command prints, its exit
 * codes, and the ExportEvents RPC behind `export`.
 */
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { MongoClient } from "mongodb";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ClickSource, ExportKind, GetInterleavingResultResponseSchema, GetTopQueriesResponseSchema, GetVariantComparisonResponseSchema, type EventSchema } from "../../src/client/index.js";
import { CONNECTION_OPTIONS } from "../../src/cli/commands/common.js";
import { startHarness, type Harness } from "../support/harness.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const CLI = path.join(ROOT, "dist/src/cli/main.js");
const HOUR = 3_600_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the compiled CLI; never rejects (the exit code is part of the answer). Colour variables removed unless given. */
function cli(args: string[], env: Record<string, string | undefined> = {}, timeout = 30_000): Promise<Run> {
  const base: Record<string, string | undefined> = { ...process.env, NO_COLOR: undefined, FORCE_COLOR: undefined, CLICK_ANALYTICS_ADDRESS: undefined, CLICK_ANALYTICS_TOKEN: undefined, ...env };
  const clean = Object.fromEntries(Object.entries(base).filter((e): e is [string, string] => e[1] !== undefined));
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: clean, timeout, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The dataset: 400 searches and 100 clicks over the last two days, in two variants.
//
// search_v1: 200 searches, 40 of them clicked once; search_v2: 200 searches, 60 clicked once.
// Queries: "blue shoes" (every 2nd search), "red dress", and `shoes, "red"` (a comma and quotes,
// for the CSV). Every click is linked to its search.

type EventInit = MessageInitShape<typeof EventSchema>;
const QUERIES = ["blue shoes", "red dress", "blue shoes", 'shoes, "red"'];

function dataset(now: number): EventInit[] {
  const events: EventInit[] = [];
  for (const [vi, variant] of ["search_v1", "search_v2"].entries()) {
    for (let i = 0; i < 200; i++) {
      const id = `${variant}-s${i}`;
      const ts = now - 2 * HOUR - i * 7 * 60_000 - vi * 1000;
      const query = QUERIES[i % QUERIES.length]!;
      const userId = `user-${i % 25}`;
      events.push({ kind: { case: "impression", value: { eventId: id, impressionId: id, userId, sessionId: i % 3 === 0 ? "" : `sess-${i % 7}`, query, variant, resultsCount: i % 50 === 0 ? 0 : 20, responseTimeMs: 20 + (i % 30) + vi * 5, timestamp: timestampFromMs(ts) } } });
      const clicked = vi === 0 ? i % 5 === 1 : i % 10 < 3;
      if (clicked) {
        events.push({ kind: { case: "click", value: { eventId: `${id}-c`, impressionId: id, userId, productId: `prod-${i}`, rank: i % 4, searchQuery: query, variant, responseTimeMs: 20 + (i % 30), source: ClickSource.SEARCH_RESULTS, timestamp: timestampFromMs(ts + 3_000) } } });
      }
    }
  }
  return events;
}

async function load(h: Harness, events: EventInit[]): Promise<void> {
  for (let i = 0; i < events.length; i += 1000) {
    const r = await h.client.logEvents({ events: events.slice(i, i + 1000) });
    expect(Number(r.rejected)).toBe(0);
  }
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, "close");
  return port;
}

/** RFC 4180 parsing, enough for our own output: quoted fields with doubled quotes, CRLF rows. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') (field += '"', i++);
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") (row.push(field), (field = ""));
    else if (ch === "\r" && text[i + 1] === "\n") {
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
      i++;
    } else field += ch;
  }
  if (field !== "" || row.length > 0) rows.push([...row, field]);
  return rows;
}

const HEADER = ["kind", "event_id", "user_id", "session_id", "timestamp", "variant", "query", "product_id", "rank", "results_count", "response_time_ms", "impression_id", "source", "clicked", "teams"];

let h: Harness;
let address: string;
let dir: string;
/** What was logged: event id -> timestamp in ms. */
const loggedAt = new Map<string, number>();

beforeAll(async () => {
  h = await startHarness();
  address = h.server.address;
  const events = dataset(Date.now());
  for (const e of events) loggedAt.set(e.kind!.value!.eventId!, Number(e.kind!.value!.timestamp!.seconds) * 1000 + e.kind!.value!.timestamp!.nanos! / 1e6);
  await load(h, events);
  dir = await mkdtemp(path.join(os.tmpdir(), "ca-cli-"));
});

afterAll(async () => {
  await h?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("report", () => {
  it("prints both variants, the comparison and the recommendation as a table, without colour when piped", async () => {
    const c = await h.client.getVariantComparison({ days: 30 });
    const r = await cli(["report", "--address", address]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/\x1b\[/);
    expect(r.stdout).toMatch(/^Variant comparison: last 30 days, control search_v1, 95% confidence, fixed-horizon inference\n/);
    expect(r.stdout).toMatch(/^search_v1 \(control\) +200 +40 +25 +20\.00% +\[[\d.]+%, [\d.]+%\] +20\.00% +\[[\d.]+%, [\d.]+%\]/m);
    expect(r.stdout).toMatch(/^search_v2 +200 +60 +25 +30\.00% +\[[\d.]+%, [\d.]+%\] +30\.00% +\[[\d.]+%, [\d.]+%\]/m);
    // The comparison: +10 pp in both CTRs, with the server's p-values.
    const x = c.comparisons[0]!;
    expect(r.stdout).toMatch(new RegExp(`^search_v2 +search CTR +\\+10\\.00 pp +\\[[-+][\\d.]+, \\+[\\d.]+\\] pp +\\+50\\.0% .* ${x.searchCtrPValue! < 0.001 ? "<0\\.001" : x.searchCtrPValue!.toFixed(3)}\\*? +±${(x.searchCtr!.mde! * 100).toFixed(2)} pp \\(±${(x.searchCtr!.relativeMde! * 100).toFixed(1)}%\\)$`, "m"));
    expect(r.stdout).toMatch(/^ +CTR +\+10\.00 pp /m);
    expect(r.stdout).toMatch(/^ +p95 latency +\+[\d.]+ ms/m);
    expect(r.stdout).toContain(`Highest CTR:    ${c.winnerByCtr}`);
    // The fixture's 25 users search in both variants: a leak in assignment, reported.
    expect(r.stdout).toMatch(/^Sample ratio: +ok \(p = 1\.000\): users search_v1 25, search_v2 25; 25 user\(s\) in several variants \(100\.0%\)$/m);
    const recommendation = c.recommendation ? `Recommendation: ship ${c.recommendation}` : `Recommendation: none (${c.recommendationReason})`;
    expect(r.stdout).toContain(recommendation);
  });

  it("prints search quality from first clicks per variant, and MRR and abandonment against the control", async () => {
    const c = await h.client.getVariantComparison({ days: 30 });
    const r = await cli(["report", "--address", address]);
    expect(r.stdout).toMatch(/^variant +searches with results +MRR +95% CI +clicked MRR +abandoned +95% CI +1st click p50 +1st click p90$/m);
    for (const name of ["search_v1", "search_v2"]) {
      const f = c.variants[name]!.firstClick!;
      const label = name === "search_v1" ? "search_v1 \\(control\\)" : name;
      expect(r.stdout).toMatch(new RegExp(`^${label} +${f.searchesWithResults} +${f.mrr!.toFixed(3)} +\\[[\\d.]+, [\\d.]+\\] +${f.clickedMrr!.toFixed(3)} +${(f.abandonmentRate! * 100).toFixed(1)}% `, "m"));
    }
    const x = c.comparisons[0]!;
    expect(r.stdout).toMatch(new RegExp(`^ +MRR +${x.mrr!.lift!.value >= 0 ? "\\+" : "-"}${Math.abs(x.mrr!.lift!.value * 100).toFixed(2)} pp `, "m"));
    expect(r.stdout).toMatch(/^ +abandonment +[-+][\d.]+ pp /m);
  });

  it("--json prints exactly the GetVariantComparison response", async () => {
    const r = await cli(["report", "--json", "--address", address, "--days", "30", "--control", "search_v1"]);
    expect(r.code).toBe(0);
    const expected = toJson(GetVariantComparisonResponseSchema, await h.client.getVariantComparison({ days: 30, control: "search_v1" })) as Record<string, unknown>;
    // The window starts 30 days before each call's own now.
    const printed = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Math.abs(Date.parse(String(printed.startTime)) - Date.parse(String(expected.startTime)))).toBeLessThan(60_000);
    expect({ ...printed, startTime: undefined }).toEqual({ ...expected, startTime: undefined });
  });

  it("passes --confidence, --sequential, --cuped, --expected-split and a period to the server, and says so", async () => {
    const c = await h.client.getVariantComparison({ days: 30, confidence: 0.99 });
    const r = await cli(["report", "--address", address, "--confidence", "0.99"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Variant comparison: last 30 days, control search_v1, 99% confidence, fixed-horizon inference\n/);
    // The interval printed is the server's at 99%, not at 95%.
    const i = c.variants.search_v1!.ctrInterval!;
    expect(r.stdout).toContain(`[${(i.low * 100).toFixed(2)}%, ${(i.high * 100).toFixed(2)}%]`);
    const at95 = (await h.client.getVariantComparison({ days: 30 })).variants.search_v1!.ctrInterval!;
    expect(i.high - i.low).toBeGreaterThan((at95.high - at95.low) * 1.2);
    const seq = await cli(["report", "--address", address, "--sequential", "--cuped", "--expected-split", "search_v1=1,search_v2=3"]);
    expect(seq.code).toBe(0);
    expect(seq.stdout).toMatch(/95% confidence, sequential \(always valid\) inference, CUPED\n/);
    // 25 users each against an expected 1:3 split is a mismatch.
    expect(seq.stdout).toMatch(/^Sample ratio: +MISMATCH \(p [<=] [\d.]+\): users are not split as expected \(search_v1 25, search_v2 25\)/m);
    const start = new Date(Date.now() - 40 * 86_400_000).toISOString();
    const period = await cli(["report", "--address", address, "--start", start, "--end", new Date().toISOString()]);
    expect(period.code).toBe(0);
    expect(period.stdout).toMatch(/^Variant comparison: period \d{4}-\d\d-\d\d \d\d:\d\d – \d{4}-\d\d-\d\d \d\d:\d\d UTC, control search_v1/);
    expect(period.stdout).toMatch(/^search_v1 \(control\) +200 +40 +25 /m);
    for (const args of [["--end", start], ["--start", start, "--days", "3"], ["--start", "yesterday"], ["--expected-split", "search_v1"]]) {
      const bad = await cli(["report", "--address", address, ...args]);
      expect(bad.code, args.join(" ")).toBe(64);
    }
  });

  it("colours with --color or FORCE_COLOR, never with NO_COLOR or --no-color", async () => {
    const colored = await cli(["report", "--address", address, "--color"]);
    expect(colored.stdout).toMatch(/\x1b\[1m/);
    expect((await cli(["report", "--address", address], { FORCE_COLOR: "1" })).stdout).toMatch(/\x1b\[/);
    expect((await cli(["report", "--address", address], { FORCE_COLOR: "1", NO_COLOR: "1" })).stdout).not.toMatch(/\x1b\[/);
    expect((await cli(["report", "--address", address, "--no-color"], { FORCE_COLOR: "1" })).stdout).not.toMatch(/\x1b\[/);
    expect((await cli(["report", "--address", address], { NO_COLOR: "1" })).stdout).not.toMatch(/\x1b\[/);
  });

  it("refuses bad flags with the usage and exit 64", async () => {
    for (const args of [["--days", "0"], ["--days", "abc"], ["--confidence", "1.5"], ["--bogus"], ["extra"]]) {
      const r = await cli(["report", "--address", address, ...args]);
      expect(r.code, args.join(" ")).toBe(64);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(/^click-analytics report: .+\n\nusage: click-analytics report/);
    }
    // The server's own refusal of a value is also a usage error.
    const bad = await cli(["report", "--address", address, "--control", "not a variant!"]);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toMatch(/^click-analytics report: invalid argument: control: /);
  });
});

describe("top-queries", () => {
  it("prints the queries with their numbers, in the requested order", async () => {
    const r = await cli(["top-queries", "--address", address]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Top queries by searches: last 30 days, all variants\n/);
    expect(r.stdout).toMatch(/^# +query +searches +clicks +CTR +search CTR +avg rank +no results +COEC +MRR +abandoned +outside$/m);
    // 400 searches: "blue shoes" every 2nd, the others every 4th; clicks 50 / 25 / 25. COEC as the
    // server computed it, to two places.
    const blue = (await h.client.getTopQueries({ days: 30 })).queries.find((q) => q.query === "blue shoes")!;
    const coec = blue.coec!;
    expect(coec).toBeGreaterThan(0);
    // MRR to three places, abandonment as a percentage and clicks outside results (the dataset clicks some searches without results), as the server computed them.
    const [mrr, abandoned] = [blue.mrr!.toFixed(3), (blue.abandonmentRate! * 100).toFixed(1)].map((x) => x.replace(".", "\\."));
    expect(r.stdout).toMatch(new RegExp(`^1 +blue shoes +200 +\\d+ +[\\d.]+% +[\\d.]+% +[\\d.]+ +\\d+ +${coec.toFixed(2).replace(".", "\\.")} +${mrr} +${abandoned}% +${blue.clicksOutsideResults}$`, "m"));
    expect(blue.clicksOutsideResults).toBeGreaterThan(0n);
    expect(r.stdout).toMatch(/^[23] +red dress +100 /m);
    expect(r.stdout).toMatch(/^[23] +shoes, \\"red\\" +100 /m);

    const json = await cli(["top-queries", "--address", address, "--json", "--variant", "search_v2", "--limit", "2", "--order-by", "clicks"]);
    expect(json.code).toBe(0);
    const expected = toJson(GetTopQueriesResponseSchema, await h.client.getTopQueries({ days: 30, variant: "search_v2", limit: 2, orderBy: 2 }));
    expect(JSON.parse(json.stdout)).toEqual(expected);
    expect((JSON.parse(json.stdout) as { queries: unknown[] }).queries).toHaveLength(2);
    expect((JSON.parse(json.stdout) as { queries: { coec?: unknown }[] }).queries[0]!.coec).toBeTypeOf("number");

    const bad = await cli(["top-queries", "--address", address, "--order-by", "popularity"]);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain("--order-by must be one of searches, clicks, ctr, no-results");
  });
});

describe("interleaving", () => {
  // Its own server: the shared dataset has no interleaved searches, and the report tests count its variants.
  let hi: Harness;
  beforeAll(async () => {
    hi = await startHarness();
    const events: EventInit[] = [];
    const search = (id: string, user: string, teams: string[]): EventInit => ({ kind: { case: "impression", value: { impressionId: id, userId: user, query: "q", variant: "il", resultsCount: teams.length, responseTimeMs: 10, teams } } });
    const click = (id: string, user: string, rank: number): EventInit => ({ kind: { case: "click", value: { impressionId: id, userId: user, productId: `p${rank}`, rank, searchQuery: "q", variant: "il", responseTimeMs: 10 } } });
    // 30 users: ranker_b wins 2 searches of 3 against ranker_a; 10 three-ranker searches where ranker_c's position is clicked.
    for (let u = 0; u < 30; u++) {
      for (let s = 0; s < 3; s++) {
        const id = `ab-${u}-${s}`;
        events.push(search(id, `u${u}`, ["ranker_a", "ranker_b"]), click(id, `u${u}`, s === 0 ? 0 : 1));
      }
      if (u < 10) events.push(search(`abc-${u}`, `u${u}`, ["ranker_a", "ranker_b", "ranker_c"]), click(`abc-${u}`, `u${u}`, 2), click(`abc-${u}`, `u${u}`, 7));
    }
    await load(hi, events);
  });
  afterAll(() => hi?.close());

  it("prints every ranker pair, the asked one first, with wins, uncredited clicks, Δ, interval and p; --json is the response", async () => {
    const r = await cli(["interleaving", "--address", hi.server.address, "--ranker-a", "ranker_b", "--ranker-b", "ranker_a"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Interleaving: last 30 days, all variants, 95% confidence\n/);
    expect(r.stdout).toMatch(/^ranker A +ranker B +searches +wins A +wins B +ties +uncredited +users +Δ \(A\) +95% interval +p +test +preferred$/m);
    const x = await hi.client.getInterleavingResult({ days: 30, rankerA: "ranker_b", rankerB: "ranker_a" });
    const signed = (v: number) => `${v >= 0 ? "\\+" : "−"}${Math.abs(v).toFixed(3)}`;
    const lines = r.stdout.split("\n").filter((l) => l.startsWith("ranker_"));
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(new RegExp(`^ranker_b +ranker_a +100 +60 +30 +0 +10 +30 +${signed(x.delta!.value)} +\\[${signed(x.delta!.low)}, ${signed(x.delta!.high)}\\] +[<\\d.]+ \\* +Monte Carlo +ranker_b$`));
    expect(lines[1]).toMatch(/^ranker_a +ranker_c +10 +0 +10 +0 +10 +10 /);
    expect(lines[2]).toMatch(/^ranker_b +ranker_c +10 +0 +10 +0 +10 +10 /);

    const json = await cli(["interleaving", "--address", hi.server.address, "--json", "--days", "2", "--confidence", "0.9"]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual(toJson(GetInterleavingResultResponseSchema, await hi.client.getInterleavingResult({ days: 2, confidence: 0.9 })));
    const bad = await cli(["interleaving", "--address", hi.server.address, "--ranker-a", "x"]);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain("--ranker-a and --ranker-b go together");
  });

  it("report and its HTML page show position bias (COEC, CTR by rank) and the interleaving result", async () => {
    const c = await hi.client.getVariantComparison({ days: 30, control: "il" });
    const r = await cli(["report", "--address", hi.server.address, "--control", "il"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^variant +COEC +CTR@0 +CTR@1 +CTR@2 /m);
    expect(r.stdout).toMatch(new RegExp(`^il +${c.variants.il!.coec!.toFixed(3)} +\\d+\\.\\d%`, "m"));
    expect(r.stdout).toMatch(/^Interleaving: last 30 days, all variants, 95% confidence$/m);
    expect(r.stdout).toMatch(/^ranker_a +ranker_b +100 +30 +60 /m);
    const file = path.join(dir, "quality.html");
    const html = await cli(["report", "--address", hi.server.address, "--control", "il", "--html", file]);
    expect(html.code).toBe(0);
    const page = await readFile(file, "utf8");
    expect(page).toContain('<table class="interleaving">');
    expect(page).toContain('<table class="position-bias">');
    expect(page).toMatch(/<td>ranker_a<\/td><td>ranker_b<\/td><td class="num">100<\/td><td class="num">30<\/td><td class="num">60<\/td>/);
    expect(page).toContain('data-chart="ctr-by-rank"');
  });
});

describe("watch", () => {
  it("--count 2 prints two snapshots, one line each when not on a terminal", async () => {
    const r = await cli(["watch", "--address", address, "--count", "2", "--interval", "1"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(line).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z overall: impressions=400 clicks=100 ctr=0\.2500 search_ctr=0\.2500 /);
      expect(line).toContain(" | search_v1: impressions=200 clicks=40 ctr=0.2000");
      expect(line).toContain(" | search_v2: impressions=200 clicks=60 ctr=0.3000");
    }
    const f = (await h.client.getCtr({ days: 7 })).firstClick!;
    expect(lines[0]).toContain(` mrr=${f.mrr!.toFixed(4)} abandonment=${f.abandonmentRate!.toFixed(4)} first_click_p50_ms=`);
    const json = await cli(["watch", "--address", address, "--count", "1", "--json", "--variant", "search_v1"]);
    expect(json.code).toBe(0);
    expect((JSON.parse(json.stdout) as { overall: { impressions: string } }).overall.impressions).toBe("200");
  });

  it("stops cleanly on Ctrl-C (SIGINT) with exit 0", async () => {
    const child = spawn(process.execPath, [CLI, "watch", "--address", address, "--interval", "1"], { stdio: ["ignore", "pipe", "pipe"] });
    const lines = createInterface({ input: child.stdout });
    await once(lines, "line");
    child.kill("SIGINT");
    const [code] = (await once(child, "exit")) as [number | null];
    expect(code).toBe(0);
  });
});

describe("export", () => {
  it("--format csv writes a header and one row per stored event, oldest first, fields escaped", async () => {
    const r = await cli(["export", "--address", address, "--format", "csv"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("exported 500 events (400 impressions, 100 clicks)\n");
    expect(r.stdout.startsWith(`${HEADER.join(",")}\r\n`)).toBe(true);
    const rows = parseCsv(r.stdout);
    expect(rows[0]).toEqual(HEADER);
    const data = rows.slice(1);
    expect(data).toHaveLength(500);
    expect(data.every((row) => row.length === HEADER.length)).toBe(true);
    const col = (name: string) => HEADER.indexOf(name);
    expect(data.filter((row) => row[col("kind")] === "impression")).toHaveLength(400);
    expect(data.filter((row) => row[col("kind")] === "click")).toHaveLength(100);
    const times = data.map((row) => Date.parse(row[col("timestamp")]!));
    expect(times).toEqual([...times].sort((a, b) => a - b));
    // Every row's time is the one logged for its event, to the millisecond, in UTC ISO 8601.
    expect(data.map((row) => [row[col("event_id")], row[col("timestamp")]])).toEqual(data.map((row) => [row[col("event_id")], new Date(loggedAt.get(row[col("event_id")]!)!).toISOString()]));
    expect(loggedAt.get("search_v1-s1-c")! % 1000 !== 0 || loggedAt.get("search_v2-s3")! % 1000 !== 0).toBe(true); // milliseconds matter here

    const click = data.find((row) => row[col("event_id")] === "search_v1-s1-c")!;
    expect(click).toEqual(["click", "search_v1-s1-c", "user-1", "", new Date(loggedAt.get("search_v1-s1-c")!).toISOString(), "search_v1", "red dress", "prod-1", "1", "", "21", "search_v1-s1", "SEARCH_RESULTS", "", ""]);
    const search = data.find((row) => row[col("event_id")] === "search_v2-s3")!;
    expect(search).toEqual(["impression", "search_v2-s3", "user-3", "", new Date(loggedAt.get("search_v2-s3")!).toISOString(), "search_v2", 'shoes, "red"', "", "", "20", "28", "search_v2-s3", "", "false", ""]);
    expect(r.stdout).toContain(`"shoes, ""red"""`);
    const withSession = data.find((row) => row[col("event_id")] === "search_v1-s1")!;
    expect(withSession[col("session_id")]).toBe("sess-1");
    expect(withSession[col("clicked")]).toBe("true");
  });

  it("--format jsonl writes one object per event with the same keys, null where a field does not apply", async () => {
    const r = await cli(["export", "--address", address, "--format", "jsonl"]);
    expect(r.code).toBe(0);
    const objects = r.stdout.trimEnd().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(objects).toHaveLength(500);
    expect(objects.every((o) => JSON.stringify(Object.keys(o)) === JSON.stringify(HEADER))).toBe(true);
    const click = objects.find((o) => o.event_id === "search_v2-s12-c")!;
    expect(click).toEqual({
      kind: "click",
      event_id: "search_v2-s12-c",
      user_id: "user-12",
      session_id: null,
      timestamp: new Date(loggedAt.get("search_v2-s12-c")!).toISOString(),
      variant: "search_v2",
      query: "blue shoes",
      product_id: "prod-12",
      rank: 0,
      results_count: null,
      response_time_ms: 32,
      impression_id: "search_v2-s12",
      source: "SEARCH_RESULTS",
      clicked: null,
      teams: null,
    });
    const noResults = objects.find((o) => o.event_id === "search_v1-s50")!;
    for (const o of objects) expect([o.event_id, o.timestamp]).toEqual([o.event_id, new Date(loggedAt.get(String(o.event_id))!).toISOString()]);
    expect(noResults).toMatchObject({ kind: "impression", results_count: 0, rank: null, product_id: null, source: null, clicked: false, session_id: "sess-1" });
  });

  it("filters by kind, variant and user, and writes --output only when complete", async () => {
    const clicks = await cli(["export", "--address", address, "--format", "jsonl", "--kind", "clicks", "--variant", "search_v2"]);
    expect(clicks.stdout.trimEnd().split("\n")).toHaveLength(60);
    const impressions = await cli(["export", "--address", address, "--kind", "impressions", "--user-id", "user-0"]);
    // user-0: searches 0, 25, 50, ... in both variants: 8 each.
    expect(parseCsv(impressions.stdout).slice(1)).toHaveLength(16);
    const out = path.join(dir, "events.csv");
    const file = await cli(["export", "--address", address, "--output", out, "--days", "2"]);
    expect(file.code).toBe(0);
    expect(file.stdout).toBe("");
    expect(file.stderr).toBe(`exported 500 events (400 impressions, 100 clicks) to ${out}\n`);
    expect(parseCsv(await readFile(out, "utf8"))).toHaveLength(501);
    expect(existsSync(`${out}.partial`)).toBe(false);

    const bad = await cli(["export", "--address", address, "--format", "parquet"]);
    expect(bad.code).toBe(64);
    const badKind = await cli(["export", "--address", address, "--kind", "views"]);
    expect(badKind.code).toBe(64);
  });
});

describe("ExportEvents (the RPC behind export) through the typed client", () => {
  it("streams batches of at most 1,000 events in timestamp order, and honours the filters", async () => {
    const big = await startHarness();
    try {
      const now = Date.now();
      const events: EventInit[] = Array.from({ length: 2_500 }, (_, i) => ({
        kind: { case: "impression", value: { eventId: `e${i}`, userId: `u${i % 3}`, query: "q", variant: i % 2 ? "b" : "a", resultsCount: 1, responseTimeMs: 1, timestamp: timestampFromMs(now - HOUR - (i % 1_000) * 1_000 - Math.floor(i / 1_000)) } },
      }));
      await load(big, events);
      const sizes: number[] = [];
      const times: number[] = [];
      const exported = new Map<string, number>();
      for await (const batch of big.client.exportEvents({ days: 1 })) {
        sizes.push(batch.events.length);
        for (const e of batch.events) {
          times.push(Number(e.timestamp!.seconds) * 1000 + e.timestamp!.nanos / 1e6);
          exported.set(e.eventId, times.at(-1)!);
        }
      }
      expect(sizes).toEqual([1_000, 1_000, 500]);
      expect(times).toEqual([...times].sort((a, b) => a - b));
      // Each event's time as logged, to the millisecond.
      expect(exported).toEqual(new Map(events.map((e, i) => [`e${i}`, now - HOUR - (i % 1_000) * 1_000 - Math.floor(i / 1_000)])));
      let filtered = 0;
      for await (const batch of big.client.exportEvents({ days: 1, variant: "b", userId: "u1", kind: ExportKind.IMPRESSIONS })) filtered += batch.events.length;
      expect(filtered).toBe(events.filter((_, i) => i % 2 === 1 && i % 3 === 1).length);
      let clicks = 0;
      for await (const batch of big.client.exportEvents({ kind: ExportKind.CLICKS })) clicks += batch.events.length;
      expect(clicks).toBe(0);
      // Leaving early cancels the call; the server carries on serving.
      for await (const batch of big.client.exportEvents({ days: 1 })) {
        expect(batch.events).toHaveLength(1_000);
        break;
      }
      expect(Number((await big.client.getCtr({ days: 1 })).impressions)).toBe(2_500);
      // Bad filters are INVALID_ARGUMENT before anything is read.
      await expect(
        (async () => {
          for await (const _ of big.client.exportEvents({ days: 400 })) void _;
        })(),
      ).rejects.toMatchObject({ code: 3, details: expect.stringMatching(/^days: /) });
    } finally {
      await big.close();
    }
  });
});

describe("load", () => {
  it("--events 500 stores exactly 500 events and reports them", async () => {
    const fresh = await startHarness();
    try {
      const r = await cli(["load", "--events", "500", "--seed", "3", "--address", fresh.server.address], {}, 60_000);
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/^loading 500 events over the last 30 days \(25 users, seed 3\) into /);
      expect(r.stderr).toMatch(/load \[#+\] 100\.0% 500\/500 /);
      expect(r.stdout).toMatch(/^sent 500 events \(\d+ searches, \d+ clicks, \d+ users\) in /);
      expect(r.stdout).toContain("accepted 500, duplicates 0, rejected 0");
      const ctr = await fresh.client.getCtr({ days: 30 });
      expect(Number(ctr.impressions) + Number(ctr.clicks)).toBe(500);
      // The same seed again: all duplicates, nothing counted twice.
      const again = await cli(["load", "--events", "500", "--seed", "3", "--address", fresh.server.address], {}, 60_000);
      expect(again.stdout).toContain("accepted 0, duplicates 500, rejected 0");
      const after = await fresh.client.getCtr({ days: 30 });
      expect(Number(after.impressions) + Number(after.clicks)).toBe(500);
    } finally {
      await fresh.close();
    }
  });

  it("needs --events", async () => {
    const r = await cli(["load", "--address", address]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/^click-analytics load: --events is required\n\nusage: click-analytics load/);
  });
});

describe("errors", () => {
  it("an unreachable server is one line and exit 2, for every command", async () => {
    const port = await closedPort();
    for (const args of [["report"], ["report", "--html", path.join(dir, "never.html")], ["top-queries"], ["watch", "--count", "1"], ["export"], ["load", "--events", "10"]]) {
      const r = await cli([...args, "--address", `127.0.0.1:${port}`]);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr, args.join(" ")).toMatch(new RegExp(`^(loading .*\\n)?(load \\[.*\\n)?click-analytics ${args[0]}: cannot reach ClickAnalytics at 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.*\\n$`));
    }
    expect(existsSync(path.join(dir, "never.html"))).toBe(false);
  });

  it("a missing or unknown token is exit 3, a good one works", async () => {
    const guarded = await startHarness({ tokens: [{ token: "t", role: "reader" }] });
    try {
      const a = guarded.server.address;
      for (const args of [["report"], ["report", "--token", "wrong"], ["top-queries", "--token", "nope"], ["watch", "--count", "1", "--token", "x"]]) {
        const r = await cli([...args, "--address", a]);
        expect(r.code, args.join(" ")).toBe(3);
        expect(r.stderr).toMatch(new RegExp(`^click-analytics ${args[0]}: authentication failed: .*needs a token with role reader or admin\\n$`));
        expect(r.stderr).not.toContain("wrong");
      }
      expect((await cli(["report", "--token", "t", "--address", a])).code).toBe(0);
      expect((await cli(["top-queries", "--address", a], { CLICK_ANALYTICS_TOKEN: "t" })).code).toBe(0);
      // A reader may not write.
      const write = await cli(["load", "--events", "10", "--token", "t", "--address", a]);
      expect(write.code).toBe(3);
      expect(write.stderr).toMatch(/click-analytics load: permission denied: LogEvents needs a token with role writer or admin/);
    } finally {
      await guarded.close();
    }
  });

  it("takes the address from CLICK_ANALYTICS_ADDRESS and refuses unreadable TLS files", async () => {
    expect((await cli(["top-queries"], { CLICK_ANALYTICS_ADDRESS: address })).code).toBe(0);
    const r = await cli(["report", "--address", address, "--tls-ca", path.join(dir, "missing.pem")]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/--tls-ca .*missing\.pem: cannot be read \(ENOENT\)/);
    const half = await cli(["report", "--address", address, "--tls-cert", CLI]);
    expect(half.code).toBe(64);
    expect(half.stderr).toContain("--tls-cert and --tls-key go together");
  });

  it("a plaintext server reached with TLS is unreachable (exit 2), not a crash", async () => {
    // TLS with the system's roots against a plaintext port: the handshake cannot succeed.
    const r = await cli(["top-queries", "--address", address, "--tls-server-name", "localhost", "--timeout", "3"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^click-analytics top-queries: cannot reach ClickAnalytics at [^\n]+\n$/);
  });
});

describe("help and usage", () => {
  const commands = ["serve", "report", "top-queries", "watch", "dashboard", "export", "load"];

  it("--help for every command prints its usage on stdout, exit 0", async () => {
    for (const name of commands) {
      const r = await cli([name, "--help"]);
      expect(r.code, name).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^usage: click-analytics ${name}`));
      expect(r.stderr).toBe("");
      if (name !== "serve") {
        // Every client command documents every connection flag.
        for (const flag of Object.keys(CONNECTION_OPTIONS)) expect(r.stdout, `${name} --${flag}`).toContain(`--${flag}`);
      }
    }
    expect((await cli(["help", "export"])).stdout).toMatch(/^usage: click-analytics export/);
  });

  it("the top-level usage lists the commands; no command or an unknown one is exit 64", async () => {
    const help = await cli(["--help"]);
    expect(help.code).toBe(0);
    for (const name of commands) expect(help.stdout).toMatch(new RegExp(`^  ${name} `, "m"));
    const none = await cli([]);
    expect(none.code).toBe(64);
    expect(none.stderr).toMatch(/^usage: click-analytics <command>/);
    const unknown = await cli(["frobnicate"]);
    expect(unknown.code).toBe(64);
    expect(unknown.stderr).toMatch(/^click-analytics: unknown command "frobnicate"/);
    const version = await cli(["--version"]);
    expect(version.stdout).toMatch(/^click-analytics \d+\.\d+\.\d+\n$/);
  });

  it("serve --help names the variable behind every flag", async () => {
    const r = await cli(["serve", "--help"]);
    for (const pair of ["--port N", "[PORT]", "--mongodb-uri URI", "[MONGODB_URI]", "--tokens LIST", "[CLICK_ANALYTICS_TOKENS]", "--tls-client-ca FILE", "[TLS_CLIENT_CA_FILE]", "--spool-dir DIR", "[SPOOL_DIR]", "--log-level LEVEL", "[LOG_LEVEL]", "--db NAME", "[MONGODB_DB]", "--admin-token TOKEN", "[CLICK_ANALYTICS_ADMIN_TOKEN]"]) {
      expect(r.stdout).toContain(pair);
    }
  });
});

describe("serve", () => {
  it("runs the server with the flags as its configuration and stops on SIGTERM", async () => {
    const db = `test_cli_serve_${process.pid}`;
    const child = spawn(process.execPath, [CLI, "serve", "--host", "127.0.0.1", "--port", "0", "--mongodb-uri", inject("mongoUri"), "--db", db, "--log-level", "info", "--tokens", "reader:serve-test-token"], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, PORT: "1", METRICS_PORT: "0" },
    });
    try {
      const logs: Record<string, unknown>[] = [];
      const port = await new Promise<number>((resolve, reject) => {
        createInterface({ input: child.stderr! }).on("line", (line) => {
          const entry = JSON.parse(line) as Record<string, unknown>;
          logs.push(entry);
          if (entry.msg === "click-analytics listening") resolve(entry.port as number);
        });
        child.once("exit", (code) => reject(new Error(`serve exited with ${code}: ${JSON.stringify(logs)}`)));
      });
      expect(logs.find((l) => l.msg === "click-analytics listening")).toMatchObject({ host: "127.0.0.1", db });
      expect(logs.some((l) => typeof l.msg === "string" && l.msg.startsWith("access control on"))).toBe(true);
      const r = await cli(["top-queries", "--address", `127.0.0.1:${port}`, "--token", "serve-test-token"]);
      expect(r.code).toBe(0);
      child.kill("SIGTERM");
      const [code] = (await once(child, "exit")) as [number | null];
      expect(code).toBe(0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      const mongo = new MongoClient(inject("mongoUri"));
      await mongo.db(db).dropDatabase().catch(() => undefined);
      await mongo.close();
    }
  });

  it("an invalid flag value stops it at start naming the variable", async () => {
    const r = await cli(["serve", "--port", "99999"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('click-analytics failed to start: invalid configuration: PORT must be an integer between 0 and 65535, got "99999"\n');
    const unknown = await cli(["serve", "--prot", "1"]);
    expect(unknown.code).toBe(64);
    expect(unknown.stderr).toMatch(/^click-analytics serve: Unknown option '--prot'/);
  });
});
