/**
 * Per-user rollups: for each UTC hour and day and variant, every user's totals (searches, clicks,
 * searches with a click, no-result searches, searches with results and a first click, the sum of
 * their reciprocal ranks) and a coarse histogram of the user's latencies — the per-user-per-period
 * fact table warehouse-based experiment tools keep. With them the comparison has each user's exact
 * totals over any window, which capping heavy users (winsorization), the bot rule, CUPED per user
 * and the user-level latency interval need (core/user-totals.ts): sums over 256 hashed buckets
 * cannot be capped user by user after the fact.
 *
 * How they are kept (the choice and its measured cost: docs/statistics.md):
 * writers do nothing. A period's table is built by a reader from the period's raw events, stored
 * (collection `user_rollups`, one document per period and variant, the table packed in a Binary),
 * and tagged with the version (`ver`) of the period's document in `rollups` it was built at. Every
 * write that can change a period — events stored, a search flagged clicked, a first click moved, a
 * repair — already bumps that version (rollups.ts, after the raw write), so a table whose tag is
 * the version listed now is exact; one whose tag is older is built again. The version is listed
 * before the events are read: a write landing in between bumps it again later, so a table can
 * only be one read behind (the argument interleaving-rollups.ts makes). Incrementing per-user
 * documents on every write was the alternative (not built): it would cost the write path a
 * per-user upsert per batch and user (and the exactly-once bookkeeping every rollup update
 * carries), which this design avoids entirely; its price is on the read side, where a period that
 * changed since its table was built is read raw again.
 *
 * A window is answered from parts that never overlap (as the bucket rollups: rollups.ts):
 * - raw events for its partial edge hours; an edge hour that has settled (ended over an hour ago)
 *   is read once, its events kept (in index order) and tallied per minute, cached under its
 *   rollup versions: a call takes the whole minutes from the cache and tallies the partial minute
 *   at the window's start from the kept events (the same tables a raw read gives), so a warm
 *   trailing window reads no events at all, only the listing of versions;
 * - hourly tables up to the first whole UTC day, and for days that have not settled (today, and
 *   yesterday during the first hour after midnight) — their hours settle one by one, so a live
 *   day costs one raw hour per change, not a raw day;
 * - daily tables for the whole days in between.
 * The settled part is merged once per change of its versions (a trailing window: about once an
 * hour) and cached as ready columns (the comparison's layout); each call copies them and adds the
 * live hours and the edges on top, each user's fields adding the same numbers in the same order.
 *
 * Raw-event retention: a table can only be built while its period's raw events are kept. A window
 * needing a table that is missing or out of date for a period older than the retention has no
 * per-user totals (undefined): the comparison then falls back to the uncapped buckets and says so.
 */
import { Binary, type Collection, type Document } from "mongodb";
import { reciprocalRank } from "../../core/first-click.js";
import { COARSE_LATENCY_MIN, COARSE_LATENCY_STEPS, coarseLatencyBucket, coarseShareBelow, type UserTotals } from "../../core/user-totals.js";
import type { TimeWindow } from "../../core/window.js";
import type { Collections } from "../schema/documents.js";
import { timeLimit, type MetricsFilter } from "./metrics-queries.js";
import { KEEP_EVERYTHING, type RawRetention } from "../schema/retention.js";
import { rollupCollection, rollupId } from "../schema/rollup-documents.js";
import { windowRanges } from "./window-ranges.js";
import { userNumbers } from "../schema/user-ids.js";

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** A period is settled once it ended this long ago: its hours are cached by minute, its day read as a day. */
const SETTLED_MS = HOUR_MS;
const COLLECTION = "user_rollups";
/** Raw reads of one reader at once: a first read after a bulk load builds every day of its window. */
const RAW_READS_AT_ONCE = 2;
/** Decoded tables kept in memory, by their size (bytes of their arrays). */
const TABLE_CACHE_BYTES = 48 * 1024 * 1024;
/** Settled parts of windows kept merged (a few window lengths at once, e.g. a dashboard's 7 and 30 days). */
const BODIES_CACHED = 4;
/** Settled edge hours cached by minute. */
const EDGE_HOURS_CACHED = 16;
/** Rebuilt at least this often whatever the versions say (a reset elsewhere that left none). */
const EDGE_MAX_AGE_MS = 10 * 60_000;
/** The fields of a user's row, in order. */
const WIDTH = 6;
const [I, C, S, N, F, R] = [0, 1, 2, 3, 4, 5];

type Grain = "h" | "d";
type Budget = Pick<MetricsFilter, "maxTimeMS">;

export interface UserRollupDocument {
  _id: string;
  g: Grain;
  t: Date;
  v: string;
  /** The `ver` of the period's document in `rollups` this table was built at. */
  bv: number;
  /** Users in the table. */
  n: number;
  /** The packed table (see encode). */
  data: Binary;
}

export function userRollups(c: Collections): Collection<UserRollupDocument> {
  return c.db.collection<UserRollupDocument>(COLLECTION);
}

/**
 * One period's users of one variant: their numbers (ascending), WIDTH totals per user (row-major:
 * searches, clicks, searches with a click, no-result searches, searches with results and a first
 * click, reciprocal ranks), and the coarse latency histogram as (row, bucket, searches) triples.
 */
export interface UserTable {
  ids: Uint32Array;
  rows: Float64Array;
  latRow: Uint32Array;
  latKey: Int16Array;
  latCount: Uint32Array;
}

