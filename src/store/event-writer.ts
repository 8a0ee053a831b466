/** Writing tracked events: one unordered bulk insert per collection per batch. */
import type { Db, Document } from "mongodb";
import type { WriteItem } from "../core/batch.js";
import { keyIn, keyIs } from "./indexes.js";
import { writeReplyError, type WriteReply } from "./storage-errors.js";
import { isEarlierClick } from "../core/first-click.js";
import { claimMarker, earliestClicks, flagClickedImpressions, pendingBatches, pendingMarker, recordPendingBatch, rollUp } from "./rollups.js";
import { CLICKS, IMPRESSIONS, clickDocument, impressionDocument, ONE_ROUND_TRIP, type ClickDocument, type Collections, type ImpressionDocument } from "./documents.js";

const DUPLICATE_KEY = 11000;

/**
 * Inserts the documents in one unordered `insert` command, so one duplicate does not stop the
 * rest; returns the positions (into `docs`) that were duplicates of existing keys. The raw
 * command (rather than insertMany) keeps failures in their own classes: a network or selection
 * error arrives as itself, not folded into a bulk-write error. Any failure other than a
 * duplicate propagates: with event ids, a retry of the whole batch is safe.
 */
async function insertAll(db: Db, collection: string, docs: Document[]): Promise<number[]> {
  if (docs.length === 0) return [];
  // A raw command does not inherit the client's write concern: pass it explicitly.
  const reply = (await db.command({ insert: collection, documents: docs, ordered: false, ...(db.writeConcern ? { writeConcern: { w: db.writeConcern.w, j: db.writeConcern.journal } } : {}) })) as InsertReply;
  const failure = writeReplyError(reply, DUPLICATE_KEY);
  if (failure) throw failure;
  return (reply.writeErrors ?? []).map((e) => e.index);
}

interface InsertReply extends WriteReply {
  n: number;
}

/**
 * Writes a batch; returns the `index` of every item that turned out to be a duplicate. When it
 * fails, `unsettled` learns the batch's marker: whether the batch was counted is then unknown
 * until settleBatch says.
 */
export async function writeEvents(c: Collections, items: readonly WriteItem[], unsettled?: (marker: string) => void, writer?: string): Promise<Set<number>> {
  const clicks: { index: number; doc: ClickDocument }[] = [];
  const impressions: { index: number; doc: ImpressionDocument }[] = [];
  // The batch's marker: on every event it stores, and on a pending-batch record that lists the
  // batch's event ids until its rollup increments are applied; if this call dies in between,
  // repairRollups finds the record and finishes the job (see rollups.ts).
  const marker = pendingMarker();
  for (const { index, tracked } of items) {
    if (tracked.kind === "click") clicks.push({ index, doc: { ...clickDocument(tracked.event), b: marker } });
    else impressions.push({ index, doc: { ...impressionDocument(tracked.event), b: marker } });
  }
  // A search and its clicks usually arrive together: such an impression is stored clicked and
  // counted with the batch, which spares the linking round trips below.
  const clickedHere = new Set(clicks.flatMap((x) => (x.doc.impression_id === undefined ? [] : [x.doc.impression_id])));
  // With its first click among them (core/first-click.ts): `fi` is what the batch counts, `fc` what later clicks move.
  const firstHere = earliestClicks(clicks.map((x) => x.doc));
  for (const x of impressions) {
    const first = firstHere.get(x.doc.impression_id);
    if (first) Object.assign(x.doc, { clicked: true, clicked_on_insert: true, fc_t: first.t, fc_r: first.r, fi_t: first.t, fi_r: first.r });
  }
  try {
    return await writeBatch(c, marker, clicks, impressions, clickedHere, writer);
  } catch (error) {
    unsettled?.(marker);
    throw error;
  }
}

