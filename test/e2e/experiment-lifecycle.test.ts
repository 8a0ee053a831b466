/**
 * A whole experiment through the tools: `click-analytics experiments create` and `start` (the
 * compiled CLI), 10,000 users assigned with the typed client's assign() and their searches and
 * clicks logged with the client, the scorecard watched (WatchMetrics, `watch` and `report
 * --experiment`), the dashboard's experiments page, then `stop`, `conclude` and `show` with the
 * history.
 */
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import path from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, expect, it } from "vitest";
import { assign, ExperimentStatus, GuardrailState, type EventSchema, type GetVariantComparisonResponse } from "../../src/client/index.js";
import { mulberry32 } from "../support/prng.js";
import { startHarness, type Harness } from "../support/harness.js";

const CLI = path.resolve(import.meta.dirname, "../../dist/src/cli/main.js");
const USERS = 10_000;

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = Object.fromEntries(Object.entries({ ...process.env, NO_COLOR: "1", FORCE_COLOR: undefined, CLICK_ANALYTICS_TOKEN: undefined }).filter((e): e is [string, string] => e[1] !== undefined));
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args, "--address", h.server.address], { env, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
    });
  });
}
/** Prints a command and its output when TRANSCRIPT is set (for README's walkthrough). */
function show(args: string[], stdout: string): void {
  if (process.env.TRANSCRIPT && !args.includes("--json")) process.stderr.write(`$ click-analytics ${args.join(" ")}\n${stdout}\n`);
}
async function ok(args: string[]): Promise<string> {
  const r = await cli(args);
  expect(r.stderr).toBe("");
  expect(r.code, r.stderr).toBe(0);
  show(args, r.stdout);
  return r.stdout;
}

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h?.close());

