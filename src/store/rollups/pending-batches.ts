/**
 * Pending batches: the record a writer makes before storing a batch's events, and settling a
 * batch whose outcome its writer does not know (counting what it stored and flagged, once).
 */
import type { Collection, Document } from "mongodb";
import { writeReplyError, type WriteReply } from "../engine/storage-errors.js";
import { abortable, ONE_ROUND_TRIP, writeCommand, type Collections } from "../schema/documents.js";
import { keyIn } from "../schema/indexes.js";
import { rollUp } from "./rollup-delta.js";
import { countClicked } from "./click-claims.js";

/** A write in flight: its marker and the event ids it is storing (see writeEvents). */
export interface PendingBatch {
  _id: string;
  clicks: string[];
  impressions: string[];
  /** The writer's run (see writer-lease.ts); absent in records of earlier versions. */
  w?: string;
}

const PENDING_BATCHES = "pending_batches";

export function pendingBatches(c: Collections): Collection<PendingBatch> {
  return c.db.collection<PendingBatch>(PENDING_BATCHES);
}

/** Runs a raw write of pending records (abortable, see writeCommand); throws what its reply reports; returns its count. */
async function writePending(c: Collections, command: Document): Promise<number> {
  const reply = (await writeCommand(c, command)) as WriteReply & { n: number };
  const failure = writeReplyError(reply);
  if (failure) throw failure;
  return reply.n;
}

/**
 * Records a batch before its events are stored: one small document, so that finishing the
 * batch is one delete rather than clearing a marker from every event it stored.
 */
export async function recordPendingBatch(c: Collections, marker: string, clicks: string[], impressions: string[], writer?: string): Promise<void> {
  const record: PendingBatch = { _id: marker, clicks, impressions, ...(writer === undefined ? {} : { w: writer }) };
  await writePending(c, { insert: PENDING_BATCHES, documents: [record] });
}

/** Drops a batch's pending record (the last step of writing or settling it); true if it was there. */
export async function dropPendingRecord(c: Collections, marker: string): Promise<boolean> {
  return (await writePending(c, { delete: PENDING_BATCHES, deletes: [{ q: { _id: marker }, limit: 1 }] })) === 1;
}

/**
 * Counts what a pending batch stored (once: its events carry its marker, a duplicate stored by
 * another write does not); the record stays until settleBatch drops it.
 */
async function countBatch(c: Collections, marker: string): Promise<number> {
  const batch = await pendingBatches(c).findOne({ _id: marker }, abortable(c));
  if (batch === null) return 0;
  const [clicks, impressions] = await Promise.all([
    c.clicks.find({ event_id: keyIn(batch.clicks), b: marker }, { ...ONE_ROUND_TRIP, ...abortable(c) }).toArray(),
    c.impressions.find({ event_id: keyIn(batch.impressions), b: marker }, { ...ONE_ROUND_TRIP, ...abortable(c) }).toArray(),
  ]);
  await rollUp(c, clicks, impressions, marker);
  return clicks.length + impressions.length;
}

/** The claim marker of a batch's linking: its own, as applying it is separate from the batch's. */
export const claimMarker = (batchMarker: string) => `${batchMarker}+`;

/**
 * Finishes a batch whose outcome its writer does not know (the call failed after the batch was
 * recorded: a lost reply, an outage), whatever its age: counts what it stored and what it
 * flagged, once. Its writer calls this as soon as MongoDB answers again, before writing anything
 * else, so the rollups still remember whether the batch was counted (see APPLIED_KEEP).
 */
export async function settleBatch(c: Collections, marker: string): Promise<number> {
  const counted = await countBatch(c, marker);
  await countClicked(c, claimMarker(marker));
  // Last: while the record is there, the batch's linking may still be unfinished too.
  return (await dropPendingRecord(c, marker)) ? counted : 0;
}
