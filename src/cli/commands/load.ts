/**
 * `click-analytics load`: realistic synthetic traffic (the generator in src/cli/traffic-generator.ts:
 * Zipf queries, Pareto users, two variants, linked clicks, log-normal latencies, a daily cycle)
 * sent to a server in LogEvents batches of 1,000, a few calls in flight, with a progress bar on
 * stderr that counts events the server has acknowledged (not merely handed to the transport).
 * Every event carries an id, so the typed client retries a batch that meets UNAVAILABLE.
 */
import { createDatasetStats, generateBatches, type DatasetStats } from "../traffic-generator.js";
import { EventOutcome, type ClickAnalyticsClient } from "../../client/index.js";
import { createProgress, formatDuration, formatInteger } from "../progress.js";
import { CliError, CONNECTION_HELP, CONNECTION_OPTIONS, connectionFrom, DAYS_HELP, daysFlag, EXIT, intFlag, openClient, callFailure, parseFlags, UsageError, type Command, type Io } from "./common.js";

export const LOAD_USAGE = `usage: click-analytics load --events N [flags]

Generates realistic synthetic search traffic and sends it to the server (LogEvents batches):
users with Pareto-distributed activity split 50/50 between search_v1 and search_v2,
Zipf-distributed queries, ~20% of searches clicked (mostly the top ranks, linked to their
search), ~3% without results, log-normal latencies and a daily cycle over the window; ~10% of
the searches with results interleave two rankers, ranker_a and ranker_b (logged with teams;
clicks slightly prefer ranker_a: see GetInterleavingResult). Every event has an id derived from
the seed: loading the same seed again is recognised as duplicates, not counted twice.

  --events N              how many events (impressions + clicks), exactly (required)
${DAYS_HELP.replace("look back N days", "spread over the last N days")}
  --users N               distinct users (default: events / 20, between 1 and 10000)
  --queries N             query vocabulary size (default 20000)
  --seed N                dataset seed (default: random, printed)
  --concurrency N         LogEvents calls in flight, 1..64 (default 4)
  -h, --help              this help

${CONNECTION_HELP}`;

/** Batches on their way: LogEvents waits for MongoDB, so a batch may take longer than a metrics call. */
const MIN_BATCH_TIMEOUT_MS = 60_000;

export interface LoadTotals {
  stats: DatasetStats;
  batches: number;
  accepted: number;
  duplicates: number;
  rejected: number;
  /** The first few rejections: position in the dataset, field and rule. */
  rejections: { index: number; field: string; reason: string }[];
  seconds: number;
}

/** Sends the dataset with `concurrency` LogEvents calls in flight; `onAcknowledged` gets the running count. */
export async function sendDataset(
  client: Pick<ClickAnalyticsClient, "logEvents">,
  options: { events: number; days: number; users: number; queries: number; seed: number; concurrency: number; timeoutMs: number; signal: AbortSignal },
  onAcknowledged: (events: number) => void,
): Promise<LoadTotals> {
  const stats = createDatasetStats();
  const source = generateBatches({ events: options.events, days: options.days, users: options.users, queries: options.queries, seed: options.seed }, stats);
  const abort = new AbortController();
  const stop = () => abort.abort();
  options.signal.addEventListener("abort", stop, { once: true });
  const totals: LoadTotals = { stats, batches: 0, accepted: 0, duplicates: 0, rejected: 0, rejections: [], seconds: 0 };
  let position = 0;
  let acknowledged = 0;
  const started = performance.now();
  // Concurrent next() calls on one async generator are queued: every batch goes to one worker.
  const worker = async () => {
    for (;;) {
      if (abort.signal.aborted) return;
      const next = await source.next();
      if (next.done) return;
      const events = next.value.events ?? [];
      const first = position;
      position += events.length;
      // A signal per call: the typed client leaves its abort listener on the signal it is given.
      const call = new AbortController();
      const relay = () => call.abort();
      abort.signal.addEventListener("abort", relay, { once: true });
      let r;
      try {
        r = await client.logEvents({ events }, { signal: call.signal, timeoutMs: Math.max(options.timeoutMs, MIN_BATCH_TIMEOUT_MS) });
      } finally {
        abort.signal.removeEventListener("abort", relay);
      }
      totals.batches++;
      totals.accepted += Number(r.accepted);
      totals.duplicates += Number(r.duplicates);
      totals.rejected += Number(r.rejected);
      for (const x of r.results) {
        if (x.outcome === EventOutcome.REJECTED && totals.rejections.length < 20) totals.rejections.push({ index: first + Number(x.index), field: x.field, reason: x.reason });
      }
      acknowledged += events.length;
      onAcknowledged(acknowledged);
    }
  };
  // The failure that stopped the load. The calls it then cancels fail CANCELLED on this side,
  // and an earlier worker's such failure must not be reported in its place: the user would read
  // "cancelled" for what was, say, UNAVAILABLE.
  let first: { error: unknown } | undefined;
  try {
    await Promise.allSettled(
      Array.from({ length: options.concurrency }, async () => {
        try {
          await worker();
        } catch (error) {
          first ??= { error };
          abort.abort();
          throw error;
        }
      }),
    );
    if (first) throw first.error;
  } finally {
    options.signal.removeEventListener("abort", stop);
    totals.seconds = (performance.now() - started) / 1000;
  }
  return totals;
}

