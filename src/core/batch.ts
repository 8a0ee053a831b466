/**
 * Batch ingestion rules, independent of transport and storage: every event is validated on its
 * own (a bad one is rejected with its field and rule, the rest go on), repeats of an event_id
 * inside the batch are duplicates of the first, and outcomes are reported per event.
 */
import { InvalidArgumentError } from "./errors.js";
import type { ClickEvent, Impression } from "./events.js";

export const MAX_BATCH_EVENTS = 1_000;

export type TrackedEvent = { kind: "click"; event: ClickEvent } | { kind: "impression"; event: Impression };

/** A valid event on its way to storage; `index` is its position in the caller's request. */
export interface WriteItem {
  index: number;
  tracked: TrackedEvent;
}

export type Outcome = "accepted" | "duplicate" | "rejected";

export interface EventOutcome {
  index: number;
  outcome: Outcome;
  eventId: string;
  field?: string;
  reason?: string;
}

export interface PreparedBatch {
  /** Valid events, first occurrence of each key, ready to write. */
  toWrite: WriteItem[];
  /** Outcomes already known: rejections and in-batch repeats. */
  decided: EventOutcome[];
}

export function requireBatchSize(count: number, field = "events"): void {
  if (count > MAX_BATCH_EVENTS) throw new InvalidArgumentError(field, `must hold at most ${MAX_BATCH_EVENTS} events per request, got ${count}`);
}

/**
 * The key an event must be unique under: a click's event_id, an impression's impression_id
 * (which defaults to its event_id). The same rule as storage's unique indexes, which let
 * impressions be sharded by impression_id (docs/operations.md, "Running at scale").
 */
export function uniqueKey(t: TrackedEvent): string {
  return t.kind === "click" ? t.event.eventId : t.event.impressionId;
}

/**
 * Validates each item with `validate`; an InvalidArgumentError becomes that item's rejection,
 * its field prefixed with `fieldPrefix(index)` (e.g. "events[3].click."), and its id whatever
 * `suppliedId` finds in the raw item: the client matches results to its events by id. Anything
 * else thrown is not the item's fault and propagates.
 */
export function prepareBatch<T>(
  items: readonly T[],
  validate: (item: T) => TrackedEvent,
  fieldPrefix: (index: number, item: T) => string,
  firstIndex = 0,
  suppliedId: (item: T) => string = () => "",
): PreparedBatch {
  const toWrite: PreparedBatch["toWrite"] = [];
  const decided: EventOutcome[] = [];
  // Clicks and impressions have separate key spaces.
  const seen = { click: new Set<string>(), impression: new Set<string>() };
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!;
    const index = firstIndex + i;
    let tracked: TrackedEvent;
    try {
      tracked = validate(item);
    } catch (error) {
      if (error instanceof InvalidArgumentError) {
        decided.push({ index, outcome: "rejected", eventId: suppliedId(item), field: fieldPrefix(index, item) + error.field, reason: error.rule });
        continue;
      }
      throw error;
    }
    const key = uniqueKey(tracked);
    const keys = seen[tracked.kind];
    if (keys.has(key)) {
      decided.push({ index, outcome: "duplicate", eventId: tracked.event.eventId });
      continue;
    }
    keys.add(key);
    toWrite.push({ index, tracked });
  }
  return { toWrite, decided };
}

/** Outcomes in index order, once the store has said which writes were duplicates. */
export function settleBatch(batch: PreparedBatch, duplicateIndexes: ReadonlySet<number>): EventOutcome[] {
  const written: EventOutcome[] = batch.toWrite.map(({ index, tracked }) => ({
    index,
    outcome: duplicateIndexes.has(index) ? "duplicate" : "accepted",
    eventId: tracked.event.eventId,
  }));
  // Written events are in index order already: nothing to sort unless some were decided here.
  return batch.decided.length === 0 ? written : [...batch.decided, ...written].sort((a, b) => a.index - b.index);
}

export function tally(outcomes: readonly EventOutcome[]): Record<Outcome, number> {
  const counts: Record<Outcome, number> = { accepted: 0, duplicate: 0, rejected: 0 };
  for (const o of outcomes) counts[o.outcome]++;
  return counts;
}
