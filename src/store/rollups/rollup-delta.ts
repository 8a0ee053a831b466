/**
 * store/rollups/ (see its README.md): keeping the rollups, where a write ends: a batch's
 * increments (this module), click claims, pending batches, repair, upgrade and the interleaving
 * rollups' versions. It imports core/, engine/ and schema/ only, never read/ or write/.
 */
/**
 * The write side of the rollups (schema/rollup-documents.ts): the increments one batch of events
 * applies to its hours' and days' rollup documents and query tables, applied once.
 *
 * Each batch's increments are applied once however often they are sent: every update names the
 * batch's marker and records it in the document's `ap` list in the same atomic update, and an
 * update whose marker is already there changes nothing. So a repair (or a retry after a lost
 * reply) may resend a batch that was in fact counted.
 */
import { randomBytes } from "node:crypto";
import { MongoServerError, type Collection, type Document, type Filter, type UpdateFilter } from "mongodb";
import { reciprocalRank, timeToClickMs } from "../../core/first-click.js";
import { shownClicks, type LinkedClicks } from "../../core/click-attribution.js";
import { latencyBucket } from "../../core/sketches.js";
import { userBucket, USER_BUCKETS } from "../../core/user-buckets.js";
import { abortable, writeCommand, type ClickDocument, type Collections, type ImpressionDocument } from "../schema/documents.js";
import { noteInterleavingWrites } from "./interleaving-versions.js";
import { queryFieldNames, type QueryCounter } from "../schema/query-table-fields.js";
import { userNumbers, WORD_BITS, WORD_GROUP } from "../schema/user-ids.js";
import { APPLIED_KEEP, BUCKET_FIELDS, DAY_MS, floorTo, HOUR_MS, isTable, markFull, RESULTS_COUNT_CAP, rollupCollection, rollupId, ROLLUPS, type BucketField, type Grain, type TableGrain } from "../schema/rollup-documents.js";

/** Errors of an update whose result would exceed 16 MiB. */
const TOO_LARGE = new Set([10334, 17419]);

// Field names of the per-event hot path, each built once: building them per event was a large
// part of the write path's CPU and garbage (profiled at 200,000 events: rollUp 24% of the
// server's busy time, the garbage collector 16%).
const BUCKET_FIELD_NAMES = Object.fromEntries(BUCKET_FIELDS.map((f) => [f, Array.from({ length: USER_BUCKETS }, (_, b) => `ub.${b}.${f}`)])) as Record<BucketField, string[]>;
/** The field of a user bucket's counter; `bucket` from userBucket(user_id). */
const bucketField = (bucket: number, field: BucketField) => BUCKET_FIELD_NAMES[field][bucket]!;

/** `<prefix><n>` for small non-negative integers from a table filled as met, built per call beyond it. */
function numberedFields(prefix: string, cached = 4096): (n: number) => string {
  const table: string[] = [];
  return (n) => (n >= 0 && n < cached ? (table[n] ??= `${prefix}${n}`) : `${prefix}${n}`);
}
const rankField = numberedFields("ranks.");
const resultsCountField = numberedFields("rc.");
const latencyField = numberedFields("rt.");
const firstRankField = numberedFields("fr.");
const timeToClickField = numberedFields("ft.");
const shownRankField = numberedFields("sr.");
const wordFields: string[] = [];
const wordFieldOf = (word: number) => `um.${Math.floor(word / WORD_GROUP)}.${word % WORD_GROUP}`;
/** The field of bitmap word `word` (cached for the first 2^16 words: two million users). */
const wordField = (word: number) => (word < 1 << 16 ? (wordFields[word] ??= wordFieldOf(word)) : wordFieldOf(word));

/**
 * One document's increments. `inc` and `bits` are Maps (insertion-ordered like the objects they
 * once were, and sent as they are: BSON writes a Map as a document): a batch adds to the same
 * few hundred fields thousands of times, and a Map's look-ups cost a fraction of a
 * dictionary-mode object's (profiled: 7% of the server's busy time).
 */
type DocDelta = { g: Grain | TableGrain; t: number; v: string; inc: Map<string, number>; min?: number; max: Record<string, number>; bits: Map<string, number>; queries?: Map<string, QueryDelta> };

