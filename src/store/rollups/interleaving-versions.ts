/**
 * The writers' part of the interleaving rollups (read/interleaving-rollups.ts has the design):
 * writers never tally, they only move the versions of the periods their events may change; rollUp
 * calls this after the events are inserted.
 */
import { abortable, ONE_ROUND_TRIP, type ClickDocument, type Collections, type ImpressionDocument } from "../schema/documents.js";
import { keyIn } from "../schema/indexes.js";
import { floorTo, HOUR_MS } from "../schema/rollup-documents.js";
import { bumpVersions } from "../schema/interleaving-rollup-documents.js";

/**
 * Moves the versions of the periods whose interleaving these newly stored events may change: the
 * (hour, variant) and (day, variant) of each interleaved search among them, and of each
 * interleaved search one of the clicks links to. Hours first, then days, in one ordered command.
 */
export async function noteInterleavingWrites(c: Collections, clicks: readonly Pick<ClickDocument, "impression_id">[], impressions: readonly Pick<ImpressionDocument, "teams" | "timestamp" | "variant">[]): Promise<void> {
  const touched = new Map<string, { t: number; v: string }>();
  const touch = (at: Date, v: string) => {
    const t = floorTo(at.getTime(), HOUR_MS);
    touched.set(`${t}|${v}`, { t, v });
  };
  for (const d of impressions) if (d.teams !== undefined && d.teams.length > 0) touch(d.timestamp, d.variant);
  const linked = [...new Set(clicks.flatMap((k) => (k.impression_id === undefined ? [] : [k.impression_id])))];
  if (linked.length > 0) {
    const searches = await c.impressions.find({ impression_id: keyIn(linked), teams: { $exists: true } }, { projection: { _id: 0, timestamp: 1, variant: 1 }, ...ONE_ROUND_TRIP, ...abortable(c) }).toArray();
    for (const s of searches) touch(s.timestamp, s.variant);
  }
  if (touched.size === 0) return;
  await bumpVersions(c, [...touched.values()]);
}
