import { randomUUID } from "node:crypto";
import { InvalidArgumentError } from "./errors.js";

/** Where a clicked result was shown; stored by these names. */
export const CLICK_SOURCES = [
  "SEARCH_RESULTS",
  "RECOMMENDATIONS",
  "AUTOCOMPLETE",
  "RELATED_PRODUCTS",
  "SPONSORED",
] as const;
export type ClickSourceName = (typeof CLICK_SOURCES)[number];

export const LIMITS = {
  idChars: 256,
  /** event_id and impression_id: room for a UUID or any client key. */
  keyChars: 128,
  queryChars: 1024,
  variantPattern: /^[A-Za-z0-9_.-]{1,64}$/,
  /** Latencies beyond an hour are garbage, and one would swamp every average. */
  maxResponseTimeMs: 3_600_000,
  /** Clients may backfill, but not from the future beyond ordinary clock skew. */
  maxFutureSkewMs: 5 * 60 * 1000,
} as const;

export interface ClickEvent {
  eventId: string;
  /** The impression this click came from, when the client knows it. */
  impressionId: string | null;
  userId: string;
  sessionId: string | null;
  productId: string;
  rank: number;
  searchQuery: string;
  variant: string;
  responseTimeMs: number;
  source: ClickSourceName;
  timestamp: Date;
}

export interface Impression {
  eventId: string;
  impressionId: string;
  userId: string;
  sessionId: string | null;
  query: string;
  variant: string;
  resultsCount: number;
  responseTimeMs: number;
  timestamp: Date;
  /** Interleaved lists only: the ranker of each shown position. */
  teams?: string[] | undefined;
}

/** Identity as the transport resolved it: request field first, then call metadata. */
export interface Identity {
  userId?: string | undefined;
  sessionId?: string | undefined;
}

/** Client-chosen keys; empty or absent means the server assigns one. */
export interface EventKeys {
  eventId?: string | undefined;
  impressionId?: string | undefined;
}

export interface ClickInput extends Identity, EventKeys {
  productId: string;
  rank: number;
  searchQuery: string;
  variant: string;
  responseTimeMs: number;
  source: ClickSourceName;
  timestamp?: Date | undefined;
}

export interface ImpressionInput extends Identity, EventKeys {
  query: string;
  variant: string;
  resultsCount: number;
  responseTimeMs: number;
  timestamp?: Date | undefined;
  teams?: readonly string[] | undefined;
}

/** Positions an interleaved list may label (far beyond any result page). */
export const MAX_TEAMS = 1000;

/**
 * The ranker of each shown position of an interleaved list: names like variants; none for an
 * ordinary search. The teams describe shown positions: no more of them than results shown.
 */
function optionalTeams(teams: readonly string[] | undefined, resultsCount: number): string[] | undefined {
  if (teams === undefined || teams.length === 0) return undefined;
  if (teams.length > MAX_TEAMS) throw new InvalidArgumentError("teams", `must have at most ${MAX_TEAMS} entries, got ${teams.length}`);
  if (teams.length > resultsCount) throw new InvalidArgumentError("teams", `must have at most results_count (${resultsCount}) entries, one per shown position, got ${teams.length}`);
  return teams.map((team, i) => requireVariant(`teams[${i}]`, team));
}

/**
 * The form queries are grouped by: Unicode-normalised (NFKC), trimmed, case-folded, runs of
 * white space collapsed to one space. "  Blue   SHOES " and "blue shoes" are one query.
 */
export function normalizeQuery(query: string): string {
  return query.normalize("NFKC").trim().replace(/\s+/gu, " ").toLowerCase();
}

/** Unicode characters, not UTF-16 code units. */
export function charLength(value: string): number {
  let n = 0;
  for (const _ of value) n++;
  return n;
}

// C0 and C1 control characters have no business in identifiers.
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * More than `maxChars` characters: a string of at most that many UTF-16 code units has at most
 * that many characters, so only longer ones are counted (the per-event path, ids and queries).
 */
const longerThan = (value: string, maxChars: number) => value.length > maxChars && charLength(value) > maxChars;

export function requireId(field: string, value: string, maxChars: number = LIMITS.idChars): string {
  if (value.length === 0) throw new InvalidArgumentError(field, "is required");
  if (longerThan(value, maxChars)) throw new InvalidArgumentError(field, `must be at most ${maxChars} characters`);
  if (CONTROL_CHARS.test(value)) throw new InvalidArgumentError(field, "must not contain control characters");
  return value;
}