/** Where QueryDelta keeps each letter counter. */
const LETTER_SLOT: Record<QueryCounter, number> = { i: 0, c: 1, s: 2, n: 3, r: 4, k: 5, o: 6 };
const LETTERS = Object.keys(LETTER_SLOT) as QueryCounter[];

/**
 * One query's increments in one query table: counted by slot and named only when the batch's
 * update is built, once per query. Naming each event's fields and adding them to the table's Map
 * was most of building a batch's increments (in-process, on the bench's data at its density:
 * 4.2–4.6 µs an event, 1.3–1.5 without query tables; summed here first, 3.4–3.8). A field is
 * written where an increment that was not zero touched it, as when each went into the Map.
 */
class QueryDelta {
  readonly counts = [0, 0, 0, 0, 0, 0, 0];
  /** Bit `LETTER_SLOT[letter]`: a non-zero increment met that letter. */
  touched = 0;
  /** `h<k>` and `f<r>` increments, by k and r. */
  h: Map<number, number> | undefined = undefined;
  f: Map<number, number> | undefined = undefined;

  add(letter: QueryCounter, n: number): void {
    if (n === 0) return;
    const slot = LETTER_SLOT[letter];
    this.counts[slot]! += n;
    this.touched |= 1 << slot;
  }

  /** Its fields, named by `query`, into a table's increments. */
  writeInto(query: string, inc: Map<string, number>): void {
    const names = queryFieldNames(query);
    for (let slot = 0; slot < LETTERS.length; slot++) if ((this.touched & (1 << slot)) !== 0) inc.set(names.letter(LETTERS[slot]!), this.counts[slot]!);
    if (this.h !== undefined) for (const [k, n] of this.h) inc.set(names.histogram(k), n);
    if (this.f !== undefined) for (const [r, n] of this.f) inc.set(names.firstClick(r), n);
  }
}

/** The documents one (hour, variant) of events updates: its hour, its day, and (once used) its hour's query table. */
interface HourDocs {
  h: DocDelta;
  d: DocDelta;
  qh?: DocDelta;
}

const add = <K>(inc: Map<K, number>, field: K, n: number) => inc.set(field, (inc.get(field) ?? 0) + n);

/**
 * Accumulates one batch's increments per rollup document and per query table.
 *
 * The per-event path builds no strings or closures: field names come from tables built once
 * (above), a query's counters are summed in its QueryDelta and named once a batch, and an
 * event's hour documents are found by number (profiled at 200,000 events: building the deltas
 * took 13% of the server's busy time, much of it string concatenation and the garbage it left).
 */
export class RollupDelta {
  /** `queryTables` false: the rollups alone (a rebuild of rollups must not add to the query tables it keeps). */
  constructor(private readonly queryTables = true) {}
  private readonly docs = new Map<string, DocDelta>();
  /** The documents of each (hour, variant) seen, by variant then hour: no key is built per event (an id's ISO date costs more than the rest of an event; profiled). */
  private readonly hours = new Map<string, Map<number, HourDocs>>();
  /** The last (hour, variant) found: events arrive in time order, so most are in the previous one's hour. */
  private lastHour = NaN;
  private lastVariant: string | undefined;
  private lastDocs: HourDocs | undefined;

  private doc(g: Grain | TableGrain, t: number, v: string): DocDelta {
    const id = rollupId(g, t, v);
    let d = this.docs.get(id);
    if (!d) this.docs.set(id, (d = { g, t, v, inc: new Map(), max: {}, bits: new Map() }));
    return d;
  }

  private hourDocs(timestamp: Date, variant: string): HourDocs {
    const ms = timestamp.getTime();
    const hour = floorTo(ms, HOUR_MS);
    if (hour === this.lastHour && variant === this.lastVariant) return this.lastDocs!;
    let byHour = this.hours.get(variant);
    if (!byHour) this.hours.set(variant, (byHour = new Map()));
    let docs = byHour.get(hour);
    if (!docs) byHour.set(hour, (docs = { h: this.doc("h", hour, variant), d: this.doc("d", floorTo(ms, DAY_MS), variant) }));
    this.lastHour = hour;
    this.lastVariant = variant;
    this.lastDocs = docs;
    return docs;
  }

