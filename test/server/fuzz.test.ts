/**
 * Property-based fuzzing of every RPC against one real server (fast-check).
 *
 * Well-formed but hostile messages go through the typed client: random strings (unicode, very
 * long, control characters, `$`-prefixed, dotted, JSON-looking such as `{"$ne": null}`), extreme
 * numbers (NaN, ±Infinity, -0, int32/int64 extremes), missing fields, timestamps far in the past
 * and future. Raw bytes (random, truncated, bit-flipped or spliced valid encodings, hand-made
 * wire-format traps) go to every method path through a plain grpc.Client.
 *
 * Every answer is checked against an oracle written from the README's rules: a request that
 * breaks a rule is INVALID_ARGUMENT naming a broken field ("<field>: <rule>"), one that breaks
 * none is OK; never INTERNAL, UNKNOWN or a hang. Writes are checked against MongoDB before and
 * after (a rejected event writes nothing, LogEvents/StreamEvents store exactly their ACCEPTED
 * events, accepted strings are stored verbatim, an event is a DUPLICATE exactly when a key of its
 * kind was stored before or came earlier in its batch), and reads against direct counts (so `$`-prefixed
 * or JSON-looking ids only ever match themselves, and the rollups hold exactly what was accepted).
 *
 * 6,000 requests by default (80% typed, 20% raw), in 4 concurrent lanes per kind; FUZZ_RUNS=100000
 * for a longer run. The seed is printed: FUZZ_SEED=<n> replays it, FUZZ_LANES=1 in one sequence.
 */
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, ScalarType, toBinary, type DescEnum, type DescField, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import type { Filter } from "mongodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HealthCheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus as Serving, Health } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1Alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import {
  ClickAnalytics,
  EventOutcome,
  EventSchema,
  GetCtrRequestSchema,
  GetInterleavingResultRequestSchema,
  Granularity,
  GetRankMetricsRequestSchema,
  GetResponseTimeMetricsRequestSchema,
  GetTimeSeriesRequestSchema,
  GetTopQueriesRequestSchema,
  GetUserSummaryRequestSchema,
  GetVariantComparisonRequestSchema,
  LogClickRequestSchema,
  LogEventsRequestSchema,
  LogImpressionRequestSchema,
  ResetRequestSchema,
  Status,
  StreamEventsRequestSchema,
  WatchMetricsRequestSchema,
  type CallOptions,
  type Event,
  type EventResult,
  type GetInterleavingResultResponse,
  type GetTopQueriesResponse,
  type LogClickRequest,
  type LogImpressionRequest,
  type ServiceError,
} from "../../src/client/index.js";
import { MAX_REQUEST_BYTES } from "../../src/client/transport.js";
import { createLogger } from "../../src/server/logger.js";
import type { ClickDocument, ImpressionDocument } from "../../src/store/schema/documents.js";
import { startHarness, type Harness } from "../support/harness.js";

const TOTAL_RUNS = Number(process.env.FUZZ_RUNS ?? 6_000);
const RAW_RUNS = Math.round(TOTAL_RUNS * 0.2);
const TYPED_RUNS = TOTAL_RUNS - RAW_RUNS;
const SEED = Number(process.env.FUZZ_SEED ?? 20_260_301);
/** Concurrent lanes of each property (FUZZ_LANES=1 runs everything in one sequence). */
const LANES = Math.max(1, Number(process.env.FUZZ_LANES ?? 4));
const DAY_MS = 86_400_000;
const CALL_TIMEOUT_MS = 15_000;
const TEST_TIMEOUT_MS = Math.max(240_000, TOTAL_RUNS * 40);

let h: Harness;
let raw: grpc.Client;
const logLines: string[] = [];
const ADMIN_TOKEN = `admin-${randomUUID()}`;

beforeAll(async () => {
  // An admin token the fuzzer never sends: Reset must always be PERMISSION_DENIED (and the data
  // the counts below rely on is never wiped).
  h = await startHarness({ adminToken: ADMIN_TOKEN }, { defaultTimeoutMs: CALL_TIMEOUT_MS }, createLogger("info", (line) => logLines.push(line)));
  raw = new grpc.Client(h.server.address, grpc.credentials.createInsecure(), { "grpc.max_send_message_length": 64 * 1024 * 1024, "grpc.max_receive_message_length": 64 * 1024 * 1024 });
});
afterAll(async () => {
  raw?.close();
  await h?.close();
});

// ---------------------------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------------------------

interface Outcome<T = unknown> {
  code: Status;
  details: string;
  value?: T;
}

async function settle<T>(promise: Promise<T>): Promise<Outcome<T>> {
  try {
    return { code: Status.OK, details: "", value: await promise };
  } catch (error) {
    const e = error as Partial<ServiceError>;
    if (typeof e.code !== "number") throw error; // a bug in this test (or the client), not a status
    return { code: e.code, details: e.details ?? "" };
  }
}

