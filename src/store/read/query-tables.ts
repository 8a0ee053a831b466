/**
 * GetTopQueries from query tables: per UTC hour and variant, every query's counters (see
 * query-table-fields.ts), maintained in the same atomic rollup update as the other metrics. A
 * window is raw events for its first, partial hour and the hourly tables from there on.
 *
 * Writers keep hourly tables only (a day's table is large, and rewriting it with every batch
 * cost a sixth of the ingest rate). Readers compact the hours of each finished day into a day
 * table, stamped with the hours' versions it was built from, store it for other servers and
 * restarts, and rebuild it when an hour's version moves (a late event). Tables are cached by
 * version, so a finished day is read once; a table that grew too large ("full") is replaced by
 * the raw events of its hour.
 *
 * Tables are complete only in a database that has had them from its first event: one created
 * by an older version (events but no tables) keeps answering from the raw events. Likewise each
 * query's searches per results_count, clicks at shown ranks and first-click ranks (COEC's, MRR's
 * and abandonment's inputs) are there only from the hour recorded when a server of a version
 * that keeps them first opened the database (markQueryTables).
 */
import { ComposedCache } from "../../core/composed-cache.js";
import { topRows, type QueryRow, type TopQueriesOrder } from "../../core/top-queries.js";
import { queryRows, topQueries } from "./breakdowns.js";
import { batchesOf, type Collections } from "../schema/documents.js";
import { timeLimit, type MetricsFilter } from "./metrics-filter.js";
import { addQueryEntry, decodeQueryTable, encodeQueryTable, entryOfRow, rowCounts, rowOfEntry, sumHistograms, type QueryEntry, type SummedHistograms } from "../schema/query-table-fields.js";
import { KEEP_EVERYTHING, type RawRetention } from "../schema/retention.js";
import { HOUR_MS, markFull, QUERY_TABLE_MAX_QUERIES, rollupCollection, rollupId } from "../schema/rollup-documents.js";
import { EDGE_SETTLED_MS } from "./window-ranges.js";
import { rollupListing } from "./rollup-listing.js";
import { ATTRIBUTION_META_ID, HISTOGRAMS_META_ID, META_ID, metaCollection } from "./query-table-meta.js";
import { EdgeQueries } from "./query-table-edges.js";

const DAY_MS = 24 * HOUR_MS;
/** A day is compacted once it has been over this long: late events are rarer by then. */
const DAY_SETTLED_MS = HOUR_MS;

type Counts = Map<string, QueryEntry>;

/** One hourly table as the version query lists it. */
interface HourRef {
  id: string;
  t: Date;
  v: string;
  ver: number;
}

interface CachedTable {
  /** The hour's version, or for a day the versions of the hours it was built from. */
  sig: string;
  counts: Counts;
  /** Hours that are full: read from raw events instead. */
  fullHours: HourRef[];
}

/** A compacted day table as stored. */
interface DayTableDocument {
  _id: string;
  g: "qd";
  t: Date;
  v: string;
  sig: string;
  qt: ReturnType<typeof encodeQueryTable>;
}

/** Hourly tables read together, compacted as one (a day, or the part of one inside the window). */
interface DayGroup {
  refs: HourRef[];
  /** A finished day: its compacted table is stored for other servers and restarts. */
  store: boolean;
}

/**
 * A day group's signature: its hours and their versions. Its table, however it was found (cached,
 * stored, compacted now), carries this signature, so a window's signature follows from its
 * listing alone.
 */
function groupSignature(group: DayGroup): string {
  return group.refs
    .map((r) => `${r.t.getTime() / HOUR_MS}@${r.ver}`)
    .sort()
    .join(",");
}

/**
 * Adds `from` into `into`, copying counters (never changing a cached table's; see addQueryEntry).
 * Histograms are merged only where `histograms` (a day compacted from its hours, a window merged
 * from its days); a read's recent hours drop them (the rows it returns sum theirs, see rowOfEntry).
 */
function mergeCounts(into: Counts, from: Counts, histograms: boolean): void {
  for (const [query, n] of from) {
    const sum = into.get(query);
    if (sum === undefined) into.set(query, histograms ? { ...n } : { ...n, h: undefined, f: undefined });
    else addQueryEntry(sum, n, histograms);
  }
}

