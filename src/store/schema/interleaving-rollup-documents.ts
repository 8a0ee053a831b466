/**
 * The interleaving rollups' documents (read/interleaving-rollups.ts has the design): per UTC hour
 * and day and variant, every ranker pair's stored tally, and `ver`, which every write that may
 * change the period moves. Both writers (rollups/interleaving-versions.ts) and readers move it.
 */
import type { Binary, Collection } from "mongodb";
import { writeReplyError, type WriteReply } from "../engine/storage-errors.js";
import { writeCommand, type Collections } from "./documents.js";
import { DAY_MS, floorTo } from "./rollup-documents.js";

export const COLLECTION = "interleaving_rollups";

export type Grain = "h" | "d";

/** One pair's stored tally; `u` packs [user number, d, n] per user as little-endian int32. */
export interface StoredPair {
  a: string;
  b: string;
  n: number;
  wa: number;
  wb: number;
  ti: number;
  uc: number;
  u: Binary;
}

export interface InterleavingRollupDocument {
  _id: string;
  g: Grain;
  t: Date;
  v: string;
  /** Moved by every write that may change the period's interleaving. */
  ver: number;
  /** The `ver` the stored pairs were built at, and an id of that build (readers cache by it). */
  bv?: number;
  bid?: string;
  pairs?: StoredPair[];
}

export function interleavingRollups(c: Collections): Collection<InterleavingRollupDocument> {
  return c.db.collection<InterleavingRollupDocument>(COLLECTION);
}

export const docId = (g: Grain, t: number, v: string) => `${g}|${new Date(t).toISOString()}|${v}`;

export async function bumpVersions(c: Collections, hours: readonly { t: number; v: string }[]): Promise<void> {
  const days = new Map<string, { t: number; v: string }>();
  for (const { t, v } of hours) days.set(`${floorTo(t, DAY_MS)}|${v}`, { t: floorTo(t, DAY_MS), v });
  const update = (g: Grain, t: number, v: string) => ({ q: { _id: docId(g, t, v) }, u: { $inc: { ver: 1 }, $setOnInsert: { g, t: new Date(t), v } }, upsert: true });
  const updates = [...hours.map(({ t, v }) => update("h", t, v)), ...[...days.values()].map(({ t, v }) => update("d", t, v))];
  for (let attempt = 1; ; attempt++) {
    const reply = (await writeCommand(c, { update: COLLECTION, updates, ordered: true })) as WriteReply;
    const error = writeReplyError(reply);
    if (error === undefined) return;
    // Two writers creating the same document at once: the loser's upsert collides; $inc again is right (it was not applied).
    if (error.code !== 11000 || attempt >= 5) throw error;
  }
}
