/**
 * Hashed user buckets: the unit of analysis for A/B statistics. Users, not searches, are what an
 * experiment randomises, so a variant's metrics are kept per bucket of users: every user_id is
 * hashed into one of USER_BUCKETS buckets, and each bucket of a variant holds the sums of its
 * users' searches, clicks, searches with a click and searches without results. Since users are
 * independent draws, bucket totals are independent draws of sums of users, and the delta method
 * over buckets estimates the variance of a ratio metric at the level of users (see
 * statistics.ts), while the sums stay mergeable over any set of hours and days.
 *
 * The hash and the bucket count are a storage format: changing either would silently mix users
 * of different buckets in documents already written.
 */

/** Buckets per variant. */
export const USER_BUCKETS = 256;

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const encoder = new TextEncoder();

/** The bucket of a user: 32-bit FNV-1a over the id's UTF-8 bytes, modulo USER_BUCKETS. */
export function userBucket(userId: string): number {
  let hash = FNV_OFFSET;
  for (const byte of encoder.encode(userId)) {
    hash ^= byte;
    hash = Math.imul(hash, FNV_PRIME) >>> 0;
  }
  return hash % USER_BUCKETS;
}

/** Per-bucket sums of one variant (or one arm) over some set of events. */
export interface BucketSums {
  impressions: Float64Array;
  clicks: Float64Array;
  searchesWithClicks: Float64Array;
  noResults: Float64Array;
}

export function emptyBucketSums(): BucketSums {
  return {
    impressions: new Float64Array(USER_BUCKETS),
    clicks: new Float64Array(USER_BUCKETS),
    searchesWithClicks: new Float64Array(USER_BUCKETS),
    noResults: new Float64Array(USER_BUCKETS),
  };
}

export function addBucketSums(into: BucketSums, from: BucketSums): BucketSums {
  for (let b = 0; b < USER_BUCKETS; b++) {
    into.impressions[b]! += from.impressions[b]!;
    into.clicks[b]! += from.clicks[b]!;
    into.searchesWithClicks[b]! += from.searchesWithClicks[b]!;
    into.noResults[b]! += from.noResults[b]!;
  }
  return into;
}