/** "<field>: <rule>", a path such as experiment.arms[1].weight (expected_split keys may hold anything, and long details are cut). */
const FIELD_DETAILS = /^(?:[a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*|expected_split\[[\s\S]*\]): \S/u;
const TRUNCATED_SPLIT = /^expected_split\[[\s\S]*… \(truncated\)$/u;

function describeOutcome(o: Outcome): string {
  return `${Status[o.code]} ${JSON.stringify(o.details.slice(0, 300))}`;
}

/** The status code alone: never INTERNAL, UNKNOWN, a hang, or anything unexpected. */
function expectCode(label: string, o: Outcome, allowed: readonly Status[]): void {
  expect(allowed.map((c) => Status[c]), `${label}: ${describeOutcome(o)}`).toContain(Status[o.code]);
  if (o.code === Status.INVALID_ARGUMENT) {
    expect(FIELD_DETAILS.test(o.details) || TRUNCATED_SPLIT.test(o.details), `${label}: details name no field: ${describeOutcome(o)}`).toBe(true);
  }
}

/** Does `details` ("<field>: <rule>") name one of `fields`? */
function namesOneOf(details: string, fields: readonly string[]): boolean {
  return fields.some((f) => details.startsWith(`${f}: `) || (f.length > 200 && details.startsWith(f.slice(0, 200))));
}

// ---------------------------------------------------------------------------------------------
// The oracle: README's validation rules, written independently of src/core
// ---------------------------------------------------------------------------------------------

/** Fields that break a rule; `maybe`: fields whose verdict depends on stored data or a zone database. */
interface Verdict {
  broken: string[];
  maybe: string[];
}
const verdict = (broken: string[], maybe: string[] = []): Verdict => ({ broken, maybe });

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u;
const VARIANT = /^[A-Za-z0-9_.-]{1,64}$/;
const chars = (s: string) => [...s].length;

/** ids 1..max characters without control characters; empty is absent. */
const idRule = (field: string, value: string, max = 256, required = false): string[] =>
  value === "" ? (required ? [field] : []) : chars(value) > max || CONTROL.test(value) ? [field] : [];
const queryRule = (field: string, value: string): string[] => (value.trim() === "" || chars(value) > 1024 || value.includes("\u0000") ? [field] : []);
const variantRule = (field: string, value: string, optional = false): string[] => (optional && value === "" ? [] : VARIANT.test(value) ? [] : [field]);
const nonNegative = (field: string, n: number): string[] => (n < 0 ? [field] : []);
const latencyRule = (field: string, ms: number): string[] => (Number.isFinite(ms) && ms >= 0 && ms <= 3_600_000 ? [] : [field]);
const daysRule = (days: number): string[] => (days >= 0 && days <= 365 ? [] : ["days"]);
const windowDays = (days: number) => (days === 0 ? 7 : days);

function timestampRule(ts: Timestamp | undefined, now: number): Verdict {
  if (ts === undefined) return verdict([]);
  if (ts.nanos < 0 || ts.nanos > 999_999_999) return verdict(["timestamp.nanos"]);
  const ms = timestampDate(ts).getTime();
  if (!Number.isFinite(ms) || ms < 0) return verdict(["timestamp"]);
  const ahead = ms - now;
  if (ahead > 5 * 60_000 + 30_000) return verdict(["timestamp"]);
  if (ahead > 5 * 60_000 - 30_000) return verdict([], ["timestamp"]); // clock edge: either answer
  return verdict([]);
}

/** x-user-id applies when the request's user_id is empty. */
const effectiveUser = (userId: string, header: string | undefined) => (userId !== "" ? userId : (header ?? ""));

function clickVerdict(r: LogClickRequest, header: string | undefined, now: number): Verdict {
  const ts = timestampRule(r.timestamp, now);
  return verdict(
    [
      ...idRule("user_id", effectiveUser(r.userId, header)),
      ...idRule("session_id", r.sessionId),
      ...idRule("product_id", r.productId, 256, true),
      ...nonNegative("rank", r.rank),
      ...queryRule("search_query", r.searchQuery),
      ...variantRule("variant", r.variant),
      ...latencyRule("response_time_ms", r.responseTimeMs),
      ...(r.source >= 0 && r.source <= 5 ? [] : ["source"]),
      ...idRule("event_id", r.eventId, 128),
      ...idRule("impression_id", r.impressionId, 128),
      ...ts.broken,
    ],
    ts.maybe,
  );
}

/** An interleaved list's teams: at most 1,000 and at most results_count (one per shown position), each named like a variant. */
const teamsRule = (teams: readonly string[], resultsCount: number): string[] =>
  teams.length > 1000 || (teams.length > 0 && resultsCount >= 0 && teams.length > resultsCount) ? ["teams"] : teams.flatMap((t, i) => variantRule(`teams[${i}]`, t));

function impressionVerdict(r: LogImpressionRequest, header: string | undefined, now: number): Verdict {
  const ts = timestampRule(r.timestamp, now);
  return verdict(
    [
      ...idRule("user_id", effectiveUser(r.userId, header)),
      ...idRule("session_id", r.sessionId),
      ...queryRule("query", r.query),
      ...variantRule("variant", r.variant),
      ...nonNegative("results_count", r.resultsCount),
      ...latencyRule("response_time_ms", r.responseTimeMs),
      ...idRule("event_id", r.eventId, 128),
      ...idRule("impression_id", r.impressionId, 128),
      ...teamsRule(r.teams, r.resultsCount),
      ...ts.broken,
    ],
    ts.maybe,
  );
}

function eventVerdict(e: Event, header: string | undefined, now: number): Verdict {
  switch (e.kind.case) {
    case "click":
      return clickVerdict(e.kind.value, header, now);
    case "impression":
      return impressionVerdict(e.kind.value, header, now);
    default:
      return verdict(["kind"]);
  }
}

/** An explicit period or the last `days` days (README, "Windows"); the clock edges are `maybe`. */
function windowRule(r: { days: number; startTime?: Timestamp | undefined; endTime?: Timestamp | undefined }, now: number): Verdict {
  const broken: string[] = [];
  const maybe: string[] = [];
  const badNanos = (ts: Timestamp | undefined) => ts !== undefined && !(ts.nanos >= 0 && ts.nanos <= 999_999_999);
  if (badNanos(r.startTime)) broken.push("start_time.nanos");
  if (badNanos(r.endTime)) broken.push("end_time.nanos");
  if (r.startTime === undefined) {
    if (r.endTime !== undefined) broken.push("end_time");
    return verdict([...broken, ...daysRule(r.days)]);
  }
  if (r.days !== 0) broken.push("days");
  const start = timestampDate(r.startTime).getTime();
  const end = r.endTime === undefined ? undefined : timestampDate(r.endTime).getTime();
  if (!Number.isFinite(start)) broken.push("start_time");
  if (end !== undefined && !Number.isFinite(end)) broken.push("end_time");
  if (!Number.isFinite(start) || (end !== undefined && !Number.isFinite(end))) return verdict(broken, maybe);
  const edge = 30_000;
  if (start > now + edge) broken.push("start_time");
  else if (start > now - edge) maybe.push("start_time");
  const span = (end ?? now) - start;
  if (end !== undefined && end <= start) broken.push("end_time");
  else if (span > 365 * DAY_MS + (end === undefined ? edge : 0)) broken.push("end_time");
  else if (end === undefined && span > 365 * DAY_MS - edge) maybe.push("end_time");
  return verdict(broken, maybe);
}

const filterRules = (r: { userId: string; variant: string; days: number }): string[] => [
  ...idRule("user_id", r.userId),
  ...variantRule("variant", r.variant, true),
  ...daysRule(r.days),
];

/** Client keys that make a repeat recognisable (a server-assigned id is never a duplicate). */
const hasClientKey = (e: Event) => (e.kind.case === "click" ? e.kind.value.eventId !== "" : e.kind.case === "impression" ? e.kind.value.eventId !== "" || e.kind.value.impressionId !== "" : false);

// ---------------------------------------------------------------------------------------------
// Idempotency keys the server has stored, per kind: the oracle for DUPLICATE
// ---------------------------------------------------------------------------------------------

/**
 * A click is unique by its event_id; an impression by its event_id (event_id, else impression_id)
 * and by its impression_id (impression_id, else event_id). A click and an impression never repeat
 * each other, whatever their keys. The sets hold the keys of events this file has seen stored:
 * ACCEPTED ones, and, where an answer does not say what was written (a call that failed as a
 * whole, a stream with an event at the clock edge, a raw stream cut by an undecodable message),
 * whatever MongoDB holds afterwards. Writes run one at a time, and each write's keys are settled
 * inside its lock (see measured), so every write is judged against everything stored before it.
 */
type KeyKind = "click" | "impImpression";
const storedKeys: Record<KeyKind, Set<string>> = { click: new Set(), impImpression: new Set() };
/** Which call stored a key, for failure messages. */
const storedBy = new Map<string, string>();
/** GetTopQueries answers checked, how many exactly (no event where the window's start may be), and rows with a COEC checked. */
const topQueriesStats = { answers: 0, exact: 0, coec: 0, mrr: 0 };
/** GetInterleavingResult answers checked, and how many of them had searches with credited clicks. */
const interleavingStats = { answers: 0, decided: 0 };
/** How often the key oracle judged a keyed event, and how often it had to ask MongoDB. */
const keyStats = { duplicates: 0, keyedAccepted: 0, lookUps: 0 };

/**
 * The (kind, key) pairs an event is unique under; [] without a client key (the server's own id
 * repeats nothing). An impression is unique by its impression_id alone (which defaults to its
 * event_id), so that impressions can be sharded by it.
 */
function keysOf(e: Event): [KeyKind, string][] {
  if (e.kind.case === "click") return e.kind.value.eventId === "" ? [] : [["click", e.kind.value.eventId]];
  if (e.kind.case === "impression") {
    const { eventId, impressionId } = e.kind.value;
    return eventId === "" && impressionId === "" ? [] : [["impImpression", impressionId || eventId]];
  }
  return [];
}
const clickEvent = (value: LogClickRequest): Event => create(EventSchema, { kind: { case: "click", value } });
const impressionEvent = (value: LogImpressionRequest): Event => create(EventSchema, { kind: { case: "impression", value } });
const storedBefore = (k: readonly [KeyKind, string][]) => k.some(([kind, key]) => storedKeys[kind].has(key));
const describeKeys = (k: readonly [KeyKind, string][]) =>
  k.map(([kind, key]) => `${kind} ${JSON.stringify(key.slice(0, 80))}${storedKeys[kind].has(key) ? ` (stored by ${storedBy.get(`${kind}:${key}`)})` : " (never stored)"}`).join(", ") || "no client key";
function remember(label: string, k: readonly [KeyKind, string][]): void {
  for (const [kind, key] of k) {
    storedKeys[kind].add(key);
    if (!storedBy.has(`${kind}:${key}`)) storedBy.set(`${kind}:${key}`, label);
  }
}

/** Records the keys of `events` that MongoDB holds now: for writes whose outcome the answer does not tell. */
async function lookUpKeys(label: string, events: readonly Event[]): Promise<void> {
  const wanted = events.flatMap(keysOf);
  if (wanted.length === 0) return;
  keyStats.lookUps++;
  const of = (kind: KeyKind) => [...new Set(wanted.filter(([k]) => k === kind).map(([, key]) => key))];
  const c = h.server.store.collections;
  const found = async (kind: KeyKind, field: "event_id" | "impression_id", collection: typeof c.clicks | typeof c.impressions) =>
    of(kind).length === 0 ? [] : (await collection.distinct(field, { [field]: { $in: of(kind) } })).map((key): [KeyKind, string] => [kind, String(key)]);
  const [clicks, impImpressions] = await Promise.all([found("click", "event_id", c.clicks), found("impImpression", "impression_id", c.impressions)]);
  remember(`${label} (looked up)`, [...clicks, ...impImpressions]);
}

/** Every key stored before the fuzzing starts (the other tests of this file). */
async function loadStoredKeys(): Promise<void> {
  const c = h.server.store.collections;
  const [clicks, impImpressions] = await Promise.all([c.clicks.distinct("event_id"), c.impressions.distinct("impression_id")]);
  remember("an earlier test", [...clicks.map((k): [KeyKind, string] => ["click", String(k)]), ...impImpressions.map((k): [KeyKind, string] => ["impImpression", String(k)])]);
}

/**
 * The outcomes one batch (a LogEvents request, one StreamEvents message) must have, given which
 * of its events are valid: a valid event repeating a key of its kind from an earlier event of the
 * batch (one that was not itself such a repeat, stored or not) is a DUPLICATE; else one whose key
 * of its kind is stored is a DUPLICATE; else it is ACCEPTED.
 */
function expectedOutcomes(events: readonly Event[], valid: readonly boolean[]): ("ACCEPTED" | "DUPLICATE" | undefined)[] {
  const seen = new Set<string>();
  return events.map((e, i) => {
    if (!valid[i]) return undefined;
    const k = keysOf(e);
    const names = k.map(([kind, key]) => `${kind}:${key}`);
    if (names.some((n) => seen.has(n))) return "DUPLICATE";
    for (const n of names) seen.add(n);
    return storedBefore(k) ? "DUPLICATE" : "ACCEPTED";
  });
}
function countJudged(events: readonly Event[], expected: readonly ("ACCEPTED" | "DUPLICATE" | undefined)[]): void {
  events.forEach((e, i) => {
    if (expected[i] === "DUPLICATE") keyStats.duplicates++;
    else if (expected[i] === "ACCEPTED" && keysOf(e).length > 0) keyStats.keyedAccepted++;
  });
}

/**
 * Judges a write's duplicates against the keys stored before it, then records what it stored.
 * Runs inside the write lock, right after the call and the counts around it.
 */
async function settleKeys(label: string, rpc: Rpc, request: unknown, header: string | undefined, o: Outcome, was: Counts, is: Counts): Promise<void> {
  switch (rpc) {
    case "logClick":
    case "logImpression": {
      const e = rpc === "logClick" ? clickEvent(request as LogClickRequest) : impressionEvent(request as LogImpressionRequest);
      if (o.code === Status.INVALID_ARGUMENT) return;
      if (o.code !== Status.OK) return lookUpKeys(label, [e]);
      const k = keysOf(e);
      const written = rpc === "logClick" ? is.clicks - was.clicks : is.impressions - was.impressions;
      if (k.length === 0) return;
      if (storedBefore(k)) expect(written, `${label}: stored again, but a ${e.kind.case} with ${describeKeys(k)} was stored before`).toBe(0);
      else expect(written, `${label}: OK without writing, but no ${e.kind.case} with ${describeKeys(k)} was stored before`).toBe(1);
      if (written === 1) remember(label, k);
      keyStats[written === 1 ? "keyedAccepted" : "duplicates"]++;
      return;
    }
    case "logEvents": {
      const events = (request as { events: Event[] }).events;
      if (o.code === Status.INVALID_ARGUMENT && events.length > 1000) return;
      const results = (o.value as { results?: EventResult[] } | undefined)?.results;
      if (o.code !== Status.OK || results?.length !== events.length) return lookUpKeys(label, events);
      const expected = expectedOutcomes(
        events,
        results.map((r) => r.outcome !== EventOutcome.REJECTED),
      );
      events.forEach((e, i) => {
        if (expected[i] === undefined) return;
        expect(EventOutcome[results[i]!.outcome], `${label} events[${i}] (${e.kind.case}; ${describeKeys(keysOf(e))})`).toBe(expected[i]);
      });
      events.forEach((e, i) => expected[i] === "ACCEPTED" && remember(`${label} events[${i}]`, keysOf(e)));
      countJudged(events, expected);
      return;
    }
    case "streamEvents": {
      const batches = request as { events: Event[] }[];
      const all = batches.flatMap((b) => b.events);
      const now = Date.now();
      const verdicts = all.map((e) => eventVerdict(e, header, now));
      // A call that failed as a whole may have written its first messages; an event at the clock
      // edge may have been rejected or not: MongoDB says what is stored.
      if (o.code !== Status.OK || verdicts.some((v) => v.broken.length === 0 && v.maybe.length > 0)) return lookUpKeys(label, all);
      const res = o.value as { accepted: bigint; duplicates: bigint };
      let position = 0;
      const tallied = { accepted: 0, duplicates: 0 };
      const explained: string[] = [];
      // Message by message: each is a batch of its own, judged against what the ones before stored.
      for (const [m, b] of batches.entries()) {
        const expected = expectedOutcomes(
          b.events,
          b.events.map((_, i) => verdicts[position + i]!.broken.length === 0),
        );
        b.events.forEach((e, i) => {
          if (expected[i] === undefined) return;
          tallied[expected[i] === "ACCEPTED" ? "accepted" : "duplicates"]++;
          explained.push(`batches[${m}] events[${position + i}] ${e.kind.case} ${describeKeys(keysOf(e))}: ${expected[i]}`);
        });
        b.events.forEach((e, i) => expected[i] === "ACCEPTED" && remember(`${label} events[${position + i}]`, keysOf(e)));
        countJudged(b.events, expected);
        position += b.events.length;
      }
      expect({ accepted: Number(res.accepted), duplicates: Number(res.duplicates) }, `${label}: accepted and duplicates vs the keys stored before:\n${explained.join("\n")}`).toEqual(tallied);
      return;
    }
    default:
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------

const SPECIALS = [
  '{"$ne": null}',
  '{"$gt": ""}',
  '{"$where": "sleep(1000)"}',
  "$ne",
  "$where",
  "$",
  "$$ROOT",
  "$user_id",
  "$.a",
  "a.b",
  "a.b.c",
  ".",
  "..",
  "...",
  "__proto__",
  "constructor",
  "toString",
  "hasOwnProperty",
  "null",
  "NaN",
  "' OR 1=1 --",
  "\\",
  '"',
  "%s%n%x",
  "../../etc/passwd",
  "\u202e\u202d",
  "e\u0301",
  "🔎",
  "👩‍👩‍👧",
  "\ufeff",
  "\u00a0",
  " ",
  "\u2028",
  "x".repeat(65),
];
const controlChar = fc.constantFrom("\u0000", "\u0001", "\u0007", "\b", "\t", "\n", "\r", "\u001b", "\u001f", "\u007f", "\u0080", "\u0085", "\u009f");
const withControl = fc.tuple(fc.string({ maxLength: 8 }), controlChar, fc.string({ maxLength: 8 })).map(([a, c, b]) => a + c + b);
/** Lengths around every limit (128, 256, 1024), counted in code points, of 1-, 2- and 4-byte characters. */
const atLimits = fc
  .tuple(fc.constantFrom(1, 127, 128, 129, 255, 256, 257, 1023, 1024, 1025, 4096), fc.constantFrom("x", "é", "🔎", " "))
  .map(([n, c]) => c.repeat(n));
/** Big enough that a status message quoting it would not fit a grpc-message trailer. */
const huge = fc.constantFrom("x".repeat(70_000), "🔎".repeat(20_000));
const jsonLooking = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
  fc.dictionary(fc.constantFrom("$ne", "$gt", "$where", "$regex", "$expr", "a.b", "$function"), fc.jsonValue({ maxDepth: 1 }), { minKeys: 1, maxKeys: 2 }).map((o) => JSON.stringify(o)),
);
const hostile: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...SPECIALS) },
  { weight: 3, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 24 }) },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme-ascii", maxLength: 16 }).map((s) => `$${s}`) },
  { weight: 2, arbitrary: fc.array(fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 6 }), { minLength: 2, maxLength: 4 }).map((parts) => parts.join(".")) },
  { weight: 2, arbitrary: jsonLooking },
  { weight: 2, arbitrary: withControl },
  { weight: 2, arbitrary: atLimits },
);
const maybeHuge = (arb: fc.Arbitrary<string>, hugeWeight = 1) => fc.oneof({ weight: 100 - hugeWeight, arbitrary: arb }, { weight: hugeWeight, arbitrary: huge });

