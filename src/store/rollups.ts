/**
 * Pre-aggregated rollups: per variant, per UTC hour and per UTC day, the counts, sums, rank
 * histogram, latency sketch and distinct-user sketch of every event. They are maintained with
 * atomic $inc/$min/$max upserts right after each batch of events is written (one bulk write per
 * batch), so unfiltered and variant-filtered metrics cost what the window's hours and days
 * cost, not what the number of events costs.
 *
 * Each batch's increments are applied once however often they are sent: every update names the
 * batch's marker and records it in the document's `ap` list in the same atomic update, and an
 * update whose marker is already there changes nothing. So a repair (or a retry after a lost
 * reply) may resend a batch that was in fact counted.
 *
 * A window [start, now] is answered from three parts that never overlap:
 *   raw events in [start, next hour), hourly rollups up to the next UTC midnight, daily rollups
 *   from there on (no upper bound, so late and slightly-future events are included).
 */
import { createHash, randomBytes } from "node:crypto";
import { Int32, MongoServerError, type Collection, type Document, type Filter, type UpdateFilter } from "mongodb";
import { reciprocalRank, timeToClickMs } from "../core/first-click.js";
import { shownClicks, type LinkedClicks, type RankClicks } from "../core/click-attribution.js";
import { latencyBucket, mergeLatency } from "../core/sketches.js";
import { addBucketSums, BUCKET_SUM_FIELDS, emptyBucketSums, userBucket, USER_BUCKETS, type BucketSums } from "../core/user-buckets.js";
import type { TimeWindow } from "../core/window.js";
import { ONE_ROUND_TRIP, type ClickDocument, type Collections, type ImpressionDocument } from "./documents.js";
import { addPushedFirstClicks, firstClickPush } from "./first-click-fields.js";
import { keyIn, keyIs } from "./indexes.js";
import { noteInterleavingWrites } from "./interleaving-rollups.js";
import { timeLimit, type MetricsFilter } from "./metrics-queries.js";
import { firstClickCounter, histogramCounter, queryFieldPrefix, type StoredQueryCounts } from "./query-table-fields.js";
import { userNumbers, UserSet, WORD_BITS, WORD_GROUP } from "./user-ids.js";

/** What is left of a read's deadline (see MetricsFilter.maxTimeMS): every query of the read gets it. */
type MaxTime = Pick<MetricsFilter, "maxTimeMS">;

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

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

/** Errors of an update whose result would exceed 16 MiB. */
const TOO_LARGE = new Set([10334, 17419]);

/**
 * How many applied markers a rollup document remembers. A batch is recognised as counted as
 * long as fewer than this many later batches touched the same document: finishing a dead
 * writer's batch, at the latest when its lease ends (writer-lease.ts, 10 s), must come sooner
 * than that (1,024 batches into one hour's document, at the benchmark's ~10 batches/s, is ~100 s).
 */
export const APPLIED_KEEP = 1024;

const ROLLUPS = "rollups";

export function rollupCollection(c: Collections): Collection<RollupDocument> {
  return c.db.collection<RollupDocument>(ROLLUPS);
}

export const ROLLUP_INDEXES = [{ key: { g: 1, t: 1, v: 1, ver: 1 }, name: "grain_time_variant_version" }];

type BucketField = "i" | "c" | "s" | "n" | "f" | "r";
/** The stored name of each BucketSums field, in the order sparse buckets keep them. */
const BUCKET_FIELDS: readonly BucketField[] = ["i", "c", "s", "n", "f", "r"];
const BUCKET_WIDTH = BUCKET_FIELDS.length;
/** Result counts are kept exactly up to this (a search showing more counts as showing this many): per-rank CTRs cover ranks below it. */
export const RESULTS_COUNT_CAP = 100;

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

/** The bitmap word of user number n, and its bit. */
const userWord = (n: number) => ({ field: wordField(Math.floor(n / WORD_BITS)), bit: 1 << n % WORD_BITS });

const floorTo = (t: number, unit: number) => t - (((t % unit) + unit) % unit);
export const rollupId = (g: Grain | TableGrain, t: number, v: string) => `${g}|${new Date(t).toISOString()}|${v}`;

type DocDelta = { g: Grain | TableGrain; t: number; v: string; inc: Record<string, number>; min?: number; max: Record<string, number>; bits: Record<string, number> };

/** The documents one (hour, variant) of events updates: its hour, its day, and (once used) its hour's query table. */
interface HourDocs {
  h: DocDelta;
  d: DocDelta;
  qh?: DocDelta;
}

const add = (inc: Record<string, number>, field: string, n: number) => (inc[field] = (inc[field] ?? 0) + n);

/** Accumulates one batch's increments per rollup document and per query table. */
class RollupDelta {
  /** `queryTables` false: the rollups alone (a rebuild of rollups must not add to the query tables it keeps). */
  constructor(private readonly queryTables = true) {}
  private readonly docs = new Map<string, DocDelta>();
  /** The documents of each (hour, variant) seen: one cheap key per event finds all three (an id's ISO date costs more than the rest of an event; profiled). */
  private readonly hours = new Map<string, HourDocs>();

  private doc(g: Grain | TableGrain, t: number, v: string): DocDelta {
    const id = rollupId(g, t, v);
    let d = this.docs.get(id);
    if (!d) this.docs.set(id, (d = { g, t, v, inc: {}, max: {}, bits: {} }));
    return d;
  }

  private hourDocs(ms: number, variant: string): HourDocs {
    const hour = floorTo(ms, HOUR_MS);
    const key = `${hour}|${variant}`;
    let docs = this.hours.get(key);
    if (!docs) this.hours.set(key, (docs = { h: this.doc("h", hour, variant), d: this.doc("d", floorTo(ms, DAY_MS), variant) }));
    return docs;
  }

  private each(timestamp: Date, variant: string, apply: (d: DocDelta) => void, tables = false): void {
    const docs = this.hourDocs(timestamp.getTime(), variant);
    // Query tables are hourly only: readers compact finished days (query-tables.ts).
    if (tables) {
      apply((docs.qh ??= this.doc("qh", docs.h.t, variant)));
      return;
    }
    apply(docs.h);
    apply(docs.d);
  }

  /** The query's counters in its hour's query table. */
  private eachQuery(timestamp: Date, variant: string, query: string, counts: StoredQueryCounts): void {
    if (!this.queryTables) return;
    this.each(
      timestamp,
      variant,
      (d) => {
        const prefix = queryFieldPrefix(query);
        for (const [counter, n] of Object.entries(counts)) if (n !== 0) add(d.inc, prefix + counter, n);
      },
      true,
    );
  }

  /** `userNumber`: the user's number (user-ids.ts), for the distinct-user bitmap. */
  addClick(e: Pick<ClickDocument, "user_id" | "variant" | "rank" | "timestamp" | "query_normalized" | "impression_id">, userNumber: number): void {
    const user = userWord(userNumber);
    const perBucket = bucketField(userBucket(e.user_id), "c");
    const rank = rankField(e.rank);
    this.each(e.timestamp, e.variant, (d) => {
      d.inc.clk = (d.inc.clk ?? 0) + 1;
      d.inc.rk_sum = (d.inc.rk_sum ?? 0) + e.rank;
      add(d.inc, rank, 1);
      add(d.inc, perBucket, 1);
      d.bits[user.field] = (d.bits[user.field] ?? 0) | user.bit;
    });
    // A linked click counts in its search's query (linked()); an unlinked one in the query it carries.
    if (e.impression_id === undefined) this.eachQuery(e.timestamp, e.variant, e.query_normalized, { c: 1, r: e.rank });
  }