const tableBytes = (t: UserTable) => t.ids.byteLength + t.rows.byteLength + t.latRow.byteLength + t.latKey.byteLength + t.latCount.byteLength;

/** [version 1, users, latency triples] then the arrays, each at an 8-byte boundary. */
function encode(t: UserTable): Binary {
  const n = t.ids.length;
  const m = t.latRow.length;
  const pad = (x: number) => Math.ceil(x / 8) * 8;
  const sizes = [16, pad(n * 4), n * WIDTH * 8, pad(m * 4), pad(m * 2), pad(m * 4)];
  const buffer = new ArrayBuffer(sizes.reduce((a, b) => a + b, 0));
  const header = new Uint32Array(buffer, 0, 4);
  header.set([1, n, m, 0]);
  let o = 16;
  new Uint32Array(buffer, o, n).set(t.ids);
  o += sizes[1]!;
  new Float64Array(buffer, o, n * WIDTH).set(t.rows);
  o += sizes[2]!;
  new Uint32Array(buffer, o, m).set(t.latRow);
  o += sizes[3]!;
  new Int16Array(buffer, o, m).set(t.latKey);
  o += sizes[4]!;
  new Uint32Array(buffer, o, m).set(t.latCount);
  return new Binary(new Uint8Array(buffer));
}

function decode(b: Binary): UserTable {
  // A copy at offset 0, so every array is aligned.
  const bytes = new Uint8Array(b.buffer.byteLength);
  bytes.set(b.buffer);
  const buffer = bytes.buffer;
  const [version, n, m] = new Uint32Array(buffer, 0, 3);
  if (version !== 1) throw new Error(`user rollup table of unknown version ${version}`);
  const pad = (x: number) => Math.ceil(x / 8) * 8;
  let o = 16;
  const ids = new Uint32Array(buffer, o, n!);
  o += pad(n! * 4);
  const rows = new Float64Array(buffer, o, n! * WIDTH);
  o += n! * WIDTH * 8;
  const latRow = new Uint32Array(buffer, o, m!);
  o += pad(m! * 4);
  const latKey = new Int16Array(buffer, o, m!);
  o += pad(m! * 2);
  const latCount = new Uint32Array(buffer, o, m!);
  return { ids, rows, latRow, latKey, latCount };
}

/** Builds tables from raw rows: per user, the six totals and (bucket -> searches). */
class TableBuilder {
  private readonly users = new Map<number, { row: number[]; lat: Map<number, number> }>();

  user(n: number) {
    let u = this.users.get(n);
    if (!u) this.users.set(n, (u = { row: new Array<number>(WIDTH).fill(0), lat: new Map() }));
    return u;
  }

  build(): UserTable {
    const numbers = [...this.users.keys()].sort((a, b) => a - b);
    const rows = new Float64Array(numbers.length * WIDTH);
    const latRow: number[] = [];
    const latKey: number[] = [];
    const latCount: number[] = [];
    numbers.forEach((n, r) => {
      const u = this.users.get(n)!;
      rows.set(u.row, r * WIDTH);
      for (const [k, count] of [...u.lat].sort((a, b) => a[0] - b[0])) {
        latRow.push(r);
        latKey.push(k);
        latCount.push(count);
      }
    });
    return { ids: Uint32Array.from(numbers), rows, latRow: Uint32Array.from(latRow), latKey: Int16Array.from(latKey), latCount: Uint32Array.from(latCount) };
  }
}

/**
 * The raw events of [from, to) (one variant or all) as tables per slice of `sliceMs` from `from`
 * (slice start -> variant -> table). Two aggregations by (slice, variant, user) on the timestamp index.
 */
export async function rawUserTables(
  c: Collections,
  from: number,
  to: number | undefined,
  sliceMs: number,
  variant: string | undefined,
  budget: Budget,
  origin = from,
): Promise<Map<number, Map<string, UserTable>>> {
  const out = new Map<number, Map<string, UserTable>>();
  if (to !== undefined && from >= to) return out;
  const m: Document = { timestamp: to === undefined ? { $gte: new Date(from) } : { $gte: new Date(from), $lt: new Date(to) }, ...(variant === undefined ? {} : { variant }) };
  const slice = { $floor: { $divide: [{ $subtract: ["$timestamp", new Date(origin)] }, sliceMs] } };
  const byTime = { hint: "timestamp_1", allowDiskUse: true, ...timeLimit(budget) };
  const firstClicked = { $and: [{ $gt: ["$results_count", 0] }, { $ne: [{ $type: "$fc_t" }, "missing"] }] };
  const [imps, clks] = await Promise.all([
    c.impressions
      .aggregate<{ _id: { k: number; v: string; u: string }; i: number; s: number; n: number; ranks: number[]; rts: number[] }>(
        [
          { $match: m },
          {
            $group: {
              _id: { k: slice, v: "$variant", u: "$user_id" },
              i: { $sum: 1 },
              s: { $sum: { $cond: [{ $eq: ["$clicked", true] }, 1, 0] } },
              n: { $sum: { $cond: [{ $eq: ["$results_count", 0] }, 1, 0] } },
              ranks: { $push: { $cond: [firstClicked, "$fc_r", "$$REMOVE"] } },
              rts: { $push: "$response_time_ms" },
            },
          },
        ],
        byTime,
      )
      .toArray(),
    c.clicks.aggregate<{ _id: { k: number; v: string; u: string }; n: number }>([{ $match: m }, { $group: { _id: { k: slice, v: "$variant", u: "$user_id" }, n: { $sum: 1 } } }], byTime).toArray(),
  ]);
  const numbers = await userNumbers(c).resolve([...imps, ...clks].map((r) => String(r._id.u)), timeLimit(budget).maxTimeMS);
  const { builders, builder } = sliceBuilders();
  for (const r of imps) {
    const u = builder(origin + Number(r._id.k) * sliceMs, String(r._id.v)).user(numbers.get(String(r._id.u))!);
    u.row[I]! += Number(r.i);
    u.row[S]! += Number(r.s);
    u.row[N]! += Number(r.n);
    u.row[F]! += r.ranks.length;
    for (const rank of r.ranks) u.row[R]! += reciprocalRank(Number(rank));
    for (const ms of r.rts) {
      const k = coarseLatencyBucket(Number(ms));
      u.lat.set(k, (u.lat.get(k) ?? 0) + 1);
    }
  }
  for (const r of clks) builder(origin + Number(r._id.k) * sliceMs, String(r._id.v)).user(numbers.get(String(r._id.u))!).row[C]! += Number(r.n);
  for (const [k, slices] of builders) out.set(k, new Map([...slices].map(([v, b]) => [v, b.build()])));
  return out;
}

