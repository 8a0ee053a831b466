import type { IndexDescription } from "mongodb";
import type { Collections } from "./documents.js";
import { reconcileTimestampIndex, timestampIndexOptions } from "./retention.js";
import { ROLLUP_INDEXES, rollupCollection } from "./rollup-documents.js";

/** The seed index set, identical on both collections (see docs/storage.md). */
export const EVENT_INDEXES: IndexDescription[] = [
  { key: { user_id: 1 }, name: "user_id_1" },
  { key: { variant: 1 }, name: "variant_1" },
  { key: { timestamp: 1 }, name: "timestamp_1" },
  { key: { user_id: 1, variant: 1, timestamp: 1 }, name: "user_id_1_variant_1_timestamp_1" },
];

// Unique only where the key is a string: documents written before event ids existed have none.
const hasString = (field: string) => ({ partialFilterExpression: { [field]: { $type: "string" } } });

/**
 * A condition on a key of these partial indexes. The planner uses a partial index only when the
 * query implies its filter, and equality alone does not imply `$type: "string"`: without this,
 * key lookups scan the collection.
 */
export const keyIs = (value: string) => ({ $eq: value, $type: "string" as const });
export const keyIn = (values: readonly string[]) => ({ $in: [...values], $type: "string" as const });

/** Small indexes over work in flight only (see repairRollups). */
const inFlight = (field: string): IndexDescription => ({ key: { [field]: 1 }, name: `${field}_in_flight`, partialFilterExpression: { [field]: { $exists: true } } });

/** Idempotency: a retried event_id is a duplicate, never a second event. */
export const CLICK_KEY_INDEXES: IndexDescription[] = [
  { key: { event_id: 1 }, name: "event_id_unique", unique: true, ...hasString("event_id") },
  // Clicks are linked to their search by impression_id.
  { key: { impression_id: 1 }, name: "impression_id_1", sparse: true },
  inFlight("pending_rollup"),
];

/**
 * An impression is one search: impression_id is what makes a retry a duplicate (when a client
 * gives only one of the two ids, they are the same). Only impression_id is unique, so that the
 * collection can be sharded on it (see SHARD_KEYS); event_id is indexed for lookups.
 */
export const IMPRESSION_KEY_INDEXES: IndexDescription[] = [
  inFlight("pending_rollup"),
  inFlight("click_claim"),
  { key: { event_id: 1 }, name: "event_id_1", ...hasString("event_id") },
  { key: { impression_id: 1 }, name: "impression_id_unique", unique: true, ...hasString("impression_id") },
  // Interleaved searches only (GetInterleavingResult): without it, finding them scans every search
  // of the window through {timestamp: 1} (62,720 examined for 6,045 at 80,000 events).
  { key: { timestamp: 1 }, name: "timestamp_interleaved", partialFilterExpression: { teams: { $exists: true } } },
];

/**
 * What versions before sharding support made unique on impressions. A database that has it keeps
 * it (and with it the stricter rule), and it serves event_id lookups there: the lookup index
 * above would be a second index on the same key. Drop it before sharding impressions
 * (docs/operations.md, "Running at scale"); the next start then creates event_id_1.
 */
const LEGACY_IMPRESSION_EVENT_ID = "event_id_unique";

/**
 * The shard key of every collection the service keeps in MongoDB (null: not sharded), as docs/operations.md
 * "Running at scale" documents it. Every unique index the service creates starts with its
 * collection's shard key fields, so MongoDB can enforce it on a sharded collection
 * (test/store/schema/shard-keys.test.ts checks this against a freshly opened database).
 */
export const SHARD_KEYS: Readonly<Record<string, Readonly<Record<string, 1 | "hashed">> | null>> = {
  // Hashed: ids are random, writes spread evenly; the unique {event_id: 1} index starts with the key's field.
  click_events: { event_id: "hashed" },
  // Hashed on the key that links clicks to their search, so linking a click reads one shard.
  impressions: { impression_id: "hashed" },
  // A few documents per hour and variant, written by every batch: sharding spreads no load.
  rollups: null,
  // A few documents per hour, day and variant with interleaved searches, rebuilt by readers.
  interleaving_rollups: null,
  // A document per hour, day and variant, built by readers (user-rollups.ts).
  user_rollups: null,
  // Work in flight: a handful of small documents at any time.
  pending_batches: null,
  writer_leases: null,
  // One document per user, read by _id.
  user_ids: { _id: "hashed" },
  // One document (the user-number counter).
  counters: null,
  // One document per experiment (created with the first one); `key` is unique, so sharding it
  // would need `key` as its shard key: a handful of documents gain nothing from it.
  experiments: null,
};

/**
 * createIndexes is a no-op for an index that already exists with the same spec, so this is safe
 * at every start. `rawTtlSeconds`: raw-event retention (see retention.ts), as a TTL on the
 * {timestamp: 1} index; the existing index is brought to it first, since createIndexes refuses
 * an index of the same name with other options.
 */
export async function ensureIndexes(c: Collections, rawTtlSeconds?: number): Promise<void> {
  await Promise.all([c.clicks, c.impressions].map((col) => reconcileTimestampIndex(col as never, rawTtlSeconds)));
  const eventIndexes = EVENT_INDEXES.map((i) => (i.name === "timestamp_1" ? { ...i, ...timestampIndexOptions(rawTtlSeconds) } : i));
  const existing = await c.impressions.listIndexes().toArray().catch(() => []);
  const legacy = existing.some((i) => i.name === LEGACY_IMPRESSION_EVENT_ID);
  const impressionKeys = legacy ? IMPRESSION_KEY_INDEXES.filter((i) => i.name !== "event_id_1") : IMPRESSION_KEY_INDEXES;
  await Promise.all([
    c.clicks.createIndexes([...eventIndexes, ...CLICK_KEY_INDEXES]),
    c.impressions.createIndexes([...eventIndexes, ...impressionKeys]),
    rollupCollection(c).createIndexes(ROLLUP_INDEXES),
  ]);
}