/** Ids the reads also use, so that filters hit stored data. */
const ID_POOL = ["u1", "user_123", '{"$ne": null}', '{"$gt": ""}', "$where", "$ne", "a.b", "$.x", "__proto__", "constructor", "héllo wörld", "🔎", " "];
const id = maybeHuge(
  fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...ID_POOL) },
    { weight: 3, arbitrary: fc.string({ unit: "grapheme", minLength: 1, maxLength: 24 }) },
    { weight: 2, arbitrary: hostile },
    { weight: 1, arbitrary: fc.constant("") },
  ),
);
const optionalId = fc.oneof({ weight: 2, arbitrary: fc.constant("") }, { weight: 3, arbitrary: id });
/** Idempotency keys: often empty, sometimes repeated (a small pool), sometimes hostile. */
const key = fc.oneof(
  { weight: 6, arbitrary: fc.constant("") },
  { weight: 4, arbitrary: fc.uuid() },
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 40 }).map((n) => `key-${n}`) },
  { weight: 1, arbitrary: hostile },
);
const VARIANTS = ["search_v1", "search_v2", "a.b", "__proto__", "constructor", "x".repeat(64), "-", "..."];
const variant = maybeHuge(
  fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(...VARIANTS) },
    { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/) },
    { weight: 1, arbitrary: hostile },
    { weight: 1, arbitrary: fc.constant("") },
  ),
);
const optionalVariant = fc.oneof({ weight: 2, arbitrary: fc.constant("") }, { weight: 3, arbitrary: variant });
const query = maybeHuge(
  fc.oneof(
    { weight: 9, arbitrary: fc.constantFrom("blue shoes", "  Blue   SHOES ", "$where", '{"$ne": null}', "a.b", "🔎 ünïcode", "e\u0301") },
    { weight: 3, arbitrary: fc.string({ minLength: 1, maxLength: 40 }) },
    { weight: 1, arbitrary: hostile },
    { weight: 1, arbitrary: fc.constantFrom("", "   ", "\t\n", "\u00a0", "\ufeff", "\u2028") },
  ),
);
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
const int32 = fc.oneof(
  { weight: 12, arbitrary: fc.integer({ min: 0, max: 50 }) },
  { weight: 2, arbitrary: fc.constantFrom(-1, INT32_MIN, INT32_MAX, 365, 366, 1000, 1001, 3600, 3601) },
  { weight: 1, arbitrary: fc.integer({ min: INT32_MIN, max: INT32_MAX }) },
);
const days = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(0, 1, 7, 30, 365) }, { weight: 2, arbitrary: int32 });
const double = fc.oneof(
  { weight: 12, arbitrary: fc.double({ min: 0, max: 5_000, noNaN: true }) },
  { weight: 2, arbitrary: fc.constantFrom(NaN, Infinity, -Infinity, -0, 0, 3_600_000, 3_600_000.000_001, Number.MAX_VALUE, Number.MIN_VALUE, -Number.MIN_VALUE, 2 ** 53, -1) },
  { weight: 1, arbitrary: fc.double() },
);
const fraction = fc.oneof(
  { weight: 4, arbitrary: fc.double({ min: 0, max: 1, noNaN: true }) },
  { weight: 2, arbitrary: fc.constantFrom(NaN, Infinity, -Infinity, -0, 0, 1, 0.95, 1 - Number.EPSILON, Number.MIN_VALUE) },
  { weight: 1, arbitrary: fc.double() },
);
const enumValue = (max: number) => fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max }) }, { weight: 1, arbitrary: fc.integer({ min: INT32_MIN, max: INT32_MAX }) });
const nowSeconds = () => BigInt(Math.floor(Date.now() / 1000));
const timestamp = fc.oneof(
  { weight: 10, arbitrary: fc.integer({ min: -30 * 86_400, max: 0 }).map((off) => ({ seconds: nowSeconds() + BigInt(off), nanos: 0 })) },
  { weight: 1, arbitrary: fc.constantFrom(4 * 60, 6 * 60, 3_600, 100 * 365 * 86_400).map((ahead) => ({ seconds: nowSeconds() + BigInt(ahead), nanos: 0 })) },
  { weight: 1, arbitrary: fc.constantFrom(-62_135_596_800n, -1n, 0n, 1n, 946_684_800n, 253_402_300_799n, 2n ** 62n, -(2n ** 63n), 2n ** 63n - 1n).map((seconds) => ({ seconds, nanos: 0 })) },
  { weight: 1, arbitrary: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((seconds) => ({ seconds, nanos: 0 })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: -86_400, max: 0 }), fc.oneof(fc.integer({ min: 0, max: 999_999_999 }), fc.constantFrom(-1, 1_000_000_000, INT32_MAX, INT32_MIN)))
      .map(([off, nanos]) => ({ seconds: nowSeconds() + BigInt(off), nanos })),
  },
);
/** x-user-id metadata: printable ASCII only (what grpc-js lets a client send). */
const header = fc.option(
  fc.oneof(fc.constantFrom("hdr-user", "$ne", '{"$ne":null}', "a.b", "x".repeat(257)), fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 40 }).filter((s) => /^[!-~](?:[ -~]*[!-~])?$/.test(s))),
  { nil: undefined },
);

type Init<S extends DescMessage> = MessageInitShape<S>;

const clickInit: fc.Arbitrary<Init<typeof LogClickRequestSchema>> = fc.record(
  { userId: optionalId, sessionId: optionalId, productId: id, rank: int32, searchQuery: query, variant, responseTimeMs: double, source: enumValue(5), timestamp, eventId: key, impressionId: key },
  { requiredKeys: ["productId", "rank", "searchQuery", "variant", "responseTimeMs", "eventId"] },
);
/** Team names of interleaved lists: mostly the rankers GetInterleavingResult is asked about. */
const RANKERS = ["ranker_a", "ranker_b", "a.b", "__proto__"];
const ranker = fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...RANKERS) }, { weight: 2, arbitrary: variant }, { weight: 1, arbitrary: fc.constant("") });
const teams = fc.oneof(
  { weight: 8, arbitrary: fc.constant<string[]>([]) },
  { weight: 6, arbitrary: fc.array(fc.constantFrom(...RANKERS.slice(0, 2)), { minLength: 1, maxLength: 10 }) },
  { weight: 2, arbitrary: fc.array(ranker, { maxLength: 6 }) },
  { weight: 1, arbitrary: fc.constantFrom(1000, 1001).map((n) => Array.from({ length: n }, (_, i) => RANKERS[i % 2]!)) },
);
const impressionInit: fc.Arbitrary<Init<typeof LogImpressionRequestSchema>> = fc.record(
  { userId: optionalId, sessionId: optionalId, query, variant, resultsCount: int32, responseTimeMs: double, timestamp, eventId: key, impressionId: key, teams },
  { requiredKeys: ["query", "variant", "resultsCount", "responseTimeMs", "eventId"] },
);
const eventInit: fc.Arbitrary<Init<typeof EventSchema>> = fc.oneof(
  { weight: 5, arbitrary: clickInit.map((value) => ({ kind: { case: "click" as const, value } })) },
  { weight: 5, arbitrary: impressionInit.map((value) => ({ kind: { case: "impression" as const, value } })) },
  { weight: 1, arbitrary: fc.constant({}) },
);
const filterInit = fc.record({ userId: optionalId, variant: optionalVariant, days }, { requiredKeys: [] });
/** Period edges: mostly within the last 400 days, else anything `timestamp` makes (future, invalid, bad nanos). */
const periodEdge = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: -400 * 86_400, max: 0 }).map((off) => ({ seconds: nowSeconds() + BigInt(off), nanos: 0 })) }, { weight: 2, arbitrary: timestamp });
/** A window: the last `days` days, a valid period, or any mix of the three fields. */
const windowInit = fc.oneof(
  { weight: 3, arbitrary: fc.record({ days }, { requiredKeys: [] }) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(fc.integer({ min: -400 * 86_400, max: 0 }), fc.option(fc.integer({ min: 1, max: 366 * 86_400 }), { nil: undefined }))
      .map(([off, length]) => {
        const start = nowSeconds() + BigInt(off);
        return { startTime: { seconds: start, nanos: 0 }, ...(length === undefined ? {} : { endTime: { seconds: start + BigInt(length), nanos: 0 } }) };
      }),
  },
  { weight: 2, arbitrary: fc.record({ days, startTime: periodEdge, endTime: periodEdge }, { requiredKeys: [] }) },
);
/** Zones (lower-cased) that must be answered OK in any case: MongoDB has them under their proper spelling. */
const SERVED_ZONES = new Set(["utc", "europe/berlin", "america/new_york"]);
const TIME_ZONES = ["", "UTC", "Europe/Berlin", "America/New_York", "Asia/Kathmandu", "Etc/GMT+12", "EST", "europe/berlin", "GMT+1", "Z", "America/Coyhaique", "+05:30", "Mars/Olympus"];

const inits = {
  logClick: clickInit,
  logImpression: impressionInit,
  logEvents: fc.record({ events: fc.array(eventInit, { maxLength: 12 }) }),
  streamEvents: fc.array(fc.record({ events: fc.array(eventInit, { maxLength: 8 }) }), { maxLength: 3 }),
  getCtr: filterInit,
  getRankMetrics: filterInit,
  getResponseTimeMetrics: filterInit,
  getUserSummary: fc.record({ userId: fc.oneof({ weight: 6, arbitrary: id }, { weight: 1, arbitrary: fc.constant("") }), days }, { requiredKeys: ["userId"] }),
  getVariantComparison: fc.record(
    {
      days,
      control: optionalVariant,
      confidence: fraction,
      expectedSplit: fc.dictionary(maybeHuge(fc.oneof(fc.constantFrom(...VARIANTS), hostile), 10), fc.oneof({ weight: 4, arbitrary: fc.double({ min: 0.1, max: 10, noNaN: true }) }, { weight: 1, arbitrary: double }), { maxKeys: 4 }),
      latencyThreshold: fraction,
      minImpressions: fc.oneof(fc.bigInt({ min: 0n, max: 1000n }), fc.constantFrom(-1n, 2n ** 53n - 1n, 2n ** 53n, -(2n ** 63n), 2n ** 63n - 1n)),
    },
    { requiredKeys: [] },
  ),
  getTopQueries: fc.tuple(windowInit, fc.record({ variant: optionalVariant, limit: int32, orderBy: enumValue(4) }, { requiredKeys: [] })).map(([window, rest]) => ({ ...window, ...rest })),
  getTimeSeries: fc.record(
    {
      days,
      userId: optionalId,
      variant: optionalVariant,
      granularity: enumValue(2),
      timeZone: maybeHuge(fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...TIME_ZONES) }, { weight: 2, arbitrary: hostile }), 10),
    },
    { requiredKeys: [] },
  ),
  watchMetrics: fc.record({ userId: optionalId, variant: optionalVariant, days, intervalSeconds: int32 }, { requiredKeys: [] }),
  getInterleavingResult: fc
    .tuple(
      windowInit,
      fc.record(
        { rankerA: fc.oneof({ weight: 2, arbitrary: fc.constant("ranker_a") }, { weight: 1, arbitrary: ranker }), rankerB: fc.oneof({ weight: 2, arbitrary: fc.constant("ranker_b") }, { weight: 1, arbitrary: ranker }), variant: optionalVariant, confidence: fraction },
        { requiredKeys: [] },
      ),
    )
    .map(([window, rest]) => ({ ...window, ...rest })),
  reset: fc.constant({}),
};
type Rpc = keyof typeof inits;
const SCHEMAS = {
  logClick: LogClickRequestSchema,
  logImpression: LogImpressionRequestSchema,
  logEvents: LogEventsRequestSchema,
  streamEvents: StreamEventsRequestSchema,
  getCtr: GetCtrRequestSchema,
  getRankMetrics: GetRankMetricsRequestSchema,
  getResponseTimeMetrics: GetResponseTimeMetricsRequestSchema,
  getUserSummary: GetUserSummaryRequestSchema,
  getVariantComparison: GetVariantComparisonRequestSchema,
  getTopQueries: GetTopQueriesRequestSchema,
  getTimeSeries: GetTimeSeriesRequestSchema,
  watchMetrics: WatchMetricsRequestSchema,
  getInterleavingResult: GetInterleavingResultRequestSchema,
  reset: ResetRequestSchema,
} as const satisfies Record<Rpc, DescMessage>;

/** The typed cases: one RPC each, with optional x-user-id metadata and a (never valid) bearer token. */
interface TypedCase {
  rpc: Rpc;
  /** The request init; for streamEvents an array of batch inits. */
  init: unknown;
  header: string | undefined;
  token: string | undefined;
}
const WEIGHTS: Record<Rpc, number> = {
  logClick: 10,
  logImpression: 10,
  logEvents: 8,
  streamEvents: 3,
  getCtr: 6,
  getRankMetrics: 4,
  getResponseTimeMetrics: 4,
  getUserSummary: 8,
  getVariantComparison: 8,
  getTopQueries: 4,
  getTimeSeries: 6,
  watchMetrics: 3,
  getInterleavingResult: 6,
  reset: 2,
};
const typedCase: fc.Arbitrary<TypedCase> = fc.oneof(
  ...(Object.keys(inits) as Rpc[]).map((rpc) => ({
    weight: WEIGHTS[rpc],
    arbitrary: fc.record({
      rpc: fc.constant(rpc),
      init: inits[rpc] as fc.Arbitrary<unknown>,
      header,
      token: rpc === "reset" ? fc.option(fc.oneof(fc.constant(ADMIN_TOKEN.toUpperCase()), fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 80 }).filter((s) => /^[!-~]+$/.test(s))), { nil: undefined }) : fc.constant(undefined),
    }),
  })),
);

// ---------------------------------------------------------------------------------------------
// Checks against MongoDB
// ---------------------------------------------------------------------------------------------