/**
 * A stretch of raw events in the order the timestamp index gives them (the order rawUserTables'
 * groups see them in), packed in columns (a cached edge hour holds thousands): impressions with
 * the fields a table needs, computed by the engine exactly as rawUserTables' $group computes
 * them, and clicks; variants as indexes into `variants`, users as their numbers.
 */
export interface RawEvents {
  variants: string[];
  imp: { t: Float64Array; v: Uint16Array; u: Uint32Array; s: Uint8Array; n: Uint8Array; f: Uint8Array; r: Float64Array; rt: Float64Array };
  clk: { t: Float64Array; v: Uint16Array; u: Uint32Array };
}

export async function rawEvents(c: Collections, from: number, to: number, variant: string | undefined, budget: Budget): Promise<RawEvents> {
  const m: Document = { timestamp: { $gte: new Date(from), $lt: new Date(to) }, ...(variant === undefined ? {} : { variant }) };
  const byTime = { hint: "timestamp_1", ...timeLimit(budget) };
  const firstClicked = { $and: [{ $gt: ["$results_count", 0] }, { $ne: [{ $type: "$fc_t" }, "missing"] }] };
  const [imp, clk] = await Promise.all([
    c.impressions
      .aggregate<{ t: Date; v: string; u: string; s: number; n: number; r?: number; rt: number }>(
        [
          { $match: m },
          {
            $project: {
              _id: 0,
              t: "$timestamp",
              v: "$variant",
              u: "$user_id",
              s: { $cond: [{ $eq: ["$clicked", true] }, 1, 0] },
              n: { $cond: [{ $eq: ["$results_count", 0] }, 1, 0] },
              r: { $cond: [firstClicked, "$fc_r", "$$REMOVE"] },
              rt: "$response_time_ms",
            },
          },
        ],
        byTime,
      )
      .toArray(),
    c.clicks.aggregate<{ t: Date; v: string; u: string }>([{ $match: m }, { $project: { _id: 0, t: "$timestamp", v: "$variant", u: "$user_id" } }], byTime).toArray(),
  ]);
  const numbers = await userNumbers(c).resolve([...imp, ...clk].map((e) => String(e.u)), timeLimit(budget).maxTimeMS);
  const variants: string[] = [];
  const variantIndex = new Map<string, number>();
  const vOf = (v: string) => {
    let k = variantIndex.get(v);
    if (k === undefined) variantIndex.set(v, (k = variants.push(v) - 1));
    return k;
  };
  const out: RawEvents = {
    variants,
    imp: { t: new Float64Array(imp.length), v: new Uint16Array(imp.length), u: new Uint32Array(imp.length), s: new Uint8Array(imp.length), n: new Uint8Array(imp.length), f: new Uint8Array(imp.length), r: new Float64Array(imp.length), rt: new Float64Array(imp.length) },
    clk: { t: new Float64Array(clk.length), v: new Uint16Array(clk.length), u: new Uint32Array(clk.length) },
  };
  imp.forEach((e, i) => {
    const x = out.imp;
    x.t[i] = e.t.getTime();
    x.v[i] = vOf(String(e.v));
    x.u[i] = numbers.get(String(e.u))!;
    x.s[i] = Number(e.s);
    x.n[i] = Number(e.n);
    if (e.r !== undefined && e.r !== null) {
      x.f[i] = 1;
      x.r[i] = Number(e.r);
    }
    x.rt[i] = Number(e.rt);
  });
  clk.forEach((e, i) => {
    out.clk.t[i] = e.t.getTime();
    out.clk.v[i] = vOf(String(e.v));
    out.clk.u[i] = numbers.get(String(e.u))!;
  });
  return out;
}

/** Table builders by slice start and variant, made on first use. */
function sliceBuilders(): { builders: Map<number, Map<string, TableBuilder>>; builder: (k: number, v: string) => TableBuilder } {
  const builders = new Map<number, Map<string, TableBuilder>>();
  const builder = (k: number, v: string) => {
    let slices = builders.get(k);
    if (!slices) builders.set(k, (slices = new Map()));
    let b = slices.get(v);
    if (!b) slices.set(v, (b = new TableBuilder()));
    return b;
  };
  return { builders, builder };
}

