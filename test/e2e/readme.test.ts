/**
 * The docs' grpcurl calls and the README's dashboard command, as written, against a live server:
 * the comparison example of docs/statistics.md (before any event), the session of docs/api.md,
 * then the README's tour.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, expect, it } from "vitest";
import { readDoc } from "../support/docs.js";
import { grpcurl, shellWords } from "../support/grpcurl.js";
import { startHarness, type Harness } from "../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

it("every grpcurl command in the docs works as written", async () => {
  const grpcurlLines = (file: string) => readDoc(file).split("\n").filter((line) => line.startsWith("grpcurl "));
  const tour = grpcurlLines("README.md");
  expect(tour.length).toBeGreaterThanOrEqual(1);
  const commands = [...grpcurlLines("docs/statistics.md"), ...grpcurlLines("docs/api.md"), ...tour];
  expect(commands.length).toBeGreaterThanOrEqual(11);
  const out = new Map<string, unknown>();
  for (const command of commands) {
    const args = shellWords(command).slice(1);
    expect(args, command).toContain("localhost:50051");
    const verb = args[args.indexOf("localhost:50051") + 1]!;
    const key = out.has(verb) ? `${verb}#2` : verb;
    out.set(key, await grpcurl(h.server.address, args));
  }
  expect(out.get("list")).toEqual(expect.arrayContaining(["clickanalytics.v1.ClickAnalytics", "grpc.health.v1.Health"]));
  expect(out.get("describe")).toContain("rpc LogClick ( .clickanalytics.v1.LogClickRequest ) returns ( .clickanalytics.v1.LogClickResponse )");
  expect(out.get("clickanalytics.v1.ClickAnalytics/LogImpression")).toMatchObject({ userId: "user_123", query: "blue shoes" });
  expect(out.get("clickanalytics.v1.ClickAnalytics/LogClick")).toMatchObject({ userId: "user_123", productId: "prod_nike_001", rank: 2 });
  expect(out.get("clickanalytics.v1.ClickAnalytics/GetCtr")).toMatchObject({ ctr: 1, clicks: "1", impressions: "1", periodDays: 30 });
  expect(out.get("clickanalytics.v1.ClickAnalytics/GetUserSummary")).toMatchObject({ userId: "user_123", totalClicks: "1", variantsUsed: ["search_v1"] });
  // The statistics example comes first in the README, before any event was logged.
  expect(out.get("clickanalytics.v1.ClickAnalytics/GetVariantComparison")).toMatchObject({ control: "search_v1", confidence: 0.95, inference: "INFERENCE_SEQUENTIAL", recommendationReason: "insufficient data" });
  expect(out.get("clickanalytics.v1.ClickAnalytics/GetVariantComparison#2")).toMatchObject({ winnerByCtr: "search_v1", variants: { search_v1: { searchCtr: 0, totalImpressions: "1" } } }); // the README's click names no impression_id
  // One search and a click at rank 2 that names no impression_id: a click of the query it carries,
  // but in no position measure (nothing says what was shown), so no COEC.
  const top = out.get("clickanalytics.v1.ClickAnalytics/GetTopQueries") as { queries: Record<string, unknown>[] };
  expect(top).toMatchObject({ queries: [{ query: "blue shoes", searches: "1", clicks: "1" }] });
  expect(top.queries[0]).not.toHaveProperty("coec");
  const series = out.get("clickanalytics.v1.ClickAnalytics/GetTimeSeries") as { points: { impressions?: string }[]; timeZone: string };
  expect(series.timeZone).toBe("Europe/Berlin");
  expect(series.points.length).toBeGreaterThanOrEqual(48);
  expect(series.points.filter((p) => p.impressions === "1")).toHaveLength(1);
  expect(out.get("grpc.health.v1.Health/Check")).toEqual({ status: "SERVING" });
});

it("the README's dashboard command serves its page as written", { timeout: 30_000 }, async () => {
  const readme = readDoc("README.md").split("\n");
  const at = readme.findIndex((line) => line.startsWith("$ click-analytics dashboard"));
  expect(at, "a dashboard command in the README").toBeGreaterThan(0);
  // What it prints first, with the address it was given (the README's is the default one).
  const printed = readme[at + 1]!.replace("localhost:50051", h.server.address);
  const child = spawn(process.execPath, [resolve(import.meta.dirname, "../../dist/src/cli/main.js"), ...shellWords(readme[at]!.slice(2)).slice(1)], {
    env: { ...process.env, CLICK_ANALYTICS_ADDRESS: h.server.address },
    stdio: ["ignore", "pipe", "ignore"],
  });
  try {
    const [first] = (await once(createInterface({ input: child.stdout! }), "line")) as [string];
    expect(first).toBe(printed);
    const url = /(http:\/\/\S+)/.exec(first)![1]!;
    await expect.poll(async () => (await fetch(new URL("healthz", url))).status, { timeout: 15_000 }).toBe(200);
    expect(await (await fetch(url)).text()).toContain('<table class="live">');
  } finally {
    child.kill("SIGTERM");
    const [code] = (await once(child, "exit")) as [number | null];
    expect(code).toBe(0);
  }
});