interface Counts {
  clicks: number;
  impressions: number;
}
async function counts(): Promise<Counts> {
  // Both collections' record counts in one command (exact on a cleanly running WiredTiger), so
  // a check costs the same however many documents the run has written.
  const rows = await h.server.store.collections.clicks
    .aggregate<{ ns: string; count: number }>([{ $collStats: { count: {} } }, { $unionWith: { coll: h.server.store.collections.impressions.collectionName, pipeline: [{ $collStats: { count: {} } }] } }, { $project: { _id: 0, ns: 1, count: 1 } }])
    .toArray();
  const of = (name: string) => Number(rows.find((r) => r.ns.endsWith(`.${name}`))?.count ?? 0);
  return { clicks: of(h.server.store.collections.clicks.collectionName), impressions: of(h.server.store.collections.impressions.collectionName) };
}

type Bounds = [lo: number, hi: number];

/**
 * What the server counted at its own `now` (somewhere between `before` and `after`) over a
 * `days` window lies between these: events since after - days, and since before - days. One
 * command for both collections; `filter` is matched literally (it is a plain equality filter).
 */
async function windowCounts(filter: Filter<ClickDocument & ImpressionDocument>, days: number, before: number, after: number): Promise<{ clicks: Bounds; impressions: Bounds }> {
  const c = h.server.store.collections;
  const stages = [{ $match: { ...filter, timestamp: { $gte: new Date(before - days * DAY_MS) } } }, { $project: { _id: 0, timestamp: 1 } }];
  const rows = await c.clicks
    .aggregate<{ _id: string; hi: number; lo: number }>([
      ...stages,
      { $set: { k: "clicks" } },
      { $unionWith: { coll: c.impressions.collectionName, pipeline: [...stages, { $set: { k: "impressions" } }] } },
      { $group: { _id: "$k", hi: { $sum: 1 }, lo: { $sum: { $cond: [{ $gte: ["$timestamp", new Date(after - days * DAY_MS)] }, 1, 0] } } } },
    ])
    .toArray();
  const of = (k: string): Bounds => {
    const row = rows.find((r) => r._id === k);
    return [Number(row?.lo ?? 0), Number(row?.hi ?? 0)];
  };
  return { clicks: of("clicks"), impressions: of("impressions") };
}
function expectBetween(label: string, value: bigint | number, [lo, hi]: Bounds): void {
  const n = Number(value);
  expect(n >= lo && n <= hi, `${label}: ${n} not within [${lo}, ${hi}]`).toBe(true);
}

const fold = (ms: number) => (ms === 0 ? 0 : ms);

function expectClickDocument(label: string, doc: ClickDocument, r: LogClickRequest, eventId: string, userId: string): void {
  expect({ ...doc, _id: undefined }, label).toMatchObject({
    event_id: r.eventId === "" ? eventId : r.eventId,
    user_id: userId,
    product_id: r.productId,
    rank: r.rank,
    search_query: r.searchQuery,
    variant: r.variant,
    response_time_ms: fold(r.responseTimeMs),
    session_id: r.sessionId === "" ? null : r.sessionId,
  });
  expect(doc.impression_id, label).toBe(r.impressionId === "" ? undefined : r.impressionId);
}

function expectImpressionDocument(label: string, doc: ImpressionDocument, r: LogImpressionRequest, impressionId: string, userId: string): void {
  expect({ ...doc, _id: undefined }, label).toMatchObject({
    impression_id: r.impressionId || r.eventId || impressionId,
    event_id: r.eventId || r.impressionId || impressionId,
    user_id: userId,
    query: r.query,
    variant: r.variant,
    results_count: r.resultsCount,
    response_time_ms: fold(r.responseTimeMs),
    session_id: r.sessionId === "" ? null : r.sessionId,
  });
  expect(doc.teams, label).toEqual(r.teams.length === 0 ? undefined : r.teams);
}

async function expectClickStoredVerbatim(label: string, r: LogClickRequest, eventId: string, userId: string): Promise<void> {
  const doc = await h.server.store.collections.clicks.findOne({ event_id: eventId });
  expect(doc, `${label}: click ${eventId} not stored`).not.toBeNull();
  expectClickDocument(label, doc!, r, eventId, userId);
}

async function expectImpressionStoredVerbatim(label: string, r: LogImpressionRequest, impressionId: string, userId: string): Promise<void> {
  const doc = await h.server.store.collections.impressions.findOne({ impression_id: impressionId });
  expect(doc, `${label}: impression ${impressionId} not stored`).not.toBeNull();
  expectImpressionDocument(label, doc!, r, impressionId, userId);
}

/** A verdict's status: OK when nothing is broken, else INVALID_ARGUMENT naming a broken field. */
function expectVerdict(label: string, v: Verdict, o: Outcome): void {
  if (v.broken.length > 0) {
    expect(o.code, `${label}: should be INVALID_ARGUMENT for ${JSON.stringify(v.broken)}, got ${describeOutcome(o)}`).toBe(Status.INVALID_ARGUMENT);
  } else if (v.maybe.length === 0) {
    expect(o.code, `${label}: should be OK, got ${describeOutcome(o)}`).toBe(Status.OK);
  }
  if (o.code === Status.INVALID_ARGUMENT) {
    expect(namesOneOf(o.details, [...v.broken, ...v.maybe]), `${label}: ${describeOutcome(o)} names none of ${JSON.stringify([...v.broken, ...v.maybe])}`).toBe(true);
  }
}

/** Per-event outcomes of LogEvents/StreamEvents against the oracle; returns accepted clicks and impressions. */
async function expectEventResults(label: string, events: readonly Event[], results: readonly EventResult[], firstIndex: number, header: string | undefined): Promise<{ clicks: number; impressions: number }> {
  const now = Date.now();
  const accepted = { clicks: 0, impressions: 0 };
  const acceptedClicks: { r: LogClickRequest; id: string }[] = [];
  const acceptedImpressions: { r: LogImpressionRequest; id: string }[] = [];
  events.forEach((e, i) => {
    const res = results[i]!;
    const at = `${label} events[${firstIndex + i}]`;
    expect(Number(res.index), at).toBe(firstIndex + i);
    const v = eventVerdict(e, header, now);
    const prefix = `events[${firstIndex + i}].${e.kind.case === undefined ? "" : `${e.kind.case}.`}`;
    if (v.broken.length > 0) expect(EventOutcome[res.outcome], `${at}: ${JSON.stringify(v.broken)} broken`).toBe("REJECTED");
    if (v.broken.length === 0 && v.maybe.length === 0) expect(["ACCEPTED", "DUPLICATE"], `${at}: ${res.field} ${res.reason}`).toContain(EventOutcome[res.outcome]);
    if (res.outcome === EventOutcome.REJECTED) {
      expect(namesOneOf(`${res.field}: ${res.reason}`, [...v.broken, ...v.maybe].map((f) => prefix + f)), `${at}: rejected as ${res.field}: ${res.reason}`).toBe(true);
      // The contract: a rejected event's result carries the id as the client sent it (empty without one).
      expect(res.eventId, at).toBe(e.kind.case === undefined ? "" : e.kind.value.eventId);
    }
    if (res.outcome === EventOutcome.DUPLICATE) expect(hasClientKey(e), `${at}: a duplicate without a client key`).toBe(true);
    if (res.outcome === EventOutcome.ACCEPTED) {
      if (e.kind.case === "click") {
        accepted.clicks++;
        acceptedClicks.push({ r: e.kind.value, id: res.eventId });
      } else if (e.kind.case === "impression") {
        accepted.impressions++;
        acceptedImpressions.push({ r: e.kind.value, id: res.eventId });
      }
    }
  });
  // Accepted events are stored verbatim: $-prefixed and dotted strings are values, not operators.
  const c = h.server.store.collections;
  const [clickDocs, impressionDocs] = await Promise.all([
    acceptedClicks.length === 0 ? [] : c.clicks.find({ event_id: { $in: acceptedClicks.map((x) => x.id) } }).toArray(),
    acceptedImpressions.length === 0 ? [] : c.impressions.find({ event_id: { $in: acceptedImpressions.map((x) => x.id) } }).toArray(),
  ]);
  for (const { r, id } of acceptedClicks) {
    const doc = clickDocs.find((d) => d.event_id === id);
    expect(doc, `${label}: click ${id} not stored`).toBeDefined();
    expectClickDocument(label, doc!, r, id, effectiveUser(r.userId, header) || doc!.user_id);
  }
  for (const { r, id } of acceptedImpressions) {
    // An impression is unique by impression_id (its event_id alone may repeat under another impression_id).
    const doc = impressionDocs.find((d) => d.event_id === id && d.impression_id === (r.impressionId || id));
    expect(doc, `${label}: impression ${id} not stored`).toBeDefined();
    expectImpressionDocument(label, doc!, r, doc!.impression_id, effectiveUser(r.userId, header) || doc!.user_id);
  }
  return accepted;
}

interface Timing {
  before: number;
  after: number;
}

/**
 * Checks one answer to one decoded request, whichever way it was sent. `header` is the x-user-id
 * metadata the call carried. Writes compare `was` and `now` (collection counts around the call).
 */