/** A table's queries in `order` (as topRows ranks them), computed once per table and order. */
const rankings = new WeakMap<CachedTable, Map<TopQueriesOrder, QueryRow[]>>();
function rankedRows(table: CachedTable, order: TopQueriesOrder): QueryRow[] {
  let byOrder = rankings.get(table);
  if (!byOrder) rankings.set(table, (byOrder = new Map()));
  let rows = byOrder.get(order);
  if (!rows) byOrder.set(order, (rows = topRows(Array.from(table.counts, ([query, n]) => rowCounts(query, n)), order, table.counts.size)));
  return rows;
}

/** Returned queries' histograms from a window's merged day groups, decoded once per window table and query. */
const groupSums = new WeakMap<CachedTable, Map<string, SummedHistograms>>();
function groupHistograms(grouped: CachedTable, query: string): SummedHistograms {
  let byQuery = groupSums.get(grouped);
  if (!byQuery) groupSums.set(grouped, (byQuery = new Map()));
  let sums = byQuery.get(query);
  if (!sums) byQuery.set(query, (sums = sumHistograms(query, [grouped.counts])));
  return sums;
}

/** Query entries each cache of a QueryTableReader keeps at most. */
export interface QueryCacheLimits {
  /** Hourly tables of the last two hours (a few thousand queries each at 3M events). */
  hours: number;
  /** Day tables, compacted or read back: a week at 3M events is ~141,000 entries. */
  days: number;
  /** Windows' merges: a week at 3M events is ~20,000 entries, 30 days ~40,000. */
  windows: number;
}

/** ~35 MB at most in all (the server's other read caches and its heap cap: docs/operations.md). */
const QUERY_CACHE_LIMITS: QueryCacheLimits = { hours: 25_000, days: 50_000, windows: 80_000 };

/** A least-recently-used cache of tables, bounded by the number of query entries it holds. */
class TableCache {
  private readonly tables = new Map<string, CachedTable>();
  private entries = 0;

  constructor(private readonly maxEntries: number) {}

  get(id: string, sig: string): CachedTable | undefined {
    const table = this.tables.get(id);
    if (table?.sig !== sig) return undefined;
    this.tables.delete(id);
    this.tables.set(id, table);
    return table;
  }

  set(id: string, table: CachedTable): void {
    this.delete(id);
    this.tables.set(id, table);
    this.entries += table.counts.size;
    for (const oldest of this.tables.keys()) {
      if (this.entries <= this.maxEntries || oldest === id) break;
      this.delete(oldest);
    }
  }

  private delete(id: string): void {
    const table = this.tables.get(id);
    if (table === undefined) return;
    this.entries -= table.counts.size;
    this.tables.delete(id);
  }

  clear(): void {
    this.tables.clear();
    this.entries = 0;
  }
}


export class QueryTableReader {
  /** Hourly tables of the unfinished days and of the window's first day. */
  private readonly hours: TableCache;
  /** Compacted days (and parts of days). */
  private readonly days: TableCache;
  /** Windows' day groups merged, by the groups' signatures (the common case is the same window again). */
  private readonly windows: TableCache;
  /** Once true, it stays so (Reset empties the database and records it complete again). */
  private complete = false;
  /** Settled first hours of windows, by millisecond (see EdgeQueries). */
  private readonly edges: EdgeQueries;
  /** Windows' top rows, by the cached tables and edge rows they were ranked from (and the order and limit). */
  private readonly tops = new ComposedCache<CachedTable, QueryRow[]>();
  /**
   * From when the tables hold histograms, once read: the record only ever moves earlier (a Reset
   * records the beginning), so a remembered one is at worst too late, never too early.
   */
  private histogramsSince: Date | undefined;

  constructor(
    private readonly c: Collections,
    /**
     * Query entries kept decoded at most, per cache (one number: each the same). ~230 bytes an
     * entry (3M events: a week's 141,000 day entries took 32 MB). A window's merge is kept apart
     * from its day tables, so a window with more day entries than the day cache keeps is still
     * answered warm; rebuilding it (each hour) reads again the days that no longer fit.
     */
    limits: number | QueryCacheLimits = QUERY_CACHE_LIMITS,
    /** Raw reads (the window's partial first hour, full tables' hours) are refused past it. */
    private readonly retention: RawRetention = KEEP_EVERYTHING,
  ) {
    const { hours, days, windows } = typeof limits === "number" ? { hours: limits, days: limits, windows: limits } : limits;
    this.hours = new TableCache(hours);
    this.days = new TableCache(days);
    this.windows = new TableCache(windows);
    this.edges = new EdgeQueries(c, retention);
  }

