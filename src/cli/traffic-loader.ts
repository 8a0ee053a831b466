/**
 * Loading the synthetic dataset (traffic-generator.ts) into a server: `streams` parallel
 * StreamEvents calls fed from one shared generator.
 */
import type { ClickAnalyticsClient, StreamBatch } from "../client/index.js";
import { createDatasetStats, generateBatches, validateDatasetOptions, type DatasetOptions, type DatasetStats } from "./traffic-generator.js";

export interface LoadOptions extends DatasetOptions {
  /** Parallel StreamEvents calls (default 4). */
  streams?: number;
  signal?: AbortSignal;
}

export interface LoadProgress {
  /** Events handed to a stream so far. */
  sent: number;
  total: number;
}

export interface LoadResult {
  stats: DatasetStats;
  streams: number;
  batches: number;
  accepted: number;
  duplicates: number;
  rejected: number;
  /** The first rejections the server reported, per stream (indexes count from that stream's start). */
  rejections: { stream: number; index: number; field: string; reason: string }[];
  seconds: number;
  /** Generated events / seconds, from the first batch to the last answer. */
  eventsPerSecond: number;
}

/**
 * Streams the dataset into the server over `streams` parallel StreamEvents calls, which take
 * batches from one shared generator as fast as each is able to send. Rejects if any stream
 * fails (and cancels the others).
 */
export async function loadDataset(
  client: Pick<ClickAnalyticsClient, "streamEvents">,
  options: LoadOptions,
  onProgress?: (progress: LoadProgress) => void,
): Promise<LoadResult> {
  const streams = options.streams ?? 4;
  if (!Number.isInteger(streams) || streams < 1 || streams > 64) throw new RangeError(`streams must be an integer between 1 and 64, got ${streams}`);
  validateDatasetOptions(options);
  const stats = createDatasetStats();
  const source = generateBatches(options, stats);
  const abort = new AbortController();
  const onAbort = () => abort.abort();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  let sent = 0;

  // Each stream pulls from the shared generator; concurrent next() calls on an async generator
  // are queued, so every batch goes to exactly one stream. Not forwarding return(): one stream
  // stopping early must not end the generator for the others.
  async function* lane(): AsyncGenerator<StreamBatch> {
    for (;;) {
      if (abort.signal.aborted) return;
      const next = await source.next();
      if (next.done) return;
      sent += next.value.events?.length ?? 0;
      onProgress?.({ sent, total: options.events });
      yield next.value;
    }
  }

  const started = performance.now();
  const outcomes = await Promise.allSettled(
    Array.from({ length: streams }, async () => {
      try {
        return await client.streamEvents(lane(), { signal: abort.signal });
      } catch (error) {
        abort.abort();
        throw error;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  options.signal?.removeEventListener("abort", onAbort);
  const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected");
  if (failure) throw failure.reason;

  const result: LoadResult = { stats, streams, batches: 0, accepted: 0, duplicates: 0, rejected: 0, rejections: [], seconds, eventsPerSecond: seconds > 0 ? stats.events / seconds : 0 };
  outcomes.forEach((o, stream) => {
    if (o.status !== "fulfilled") return;
    const r = o.value;
    result.batches += Number(r.batches);
    result.accepted += Number(r.accepted);
    result.duplicates += Number(r.duplicates);
    result.rejected += Number(r.rejected);
    for (const x of r.firstRejections) result.rejections.push({ stream, index: Number(x.index), field: x.field, reason: x.reason });
  });
  return result;
}