async function verify(label: string, rpc: Rpc, request: unknown, header: string | undefined, o: Outcome, t: Timing, was: Counts | undefined, is: Counts | undefined): Promise<void> {
  const delta = was && is ? { clicks: is.clicks - was.clicks, impressions: is.impressions - was.impressions } : undefined;
  const noWrite = () => expect(delta, `${label}: wrote despite ${describeOutcome(o)}`).toEqual({ clicks: 0, impressions: 0 });
  const now = Date.now();
  switch (rpc) {
    case "logClick": {
      const r = request as LogClickRequest;
      expectCode(label, o, [Status.OK, Status.INVALID_ARGUMENT]);
      expectVerdict(label, clickVerdict(r, header, now), o);
      if (o.code !== Status.OK) return noWrite();
      const res = o.value as { eventId: string; userId: string; productId: string };
      expect(delta!.impressions, label).toBe(0);
      expect([0, 1], label).toContain(delta!.clicks);
      if (r.eventId !== "") expect(res.eventId, label).toBe(r.eventId);
      if (effectiveUser(r.userId, header) !== "" && delta!.clicks === 1) expect(res.userId, label).toBe(effectiveUser(r.userId, header));
      if (delta!.clicks === 0) expect(r.eventId, `${label}: OK without writing, yet no event_id to repeat`).not.toBe("");
      else await expectClickStoredVerbatim(label, r, res.eventId, res.userId);
      return;
    }
    case "logImpression": {
      const r = request as LogImpressionRequest;
      expectCode(label, o, [Status.OK, Status.INVALID_ARGUMENT]);
      expectVerdict(label, impressionVerdict(r, header, now), o);
      if (o.code !== Status.OK) return noWrite();
      const res = o.value as { impressionId: string; userId: string };
      expect(delta!.clicks, label).toBe(0);
      expect([0, 1], label).toContain(delta!.impressions);
      if (delta!.impressions === 0) expect(r.eventId !== "" || r.impressionId !== "", `${label}: OK without writing, yet no key to repeat`).toBe(true);
      else {
        if (r.impressionId !== "") expect(res.impressionId, label).toBe(r.impressionId);
        if (effectiveUser(r.userId, header) !== "") expect(res.userId, label).toBe(effectiveUser(r.userId, header));
        await expectImpressionStoredVerbatim(label, r, res.impressionId, res.userId);
      }
      return;
    }
    case "logEvents": {
      const r = request as { events: Event[] };
      if (r.events.length > 1000) {
        expectCode(label, o, [Status.INVALID_ARGUMENT]);
        expect(o.details, label).toMatch(/^events: must hold at most 1000 events/);
        return noWrite();
      }
      expectCode(label, o, [Status.OK]);
      const res = o.value as { results: EventResult[]; accepted: bigint; duplicates: bigint; rejected: bigint };
      expect(res.results.length, label).toBe(r.events.length);
      const accepted = await expectEventResults(label, r.events, res.results, 0, header);
      expect(Number(res.accepted), label).toBe(accepted.clicks + accepted.impressions);
      expect(Number(res.accepted + res.duplicates + res.rejected), label).toBe(r.events.length);
      expect(delta, `${label}: stored documents vs ACCEPTED results`).toEqual(accepted);
      return;
    }
    case "streamEvents": {
      const batches = request as { events: Event[] }[];
      const total = batches.reduce((n, b) => n + b.events.length, 0);
      const oversized = batches.findIndex((b) => b.events.length > 1000);
      if (oversized >= 0) {
        expectCode(label, o, [Status.INVALID_ARGUMENT]);
        expect(o.details, label).toMatch(new RegExp(`^batches\\[${oversized}\\]\\.events: must hold at most 1000`));
        const before = batches.slice(0, oversized).reduce((n, b) => n + b.events.length, 0);
        expect(delta!.clicks + delta!.impressions, label).toBeLessThanOrEqual(before);
        return;
      }
      expectCode(label, o, [Status.OK]);
      const res = o.value as { accepted: bigint; duplicates: bigint; rejected: bigint; batches: bigint; firstRejections: EventResult[] };
      expect(Number(res.batches), label).toBe(batches.length);
      expect(Number(res.accepted + res.duplicates + res.rejected), label).toBe(total);
      expect(delta!.clicks + delta!.impressions, `${label}: stored documents vs accepted`).toBe(Number(res.accepted));
      const all = batches.flatMap((b) => b.events);
      const rejected = all.flatMap((e, i) => (eventVerdict(e, header, now).broken.length > 0 ? [i] : []));
      const reported = res.firstRejections.map((x) => Number(x.index));
      // The first 20 rejections, in stream order; every event the oracle rejects is among them
      // up to the last one reported.
      expect(reported.length, label).toBe(Math.min(20, Number(res.rejected)));
      expect(reported, label).toEqual([...reported].sort((a, b) => a - b));
      const horizon = reported.length < 20 ? Infinity : reported.at(-1)!;
      expect(reported, label).toEqual(expect.arrayContaining(rejected.filter((i) => i <= horizon)));
      for (const x of res.firstRejections) {
        const e = all[Number(x.index)]!;
        const v = eventVerdict(e, header, now);
        const prefix = `events[${Number(x.index)}].${e.kind.case === undefined ? "" : `${e.kind.case}.`}`;
        expect(namesOneOf(`${x.field}: ${x.reason}`, [...v.broken, ...v.maybe].map((f) => prefix + f)), `${label}: rejected as ${x.field}: ${x.reason}`).toBe(true);
      }
      return;
    }
    case "getCtr":
    case "getRankMetrics":
    case "getResponseTimeMetrics": {
      const r = request as { userId: string; variant: string; days: number };
      expectCode(label, o, [Status.OK, Status.INVALID_ARGUMENT]);
      expectVerdict(label, verdict(filterRules(r)), o);
      if (o.code !== Status.OK) return;
      // Literal filters: a user id such as {"$ne": null} matches only itself, in the rollups too.
      const filter: Filter<ClickDocument & ImpressionDocument> = { ...(r.userId === "" ? {} : { user_id: r.userId }), ...(r.variant === "" ? {} : { variant: r.variant }) };
      const bounds = await windowCounts(filter, windowDays(r.days), t.before, t.after);
      if (rpc === "getCtr") {
        const res = o.value as { clicks: bigint; impressions: bigint; periodDays: number };
        expect(res.periodDays, label).toBe(windowDays(r.days));
        expectBetween(`${label} clicks`, res.clicks, bounds.clicks);
        expectBetween(`${label} impressions`, res.impressions, bounds.impressions);
      } else if (rpc === "getRankMetrics") {
        expectBetween(`${label} clicks`, (o.value as { totalClicks: bigint }).totalClicks, bounds.clicks);
      } else {
        expectBetween(`${label} impressions`, (o.value as { count: bigint }).count, bounds.impressions);
      }
      return;
    }
    case "getUserSummary": {
      const r = request as { userId: string; days: number };
      expectCode(label, o, [Status.OK, Status.INVALID_ARGUMENT]);
      expectVerdict(label, verdict([...idRule("user_id", r.userId, 256, true), ...daysRule(r.days)]), o);
      if (o.code !== Status.OK) return;
      const res = o.value as { userId: string; totalClicks: bigint; totalImpressions: bigint };
      expect(res.userId, label).toBe(r.userId);
      const bounds = await windowCounts({ user_id: r.userId }, windowDays(r.days), t.before, t.after);
      expectBetween(`${label} clicks`, res.totalClicks, bounds.clicks);
      expectBetween(`${label} impressions`, res.totalImpressions, bounds.impressions);
      return;
    }
    case "getVariantComparison": {
      const r = request as { days: number; control: string; confidence?: number; expectedSplit: Record<string, number>; latencyThreshold?: number; minImpressions?: bigint };
      expectCode(label, o, [Status.OK, Status.INVALID_ARGUMENT]);
      const min = r.minImpressions === undefined ? 100 : Number(r.minImpressions);
      const broken = [
        ...daysRule(r.days),
        ...variantRule("control", r.control, true),
        ...(r.confidence === undefined || (r.confidence >= 0.5 && r.confidence <= 0.9999) ? [] : ["confidence"]),
        ...(r.latencyThreshold === undefined || (Number.isFinite(r.latencyThreshold) && r.latencyThreshold >= 0) ? [] : ["latency_threshold"]),
        ...(Number.isSafeInteger(min) && min >= 0 ? [] : ["min_impressions"]),
        ...Object.entries(r.expectedSplit).flatMap(([k, w]) => (w >= 1e-6 && w <= 1e6 ? [] : [`expected_split[${k}]`])),
      ];
      // A split must name every variant with impressions: that depends on the data.
      expectVerdict(label, verdict(broken, Object.keys(r.expectedSplit).length > 0 ? ["expected_split"] : []), o);
      return;
    }
    case "getTopQueries": {
      const r = request as TopQueriesRequest;
      expectCode(label, o, [Status.OK, Status.INVALID_ARGUMENT]);
      const window = windowRule(r, now);
      const broken = [...window.broken, ...variantRule("variant", r.variant, true), ...(r.limit >= 0 && r.limit <= 1000 ? [] : ["limit"]), ...(r.orderBy >= 0 && r.orderBy <= 4 ? [] : ["order_by"])];
      expectVerdict(label, verdict(broken, window.maybe), o);
      if (o.code === Status.OK) await expectTopQueries(label, r, o.value as GetTopQueriesResponse, t);
      return;
    }
    case "getTimeSeries": {
      const r = request as { days: number; userId: string; variant: string; granularity: number; timeZone: string };
      expectCode(label, o, [Status.OK, Status.INVALID_ARGUMENT]);
      let zone: Verdict = verdict([]);
      if (r.timeZone !== "") {
        try {
          new Intl.DateTimeFormat("en-US", { timeZone: r.timeZone });
          // ICU knows it; MongoDB's zone database may not, except for zones the server spells
          // properly itself (any case of a zone MongoDB has).
          zone = SERVED_ZONES.has(r.timeZone.toLowerCase()) ? verdict([]) : verdict([], ["time_zone"]);
        } catch {
          zone = verdict(["time_zone"]);
        }
      }
      const broken = [...filterRules(r), ...(r.granularity >= 0 && r.granularity <= 2 ? [] : ["granularity"]), ...zone.broken];
      expectVerdict(label, verdict(broken, zone.maybe), o);
      return;
    }
    case "watchMetrics": {
      const r = request as { userId: string; variant: string; days: number; intervalSeconds: number };
      expectCode(label, o, [Status.OK, Status.INVALID_ARGUMENT]);
      expectVerdict(label, verdict([...filterRules(r), ...(r.intervalSeconds >= 0 && r.intervalSeconds <= 3600 ? [] : ["interval_seconds"])]), o);
      if (o.code === Status.OK) expect((o.value as { periodDays: number }).periodDays, label).toBe(windowDays(r.days));
      return;
    }
    case "getInterleavingResult": {
      const r = request as { days: number; startTime?: Timestamp; endTime?: Timestamp; rankerA: string; rankerB: string; variant: string; confidence?: number };
      expectCode(label, o, [Status.OK, Status.INVALID_ARGUMENT]);
      const window = windowRule(r, now);
      // Both empty asks for the matrix of pairs only.
      const matrixOnly = r.rankerA === "" && r.rankerB === "";
      const rankers = matrixOnly ? [] : [...variantRule("ranker_a", r.rankerA), ...variantRule("ranker_b", r.rankerB)];
      const broken = [
        ...window.broken,
        ...variantRule("variant", r.variant, true),
        ...rankers,
        ...(!matrixOnly && rankers.length === 0 && r.rankerA === r.rankerB ? ["ranker_b"] : []),
        ...(r.confidence === undefined || (r.confidence >= 0.5 && r.confidence <= 0.9999) ? [] : ["confidence"]),
      ];
      expectVerdict(label, verdict(broken, window.maybe), o);
      if (o.code === Status.OK) await expectInterleaving(label, r, o.value as GetInterleavingResultResponse, t);
      return;
    }
    case "reset": {
      expectCode(label, o, [Status.PERMISSION_DENIED]);
      return noWrite();
    }
  }
}

/**
 * GetInterleavingResult against the stored events, computed here from the README's rules: the
 * window's impressions whose shown positions (0 .. min(len(teams), results_count) - 1) include
 * both rankers, each with all its linked clicks; each distinct clicked shown position r credits
 * teams[r] once, a click elsewhere is uncredited. A trailing window's edge moved between `t.before` and
 * `t.after`, so every count lies between those over the narrower and the wider set of searches
 * (each only grows with more searches).
 */
async function expectInterleaving(label: string, r: { days: number; startTime?: Timestamp; endTime?: Timestamp; rankerA: string; rankerB: string; variant: string; confidence?: number }, res: GetInterleavingResultResponse, t: Timing): Promise<void> {
  expect([res.rankerA, res.rankerB, res.confidence], label).toEqual([r.rankerA, r.rankerB, r.confidence ?? 0.95]);
  const c = h.server.store.collections;
  // The searches that may be in the window: from its earliest possible start.
  const start = r.startTime === undefined ? new Date(t.before - windowDays(r.days) * DAY_MS) : timestampDate(r.startTime);
  const surelyFrom = r.startTime === undefined ? t.after - windowDays(r.days) * DAY_MS : start.getTime();
  const days = r.startTime === undefined ? [windowDays(r.days)] : [t.before, t.after].map((now) => Math.max(1, Math.ceil(((r.endTime === undefined ? now : timestampDate(r.endTime).getTime()) - start.getTime()) / DAY_MS)));
  expect(days, `${label}: period_days ${res.periodDays}`).toContain(res.periodDays);
  const searches = await c.impressions
    .find(
      { timestamp: { $gte: start, ...(r.endTime === undefined ? {} : { $lt: timestampDate(r.endTime) }) }, teams: { $all: [r.rankerA, r.rankerB] }, ...(r.variant === "" ? {} : { variant: r.variant }) },
      { projection: { _id: 0, impression_id: 1, user_id: 1, teams: 1, timestamp: 1, results_count: 1 } },
    )
    .toArray();
  const clicks = searches.length === 0 ? [] : await c.clicks.find({ impression_id: { $in: searches.map((s) => s.impression_id) } }, { projection: { _id: 0, impression_id: 1, rank: 1 } }).toArray();
  const tally = (sure: boolean) => {
    const n = { impressions: 0, winsA: 0, winsB: 0, ties: 0, uncreditedClicks: 0, users: new Set<string>() };
    for (const s of searches) {
      if (sure && s.timestamp.getTime() < surelyFrom) continue;
      const shown = s.teams!.slice(0, Math.min(s.teams!.length, Number(s.results_count)));
      if (!shown.includes(r.rankerA) || !shown.includes(r.rankerB)) continue;
      n.impressions++;
      const credited = new Set<number>();
      for (const k of clicks) {
        if (k.impression_id !== s.impression_id) continue;
        if (Number(k.rank) < shown.length) credited.add(Number(k.rank));
        else n.uncreditedClicks++;
      }
      let a = 0;
      let b = 0;
      for (const rank of credited) {
        if (shown[rank] === r.rankerA) a++;
        else if (shown[rank] === r.rankerB) b++;
      }
      if (a + b === 0) continue;
      n.users.add(s.user_id);
      if (a > b) n.winsA++;
      else if (b > a) n.winsB++;
      else n.ties++;
    }
    return { impressions: n.impressions, winsA: n.winsA, winsB: n.winsB, ties: n.ties, uncreditedClicks: n.uncreditedClicks, users: n.users.size };
  };
  const [lo, hi] = [tally(true), tally(false)];
  interleavingStats.answers++;
  if (hi.winsA + hi.winsB + hi.ties > 0) interleavingStats.decided++;
  for (const k of ["impressions", "winsA", "winsB", "ties", "uncreditedClicks", "users"] as const) expectBetween(`${label} ${k}`, res[k], [lo[k], hi[k]]);
  expect(res.usersPreferringA + res.usersPreferringB + res.usersTied, label).toBe(res.users);
  if (res.delta !== undefined) {
    expect(res.delta.value >= -0.5 && res.delta.value <= 0.5 && res.delta.low <= res.delta.value && res.delta.value <= res.delta.high, `${label}: delta ${JSON.stringify(res.delta)}`).toBe(true);
  }
  if (res.pValue !== undefined) expect(res.pValue >= 0 && res.pValue <= 1, `${label}: p ${res.pValue}`).toBe(true);
  expect(res.significant, label).toBe(res.pValue !== undefined && res.pValue < 1 - res.confidence);
  expect(res.preferred, label).toBe(!res.significant ? "" : res.delta!.value > 0 ? r.rankerA : r.rankerB);
}

type TopQueriesRequest = { days: number; startTime?: Timestamp; endTime?: Timestamp; variant: string; limit: number; orderBy: number };