  async top(f: MetricsFilter, order: TopQueriesOrder, limit: number): Promise<QueryRow[]> {
    this.complete ||= (await metaCollection(this.c).countDocuments({ _id: META_ID, complete: true }, { limit: 1, ...timeLimit(f) })) > 0;
    if (!this.complete) {
      this.retention.require(f.window.start, "events");
      return topQueries(this.c, f, order, limit);
    }
    const start = f.window.start.getTime();
    const hourEdge = Math.ceil(start / HOUR_MS) * HOUR_MS;
    const dayEdge = Math.ceil(hourEdge / DAY_MS) * DAY_MS;
    // A settled first hour comes from the edge cache, checked against its hourly rollups'
    // versions, listed with the tables': a warm read is this one listing.
    const edgeHour = hourEdge - HOUR_MS;
    const settled = start < hourEdge && hourEdge + EDGE_SETTLED_MS <= Date.now();
    const variant = f.variant === undefined ? {} : { v: f.variant };
    // Covered by the {g, t, v, ver} index (the ids follow from g, t and v); sent with the window
    // listing GetTopQueries asks for its positions in the same turn (rollup-listing.ts).
    const listing = rollupListing(this.c).list([{ g: "qh", t: { $gte: new Date(hourEdge) }, ...variant }, ...(settled ? [{ g: "h", t: new Date(edgeHour), ...variant }] : [])], f);
    const [all, edge] = await Promise.all([
      listing,
      settled
        ? listing.then((rows) => this.edges.rows(edgeHour, start, hourEdge, f.variant, rows.filter((d) => d.g === "h"), f))
        : this.raw(f.window.start, new Date(hourEdge), f.variant, f),
    ]);
    const listed = all.filter((d) => d.g === "qh");
    // The last two hours, where writes land, are read hour by hour; the other hours are grouped
    // by day: finished days compacted and stored, the window's first day and the current one
    // compacted in memory only.
    const now = Date.now();
    const recent = Math.floor((now - HOUR_MS) / HOUR_MS) * HOUR_MS;
    const loose: HourRef[] = [];
    const groups = new Map<string, DayGroup>();
    for (const { t, v, ver } of listed) {
      const ref = { id: rollupId("qh", t.getTime(), v), t, v, ver: Number(ver) };
      const day = Math.floor(t.getTime() / DAY_MS) * DAY_MS;
      if (t.getTime() >= recent) loose.push(ref);
      else {
        const finished = t.getTime() >= dayEdge && day + DAY_MS <= now - DAY_SETTLED_MS;
        const key = finished ? rollupId("qd", day, v) : `${t.getTime() < dayEdge ? `from ${hourEdge}` : "open"}|${day}|${v}`;
        const group = groups.get(key);
        if (group) group.refs.push(ref);
        else groups.set(key, { refs: [ref], store: finished });
      }
    }
    const [hourTables, grouped] = await Promise.all([this.hourTables(loose, this.hours, f), this.windowTables(groups, f)]);
    const fullHours: HourRef[] = [...grouped.fullHours];
    for (const table of hourTables) fullHours.push(...table.fullHours);
    const rawRows = [edge, ...(await Promise.all(fullHours.map((h) => this.raw(h.t, new Date(h.t.getTime() + HOUR_MS), h.v, f))))];
    // The same cached tables and edge rows rank the same: a warm read of an unchanged window ranks nothing.
    const parts = [...hourTables, ...rawRows, order, limit];
    const known = this.tops.get(grouped, parts);
    if (known !== undefined) return known;
    return this.tops.set(grouped, parts, this.ranked(grouped, hourTables, rawRows, order, limit));
  }

