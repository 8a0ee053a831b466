/**
 * ExportEvents: the raw clicks and impressions of a window, oldest first, in batches of up to
 * 1,000, for notebooks and exports.
 *
 * - One MongoDB cursor per collection, filtered with the metrics' own `match()` (so an export
 *   holds exactly the events the metrics count) and sorted by timestamp; with both kinds the two
 *   cursors are merged by timestamp (an impression before a click of the same instant).
 * - Back-pressure: this is an async generator, and the adapter pulls the next batch only once
 *   the transport has taken the previous one (it awaits `drain`), so a slow client holds the
 *   cursors still instead of filling this process's memory. The driver buffers at most one
 *   cursor batch (1,000 documents) per collection.
 * - Cancellation: the client cancelling (or its deadline) aborts `ctx.signal`; the generator
 *   stops before its next read and closes its cursors (also when the adapter stops iterating).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { AbstractCursor, Filter } from "mongodb";
import { ClickSource, ExportedEventKind, ExportKind, type ExportedEventSchema, type ExportEventsRequest, type ExportEventsResponseSchema } from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import { DomainError, InvalidArgumentError } from "../core/errors.js";
import type { ClickSourceName } from "../core/events.js";
import { type ClickStore, type ClickDocument, type ImpressionDocument, match } from "../store/click-store.js";
import type { CallContext } from "./grpc-adapter.js";
import { metricsFilter, responseTime } from "./request-mapping.js";

/** Rows per ExportEventsResponse, and documents per cursor batch. */
export const EXPORT_BATCH_SIZE = 1_000;

type ExportedEventInit = MessageInitShape<typeof ExportedEventSchema>;
type ExportEventsResponseInit = MessageInitShape<typeof ExportEventsResponseSchema>;

const SOURCE: Record<ClickSourceName, ClickSource> = {
  SEARCH_RESULTS: ClickSource.SEARCH_RESULTS,
  RECOMMENDATIONS: ClickSource.RECOMMENDATIONS,
  AUTOCOMPLETE: ClickSource.AUTOCOMPLETE,
  RELATED_PRODUCTS: ClickSource.RELATED_PRODUCTS,
  SPONSORED: ClickSource.SPONSORED,
};

/** Internal bookkeeping fields never leave the server. */
const HIDDEN = { b: 0, pending_rollup: 0, click_claim: 0, clicked_on_insert: 0, query_normalized: 0, fc_t: 0, fc_r: 0, fi_t: 0, fi_r: 0, cf: 0 } as const;

function kindsOf(kind: ExportKind): { clicks: boolean; impressions: boolean } {
  switch (kind) {
    case ExportKind.UNSPECIFIED:
    case ExportKind.ALL:
      return { clicks: true, impressions: true };
    case ExportKind.CLICKS:
      return { clicks: true, impressions: false };
    case ExportKind.IMPRESSIONS:
      return { clicks: false, impressions: true };
    default:
      throw new InvalidArgumentError("kind", `must be ALL, CLICKS or IMPRESSIONS (got enum value ${kind as number})`);
  }
}

function fromClick(d: ClickDocument): ExportedEventInit {
  return {
    kind: ExportedEventKind.CLICK,
    eventId: d.event_id,
    userId: d.user_id,
    sessionId: d.session_id ?? "",
    timestamp: responseTime(d.timestamp),
    variant: d.variant,
    query: d.search_query,
    productId: d.product_id,
    rank: d.rank,
    responseTimeMs: Number(d.response_time_ms),
    impressionId: d.impression_id ?? "",
    source: SOURCE[d.source] ?? ClickSource.UNSPECIFIED,
  };
}

function fromImpression(d: ImpressionDocument): ExportedEventInit {
  return {
    kind: ExportedEventKind.IMPRESSION,
    eventId: d.event_id,
    userId: d.user_id,
    sessionId: d.session_id ?? "",
    timestamp: responseTime(d.timestamp),
    variant: d.variant,
    query: d.query,
    resultsCount: d.results_count,
    responseTimeMs: Number(d.response_time_ms),
    impressionId: d.impression_id,
    clicked: d.clicked === true,
    teams: d.teams ?? [],
  };
}

/** A cursor with one document of look-ahead, for merging two cursors by timestamp. */
class Peekable<T extends { timestamp: Date }> {
  private head: T | null | undefined;
  constructor(
    private readonly cursor: AbstractCursor<T>,
    /** Bounds a read that goes to the engine (an empty buffer: the next batch). */
    private readonly guard: <R>(read: Promise<R>) => Promise<R>,
  ) {}

  async peek(): Promise<T | null> {
    if (this.head === undefined) this.head = await (this.cursor.bufferedCount() > 0 ? this.cursor.next() : this.guard(this.cursor.next()));
    return this.head;
  }

  take(): void {
    this.head = undefined;
  }

  close(): Promise<void> {
    return this.guard(this.cursor.close());
  }
}

/** The ExportEvents handler (`exportEvents: (req, ctx) => exportEvents(store, req, ctx, now())`). */
export async function* exportEvents(store: ClickStore, req: ExportEventsRequest, ctx: CallContext, now: Date): AsyncGenerator<ExportEventsResponseInit, void, undefined> {
  // Validate everything before the first read.
  const filter = metricsFilter(req, now);
  const kinds = kindsOf(req.kind);
  // The export is the raw events themselves: none past the retention.
  store.retention.require(filter.window.start, "events");
  // Like the metrics: while acknowledged events still wait in the spool, an export would be incomplete.
  const pending = store.writer.pending;
  if (pending > 0) throw new DomainError("unavailable", `the export is unavailable while ${pending} acknowledged batch(es) are recovered from the local spool; retry shortly`);

  const m = match(filter);
  // Sorted by timestamp alone, so that the {timestamp: 1} (or {user_id, variant, timestamp})
  // index can stream in order; disk use allowed for filters that need an in-memory sort.
  const options = { sort: { timestamp: 1 as const }, batchSize: EXPORT_BATCH_SIZE, allowDiskUse: true, projection: HIDDEN };
  // A stalled engine ends the export with UNAVAILABLE within the ping timeout, not a silent hang.
  const guard = <R>(read: Promise<R>) => store.watchdog.race(read);
  const clicks = kinds.clicks ? new Peekable(store.collections.clicks.find(m as Filter<ClickDocument>, options), guard) : undefined;
  const impressions = kinds.impressions ? new Peekable(store.collections.impressions.find(m as Filter<ImpressionDocument>, options), guard) : undefined;

  /** The next event in timestamp order (impressions first on a tie), or null at the end. */
  const next = async (): Promise<ExportedEventInit | null> => {
    const [c, i] = await Promise.all([clicks?.peek() ?? null, impressions?.peek() ?? null]);
    if (i !== null && (c === null || i.timestamp.getTime() <= c.timestamp.getTime())) {
      impressions!.take();
      return fromImpression(i);
    }
    if (c !== null) {
      clicks!.take();
      return fromClick(c);
    }
    return null;
  };

  try {
    let batch: ExportedEventInit[] = [];
    for (;;) {
      if (ctx.signal.aborted) return;
      const event = await next();
      if (event === null) break;
      batch.push(event);
      if (batch.length === EXPORT_BATCH_SIZE) {
        yield { events: batch };
        batch = [];
      }
    }
    if (batch.length > 0 && !ctx.signal.aborted) yield { events: batch };
  } finally {
    // Not left waiting on an engine that stopped answering: the cursors die with their connection.
    await Promise.all([clicks?.close(), impressions?.close()]).catch(() => undefined);
  }
}
