/**
 * Rollup repair: finishing the counting that writers started and did not finish (a crash, or
 * MongoDB lost, between writing events and counting them).
 */
import type { Collection, Document } from "mongodb";
import type { Collections } from "../schema/documents.js";
import { clearMarker, pendingMarker, rollUp, type MarkerField } from "./rollup-delta.js";
import { countClicked } from "./click-claims.js";
import { pendingBatches, settleBatch } from "./pending-batches.js";

/** Counts the events an earlier version wrote under `marker` (once), then clears the marker. */
async function countPending(c: Collections, marker: string): Promise<number> {
  const [clicks, impressions] = await Promise.all([c.clicks.find({ pending_rollup: marker }).toArray(), c.impressions.find({ pending_rollup: marker }).toArray()]);
  await rollUp(c, clicks, impressions, marker);
  const cleared = await Promise.all([
    clearMarker(c.clicks, "pending_rollup", marker),
    clearMarker(c.impressions, "pending_rollup", marker),
  ]);
  return cleared[0] + cleared[1];
}

/**
 * Finishes rollup work that a writer started and did not finish (it crashed, or lost MongoDB,
 * between writing events and counting them): pending batches, events still marked
 * `pending_rollup` (by earlier versions), and impressions still marked `click_claim`, older
 * than `olderThanMs`. Each marker's events are
 * counted under that same marker, so whether the writer had counted them already, or another
 * repairer (or the writer, merely slow) counts them at the same time, they count once. Resolves
 * with the number of events (and flagged impressions) whose marker this call cleared.
 */
export async function repairRollups(c: Collections, olderThanMs: number): Promise<number> {
  const cutoff = pendingMarker(Date.now() - olderThanMs).slice(0, 15);
  const kinds: [Collection<Document>, MarkerField, (marker: string) => Promise<number>][] = [
    [c.clicks as unknown as Collection<Document>, "pending_rollup", (m) => countPending(c, m)],
    [c.impressions as unknown as Collection<Document>, "pending_rollup", (m) => countPending(c, m)],
    [c.impressions as unknown as Collection<Document>, "click_claim", (m) => countClicked(c, m)],
  ];
  let repaired = 0;
  for (;;) {
    // Only records of earlier versions, which name no writer: the others are finished as soon as
    // their writer's lease ends (finishDeadWriters), never merely for their age.
    const stale = await pendingBatches(c).find({ _id: { $lt: cutoff }, w: { $exists: false } }, { projection: { _id: 1 } }).limit(100).toArray();
    if (stale.length === 0) break;
    for (const { _id } of stale) repaired += await settleBatch(c, _id);
  }
  for (const [collection, field, count] of kinds) {
    for (;;) {
      const stale = await collection.find({ [field]: { $exists: true, $lt: cutoff } }, { projection: { _id: 0, [field]: 1 } }).limit(1000).toArray();
      if (stale.length === 0) break;
      for (const marker of new Set(stale.map((d) => String(d[field])))) repaired += await count(marker);
    }
  }
  return repaired;
}