  addImpression(
    e: Pick<ImpressionDocument, "user_id" | "variant" | "results_count" | "response_time_ms" | "timestamp" | "query_normalized" | "clicked_on_insert" | "fi_t" | "fi_r" | "li">,
    userNumber: number,
  ): void {
    if (e.clicked_on_insert === true && e.fi_t !== undefined && e.fi_r !== undefined) this.firstClick(e, e.fi_t, e.fi_r, 1);
    if (e.clicked_on_insert === true) this.linked(e, e.li, 1);
    const user = userWord(userNumber);
    const ms = Number(e.response_time_ms);
    // Stored clicked: its click came in the same batch (a later click is counted when it flags it).
    const swc = e.clicked_on_insert === true ? 1 : 0;
    const bucket = userBucket(e.user_id);
    const shown = Math.min(e.results_count, RESULTS_COUNT_CAP);
    const resultsCount = resultsCountField(shown);
    const latency = latencyField(latencyBucket(ms));
    // h0 would repeat n: a search without results shows no rank.
    this.eachQuery(e.timestamp, e.variant, e.query_normalized, { i: 1, n: e.results_count === 0 ? 1 : 0, s: swc, [histogramCounter(shown)]: shown > 0 ? 1 : 0 });
    this.each(e.timestamp, e.variant, (d) => {
      d.inc.imp = (d.inc.imp ?? 0) + 1;
      add(d.inc, resultsCount, 1);
      add(d.inc, bucketField(bucket, "i"), 1);
      if (swc) {
        d.inc.swc = (d.inc.swc ?? 0) + 1;
        add(d.inc, bucketField(bucket, "s"), 1);
      }
      if (e.results_count === 0) {
        d.inc.nr = (d.inc.nr ?? 0) + 1;
        add(d.inc, bucketField(bucket, "n"), 1);
      }
      d.inc.rt_sum = (d.inc.rt_sum ?? 0) + ms;
      add(d.inc, latency, 1);
      d.min = Math.min(d.min ?? Infinity, ms);
      d.max.rt_max = Math.max(d.max.rt_max ?? -Infinity, ms);
      d.bits[user.field] = (d.bits[user.field] ?? 0) | user.bit;
    });
  }

  /**
   * Counts (n = 1) or uncounts (n = -1) a search's first click: only searches with results have
   * one (core/first-click.ts).
   */
  firstClick(e: Pick<ImpressionDocument, "timestamp" | "variant" | "user_id" | "results_count" | "query_normalized">, clickAt: Date, rank: number, n: 1 | -1): void {
    if (!(e.results_count > 0)) return;
    this.eachQuery(e.timestamp, e.variant, e.query_normalized, { [firstClickCounter(rank)]: n });
    const delay = timeToClickField(latencyBucket(timeToClickMs(e.timestamp.getTime(), clickAt.getTime())));
    const bucket = userBucket(e.user_id);
    const firstClicked = bucketField(bucket, "f");
    const reciprocal = bucketField(bucket, "r");
    const firstRank = firstRankField(rank);
    this.each(e.timestamp, e.variant, (d) => {
      add(d.inc, firstRank, n);
      add(d.inc, delay, n);
      add(d.inc, firstClicked, n);
      add(d.inc, reciprocal, n * reciprocalRank(rank));
    });
  }

  /**
   * Counts (n = 1) or uncounts (n = -1) a search's linked clicks (core/click-attribution.ts) under
   * the search's hour, variant and query: per shown rank below the cap (CTR per rank, COEC),
   * outside its results, and in its query's clicks, rank sum, clicks at shown ranks and clicks
   * outside results.
   */
  linked(e: Pick<ImpressionDocument, "timestamp" | "variant" | "query_normalized">, lk: LinkedClicks | undefined, n: 1 | -1): void {
    if (lk === undefined || lk.n === 0) return;
    this.each(e.timestamp, e.variant, (d) => {
      for (const { r, n: clicks } of lk.k) add(d.inc, shownRankField(r), n * clicks);
      if (lk.o !== 0) add(d.inc, "co", n * lk.o);
    });
    this.eachQuery(e.timestamp, e.variant, e.query_normalized, { c: n * lk.n, r: n * lk.s, k: n * shownClicks(lk), o: n * lk.o });
  }

  /** An impression got its first linked click. */
  clicked(e: Pick<ImpressionDocument, "timestamp" | "variant" | "query_normalized" | "user_id">): void {
    const perBucket = bucketField(userBucket(e.user_id), "s");
    this.each(e.timestamp, e.variant, (d) => {
      d.inc.swc = (d.inc.swc ?? 0) + 1;
      add(d.inc, perBucket, 1);
    });
    this.eachQuery(e.timestamp, e.variant, e.query_normalized, { s: 1 });
  }

