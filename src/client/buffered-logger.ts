/**
 * The hot-path logger: call sites hand it clicks and impressions and move on; it batches them
 * into LogEvents calls by size or time. Memory is bounded (events beyond the bound are dropped
 * and reported, never queued without limit), every event gets an event_id so the client's retry
 * policy can resend a batch without double counting, and failures go to one error callback.
 */
import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { EventOutcome, type EventResult, type EventSchema, type LogClickRequestSchema, type LogImpressionRequestSchema } from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import type { CallOptions, ClickAnalyticsClient } from "./client.js";

export type ClickInit = MessageInitShape<typeof LogClickRequestSchema>;
export type ImpressionInit = MessageInitShape<typeof LogImpressionRequestSchema>;
type EventInit = MessageInitShape<typeof EventSchema>;

export interface BufferedLoggerError {
  /** rejected: the server refused some events (see results); failed: a batch could not be sent; dropped: the buffer was full. */
  kind: "rejected" | "failed" | "dropped";
  message: string;
  /** How many events this concerns. */
  events: number;
  results?: EventResult[];
  cause?: unknown;
}

export interface BufferedLoggerOptions {
  /** Events per LogEvents call (1..1000); a full batch is sent at once. Default 500. */
  maxBatchSize?: number;
  /** The longest an event waits before its batch is sent. Default 200 ms. */
  flushIntervalMs?: number;
  /** Events buffered or in flight at most; more are dropped and reported. Default 10,000. */
  maxBufferedEvents?: number;
  /** LogEvents calls in flight at most. Default 2. */
  maxConcurrentBatches?: number;
  /** Deadline and metadata for each LogEvents call. Default timeout 10 s. */
  callOptions?: CallOptions;
  onError?: (error: BufferedLoggerError) => void;
}

export interface BufferedLoggerStats {
  accepted: number;
  duplicates: number;
  rejected: number;
  /** Events in batches that could not be delivered. */
  failed: number;
  dropped: number;
  batches: number;
}

export class BufferedLogger {
  private buffer: EventInit[] = [];
  /** Events are numbered in arrival order; buffer[0] is number bufferStart. */
  private nextSeq = 0;
  private bufferStart = 0;
  /** First sequence number of each batch in flight, with its size. */
  private readonly inFlight = new Map<number, number>();
  private inFlightEvents = 0;
  /** Partial batches are sent while the buffer holds events numbered below this. */
  private sendBelow = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private waiters: { target: number; resolve: () => void }[] = [];
  readonly stats: BufferedLoggerStats = { accepted: 0, duplicates: 0, rejected: 0, failed: 0, dropped: 0, batches: 0 };
  private readonly maxBatchSize: number;
  private readonly flushIntervalMs: number;
  private readonly maxBufferedEvents: number;
  private readonly maxConcurrentBatches: number;

  constructor(
    private readonly client: Pick<ClickAnalyticsClient, "logEvents">,
    private readonly options: BufferedLoggerOptions = {},
  ) {
    this.maxBatchSize = Math.min(Math.max(options.maxBatchSize ?? 500, 1), 1000);
    this.flushIntervalMs = options.flushIntervalMs ?? 200;
    this.maxBufferedEvents = options.maxBufferedEvents ?? 10_000;
    this.maxConcurrentBatches = Math.max(options.maxConcurrentBatches ?? 2, 1);
  }

  /** Queues a click; returns its event_id. */
  logClick(click: ClickInit): string {
    const eventId = click.eventId || randomUUID();
    this.enqueue({ kind: { case: "click", value: { ...click, eventId } } });
    return eventId;
  }

  /** Queues an impression; returns its impression_id, for linking the clicks on its results. */
  logImpression(impression: ImpressionInit): string {
    const eventId = impression.eventId || randomUUID();
    this.enqueue({ kind: { case: "impression", value: { ...impression, eventId } } });
    return impression.impressionId || eventId;
  }

  /** Events waiting or being sent. */
  get pending(): number {
    return this.buffer.length + this.inFlightEvents;
  }

  /** Sends every event queued before this call and resolves once each has been answered (or reported). */
  async flush(): Promise<void> {
    const target = this.nextSeq;
    this.sendBelow = Math.max(this.sendBelow, target);
    const done = new Promise<void>((resolve) => this.waiters.push({ target, resolve }));
    this.pump();
    await done;
  }

  /** Flushes and stops: later events are dropped and reported. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
    clearTimeout(this.timer);
  }

  private report(error: BufferedLoggerError): void {
    try {
      this.options.onError?.(error);
    } catch {
      // A throwing callback must not break the logger on the caller's hot path.
    }
  }

  private enqueue(event: EventInit): void {
    if (this.closed || this.pending >= this.maxBufferedEvents) {
      this.stats.dropped++;
      this.report({ kind: "dropped", message: this.closed ? "logger is closed" : `buffer full (${this.maxBufferedEvents} events)`, events: 1 });
      return;
    }
    this.buffer.push(event);
    this.nextSeq++;
    if (this.buffer.length >= this.maxBatchSize) this.pump();
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.sendBelow = Math.max(this.sendBelow, this.nextSeq);
        this.pump();
      }, this.flushIntervalMs);
      // A buffered event must not keep a process alive on its own; close() sends what is left.
      this.timer.unref();
    }
  }

  /** Every event numbered below this has been answered or reported. */
  private settledBelow(): number {
    return Math.min(this.buffer.length > 0 ? this.bufferStart : this.nextSeq, ...this.inFlight.keys());
  }

  /** Starts as many batches as allowed: full ones always, partial ones when time is up or on flush. */
  private pump(): void {
    while (this.inFlight.size < this.maxConcurrentBatches && (this.buffer.length >= this.maxBatchSize || (this.buffer.length > 0 && this.bufferStart < this.sendBelow))) {
      const start = this.bufferStart;
      const events = this.buffer.splice(0, this.maxBatchSize);
      this.bufferStart += events.length;
      void this.send(start, events);
    }
    if (this.buffer.length === 0) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const settled = this.settledBelow();
    this.waiters = this.waiters.filter((w) => {
      if (w.target > settled) return true;
      w.resolve();
      return false;
    });
  }

  private async send(start: number, events: EventInit[]): Promise<void> {
    this.inFlight.set(start, events.length);
    this.inFlightEvents += events.length;
    this.stats.batches++;
    try {
      const res = await this.client.logEvents({ events }, this.options.callOptions);
      this.stats.accepted += Number(res.accepted);
      this.stats.duplicates += Number(res.duplicates);
      this.stats.rejected += Number(res.rejected);
      if (res.rejected > 0n) {
        const results = res.results.filter((r) => r.outcome === EventOutcome.REJECTED);
        this.report({ kind: "rejected", message: `${results.length} event(s) rejected, first: ${results[0]?.field}: ${results[0]?.reason}`, events: results.length, results });
      }
    } catch (cause) {
      this.stats.failed += events.length;
      this.report({ kind: "failed", message: `batch of ${events.length} events not delivered: ${cause instanceof Error ? cause.message : String(cause)}`, events: events.length, cause });
    } finally {
      this.inFlight.delete(start);
      this.inFlightEvents -= events.length;
      this.pump();
    }
  }
}

export function createBufferedLogger(client: Pick<ClickAnalyticsClient, "logEvents">, options?: BufferedLoggerOptions): BufferedLogger {
  return new BufferedLogger(client, options);
}