/**
 * GetTopQueries against the stored events, computed here from the README's and the proto's
 * definitions (click attribution, core/click-attribution.ts): the window's searches (and
 * variant) per normalised query; a click naming a stored search's impression_id belongs to that
 * search (its timestamp, variant, query), at any rank, and one at a rank the search did not show
 * (rank >= results_count) is outside its results; a click without impression_id counts under its
 * own query, variant and timestamp. COEC = the query's linked clicks at shown ranks below 100
 * over the clicks expected of it, where each rank r < 100 its searches showed expects the
 * window's CTR of rank r over all variants (linked clicks at r of searches showing r / searches
 * showing r: unlinked clicks and clicks outside results are in neither). MRR and abandonment from
 * each search with results' first click at a shown rank (earliest timestamp, then lowest rank).
 * Exact only when no stored search or unlinked click lies where a trailing window's start may be
 * (between the call's start and end, `days` back): otherwise only the row count is checked.
 */
async function expectTopQueries(label: string, r: TopQueriesRequest, res: GetTopQueriesResponse, t: Timing): Promise<void> {
  const limit = r.limit === 0 ? 10 : r.limit;
  expect(res.queries.length, label).toBeLessThanOrEqual(limit);
  topQueriesStats.answers++;
  const c = h.server.store.collections;
  const CAP = 100;
  const span = windowDays(r.days) * DAY_MS;
  const start = r.startTime === undefined ? t.before - span : timestampDate(r.startTime).getTime();
  // A trailing window's events up to this instant may or may not be in it.
  const unsure = r.startTime === undefined ? t.after - span : start - 1;
  const m = { timestamp: { $gte: new Date(start), ...(r.endTime === undefined ? {} : { $lt: timestampDate(r.endTime) }) } };
  const [searches, unlinked] = await Promise.all([
    c.impressions.find(m, { projection: { _id: 0, impression_id: 1, variant: 1, query_normalized: 1, results_count: 1, timestamp: 1 } }).toArray(),
    c.clicks.find({ ...m, impression_id: { $exists: false } }, { projection: { _id: 0, variant: 1, query_normalized: 1, rank: 1, timestamp: 1 } }).toArray(),
  ]);
  if ([...searches, ...unlinked].some((e) => e.timestamp.getTime() <= unsure)) return;
  const linked = searches.length === 0 ? [] : await c.clicks.find({ impression_id: { $in: searches.map((s) => s.impression_id) } }, { projection: { _id: 0, impression_id: 1, rank: 1, timestamp: 1 } }).toArray();
  topQueriesStats.exact++;
  const clicksOf = new Map<string, { rank: number; t: number }[]>();
  for (const k of linked) clicksOf.set(k.impression_id!, [...(clicksOf.get(k.impression_id!) ?? []), { rank: Number(k.rank), t: k.timestamp.getTime() }]);
  const shown = new Array<number>(CAP).fill(0);
  const clicked = new Array<number>(CAP).fill(0);
  type Row = { searches: number; clicks: number; noResults: number; shown: number[]; shownClicks: number; outside: number; withResults: number; reciprocalRanks: number; firstClicked: number };
  const rows = new Map<string, Row>();
  const row = (q: string) => {
    let e = rows.get(q);
    if (!e) rows.set(q, (e = { searches: 0, clicks: 0, noResults: 0, shown: new Array<number>(CAP).fill(0), shownClicks: 0, outside: 0, withResults: 0, reciprocalRanks: 0, firstClicked: 0 }));
    return e;
  };
  const inVariant = (v: string) => r.variant === "" || v === r.variant;
  for (const s of searches) {
    const count = Number(s.results_count);
    const ranks = Math.min(count, CAP);
    const its = clicksOf.get(s.impression_id) ?? [];
    for (let k = 0; k < ranks; k++) shown[k]! += 1;
    for (const k of its) if (k.rank < count && k.rank < CAP) clicked[k.rank]! += 1;
    if (!inVariant(s.variant)) continue;
    const e = row(s.query_normalized);
    e.searches++;
    if (count === 0) e.noResults++;
    else e.withResults++;
    for (let k = 0; k < ranks; k++) e.shown[k]! += 1;
    e.clicks += its.length;
    for (const k of its) {
      if (k.rank >= count) e.outside++;
      else if (k.rank < CAP) e.shownClicks++;
    }
    const first = its.filter((k) => k.rank < count).sort((a, b) => a.t - b.t || a.rank - b.rank)[0];
    if (count > 0 && first !== undefined) {
      e.firstClicked++;
      e.reciprocalRanks += 1 / (first.rank + 1);
    }
  }
  for (const k of unlinked) if (inVariant(k.variant)) row(k.query_normalized).clicks++;
  const ctr = shown.map((n, k) => (n > 0 ? clicked[k]! / n : 0));
  expect(res.queries.length, label).toBe(Math.min(limit, rows.size));
  const near = (x: number | undefined, want: number) => x !== undefined && Math.abs(x - want) <= 1e-12 * Math.max(1, Math.abs(want));
  for (const q of res.queries) {
    const want = rows.get(q.query);
    const name = `${label} ${JSON.stringify(q.query)}`;
    expect(want, `${label}: ${JSON.stringify(q.query)} is no query of the window`).toBeDefined();
    expect([Number(q.searches), Number(q.clicks), Number(q.noResults), Number(q.clicksOutsideResults)], name).toEqual([want!.searches, want!.clicks, want!.noResults, want!.outside]);
    const expected = want!.shown.reduce((sum, n, k) => sum + n * ctr[k]!, 0);
    if (expected === 0) expect(q.coec, `${name}: nothing expected`).toBeUndefined();
    else {
      const coec = want!.shownClicks / expected;
      expect(near(q.coec, coec), `${name}: coec ${q.coec} vs ${coec}`).toBe(true);
      topQueriesStats.coec++;
    }
    if (want!.withResults === 0) expect([q.mrr, q.abandonmentRate], `${name}: no searches with results`).toEqual([undefined, undefined]);
    else {
      expect(near(q.mrr, want!.reciprocalRanks / want!.withResults), `${name}: mrr ${q.mrr} vs ${want!.reciprocalRanks / want!.withResults}`).toBe(true);
      expect(near(q.abandonmentRate, (want!.withResults - want!.firstClicked) / want!.withResults), `${name}: abandonment ${q.abandonmentRate}`).toBe(true);
      topQueriesStats.mrr++;
    }
  }
}

const isWrite = (rpc: Rpc) => rpc === "logClick" || rpc === "logImpression" || rpc === "logEvents" || rpc === "streamEvents" || rpc === "reset";

// ---------------------------------------------------------------------------------------------
// Typed calls
// ---------------------------------------------------------------------------------------------

async function callTyped(c: TypedCase, request: unknown): Promise<Outcome> {
  const options: CallOptions = { timeoutMs: CALL_TIMEOUT_MS, ...(c.header === undefined ? {} : { userId: c.header }), ...(c.token === undefined ? {} : { metadata: { authorization: `Bearer ${c.token}` } }) };
  const client = h.client;
  switch (c.rpc) {
    case "streamEvents":
      return settle(client.streamEvents(request as Init<typeof StreamEventsRequestSchema>[], options));
    case "watchMetrics": {
      const controller = new AbortController();
      return settle(
        (async () => {
          // Take one snapshot, then cancel.
          for await (const snapshot of client.watchMetrics(request as Init<typeof WatchMetricsRequestSchema>, { ...options, signal: controller.signal })) {
            controller.abort();
            return snapshot;
          }
          throw new Error("WatchMetrics ended without a snapshot");
        })(),
      );
    }
    default: {
      const method = client[c.rpc] as (r: unknown, o: CallOptions) => Promise<unknown>;
      return settle(method(request, options));
    }
  }
}

function encodedSize(c: TypedCase, request: unknown): number {
  if (c.rpc === "streamEvents") return Math.max(0, ...(request as MessageShape<typeof StreamEventsRequestSchema>[]).map((b) => toBinary(StreamEventsRequestSchema, b).length));
  return toBinary(SCHEMAS[c.rpc] as DescMessage, request as MessageShape<DescMessage>).length;
}

let typedCount = 0;
const codesSeen = new Map<string, number>();
const tally = (rpc: string, o: Outcome) => codesSeen.set(`${rpc} ${Status[o.code]}`, (codesSeen.get(`${rpc} ${Status[o.code]}`) ?? 0) + 1);
const timeSpent = new Map<string, number>();
const timed = async <T>(key: string, f: () => Promise<T>): Promise<T> => {
  const t = performance.now();
  try {
    return await f();
  } finally {
    timeSpent.set(key, (timeSpent.get(key) ?? 0) + performance.now() - t);
  }
};

/**
 * Several lanes fuzz at once (the server and MongoDB are mostly waited on), so checks that count
 * documents take a lock: a write runs alone, between the counts before and after it; reads
 * checked against direct counts run only while no write is in flight (a write's events and its
 * rollup update are two steps). Every other call runs freely alongside.
 */
class ReadWriteLock {
  private active = 0; // readers in, or -1 for a writer
  private readonly waiting: { write: boolean; go: () => void }[] = [];

  async run<T>(write: boolean, f: () => Promise<T>): Promise<T> {
    await new Promise<void>((go) => {
      this.waiting.push({ write, go });
      this.pump();
    });
    try {
      return await f();
    } finally {
      this.active = write ? 0 : this.active - 1;
      this.pump();
    }
  }

  /** First come, first served: a waiting writer holds back the readers behind it. */
  private pump(): void {
    while (this.waiting.length > 0) {
      const head = this.waiting[0]!;
      if (head.write ? this.active !== 0 : this.active < 0) return;
      this.active = head.write ? -1 : this.active + 1;
      this.waiting.shift();
      head.go();
      if (head.write) return;
    }
  }
}
const lock = new ReadWriteLock();
/** Collection counts after the last write (writes run one at a time). */
let known: Counts | undefined;
const COUNTED_READS = new Set<Rpc>(["getCtr", "getRankMetrics", "getResponseTimeMetrics", "getUserSummary", "getInterleavingResult", "getTopQueries"]);

type LockMode = "write" | "read" | "none";
const lockMode = (rpc: Rpc): LockMode => (isWrite(rpc) ? "write" : COUNTED_READS.has(rpc) ? "read" : "none");

/** Makes one call under the lock its checks need, then checks it. */
async function measured(
  mode: LockMode,
  call: () => Promise<Outcome>,
  check: (o: Outcome, t: Timing, was?: Counts, is?: Counts) => Promise<void>,
  /** For writes: run inside the lock, before the next write (the idempotency keys' oracle). */
  settle?: (o: Outcome, was: Counts, is: Counts) => Promise<void>,
): Promise<void> {
  const timedCall = async () => {
    const before = Date.now();
    const o = await call();
    return { o, t: { before, after: Date.now() } };
  };
  if (mode === "write") {
    const { o, t, was, is } = await lock.run(true, async () => {
      const was = known ?? (await counts());
      known = undefined;
      const { o, t } = await timedCall();
      const is = await counts();
      known = is;
      await settle?.(o, was, is);
      return { o, t, was, is };
    });
    await check(o, t, was, is);
  } else if (mode === "read") {
    await lock.run(false, async () => {
      const { o, t } = await timedCall();
      await check(o, t);
    });
  } else {
    const { o, t } = await timedCall();
    await check(o, t);
  }
}

async function runTyped(c: TypedCase): Promise<void> {
  const label = `typed ${c.rpc} #${++typedCount}`;
  const request = c.rpc === "streamEvents" ? (c.init as unknown[]).map((b) => create(StreamEventsRequestSchema, b as Init<typeof StreamEventsRequestSchema>)) : create(SCHEMAS[c.rpc] as DescMessage, c.init as Init<DescMessage>);
  const oversized = encodedSize(c, request) > MAX_REQUEST_BYTES;
  await measured(
    lockMode(c.rpc),
    () => timed(c.rpc, () => callTyped(c, request)),
    async (o, t, was, is) => {
      tally(c.rpc, o);
      if (oversized) {
        // The typed client refuses to send it (and the server would refuse it too).
        expectCode(label, o, [Status.RESOURCE_EXHAUSTED]);
        if (was) expect(is, label).toEqual(was);
        return;
      }
      await timed(`verify ${c.rpc}`, () => verify(label, c.rpc, request, c.header, o, t, was, is));
    },
    // The typed client sends nothing of a request over the size limit.
    oversized ? undefined : (o, was, is) => settleKeys(label, c.rpc, request, c.header, o, was, is),
  );
}

// ---------------------------------------------------------------------------------------------
// Raw bytes on the wire
// ---------------------------------------------------------------------------------------------

type Kind = "unary" | "server_streaming" | "client_streaming" | "bidi_streaming";
interface RawTarget {
  path: string;
  kind: Kind;
  input: DescMessage;
  output: DescMessage;
  /** The ClickAnalytics RPC, whose decoded requests the oracle can judge. */
  rpc?: Rpc;
  /** A ClickAnalytics method this test has no oracle for (added since): judged generically. */
  unknown?: boolean;
  /** May write (Log*, Stream*, Reset): runs alone, so that other lanes' counts stay exact. */
  writes?: boolean;
  /** Valid encodings to mutate. */
  valid: fc.Arbitrary<Uint8Array>;
}

