/** Writing tracked events: one unordered bulk insert per collection per batch. */
import type { Db, Document } from "mongodb";
import type { WriteItem } from "../../core/batch.js";
import { keyIn, keyIs } from "../schema/indexes.js";
import { writeReplyError, type WriteReply } from "../engine/storage-errors.js";
import { summariseClicks } from "../../core/click-attribution.js";
import { claimMarker, dropPendingRecord, recordPendingBatch } from "../rollups/pending-batches.js";
import { clickCount, clickRanks, flagClickedImpressions } from "../rollups/click-claims.js";
import { pendingMarker, rollUp } from "../rollups/rollup-delta.js";
import { RESULTS_COUNT_CAP } from "../schema/rollup-documents.js";
import { abortable, CLICKS, IMPRESSIONS, clickDocument, impressionDocument, ONE_ROUND_TRIP, writeCommand, type ClickDocument, type Collections, type ImpressionDocument } from "../schema/documents.js";

const DUPLICATE_KEY = 11000;

/**
 * Inserts the documents in one unordered `insert` command, so one duplicate does not stop the
 * rest; returns the positions (into `docs`) that were duplicates of existing keys. The raw
 * command (rather than insertMany) keeps failures in their own classes: a network or selection
 * error arrives as itself, not folded into a bulk-write error. Any failure other than a
 * duplicate propagates: with event ids, a retry of the whole batch is safe.
 */
async function insertAll(c: Collections, collection: string, docs: Document[]): Promise<number[]> {
  if (docs.length === 0) return [];
  const reply = (await writeCommand(c, { insert: collection, documents: docs, ordered: false })) as InsertReply;
  const failure = writeReplyError(reply, DUPLICATE_KEY);
  if (failure) throw failure;
  return (reply.writeErrors ?? []).map((e) => e.index);
}

interface InsertReply extends WriteReply {
  n: number;
}

/**
 * Where a batch's write is: recording its pending record, storing its events, or counting them
 * (rollups and click links, then dropping the record); `ended` once the call has returned or thrown.
 */
export type BatchStage = "recording" | "storing" | "counting" | "ended";

/** Told of a batch's stages as its write goes (see BatchStage). */
export type StageListener = (marker: string, stage: BatchStage, events: number) => void;

/**
 * Writes a batch; returns the `index` of every item that turned out to be a duplicate. When it
 * fails, `unsettled` learns the batch's marker: whether the batch was counted is then unknown
 * until settleBatch says. `onStage` follows the write's stages.
 */
export async function writeEvents(c: Collections, items: readonly WriteItem[], unsettled?: (marker: string) => void, writer?: string, onStage?: StageListener): Promise<Set<number>> {
  // The batch's marker: on every event it stores, and on a pending-batch record that lists the
  // batch's event ids until its rollup increments are applied; if this call dies in between,
  // repairRollups finds the record and finishes the job (see rollups/repair.ts).
  const marker = pendingMarker();
  const { clicks, impressions } = batchDocuments(items, marker);
  const stage = onStage === undefined ? undefined : (s: BatchStage) => onStage(marker, s, items.length);
  try {
    return await writeBatch(c, marker, clicks, impressions, writer, stage);
  } catch (error) {
    unsettled?.(marker);
    throw error;
  } finally {
    stage?.("ended");
  }
}

/** The documents a batch stores, each with its item's index, under the batch's `marker`. */
export function batchDocuments(items: readonly WriteItem[], marker: string): { clicks: { index: number; doc: ClickDocument }[]; impressions: { index: number; doc: ImpressionDocument }[] } {
  const clicks: { index: number; doc: ClickDocument }[] = [];
  const impressions: { index: number; doc: ImpressionDocument }[] = [];
  for (const { index, tracked } of items) {
    if (tracked.kind === "click") clicks.push({ index, doc: clickDocument(tracked.event, marker) });
    else impressions.push({ index, doc: impressionDocument(tracked.event, marker) });
  }
  // A search and its clicks usually arrive together: such an impression is stored clicked, with
  // its linked clicks and its first click at a shown rank (core/click-attribution.ts), and
  // counted with the batch: `fi`/`li` are what the batch counts, `fc`/`lk` what later clicks move.
  // Each click once: a click repeated within the batch (a retry grouped with its original) is stored once.
  const distinct = new Map<string, ClickDocument>();
  for (const { doc } of clicks) if (!distinct.has(doc.event_id)) distinct.set(doc.event_id, doc);
  const here = clickRanks(distinct.values());
  for (const x of impressions) {
    const rows = here.get(x.doc.impression_id);
    if (rows === undefined) continue;
    const { linked, first } = summariseClicks(rows, x.doc.results_count, RESULTS_COUNT_CAP);
    const firstClick = first === undefined ? {} : { fc_t: new Date(first.t), fc_r: first.r, fi_t: new Date(first.t), fi_r: first.r };
    Object.assign(x.doc, { clicked: true, clicked_on_insert: true, ...firstClick, lk: linked, li: linked });
  }
  return { clicks, impressions };
}

