/**
 * GetTopQueries from query tables: per UTC hour and day and variant, every query's counters (see
 * query-table-fields.ts), maintained in the same atomic rollup update as the other metrics. A
 * window is composed like the rollups' (rollups.ts): raw events for its first, partial hour,
 * hourly tables up to the next UTC midnight, daily tables from there on. Tables are cached by
 * (id, version), so a finished hour or day is read once; a table that grew too large ("full") is
 * replaced by the raw events of its period.
 *
 * Tables are complete only in a database that has had them from its first event: one created
 * by an older version (events but no tables) keeps answering from the raw events.
 */
import type { Document } from "mongodb";
import { topRows, type QueryRow, type TopQueriesOrder } from "../core/top-queries.js";
import { queryRows, topQueries } from "./breakdowns.js";
import type { Collections } from "./documents.js";
import type { MetricsFilter } from "./metrics-queries.js";
import { decodeQueryTable, type QueryCounts } from "./query-table-fields.js";
import { markFull, QUERY_TABLE_MAX_QUERIES, rollupCollection, type RollupDocument } from "./rollups.js";

/** Says whether every stored event is in the query tables (see markQueryTables). */
const META_ID = "meta|query-tables";

interface QueryTablesMeta {
  _id: string;
  g: "meta";
  complete: boolean;
  at: Date;
}

const metaCollection = (c: Collections) => c.db.collection<QueryTablesMeta>(rollupCollection(c).collectionName);

/**
 * At open: a database without events gets query tables from its first event on, so they are
 * complete; one that already has events without the record was written by an older version,
 * and its tables never will be. The first server to record either wins.
 */
export async function markQueryTables(c: Collections): Promise<void> {
  const meta = metaCollection(c);
  if ((await meta.countDocuments({ _id: META_ID }, { limit: 1 })) > 0) return;
  const empty = (await c.impressions.countDocuments({}, { limit: 1 })) + (await c.clicks.countDocuments({}, { limit: 1 })) === 0;
  await meta.insertOne({ _id: META_ID, g: "meta", complete: empty, at: new Date() }).catch((error: { code?: number }) => {
    if (error.code !== 11000) throw error;
  });
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

interface CachedTable {
  ver: number;
  full: boolean;
  counts: Map<string, QueryCounts>;
}

export class QueryTableReader {
  private readonly cache = new Map<string, CachedTable>();
  private cachedQueries = 0;
  /** Once true, it stays so (Reset empties the database and records it complete again). */
  private complete = false;

  constructor(
    private readonly c: Collections,
    /** Query entries kept decoded at most (~100 bytes each; finished days are the bulk); least recently used go first. */
    private readonly maxCachedQueries = 300_000,
  ) {}

  async top(f: MetricsFilter, order: TopQueriesOrder, limit: number): Promise<QueryRow[]> {
    this.complete ||= (await metaCollection(this.c).countDocuments({ _id: META_ID, complete: true }, { limit: 1 })) > 0;
    if (!this.complete) return topQueries(this.c, f, order, limit);
    const start = f.window.start.getTime();
    const hourEdge = Math.ceil(start / HOUR_MS) * HOUR_MS;
    const dayEdge = Math.ceil(hourEdge / DAY_MS) * DAY_MS;
    const variant = f.variant === undefined ? {} : { v: f.variant };
    const [versions, edge] = await Promise.all([
      rollupCollection(this.c)
        .find(
          { $or: [{ g: "qh", t: { $gte: new Date(hourEdge), $lt: new Date(dayEdge) }, ...variant }, { g: "qd", t: { $gte: new Date(dayEdge) }, ...variant }] },
          { projection: { _id: 1, ver: 1, g: 1, t: 1, v: 1 } },
        )
        .toArray(),
      this.raw({ timestamp: { $gte: f.window.start, $lt: new Date(hourEdge) }, ...(f.variant === undefined ? {} : { variant: f.variant }) }, f),
    ]);
    const tables = await this.tables(versions);
    const merged = new Map<string, QueryRow>();
    const addRow = (row: QueryRow) => {
      const into = merged.get(row.query);
      if (into === undefined) merged.set(row.query, { ...row });
      else {
        into.searches += row.searches;
        into.clicks += row.clicks;
        into.searchesWithClicks += row.searchesWithClicks;
        into.noResults += row.noResults;
        into.rankSum += row.rankSum;
      }
    };
    const fullPeriods: Promise<QueryRow[]>[] = [];
    for (const doc of versions) {
      const table = tables.get(doc._id);
      if (table === undefined) continue; // deleted since the version query (a reset)
      if (table.full) {
        const end = new Date(doc.t.getTime() + (doc.g === "qh" ? HOUR_MS : DAY_MS));
        fullPeriods.push(this.raw({ timestamp: { $gte: doc.t, $lt: end }, variant: doc.v }, f));
        continue;
      }
      for (const [query, n] of table.counts) addRow({ query, searches: n.i, clicks: n.c, searchesWithClicks: n.s, noResults: n.n, rankSum: n.r });
    }
    for (const rows of [edge, ...(await Promise.all(fullPeriods))]) for (const row of rows) addRow(row);
    return topRows(merged.values(), order, limit);
  }

  private raw(m: Document, f: MetricsFilter): Promise<QueryRow[]> {
    if (m.timestamp.$gte.getTime() >= m.timestamp.$lt.getTime()) return Promise.resolve([]);
    return queryRows(this.c, m, f);
  }

  /** These tables at these versions: from the cache, or read (and cached) where it is behind. */
  private async tables(versions: readonly Pick<RollupDocument, "_id" | "ver">[]): Promise<Map<string, CachedTable>> {
    const out = new Map<string, CachedTable>();
    const stale: string[] = [];
    for (const d of versions) {
      const cached = this.cache.get(d._id);
      if (cached?.ver === Number(d.ver)) {
        out.set(d._id, cached);
        // Used again: to the back of the eviction order.
        this.cache.delete(d._id);
        this.cache.set(d._id, cached);
      } else stale.push(d._id);
    }
    if (stale.length === 0) return out;
    const docs = await rollupCollection(this.c)
      .find({ _id: { $in: stale } }, { projection: { ver: 1, full: 1, qt: 1 } })
      .toArray();
    const overgrown: string[] = [];
    for (const doc of docs) {
      const table: CachedTable = { ver: Number(doc.ver), full: doc.full === true, counts: doc.full === true ? new Map() : decodeQueryTable(doc.qt) };
      if (table.counts.size > QUERY_TABLE_MAX_QUERIES) overgrown.push(doc._id);
      out.set(doc._id, table);
      this.forget(doc._id);
      this.cache.set(doc._id, table);
      this.cachedQueries += table.counts.size;
    }
    // Usable this time (they are complete); closed for later writes, whose periods then read raw events.
    if (overgrown.length > 0) await markFull(this.c, overgrown);
    // Least recently used first (a Map iterates in insertion order).
    for (const id of this.cache.keys()) {
      if (this.cachedQueries <= this.maxCachedQueries) break;
      this.forget(id);
    }
    return out;
  }

  private forget(id: string): void {
    const table = this.cache.get(id);
    if (table === undefined) return;
    this.cachedQueries -= table.counts.size;
    this.cache.delete(id);
  }

  clear(): void {
    this.cache.clear();
    this.cachedQueries = 0;
  }
}
