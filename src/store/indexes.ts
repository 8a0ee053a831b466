import type { IndexDescription } from "mongodb";
import type { Collections } from "./documents.js";

/** The seed index set, identical on both collections (see README, "Storage"). */
export const EVENT_INDEXES: IndexDescription[] = [
  { key: { user_id: 1 }, name: "user_id_1" },
  { key: { variant: 1 }, name: "variant_1" },
  { key: { timestamp: 1 }, name: "timestamp_1" },
  { key: { user_id: 1, variant: 1, timestamp: 1 }, name: "user_id_1_variant_1_timestamp_1" },
];

/** createIndexes is a no-op for an index that already exists with the same spec, so this is safe at every start. */
export async function ensureIndexes(c: Collections): Promise<void> {
  await Promise.all([c.clicks.createIndexes(EVENT_INDEXES), c.impressions.createIndexes(EVENT_INDEXES)]);
}