async function writeBatch(
  c: Collections,
  marker: string,
  clicks: { index: number; doc: ClickDocument }[],
  impressions: { index: number; doc: ImpressionDocument }[],
  writer: string | undefined,
  stage: ((s: BatchStage) => void) | undefined,
): Promise<Set<number>> {
  stage?.("recording");
  if (clicks.length + impressions.length > 0) await recordPendingBatch(c, marker, clicks.map((x) => x.doc.event_id), impressions.map((x) => x.doc.event_id), writer);
  stage?.("storing");
  const [dupClicks, dupImpressions] = await allEnded([
    insertAll(c, CLICKS, clicks.map((x) => x.doc)),
    insertAll(c, IMPRESSIONS, impressions.map((x) => x.doc)),
  ]);
  const duplicates = new Set([...dupClicks.map((i) => clicks[i]!.index), ...dupImpressions.map((i) => impressions[i]!.index)]);
  const newClicks = clicks.filter((x) => !duplicates.has(x.index)).map((x) => x.doc);
  const newImpressions = impressions.filter((x) => !duplicates.has(x.index)).map((x) => x.doc);
  const storedClicked = new Map(newImpressions.filter((d) => d.clicked_on_insert === true).map((d) => [d.impression_id, d]));
  stage?.("counting");
  await allEnded([
    // Only what was new counts; a duplicate was counted when it was first written (or will be, when its batch is settled).
    rollUp(c, newClicks, newImpressions, marker),
    // Duplicates too: a retried batch repeats whatever linking a failed attempt left undone (a
    // duplicate impression's stored copy may need it too).
    linkClicks(c, claimMarker(marker), searchesToLink(newClicks, impressions, dupClicks.map((i) => clicks[i]!.doc)), storedClicked),
  ]);
  // Once both are done: a writer that dies before leaves the record, and whoever settles the
  // batch counts its events and its click claim (settleBatch).
  if (clicks.length + impressions.length > 0) await dropPendingRecord(c, marker);
  return duplicates;
}

/**
 * Like Promise.all, but settles only once every write has ended: a batch that failed is settled
 * from what it stored (settleBatch), so none of its writes may still be running then (one insert
 * failing fast while the other stores its events later left those events stored and uncounted).
 */
export async function allEnded<T extends readonly unknown[]>(writes: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const outcomes = await Promise.allSettled(writes);
  const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected");
  if (failed) throw failed.reason;
  return outcomes.map((o) => (o as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

/** The searches a batch links: its new clicks' searches, every search it stored (or repeated), and the searches of its repeated clicks. */
function searchesToLink(newClicks: readonly ClickDocument[], impressions: readonly { doc: ImpressionDocument }[], repeatedClicks: readonly ClickDocument[]): Set<string> {
  const ids = new Set<string>();
  for (const d of newClicks) if (d.impression_id !== undefined) ids.add(d.impression_id);
  for (const x of impressions) ids.add(x.doc.impression_id);
  for (const d of repeatedClicks) if (d.impression_id !== undefined) ids.add(d.impression_id);
  return ids;
}

/**
 * Marks impressions that have at least one linked click, whichever of the two arrives first, and
 * keeps each one's linked clicks and first click (core/click-attribution.ts): every search the
 * batch stored, or stored a click for (or repeated one of), is looked up with all its stored
 * clicks, and claimed when those are more than it has counted. Each side writes before it
 * looks, so of a click and its impression written at the same time at least one sees the other.
 * The look-up is one grouped read of the clicks, alongside the batch's rollup update; an
 * impression this batch stored clicked needs a claim only when clicks stored before it add to
 * the batch's own.
 */
async function linkClicks(c: Collections, claim: string, searches: ReadonlySet<string>, storedClicked: ReadonlyMap<string, ImpressionDocument>): Promise<void> {
  const ids = [...searches];
  if (ids.length === 0) return;
  const stored = await c.clicks
    .aggregate<{ _id: { i: string; r: number }; n: number; t: Date }>([{ $match: { impression_id: keyIn(ids) } }, { $group: { _id: { i: "$impression_id", r: "$rank" }, n: { $sum: 1 }, t: { $min: "$timestamp" } } }], { ...ONE_ROUND_TRIP, ...abortable(c) })
    .toArray();
  const candidates = new Map<string, { r: number; n: number; t: number }[]>();
  for (const { _id, n, t } of stored) {
    let rows = candidates.get(_id.i);
    if (!rows) candidates.set(_id.i, (rows = []));
    rows.push({ r: Number(_id.r), n: Number(n), t: t.getTime() });
  }
  for (const [id, own] of storedClicked) if (clickCount(candidates.get(id)) <= (own.li?.n ?? 0)) candidates.delete(id);
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
