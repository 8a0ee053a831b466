/**
 * The live feed behind `click-analytics dashboard`: one WatchMetrics stream and, on each of its
 * snapshots, the report's data (GetVariantComparison and the per-variant series, ranks and
 * latency) read through the typed client. When the stream or a call fails, or the server ends
 * the stream (it does when it shuts down), the feed reconnects with exponential backoff and says
 * so; only answers that retrying cannot change (a bad token, a bad request) end it.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { Status, type WatchMetricsResponse } from "../client/index.js";
import { callFailure, CliError, openClient, windowRequest, type Connection } from "./commands/common.js";
import { fetchReportData, type ReportData, type ReportRequest } from "./commands/report-data.js";

export type FeedState = "connecting" | "live" | "reconnecting" | "stopped";

export interface FeedStatus {
  state: FeedState;
  address: string;
  /** The attempt under way or next (1 for the first connection). */
  attempt: number;
  /** Why the previous attempt ended. */
  error?: string | undefined;
  /** When the next attempt starts (epoch ms), while waiting. */
  retryAt?: number | undefined;
}

export interface FeedUpdate {
  snapshot: WatchMetricsResponse;
  data: ReportData;
}

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 500, maxMs: 10_000 };

/** Doubling from `initialMs` up to `maxMs`, each delay drawn from its upper half so that many dashboards do not retry in step. */
export function backoffDelay(failures: number, backoff: Backoff, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, failures - 1));
  return Math.round(ceiling * (0.5 + random() / 2));
}

/** Answers a retry cannot change: the dashboard stops with them instead of retrying forever. */
const FINAL_CODES: ReadonlySet<number> = new Set([Status.UNAUTHENTICATED, Status.PERMISSION_DENIED, Status.INVALID_ARGUMENT, Status.UNIMPLEMENTED]);

function isFinal(error: unknown): boolean {
  return typeof error === "object" && error !== null && FINAL_CODES.has((error as { code?: number }).code ?? -1);
}

export interface FeedOptions {
  conn: Connection;
  request: ReportRequest;
  intervalSeconds: number;
  signal: AbortSignal;
  onStatus(status: FeedStatus): void;
  onUpdate(update: FeedUpdate): void;
  backoff?: Backoff | undefined;
}

/**
 * Runs until `signal` aborts (resolves) or the server gives a final answer (rejects with the
 * CliError the other commands print for it).
 */
export async function runDashboardFeed(options: FeedOptions): Promise<void> {
  const { conn, request, signal } = options;
  const backoff = options.backoff ?? DEFAULT_BACKOFF;
  let failures = 0;
  let everLive = false;
  let error: string | undefined;
  while (!signal.aborted) {
    options.onStatus({ state: everLive ? "reconnecting" : "connecting", address: conn.address, attempt: failures + 1, error });
    // A fresh channel per attempt: a channel that saw the server go away keeps its own
    // (much longer) reconnect backoff, and calls on it would fail fast meanwhile.
    const client = openClient(conn);
    try {
      const stream = client.watchMetrics({ ...windowRequest(request.window), intervalSeconds: options.intervalSeconds }, { signal });
      for await (const snapshot of stream) {
        const data = await fetchReportData(client, conn.address, request, { signal });
        if (signal.aborted) break;
        failures = 0;
        error = undefined;
        everLive = true;
        options.onStatus({ state: "live", address: conn.address, attempt: 0 });
        options.onUpdate({ snapshot, data });
      }
      error = "the server ended the stream (shutting down?)";
    } catch (caught) {
      if (signal.aborted) break;
      const failure = callFailure(caught, conn);
      if (isFinal(caught)) throw failure;
      error = failure instanceof CliError ? failure.message : String(caught);
    } finally {
      client.close();
    }
    if (signal.aborted) break;
    failures++;
    const delay = backoffDelay(failures, backoff);
    options.onStatus({ state: everLive ? "reconnecting" : "connecting", address: conn.address, attempt: failures + 1, error, retryAt: Date.now() + delay });
    await sleep(delay, undefined, { signal }).catch(() => undefined);
  }
}