  /**
   * A query's increments in its hour's query table (query tables are hourly only: readers compact
   * finished days, query-tables.ts); undefined when this delta keeps none.
   */
  private query(timestamp: Date, variant: string, query: string): QueryDelta | undefined {
    if (!this.queryTables) return undefined;
    const docs = this.hourDocs(timestamp, variant);
    const queries = ((docs.qh ??= this.doc("qh", docs.h.t, variant)).queries ??= new Map());
    let q = queries.get(query);
    if (q === undefined) queries.set(query, (q = new QueryDelta()));
    return q;
  }

  /** `userNumber`: the user's number (user-ids.ts), for the distinct-user bitmap. */
  addClick(e: Pick<ClickDocument, "user_id" | "variant" | "rank" | "timestamp" | "query_normalized" | "impression_id">, userNumber: number): void {
    const word = wordField(Math.floor(userNumber / WORD_BITS));
    const bit = 1 << userNumber % WORD_BITS;
    const perBucket = bucketField(userBucket(e.user_id), "c");
    const rank = rankField(e.rank);
    const docs = this.hourDocs(e.timestamp, e.variant);
    for (let i = 0; i < 2; i++) {
      const d = i === 0 ? docs.h : docs.d;
      const inc = d.inc;
      add(inc, "clk", 1);
      add(inc, "rk_sum", e.rank);
      add(inc, rank, 1);
      add(inc, perBucket, 1);
      d.bits.set(word, (d.bits.get(word) ?? 0) | bit);
    }
    // A linked click counts in its search's query (linked()); an unlinked one in the query it carries.
    if (e.impression_id === undefined) {
      const q = this.query(e.timestamp, e.variant, e.query_normalized);
      if (q) {
        q.add("c", 1);
        q.add("r", e.rank);
      }
    }
  }

  addImpression(
    e: Pick<ImpressionDocument, "user_id" | "variant" | "results_count" | "response_time_ms" | "timestamp" | "query_normalized" | "clicked_on_insert" | "fi_t" | "fi_r" | "li">,
    userNumber: number,
  ): void {
    if (e.clicked_on_insert === true && e.fi_t !== undefined && e.fi_r !== undefined) this.firstClick(e, e.fi_t, e.fi_r, 1);
    if (e.clicked_on_insert === true) this.linked(e, e.li, 1);
    const word = wordField(Math.floor(userNumber / WORD_BITS));
    const bit = 1 << userNumber % WORD_BITS;
    const ms = Number(e.response_time_ms);
    // Stored clicked: its click came in the same batch (a later click is counted when it flags it).
    const swc = e.clicked_on_insert === true;
    const noResults = e.results_count === 0;
    const bucket = userBucket(e.user_id);
    const shown = Math.min(e.results_count, RESULTS_COUNT_CAP);
    const resultsCount = resultsCountField(shown);
    const latency = latencyField(latencyBucket(ms));
    const q = this.query(e.timestamp, e.variant, e.query_normalized);
    if (q) {
      q.add("i", 1);
      if (noResults) q.add("n", 1);
      if (swc) q.add("s", 1);
      // h0 would repeat n: a search without results shows no rank.
      if (shown > 0) add((q.h ??= new Map()), shown, 1);
    }
    const docs = this.hourDocs(e.timestamp, e.variant);
    const searches = BUCKET_FIELD_NAMES.i[bucket]!;
    for (let i = 0; i < 2; i++) {
      const d = i === 0 ? docs.h : docs.d;
      const inc = d.inc;
      add(inc, "imp", 1);
      add(inc, resultsCount, 1);
      add(inc, searches, 1);
      if (swc) {
        add(inc, "swc", 1);
        add(inc, BUCKET_FIELD_NAMES.s[bucket]!, 1);
      }
      if (noResults) {
        add(inc, "nr", 1);
        add(inc, BUCKET_FIELD_NAMES.n[bucket]!, 1);
      }
      add(inc, "rt_sum", ms);
      add(inc, latency, 1);
      d.min = Math.min(d.min ?? Infinity, ms);
      d.max.rt_max = Math.max(d.max.rt_max ?? -Infinity, ms);
      d.bits.set(word, (d.bits.get(word) ?? 0) | bit);
    }
  }