/**
 * rawUserTables over [from, to) computed from events already read (a superset, in index order):
 * the same tables, value for value — each user's sums add the same numbers in the same order.
 */
export function tablesFromEvents(events: RawEvents, from: number, to: number, sliceMs: number, origin = from): Map<number, Map<string, UserTable>> {
  const out = new Map<number, Map<string, UserTable>>();
  if (from >= to) return out;
  const { builders, builder } = sliceBuilders();
  const sliceOf = (t: number) => origin + Math.floor((t - origin) / sliceMs) * sliceMs;
  const { imp, clk, variants } = events;
  for (let i = 0; i < imp.t.length; i++) {
    const t = imp.t[i]!;
    if (!(t >= from && t < to)) continue;
    const u = builder(sliceOf(t), variants[imp.v[i]!]!).user(imp.u[i]!);
    u.row[I]! += 1;
    u.row[S]! += imp.s[i]!;
    u.row[N]! += imp.n[i]!;
    if (imp.f[i]) {
      u.row[F]! += 1;
      u.row[R]! += reciprocalRank(imp.r[i]!);
    }
    const k = coarseLatencyBucket(imp.rt[i]!);
    u.lat.set(k, (u.lat.get(k) ?? 0) + 1);
  }
  for (let i = 0; i < clk.t.length; i++) {
    const t = clk.t[i]!;
    if (t >= from && t < to) builder(sliceOf(t), variants[clk.v[i]!]!).user(clk.u[i]!).row[C]! += 1;
  }
  for (const [k, slices] of builders) out.set(k, new Map([...slices].map(([v, b]) => [v, b.build()])));
  return out;
}

/**
 * Sums tables into one set of users per variant, keeping what the bot rule needs (searches per
 * user per UTC day) and the latency triples. An accumulator made `over` another (the cached
 * settled part of a window) adds a call's live hours and edges without touching it.
 */
export class Accumulator {
  private readonly index = new Map<number, number>();
  /** Users (numbers) by row, `n` of them (the arrays have room for more). */
  private ids: Uint32Array;
  private n: number;
  /** The WIDTH totals, one column per field (what the comparison reads), row by row as `ids`. */
  private cols: Float64Array[];
  /** Most searches in one whole day from daily tables; the base's until a daily table is added here. */
  private dayMax: Float64Array;
  private ownDayMax: boolean;
  /** Days made of hours and edges (this accumulator's own): day start -> row -> searches. */
  private readonly partialDays = new Map<number, Map<number, number>>();
  /** Latency triples added here, rows in this accumulator's numbering. */
  private readonly latency: { row: Uint32Array; key: Int16Array; count: Uint32Array }[] = [];
  /** Searches below and in the last coarse bucket asked, per row (see below). */
  private lastSplit: { bucket: number; under: Float64Array; at: Float64Array } | undefined;

  /**
   * Made `over` a base (a window's cached settled part), it starts from copies of the base's
   * columns (ready: no per-call conversion of rows) and adds only the call's live hours and edges.
   */
  constructor(private readonly base?: Accumulator) {
    const room = base ? base.n + 1024 : 1024;
    const copy = (a: Float64Array | Uint32Array, length: number) => {
      const out = new (a.constructor as Float64ArrayConstructor)(room);
      out.set(a.subarray(0, length));
      return out;
    };
    this.n = base ? base.n : 0;
    this.ids = base ? (copy(base.ids, base.n) as unknown as Uint32Array) : new Uint32Array(room);
    this.cols = base ? base.cols.map((c) => copy(c, base.n) as Float64Array) : Array.from({ length: WIDTH }, () => new Float64Array(room));
    this.dayMax = base ? base.dayMax : new Float64Array(room);
    this.ownDayMax = base === undefined;
  }

  get size(): number {
    return this.n;
  }

  private grow(): void {
    const room = this.ids.length * 2;
    const grown = <T extends Float64Array | Uint32Array>(a: T): T => {
      const out = new (a.constructor as Float64ArrayConstructor)(room) as unknown as T;
      out.set(a);
      return out;
    };
    this.ids = grown(this.ids);
    this.cols = this.cols.map(grown);
    if (this.ownDayMax) this.dayMax = grown(this.dayMax);
  }

  private row(n: number): number {
    let r = this.index.get(n) ?? this.base?.index.get(n);
    if (r === undefined) {
      r = this.n++;
      if (r >= this.ids.length) this.grow();
      this.index.set(n, r);
      this.ids[r] = n;
    }
    return r;
  }

