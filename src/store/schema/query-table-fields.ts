/**
 * The layout of query tables: per hour or day and variant, one document whose `qt` field holds
 * every normalised query's counters, two levels deep (`qt.<bucket>.<query>.<counter>`) so that an
 * update finds a query by scanning one bucket of a few dozen names rather than thousands.
 */
import type { QueryRow } from "../../core/top-queries.js";
/**
 * Counters per query: impressions (searches), clicks, searches with clicks, no-result searches,
 * rank sum, linked clicks at shown ranks below RESULTS_COUNT_CAP (COEC's clicks: rollups/rollup-delta.ts) and
 * linked clicks outside results (core/click-attribution.ts; those two absent while none). A
 * linked click counts under its search's query, an unlinked one under the query it carries.
 * (Tables of earlier versions also hold `x`, clicks from rank RESULTS_COUNT_CAP on: no longer read.)
 */
export type QueryCounter = "i" | "c" | "s" | "n" | "r" | "k" | "o";

export type QueryCounts = Record<QueryCounter, number>;

/**
 * The searches of a query with k results, k capped at RESULTS_COUNT_CAP, from 1 (searches
 * without results are `n`): `h<k>`, one field per count met, for position-debiased CTR (COEC).
 * Tables written before these existed lack them (see query-tables.ts, markQueryTables).
 */
export type HistogramCounter = `h${number}`;

/**
 * The searches with results of a query whose first click (core/first-click.ts) was at rank r:
 * `f<r>`, one field per rank met, for its MRR and abandonment. Like `h<k>`, from the hour
 * recorded in query-tables.ts (markQueryTables) on.
 */
export type FirstClickCounter = `f${number}`;

/** A query's counters as stored and incremented: the letters above and its `h<k>` and `f<r>` fields. */
export type StoredQueryCounts = Partial<QueryCounts> & { [count: HistogramCounter]: number } & { [rank: FirstClickCounter]: number };

const histogramCounters: HistogramCounter[] = [];
/** `h<k>` for a capped results count k (built once per k). */
export const histogramCounter = (cappedCount: number): HistogramCounter => (cappedCount >= 0 && cappedCount < 128 ? (histogramCounters[cappedCount] ??= `h${cappedCount}`) : `h${cappedCount}`);

const firstClickCounters: FirstClickCounter[] = [];
/** `f<r>` for a first-click rank r (built once per r). */
export const firstClickCounter = (rank: number): FirstClickCounter => (rank >= 0 && rank < 128 ? (firstClickCounters[rank] ??= `f${rank}`) : `f${rank}`);

/**
 * A histogram packed as a string of one-byte characters: zigzag varints of key, searches, key,
 * searches, ... Decoded tables are cached by the hundred thousand entries, and a histogram of a
 * dozen pairs is ~40 bytes as such a string against ~210 as an array of numbers (3M events: the
 * query-table caches fell from 60 to ~30 MB). Only the rows a read returns decode theirs.
 */
export type PackedHistogram = string & { readonly __packed: unique symbol };

/**
 * A query's counters as read. Its histograms (`h`: results counts, `f`: first-click ranks) are
 * packed (PackedHistogram), and only tables compacted from others carry merged ones: a window's
 * merge drops them, and the rows it returns sum theirs from the tables it merged (see rowOfEntry).
 */
export interface QueryEntry extends QueryCounts {
  h: PackedHistogram | undefined;
  f: PackedHistogram | undefined;
}

const codes: number[] = [];
/** Appends an integer as a zigzag varint of 7-bit groups (every code below 256: a one-byte string). */
function pushVarint(n: number): void {
  // Zigzag doubles the magnitude: past 2^52 it would no longer be exact (no count comes near).
  if (!Number.isInteger(n) || Math.abs(n) >= 2 ** 52) throw new Error(`histogram value ${n} is not an integer below 2^52 in magnitude`);
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  while (z >= 128) {
    codes.push((z % 128) + 128);
    z = Math.floor(z / 128);
  }
  codes.push(z);
}

/** Packs (key, searches) pairs, in the order given. */
export function packPairs(pairs: Iterable<readonly [number, number]>): PackedHistogram | undefined {
  codes.length = 0;
  for (const [key, n] of pairs) {
    pushVarint(key);
    pushVarint(n);
  }
  if (codes.length === 0) return undefined;
  let out = "";
  // In slices: fromCharCode's arguments are bounded.
  for (let i = 0; i < codes.length; i += 4096) out += String.fromCharCode(...codes.slice(i, i + 4096));
  return out as PackedHistogram;
}

