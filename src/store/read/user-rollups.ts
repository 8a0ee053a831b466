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
 * repair — already bumps that version (rollups/rollup-delta.ts, after the raw write), so a table whose tag is
 * the version listed now is exact; one whose tag is older is built again. The version is listed
 * before the events are read: a write landing in between bumps it again later, so a table can
 * only be one read behind (the argument interleaving-rollups.ts makes). Incrementing per-user
 * documents on every write was the alternative (not built): it would cost the write path a
 * per-user upsert per batch and user (and the exactly-once bookkeeping every rollup update
 * carries), which this design avoids entirely; its price is on the read side, where a period that
 * changed since its table was built is read raw again.
 *
 * A window is answered from parts that never overlap (as the bucket rollups: rollup-reader.ts):
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
import type { TimeWindow } from "../../core/window.js";
import type { Collections } from "../schema/documents.js";
import { timeLimit } from "./metrics-filter.js";
import { KEEP_EVERYTHING, type RawRetention } from "../schema/retention.js";
import { DAY_MS, HOUR_MS, rollupId } from "../schema/rollup-documents.js";
import { EDGE_SETTLED_MS, hoursOf, timeRange, windowRanges } from "./window-ranges.js";
import { rollupListing, type ListingClause } from "./rollup-listing.js";
import { ComposedCache } from "../../core/composed-cache.js";
import { ReadTurns } from "./read-turns.js";
import { Accumulator } from "./user-accumulator.js";
import { rawEvents, rawUserTables, tablesFromEvents, type RawEvents } from "./user-raw-tables.js";
import { decode, emptyTable, encode, tableBytes, userRollups, type Budget, type Grain, type UserRollupDocument, type UserTable } from "./user-tables.js";
import type { UserTotals } from "../../core/user-totals.js";

const MINUTE_MS = 60_000;
/** A period is settled once it ended this long ago: its hours are cached by minute, its day read as a day. */
const SETTLED_MS = EDGE_SETTLED_MS;
/** Raw reads of one reader at once: a first read after a bulk load builds every day of its window. */
const RAW_READS_AT_ONCE = 2;
/**
 * Decoded tables kept in memory, by their size (bytes of their arrays): at 3M events the tables
 * of 1-, 14- and 30-day comparisons took 25 MB.
 */
const TABLE_CACHE_BYTES = 32 * 1024 * 1024;
/** Settled parts of windows kept merged (a few window lengths at once, e.g. a dashboard's 7 and 30 days). */
const BODIES_CACHED = 4;
/** Settled edge hours cached by minute. */
const EDGE_HOURS_CACHED = 16;
/** Rebuilt at least this often whatever the versions say (a reset elsewhere that left none). */
const EDGE_MAX_AGE_MS = 10 * 60_000;

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
  minutes: Promise<HourTables>;
}

interface HourTables {
  events: RawEvents;
  minutes: Map<number, Map<string, UserTable>>;
  /** Partial minutes' tables, by the events they cover (a window's start crosses an event only now and then). */
  stretches?: Map<string, Map<number, Map<string, UserTable>>>;
}

const STRETCHES_CACHED = 8;

