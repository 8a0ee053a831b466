/**
 * Hashed user buckets: the unit of analysis of the A/B comparison.
 *
 * Users, not searches, are randomised, and one user makes many searches, so a search-level
 * variance treats correlated searches as independent and makes tests fire far too often. Every
 * user_id is hashed into one of USER_BUCKETS buckets; per variant and hour/day the storage layer
 * keeps, for each bucket, the sums over that bucket's users of their searches, clicks, searches
 * with a click and no-result searches. Sums of buckets merge over any window by adding, and
 * because users are i.i.d. given randomisation, the 256 bucket totals of an arm are i.i.d. draws
 * of "the total of a random set of users": the delta method over buckets (delta-method.ts) is a
 * valid cluster-level variance with 256 units, at a fixed cost whatever the number of users.
 * Every bucket counts as a unit, also one that no user of the arm fell into: it is still a draw
 * (of a total that happens to be 0), and dropping it would bias the variance.
 *
 * STORED FORMAT — never change: USER_BUCKETS = 256 and userBucket = FNV-1a 32-bit (offset basis
 * 0x811c9dc5, prime 0x01000193) over the UTF-8 bytes of the user id (lone surrogates encoded as
 * U+FFFD, like TextEncoder), xor-folded to 8 bits: (h ^ h>>>8 ^ h>>>16 ^ h>>>24) & 0xff. The fold
 * (the FNV authors' advice for hashes narrower than 32 bits) matters: the low byte of FNV-1a
 * alone only ever mixes low bits. Changing any of this would silently mix users of different
 * buckets in rollups already written.
 *
 * References: G. Fowler, L. C. Noll, K.-P. Vo, "FNV hash" (IETF draft-eastlake-fnv);
 * A. Deng, U. Knoblich, J. Lu (2018), "Applying the Delta Method in Metric Analytics", KDD.
 */

/** Number of hashed user buckets per variant (part of the stored format). */
export const USER_BUCKETS = 256;

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

function fnvByte(h: number, byte: number): number {
  return Math.imul(h ^ byte, FNV_PRIME) >>> 0;
}

/** The bucket (0..255) of a user id: FNV-1a 32 over its UTF-8 bytes, xor-folded to 8 bits. */
export function userBucket(userId: string): number {
  let h = FNV_OFFSET_BASIS;
  const length = userId.length;
  for (let i = 0; i < length; i++) {
    let c = userId.charCodeAt(i);
    if (c < 0x80) {
      h = fnvByte(h, c);
    } else if (c < 0x800) {
      h = fnvByte(h, 0xc0 | (c >> 6));
      h = fnvByte(h, 0x80 | (c & 0x3f));
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = i + 1 < length ? userId.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          const cp = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
          h = fnvByte(h, 0xf0 | (cp >> 18));
          h = fnvByte(h, 0x80 | ((cp >> 12) & 0x3f));
          h = fnvByte(h, 0x80 | ((cp >> 6) & 0x3f));
          h = fnvByte(h, 0x80 | (cp & 0x3f));
          i++;
          continue;
        }
        c = 0xfffd;
      }
      h = fnvByte(h, 0xe0 | (c >> 12));
      h = fnvByte(h, 0x80 | ((c >> 6) & 0x3f));
      h = fnvByte(h, 0x80 | (c & 0x3f));
    }
  }
  return (h ^ (h >>> 8) ^ (h >>> 16) ^ (h >>> 24)) & 0xff;
}

/** Per-bucket sums of one variant over a window; each array has USER_BUCKETS entries. */
export interface BucketSums {
  /** Searches. */
  impressions: Float64Array;
  clicks: Float64Array;
  /** Searches with at least one click. */
  searchesWithClicks: Float64Array;
  /** Searches that returned no result. */
  noResults: Float64Array;
  /** Searches with results whose first click is known (see first-click.ts). */
  firstClicked: Float64Array;
  /** Sum of those searches' reciprocal ranks, 1 / (first click's rank + 1). */
  reciprocalRanks: Float64Array;
}

export const BUCKET_SUM_FIELDS = ["impressions", "clicks", "searchesWithClicks", "noResults", "firstClicked", "reciprocalRanks"] as const;

export function emptyBucketSums(): BucketSums {
  return {
    impressions: new Float64Array(USER_BUCKETS),
    clicks: new Float64Array(USER_BUCKETS),
    searchesWithClicks: new Float64Array(USER_BUCKETS),
    noResults: new Float64Array(USER_BUCKETS),
    firstClicked: new Float64Array(USER_BUCKETS),
    reciprocalRanks: new Float64Array(USER_BUCKETS),
  };
}

/** Adds `from` into `into` bucket by bucket (merging windows or rollup documents); returns `into`. */
export function addBucketSums(into: BucketSums, from: BucketSums): BucketSums {
  for (const field of BUCKET_SUM_FIELDS) {
    const a = into[field];
    const b = from[field];
    if (a.length !== USER_BUCKETS || b.length !== USER_BUCKETS) {
      throw new RangeError(`BucketSums.${field} must have ${USER_BUCKETS} buckets, got ${a.length} and ${b.length}`);
    }
    for (let i = 0; i < USER_BUCKETS; i++) a[i] = a[i]! + b[i]!;
  }
  return into;
}