async function writeBatch(
  c: Collections,
  marker: string,
  clicks: { index: number; doc: ClickDocument }[],
  impressions: { index: number; doc: ImpressionDocument }[],
  clickedHere: ReadonlySet<string>,
  writer: string | undefined,
): Promise<Set<number>> {
  if (clicks.length + impressions.length > 0) await recordPendingBatch(c, marker, clicks.map((x) => x.doc.event_id), impressions.map((x) => x.doc.event_id), writer);
  const [dupClicks, dupImpressions] = await Promise.all([
    insertAll(c.db, CLICKS, clicks.map((x) => x.doc)),
    insertAll(c.db, IMPRESSIONS, impressions.map((x) => x.doc)),
  ]);
  const duplicates = new Set([...dupClicks.map((i) => clicks[i]!.index), ...dupImpressions.map((i) => impressions[i]!.index)]);
  const newClicks = clicks.filter((x) => !duplicates.has(x.index)).map((x) => x.doc);
  const newImpressions = impressions.filter((x) => !duplicates.has(x.index)).map((x) => x.doc);
  const storedClicked = new Map(newImpressions.filter((d) => d.clicked_on_insert === true).map((d) => [d.impression_id, d]));
  await Promise.all([
    // Only what was new counts; a duplicate was counted when it was first written (or will be, when its batch is settled).
    rollUp(c, newClicks, newImpressions, marker),
    // Duplicates too: a retried batch repeats whatever linking a failed attempt left undone. An
    // impression this batch stored clicked needs none (a duplicate's stored copy may).
    linkClicks(
      c,
      claimMarker(marker),
      newClicks.filter((d) => d.impression_id !== undefined && !storedClicked.has(d.impression_id)),
      [...impressions.map((x) => x.doc.impression_id), ...dupClicks.flatMap((i) => clicks[i]!.doc.impression_id ?? [])],
      storedClicked,
    ),
  ]);
  // Once both are done: a writer that dies before leaves the record, and whoever settles the
  // batch counts its events and its click claim (settleBatch).
  if (clicks.length + impressions.length > 0) await pendingBatches(c).deleteOne({ _id: marker });
  return duplicates;
}

/**
 * Marks impressions that have at least one linked click, whichever of the two arrives first, and
 * keeps each one's first click: a click flags its impression if it is already stored, and an
 * impression of the batch looks for clicks stored before it (or stored copies of repeated
 * clicks). Each side writes before it looks, so of a click and its impression written at the
 * same time at least one sees the other. The look-up is the read the batch made anyway,
 * alongside its rollup update; an impression stored clicked only needs a stored click earlier
 * than the batch's own first one.
 */
async function linkClicks(c: Collections, claim: string, newClicks: readonly ClickDocument[], lookUp: readonly string[], storedClicked: ReadonlyMap<string, ImpressionDocument>): Promise<void> {
  const candidates = earliestClicks(newClicks);
  if (lookUp.length > 0) {
    const stored = await c.clicks
      .aggregate<{ _id: string; k: { t: Date; r: number } }>([{ $match: { impression_id: keyIn(lookUp) } }, { $group: { _id: "$impression_id", k: { $min: { t: "$timestamp", r: "$rank" } } } }], ONE_ROUND_TRIP)
      .toArray();
    for (const { _id, k } of stored) {
      const own = storedClicked.get(_id);
      if (own === undefined || isEarlierClick({ t: k.t.getTime(), r: k.r }, { t: own.fi_t!.getTime(), r: own.fi_r! })) earliestClicks([{ impression_id: _id, timestamp: k.t, rank: k.r }], candidates);
    }
  }
  await flagClickedImpressions(c, candidates, claim);
}

/** The stored event a duplicate repeats (by event_id, or for impressions also impression_id). */
export async function findOriginalClick(c: Collections, eventId: string): Promise<ClickDocument | null> {
  return c.clicks.findOne({ event_id: keyIs(eventId) }, { projection: { _id: 0 } });
}

export async function findOriginalImpression(c: Collections, eventId: string, impressionId: string): Promise<ImpressionDocument | null> {
  // By impression_id first: it is the unique key. event_id decides only in databases that still
  // have the unique event_id index of earlier versions (see indexes.ts).
  return (
    (await c.impressions.findOne({ impression_id: keyIs(impressionId) }, { projection: { _id: 0 } })) ??
    c.impressions.findOne({ event_id: keyIs(eventId) }, { projection: { _id: 0 } })
  );
}