  /** Adds a table of grain `g` starting at `t` (an edge or a minute counts as part of its day). */
  add(table: UserTable, g: Grain | "part", t: number): void {
    const map = new Uint32Array(table.ids.length);
    let partial: Map<number, number> | undefined;
    if (g !== "d") {
      const day = Math.floor(t / DAY_MS) * DAY_MS;
      partial = this.partialDays.get(day);
      if (!partial) this.partialDays.set(day, (partial = new Map()));
    } else if (!this.ownDayMax) {
      const own = new Float64Array(this.ids.length);
      own.set(this.dayMax.subarray(0, Math.min(this.dayMax.length, own.length)));
      this.dayMax = own;
      this.ownDayMax = true;
    }
    for (let j = 0; j < table.ids.length; j++) {
      const r = this.row(table.ids[j]!);
      map[j] = r;
      const p = j * WIDTH;
      const cols = this.cols;
      for (let k = 0; k < WIDTH; k++) cols[k]![r]! += table.rows[p + k]!;
      const searches = table.rows[p + I]!;
      if (partial === undefined) {
        if (searches > this.dayMax[r]!) this.dayMax[r] = searches;
      } else partial.set(r, (partial.get(r) ?? 0) + searches);
    }
    if (table.latRow.length > 0) {
      const row = new Uint32Array(table.latRow.length);
      for (let e = 0; e < row.length; e++) row[e] = map[table.latRow[e]!]!;
      this.latency.push({ row, key: table.latKey, count: table.latCount });
    }
    this.lastSplit = undefined;
  }

  /**
   * Per row (this accumulator's numbering, `size` rows), searches faster than `ms`: those in
   * coarse buckets below the one holding `ms`, plus its share of that bucket (coarseShareBelow).
   * The two per-bucket vectors are kept for the last bucket asked: the p95 moves a little with
   * every call (the window's edge), its bucket (9% wide) rarely, so a call costs one pass over the
   * users, not over every latency triple.
   */
  private below(ms: number, size: number): Float64Array {
    const position = ms > 0 ? Math.log2(ms) * COARSE_LATENCY_STEPS : -Infinity;
    const bucket = Math.max(COARSE_LATENCY_MIN, Math.floor(position));
    const share = bucket === COARSE_LATENCY_MIN ? coarseShareBelow(COARSE_LATENCY_MIN, ms) : position - bucket;
    const { under, at } = this.split(bucket);
    const out = new Float64Array(size);
    const n = Math.min(size, under.length);
    for (let r = 0; r < n; r++) out[r] = under[r]! + share * at[r]!;
    return out;
  }

  /** Per row, searches in coarse buckets below `bucket`, and in `bucket` (cached for the last bucket). */
  private split(bucket: number): { under: Float64Array; at: Float64Array } {
    if (this.lastSplit?.bucket !== bucket) {
      const base = this.base?.split(bucket);
      const under = new Float64Array(this.n);
      const at = new Float64Array(this.n);
      if (base) {
        under.set(base.under.subarray(0, Math.min(base.under.length, under.length)));
        at.set(base.at.subarray(0, Math.min(base.at.length, at.length)));
      }
      for (const part of this.latency) {
        for (let e = 0; e < part.row.length; e++) {
          const k = part.key[e]!;
          if (k < bucket) under[part.row[e]!]! += part.count[e]!;
          else if (k === bucket) at[part.row[e]!]! += part.count[e]!;
        }
      }
      this.lastSplit = { bucket, under, at };
    }
    return this.lastSplit;
  }

  /** Searches per user per UTC day, summed over this accumulator's parts and its base's. */
  private partialDaysAll(): Map<number, Map<number, number>> {
    const base = this.base?.partialDaysAll() ?? new Map<number, Map<number, number>>();
    if (this.partialDays.size === 0) return base;
    const out = new Map(base);
    for (const [day, own] of this.partialDays) {
      const merged = new Map(base.get(day) ?? []);
      for (const [r, n] of own) merged.set(r, (merged.get(r) ?? 0) + n);
      out.set(day, merged);
    }
    return out;
  }

  totals(): UserTotals {
    const n = this.n;
    let maxDay: Float64Array | undefined;
    // Only the bot rule reads it: merged on first use.
    const maxDaySearches = () => {
      if (maxDay === undefined) {
        maxDay = new Float64Array(n);
        maxDay.set(this.dayMax.subarray(0, Math.min(n, this.dayMax.length)));
        for (const m of this.partialDaysAll().values()) for (const [r, searches] of m) if (searches > maxDay[r]!) maxDay[r] = searches;
      }
      return maxDay;
    };
    const col = (k: number) => this.cols[k]!.subarray(0, n);
    return {
      ids: this.ids.subarray(0, n),
      impressions: col(I),
      clicks: col(C),
      searchesWithClicks: col(S),
      noResults: col(N),
      firstClicked: col(F),
      reciprocalRanks: col(R),
      get maxDaySearches() {
        return maxDaySearches();
      },
      latencyBelow: (ms) => this.below(ms, n),
    };
  }
}

/** One listed period: its id in `rollups` (and here), grain, start, variant and version. */
interface Listed {
  _id: string;
  g: Grain;
  t: number;
  v: string;
  ver: number;
}

interface Body {
  signature: string;
  variants: Map<string, Accumulator>;
}

interface EdgeHour {
  signature: string;
  builtAt: number;
  /** The hour's events (for the partial minutes at the window's edge) and its tables per minute. */
  minutes: Promise<{ events: RawEvents; minutes: Map<number, Map<string, UserTable>> }>;
}

/** Per variant, its users' totals over the window; undefined when some period's table cannot be built (raw events expired). */
export type UserWindow = Map<string, UserTotals>;

/**
 * Reads per-user totals for windows (see the file comment), building what is missing. One per store.
 */