export const loadCommand: Command = {
  name: "load",
  summary: "generate realistic synthetic traffic against a server",
  usage: LOAD_USAGE,
  async run(argv: string[], io: Io): Promise<number> {
    const values = parseFlags(
      argv,
      { ...CONNECTION_OPTIONS, events: { type: "string" }, days: { type: "string" }, users: { type: "string" }, queries: { type: "string" }, seed: { type: "string" }, concurrency: { type: "string" } },
      LOAD_USAGE,
      io,
    );
    if (values === undefined) return 0;
    if (values.events === undefined) throw new UsageError("--events is required", LOAD_USAGE);
    const events = intFlag(values, "events", 0, 1, 1_000_000_000, LOAD_USAGE);
    const days = daysFlag(values, LOAD_USAGE);
    const users = intFlag(values, "users", Math.max(1, Math.min(10_000, Math.round(events / 20))), 1, 100_000_000, LOAD_USAGE);
    const queries = intFlag(values, "queries", 20_000, 1, 1_000_000, LOAD_USAGE);
    const seed = intFlag(values, "seed", Math.floor(Math.random() * 2 ** 31), 0, Number.MAX_SAFE_INTEGER, LOAD_USAGE);
    const concurrency = intFlag(values, "concurrency", 4, 1, 64, LOAD_USAGE);
    const conn = connectionFrom(values, LOAD_USAGE, io.env);

    io.stderr.write(`loading ${formatInteger(events)} events over the last ${days} days (${formatInteger(users)} users, seed ${seed}) into ${conn.address}\n`);
    const progress = createProgress({ label: "load", total: events, unit: "events", stream: io.stderr });
    const client = openClient(conn);
    let result: LoadTotals;
    try {
      result = await sendDataset(client, { events, days, users, queries, seed, concurrency, timeoutMs: conn.timeoutMs, signal: io.signal }, (n) => progress.update(n));
    } catch (error) {
      if (io.signal.aborted) throw new CliError("interrupted: only part of the events were sent", EXIT.interrupted);
      throw callFailure(error, conn);
    } finally {
      progress.finish();
      client.close();
    }
    const s = result.stats;
    const rate = result.seconds > 0 ? s.events / result.seconds : 0;
    const lines = [
      `sent ${formatInteger(s.events)} events (${formatInteger(s.impressions)} searches, ${formatInteger(s.clicks)} clicks, ${formatInteger(s.activeUsers)} users) in ${formatDuration(result.seconds)}, ${formatInteger(rate)} events/s`,
      `accepted ${formatInteger(result.accepted)}, duplicates ${formatInteger(result.duplicates)}, rejected ${formatInteger(result.rejected)}`,
      ...result.rejections.slice(0, 5).map((r) => `  rejected event ${r.index}: ${r.field}: ${r.reason}`),
    ];
    io.stdout.write(`${lines.join("\n")}\n`);
    return result.rejected > 0 ? EXIT.failure : 0;
  },
};