const encode = <S extends DescMessage>(schema: S) => (init: Init<S>) => toBinary(schema, create(schema, init));
const reflectionRequest = fc.record(
  {
    host: fc.oneof(fc.constant(""), hostile),
    messageRequest: fc.oneof(
      fc.constant({ case: "listServices" as const, value: "" }),
      fc.oneof(fc.constantFrom("clickanalytics.v1.ClickAnalytics", "clickanalytics.v1.LogClickRequest", "grpc.health.v1.Health"), hostile).map((value) => ({ case: "fileContainingSymbol" as const, value })),
      fc.oneof(fc.constantFrom("clickanalytics/v1/click_analytics.proto", "google/protobuf/timestamp.proto"), hostile).map((value) => ({ case: "fileByFilename" as const, value })),
      hostile.map((value) => ({ case: "allExtensionNumbersOfType" as const, value })),
      fc.constant({ case: undefined }),
    ),
  },
  { requiredKeys: [] },
);

/** Hostile init objects for any message, from its descriptor (for RPCs this file has no oracle for). */
function genericInit(desc: DescMessage, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const scalar = (t: ScalarType): fc.Arbitrary<unknown> => {
    switch (t) {
      case ScalarType.STRING:
        return fc.oneof(id, hostile);
      case ScalarType.BOOL:
        return fc.boolean();
      case ScalarType.BYTES:
        return fc.uint8Array({ maxLength: 32 });
      case ScalarType.DOUBLE:
      case ScalarType.FLOAT:
        return double;
      case ScalarType.INT64:
      case ScalarType.SINT64:
      case ScalarType.SFIXED64:
        return fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
      case ScalarType.UINT64:
      case ScalarType.FIXED64:
        return fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
      case ScalarType.UINT32:
      case ScalarType.FIXED32:
        return fc.oneof(fc.integer({ min: 0, max: 50 }), fc.constant(2 ** 32 - 1));
      default:
        return int32;
    }
  };
  const enumOf = (e: DescEnum) => enumValue(Math.max(...e.values.map((v) => v.number)));
  const message = (m: DescMessage): fc.Arbitrary<unknown> =>
    m.typeName === "google.protobuf.Timestamp" ? timestamp : depth >= 2 ? fc.constant(undefined) : genericInit(m, depth + 1);
  const value = (f: DescField): fc.Arbitrary<unknown> => {
    switch (f.fieldKind) {
      case "scalar":
        return scalar(f.scalar);
      case "enum":
        return enumOf(f.enum);
      case "message":
        return message(f.message);
      case "list":
        return fc.array(f.listKind === "scalar" ? scalar(f.scalar) : f.listKind === "enum" ? enumOf(f.enum) : message(f.message), { maxLength: 4 });
      case "map":
        return fc.dictionary(
          f.mapKey === ScalarType.STRING ? fc.oneof(id, hostile) : fc.integer({ min: -5, max: 5 }).map(String),
          f.mapKind === "scalar" ? scalar(f.scalar) : f.mapKind === "enum" ? enumOf(f.enum) : message(f.message),
          { maxKeys: 3 },
        );
    }
  };
  const model: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of desc.fields) if (f.oneof === undefined) model[f.localName] = value(f);
  for (const o of desc.oneofs) model[o.localName] = fc.oneof(fc.constant({ case: undefined }), ...o.fields.map((f) => value(f).map((v) => ({ case: f.localName, value: v }))));
  return fc.record(model, { requiredKeys: [] });
}

const RAW_TARGETS: RawTarget[] = [
  ...ClickAnalytics.methods.map((m): RawTarget => {
    const path = `/${ClickAnalytics.typeName}/${m.name}`;
    if (!(m.localName in inits)) {
      // A method added after this test was written: hostile messages built from its descriptor.
      return { path, kind: m.methodKind, input: m.input, output: m.output, unknown: true, writes: !/^(Get|Watch|Export)[A-Z]/.test(m.name), valid: genericInit(m.input).map(encode(m.input)) };
    }
    const rpc = m.localName as Rpc;
    const valid = rpc === "streamEvents" ? (inits.streamEvents.map((batches) => batches[0] ?? {}) as fc.Arbitrary<Init<DescMessage>>) : (inits[rpc] as fc.Arbitrary<Init<DescMessage>>);
    return { path, kind: m.methodKind, input: m.input, output: m.output, rpc, valid: valid.map(encode(m.input)) };
  }),
  ...Health.methods.map((m): RawTarget => ({
    path: `/${Health.typeName}/${m.name}`,
    kind: m.methodKind,
    input: m.input,
    output: m.output,
    valid: fc.record({ service: fc.oneof(fc.constantFrom("", ClickAnalytics.typeName, Health.typeName), hostile, huge) }).map(encode(HealthCheckRequestSchema)),
  })),
  ...[ReflectionV1, ReflectionV1Alpha].flatMap((service) =>
    service.methods.map((m): RawTarget => ({ path: `/${service.typeName}/${m.name}`, kind: m.methodKind, input: m.input, output: m.output, valid: reflectionRequest.map((init) => toBinary(m.input, create(m.input, init as Init<DescMessage>))) })),
  ),
];

function flipBits(bytes: Uint8Array, bits: readonly number[]): Uint8Array {
  const out = bytes.slice();
  for (const b of bits) out[b >> 3]! ^= 1 << (b & 7);
  return out;
}
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

/** Wire-format traps: overlong varints, lengths past the end, bad wire types, deep groups, oversized bodies. */
const CRAFTED: Uint8Array[] = [
  Uint8Array.of(0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), // varint of 11 bytes
  Uint8Array.of(0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f), // length-delimited, 4 GiB long
  Uint8Array.of(0x0a, 0x05, 0x61), // length past the end
  Uint8Array.of(0x0f), // wire type 7
  Uint8Array.of(0x0e, 0x00), // wire type 6
  Uint8Array.of(0x00), // field number 0
  Uint8Array.of(0x0c), // end group without a start
  Uint8Array.of(0x0b), // start group without an end
  new Uint8Array(20_000).fill(0x0b), // 20,000 nested groups
  concat(...Array.from({ length: 5_000 }, () => Uint8Array.of(0x0a, 0x80, 0x80, 0x04))), // nested lengths
  Uint8Array.of(0x1a, 0x02, 0xc3, 0x28), // field 3 (a string almost everywhere) with invalid UTF-8
  Uint8Array.of(0x0a, 0x03, 0xed, 0xa0, 0x80), // field 1 with an encoded surrogate
  Uint8Array.of(0x1d, 0x00, 0x00, 0xc0, 0x7f), // field 3 fixed32 NaN
  Uint8Array.of(0x19, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x7f), // field 3 fixed64 +Infinity
  new Uint8Array(0),
];
let bigBodies: Uint8Array[] | undefined;
/** 3 MiB of garbage (decoded and refused) and 5 MiB (over the 4 MiB limit), made once. */
const bigBody = fc.constantFrom(0, 1).map((i) => {
  bigBodies ??= [Uint8Array.from({ length: 3 * 1024 * 1024 }, (_, k) => (k * 2_654_435_761) >>> 24), new Uint8Array(5 * 1024 * 1024).fill(0x0a)];
  return bigBodies[i]!;
});

const mutate = (bytes: Uint8Array): fc.Arbitrary<Uint8Array> =>
  bytes.length === 0
    ? fc.oneof(fc.constant(bytes), fc.uint8Array({ minLength: 1, maxLength: 16 }))
    : fc.oneof(
        { weight: 1, arbitrary: fc.constant(bytes) },
        { weight: 3, arbitrary: fc.integer({ min: 0, max: bytes.length - 1 }).map((n) => bytes.slice(0, n)) },
        { weight: 3, arbitrary: fc.array(fc.integer({ min: 0, max: bytes.length * 8 - 1 }), { minLength: 1, maxLength: 4 }).map((bits) => flipBits(bytes, bits)) },
        { weight: 2, arbitrary: fc.tuple(fc.integer({ min: 0, max: bytes.length }), fc.uint8Array({ minLength: 1, maxLength: 12 })).map(([at, junk]) => concat(bytes.slice(0, at), junk, bytes.slice(at))) },
        { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 12 }).map((junk) => concat(bytes, junk)) },
      );
const rawBody = (t: RawTarget): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    { weight: 12, arbitrary: t.valid.chain(mutate) },
    { weight: 4, arbitrary: fc.uint8Array({ maxLength: 96 }) },
    { weight: 2, arbitrary: fc.constantFrom(...CRAFTED) },
    { weight: 1, arbitrary: fc.oneof({ weight: 20, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: bigBody }).chain((b) => (b ? fc.constant(b) : t.valid.chain(mutate))) },
  );
const targetByPath = new Map(RAW_TARGETS.map((t) => [t.path, t]));
const rawCase = fc.constantFrom(...RAW_TARGETS.map((t) => t.path)).chain((path) => {
  const target = targetByPath.get(path)!;
  return fc.record({
    path: fc.constant(path),
    bodies: target.kind === "client_streaming" || target.kind === "bidi_streaming" ? fc.array(rawBody(target), { minLength: 1, maxLength: 3 }) : rawBody(target).map((b) => [b]),
  });
});

interface RawOutcome extends Outcome<Uint8Array[]> {
  value: Uint8Array[];
}

/** One call with raw request bodies; server streams are read to their first message, then cancelled. */
function callRaw(target: RawTarget, bodies: readonly Uint8Array[]): Promise<RawOutcome> {
  const serialize = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const deserialize = (b: Buffer) => new Uint8Array(b);
  const options = { deadline: Date.now() + CALL_TIMEOUT_MS };
  const md = new grpc.Metadata();
  return new Promise((resolve) => {
    const messages: Uint8Array[] = [];
    const done = (code: Status, details: string) => resolve({ code, details, value: messages });
    switch (target.kind) {
      case "unary":
        raw.makeUnaryRequest(target.path, serialize, deserialize, bodies[0]!, md, options, (error, response) => {
          if (response) messages.push(response);
          done(error ? error.code : Status.OK, error?.details ?? "");
        });
        return;
      case "client_streaming": {
        const call = raw.makeClientStreamRequest(target.path, serialize, deserialize, md, options, (error, response) => {
          if (response) messages.push(response);
          done(error ? error.code : Status.OK, error?.details ?? "");
        });
        for (const b of bodies) call.write(b);
        call.end();
        return;
      }
      case "server_streaming": {
        const call = raw.makeServerStreamRequest(target.path, serialize, deserialize, bodies[0]!, md, options);
        let cancelled = false;
        call.on("data", (m: Uint8Array) => {
          messages.push(m);
          if (!cancelled) {
            cancelled = true;
            call.cancel();
          }
        });
        call.on("error", () => undefined);
        call.on("status", (s: grpc.StatusObject) => done(cancelled && s.code === Status.CANCELLED ? Status.OK : s.code, s.details));
        return;
      }
      case "bidi_streaming": {
        const call = raw.makeBidiStreamRequest(target.path, serialize, deserialize, md, options);
        call.on("data", (m: Uint8Array) => messages.push(m));
        call.on("error", () => undefined);
        call.on("status", (s: grpc.StatusObject) => done(s.code, s.details));
        for (const b of bodies) call.write(b);
        call.end();
        return;
      }
    }
  });
}

function tryDecode(schema: DescMessage, bytes: Uint8Array): MessageShape<DescMessage> | undefined {
  try {
    return fromBinary(schema, bytes);
  } catch {
    return undefined;
  }
}

