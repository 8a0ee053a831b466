/**
 * store/schema/ (see its README.md): what is stored and how it is keyed, shared by the write path,
 * the rollups and the read path, none of which it imports (only core/ and engine/). This module:
 * the event documents (clicks, impressions) and their collections.
 */
import { Double, type Collection, type Db, type Document } from "mongodb";
import { normalizeQuery, type ClickEvent, type ClickSourceName, type Impression } from "../../core/events.js";
import type { LinkedClicks } from "../../core/click-attribution.js";

/** The schema users already have; field names are the contract with their other tools. */
export interface ClickDocument {
  event_id: string;
  /** Present only when the client linked the click to its search. */
  impression_id?: string;
  /** The marker of the write that stored it (see rollups/repair.ts: a repair finds a batch's events by it). */
  b?: string;
  /** Written by earlier versions while the event's rollup increments were in flight. */
  pending_rollup?: string;
  user_id: string;
  product_id: string;
  rank: number;
  search_query: string;
  /** search_query normalised (see normalizeQuery): what top-queries groups by. */
  query_normalized: string;
  variant: string;
  response_time_ms: number | Double;
  session_id: string | null;
  source: ClickSourceName;
  timestamp: Date;
}

export interface ImpressionDocument {
  event_id: string;
  impression_id: string;
  user_id: string;
  query: string;
  query_normalized: string;
  /** Interleaved lists only: the ranker ("team") of each shown position. */
  teams?: string[];
  variant: string;
  results_count: number;
  /** Set once a click linked to this impression is recorded (search-level CTR). */
  clicked?: boolean;
  /**
   * Stored already clicked, because a click for it came in the same batch: counted as a search
   * with clicks by the batch's own rollup update (the others are counted when flagged).
   */
  clicked_on_insert?: boolean;
  /** Present only while that first click (or a change of first click) is being counted in the rollups. */
  click_claim?: string;
  /**
   * The first linked click at a rank it showed (earliest timestamp, then lowest rank;
   * core/first-click.ts, core/click-attribution.ts): its timestamp and rank, as counted in the
   * rollups (or about to be, under click_claim). Absent when every linked click is outside its
   * results (it is still `clicked`).
   */
  fc_t?: Date;
  fc_r?: number;
  /** Stored clicked: the first of the batch's clicks at a shown rank, which the batch's own rollup update counts; never changed. */
  fi_t?: Date;
  fi_r?: number;
  /**
   * Its linked clicks against what it showed, as counted in the rollups (or about to be, under
   * click_claim): see core/click-attribution.ts. Absent while it has none, and on searches whose
   * clicks all came to versions before it.
   */
  lk?: LinkedClicks;
  /** Stored clicked: the batch's own linked clicks, which the batch's own rollup update counts; never changed. */
  li?: LinkedClicks;
  /** Under click_claim: what was counted before the claim (clicked, the first click if any, its linked clicks), so the claim moves it. */
  cf?: { c: boolean; t?: Date; r?: number; k?: LinkedClicks };
  /** As on clicks. */
  b?: string;
  pending_rollup?: string;
  response_time_ms: number | Double;
  session_id: string | null;
  timestamp: Date;
}

export type { LinkedClicks };

export const CLICKS = "click_events";
export const IMPRESSIONS = "impressions";

export interface Collections {
  db: Db;
  clicks: Collection<ClickDocument>;
  impressions: Collection<ImpressionDocument>;
  /**
   * The signal that ends operations whose connection the driver interrupts, and how many times
   * the driver's pool has been cleared (engine/connection-interrupts.ts).
   */
  interrupts?: PoolInterrupts | undefined;
}

export interface PoolInterrupts {
  readonly signal: AbortSignal;
  readonly clears: number;
}

export function collections(db: Db, interrupts?: PoolInterrupts): Collections {
  return {
    db,
    clicks: db.collection<ClickDocument>(CLICKS),
    impressions: db.collection<ImpressionDocument>(IMPRESSIONS),
    interrupts,
  };
}