/** Calls `each` with every (key, searches) pair of a packed histogram, in order. */
export function eachPair(packed: PackedHistogram | undefined, each: (key: number, n: number) => void): void {
  if (packed === undefined) return;
  let i = 0;
  const next = (): number => {
    let z = 0;
    let scale = 1;
    for (;;) {
      const c = packed.charCodeAt(i++);
      z += (c & 127) * scale;
      if (c < 128) break;
      scale *= 128;
    }
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
  };
  while (i < packed.length) {
    const key = next();
    each(key, next());
  }
}

const mergePacked = (a: PackedHistogram | undefined, b: PackedHistogram | undefined) => (b === undefined ? a : a === undefined ? b : packHistogram(addPacked(addPacked(new Map(), a), b)));

/** Adds `from` into `into` (whose histograms may be a cached table's: they are replaced, never changed); `histograms` false drops them. */
export function addQueryEntry(into: QueryEntry, from: QueryEntry, histograms: boolean): void {
  into.i += from.i;
  into.c += from.c;
  into.s += from.s;
  into.n += from.n;
  into.r += from.r;
  into.k += from.k;
  into.o += from.o;
  if (!histograms) {
    into.h = undefined;
    into.f = undefined;
  } else {
    into.h = mergePacked(into.h, from.h);
    into.f = mergePacked(into.f, from.f);
  }
}

/** Adds a packed histogram into a map (count -> searches). */
export function addPacked(into: Map<number, number>, packed: PackedHistogram | undefined): Map<number, number> {
  eachPair(packed, (key, n) => into.set(key, (into.get(key) ?? 0) + n));
  return into;
}

const packHistogram = (counts: ReadonlyMap<number, number>): PackedHistogram | undefined => packPairs(counts);

/** A row's counts as a table entry (raw-event rows merged with tables). */
export function entryOfRow(row: QueryRow): QueryEntry {
  const p = row.positions;
  return {
    i: row.searches,
    c: row.clicks,
    s: row.searchesWithClicks,
    n: row.noResults,
    r: row.rankSum,
    k: p?.shownClicks ?? 0,
    o: row.clicksOutsideResults,
    h: p === undefined ? undefined : packHistogram(p.resultsCounts),
    f: p === undefined ? undefined : packHistogram(p.firstClickRanks),
  };
}

/** A query's histograms summed over some tables (unsorted; zeros kept): see rowOfEntry. */
export interface SummedHistograms {
  h: Map<number, number>;
  f: Map<number, number>;
}

/** A query's histograms summed over `tables`, added to `base` (copied, not changed) if given. */
export function sumHistograms(query: string, tables: readonly ReadonlyMap<string, QueryEntry>[], base?: SummedHistograms): SummedHistograms {
  const out = { h: new Map(base?.h), f: new Map(base?.f) };
  for (const table of tables) {
    const entry = table.get(query);
    if (entry === undefined) continue;
    addPacked(out.h, entry.h);
    addPacked(out.f, entry.f);
  }
  return out;
}

/** By key, zeros dropped: sums then run in one order whichever tables answered (the same to the last bit). */
const ordered = (summed: ReadonlyMap<number, number>) => new Map([...summed].filter(([, n]) => n !== 0).sort((a, b) => a[0] - b[0]));

/**
 * A row with its positions: its clicks at shown ranks from its merged entry, its histograms summed
 * from the tables merged into it (`base`: those of some of them, summed before).
 */
export function rowOfEntry(query: string, n: QueryEntry, tables: readonly ReadonlyMap<string, QueryEntry>[], base?: SummedHistograms): QueryRow {
  const { h, f } = sumHistograms(query, tables, base);
  return { ...rowCounts(query, n), positions: { resultsCounts: ordered(h), shownClicks: n.k, firstClickRanks: ordered(f) } };
}

/** A table entry as a row without positions (cheap: for ranking every query of a window). */
export const rowCounts = (query: string, n: QueryEntry): QueryRow => ({ query, searches: n.i, clicks: n.c, searchesWithClicks: n.s, noResults: n.n, rankSum: n.r, clicksOutsideResults: n.o });

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

/**
 * A query's field names in a query table: its prefix `qt.<bucket>.<escaped query>.` and each
 * counter's field, built once per query and counter (the write path names the same popular
 * queries over and over: concatenating them per event was a hot spot).
 */
