/**
 * Pre-aggregated rollups: per variant, per UTC hour and per UTC day, the counts, sums, rank
 * histogram, latency sketch and distinct-user sketch of every event. They are maintained with
 * atomic $inc/$min/$max upserts right after each batch of events is written (one bulk write per
 * batch), so unfiltered and variant-filtered metrics cost what the window's hours and days
 * cost, not what the number of events costs.
 *
 * This module is their shared schema: the document, its collection, index and ids, and the
 * constants both the write side (rollups/rollup-delta.ts) and the read side
 * (read/rollup-reader.ts) count with. It imports nothing of either.
 */
import type { Collection } from "mongodb";
import type { Collections } from "./documents.js";
import type { StoredQueryCounts } from "./query-table-fields.js";

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;

export type Grain = "h" | "d";
/** Query tables (see query-table-fields.ts) live beside the rollups: hourly ("qh"), and days compacted from them ("qd"). */
export type TableGrain = "qh" | "qd";

export interface RollupDocument {
  _id: string;
  g: Grain | TableGrain;
  t: Date;
  v: string;
  /** Bumped by every update: readers cache documents by (id, ver). */
  ver: number;
  imp: number;
  clk: number;
  /** Impressions with at least one linked click. */
  swc: number;
  /** Impressions with no results. */
  nr: number;
  rk_sum: number;
  rt_sum: number;
  rt_min?: number;
  rt_max?: number;
  /** rank -> clicks */
  ranks: Record<string, number>;
  /** results_count (capped at RESULTS_COUNT_CAP) -> impressions: how many searches showed each rank. */
  rc?: Record<string, number>;
  /** latency bucket -> impressions (see latencyBucket) */
  rt: Record<string, number>;
  /** Searches with results: rank of the first click -> searches (core/first-click.ts). */
  fr?: Record<string, number>;
  /** Linked clicks at a rank their search showed, below RESULTS_COUNT_CAP: rank -> clicks, under the search's hour and variant (core/click-attribution.ts). */
  sr?: Record<string, number>;
  /** Linked clicks at a rank their search did not show (clicks outside results), likewise. */
  co?: number;
  /** Searches with results: latency bucket of the time to first click -> searches. */
  ft?: Record<string, number>;
  /**
   * Distinct users of clicks and impressions: a bitmap of their numbers (see user-ids.ts) in
   * int32 words, two levels deep ({"<word / 128>": {"<word % 128>": bits}}), set with $bit or:
   * MongoDB finds a field by scanning its object, so thousands of flat fields would make every
   * update of a batch crawl through all of them.
   */
  um?: Record<string, Record<string, number>>;
  /**
   * Per hashed user bucket (see core/user-buckets.ts): searches (i), clicks (c), searches with a
   * click (s), searches without results (n), searches with results and a first click (f) and
   * the sum of their reciprocal ranks (r), for statistics at the level of users.
   */
  ub?: Record<string, Partial<Record<BucketField, number>>>;
  /** HyperLogLog registers of users, written by versions before exact users; no longer read. */
  u?: Record<string, Record<string, number>>;
  /** Markers of the last APPLIED_KEEP batches counted here, newest last (see RollupDelta.apply). */
  ap?: string[];
  /** Query tables: query -> counters, in buckets (see query-table-fields.ts). */
  qt?: Record<string, Record<string, StoredQueryCounts>>;
  /** A query table that outgrew its limit: no longer updated, its period read from raw events instead. */
  full?: boolean;
}

/**
 * An hourly query table stops growing when an update would take it past BSON's 16 MiB, or when a
 * reader finds more than QUERY_TABLE_MAX_QUERIES queries in it. From then on that hour's top
 * queries for that variant come from the raw events: slower, never wrong. The benchmark's
 * vocabulary (20,000 queries) stays far below in an hour.
 */
export const QUERY_TABLE_MAX_QUERIES = 50_000;

/**
 * How many applied markers a rollup document remembers. A batch is recognised as counted as
 * long as fewer than this many later batches touched the same document: finishing a dead
 * writer's batch, at the latest when its lease ends (writer-lease.ts, 10 s), must come sooner
 * than that (1,024 batches into one hour's document, at the benchmark's ~10 batches/s, is ~100 s).
 */
export const APPLIED_KEEP = 1024;

export const ROLLUPS = "rollups";

export function rollupCollection(c: Collections): Collection<RollupDocument> {
  return c.db.collection<RollupDocument>(ROLLUPS);
}

export const ROLLUP_INDEXES = [{ key: { g: 1, t: 1, v: 1, ver: 1 }, name: "grain_time_variant_version" }];

export type BucketField = "i" | "c" | "s" | "n" | "f" | "r";
/** The stored name of each BucketSums field, in the order sparse buckets keep them. */
export const BUCKET_FIELDS: readonly BucketField[] = ["i", "c", "s", "n", "f", "r"];
export const BUCKET_WIDTH = BUCKET_FIELDS.length;
/** Result counts are kept exactly up to this (a search showing more counts as showing this many): per-rank CTRs cover ranks below it. */
export const RESULTS_COUNT_CAP = 100;

export const floorTo = (t: number, unit: number) => t - (((t % unit) + unit) % unit);
/** ISO strings of the starts ids are made of: the same hours and days come back call after call and batch after batch. */
const isoStrings = new Map<number, string>();
function isoString(t: number): string {
  let iso = isoStrings.get(t);
  if (iso === undefined) {
    if (isoStrings.size >= 50_000) isoStrings.clear();
    isoStrings.set(t, (iso = new Date(t).toISOString()));
  }
  return iso;
}

export const rollupId = (g: Grain | TableGrain, t: number, v: string) => `${g}|${isoString(t)}|${v}`;

export const isTable = (g: Grain | TableGrain): g is TableGrain => g === "qh" || g === "qd";

/** Stops updating these query tables; ver moves, so readers drop their cached copies and read raw events. */
export async function markFull(c: Collections, ids: readonly string[]): Promise<void> {
  await rollupCollection(c).updateMany({ _id: { $in: [...ids] }, full: { $ne: true } }, { $set: { full: true }, $inc: { ver: 1 } });
}