  /**
   * Counts (n = 1) or uncounts (n = -1) a search's first click: only searches with results have
   * one (core/first-click.ts).
   */
  firstClick(e: Pick<ImpressionDocument, "timestamp" | "variant" | "user_id" | "results_count" | "query_normalized">, clickAt: Date, rank: number, n: 1 | -1): void {
    if (!(e.results_count > 0)) return;
    const q = this.query(e.timestamp, e.variant, e.query_normalized);
    if (q) add((q.f ??= new Map()), rank, n);
    const delay = timeToClickField(latencyBucket(timeToClickMs(e.timestamp.getTime(), clickAt.getTime())));
    const bucket = userBucket(e.user_id);
    const firstClicked = bucketField(bucket, "f");
    const reciprocal = bucketField(bucket, "r");
    const firstRank = firstRankField(rank);
    const docs = this.hourDocs(e.timestamp, e.variant);
    for (let i = 0; i < 2; i++) {
      const inc = (i === 0 ? docs.h : docs.d).inc;
      add(inc, firstRank, n);
      add(inc, delay, n);
      add(inc, firstClicked, n);
      add(inc, reciprocal, n * reciprocalRank(rank));
    }
  }

  /**
   * Counts (n = 1) or uncounts (n = -1) a search's linked clicks (core/click-attribution.ts) under
   * the search's hour, variant and query: per shown rank below the cap (CTR per rank, COEC),
   * outside its results, and in its query's clicks, rank sum, clicks at shown ranks and clicks
   * outside results.
   */
  linked(e: Pick<ImpressionDocument, "timestamp" | "variant" | "query_normalized">, lk: LinkedClicks | undefined, n: 1 | -1): void {
    if (lk === undefined || lk.n === 0) return;
    const docs = this.hourDocs(e.timestamp, e.variant);
    for (let i = 0; i < 2; i++) {
      const inc = (i === 0 ? docs.h : docs.d).inc;
      for (const { r, n: clicks } of lk.k) add(inc, shownRankField(r), n * clicks);
      if (lk.o !== 0) add(inc, "co", n * lk.o);
    }
    const q = this.query(e.timestamp, e.variant, e.query_normalized);
    if (q) {
      q.add("c", n * lk.n);
      q.add("r", n * lk.s);
      q.add("k", n * shownClicks(lk));
      q.add("o", n * lk.o);
    }
  }

  /** An impression got its first linked click. */
  clicked(e: Pick<ImpressionDocument, "timestamp" | "variant" | "query_normalized" | "user_id">): void {
    const perBucket = bucketField(userBucket(e.user_id), "s");
    const docs = this.hourDocs(e.timestamp, e.variant);
    for (let i = 0; i < 2; i++) {
      const inc = (i === 0 ? docs.h : docs.d).inc;
      add(inc, "swc", 1);
      add(inc, perBucket, 1);
    }
    this.query(e.timestamp, e.variant, e.query_normalized)?.add("s", 1);
  }

  /**
   * The increments as plain upserts, one per document, without the once-only guard (the marker's
   * filter and `ap`): what bench/ingest-floor.ts sends as the least statements with these fields.
   */
  unguardedUpdates(): Document[] {
    return this.updates([...this.docs.keys()]);
  }

  /** Statements of one `update` command: an upsert per rollup document, unless `marker` is already counted there (no marker: unguarded). */
  private updates(ids: readonly string[], marker?: string): Document[] {
    return ids.map((id) => {
      const d = this.docs.get(id)!;
      // A query table's fields are named once, when its update is first built.
      if (d.queries !== undefined) {
        for (const [query, q] of d.queries) q.writeInto(query, d.inc);
        d.queries = undefined;
      }
      // Into the increments themselves: copying thousands of fields per update was a hot spot.
      d.inc.set("ver", 1);
      const update: Document = { $inc: d.inc, $setOnInsert: { g: d.g, t: new Date(d.t), v: d.v } };
      if (marker !== undefined) update.$push = { ap: { $each: [marker], $slice: -APPLIED_KEEP } };
      if (d.min !== undefined) update.$min = { rt_min: d.min };
      if (Object.keys(d.max).length > 0) update.$max = d.max;
      let bit: Document | undefined;
      // `mask | 0` is a 32-bit integer, which BSON writes as an int32: what Int32(mask) wrote, without an object per word.
      for (const [field, mask] of d.bits) (bit ??= {})[field] = { or: mask | 0 };
      if (bit !== undefined) update.$bit = bit;
      if (marker === undefined) return { q: { _id: id }, u: update, upsert: true };
      // A full query table matches nothing, like one that has the marker (see apply).
      return { q: { _id: id, ap: { $ne: marker }, ...(isTable(d.g) ? { full: { $ne: true } } : {}) }, u: update, upsert: true };
    });
  }