/** An optional id: empty means absent. */
export function optionalId(field: string, value: string | undefined, maxChars: number = LIMITS.idChars): string | undefined {
  return value === undefined || value === "" ? undefined : requireId(field, value, maxChars);
}

function optionalKey(field: string, value: string | undefined): string | undefined {
  return optionalId(field, value, LIMITS.keyChars);
}

export function requireQuery(field: string, value: string): string {
  if (value.trim().length === 0) throw new InvalidArgumentError(field, "is required and must not be blank");
  if (longerThan(value, LIMITS.queryChars)) throw new InvalidArgumentError(field, `must be at most ${LIMITS.queryChars} characters`);
  if (value.includes("\u0000")) throw new InvalidArgumentError(field, "must not contain NUL characters");
  return value;
}

export function requireVariant(field: string, value: string): string {
  if (!LIMITS.variantPattern.test(value)) throw new InvalidArgumentError(field, "must match [A-Za-z0-9_.-]{1,64}");
  return value;
}

/** An optional variant filter: empty means no filter. */
export function optionalVariant(field: string, value: string): string | undefined {
  return value === "" ? undefined : requireVariant(field, value);
}

export function requireNonNegativeInt(field: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) throw new InvalidArgumentError(field, `must be a non-negative integer, got ${value}`);
  return value;
}

export function requireResponseTime(field: string, value: number): number {
  if (!Number.isFinite(value)) throw new InvalidArgumentError(field, "must be a finite number");
  if (value < 0) throw new InvalidArgumentError(field, `must be >= 0, got ${value}`);
  if (value > LIMITS.maxResponseTimeMs) throw new InvalidArgumentError(field, `must be at most ${LIMITS.maxResponseTimeMs} ms`);
  return value === 0 ? 0 : value; // folds -0 into 0
}

/** Absent means now; more than 5 minutes ahead of the server's clock is refused. */
export function resolveTimestamp(field: string, value: Date | undefined, now: Date): Date {
  if (value === undefined) return now;
  const ms = value.getTime();
  if (!Number.isFinite(ms) || ms < 0) throw new InvalidArgumentError(field, "must be a valid time at or after 1970-01-01T00:00:00Z");
  if (ms > now.getTime() + LIMITS.maxFutureSkewMs) throw new InvalidArgumentError(field, "must not be more than 5 minutes in the future");
  return value;
}

const resolveUserId = (input: Identity): string => optionalId("user_id", input.userId) ?? randomUUID();
const resolveSessionId = (input: Identity): string | null => optionalId("session_id", input.sessionId) ?? null;

/** Validates a click completely before anything is written; throws on the first broken rule. */
export function validateClick(input: ClickInput, now: Date = new Date()): ClickEvent {
  const userId = resolveUserId(input);
  const sessionId = resolveSessionId(input);
  return {
    eventId: optionalKey("event_id", input.eventId) ?? randomUUID(),
    impressionId: optionalKey("impression_id", input.impressionId) ?? null,
    userId,
    sessionId,
    productId: requireId("product_id", input.productId),
    rank: requireNonNegativeInt("rank", input.rank),
    searchQuery: requireQuery("search_query", input.searchQuery),
    variant: requireVariant("variant", input.variant),
    responseTimeMs: requireResponseTime("response_time_ms", input.responseTimeMs),
    source: input.source,
    timestamp: resolveTimestamp("timestamp", input.timestamp, now),
  };
}

export function validateImpression(input: ImpressionInput, now: Date = new Date()): Impression {
  const userId = resolveUserId(input);
  const sessionId = resolveSessionId(input);
  // One key serves both purposes unless the client gives both: a retried search keeps its id.
  const clientEventId = optionalKey("event_id", input.eventId);
  const clientImpressionId = optionalKey("impression_id", input.impressionId);
  const eventId = clientEventId ?? clientImpressionId ?? randomUUID();
  const impression: Impression = {
    eventId,
    impressionId: clientImpressionId ?? eventId,
    userId,
    sessionId,
    query: requireQuery("query", input.query),
    variant: requireVariant("variant", input.variant),
    resultsCount: requireNonNegativeInt("results_count", input.resultsCount),
    responseTimeMs: requireResponseTime("response_time_ms", input.responseTimeMs),
    timestamp: resolveTimestamp("timestamp", input.timestamp, now),
  };
  // Only interleaved lists have teams: no key at all otherwise.
  if (input.teams !== undefined && input.teams.length > 0) impression.teams = optionalTeams(input.teams, input.resultsCount);
  return impression;
}
