/**
 * The layout of query tables: per hour or day and variant, one document whose `qt` field holds
 * every normalised query's counters, two levels deep (`qt.<bucket>.<query>.<counter>`) so that an
 * update finds a query by scanning one bucket of a few dozen names rather than thousands.
 */
/** Counters per query: impressions (searches), clicks, searches with clicks, no-result searches, rank sum. */
export type QueryCounter = "i" | "c" | "s" | "n" | "r";

export type QueryCounts = Record<QueryCounter, number>;

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
export function decodeQueryTable(qt: Record<string, Record<string, Partial<QueryCounts>>> | undefined): Map<string, QueryCounts> {
  const out = new Map<string, QueryCounts>();
  for (const bucket of Object.values(qt ?? {})) {
    for (const [key, n] of Object.entries(bucket)) {
      out.set(queryFromKey(key), { i: Number(n.i ?? 0), c: Number(n.c ?? 0), s: Number(n.s ?? 0), n: Number(n.n ?? 0), r: Number(n.r ?? 0) });
    }
  }
  return out;
}

/** The stored form of counters by query (the inverse of decodeQueryTable). */
export function encodeQueryTable(counts: ReadonlyMap<string, QueryCounts>): Record<string, Record<string, QueryCounts>> {
  const qt: Record<string, Record<string, QueryCounts>> = {};
  for (const [query, n] of counts) (qt[String(bucketOf(query))] ??= {})[queryKey(query)] = n;
  return qt;
}