  /** Statements of one `update` command: an upsert per rollup document, unless `marker` is already counted there. */
  private updates(ids: readonly string[], marker: string): Document[] {
    return ids.map((id) => {
      const d = this.docs.get(id)!;
      // Into the increments themselves: copying thousands of fields per update was a hot spot.
      d.inc.ver = 1;
      const update: Document = {
        $inc: d.inc,
        $setOnInsert: { g: d.g, t: new Date(d.t), v: d.v },
        $push: { ap: { $each: [marker], $slice: -APPLIED_KEEP } },
      };
      if (d.min !== undefined) update.$min = { rt_min: d.min };
      if (Object.keys(d.max).length > 0) update.$max = d.max;
      const bits = Object.entries(d.bits);
      if (bits.length > 0) update.$bit = Object.fromEntries(bits.map(([field, mask]) => [field, { or: new Int32(mask | 0) }]));
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
    const wc = c.db.writeConcern;
    for (let attempt = 1; ids.length > 0; attempt++) {
      const updates = this.updates(ids, marker);
      const reply = await c.db.command({ update: ROLLUPS, updates, ordered: false, ...(wc ? { writeConcern: { w: wc.w, j: wc.journal } } : {}) });
      const errors = (reply.writeErrors as { index: number; errmsg: string; code: number }[] | undefined) ?? [];
      const tooLarge = errors.filter((e) => TOO_LARGE.has(e.code) && isTable(this.docs.get(ids[e.index]!)!.g)).map((e) => ids[e.index]!);
      if (tooLarge.length > 0) await markFull(c, tooLarge);
      const failed = errors.find((e) => e.code !== DUPLICATE_KEY && !tooLarge.includes(ids[e.index]!)) ?? reply.writeConcernError;
      if (failed) throw new MongoServerError({ message: `rollup update failed: ${failed.errmsg}`, code: failed.code });
      const collided = errors.filter((e) => e.code === DUPLICATE_KEY).map((e) => ids[e.index]!);
      if (collided.length === 0) return;
      const settled = { _id: { $in: collided }, $or: [{ ap: marker }, { full: true }] };
      const counted = new Set((await rollupCollection(c).find(settled, { projection: { _id: 1 } }).toArray()).map((d) => d._id));
      ids = collided.filter((id) => !counted.has(id));
      if (ids.length > 0 && attempt >= 5) throw new MongoServerError({ message: `rollup update kept colliding on ${ids.join(", ")}`, code: DUPLICATE_KEY });
    }
  }
}

const DUPLICATE_KEY = 11000;

const isTable = (g: Grain | TableGrain): g is TableGrain => g === "qh" || g === "qd";

/** Stops updating these query tables; ver moves, so readers drop their cached copies and read raw events. */
export async function markFull(c: Collections, ids: readonly string[]): Promise<void> {
  await rollupCollection(c).updateMany({ _id: { $in: [...ids] }, full: { $ne: true } }, { $set: { full: true }, $inc: { ver: 1 } });
}

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

type MarkerField = "pending_rollup" | "click_claim";

/** Per impression (linked clicks only), per rank: how many of `clicks` and the earliest one's timestamp. */
export function clickRanks(clicks: Iterable<{ impression_id?: string | undefined; timestamp: Date; rank: number }>, into = new Map<string, RankClicks[]>()): Map<string, RankClicks[]> {
  for (const k of clicks) {
    if (k.impression_id === undefined) continue;
    let rows = into.get(k.impression_id);
    if (!rows) into.set(k.impression_id, (rows = []));
    const t = k.timestamp.getTime();
    const row = rows.find((x) => x.r === k.rank);
    if (row === undefined) rows.push({ r: k.rank, n: 1, t });
    else {
      row.n++;
      row.t = Math.min(row.t, t);
    }
  }
  return into;
}

/** How many clicks the rows hold. */
export const clickCount = (rows: readonly RankClicks[] | undefined): number => (rows ?? []).reduce((sum, x) => sum + x.n, 0);

/** How many times a claim blocked by another writer's claim is retried after finishing that one. */
const CLAIM_ATTEMPTS = 5;
/** MongoDB's WriteConflict: another writer holds what this one needs (see storage-errors.ts). */
const WRITE_CONFLICT = 112;

/**
 * Marks impressions that have at least one linked click, rebuilds each one's linked clicks and
 * first click at a shown rank (core/click-attribution.ts) from `candidates`, which hold ALL its
 * stored clicks as read after the batch's own were stored, and counts the change exactly once in
 * the rollups. An impression is claimed with a marker unique to this call when the candidate
 * counts more clicks than it has (stored clicks only accumulate, so a later read holds every
 * click an earlier one did, and a larger count is the newer state), recording in `cf` what was
 * counted before; so of two writers racing on the same impression only the one whose update
 * matched counts the change, and a stale read never replaces a newer one. The marker is removed
 * once counted, and a marker left behind (a crash in between) is picked up by repairRollups. An
 * impression under another writer's claim is not taken over (that claim's `cf` must stay what
 * it moves from): its claim is finished here (counting is idempotent), then the impression is
 * tried again. One `update` command; reads only when some candidate did not match.
 */
/**
 * The impression `id`, if its stored clicks, `n` of them, may claim it: unclaimed, and with
 * fewer linked clicks counted (or none: also searches clicked by versions before linked-click
 * summaries, whose first click is then rebuilt by the rules of this one). Through keyIs, so that
 * the lookup uses the partial impression_id index (plain equality does not imply its filter, and
 * each statement would scan the collection).
 */
export function claimableFilter(id: string, n: number): Document {
  return { impression_id: keyIs(id), click_claim: { $exists: false }, $or: [{ "lk.n": { $exists: false } }, { "lk.n": { $lt: n } }] };
}

/**
 * The update that rebuilds a search's linked clicks and first click from its stored clicks by
 * rank, against its own results_count (which only the stored search knows).
 */
function claimUpdate(rows: readonly RankClicks[], claim: string): Document[] {
  const byRank = [...rows].sort((a, b) => a.r - b.r);
  const byTime = [...rows].sort((a, b) => a.t - b.t || a.r - b.r).map((x) => ({ r: x.r, t: new Date(x.t) }));
  const shown = (input: unknown[]) => ({ $filter: { input: { $literal: input }, cond: { $lt: ["$$this.r", "$results_count"] } } });
  const first = { $arrayElemAt: [shown(byTime), 0] };
  return [
    // Gone first: $set merges an object into the one it replaces, and what was counted before may lack some of the fields.
    { $unset: "cf" },
    {
      $set: {
        cf: { c: { $eq: ["$clicked", true] }, t: "$fc_t", r: "$fc_r", k: "$lk" },
        clicked: true,
        lk: {
          n: { $literal: clickCount(rows) },
          s: { $literal: rows.reduce((sum, x) => sum + x.n * x.r, 0) },
          o: { $sum: { $map: { input: { $filter: { input: { $literal: byRank }, cond: { $gte: ["$$this.r", "$results_count"] } } }, in: "$$this.n" } } },
          k: shown(byRank.filter((x) => x.r < RESULTS_COUNT_CAP).map((x) => ({ r: x.r, n: x.n }))),
        },
        fc_t: { $ifNull: [{ $let: { vars: { f: first }, in: "$$f.t" } }, "$$REMOVE"] },
        fc_r: { $ifNull: [{ $let: { vars: { f: first }, in: "$$f.r" } }, "$$REMOVE"] },
        click_claim: claim,
      },
    },
  ];
}

export async function flagClickedImpressions(c: Collections, candidates: ReadonlyMap<string, readonly RankClicks[]>, claim: string): Promise<void> {
  let pending = [...candidates.keys()];
  // Nothing matched, nothing to count: a batch with nothing to flag costs no round trip.
  let claimed = false;
  for (let attempt = 1; pending.length > 0; attempt++) {
    const updates = pending.map((id) => {
      const rows = candidates.get(id)!;
      return { q: claimableFilter(id, clickCount(rows)), u: claimUpdate(rows, claim) };
    });
    const wc = c.db.writeConcern;
    const reply = await c.db.command({ update: c.impressions.collectionName, updates, ordered: false, ...(wc ? { writeConcern: { w: wc.w, j: wc.journal } } : {}) });
    const failed = (reply.writeErrors as { errmsg: string; code: number }[] | undefined)?.[0] ?? reply.writeConcernError;
    if (failed) throw new MongoServerError({ message: `click flag failed: ${failed.errmsg}`, code: failed.code });
    claimed ||= Number(reply.n) > 0;
    if (Number(reply.n) === pending.length) break;
    // Some did not match: already holding every click read here (the usual case), not stored
    // yet, or under another claim (finished here, then tried again; as is one whose claim ended
    // between the update and this read).
    const stored = await c.impressions
      .find({ impression_id: keyIn(pending), click_claim: { $ne: claim } }, { projection: { _id: 0, impression_id: 1, click_claim: 1, "lk.n": 1 }, ...ONE_ROUND_TRIP })
      .toArray();
    const again = stored.filter((d) => d.click_claim !== undefined || (d.lk?.n ?? -1) < clickCount(candidates.get(d.impression_id)));
    if (again.length === 0) break;
    // Contention, not a fault: WriteConflict, which callers treat as transient (UNAVAILABLE; a retry by event id is safe).
    if (attempt >= CLAIM_ATTEMPTS) throw new MongoServerError({ message: `impressions ${again.map((b) => b.impression_id).join(", ")} stayed claimed by other writers`, code: WRITE_CONFLICT });
    for (const other of new Set(again.flatMap((d) => (d.click_claim === undefined ? [] : [d.click_claim])))) await countClicked(c, other);
    pending = again.map((d) => d.impression_id);
  }
  if (claimed) await countClicked(c, claim);
}

/**
 * Counts what the impressions under `claim` changed, once: a search newly flagged clicked counts
 * as a search with clicks, its first click moves from the one counted before (`cf`) to the one
 * it has now, and so do its linked clicks. Then clears the claim.
 */
async function countClicked(c: Collections, claim: string): Promise<number> {
  const flipped = await c.impressions
    .find({ click_claim: claim }, { projection: { _id: 1, timestamp: 1, variant: 1, query_normalized: 1, user_id: 1, results_count: 1, cf: 1, fc_t: 1, fc_r: 1, lk: 1 }, ...ONE_ROUND_TRIP })
    .toArray();
  if (flipped.length === 0) return 0;
  const delta = new RollupDelta();
  for (const imp of flipped) {
    // Claims of earlier versions have no `cf`: they only ever flagged unclicked impressions.
    if (imp.cf?.c !== true) delta.clicked(imp);
    if (imp.cf?.t !== undefined && imp.cf.r !== undefined) delta.firstClick(imp, imp.cf.t, imp.cf.r, -1);
    if (imp.fc_t !== undefined && imp.fc_r !== undefined) delta.firstClick(imp, imp.fc_t, imp.fc_r, 1);
    delta.linked(imp, imp.cf?.k, -1);
    delta.linked(imp, imp.lk, 1);
  }
  await delta.apply(c, claim);
  return clearMarker(c.impressions, "click_claim", claim);
}

/** A write in flight: its marker and the event ids it is storing (see writeEvents). */
export interface PendingBatch {
  _id: string;
  clicks: string[];
  impressions: string[];
  /** The writer's run (see writer-lease.ts); absent in records of earlier versions. */
  w?: string;
}

export function pendingBatches(c: Collections): Collection<PendingBatch> {
  return c.db.collection<PendingBatch>("pending_batches");
}

/**
 * Records a batch before its events are stored: one small document, so that finishing the
 * batch is one delete rather than clearing a marker from every event it stored.
 */
export async function recordPendingBatch(c: Collections, marker: string, clicks: string[], impressions: string[], writer?: string): Promise<void> {
  await pendingBatches(c).insertOne({ _id: marker, clicks, impressions, ...(writer === undefined ? {} : { w: writer }) });
}

/**
 * Counts what a pending batch stored (once: its events carry its marker, a duplicate stored by
 * another write does not); the record stays until settleBatch drops it.
 */
async function countBatch(c: Collections, marker: string): Promise<number> {
  const batch = await pendingBatches(c).findOne({ _id: marker });
  if (batch === null) return 0;
  const [clicks, impressions] = await Promise.all([
    c.clicks.find({ event_id: keyIn(batch.clicks), b: marker }, ONE_ROUND_TRIP).toArray(),
    c.impressions.find({ event_id: keyIn(batch.impressions), b: marker }, ONE_ROUND_TRIP).toArray(),
  ]);
  await rollUp(c, clicks, impressions, marker);
  return clicks.length + impressions.length;
}

/** The claim marker of a batch's linking: its own, as applying it is separate from the batch's. */
export const claimMarker = (batchMarker: string) => `${batchMarker}+`;

/**
 * Finishes a batch whose outcome its writer does not know (the call failed after the batch was
 * recorded: a lost reply, an outage), whatever its age: counts what it stored and what it
 * flagged, once. Its writer calls this as soon as MongoDB answers again, before writing anything
 * else, so the rollups still remember whether the batch was counted (see APPLIED_KEEP).
 */
export async function settleBatch(c: Collections, marker: string): Promise<number> {
  const counted = await countBatch(c, marker);
  await countClicked(c, claimMarker(marker));
  // Last: while the record is there, the batch's linking may still be unfinished too.
  const { deletedCount } = await pendingBatches(c).deleteOne({ _id: marker });
  return deletedCount === 1 ? counted : 0;
}

/** Counts the events an earlier version wrote under `marker` (once), then clears the marker. */
async function countPending(c: Collections, marker: string): Promise<number> {
  const [clicks, impressions] = await Promise.all([c.clicks.find({ pending_rollup: marker }).toArray(), c.impressions.find({ pending_rollup: marker }).toArray()]);
  await rollUp(c, clicks, impressions, marker);
  const cleared = await Promise.all([
    clearMarker(c.clicks, "pending_rollup", marker),
    clearMarker(c.impressions, "pending_rollup", marker),
  ]);
  return cleared[0] + cleared[1];
}

/**
 * Finishes rollup work that a writer started and did not finish (it crashed, or lost MongoDB,
 * between writing events and counting them): pending batches, events still marked
 * `pending_rollup` (by earlier versions), and impressions still marked `click_claim`, older
 * than `olderThanMs`. Each marker's events are
 * counted under that same marker, so whether the writer had counted them already, or another
 * repairer (or the writer, merely slow) counts them at the same time, they count once. Resolves
 * with the number of events (and flagged impressions) whose marker this call cleared.
 */
export async function repairRollups(c: Collections, olderThanMs: number): Promise<number> {
  const cutoff = pendingMarker(Date.now() - olderThanMs).slice(0, 15);
  const kinds: [Collection<Document>, MarkerField, (marker: string) => Promise<number>][] = [
    [c.clicks as unknown as Collection<Document>, "pending_rollup", (m) => countPending(c, m)],
    [c.impressions as unknown as Collection<Document>, "pending_rollup", (m) => countPending(c, m)],
    [c.impressions as unknown as Collection<Document>, "click_claim", (m) => countClicked(c, m)],
  ];
  let repaired = 0;
  for (;;) {
    // Only records of earlier versions, which name no writer: the others are finished as soon as
    // their writer's lease ends (finishDeadWriters), never merely for their age.
    const stale = await pendingBatches(c).find({ _id: { $lt: cutoff }, w: { $exists: false } }, { projection: { _id: 1 } }).limit(100).toArray();
    if (stale.length === 0) break;
    for (const { _id } of stale) repaired += await settleBatch(c, _id);
  }
  for (const [collection, field, count] of kinds) {
    for (;;) {
      const stale = await collection.find({ [field]: { $exists: true, $lt: cutoff } }, { projection: { _id: 0, [field]: 1 } }).limit(1000).toArray();
      if (stale.length === 0) break;
      for (const marker of new Set(stale.map((d) => String(d[field])))) repaired += await count(marker);
    }
  }
  return repaired;
}

/** Everything a window's metrics are computed from, for one variant or merged. */
export interface RollupAggregate {
  imp: number;
  clk: number;
  swc: number;
  nr: number;
  rkSum: number;
  rtSum: number;
  rtMin?: number | undefined;
  rtMax?: number | undefined;
  ranks: Map<number, number>;
  /** results_count (capped) -> impressions. */
  resultsCounts: Map<number, number>;
  rt: Map<number, number>;
  /** Searches with results: first-click rank -> searches, and time-to-first-click sketch (core/first-click.ts). */
  fr: Map<number, number>;
  ft: Map<number, number>;
  /** Linked clicks at shown ranks below the cap (rank -> clicks) and outside results, by their searches (core/click-attribution.ts). */
  sr: Map<number, number>;
  co: number;
  /** Exact distinct users (their numbers, see user-ids.ts). */
  users: UserSet;
  /** Sums per hashed user bucket (see core/user-buckets.ts). */
  buckets: BucketSums;
}

export function emptyAggregate(): RollupAggregate {
  return { imp: 0, clk: 0, swc: 0, nr: 0, rkSum: 0, rtSum: 0, ranks: new Map(), resultsCounts: new Map(), rt: new Map(), fr: new Map(), ft: new Map(), sr: new Map(), co: 0, users: new UserSet(), buckets: emptyBucketSums() };
}

/** The non-zero words of a user bitmap. */
interface SparseUsers {
  words: Uint32Array;
  bits: Uint32Array;
}

/** The non-empty user buckets: their indexes, and the BUCKET_FIELDS of each, BUCKET_WIDTH numbers a bucket. */
interface SparseBuckets {
  index: Uint16Array;
  sums: Float64Array;
}

/** One part of a window (a rollup document, or a stretch of raw events), sparse to save memory when cached. */
interface Part extends Omit<RollupAggregate, "users" | "buckets"> {
  users: SparseUsers;
  buckets: SparseBuckets;
}

/** A decoded rollup document, as cached. */
interface Decoded extends Part {
  ver: number;
  v: string;
}

const toNumberMap = (o: Record<string, number> | undefined) => new Map(Object.entries(o ?? {}).map(([k, n]) => [Number(k), Number(n)]));

function sparseUsers(words: Map<number, number>): SparseUsers {
  const sorted = [...words].sort((a, b) => a[0] - b[0]);
  return { words: Uint32Array.from(sorted, ([w]) => w), bits: Uint32Array.from(sorted, ([, bits]) => bits >>> 0) };
}

/** One user bucket's sums, in BUCKET_FIELDS order. */
type BucketRow = number[];
const emptyBucketRow = (): BucketRow => new Array<number>(BUCKET_WIDTH).fill(0);

function sparseBuckets(rows: Map<number, BucketRow>): SparseBuckets {
  const sorted = [...rows].sort((a, b) => a[0] - b[0]);
  return { index: Uint16Array.from(sorted, ([b]) => b), sums: Float64Array.from(sorted.flatMap(([, sums]) => sums)) };
}

function decode(d: RollupDocument): Decoded {
  const words = new Map<number, number>();
  for (const [hi, group] of Object.entries(d.um ?? {})) for (const [lo, bits] of Object.entries(group)) words.set(Number(hi) * WORD_GROUP + Number(lo), Number(bits));
  const buckets = new Map<number, BucketRow>();
  for (const [b, f] of Object.entries(d.ub ?? {})) buckets.set(Number(b), BUCKET_FIELDS.map((k) => Number(f[k] ?? 0)));
  return {
    ver: Number(d.ver),
    v: d.v,
    imp: Number(d.imp ?? 0),
    clk: Number(d.clk ?? 0),
    swc: Number(d.swc ?? 0),
    nr: Number(d.nr ?? 0),
    rkSum: Number(d.rk_sum ?? 0),
    rtSum: Number(d.rt_sum ?? 0),
    rtMin: d.rt_min === undefined ? undefined : Number(d.rt_min),
    rtMax: d.rt_max === undefined ? undefined : Number(d.rt_max),
    ranks: toNumberMap(d.ranks),
    resultsCounts: toNumberMap(d.rc),
    rt: toNumberMap(d.rt),
    fr: toNumberMap(d.fr),
    ft: toNumberMap(d.ft),
    sr: toNumberMap(d.sr),
    co: Number(d.co ?? 0),
    users: sparseUsers(words),
    buckets: sparseBuckets(buckets),
  };
}

/** Adds a part into an aggregate; `perUser` also merges users and buckets (time series need neither). */
function addInto(into: RollupAggregate, d: Part, perUser = true): void {
  into.imp += d.imp;
  into.clk += d.clk;
  into.swc += d.swc;
  into.nr += d.nr;
  into.rkSum += d.rkSum;
  into.rtSum += d.rtSum;
  if (d.rtMin !== undefined) into.rtMin = Math.min(into.rtMin ?? Infinity, d.rtMin);
  if (d.rtMax !== undefined) into.rtMax = Math.max(into.rtMax ?? -Infinity, d.rtMax);
  for (const [k, n] of d.ranks) into.ranks.set(k, (into.ranks.get(k) ?? 0) + n);
  for (const [k, n] of d.resultsCounts) into.resultsCounts.set(k, (into.resultsCounts.get(k) ?? 0) + n);
  mergeLatency(into.rt, d.rt);
  addCounts(into.fr, d.fr);
  addCounts(into.ft, d.ft);
  addCounts(into.sr, d.sr);
  into.co += d.co;
  if (!perUser) return;
  for (let i = 0; i < d.users.words.length; i++) into.users.orWord(d.users.words[i]!, d.users.bits[i]!);
  const columns = BUCKET_SUM_FIELDS.map((field) => into.buckets[field]);
  for (let i = 0; i < d.buckets.index.length; i++) {
    const b = d.buckets.index[i]!;
    for (let k = 0; k < BUCKET_WIDTH; k++) columns[k]![b]! += d.buckets.sums[BUCKET_WIDTH * i + k]!;
  }
}

/** Per-key sums; unlike mergeLatency, a count may be briefly negative (a first click moved before its batch was counted). */
function addCounts(into: Map<number, number>, from: ReadonlyMap<number, number>): void {
  for (const [k, n] of from) into.set(k, (into.get(k) ?? 0) + n);
}

/** Adds one aggregate into another (both dense). */
export function mergeAggregate(into: RollupAggregate, from: RollupAggregate): RollupAggregate {
  addInto(into, { ...from, users: { words: new Uint32Array(0), bits: new Uint32Array(0) }, buckets: { index: new Uint16Array(0), sums: new Float64Array(0) } });
  into.users.or(from.users);
  addBucketSums(into.buckets, from.buckets);
  return into;
}

export interface WindowAggregates {
  overall: RollupAggregate;
  variants: Map<string, RollupAggregate>;
}

type Range = readonly [from: number, to: number];

/**
 * How a window [start, end) divides into raw events (its partial first and last hours), hourly
 * rollups (up to the first and from the last whole UTC day) and daily rollups. Without an end
 * the window is open (late and slightly-future events count) and has no raw tail.
 */
export function windowRanges(start: number, end: number | undefined): { raw: Range[]; hours: Range[]; days: (readonly [number, number | undefined])[] } {
  const hourStart = Math.ceil(start / HOUR_MS) * HOUR_MS;
  const dayStart = Math.ceil(hourStart / DAY_MS) * DAY_MS;
  const nonEmpty = (ranges: Range[]) => ranges.filter(([from, to]) => from < to);
  if (end === undefined) return { raw: nonEmpty([[start, hourStart]]), hours: nonEmpty([[hourStart, dayStart]]), days: [[dayStart, undefined]] };
  const hourEnd = Math.floor(end / HOUR_MS) * HOUR_MS;
  if (hourEnd <= hourStart) return { raw: nonEmpty([[start, end]]), hours: [], days: [] };
  const dayEnd = Math.floor(hourEnd / DAY_MS) * DAY_MS;
  const raw = nonEmpty([[start, hourStart], [hourEnd, end]]);
  if (dayEnd <= dayStart) return { raw, hours: [[hourStart, hourEnd]], days: [] };
  return { raw, hours: nonEmpty([[hourStart, dayStart], [dayEnd, hourEnd]]), days: [[dayStart, dayEnd]] };
}

const timeRange = (from: number, to: number | undefined) => (to === undefined ? { $gte: new Date(from) } : { $gte: new Date(from), $lt: new Date(to) });

/** An hour's raw events are cached once the hour has been over this long (settled: late events are rare by then). */
const EDGE_SETTLED_MS = HOUR_MS;
/** Cached hours (an hour and variant filter each): a few windows' edges, with room to spare. */
const EDGE_HOURS_CACHED = 64;
/** Windows' rollup sums kept (see RollupReader.rollupSums): ~15 KB per variant each. */
const WINDOW_SUMS_CACHED = 32;
/** Rebuilt at least this often whatever the versions say (a reset elsewhere that left none). */
const EDGE_MAX_AGE_MS = 10 * 60_000;

/**
 * A settled hour's events, grouped by millisecond (rawRows with 1 ms slices: `_id.k` is the
 * offset into the hour), sorted by it, and the versions of its rollups they match. Any stretch
 * of the hour is then summed here, to the millisecond, without reading the events again.
 */
interface EdgeHour {
  signature: string;
  builtAt: number;
  rows: Promise<RawRows>;
  /** Rows held (for the cache's bound), once built. */
  size: number;
  /**
   * The last stretch summed, by the rows it covers: a window's start moves by milliseconds from
   * call to call but crosses an event only now and then, so most calls sum the same rows again.
   */
  lastSlice?: { imps: readonly [number, number]; clks: readonly [number, number]; part: Map<string, Part> | undefined };
}

/**
 * Rows held by the edge-hour cache at most (well under 1 KB each: ~35 MB), the oldest hours going
 * first. An hour at 3M events over 30 days is ~5,500 rows; the benchmark's windows keep ~30,000.
 */
const EDGE_ROWS_CACHED = 50_000;

/**
 * Reads rollups for a window, caching decoded documents by (id, version): finished hours and
 * days are fetched once per process, and every read re-checks versions so a late event (or
 * another server's write) is never missed.
 *
 * A window's partial edge hours are raw events. A trailing window's start moves every call, so
 * its edge hour used to be aggregated from the events on every read (at 3M events, most of a
 * GetCtr's time). A settled hour's events are now read once, grouped by millisecond, and cached
 * under the versions of that hour's rollups (any event written, flagged or repaired in the hour
 * moves them), which the window's one listing of rollup versions includes: a warm read is that
 * one listing, and the edge is summed from the cache to the millisecond.
 */
export class RollupReader {
  private readonly cache = new Map<string, Decoded>();
  private readonly edgeHours = new Map<string, EdgeHour>();
  /** Windows' rollups summed per variant, by the ids and versions summed (see rollupSums). */
  private readonly windowSums = new Map<string, Map<string, RollupAggregate>>();
  /** Settled hours read into the edge-hour cache (cache misses), for tests and metrics. */
  edgeHourBuilds = 0;

  constructor(
    private readonly c: Collections,
    private readonly maxCached = 50_000,
  ) {}

  async window(window: Pick<TimeWindow, "start" | "until">, variant?: string, budget: MaxTime = {}): Promise<WindowAggregates> {
    const ranges = windowRanges(window.start.getTime(), window.until?.getTime());
    const variantFilter = variant === undefined ? {} : { v: variant };
    // The settled edge hours' versions in the same listing: a warm read is this one round trip.
    const edgeHours = settledHours(ranges.raw, Date.now());
    const grains = [
      ...ranges.hours.map(([from, to]) => ({ g: "h", t: timeRange(from, to), ...variantFilter })),
      ...ranges.days.map(([from, to]) => ({ g: "d", t: timeRange(from, to), ...variantFilter })),
      ...[...edgeHours].map((hour) => ({ g: "h", t: new Date(hour), ...variantFilter })),
    ];
    const listing = grains.length === 0 ? Promise.resolve([]) : this.list({ $or: grains }, budget);
    const [listed, ...edges] = await Promise.all([listing, ...ranges.raw.map(([from, to]) => this.rawRange(from, to, variant, budget, edgeHours, listing))]);
    const versions = listed.filter((d) => !isEdgeListing(d, edgeHours));
    await this.refresh(versions, budget);
    const out: WindowAggregates = { overall: emptyAggregate(), variants: new Map() };
    const into = (v: string) => {
      let agg = out.variants.get(v);
      if (!agg) out.variants.set(v, (agg = emptyAggregate()));
      return agg;
    };
    // The rollups' sum, per variant, as summed for the same versions before (the common case: the
    // same window again), else summed now; a copy of it is what the edges are added to.
    for (const [v, agg] of this.rollupSums(versions)) mergeAggregate(into(v), agg);
    for (const edge of edges) for (const part of edge) for (const [v, d] of part) addInto(into(v), d);
    for (const agg of out.variants.values()) mergeAggregate(out.overall, agg);
    return out;
  }

  /**
   * The cached documents of `versions` summed per variant, remembered under those exact ids and
   * versions: any write, repair or reset moves a version (or the list), and so misses.
   */
  private rollupSums(versions: readonly { _id: string; ver: number }[]): Map<string, RollupAggregate> {
    const signature = versions
      .map((d) => `${d._id}@${d.ver}`)
      .sort()
      .join(";");
    const known = this.windowSums.get(signature);
    if (known !== undefined) {
      this.windowSums.delete(signature);
      this.windowSums.set(signature, known);
      return known;
    }
    const sums = new Map<string, RollupAggregate>();
    for (const { _id } of versions) {
      const d = this.cache.get(_id);
      if (!d) continue;
      let agg = sums.get(d.v);
      if (!agg) sums.set(d.v, (agg = emptyAggregate()));
      addInto(agg, d);
    }
    this.windowSums.set(signature, sums);
    while (this.windowSums.size > WINDOW_SUMS_CACHED) this.windowSums.delete(this.windowSums.keys().next().value!);
    return sums;
  }

  /**
   * Per time-series bucket (`starts` are bucket starts on UTC hour boundaries, oldest first):
   * the window's partial first hour from raw events, then every hourly rollup from there on,
   * each added to the bucket its hour falls in. Distinct users are not tracked per bucket.
   */
  async buckets(start: Date, starts: readonly Date[], variant?: string, budget: MaxTime = {}): Promise<RollupAggregate[]> {
    const hourEdge = Math.ceil(start.getTime() / HOUR_MS) * HOUR_MS;
    const variantFilter = variant === undefined ? {} : { v: variant };
    // Buckets that are whole UTC days (daily series in UTC) are read from daily rollups: a
    // 24th of the documents to read and merge.
    const dayEdge = starts.every((t) => t.getTime() % DAY_MS === 0) ? Math.ceil(hourEdge / DAY_MS) * DAY_MS : Infinity;
    const edgeHours = settledHours([[start.getTime(), hourEdge]], Date.now());
    const listing = this.list(
      {
        $or: [
          { g: "h", t: { $gte: new Date(hourEdge), $lt: new Date(dayEdge === Infinity ? 8.64e15 : dayEdge) }, ...variantFilter },
          { g: "d", t: { $gte: new Date(dayEdge === Infinity ? 8.64e15 : dayEdge) }, ...variantFilter },
          ...[...edgeHours].map((hour) => ({ g: "h", t: new Date(hour), ...variantFilter })),
        ],
      },
      budget,
    );
    const [listed, edge] = await Promise.all([listing, this.rawRange(start.getTime(), hourEdge, variant, budget, edgeHours, listing)]);
    const versions = listed.filter((d) => !isEdgeListing(d, edgeHours));
    await this.refresh(versions, budget);
    const out = starts.map(() => emptyAggregate());
    const bucketOf = (t: number): number => {
      // The last bucket starting at or before t (binary search).
      let lo = 0;
      let hi = starts.length - 1;
      if (hi < 0 || t < starts[0]!.getTime()) return -1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (starts[mid]!.getTime() <= t) lo = mid;
        else hi = mid - 1;
      }
      return lo;
    };
    for (const { _id, t } of versions) {
      const d = this.cache.get(_id);
      const k = bucketOf(t.getTime());
      if (d && k >= 0) addInto(out[k]!, d, false);
    }
    const first = bucketOf(start.getTime());
    if (first >= 0) for (const part of edge) for (const d of part.values()) addInto(out[first]!, d, false);
    return out;
  }

  /**
   * A digest of the versions of every hourly and daily rollup that covers any part of the window
   * (its raw edge hours included). Every event written, counted late, flagged clicked or repaired
   * bumps the version of its hour's and its day's documents, by whichever server did it, and a
   * reset deletes them: an unchanged digest means the window's stored events are unchanged. One
   * index-only read; a trailing window's moving start is not covered (see anyEventBetween).
   */
  async fingerprint(window: Pick<TimeWindow, "start" | "until">, variant?: string, budget: MaxTime = {}): Promise<string> {
    const hStart = floorTo(window.start.getTime(), HOUR_MS);
    const dStart = Math.ceil(hStart / DAY_MS) * DAY_MS;
    const v = variant === undefined ? {} : { v: variant };
    const h = (from: number, to: number) => (from < to ? [{ g: "h", t: timeRange(from, to), ...v }] : []);
    let grains: Document[];
    if (window.until === undefined) {
      grains = [...h(hStart, dStart), { g: "d", t: timeRange(dStart, undefined), ...v }];
    } else {
      const hEnd = Math.ceil(window.until.getTime() / HOUR_MS) * HOUR_MS;
      const dEnd = floorTo(hEnd, DAY_MS);
      grains = dEnd <= dStart ? h(hStart, hEnd) : [...h(hStart, dStart), { g: "d", t: timeRange(dStart, dEnd), ...v }, ...h(dEnd, hEnd)];
    }
    const listed = grains.length === 0 ? [] : await this.list({ $or: grains }, budget);
    const digest = createHash("sha1");
    for (const d of listed.sort((a, b) => (a._id < b._id ? -1 : a._id > b._id ? 1 : 0))) digest.update(`${d._id}@${d.ver};`);
    return `${listed.length}:${digest.digest("base64url")}`;
  }

  /**
   * The rollups matching `filter`, with their versions: an index-only read of {g, t, v, ver}
   * (the ids follow from g, t and v), which never touches the documents themselves.
   */
  private async list(filter: Document, budget: MaxTime): Promise<{ _id: string; ver: number; t: Date }[]> {
    const listed = await rollupCollection(this.c)
      .find(filter, { projection: { _id: 0, g: 1, t: 1, v: 1, ver: 1 }, ...timeLimit(budget), ...ONE_ROUND_TRIP })
      .toArray();
    return listed.map((d) => ({ _id: rollupId(d.g, d.t.getTime(), d.v), ver: Number(d.ver), t: d.t }));
  }

  /**
   * The events of [from, to) per variant, as parts to add up: settled hours (`settled`, whose
   * rollup versions `listing` holds) from the edge-hour cache, to the millisecond; the rest
   * (recent hours) straight from the events.
   */
  private async rawRange(from: number, to: number, variant: string | undefined, budget: MaxTime, settled: ReadonlySet<number>, listing: Promise<Listed[]>): Promise<Map<string, Part>[]> {
    const pieces: Promise<Map<string, Part>[]>[] = [];
    for (let cursor = from; cursor < to; ) {
      const hour = floorTo(cursor, HOUR_MS);
      const until = Math.min(hour + HOUR_MS, to);
      if (settled.has(hour)) pieces.push(this.settledRange(hour, cursor, until, variant, budget, listing));
      else pieces.push(rawPart(this.c, new Date(cursor), new Date(until), variant, budget).then((part) => [part]));
      cursor = until;
    }
    return (await Promise.all(pieces)).flat();
  }

  /**
   * [from, to) of a settled hour, per variant, from the edge-hour cache: built (one read of the
   * hour's events) or rebuilt when the hour's rollup versions in `listing` moved.
   */
  private async settledRange(hour: number, from: number, to: number, variant: string | undefined, budget: MaxTime, listing: Promise<Listed[]>): Promise<Map<string, Part>[]> {
    const key = `${hour}|${variant ?? ""}`;
    // The versions first, then the events: a write that lands between the two moves the versions
    // again later, so the cache can be behind the events only until the next read.
    const listed = (await listing).filter((d) => isEdgeListing(d, new Set([hour])));
    const signature = listed.map((d) => `${d._id}@${d.ver}`).sort().join(";");
    let cached = this.edgeHours.get(key);
    let own = false;
    if (cached === undefined || cached.signature !== signature || Date.now() - cached.builtAt > EDGE_MAX_AGE_MS) {
      own = true;
      this.edgeHourBuilds++;
      const entry: EdgeHour = { signature, builtAt: Date.now(), size: 0, rows: rawRows(this.c, new Date(hour), new Date(hour + HOUR_MS), 1, variant, budget).then(byOffset) };
      cached = entry;
      entry.rows.then(
        (rows) => {
          entry.size = rows.imps.length + rows.clks.length;
          this.trimEdgeHours();
        },
        // A failed read (a deadline, an outage) is not kept.
        () => this.edgeHours.get(key) === entry && this.edgeHours.delete(key),
      );
      this.edgeHours.delete(key);
      this.edgeHours.set(key, entry);
      this.trimEdgeHours();
    }
    let rows: RawRows;
    try {
      rows = await cached.rows;
    } catch (error) {
      // Another call's read, stopped by that call's deadline: this call reads for itself.
      if (own) throw error;
      return this.settledRange(hour, from, to, variant, budget, listing);
    }
    const [a, b] = [from - hour, to - hour];
    const imps = rowRange(rows.imps, a, b);
    const clks = rowRange(rows.clks, a, b);
    const last = cached.lastSlice;
    let part: Map<string, Part> | undefined;
    if (last !== undefined && sameRange(last.imps, imps) && sameRange(last.clks, clks)) part = last.part;
    else {
      part = slicesOf({ imps: rows.imps.slice(...imps), clks: rows.clks.slice(...clks), numbers: rows.numbers }, () => 0).get(0);
      cached.lastSlice = { imps, clks, part };
    }
    return part === undefined ? [] : [part];
  }

  /** Oldest-inserted hours go first, past EDGE_HOURS_CACHED hours or EDGE_ROWS_CACHED rows (the newest stays). */
  private trimEdgeHours(): void {
    let rows = 0;
    for (const e of this.edgeHours.values()) rows += e.size;
    while (this.edgeHours.size > 1 && (this.edgeHours.size > EDGE_HOURS_CACHED || rows > EDGE_ROWS_CACHED)) {
      const oldest = this.edgeHours.keys().next().value!;
      rows -= this.edgeHours.get(oldest)!.size;
      this.edgeHours.delete(oldest);
    }
  }

  /** Brings the cache up to date with these documents' versions. */
  private async refresh(versions: readonly { _id: string; ver: number }[], budget: MaxTime): Promise<void> {
    const stale = versions.filter((d) => this.cache.get(d._id)?.ver !== Number(d.ver)).map((d) => d._id);
    if (stale.length === 0) return;
    // Not the applied-marker list (bookkeeping of the writers, and the bulk of a busy document),
    // nor the user registers of older versions.
    for (const doc of await rollupCollection(this.c).find({ _id: { $in: stale } }, { projection: { ap: 0, u: 0 }, ...timeLimit(budget), ...ONE_ROUND_TRIP }).toArray()) this.remember(doc._id, decode(doc));
  }

  private remember(id: string, d: Decoded): void {
    this.cache.delete(id);
    this.cache.set(id, d);
    // Oldest-inserted first: a Map iterates in insertion order, so this is a simple LRU-by-refresh.
    while (this.cache.size > this.maxCached) this.cache.delete(this.cache.keys().next().value!);
  }

  clear(): void {
    this.cache.clear();
    this.edgeHours.clear();
    this.windowSums.clear();
  }
}

/** A listed rollup version: its id, version and hour or day. */
type Listed = { _id: string; ver: number; t: Date };

/** The hours of `ranges` (raw edges of a window) settled by `now`: read through the edge-hour cache. */
function settledHours(ranges: readonly Range[], now: number): Set<number> {
  const out = new Set<number>();
  for (const [from, to] of ranges) for (let hour = floorTo(from, HOUR_MS); hour < to; hour += HOUR_MS) if (hour + HOUR_MS + EDGE_SETTLED_MS <= now) out.add(hour);
  return out;
}

/** Whether a listed version is of one of these edge hours' hourly rollups (listed for the edge cache, not summed). */
const isEdgeListing = (d: Listed, hours: ReadonlySet<number>) => d._id.startsWith("h|") && hours.has(d.t.getTime());

/** An edge hour's rows in order of their offset (`_id.k`, in ms from the hour). */
function byOffset(rows: RawRows): RawRows {
  const key = (r: Document) => Number(r._id.k);
  return { imps: rows.imps.sort((x, y) => key(x) - key(y)), clks: rows.clks.sort((x, y) => key(x) - key(y)), numbers: rows.numbers };
}

/** Where the rows (sorted by offset) with offsets in [a, b) start and end. */
function rowRange(rows: readonly Document[], a: number, b: number): [number, number] {
  const lowerBound = (x: number) => {
    let lo = 0;
    let hi = rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (Number(rows[mid]!._id.k) < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  return [lowerBound(a), lowerBound(b)];
}

const sameRange = (x: readonly [number, number], y: readonly [number, number]) => x[0] === y[0] && x[1] === y[1];

/** A stretch of a window (at most an hour or so, at its edges) straight from the events, per variant. */
async function rawPart(c: Collections, from: Date, to: Date, variant: string | undefined, budget: MaxTime): Promise<Map<string, Part>> {
  return (await rawSlices(c, from, to, undefined, variant, budget)).get(0) ?? new Map<string, Part>();
}

/**
 * Events of [from, to) per variant, in slices of `sliceMs` from `from` (slice k holds
 * [from + k * sliceMs, from + (k + 1) * sliceMs)), or in one slice (0) without `sliceMs`.
 */
async function rawSlices(c: Collections, from: Date, to: Date, sliceMs: number | undefined, variant: string | undefined, budget: MaxTime): Promise<Map<number, Map<string, Part>>> {
  return slicesOf(await rawRows(c, from, to, sliceMs, variant, budget));
}

/** What rawSlices reads: per (slice, variant, user) impression sums, per (slice, variant, user, rank) click counts, and the users' numbers. */
interface RawRows {
  imps: Document[];
  clks: Document[];
  numbers: Map<string, number>;
}

async function rawRows(c: Collections, from: Date, to: Date, sliceMs: number | undefined, variant: string | undefined, budget: MaxTime): Promise<RawRows> {
  if (from.getTime() >= to.getTime()) return { imps: [], clks: [], numbers: new Map() };
  const m: Document = { timestamp: { $gte: from, $lt: to }, ...(variant === undefined ? {} : { variant }) };
  const slice = sliceMs === undefined ? { $literal: 0 } : { $floor: { $divide: [{ $subtract: ["$timestamp", from] }, sliceMs] } };
  // At most an hour of events by time; left alone, the planner may prefer {variant: 1} and read
  // every event of the variant.
  const byTime = { hint: "timestamp_1", ...timeLimit(budget), ...ONE_ROUND_TRIP };
  const [imps, clks] = await Promise.all([
    c.impressions
      .aggregate([
        { $match: m },
        {
          $group: {
            _id: { k: slice, v: "$variant", u: "$user_id" },
            imp: { $sum: 1 },
            swc: { $sum: { $cond: [{ $eq: ["$clicked", true] }, 1, 0] } },
            nr: { $sum: { $cond: [{ $eq: ["$results_count", 0] }, 1, 0] } },
            rtSum: { $sum: "$response_time_ms" },
            rtMin: { $min: "$response_time_ms" },
            rtMax: { $max: "$response_time_ms" },
            rts: { $push: "$response_time_ms" },
            rcs: { $push: { $min: ["$results_count", RESULTS_COUNT_CAP] } },
            fcs: firstClickPush,
            lks: { $push: { $ifNull: ["$lk.k", []] } },
            co: { $sum: { $ifNull: ["$lk.o", 0] } },
          },
        },
      ], byTime)
      .toArray(),
    c.clicks.aggregate([{ $match: m }, { $group: { _id: { k: slice, v: "$variant", u: "$user_id", r: "$rank" }, n: { $sum: 1 } } }], byTime).toArray(),
  ]);
  const numbers = await userNumbers(c).resolve([...imps, ...clks].map((r) => String(r._id.u)), timeLimit(budget).maxTimeMS);
  return { imps, clks, numbers };
}

/** Parts per slice (the rows' `_id.k`, or `sliceOf` it) and variant, from rawRows' rows. */
function slicesOf({ imps, clks, numbers }: RawRows, sliceOf = (k: number) => k): Map<number, Map<string, Part>> {
  const out = new Map<number, Map<string, Part>>();
  type Building = { agg: Omit<Part, "users" | "buckets">; words: Map<number, number>; buckets: Map<number, BucketRow> };
  const slices = new Map<number, Map<string, Building>>();
  const entry = (k: number, v: string, user: string) => {
    let parts = slices.get(k);
    if (!parts) slices.set(k, (parts = new Map()));
    let e = parts.get(v);
    if (!e) parts.set(v, (e = { agg: { imp: 0, clk: 0, swc: 0, nr: 0, rkSum: 0, rtSum: 0, ranks: new Map(), resultsCounts: new Map(), rt: new Map(), fr: new Map(), ft: new Map(), sr: new Map(), co: 0 }, words: new Map(), buckets: new Map() }));
    const n = numbers.get(user)!;
    const word = Math.floor(n / WORD_BITS);
    e.words.set(word, ((e.words.get(word) ?? 0) | (1 << n % WORD_BITS)) >>> 0);
    const b = userBucket(user);
    let sums = e.buckets.get(b);
    if (!sums) e.buckets.set(b, (sums = emptyBucketRow()));
    return { e, sums };
  };
  for (const r of imps) {
    const { e, sums } = entry(sliceOf(Number(r._id.k)), String(r._id.v), String(r._id.u));
    const a = e.agg;
    a.imp += Number(r.imp);
    a.swc += Number(r.swc);
    a.nr += Number(r.nr);
    a.rtSum += Number(r.rtSum);
    a.rtMin = Math.min(a.rtMin ?? Infinity, Number(r.rtMin));
    a.rtMax = Math.max(a.rtMax ?? -Infinity, Number(r.rtMax));
    for (const ms of r.rts as number[]) {
      const k = latencyBucket(Number(ms));
      a.rt.set(k, (a.rt.get(k) ?? 0) + 1);
    }
    for (const n of r.rcs as number[]) a.resultsCounts.set(Number(n), (a.resultsCounts.get(Number(n)) ?? 0) + 1);
    const first = addPushedFirstClicks({ searchesWithResults: 0, ranks: a.fr, delays: a.ft }, r.fcs as { r: unknown; d: unknown }[]);
    for (const k of r.lks as { r: unknown; n: unknown }[][]) for (const x of k) a.sr.set(Number(x.r), (a.sr.get(Number(x.r)) ?? 0) + Number(x.n));
    a.co += Number(r.co);
    sums[0]! += Number(r.imp);
    sums[2]! += Number(r.swc);
    sums[3]! += Number(r.nr);
    sums[4]! += first.n;
    sums[5]! += first.reciprocalRanks;
  }
  for (const r of clks) {
    const { e, sums } = entry(sliceOf(Number(r._id.k)), String(r._id.v), String(r._id.u));
    const n = Number(r.n);
    const rank = Number(r._id.r);
    e.agg.clk += n;
    e.agg.rkSum += n * rank;
    e.agg.ranks.set(rank, (e.agg.ranks.get(rank) ?? 0) + n);
    sums[1]! += n;
  }
  for (const [k, parts] of slices) out.set(k, new Map([...parts].map(([v, { agg, words, buckets }]) => [v, { ...agg, users: sparseUsers(words), buckets: sparseBuckets(buckets) }])));
  return out;
}