export class UserRollupReader {
  private readonly tables = new Map<string, { key: string; table: UserTable; bytes: number }>();
  private tableBytes = 0;
  private readonly building = new Map<string, Promise<Map<string, UserTable>>>();
  private readonly bodies = new Map<string, Body>();
  private readonly edgeHours = new Map<string, EdgeHour>();
  private ready: Promise<void> | undefined;
  private rawReads = 0;
  private readonly waiting: (() => void)[] = [];
  /** Periods built from raw events by this reader, and settled parts merged (for tests and the notes' measurements). */
  builds = { h: 0, d: 0, bodies: 0, edgeHours: 0 };

  constructor(
    private readonly c: Collections,
    private readonly retention: RawRetention = KEEP_EVERYTHING,
  ) {}

  clear(): void {
    this.tables.clear();
    this.tableBytes = 0;
    this.bodies.clear();
    this.edgeHours.clear();
  }

  /** Per variant, every user's totals over the window (a variant filter reads only that variant). */
  async window(window: Pick<TimeWindow, "start" | "until">, variant: string | undefined, budget: Budget = {}): Promise<UserWindow | undefined> {
    await this.init();
    const now = Date.now();
    const start = window.start.getTime();
    const until = window.until?.getTime();
    const ranges = windowRanges(start, until);
    // Whole days that have settled are read as days; the days after them (today) by the hour.
    const settledDays = Math.floor((now - SETTLED_MS) / DAY_MS) * DAY_MS;
    const hours: [number, number | undefined][] = ranges.hours.map(([a, b]) => [a, b]);
    const days: [number, number][] = [];
    for (const [from, to] of ranges.days) {
      const dayEnd = Math.min(to ?? Infinity, settledDays);
      if (from < dayEnd) days.push([from, dayEnd]);
      const hourFrom = Math.max(from, settledDays);
      if (to === undefined || hourFrom < to) hours.push([hourFrom, to]);
    }
    const edgeHours = [...new Set(ranges.raw.flatMap(([from, to]) => hoursOf(from, to)))];
    const v = variant === undefined ? {} : { v: variant };
    const range = (from: number, to: number | undefined) => (to === undefined ? { $gte: new Date(from) } : { $gte: new Date(from), $lt: new Date(to) });
    const grains: Document[] = [
      ...hours.map(([from, to]) => ({ g: "h", t: range(from, to), ...v })),
      ...days.map(([from, to]) => ({ g: "d", t: range(from, to), ...v })),
      ...edgeHours.map((h) => ({ g: "h", t: new Date(h), ...v })),
    ];
    const edgeSet = new Set(edgeHours);
    // Edge hours are never among the whole hours (those start at the first hour boundary after the start, and end at the last before the end).
    const isEdge = (d: Listed) => d.g === "h" && edgeSet.has(d.t);
    const listing = rollupCollection(this.c)
      .find({ $or: grains }, { projection: { _id: 0, g: 1, t: 1, v: 1, ver: 1 }, ...timeLimit(budget) })
      .toArray()
      .then((rows) => rows.map((d): Listed => ({ _id: rollupId(d.g as Grain, d.t.getTime(), d.v), g: d.g as Grain, t: d.t.getTime(), v: d.v, ver: Number(d.ver) })));
    // The edges' raw reads start now, beside the listing (only their minute caches wait for it).
    const edgesRead = Promise.all(ranges.raw.map(([from, to]) => this.edge(from, to, variant, listing.then((l) => l.filter(isEdge)), budget)));
    edgesRead.catch(() => undefined);
    const listed = await listing;
    const periods = listed.filter((d) => !isEdge(d));
    const settled = (d: Listed) => d.t + (d.g === "h" ? HOUR_MS : DAY_MS) + SETTLED_MS <= now;
    const stable = periods.filter(settled);
    const live = periods.filter((d) => !settled(d));
    const [body, liveTables] = await Promise.all([this.body(stable, variant ?? "", budget), this.tablesOf(live, budget)]);
    if (body === undefined || liveTables === undefined) return undefined;
    const edges = await edgesRead;
    const out = new Map<string, Accumulator>();
    const into = (v: string) => {
      let a = out.get(v);
      if (!a) out.set(v, (a = new Accumulator(body.variants.get(v))));
      return a;
    };
    for (const v of body.variants.keys()) into(v);
    live.forEach((d, k) => into(d.v).add(liveTables[k]!, "h", d.t));
    for (const edge of edges) for (const { t, tables } of edge) for (const [v, table] of tables) into(v).add(table, "part", t);
    return new Map([...out].map(([v, a]) => [v, a.totals()]));
  }

  /** The settled periods merged per variant, cached under their versions. */
  private async body(stable: readonly Listed[], key: string, budget: Budget): Promise<Body | undefined> {
    const signature = stable.map((d) => `${d._id}@${d.ver}`).sort().join(";");
    // Keyed by the signature: windows of different lengths (a dashboard's 7 and 30 days) keep their own.
    const cacheKey = `${key}|${signature}`;
    const cached = this.bodies.get(cacheKey);
    if (cached !== undefined) {
      this.bodies.delete(cacheKey);
      this.bodies.set(cacheKey, cached);
      return cached;
    }
    const tables = await this.tablesOf(stable, budget);
    if (tables === undefined) return undefined;
    this.builds.bodies++;
    const variants = new Map<string, Accumulator>();
    stable.forEach((d, k) => {
      let a = variants.get(d.v);
      if (!a) variants.set(d.v, (a = new Accumulator()));
      a.add(tables[k]!, d.g, d.t);
    });
    const body = { signature, variants };
    this.bodies.set(cacheKey, body);
    while (this.bodies.size > BODIES_CACHED) this.bodies.delete(this.bodies.keys().next().value!);
    return body;
  }