/** [a, b) of a cached hour as one slice of tables (tablesFromEvents), the same object for the same events. */
function stretchOf(h: HourTables, a: number, b: number): Map<number, Map<string, UserTable>> {
  const covered = (t: Float64Array) => {
    const out: number[] = [];
    for (let i = 0; i < t.length; i++) if (t[i]! >= a && t[i]! < b) out.push(i);
    return out.join(",");
  };
  const key = `${Math.floor(a / DAY_MS)}|${covered(h.events.imp.t)}|${covered(h.events.clk.t)}`;
  const stretches = (h.stretches ??= new Map());
  let tables = stretches.get(key);
  if (tables === undefined) {
    stretches.set(key, (tables = tablesFromEvents(h.events, a, b, b - a)));
    while (stretches.size > STRETCHES_CACHED) stretches.delete(stretches.keys().next().value!);
  }
  return tables;
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
  /** Windows' totals, by their body and the tables added to it (read-only for callers). */
  private readonly windows = new ComposedCache<Body, UserWindow>();
  private ready: Promise<void> | undefined;
  private readonly turns = new ReadTurns(RAW_READS_AT_ONCE);
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
    const edgeHours = hoursOf(ranges.raw);
    const v = variant === undefined ? {} : { v: variant };
    const grains: ListingClause[] = [
      ...hours.map(([from, to]) => ({ g: "h", t: timeRange(from, to), ...v })),
      ...days.map(([from, to]) => ({ g: "d", t: timeRange(from, to), ...v })),
      ...edgeHours.map((h) => ({ g: "h", t: new Date(h), ...v })),
    ];
    const edgeSet = new Set(edgeHours);
    // Edge hours are never among the whole hours (those start at the first hour boundary after the start, and end at the last before the end).
    const isEdge = (d: Listed) => d.g === "h" && edgeSet.has(d.t);
    // Asked before anything is awaited: GetVariantComparison's window listing goes out with this one.
    const listing = rollupListing(this.c)
      .list(grains, budget)
      .then((rows) => rows.map((d): Listed => ({ _id: rollupId(d.g as Grain, d.t.getTime(), d.v), g: d.g as Grain, t: d.t.getTime(), v: d.v, ver: d.ver })));
    listing.catch(() => undefined);
    await this.init();
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
    // The same body, live tables and edge tables (a part counts toward its day only) give the same totals again.
    const parts = [...liveTables, ...edges.flat().flatMap(({ t, tables }) => [Math.floor(t / DAY_MS), tables])];
    const known = this.windows.get(body, parts);
    if (known !== undefined) return known;
    const out = new Map<string, Accumulator>();
    const into = (v: string) => {
      let a = out.get(v);
      if (!a) out.set(v, (a = new Accumulator(body.variants.get(v))));
      return a;
    };
    for (const v of body.variants.keys()) into(v);
    live.forEach((d, k) => into(d.v).add(liveTables[k]!, "h", d.t));
    for (const edge of edges) for (const { t, tables } of edge) for (const [v, table] of tables) into(v).add(table, "part", t);
    return this.windows.set(body, parts, new Map([...out].map(([v, a]) => [v, a.totals()])));
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
          listed.then((l) => this.minutesOf(hour, variant, l.filter((d) => d.t === hour), budget)).then((cached) => {
            const { minutes } = cached;
            const out: { t: number; tables: Map<string, UserTable> }[] = [];
            if (firstMinute >= endMinute) return asParts(stretchOf(cached, a, b));
            if (a < firstMinute) out.push(...asParts(stretchOf(cached, a, firstMinute)));
            for (let m = firstMinute; m < endMinute; m += MINUTE_MS) {
              const tables = minutes.get(m);
              if (tables !== undefined) out.push({ t: m, tables });
            }
            if (endMinute < b) out.push(...asParts(stretchOf(cached, endMinute, b)));
            return out;
          }),
        );
      } else raw(cursor, until);
      cursor = until;
    }
    return (await Promise.all(parts)).flat();
  }

  /** A settled hour's events and tables per minute, cached under the hour's rollup versions. */
  private async minutesOf(hour: number, variant: string | undefined, listed: readonly Listed[], budget: Budget): Promise<HourTables> {
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

  /** Raw events, in a turn among the raw reads. */
  private rawEventsOf(from: number, to: number, variant: string | undefined, budget: Budget): Promise<RawEvents> {
    return this.turns.take(() => rawEvents(this.c, from, to, variant, budget));
  }

  /** Raw tables, in a turn among the raw reads. */
  private raw(from: number, to: number, sliceMs: number, variant: string | undefined, budget: Budget): Promise<Map<number, Map<string, UserTable>>> {
    return this.turns.take(() => rawUserTables(this.c, from, to, sliceMs, variant, budget));
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