  /**
   * Applies the increments as the batch `marker`, once: one unordered `update` command (raw, like
   * the event inserts, so an outage surfaces as the driver's network error). Where the document
   * already holds the marker the filter matches nothing and the upsert's insert collides on _id
   * (E11000); a collision can also be two writers creating the same new document at once, or a
   * full query table, so each is checked, and only documents without the marker are sent again.
   * A query table the update would take past 16 MiB is marked full (readers then use the raw
   * events of its period).
   */
  async apply(c: Collections, marker: string): Promise<void> {
    let ids = [...this.docs.keys()];
    for (let attempt = 1; ids.length > 0; attempt++) {
      const updates = this.updates(ids, marker);
      const reply = await writeCommand(c, { update: ROLLUPS, updates, ordered: false });
      const errors = (reply.writeErrors as { index: number; errmsg: string; code: number }[] | undefined) ?? [];
      const tooLarge = errors.filter((e) => TOO_LARGE.has(e.code) && isTable(this.docs.get(ids[e.index]!)!.g)).map((e) => ids[e.index]!);
      if (tooLarge.length > 0) await markFull(c, tooLarge);
      const failed = errors.find((e) => e.code !== DUPLICATE_KEY && !tooLarge.includes(ids[e.index]!)) ?? reply.writeConcernError;
      if (failed) throw new MongoServerError({ message: `rollup update failed: ${failed.errmsg}`, code: failed.code });
      const collided = errors.filter((e) => e.code === DUPLICATE_KEY).map((e) => ids[e.index]!);
      if (collided.length === 0) return;
      const settled = { _id: { $in: collided }, $or: [{ ap: marker }, { full: true }] };
      const counted = new Set((await rollupCollection(c).find(settled, { projection: { _id: 1 }, ...abortable(c) }).toArray()).map((d) => d._id));
      ids = collided.filter((id) => !counted.has(id));
      if (ids.length > 0 && attempt >= 5) throw new MongoServerError({ message: `rollup update kept colliding on ${ids.join(", ")}`, code: DUPLICATE_KEY });
    }
  }
}

const DUPLICATE_KEY = 11000;

/**
 * A marker for work in flight: "<15-digit ms>:<64 random bits>". Ordered by time as strings, so a
 * repair can find markers older than a cut-off through a small partial index; short, since
 * rollup documents keep the last APPLIED_KEEP of them.
 */
export function pendingMarker(at = Date.now()): string {
  return `${String(at).padStart(15, "0")}:${randomBytes(8).toString("base64url")}`;
}

/**
 * Rollup increments for events just written (never for duplicates), as the batch `marker`.
 * `queryTables` false leaves the query tables alone (the rollup upgrade rebuilds rollups only).
 */
export async function rollUp(c: Collections, clicks: readonly ClickDocument[], impressions: readonly ImpressionDocument[], marker: string, queryTables = true): Promise<void> {
  if (clicks.length + impressions.length === 0) return;
  const numbers = await userNumbers(c).resolve([...clicks, ...impressions].map((d) => d.user_id));
  const delta = new RollupDelta(queryTables);
  for (const d of clicks) delta.addClick(d, numbers.get(d.user_id)!);
  for (const d of impressions) delta.addImpression(d, numbers.get(d.user_id)!);
  // Interleaving rollups are rebuilt by readers where these events moved them (interleaving-rollups.ts).
  await Promise.all([delta.apply(c, marker), noteInterleavingWrites(c, clicks, impressions)]);
}

/** Removes `field` where it still holds `marker`; resolves with how many documents it was removed from. */
export async function clearMarker<T extends Document>(collection: Collection<T>, field: MarkerField, marker: string): Promise<number> {
  return (await collection.updateMany({ [field]: marker } as Filter<T>, { $unset: { [field]: "" } } as UpdateFilter<T>)).modifiedCount;
}

export type MarkerField = "pending_rollup" | "click_claim";