  /** Whether a period's raw events are all still kept (so its table can be built). */
  private buildable(d: Pick<Listed, "t">, now: number): boolean {
    const cutoff = this.retention.expiredBefore(now);
    return cutoff === undefined || d.t >= cutoff.getTime();
  }

  /** Each listed period's table as of its listed version: cached, stored, or built; undefined if one cannot be. */
  private async tablesOf(listed: readonly Listed[], budget: Budget): Promise<UserTable[] | undefined> {
    const out: (UserTable | undefined)[] = listed.map((d) => {
      const cached = this.tables.get(d._id);
      return cached?.key === `${d.ver}` ? cached.table : undefined;
    });
    const missing = listed.filter((_, k) => out[k] === undefined);
    if (missing.length > 0) {
      const stored = new Map<string, UserRollupDocument>();
      for (let i = 0; i < missing.length; i += 500) {
        const docs = await userRollups(this.c)
          .find({ _id: { $in: missing.slice(i, i + 500).map((d) => d._id) } }, timeLimit(budget))
          .toArray();
        for (const doc of docs) stored.set(doc._id, doc);
      }
      const now = Date.now();
      const toBuild = missing.filter((d) => stored.get(d._id)?.bv !== d.ver);
      if (toBuild.some((d) => !this.buildable(d, now))) return undefined;
      // Periods to build, all variants of a period in one raw read.
      const periods = new Map<string, { g: Grain; t: number }>();
      for (const d of toBuild) periods.set(`${d.g}|${d.t}`, { g: d.g, t: d.t });
      const built = new Map(await Promise.all([...periods].map(async ([k, p]) => [k, await this.build(p.g, p.t, toBuild.filter((d) => d.g === p.g && d.t === p.t), budget)] as const)));
      listed.forEach((d, k) => {
        if (out[k] !== undefined) return;
        const doc = stored.get(d._id);
        const table = doc?.bv === d.ver ? decode(doc.data) : (built.get(`${d.g}|${d.t}`)?.get(d.v) ?? emptyTable());
        out[k] = table;
        this.remember(d._id, `${d.ver}`, table);
      });
    }
    return out as UserTable[];
  }

  /** Builds a period's tables from its raw events (every variant at once) and stores those listed, each if its version has not moved. */
  private build(g: Grain, t: number, listed: readonly Listed[], budget: Budget): Promise<Map<string, UserTable>> {
    const key = `${g}|${t}|${listed.map((d) => `${d.v}@${d.ver}`).sort().join(",")}`;
    let pending = this.building.get(key);
    if (!pending) {
      pending = (async () => {
        this.builds[g]++;
        const span = g === "h" ? HOUR_MS : DAY_MS;
        const tables = (await this.raw(t, t + span, span, undefined, budget)).get(t) ?? new Map<string, UserTable>();
        await Promise.all(listed.map((d) => this.store(d, tables.get(d.v) ?? emptyTable())));
        return tables;
      })().finally(() => this.building.delete(key));
      this.building.set(key, pending);
    }
    return pending;
  }

  /** Keeps a built table unless a newer one is there; one too large for a document is not kept (built again when needed). */
  private async store(d: Listed, table: UserTable): Promise<void> {
    const data = encode(table);
    if (data.buffer.byteLength > 15 * 1024 * 1024) return;
    await userRollups(this.c)
      .updateOne({ _id: d._id, $or: [{ bv: { $lt: d.ver } }, { bv: { $exists: false } }] }, { $set: { g: d.g, t: new Date(d.t), v: d.v, bv: d.ver, n: table.ids.length, data } }, { upsert: true })
      .catch((error: { code?: number }) => {
        // Another reader stored this version or a newer one first.
        if (error.code !== 11000) throw error;
      });
  }

  private remember(id: string, key: string, table: UserTable): void {
    const old = this.tables.get(id);
    if (old) this.tableBytes -= old.bytes;
    this.tables.delete(id);
    const bytes = tableBytes(table);
    this.tables.set(id, { key, table, bytes });
    this.tableBytes += bytes;
    while (this.tableBytes > TABLE_CACHE_BYTES && this.tables.size > 1) {
      const [first, entry] = this.tables.entries().next().value!;
      this.tables.delete(first);
      this.tableBytes -= entry.bytes;
    }
  }

