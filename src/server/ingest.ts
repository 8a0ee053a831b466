/** From decoded requests to stored events: validation, batching and duplicate handling. */
import type { Event, LogClickRequest, LogImpressionRequest } from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import { prepareBatch, settleBatch, type EventOutcome, type PreparedBatch, type TrackedEvent } from "../core/batch.js";
import { InvalidArgumentError } from "../core/errors.js";
import { validateClick, validateImpression, type ClickEvent, type Impression } from "../core/events.js";
import type { DurableWriter } from "../store/click-store.js";
import type { CallContext } from "./grpc-adapter.js";
import { clickSource, requestTime } from "./request-mapping.js";

// Identity: a request field, else its metadata fallback (`x-user-id`, `x-session-id`).
export function clickFromRequest(req: LogClickRequest, ctx: CallContext, now: Date): ClickEvent {
  return validateClick(
    {
      userId: req.userId || ctx.header("x-user-id"),
      sessionId: req.sessionId || ctx.header("x-session-id"),
      eventId: req.eventId,
      impressionId: req.impressionId,
      productId: req.productId,
      rank: req.rank,
      searchQuery: req.searchQuery,
      variant: req.variant,
      responseTimeMs: req.responseTimeMs,
      source: clickSource(req.source),
      timestamp: requestTime(req.timestamp),
    },
    now,
  );
}

export function impressionFromRequest(req: LogImpressionRequest, ctx: CallContext, now: Date): Impression {
  return validateImpression(
    {
      userId: req.userId || ctx.header("x-user-id"),
      sessionId: req.sessionId || ctx.header("x-session-id"),
      eventId: req.eventId,
      impressionId: req.impressionId,
      query: req.query,
      variant: req.variant,
      resultsCount: req.resultsCount,
      responseTimeMs: req.responseTimeMs,
      timestamp: requestTime(req.timestamp),
      teams: req.teams,
    },
    now,
  );
}

function trackedFromEvent(e: Event, ctx: CallContext, now: Date): TrackedEvent {
  switch (e.kind.case) {
    case "click":
      return { kind: "click", event: clickFromRequest(e.kind.value, ctx, now) };
    case "impression":
      return { kind: "impression", event: impressionFromRequest(e.kind.value, ctx, now) };
    default:
      throw new InvalidArgumentError("kind", "must be a click or an impression");
  }
}

/**
 * Validates and writes one batch in a single bulk write per collection. `firstIndex` numbers the
 * events (for streams: their position in the whole stream).
 */
export async function ingestBatch(writer: DurableWriter, events: readonly Event[], ctx: CallContext, now: Date, firstIndex = 0): Promise<EventOutcome[]> {
  return writePrepared(writer, prepareEvents(events, ctx, now, firstIndex));
}

/** Validates a batch: what to write, and the outcomes known before writing (see prepareBatch). */
export function prepareEvents(events: readonly Event[], ctx: CallContext, now: Date, firstIndex = 0): PreparedBatch {
  return prepareBatch(
    events,
    (e) => trackedFromEvent(e, ctx, now),
    (index, e) => (e.kind.case === undefined ? `events[${index}].` : `events[${index}].${e.kind.case}.`),
    firstIndex,
    // A rejected event was never validated: its result carries the id as the client sent it.
    (e) => (e.kind.case === undefined ? "" : e.kind.value.eventId),
  );
}

/** Writes a validated batch; its outcomes in index order. */
export async function writePrepared(writer: DurableWriter, batch: PreparedBatch): Promise<EventOutcome[]> {
  const duplicates = await writer.write(batch.toWrite);
  return settleBatch(batch, duplicates);
}

/** Writes one event; true when it was new, false when its key was already recorded. */
export async function ingestOne(writer: DurableWriter, tracked: TrackedEvent): Promise<boolean> {
  const duplicates = await writer.write([{ index: 0, tracked }]);
  return duplicates.size === 0;
}