/** Where QueryFieldNames keeps each letter counter's field. */
const LETTER_SLOTS: Record<QueryCounter, number> = { i: 0, c: 1, s: 2, n: 3, r: 4, k: 5, o: 6 };

export class QueryFieldNames {
  // One shape for every query, filled as counters are met (most queries only ever see a few).
  private readonly letters: (string | undefined)[] = [undefined, undefined, undefined, undefined, undefined, undefined, undefined];
  /** `h<k>` and `f<r>` fields, by k and r. */
  private fh: string[] | undefined = undefined;
  private ff: string[] | undefined = undefined;

  constructor(readonly prefix: string) {}

  /** The field of a letter counter. */
  letter(counter: QueryCounter): string {
    return (this.letters[LETTER_SLOTS[counter]] ??= this.prefix + counter);
  }

  /** The field of `h<k>`, a capped results count k. */
  histogram(cappedCount: number): string {
    const fields = (this.fh ??= []);
    return cappedCount >= 0 && cappedCount < 128 ? (fields[cappedCount] ??= this.prefix + histogramCounter(cappedCount)) : this.prefix + histogramCounter(cappedCount);
  }

  /** The field of `f<r>`, a first-click rank r. */
  firstClick(rank: number): string {
    const fields = (this.ff ??= []);
    return rank >= 0 && rank < 128 ? (fields[rank] ??= this.prefix + firstClickCounter(rank)) : this.prefix + firstClickCounter(rank);
  }
}

/**
 * Recent queries' field names: a batch names the same popular queries over and over. A query's
 * names take ~2 KB (its histogram fields): 50,000 of them held ~100 MB of the server's memory at
 * 3M events, where a few thousand popular queries are most of every batch.
 */
const names = new Map<string, QueryFieldNames>();
const PREFIX_CACHE_LIMIT = 4_000;

/** The field names of a query (see QueryFieldNames). */
export function queryFieldNames(query: string): QueryFieldNames {
  let fields = names.get(query);
  if (fields === undefined) {
    fields = new QueryFieldNames(`qt.${bucketOf(query)}.${queryKey(query)}.`);
    if (names.size >= PREFIX_CACHE_LIMIT) names.clear();
    names.set(query, fields);
  }
  return fields;
}

/** `qt.<bucket>.<escaped query>.`: a counter's field is this and the counter's letter. */
export function queryFieldPrefix(query: string): string {
  return queryFieldNames(query).prefix;
}

/** The counters of a stored table, by query. */
export function decodeQueryTable(qt: Record<string, Record<string, StoredQueryCounts>> | undefined): Map<string, QueryEntry> {
  const out = new Map<string, QueryEntry>();
  for (const bucket of Object.values(qt ?? {})) {
    for (const [key, n] of Object.entries(bucket)) {
      const h: [number, number][] = [];
      const f: [number, number][] = [];
      for (const counter in n) {
        const letter = counter.charCodeAt(0);
        if (letter === 0x68 /* h */) h.push([Number(counter.slice(1)), Number(n[counter as HistogramCounter])]);
        // A first click moved away leaves its old rank at 0.
        else if (letter === 0x66 /* f */ && Number(n[counter as FirstClickCounter]) !== 0) f.push([Number(counter.slice(1)), Number(n[counter as FirstClickCounter])]);
      }
      out.set(queryFromKey(key), { i: Number(n.i ?? 0), c: Number(n.c ?? 0), s: Number(n.s ?? 0), n: Number(n.n ?? 0), r: Number(n.r ?? 0), k: Number(n.k ?? 0), o: Number(n.o ?? 0), h: packPairs(h), f: packPairs(f) });
    }
  }
  return out;
}

/** The stored form of counters by query (the inverse of decodeQueryTable). */
export function encodeQueryTable(counts: ReadonlyMap<string, QueryEntry>): Record<string, Record<string, StoredQueryCounts>> {
  const qt: Record<string, Record<string, StoredQueryCounts>> = {};
  for (const [query, { h, f, k, o, ...n }] of counts) {
    const stored: StoredQueryCounts = { ...n, ...(k === 0 ? {} : { k }), ...(o === 0 ? {} : { o }) };
    eachPair(h, (key, n) => (stored[histogramCounter(key)] = n));
    eachPair(f, (rank, n) => {
      if (n !== 0) stored[firstClickCounter(rank)] = n;
    });
    (qt[String(bucketOf(query))] ??= {})[queryKey(query)] = stored;
  }
  return qt;
}