  /** The top `limit` rows of the window made of the day groups `grouped`, the hour tables and the raw rows. */
  private ranked(grouped: CachedTable, hourTables: readonly CachedTable[], rawRows: readonly QueryRow[][], order: TopQueriesOrder, limit: number): QueryRow[] {
    // The window's day groups (cached, most of its queries) apart from the rest: the recent
    // hours, the first hour and full tables' raw events (`delta`, a few of its queries).
    const delta: Counts = new Map();
    for (const table of hourTables) mergeCounts(delta, table.counts, false);
    const rawTables = rawRows.map((rows) => new Map(rows.map((r) => [r.query, entryOfRow(r)])));
    for (const table of rawTables) mergeCounts(delta, table, false);
    const merged = (query: string): QueryEntry | undefined => {
      const [g, d] = [grouped.counts.get(query), delta.get(query)];
      if (g === undefined || d === undefined) return d ?? (g && { ...g, h: undefined });
      const sum = { ...g, h: undefined };
      addQueryEntry(sum, d, false);
      return sum;
    };
    // Ranked without positions: every query `delta` moved, with its sum, and the day groups'
    // own first `limit` of the others (ranked once per group and order: their counts are final).
    const candidates = [...delta.keys()].map((query) => rowCounts(query, merged(query)!));
    for (const row of rankedRows(grouped, order)) {
      if (candidates.length >= delta.size + limit) break;
      if (!delta.has(row.query)) candidates.push(row);
    }
    // Only the rows returned get their positions, summed from the tables merged: the day groups'
    // part once per group and query (their counts are final), the rest on every call.
    const sources = hourTables.map((t) => t.counts).concat(rawTables);
    return topRows(candidates, order, limit).map((row) => rowOfEntry(row.query, merged(row.query)!, sources, groupHistograms(grouped, row.query)));
  }

  /**
   * From when every query table holds its queries' histograms (see markQueryTables): a window
   * starting earlier has no COEC per query. Without a record (none has been made yet), never.
   */
  async histogramsFrom(budget: MetricsFilter): Promise<Date> {
    if (this.histogramsSince !== undefined) return this.histogramsSince;
    // The later of the two records: COEC needs both the histograms and the attributed clicks.
    const metas = await metaCollection(this.c).find({ _id: { $in: [HISTOGRAMS_META_ID, ATTRIBUTION_META_ID] } }, { projection: { from: 1 }, ...timeLimit(budget) }).toArray();
    if (metas.length < 2 || metas.some((m) => m.from === undefined)) return new Date(8.64e15);
    return (this.histogramsSince = new Date(Math.max(...metas.map((m) => m.from!.getTime()))));
  }

  private raw(from: Date, to: Date, variant: string | undefined, f: MetricsFilter): Promise<QueryRow[]> {
    if (from.getTime() >= to.getTime()) return Promise.resolve([]);
    this.retention.require(from, "window-edge");
    return queryRows(this.c, { timestamp: { $gte: from, $lt: to }, ...(variant === undefined ? {} : { variant }) }, f);
  }

  /** These hourly tables at these versions: cached, or read (and cached in `cache`, if given). */
  private async hourTables(refs: readonly HourRef[], cache: TableCache | undefined, budget: MetricsFilter): Promise<CachedTable[]> {
    const out: CachedTable[] = [];
    await this.eachHourTable(refs, cache, budget, (table) => out.push(table));
    return out;
  }

  /** Hands each of these hourly tables to `use`, one at a time: cached, or read (one document at a time; cached in `cache`, if given). */
  private async eachHourTable(refs: readonly HourRef[], cache: TableCache | undefined, budget: MetricsFilter, use: (table: CachedTable) => void): Promise<void> {
    const stale: HourRef[] = [];
    for (const ref of refs) {
      const cached = cache?.get(ref.id, String(ref.ver));
      if (cached) use(cached);
      else stale.push(ref);
    }
    if (stale.length === 0) return;
    const byId = new Map(stale.map((r) => [r.id, r]));
    const overgrown: string[] = [];
    // A few hours a batch: an hour's table is ~100–200 KB of BSON at 3M events.
    for await (const doc of rollupCollection(this.c).find({ _id: { $in: [...byId.keys()] } }, { projection: { ver: 1, full: 1, qt: 1 }, ...timeLimit(budget), ...batchesOf(8) })) {
      const ref = byId.get(doc._id)!;
      const full = doc.full === true;
      const table: CachedTable = { sig: String(doc.ver), counts: full ? new Map() : decodeQueryTable(doc.qt), fullHours: full ? [ref] : [] };
      // Usable this time (it is complete); closed for later writes, whose hours then read raw events.
      if (table.counts.size > QUERY_TABLE_MAX_QUERIES) overgrown.push(doc._id);
      // A version that moved since the listing is newer, and just as complete: it is what counts now.
      cache?.set(doc._id, table);
      use(table);
    }
    if (overgrown.length > 0) await markFull(this.c, overgrown);
  }

