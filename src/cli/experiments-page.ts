/**
 * The live dashboard's experiments pages: /experiments lists the RUNNING experiments with their
 * health at a glance (run time, users against the MDE's need, SRM, leak, guardrails, the
 * recommendation), each linking to /experiments/KEY, its scorecard (the comparison and the
 * scorecard as `report --experiment` prints them). Read from the server on every request
 * (ListExperiments, GetVariantComparison with `experiment`); the pages reload themselves
 * (a `Refresh` header every dashboard interval), without scripts.
 */
import type { ServerResponse } from "node:http";
import { ExperimentStatus, GuardrailState, type ClickAnalyticsClient, type Experiment, type GetVariantComparisonResponse } from "../client/index.js";
import { callFailure, openClient, type Connection } from "./commands/common.js";
import { renderComparison } from "./commands/report.js";
import { metricLabel, renderScorecard } from "./commands/experiments.js";
import { createStyle, integer } from "./format.js";
import { escapeHtml, htmlDocument } from "./report-html.js";

/** No scripts: the pages reload themselves (Refresh header). */
export const EXPERIMENTS_CSP = "default-src 'none'; style-src 'unsafe-inline'";

const CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #1f2328; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #d0d7de; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.health { font-weight: 600; }
.health.ok { color: #116329; }
.health.bad { color: #a40e26; }
.problems { display: block; font-weight: 400; font-size: 12px; }
pre { background: #f6f8fa; padding: 10px; overflow-x: auto; }
nav { margin-bottom: 8px; }
`;

/** "2h 5m", "3d 4h" */
function runTime(seconds: bigint | undefined): string {
  const total = Number(seconds ?? 0n);
  const d = Math.floor(total / 86_400);
  const h = Math.floor((total % 86_400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : `${m}m`;
}

interface Row {
  experiment: Experiment;
  comparison?: GetVariantComparisonResponse | undefined;
  error?: string | undefined;
}

/** The table of running experiments. */
export function renderExperimentsList(rows: readonly Row[], refreshSeconds: number): string {
  const head = ["experiment", "title", "arms", "running", "users", "needed", "SRM", "leak", "guardrails", "recommendation", "health"];
  const body = rows.map(({ experiment: e, comparison: c, error }) => {
    const key = escapeHtml(e.key);
    const link = `<a href="/experiments/${encodeURIComponent(e.key)}">${key}</a>`;
    const arms = escapeHtml(e.arms.map((a) => `${a.variant}${a.variant === e.control ? "*" : ""}`).join(", "));
    if (error !== undefined || c?.scorecard === undefined) {
      return `<tr data-key="${key}"><td>${link}</td><td>${escapeHtml(e.displayName)}</td><td>${arms}</td><td colspan="7">${escapeHtml(error ?? "no scorecard")}</td><td class="health bad">unknown</td></tr>`;
    }
    const s = c.scorecard;
    const h = s.health!;
    const guardrails = h.guardrails.length === 0 ? "none" : h.guardrails.map((g) => `${metricLabel(g.metric)}: ${g.state === GuardrailState.VIOLATED ? "VIOLATED" : (GuardrailState[g.state] ?? "").toLowerCase().replace("_", " ")}`).join("<br>");
    const srm = h.srmDetected ? "MISMATCH" : `ok${h.srmPValue === undefined ? "" : ` (p ${h.srmPValue.toFixed(3)})`}`;
    const leak = h.leakShare === undefined ? "-" : `${(h.leakShare * 100).toFixed(2)}%${h.leakDetected ? " LEAK" : ""}`;
    const health = h.healthy ? `<td class="health ok">healthy</td>` : `<td class="health bad">unhealthy<span class="problems">${escapeHtml(h.problems.join(", "))}</span></td>`;
    return `<tr data-key="${key}" data-healthy="${h.healthy}"><td>${link}</td><td>${escapeHtml(e.displayName)}</td><td>${arms}</td><td class="num">${runTime(s.runTime?.seconds)}</td><td class="num">${integer(s.users)}</td><td class="num">${s.usersNeeded === undefined ? "-" : integer(s.usersNeeded)}</td><td>${srm}</td><td>${leak}</td><td>${guardrails}</td><td>${escapeHtml(c.recommendation || `none (${c.recommendationReason})`)}</td>${health}</tr>`;
  });
  const table = rows.length === 0 ? `<p class="empty">No running experiments.</p>` : `<table class="experiments"><thead><tr>${head.map((x) => `<th>${x}</th>`).join("")}</tr></thead><tbody>${body.join("")}</tbody></table>`;
  return htmlDocument("Running experiments", EXPERIMENTS_CSP, CSS, `<nav><a href="/">live dashboard</a></nav>\n${table}\n<p class="meta">* control. Users needed: for the experiment's target MDE on its primary metric (80% power). Refreshed every ${refreshSeconds} s.</p>`);
}

/** One experiment's scorecard page. */
export function renderExperimentPage(e: Experiment, c: GetVariantComparisonResponse): string {
  const style = createStyle(false);
  const text = `${renderComparison(c, style, true)}\n\n${c.scorecard ? renderScorecard(c.scorecard, style) : ""}`;
  return htmlDocument(`${e.displayName} (${e.name})`, EXPERIMENTS_CSP, CSS, `<nav><a href="/experiments">all running experiments</a></nav>\n<pre class="scorecard">${escapeHtml(text)}</pre>`);
}

async function runningRows(client: ClickAnalyticsClient, conn: Connection): Promise<Row[]> {
  const experiments: Experiment[] = [];
  let pageToken = "";
  do {
    const page = await client.listExperiments({ status: ExperimentStatus.RUNNING, pageSize: 100, pageToken });
    experiments.push(...page.experiments);
    pageToken = page.nextPageToken;
  } while (pageToken !== "" && experiments.length < 500);
  return Promise.all(
    experiments.map(async (experiment): Promise<Row> => {
      try {
        return { experiment, comparison: await client.getVariantComparison({ experiment: experiment.name }) };
      } catch (error) {
        return { experiment, error: (callFailure(error, conn) as Error).message };
      }
    }),
  );
}

/**
 * A request handler for /experiments and /experiments/KEY; false for any other path. One
 * client for the dashboard's life.
 */
export function experimentsRoute(conn: Connection, refreshSeconds: number): { handle(path: string, response: ServerResponse): boolean; close(): void } {
  let client: ClickAnalyticsClient | undefined;
  const send = (response: ServerResponse, status: number, html: string) =>
    response.writeHead(status, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store", refresh: String(refreshSeconds), "content-security-policy": EXPERIMENTS_CSP, "x-content-type-options": "nosniff" }).end(html);
  const failed = (response: ServerResponse, error: unknown) => {
    const message = (callFailure(error, conn) as Error).message;
    send(response, 502, htmlDocument("Experiments unavailable", EXPERIMENTS_CSP, CSS, `<p class="error">${escapeHtml(message)}</p>`));
  };
  return {
    handle(path, response) {
      const match = /^\/experiments(?:\/([^/]+))?\/?$/.exec(path);
      if (match === null) return false;
      client ??= openClient(conn);
      const c = client;
      const key = match[1] === undefined ? undefined : decodeURIComponent(match[1]);
      const work =
        key === undefined
          ? runningRows(c, conn).then((rows) => send(response, 200, renderExperimentsList(rows, refreshSeconds)))
          : Promise.all([c.getExperiment({ name: key }), c.getVariantComparison({ experiment: key })]).then(([{ experiment }, comparison]) => send(response, 200, renderExperimentPage(experiment!, comparison)));
      work.catch((error: unknown) => failed(response, error));
      return true;
    },
    close() {
      client?.close();
    },
  };
}
