/**
 * `click-analytics dashboard`: a local web page with the variant comparison, CTR and latency,
 * updated live. The process holds one WatchMetrics stream (dashboard-feed.ts), renders a board
 * per snapshot (dashboard-page.ts) and pushes it to every open page over Server-Sent Events.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { runDashboardFeed, type FeedStatus } from "../dashboard-feed.js";
import { DASHBOARD_CSP, renderBoard, renderDashboardPage, statusView, type BoardMessage } from "../dashboard-page.js";
import { EventStreamHub } from "../event-stream.js";
import { experimentsRoute } from "../experiments-page.js";
import { CliError, CONNECTION_HELP, CONNECTION_OPTIONS, connectionFrom, intFlag, parseFlags, stringFlag, UsageError, type Command, type Io } from "./common.js";
import { COMPARISON_HELP, COMPARISON_OPTIONS, comparisonFlags, SPLIT_HELP, WINDOW_HELP } from "./comparison-flags.js";

export const DEFAULT_DASHBOARD_PORT = 8090;

export const DASHBOARD_USAGE = `usage: click-analytics dashboard [flags]

Serves a live web page at http://HOST:PORT/: the variant comparison (lifts with intervals,
p-values, the recommendation), CTR and latency (p50/p95/p99) per variant and the report's
charts, updated on every WatchMetrics snapshot; /experiments lists the running experiments with
their health, each linking to its scorecard. When the server goes away the dashboard
reconnects with backoff and the page says so. Ctrl-C stops it.

  --port PORT             where the page is served, 0..65535 (default ${DEFAULT_DASHBOARD_PORT}; 0 picks a free one)
  --host HOST             the interface to listen on (default 127.0.0.1; 0.0.0.0 shares the page
                          with your network, without authentication)
  --interval SECONDS      seconds between snapshots, 1..3600 (default 5)
${WINDOW_HELP}
${COMPARISON_HELP}
  --fixed-horizon         fixed-horizon p-values; default sequential (always valid), the ones
                          that stay valid however often the page is looked at
${SPLIT_HELP}
  --time-zone ZONE        IANA time zone of the daily charts' days (default UTC)
  -h, --help              this help

${CONNECTION_HELP}`;

/** Serves the page, its event stream, a health answer and the experiments pages (`other`); anything else is 404. */
function router(hub: EventStreamHub, page: () => string, health: () => { live: boolean; body: object }, other?: (path: string, response: ServerResponse) => boolean) {
  return (request: IncomingMessage, response: ServerResponse) => {
    const path = new URL(request.url ?? "/", "http://dashboard").pathname;
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("method not allowed\n");
    } else if (path === "/") {
      response.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store", "content-security-policy": DASHBOARD_CSP, "x-content-type-options": "nosniff" }).end(page());
    } else if (path === "/events" && request.method === "GET") {
      hub.attach(request, response);
    } else if (path === "/healthz") {
      const { live, body } = health();
      response.writeHead(live ? 200 : 503, { "content-type": "application/json", "cache-control": "no-store" }).end(`${JSON.stringify(body)}\n`);
    } else if (other?.(path, response) === true) {
      // answered (the experiments pages)
    } else {
      response.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found\n");
    }
  };
}

export const dashboardCommand: Command = {
  name: "dashboard",
  summary: "a live web page: comparison, CTR and latency per variant (WatchMetrics)",
  usage: DASHBOARD_USAGE,
  async run(argv: string[], io: Io): Promise<number> {
    const values = parseFlags(
      argv,
      { ...CONNECTION_OPTIONS, ...COMPARISON_OPTIONS, port: { type: "string" }, host: { type: "string" }, interval: { type: "string" }, "fixed-horizon": { type: "boolean" } },
      DASHBOARD_USAGE,
      io,
    );
    if (values === undefined) return 0;
    const port = intFlag(values, "port", DEFAULT_DASHBOARD_PORT, 0, 65_535, DASHBOARD_USAGE);
    const host = stringFlag(values, "host") ?? "127.0.0.1";
    if (host.trim() === "") throw new UsageError("--host must not be empty", DASHBOARD_USAGE);
    const intervalSeconds = intFlag(values, "interval", 5, 1, 3600, DASHBOARD_USAGE);
    // Sequential by default: a live page is looked at again and again, which fixed-horizon p-values do not survive.
    const request = comparisonFlags(values, DASHBOARD_USAGE, values["fixed-horizon"] !== true);
    const conn = connectionFrom(values, DASHBOARD_USAGE, io.env);

    const hub = new EventStreamHub();
    const experimentPages = experimentsRoute(conn, intervalSeconds);
    let status: FeedStatus = { state: "connecting", address: conn.address, attempt: 1 };
    let board: BoardMessage | undefined;
    let lastSnapshotAt: string | undefined;
    const title = "ClickAnalytics live dashboard";
    const server = createServer(
      router(
        hub,
        () => renderDashboardPage({ title, status: statusView(status), board }),
        () => ({ live: status.state === "live", body: { state: status.state, address: conn.address, attempt: status.attempt, lastSnapshotAt, error: status.error } }),
        experimentPages.handle,
      ),
    );
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => resolve());
      });
    } catch (error) {
      hub.close();
      experimentPages.close();
      const code = (error as NodeJS.ErrnoException).code;
      const why = code === "EADDRINUSE" ? "the port is in use (choose another with --port, or 0 for any free one)" : code === "EADDRNOTAVAIL" || code === "ENOTFOUND" ? "no such local address (--host)" : (error as Error).message;
      throw new CliError(`cannot listen on ${host}:${port}: ${why}`);
    }
    const bound = server.address() as AddressInfo;
    const url = `http://${bound.family === "IPv6" ? `[${bound.address}]` : bound.address}:${bound.port}/`;
    io.stdout.write(`dashboard at ${url} (ClickAnalytics at ${conn.address}, every ${intervalSeconds} s; Ctrl-C stops it)\n`);

    const setStatus = (next: FeedStatus) => {
      // One stderr line per change of state, not per snapshot or retry.
      if (next.state !== status.state || (next.error !== undefined && next.error !== status.error)) {
        const view = statusView(next);
        io.stderr.write(`${new Date().toISOString()} ${view.text}${view.detail ? `: ${view.detail}` : ""}\n`);
      }
      status = next;
      hub.publish("status", statusView(next));
    };
    let sequence = 0;
    try {
      await runDashboardFeed({
        conn,
        request,
        intervalSeconds,
        signal: io.signal,
        onStatus: setStatus,
        onUpdate: (update) => {
          board = { sequence: ++sequence, html: renderBoard(update, intervalSeconds) };
          lastSnapshotAt = new Date().toISOString();
          hub.publish("board", board);
        },
      });
    } finally {
      setStatus({ ...status, state: "stopped", retryAt: undefined });
      hub.close();
      experimentPages.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    return 0;
  },
};
