/**
 * The layout of query tables: per hour or day and variant, one document whose `qt` field holds
 * every normalised query's counters, two levels deep (`qt.<bucket>.<query>.<counter>`) so that an
 * update finds a query by scanning one bucket of a few dozen names rather than thousands.
 */
import type { QueryRow } from "../core/top-queries.js";
/**
 * Counters per query: impressions (searches), clicks, searches with clicks, no-result searches,
 * rank sum, and clicks at ranks from RESULTS_COUNT_CAP on (rollups.ts; absent while none).
 */
export type QueryCounter = "i" | "c" | "s" | "n" | "r" | "x";

export type QueryCounts = Record<QueryCounter, number>;

/**
 * The searches of a query with k results, k capped at RESULTS_COUNT_CAP, from 1 (searches
 * without results are `n`): `h<k>`, one field per count met, for position-debiased CTR (COEC).
 * Tables written before these existed lack them (see query-tables.ts, markQueryTables).
 */
export type HistogramCounter = `h${number}`;

/** A query's counters as stored and incremented: the letters above and its `h<k>` fields. */
export type StoredQueryCounts = Partial<QueryCounts> & { [count: HistogramCounter]: number };

const histogramCounters: HistogramCounter[] = [];
/** `h<k>` for a capped results count k (built once per k). */
export const histogramCounter = (cappedCount: number): HistogramCounter => (cappedCount >= 0 && cappedCount < 128 ? (histogramCounters[cappedCount] ??= `h${cappedCount}`) : `h${cappedCount}`);

/**
 * A query's counters as read. Its histogram is packed as [count, searches, count, searches, ...]
 * (a few numbers per query: decoded tables are cached by the hundred thousand entries), and only
 * tables compacted from others carry merged ones: a window's merge drops them, and the rows it
 * returns sum theirs from the tables it merged (see histogramOf).
 */
export interface QueryEntry extends QueryCounts {
  h: readonly number[] | undefined;
}

/** Adds `from` into `into` (whose histogram may be a cached table's: it is replaced, never changed); `histograms` false drops them. */
export function addQueryEntry(into: QueryEntry, from: QueryEntry, histograms: boolean): void {
  into.i += from.i;
  into.c += from.c;
  into.s += from.s;
  into.n += from.n;
  into.r += from.r;
  into.x += from.x;
  if (!histograms) into.h = undefined;
  else if (from.h !== undefined) into.h = into.h === undefined ? from.h : packHistogram(addPacked(addPacked(new Map(), into.h), from.h));
}

/** Adds a packed histogram into a map (count -> searches). */
export function addPacked(into: Map<number, number>, packed: readonly number[] | undefined): Map<number, number> {
  if (packed !== undefined) for (let i = 0; i < packed.length; i += 2) into.set(packed[i]!, (into.get(packed[i]!) ?? 0) + packed[i + 1]!);
  return into;
}

const packHistogram = (counts: ReadonlyMap<number, number>): number[] | undefined => (counts.size === 0 ? undefined : [...counts].flat());

/** A row's counts as a table entry (raw-event rows merged with tables). */
export function entryOfRow(row: QueryRow): QueryEntry {
  const p = row.positions;
  return { i: row.searches, c: row.clicks, s: row.searchesWithClicks, n: row.noResults, r: row.rankSum, x: p?.clicksPastCap ?? 0, h: p === undefined ? undefined : packHistogram(p.resultsCounts) };
}

/** A row with its positions: its clicks past the cap from its merged entry, its histogram summed from the tables merged into it. */
export function rowOfEntry(query: string, n: QueryEntry, tables: readonly ReadonlyMap<string, QueryEntry>[]): QueryRow {
  const summed = new Map<number, number>();
  for (const table of tables) addPacked(summed, table.get(query)?.h);
  // By count: the COEC sum then runs in one order whichever tables answered (the same to the last bit).
  const resultsCounts = new Map([...summed].sort((a, b) => a[0] - b[0]));
  return { ...rowCounts(query, n), positions: { resultsCounts, clicksPastCap: n.x } };
}

/** A table entry as a row without positions (cheap: for ranking every query of a window). */
export const rowCounts = (query: string, n: QueryEntry): QueryRow => ({ query, searches: n.i, clicks: n.c, searchesWithClicks: n.s, noResults: n.n, rankSum: n.r });

export const QUERY_BUCKETS = 256;

/**
 * A query as a field name: "." would nest, a leading "$" reads as an operator and "" is no name,
 * so those and "%" itself are %-escaped (NUL never reaches here: validation refuses it).
 */
export function queryKey(query: string): string {
  return query === "" ? "%" : query.replace(/[%.$]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`);
}

export function queryFromKey(key: string): string {
  return key === "%" ? "" : key.replace(/%([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** FNV-1a over the UTF-16 code units: part of the stored layout, so it must never change. */
function bucketOf(query: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < query.length; i++) {
    h ^= query.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % QUERY_BUCKETS;
}

export function queryField(query: string, counter: QueryCounter): string {
  return queryFieldPrefix(query) + counter;
}

/** Recent queries' field prefixes: a batch names the same popular queries over and over. */
const prefixes = new Map<string, string>();
const PREFIX_CACHE_LIMIT = 50_000;

/** `qt.<bucket>.<escaped query>.`: a counter's field is this and the counter's letter. */
export function queryFieldPrefix(query: string): string {
  let prefix = prefixes.get(query);
  if (prefix === undefined) {
    prefix = `qt.${bucketOf(query)}.${queryKey(query)}.`;
    if (prefixes.size >= PREFIX_CACHE_LIMIT) prefixes.clear();
    prefixes.set(query, prefix);
  }
  return prefix;
}

/** The counters of a stored table, by query. */
export function decodeQueryTable(qt: Record<string, Record<string, StoredQueryCounts>> | undefined): Map<string, QueryEntry> {
  const out = new Map<string, QueryEntry>();
  for (const bucket of Object.values(qt ?? {})) {
    for (const [key, n] of Object.entries(bucket)) {
      let h: number[] | undefined;
      for (const counter in n) if (counter.charCodeAt(0) === 0x68 /* h */) (h ??= []).push(Number(counter.slice(1)), Number(n[counter as HistogramCounter]));
      out.set(queryFromKey(key), { i: Number(n.i ?? 0), c: Number(n.c ?? 0), s: Number(n.s ?? 0), n: Number(n.n ?? 0), r: Number(n.r ?? 0), x: Number(n.x ?? 0), h });
    }
  }
  return out;
}

/** The stored form of counters by query (the inverse of decodeQueryTable). */
export function encodeQueryTable(counts: ReadonlyMap<string, QueryEntry>): Record<string, Record<string, StoredQueryCounts>> {
  const qt: Record<string, Record<string, StoredQueryCounts>> = {};
  for (const [query, { h, x, ...n }] of counts) {
    const stored: StoredQueryCounts = x === 0 ? n : { ...n, x };
    if (h !== undefined) for (let i = 0; i < h.length; i += 2) stored[histogramCounter(h[i]!)] = h[i + 1]!;
    (qt[String(bucketOf(query))] ??= {})[queryKey(query)] = stored;
  }
  return qt;
}