  /**
   * A window's partial edge [from, to) as tables to add (with the start of what each covers): whole
   * minutes of a settled hour from its minute cache, the rest straight from the events.
   */
  private async edge(from: number, to: number, variant: string | undefined, listed: Promise<readonly Listed[]>, budget: Budget): Promise<{ t: number; tables: Map<string, UserTable> }[]> {
    const parts: Promise<{ t: number; tables: Map<string, UserTable> }[]>[] = [];
    const asParts = (m: Map<number, Map<string, UserTable>>) => [...m].map(([t, tables]) => ({ t, tables }));
    const raw = (a: number, b: number) => parts.push(this.raw(a, b, b - a, variant, budget).then(asParts));
    for (let cursor = from; cursor < to; ) {
      const hour = Math.floor(cursor / HOUR_MS) * HOUR_MS;
      const until = Math.min(hour + HOUR_MS, to);
      const [firstMinute, endMinute] = [Math.ceil(cursor / MINUTE_MS) * MINUTE_MS, Math.floor(until / MINUTE_MS) * MINUTE_MS];
      if (hour + HOUR_MS + SETTLED_MS <= Date.now()) {
        // A settled hour: its events and minutes are cached (under its versions), so the partial
        // minutes are taken from the cached events, not read again (the same tables as a raw read).
        const [a, b] = [cursor, until];
        parts.push(
          listed.then((l) => this.minutesOf(hour, variant, l.filter((d) => d.t === hour), budget)).then(({ events, minutes }) => {
            const out: { t: number; tables: Map<string, UserTable> }[] = [];
            if (firstMinute >= endMinute) return asParts(tablesFromEvents(events, a, b, b - a));
            if (a < firstMinute) out.push(...asParts(tablesFromEvents(events, a, firstMinute, firstMinute - a)));
            for (let m = firstMinute; m < endMinute; m += MINUTE_MS) {
              const tables = minutes.get(m);
              if (tables !== undefined) out.push({ t: m, tables });
            }
            if (endMinute < b) out.push(...asParts(tablesFromEvents(events, endMinute, b, b - endMinute)));
            return out;
          }),
        );
      } else raw(cursor, until);
      cursor = until;
    }
    return (await Promise.all(parts)).flat();
  }

  /** A settled hour's events and tables per minute, cached under the hour's rollup versions. */
  private async minutesOf(hour: number, variant: string | undefined, listed: readonly Listed[], budget: Budget): Promise<{ events: RawEvents; minutes: Map<number, Map<string, UserTable>> }> {
    const key = `${hour}|${variant ?? ""}`;
    const signature = listed.map((d) => `${d._id}@${d.ver}`).sort().join(";");
    const cached = this.edgeHours.get(key);
    if (cached !== undefined && cached.signature === signature && Date.now() - cached.builtAt <= EDGE_MAX_AGE_MS) {
      try {
        return await cached.minutes;
      } catch {
        // Another call's read, stopped by that call's deadline: read here.
      }
    }
    this.builds.edgeHours++;
    const minutes = (async () => {
      const events = await this.rawEventsOf(hour, hour + HOUR_MS, variant, budget);
      return { events, minutes: tablesFromEvents(events, hour, hour + HOUR_MS, MINUTE_MS) };
    })();
    const entry = { signature, builtAt: Date.now(), minutes };
    this.edgeHours.delete(key);
    this.edgeHours.set(key, entry);
    minutes.catch(() => this.edgeHours.get(key) === entry && this.edgeHours.delete(key));
    while (this.edgeHours.size > EDGE_HOURS_CACHED) this.edgeHours.delete(this.edgeHours.keys().next().value!);
    return minutes;
  }

  /** Raw events, taking a turn among the raw reads as raw() does. */
  private async rawEventsOf(from: number, to: number, variant: string | undefined, budget: Budget): Promise<RawEvents> {
    if (this.rawReads >= RAW_READS_AT_ONCE) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.rawReads++;
    try {
      return await rawEvents(this.c, from, to, variant, budget);
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.rawReads--;
    }
  }

  /** Raw tables, at most RAW_READS_AT_ONCE reads at a time (a finished read hands its turn to the next). */
  private async raw(from: number, to: number, sliceMs: number, variant: string | undefined, budget: Budget): Promise<Map<number, Map<string, UserTable>>> {
    if (this.rawReads >= RAW_READS_AT_ONCE) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.rawReads++;
    try {
      return await rawUserTables(this.c, from, to, sliceMs, variant, budget);
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.rawReads--;
    }
  }

  private init(): Promise<void> {
    this.ready ??= userRollups(this.c)
      .createIndex({ g: 1, t: 1, v: 1 }, { name: "grain_time_variant" })
      .then(() => undefined)
      .catch((error: unknown) => {
        this.ready = undefined;
        throw error;
      });
    return this.ready;
  }
}

const emptyTable = (): UserTable => ({ ids: new Uint32Array(0), rows: new Float64Array(0), latRow: new Uint32Array(0), latKey: new Int16Array(0), latCount: new Uint32Array(0) });

/** The UTC hours that [from, to) touches. */
function hoursOf(from: number, to: number): number[] {
  const out: number[] = [];
  for (let h = Math.floor(from / HOUR_MS) * HOUR_MS; h < to; h += HOUR_MS) out.push(h);
  return out;
}

/**
 * The per-user totals of a window straight from the events (the reference the rollups are
 * checked against, and the raw metrics source): one read split by UTC day, summed per user.
 */
export async function rawUserWindow(c: Collections, window: Pick<TimeWindow, "start" | "until">, variant: string | undefined, budget: Budget = {}): Promise<UserWindow> {
  const start = window.start.getTime();
  const byDay = await rawUserTables(c, start, window.until?.getTime(), DAY_MS, variant, budget, Math.floor(start / DAY_MS) * DAY_MS);
  const out = new Map<string, Accumulator>();
  for (const [t, tables] of byDay) {
    for (const [v, table] of tables) {
      let a = out.get(v);
      if (!a) out.set(v, (a = new Accumulator()));
      a.add(table, "d", t);
    }
  }
  return new Map([...out].map(([v, a]) => [v, a.totals()]));
}