  /**
   * The day groups merged into one table, cached by the groups' signatures: while no hour
   * outside the last two changes, a repeated window costs one merge of its recent hours.
   *
   * Merged one day table at a time, histograms included, so that neither the merge nor the kept
   * window needs its day tables together: a 30-day window at 3M events is ~200,000 day entries,
   * and holding them all (and their stored documents, decoded at once) ran the server out of
   * its 256 MB heap.
   */
  private async windowTables(groups: ReadonlyMap<string, DayGroup>, budget: MetricsFilter): Promise<CachedTable> {
    // Signed by what was listed, before any day table is needed: a window kept here answers
    // whether or not its day tables are still in the day cache.
    const sigs = new Map([...groups].map(([id, group]) => [id, groupSignature(group)]));
    const sig = [...sigs].map(([id, groupSig]) => `${id}@${groupSig}`).sort().join(";");
    const cached = this.windows.get(sig, sig);
    if (cached) return cached;
    const merged: CachedTable = { sig, counts: new Map(), fullHours: [] };
    await this.eachDayTable(groups, sigs, budget, (table) => {
      mergeCounts(merged.counts, table.counts, true);
      merged.fullHours.push(...table.fullHours);
    });
    this.windows.set(sig, merged);
    return merged;
  }

  /**
   * Hands each group's table (signed `sigs`) to `use`, one at a time: cached, stored by a reader
   * before (finished days, read one document at a time), or compacted from its hours now.
   */
  private async eachDayTable(groups: ReadonlyMap<string, DayGroup>, sigs: ReadonlyMap<string, string>, budget: MetricsFilter, use: (table: CachedTable) => void): Promise<void> {
    const missing = new Map<string, DayGroup & { sig: string }>();
    for (const [id, group] of groups) {
      const sig = sigs.get(id)!;
      const cached = this.days.get(id, sig);
      if (cached) use(cached);
      else missing.set(id, { ...group, sig });
    }
    if (missing.size === 0) return;
    const tables = this.c.db.collection<DayTableDocument>(rollupCollection(this.c).collectionName);
    const storedIds = [...missing].filter(([, group]) => group.store).map(([id]) => id);
    if (storedIds.length > 0) {
      // Iterated, not gathered, two a batch: the driver decodes a document as it is taken, and
      // a day table's document (~0.5 MB of BSON at 3M events) decoded is several times its table.
      for await (const doc of tables.find({ _id: { $in: storedIds } }, { projection: { sig: 1, qt: 1 }, ...timeLimit(budget), ...batchesOf(2) })) {
        const want = missing.get(doc._id)!;
        if (doc.sig !== want.sig) continue;
        const table: CachedTable = { sig: want.sig, counts: decodeQueryTable(doc.qt), fullHours: [] };
        this.days.set(doc._id, table);
        missing.delete(doc._id);
        use(table);
      }
    }
    for (const [id, { refs, sig, store }] of missing) {
      const counts: Counts = new Map();
      const fullHours: HourRef[] = [];
      await this.eachHourTable(refs, undefined, budget, (hour) => {
        fullHours.push(...hour.fullHours);
        mergeCounts(counts, hour.counts, true);
      });
      // Versions read now may be newer than listed: then the signature is stale and the next read rebuilds.
      const table: CachedTable = { sig, counts, fullHours };
      this.days.set(id, table);
      use(table);
      if (store && fullHours.length === 0) {
        const t = refs[0]!.t;
        const doc = { g: "qd" as const, t: new Date(Math.floor(t.getTime() / DAY_MS) * DAY_MS), v: refs[0]!.v, sig, qt: encodeQueryTable(counts) };
        // For other servers and restarts; a day too large to store is simply compacted again.
        await tables.replaceOne({ _id: id }, doc, { upsert: true }).catch(() => undefined);
      }
    }
  }

  clear(): void {
    this.histogramsSince = undefined;
    this.hours.clear();
    this.days.clear();
    this.windows.clear();
  }
}
