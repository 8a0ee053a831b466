/**
 * The page of `click-analytics dashboard`: one self-contained HTML document (inline style and
 * script, nothing fetched but its own event stream) whose board is replaced on every update.
 * The board is drawn here, on the Node side, with the HTML report's tables and charts
 * (report-html.ts); the browser only swaps it in and shows the connection status.
 */
import { createHash } from "node:crypto";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { MetricsSnapshot } from "../client/index.js";
import type { FeedStatus, FeedUpdate } from "./dashboard-feed.js";
import { inferenceLabel, orderedVariants } from "./commands/report-data.js";
import { decimal, integer, percent } from "./format.js";
import { dataRow, escapeHtml, headerRow, htmlDocument, REPORT_CSS, reportCharts, summaryTables, verdict } from "./report-html.js";

/** What the status line says, and a second line of detail (the last error, the next try). */
export interface StatusView {
  state: FeedStatus["state"];
  text: string;
  detail: string;
}

export function statusView(status: FeedStatus, now = Date.now()): StatusView {
  const retry = status.retryAt === undefined ? "" : `retrying in ${Math.max(0, (status.retryAt - now) / 1000).toFixed(1)} s`;
  const detail = [status.error ?? "", retry].filter(Boolean).join("; ");
  switch (status.state) {
    case "live":
      return { state: "live", text: `live: ClickAnalytics at ${status.address}`, detail: "" };
    case "stopped":
      return { state: "stopped", text: "stopped: the dashboard process has ended", detail };
    default:
      return { state: status.state, text: `${status.state} to ${status.address}… (attempt ${status.attempt})`, detail };
  }
}

/** One message per browser update: the board's HTML and a running number. */
export interface BoardMessage {
  sequence: number;
  html: string;
}

/** The WatchMetrics snapshot per variant, with p99 from GetResponseTimeMetrics (the stream has p50 and p95). */
function liveTable(update: FeedUpdate): string {
  const { snapshot, data } = update;
  const names = [...orderedVariants(data.comparison), ...Object.keys(snapshot.variants).sort()].filter((n, i, all) => all.indexOf(n) === i && snapshot.variants[n] !== undefined);
  const p99 = new Map(data.variants.map((v) => [v.variant, v.latency.p99ResponseTimeMs]));
  const row = (name: string, s: MetricsSnapshot | undefined, p99Ms: number | undefined, label = name) =>
    dataRow([label, integer(s?.impressions ?? 0n), integer(s?.clicks ?? 0n), percent(s?.ctr), percent(s?.searchCtr), decimal(s?.avgRank), decimal(s?.p50ResponseTimeMs, 1), decimal(s?.p95ResponseTimeMs, 1), p99Ms === undefined ? "" : decimal(p99Ms, 1)], "", 1);
  const rows = names.map((n) => row(n, snapshot.variants[n], p99.get(n), n === data.comparison.control ? `${n} (control)` : n));
  return `<div class="scroll"><table class="live">${headerRow(["variant", "searches", "clicks", "CTR", "search CTR", "avg rank", "p50 ms", "p95 ms", "p99 ms"])}${rows.join("")}${row("all", snapshot.overall, undefined)}</table></div>`;
}

/** The board: verdict, live numbers, the comparison tables and the report's charts. */
export function renderBoard(update: FeedUpdate, intervalSeconds: number): string {
  const { snapshot, data } = update;
  const c = data.comparison;
  const at = snapshot.timestamp ? timestampDate(snapshot.timestamp) : data.generatedAt;
  const conf = Math.round((c.confidence || 0.95) * 1000) / 10;
  return `<p class="meta">Snapshot <time data-snapshot datetime="${at.toISOString()}">${escapeHtml(at.toISOString().replace("T", " ").slice(0, 19))} UTC</time> · ${escapeHtml(data.windowLabel)} · control ${escapeHtml(c.control)} · ${conf}% confidence · ${escapeHtml(inferenceLabel(c))} · every ${intervalSeconds} s</p>
${verdict(data)}
<h2>Live (WatchMetrics)</h2>
${liveTable(update)}
<p class="note">Searches, clicks, CTR, search CTR, rank and p50/p95 latency from the WatchMetrics stream; p99 from GetResponseTimeMetrics at the same snapshot.</p>
<h2>Comparison</h2>
${summaryTables(data)}
<h2>Charts</h2>
${reportCharts(data)}`;
}

/** Runs in the browser: applies status and board messages from the event stream. */
const PAGE_SCRIPT = `(() => {
  const status = document.getElementById("status");
  const board = document.getElementById("board");
  const show = (s) => {
    status.dataset.state = s.state;
    status.querySelector(".text").textContent = s.text;
    status.querySelector(".detail").textContent = s.detail;
    board.classList.toggle("stale", s.state !== "live");
  };
  const events = new EventSource("events");
  events.addEventListener("status", (e) => show(JSON.parse(e.data)));
  events.addEventListener("board", (e) => {
    const message = JSON.parse(e.data);
    board.innerHTML = message.html;
    board.dataset.sequence = String(message.sequence);
  });
  // The dashboard process itself is gone (stopped or restarting): the browser retries on its own.
  events.addEventListener("error", () => {
    if (status.dataset.state !== "stopped") show({ state: "lost", text: "lost the dashboard at " + location.host + "; retrying…", detail: "" });
  });
})();`;

/** Only this script may run, and the page may fetch nothing but its own event stream. */
export const DASHBOARD_CSP = `default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-${createHash("sha256").update(PAGE_SCRIPT).digest("base64")}'; connect-src 'self'`;

const DASHBOARD_CSS = `
.status { position: sticky; top: 0; margin: 0 0 12px; padding: 6px 10px; border-radius: 4px; background: #fff8c5; color: #7d4e00; font-weight: 600; z-index: 1; }
.status[data-state="live"] { background: #e6f4ea; color: #116329; }
.status[data-state="stopped"], .status[data-state="lost"] { background: #fde8e8; color: #a40e26; }
.status .detail { display: block; font-weight: 400; font-size: 12px; }
.status .detail:empty { display: none; }
#board.stale { opacity: 0.55; }
`;

export interface PageOptions {
  title: string;
  status: StatusView;
  /** The board as of now (empty before the first snapshot). */
  board: BoardMessage | undefined;
}

/** The whole page; later states arrive over the event stream. */
export function renderDashboardPage(options: PageOptions): string {
  const { title, status, board } = options;
  return htmlDocument(
    title,
    DASHBOARD_CSP,
    REPORT_CSS + DASHBOARD_CSS,
    `<p id="status" class="status" role="status" aria-live="polite" data-state="${status.state}"><span class="text">${escapeHtml(status.text)}</span><span class="detail">${escapeHtml(status.detail)}</span></p>
<div id="board" class="${status.state === "live" ? "" : "stale"}" data-sequence="${board?.sequence ?? 0}">${board?.html ?? "<p>Waiting for the first snapshot…</p>"}</div>
<script>${PAGE_SCRIPT}</script>`,
  );
}