/**
 * Options for a write-path operation: ended, rather than left waiting for ever, when the driver
 * interrupts its connection (see engine/connection-interrupts.ts). Every command of a batch's
 * write and of its settling takes it, as any of them may be larger than a socket's buffer.
 */
export function abortable(c: Collections): { signal?: AbortSignal } {
  return c.interrupts === undefined ? {} : { signal: c.interrupts.signal };
}

/**
 * Runs a raw write command (`insert`, `update`: their replies keep each failure in its own class)
 * with the database's write concern, which a raw command does not inherit, and abortable.
 */
export function writeCommand(c: Collections, command: Document): Promise<Document> {
  const wc = c.db.writeConcern;
  return c.db.command({ ...command, ...(wc ? { writeConcern: { w: wc.w, j: wc.journal } } : {}) }, abortable(c));
}

/**
 * A latency as stored: always a BSON double. A fractional number is written as one anyway; only a
 * whole one needs the Double wrapper (BSON would write it as an integer), so most events carry none.
 */
const latency = (ms: number): number | Double => (Number.isInteger(ms) ? new Double(ms) : ms);

/** Recent queries' normalised forms: an ingest batch names the same popular queries over and over. */
const normalized = new Map<string, string>();
const NORMALIZED_CACHE_LIMIT = 20_000;

/** normalizeQuery, remembered (a query's normalised form never changes). */
function normalizedQuery(query: string): string {
  let n = normalized.get(query);
  if (n === undefined) {
    n = normalizeQuery(query);
    if (normalized.size >= NORMALIZED_CACHE_LIMIT) normalized.clear();
    normalized.set(query, n === query ? query : n);
  }
  return n;
}

// Latencies are always stored as BSON doubles, even when a value happens to be whole. `marker`,
// when given, is the writing batch's (`b`, last, as the write path has always stored it).
export function clickDocument(e: ClickEvent, marker?: string): ClickDocument {
  const doc: ClickDocument = { event_id: e.eventId } as ClickDocument;
  if (e.impressionId !== null) doc.impression_id = e.impressionId;
  doc.user_id = e.userId;
  doc.product_id = e.productId;
  doc.rank = e.rank;
  doc.search_query = e.searchQuery;
  doc.query_normalized = normalizedQuery(e.searchQuery);
  doc.variant = e.variant;
  doc.response_time_ms = latency(e.responseTimeMs);
  doc.session_id = e.sessionId;
  doc.source = e.source;
  doc.timestamp = e.timestamp;
  if (marker !== undefined) doc.b = marker;
  return doc;
}

export function impressionDocument(e: Impression, marker?: string): ImpressionDocument {
  const doc: ImpressionDocument = {
    event_id: e.eventId,
    impression_id: e.impressionId,
    user_id: e.userId,
    query: e.query,
    query_normalized: normalizedQuery(e.query),
    variant: e.variant,
    results_count: e.resultsCount,
    response_time_ms: latency(e.responseTimeMs),
    session_id: e.sessionId,
    timestamp: e.timestamp,
  };
  if (e.teams !== undefined) doc.teams = e.teams;
  if (marker !== undefined) doc.b = marker;
  return doc;
}

/**
 * For reads whose whole result is wanted at once (toArray): every document in the first reply
 * (up to its 16 MiB), not the engine's default first batch of 101 followed by getMore round trips.
 */
export const ONE_ROUND_TRIP = { batchSize: 100_000 } as const;

/**
 * For reads of large documents taken one at a time (`for await`): `documents` a batch. The driver
 * keeps a batch parsed until it is used up, at several times its BSON (a 16 MiB batch of
 * first-click rows held ~80 MB), so a batch's documents should add up to about a megabyte.
 */
export const batchesOf = (documents: number) => ({ batchSize: documents }) as const;
