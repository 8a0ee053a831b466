/**
 * Dense user numbers, for exact distinct users from rollups: every user_id gets a small integer
 * once (collection `user_ids`, {_id: user_id, n}), and rollup documents keep a bitmap of the
 * numbers of their users (see rollup-documents.ts). Distinct users over any window are then the population
 * count of the OR of its documents' bitmaps: exact, and about one bit per user per document.
 *
 * Numbers are handed out in ranges from one counter document; a range reserved by a writer that
 * then lost a race (another writer numbered the same user first) leaves gaps, which cost nothing
 * but bits. A user's number never changes once stored: the unique _id decides who won.
 */
import { MongoServerError, type Collection } from "mongodb";
import { abortable, ONE_ROUND_TRIP, type Collections } from "./documents.js";

interface UserIdDocument {
  _id: string;
  n: number;
}

interface CounterDocument {
  _id: string;
  next: number;
}

const DUPLICATE_KEY = 11000;
/** Users remembered per process: hot users cost no round trip (~100 bytes each). */
const CACHE_LIMIT = 200_000;

export function userIdCollection(c: Collections): Collection<UserIdDocument> {
  return c.db.collection<UserIdDocument>("user_ids");
}

function counters(c: Collections): Collection<CounterDocument> {
  return c.db.collection<CounterDocument>("counters");
}

/** One per store: resolves user ids to their numbers, assigning numbers to new users. */
export class UserNumbers {
  private readonly cache = new Map<string, number>();

  constructor(private readonly c: Collections) {}

  /** The number of every id, assigning numbers to ids that have none yet; `maxTimeMS` bounds a read's lookup. */
  async resolve(ids: Iterable<string>, maxTimeMS?: number): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    let missing: string[] = [];
    const seen = new Set<string>();
    for (const id of ids) {
      if (out.has(id)) continue;
      const n = this.cache.get(id);
      if (n !== undefined) out.set(id, n);
      else if (!seen.has(id)) {
        seen.add(id);
        missing.push(id);
      }
    }
    for (let attempt = 0; missing.length > 0; attempt++) {
      for (const d of await userIdCollection(this.c).find({ _id: { $in: missing } }, { ...(maxTimeMS === undefined ? {} : { maxTimeMS }), ...ONE_ROUND_TRIP, ...abortable(this.c) }).toArray()) this.learn(out, d._id, Number(d.n));
      missing = missing.filter((id) => !out.has(id));
      if (missing.length === 0) break;
      if (attempt >= 3) throw new MongoServerError({ message: `could not number ${missing.length} user(s)`, code: DUPLICATE_KEY });
      const counter = await counters(this.c).findOneAndUpdate({ _id: "user_ids" }, { $inc: { next: missing.length } }, { upsert: true, returnDocument: "after", ...abortable(this.c) });
      const first = Number(counter!.next) - missing.length;
      const docs = missing.map((id, i) => ({ _id: id, n: first + i }));
      try {
        await userIdCollection(this.c).insertMany(docs, { ordered: false, ...abortable(this.c) });
      } catch (error) {
        // Another writer numbered some of these users first: theirs stand, read them next round.
        if (!(error instanceof MongoServerError) || !isOnlyDuplicates(error)) throw error;
      }
    }
    return out;
  }

  private learn(out: Map<string, number>, id: string, n: number): void {
    out.set(id, n);
    if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(id, n);
  }

  clear(): void {
    this.cache.clear();
  }
}

function isOnlyDuplicates(error: MongoServerError): boolean {
  const writeErrors = (error as unknown as { writeErrors?: { code: number }[] }).writeErrors;
  if (Array.isArray(writeErrors) && writeErrors.length > 0) return writeErrors.every((e) => e.code === DUPLICATE_KEY);
  return error.code === DUPLICATE_KEY;
}

const numbersByDb = new WeakMap<object, UserNumbers>();

/** The store's user numbering (one cache per database handle). */
export function userNumbers(c: Collections): UserNumbers {
  let numbers = numbersByDb.get(c.db);
  if (!numbers) numbersByDb.set(c.db, (numbers = new UserNumbers(c)));
  return numbers;
}

/** Bits per stored bitmap word (a BSON int32), and words per nested group of a document's bitmap. */
export const WORD_BITS = 32;
export const WORD_GROUP = 128;

/** A set of user numbers as a growable bitmap. */
export class UserSet {
  words: Uint32Array;

  constructor(words = new Uint32Array(0)) {
    this.words = words;
  }

  /** Sets bit mask `mask` (unsigned) in word `w`. */
  orWord(w: number, mask: number): void {
    this.reserve(w + 1);
    this.words[w]! |= mask;
  }

  or(other: UserSet): void {
    this.reserve(other.words.length);
    const a = this.words;
    const b = other.words;
    for (let i = 0; i < b.length; i++) a[i]! |= b[i]!;
  }

  size(): number {
    let total = 0;
    for (const word of this.words) total += popcount(word);
    return total;
  }

  /** Room for `length` words (growing by doubling, so adding word by word stays linear). */
  reserve(length: number): void {
    if (length <= this.words.length) return;
    const next = new Uint32Array(Math.max(length, this.words.length * 2));
    next.set(this.words);
    this.words = next;
  }
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/** Users in two or more of these sets. */
export function usersInSeveral(sets: Iterable<UserSet>): number {
  const once = new UserSet();
  const twice = new UserSet();
  for (const s of sets) {
    const length = s.words.length;
    once.reserve(length);
    twice.reserve(length);
    for (let i = 0; i < length; i++) {
      const w = s.words[i]!;
      twice.words[i]! |= once.words[i]! & w;
      once.words[i]! |= w;
    }
  }
  return twice.size();
}