let rawCount = 0;
async function runRaw({ path, bodies }: { path: string; bodies: Uint8Array[] }): Promise<void> {
  const target = targetByPath.get(path)!;
  const label = `raw ${target.path} #${++rawCount} (${bodies.map((b) => b.length).join("+")} bytes)`;
  const decoded = bodies.map((b) => tryDecode(target.input, b));
  const firstBad = decoded.findIndex((m) => m === undefined);
  const firstOversized = bodies.findIndex((b) => b.length > MAX_REQUEST_BYTES);
  await measured(
    target.rpc !== undefined ? lockMode(target.rpc) : target.writes ? "write" : "none",
    () => callRaw(target, bodies),
    async (outcome, t, was, is) => {
      const o = outcome as RawOutcome;
      tally(`raw ${target.path.split("/").pop()}`, o);
      const delta = was && is ? is.clicks + is.impressions - was.clicks - was.impressions : 0;
      if (firstOversized >= 0 && (firstBad < 0 || firstOversized <= firstBad)) {
        expectCode(label, o, [Status.RESOURCE_EXHAUSTED]);
        expect(delta, label).toBe(0);
        return;
      }
      if (firstBad >= 0) {
        // Undecodable bytes are the client's mistake: INVALID_ARGUMENT, never INTERNAL.
        expectCode(label, o, [Status.INVALID_ARGUMENT]);
        expect(o.details, label).toMatch(/^request: is not a valid protobuf message/);
        // Only the messages of a stream before the bad one may have been written.
        const before = decoded.slice(0, firstBad).reduce((n, m) => n + ((m as { events?: unknown[] }).events?.length ?? 0), 0);
        expect(delta, `${label}: wrote more than the decodable messages before the bad one`).toBeLessThanOrEqual(before);
        return;
      }
      const responses = o.value.map((b) => fromBinary(target.output, b));
      if (target.rpc !== undefined) {
        const request = target.rpc === "streamEvents" ? decoded : decoded[0];
        const value = target.kind === "bidi_streaming" ? responses : responses[0];
        await verify(label, target.rpc, request, undefined, { ...o, value }, t, was, is);
        return;
      }
      if (target.unknown) {
        // No oracle: OK, or INVALID_ARGUMENT naming one of the request's own fields; the experiment
        // RPCs also answer with the state of the experiment named (unknown, taken, changed, final).
        const resource = /Experiments?$/.test(target.path) ? [Status.NOT_FOUND, Status.ALREADY_EXISTS, Status.FAILED_PRECONDITION, Status.ABORTED] : [];
        expectCode(label, o, [Status.OK, Status.INVALID_ARGUMENT, ...resource]);
        if (o.code === Status.INVALID_ARGUMENT) expect(["request", ...target.input.fields.map((f) => f.name)], `${label}: ${describeOutcome(o)}`).toContain(/^[a-z_]+/.exec(o.details)?.[0]);
        return;
      }
      if (target.path === "/grpc.health.v1.Health/Check") {
        expectCode(label, o, [Status.OK, Status.NOT_FOUND]);
        const service = (decoded[0] as MessageShape<typeof HealthCheckRequestSchema>).service;
        expect(o.code, label).toBe(["", ClickAnalytics.typeName].includes(service) ? Status.OK : Status.NOT_FOUND);
        return;
      }
      // Health Watch/List and reflection answer anything decodable.
      expectCode(label, o, [Status.OK]);
    },
    target.rpc === undefined || !isWrite(target.rpc) ? undefined : async (outcome, was, is) => {
      const rpc = target.rpc!;
      if (firstOversized >= 0 && (firstBad < 0 || firstOversized <= firstBad)) return; // refused before decoding: verify checks nothing was written
      const events = (ms: readonly unknown[]) => ms.flatMap((m) => (m as { events?: Event[] } | undefined)?.events ?? []);
      // A stream cut by an undecodable message: its messages before may be stored.
      if (firstBad >= 0) return lookUpKeys(label, events(decoded.slice(0, firstBad)));
      let value: unknown;
      try {
        const responses = (outcome.value as Uint8Array[]).map((b) => fromBinary(target.output, b));
        value = target.kind === "bidi_streaming" ? responses : responses[0];
      } catch {
        return lookUpKeys(label, rpc === "logClick" ? [clickEvent(decoded[0] as LogClickRequest)] : rpc === "logImpression" ? [impressionEvent(decoded[0] as LogImpressionRequest)] : events(decoded));
      }
      await settleKeys(label, rpc, rpc === "streamEvents" ? decoded : decoded[0], undefined, { ...outcome, value }, was, is);
    },
  );
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

describe("fuzzing every RPC", () => {
  it("treats $-prefixed, dotted and JSON-looking strings as literal values", async () => {
    const ids = ['{"$ne": null}', '{"$gt": ""}', "$ne", "$where", "a.b", "$.a", "__proto__", `plain-${randomUUID()}`];
    for (const [i, userId] of ids.entries()) {
      for (let k = 0; k <= i; k++) await h.client.logClick({ userId, productId: `$p.${k}`, rank: k, searchQuery: '{"$regex": ".*"}', variant: "a.b", responseTimeMs: 1 });
      await h.client.logImpression({ userId, query: "$where", variant: "search_v1", resultsCount: 1, responseTimeMs: 1 });
    }
    for (const [i, userId] of ids.entries()) {
      const summary = await h.client.getUserSummary({ userId, days: 1 });
      expect([summary.userId, summary.totalClicks, summary.totalImpressions], userId).toEqual([userId, BigInt(i + 1), 1n]);
      const ctr = await h.client.getCtr({ userId, days: 1 });
      expect([ctr.clicks, ctr.impressions], userId).toEqual([BigInt(i + 1), 1n]);
      expect(await h.server.store.collections.clicks.countDocuments({ user_id: userId }), userId).toBe(i + 1);
    }
    const stored = await h.server.store.collections.clicks.findOne({ user_id: '{"$ne": null}' });
    expect(stored).toMatchObject({ product_id: "$p.0", search_query: '{"$regex": ".*"}', variant: "a.b" });
    expect((await h.client.getCtr({ variant: "a.b", days: 1 })).clicks).toBe(BigInt((ids.length * (ids.length + 1)) / 2));
    expect((await h.client.getCtr({ variant: "a", days: 1 })).clicks).toBe(0n);
  });

  it("answers a status message that quotes a huge input (no hang, no dropped connection)", async () => {
    for (const zone of ["x".repeat(70_000), "🔎".repeat(20_000)]) {
      const o = await settle(h.client.getTimeSeries({ timeZone: zone }, { timeoutMs: 5_000 }));
      expect(describeOutcome(o)).toMatch(/^INVALID_ARGUMENT "time_zone: /);
      expect(o.details.length).toBeLessThan(8_000);
    }
    const o = await settle(h.client.getVariantComparison({ expectedSplit: { ["k".repeat(100_000)]: Number.NaN } }, { timeoutMs: 5_000 }));
    expect(describeOutcome(o)).toMatch(/^INVALID_ARGUMENT "expected_split\[kkk/);
    expect((await h.client.getCtr({})).periodDays).toBe(7);
  });

  it("answers an undecodable message on a bidi stream with INVALID_ARGUMENT instead of hanging", async () => {
    for (const service of [ReflectionV1, ReflectionV1Alpha]) {
      const target = targetByPath.get(`/${service.typeName}/ServerReflectionInfo`)!;
      const started = Date.now();
      const o = await callRaw(target, [Uint8Array.of(0x00)]); // field number 0: not protobuf
      expect(describeOutcome(o)).toMatch(/^INVALID_ARGUMENT "request: is not a valid protobuf message/);
      expect(Date.now() - started).toBeLessThan(5_000);
    }
  });

  it("answers time zones ICU knows but MongoDB may not with OK or INVALID_ARGUMENT, never INTERNAL", async () => {
    // Node's ICU accepts "europe/berlin" (any case) and America/Coyhaique (new in tzdata 2025b);
    // MongoDB's own zone database matches names exactly and does not have the latter. ICU
    // refuses "GMT+1" and "Z".
    // A user filter reads raw events, grouped by day in MongoDB in the zone.
    const outcomes: string[] = [];
    for (const timeZone of ["europe/berlin", "GMT+1", "Z", "America/Coyhaique"]) {
      for (const granularity of [Granularity.DAY, Granularity.HOUR]) {
        for (const userId of ["", "u1"]) {
          const o = await settle(h.client.getTimeSeries({ timeZone, days: 2, granularity, userId }));
          outcomes.push(`${timeZone} ${Granularity[granularity]} ${userId || "-"}: ${describeOutcome(o)}`);
        }
      }
    }
    for (const line of outcomes) expect(line).toMatch(/: (OK|INVALID_ARGUMENT "time_zone: )/);
    // The server spells "europe/berlin" properly itself: never refused, and answered as Europe/Berlin.
    for (const line of outcomes.filter((l) => l.startsWith("europe/berlin "))) expect(line).toMatch(/: OK /);
    expect((await h.client.getTimeSeries({ timeZone: "europe/berlin", days: 1, userId: "u1" })).timeZone).toBe("Europe/Berlin");
  });

  it("refuses more than 1,000 events in a request or stream message, writing nothing of it", async () => {
    const events = Array.from({ length: 1001 }, (_, i) => ({ kind: { case: "impression" as const, value: { query: "q", variant: "search_v1", responseTimeMs: 1, eventId: `big-${randomUUID()}-${i}` } } }));
    const was = await counts();
    const o = await settle(h.client.logEvents({ events }));
    await verify("1001 events", "logEvents", create(LogEventsRequestSchema, { events }), undefined, o, { before: 0, after: 0 }, was, await counts());
    const batches = [create(StreamEventsRequestSchema, { events: events.slice(0, 3) }), create(StreamEventsRequestSchema, { events })];
    const was2 = await counts();
    const o2 = await settle(h.client.streamEvents(batches));
    await verify("stream with 1001 events", "streamEvents", batches, undefined, o2, { before: 0, after: 0 }, was2, await counts());
  });

  it(`answers ${TOTAL_RUNS} generated requests (typed and raw) without INTERNAL, writing only what it accepts`, { timeout: TEST_TIMEOUT_MS }, async () => {
    console.log(
      `fuzz: seed ${SEED} (replay: FUZZ_SEED=${SEED} FUZZ_LANES=${LANES}; typed lane i uses seed+i, raw lane i seed+1000+i), ${TYPED_RUNS} typed + ${RAW_RUNS} raw requests (FUZZ_RUNS=${TOTAL_RUNS})`,
    );
    await loadStoredKeys();
    const started = Date.now();
    const cpu = process.cpuUsage();
    // LANES typed and LANES raw properties at once, each with its own seed and share of the runs.
    const share = (total: number, lane: number) => Math.floor(total / LANES) + (lane < total % LANES ? 1 : 0);
    const lanes = await Promise.allSettled(
      Array.from({ length: LANES }, (_, lane) => [
        // No shrinking: the oracle keeps state (the keys stored so far), so a smaller replay would be
        // judged against a different store; the first failing case is the one to read.
        fc.assert(fc.asyncProperty(typedCase, runTyped), { seed: SEED + lane, numRuns: share(TYPED_RUNS, lane), endOnFailure: true }),
        fc.assert(fc.asyncProperty(rawCase, runRaw), { seed: SEED + 1_000 + lane, numRuns: share(RAW_RUNS, lane), endOnFailure: true }),
      ]).flat(),
    );
    const failed = lanes.find((l): l is PromiseRejectedResult => l.status === "rejected");
    if (failed) throw failed.reason;
    console.log([...timeSpent].sort((a, b) => b[1] - a[1]).map(([k, ms]) => `${k} ${(ms / 1000).toFixed(1)}s`).join(", "));
    const used = process.cpuUsage(cpu);
    console.log(`fuzz: idempotency keys judged: ${keyStats.duplicates} duplicates, ${keyStats.keyedAccepted} keyed events stored; ${keyStats.lookUps} outcomes looked up in MongoDB`);
    // The key oracle had repeats to judge (the key pool is small), not just fresh keys.
    if (TOTAL_RUNS >= 1_000) expect(keyStats.duplicates, "duplicates judged").toBeGreaterThan(TOTAL_RUNS / 100);
    // GetInterleavingResult was checked on searches whose clicks credit a ranker, not only on empty answers.
    console.log(`fuzz: GetInterleavingResult answers checked: ${interleavingStats.answers}, ${interleavingStats.decided} with credited clicks`);
    if (TOTAL_RUNS >= 1_000) expect(interleavingStats.decided, "interleaving answers with credited clicks").toBeGreaterThan(0);
    // GetTopQueries was checked exactly, COEC included, not only on empty answers.
    console.log(`fuzz: GetTopQueries answers checked: ${topQueriesStats.answers}, ${topQueriesStats.exact} exactly, ${topQueriesStats.coec} rows with a COEC, ${topQueriesStats.mrr} with an MRR`);
    if (TOTAL_RUNS >= 1_000) expect(topQueriesStats.coec, "top-query rows with a COEC checked").toBeGreaterThan(0);
    console.log(`fuzz: ${typedCount + rawCount} calls in ${((Date.now() - started) / 1000).toFixed(1)} s (test process CPU ${((used.user + used.system) / 1e6).toFixed(1)} s); outcomes: ${[...codesSeen].sort().map(([k, n]) => `${k}=${n}`).join(", ")}`);

    // Still serving, and still right.
    const health = fromBinary(HealthCheckResponseSchema, (await callRaw(RAW_TARGETS.find((t) => t.path === "/grpc.health.v1.Health/Check")!, [toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service: "" }))])).value[0]!);
    expect(health.status).toBe(Serving.SERVING);
    const userId = `after-fuzz-${randomUUID()}`;
    await h.client.logImpression({ userId, query: "q", variant: "search_v1", resultsCount: 3, responseTimeMs: 5 });
    await h.client.logClick({ userId, productId: "p", rank: 0, searchQuery: "q", variant: "search_v1", responseTimeMs: 5 });
    const ctr = await h.client.getCtr({ userId, days: 1 });
    expect([ctr.clicks, ctr.impressions, ctr.ctr]).toEqual([1n, 1n, 1]);
    // The rollups hold exactly the accepted events: nothing rejected reached them either.
    const before = Date.now();
    const year = await h.client.getCtr({ days: 365 });
    const after = Date.now();
    const bounds = await windowCounts({}, 365, before, after);
    expectBetween("rollup clicks", year.clicks, bounds.clicks);
    expectBetween("rollup impressions", year.impressions, bounds.impressions);
    // Nothing the fuzzer sent was an internal error.
    const errors = logLines.filter((line) => (JSON.parse(line) as { level: string }).level === "error");
    expect(errors.map((line) => line.slice(0, 500))).toEqual([]);
  });
});