it("runs an experiment end to end: create, assign 10,000 users, log, watch the scorecard, conclude", { timeout: 240_000 }, async () => {
  const created = await ok([
    "experiments", "create", "ranker-v2", "--name", "Learning-to-rank v2",
    "--arms", "search_v1=1,search_v2=1", "--hypothesis", "LTR v2 lifts search CTR by 5%",
    "--owner", "search-team", "--guardrails", "p95_latency=0.1,no_results_rate=0.01", "--mde", "0.05", "--sequential",
  ]);
  expect(created).toContain("experiments/ranker-v2: Learning-to-rank v2 (DRAFT, v1)");
  expect(created).toMatch(/arms: +search_v1\*=1, search_v2=1 \(\* control\)/);
  const started = await ok(["experiments", "start", "ranker-v2"]);
  expect(started).toContain("(RUNNING, v2)");
  expect(started).toMatch(/status DRAFT -> RUNNING/);

  // The search service: fetch the experiment once, assign each user, tag what it logs.
  const { experiment } = await h.client.getExperiment({ name: "experiments/ranker-v2" });
  const random = mulberry32(24);
  const counts = { search_v1: 0, search_v2: 0 } as Record<string, number>;
  let searches = 0;
  const batches = function* (): Generator<{ events: MessageInitShape<typeof EventSchema>[] }> {
    let events: MessageInitShape<typeof EventSchema>[] = [];
    for (let u = 0; u < USERS; u++) {
      const userId = `shopper-${u}`;
      const variant = assign(experiment!, userId).variant!;
      counts[variant]!++;
      for (let s = 0, n = 1 + Math.floor(random() * 3); s < n; s++) {
        const impressionId = `${userId}-${s}`;
        const t = new Date(); // now: after the experiment's start
        const latency = 80 + random() * 40;
        searches++;
        events.push({ kind: { case: "impression", value: { impressionId, userId, query: `query ${s}`, variant, resultsCount: random() < 0.03 ? 0 : 20, responseTimeMs: latency, timestamp: timestampFromDate(t) } } });
        if (random() < (variant === "search_v2" ? 0.36 : 0.3)) {
          events.push({ kind: { case: "click", value: { eventId: `${impressionId}-c`, impressionId, userId, productId: "p", rank: Math.floor(random() * 4), searchQuery: `query ${s}`, variant, responseTimeMs: latency, timestamp: timestampFromDate(t) } } });
        }
        if (events.length >= 998) {
          yield { events };
          events = [];
        }
      }
    }
    if (events.length > 0) yield { events };
  };
  const streamed = await h.client.streamEvents(batches());
  expect(streamed.rejected).toBe(0n);

  // Watch: the experiment's period, every search logged since it started.
  for await (const snapshot of h.client.watchMetrics({ experiment: "ranker-v2", intervalSeconds: 1 })) {
    expect(snapshot.overall?.impressions).toBe(BigInt(searches));
    expect(Object.keys(snapshot.variants).sort()).toEqual(["search_v1", "search_v2"]);
    break;
  }
  const watched = await ok(["watch", "--experiment", "ranker-v2", "--count", "1", "--interval", "1"]);
  expect(watched).toContain(`impressions=${searches}`);

  // The scorecard: everyone assigned, split as weighted, healthy, and a recommendation.
  const json = JSON.parse(await ok(["report", "--experiment", "ranker-v2", "--json"])) as { scorecard: { users: string; health: { healthy: boolean; srmDetected?: boolean; guardrails: { state: string }[] } }; srmDetected: boolean; recommendation: string; inference: string };
  expect(Number(json.scorecard.users)).toBe(USERS);
  expect(json.scorecard.health.healthy).toBe(true);
  expect(json.scorecard.health.srmDetected ?? false).toBe(false); // proto3 JSON leaves false out
  expect(json.scorecard.health.guardrails.map((g) => g.state)).toEqual([GuardrailState[GuardrailState.OK], GuardrailState[GuardrailState.OK]].map((s) => `GUARDRAIL_STATE_${s}`));
  expect(json.inference).toBe("INFERENCE_SEQUENTIAL");
  expect(json.recommendation).toBe("search_v2");
  expect(Math.abs(counts.search_v1! / USERS - 0.5)).toBeLessThan(0.02);
  const text = await ok(["report", "--experiment", "ranker-v2"]);
  expect(text).toMatch(/^Experiment experiments\/ranker-v2 \(RUNNING\): running \d+m$/m);
  expect(text).toMatch(/^Users: +10,000 so far/m);
  expect(text).toMatch(/^Health: +healthy$/m);
  const list = await ok(["experiments", "list", "--status", "running"]);
  expect(list).toMatch(/^ranker-v2 +RUNNING +Learning-to-rank v2 +search_v1\*=1, search_v2=1 +100%/m);

  // The dashboard's experiments page lists it, healthy, with its users.
  const dashboard = spawn(process.execPath, [CLI, "dashboard", "--address", h.server.address, "--port", "0", "--interval", "1"], { stdio: ["ignore", "pipe", "ignore"] });
  try {
    const [line] = (await once(createInterface({ input: dashboard.stdout! }), "line")) as [string];
    const page = await fetch(new URL("experiments", /(http:\/\/\S+)/.exec(line)![1]!));
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toMatch(/<tr data-key="ranker-v2" data-healthy="true">.*<td class="num">10,000<\/td>/);
  } finally {
    dashboard.kill("SIGTERM");
  }

  // Decide.
  expect(await ok(["experiments", "stop", "ranker-v2"])).toContain("(STOPPED, v3)");
  const refused = await cli(["experiments", "conclude", "ranker-v2", "--ship", "search_v9"]);
  expect(refused.code).toBe(64);
  expect(refused.stderr).toMatch(/invalid argument: shipped_variant: must be one of the experiment's variants/);
  const concluded = await ok(["experiments", "conclude", "ranker-v2", "--ship", "search_v2", "--note", "search CTR +6 points, guardrails ok"]);
  expect(concluded).toContain("(CONCLUDED, v4)");
  expect(concluded).toMatch(/conclusion: +shipped search_v2 \(anonymous, .*\): search CTR \+6 points, guardrails ok/);
  const shown = await ok(["experiments", "show", "ranker-v2"]);
  expect(shown.match(/^ +[1-4] +\d{4}-\d\d-\d\dT/gm)).toHaveLength(4);
  const again = await cli(["experiments", "start", "ranker-v2"]);
  expect(again.code).toBe(1);
  expect(again.stderr).toMatch(/FAILED_PRECONDITION: experiments\/ranker-v2 is CONCLUDED/);
  // The stored experiment agrees.
  const final = (await h.client.getExperiment({ name: "ranker-v2" })).experiment!;
  expect(final).toMatchObject({ status: ExperimentStatus.CONCLUDED, conclusion: { shippedVariant: "search_v2" } });
  // And the scorecard still reads its (now closed) period.
  const closed: GetVariantComparisonResponse = await h.client.getVariantComparison({ experiment: "ranker-v2" });
  expect(closed.endTime).toBeDefined();
  expect(closed.scorecard?.status).toBe(ExperimentStatus.CONCLUDED);
});
