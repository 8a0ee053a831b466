import type { IndexDescription } from "mongodb";
import type { Collections } from "./documents.js";
import { ROLLUP_INDEXES, rollupCollection } from "./rollups.js";

/** The seed index set, identical on both collections (see README, "Storage"). */
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

export const IMPRESSION_KEY_INDEXES: IndexDescription[] = [
  inFlight("pending_rollup"),
  inFlight("click_claim"),
  { key: { event_id: 1 }, name: "event_id_unique", unique: true, ...hasString("event_id") },
  { key: { impression_id: 1 }, name: "impression_id_unique", unique: true, ...hasString("impression_id") },
];

/** createIndexes is a no-op for an index that already exists with the same spec, so this is safe at every start. */
export async function ensureIndexes(c: Collections): Promise<void> {
  await Promise.all([
    c.clicks.createIndexes([...EVENT_INDEXES, ...CLICK_KEY_INDEXES]),
    c.impressions.createIndexes([...EVENT_INDEXES, ...IMPRESSION_KEY_INDEXES]),
    rollupCollection(c).createIndexes(ROLLUP_INDEXES),
  ]);
}
