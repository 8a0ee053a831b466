import * as grpc from "@grpc/grpc-js";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { EventOutcome, LogEventsRequestSchema, Status, type EventSchema, type ServiceError } from "../../src/client/index.js";
import { METRIC_PREFIX } from "../../src/server/observability.js";
import { startHarness, type Harness } from "../support/harness.js";
import { rawUnary } from "../support/raw-call.js";

type EventInit = MessageInitShape<typeof EventSchema>;
const click = (over: Record<string, unknown> = {}): EventInit => ({
  kind: { case: "click", value: { userId: "u1", productId: "p1", rank: 1, searchQuery: "q", variant: "search_v1", responseTimeMs: 10, ...over } },
});
const impression = (over: Record<string, unknown> = {}): EventInit => ({
  kind: { case: "impression", value: { userId: "u1", query: "q", variant: "search_v1", resultsCount: 10, responseTimeMs: 10, ...over } },
});

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());
beforeEach(async () => {
  await h.server.store.reset();
});

const counts = async () => ({
  clicks: await h.server.store.collections.clicks.countDocuments(),
  impressions: await h.server.store.collections.impressions.countDocuments(),
});

async function failure(promise: Promise<unknown>): Promise<ServiceError> {
  const error = (await promise.then(
    () => undefined,
    (e: unknown) => e,
  )) as ServiceError | undefined;
  expect(error, "call should have failed").toBeDefined();
  return error!;
}

describe("LogEvents", () => {
  it("writes the valid events and rejects each invalid one with index, field and rule", async () => {
    const res = await h.client.logEvents({
      events: [click(), impression(), click({ rank: -1 }), {}, impression({ variant: "bad variant" }), click({ eventId: "x".repeat(129) }), impression()],
    });
    expect([res.accepted, res.duplicates, res.rejected]).toEqual([3n, 0n, 4n]);
    expect(res.results.map((r) => [Number(r.index), r.outcome])).toEqual([
      [0, EventOutcome.ACCEPTED],
      [1, EventOutcome.ACCEPTED],
      [2, EventOutcome.REJECTED],
      [3, EventOutcome.REJECTED],
      [4, EventOutcome.REJECTED],
      [5, EventOutcome.REJECTED],
      [6, EventOutcome.ACCEPTED],
    ]);
    expect(res.results[2]).toMatchObject({ field: "events[2].click.rank", reason: expect.stringMatching(/non-negative integer/) });
    expect(res.results[3]).toMatchObject({ field: "events[3].kind", reason: "must be a click or an impression" });
    expect(res.results[4]).toMatchObject({ field: "events[4].impression.variant" });
    expect(res.results[5]).toMatchObject({ field: "events[5].click.event_id", reason: "must be at most 128 characters" });
    expect(await counts()).toEqual({ clicks: 1, impressions: 2 });
    const ids = res.results.filter((r) => r.outcome === EventOutcome.ACCEPTED).map((r) => r.eventId);
    expect(await h.server.store.collections.impressions.countDocuments({ event_id: { $in: ids } })).toBe(2);
  });

  it("refuses more than 1,000 events whole, writing nothing", async () => {
    const error = await failure(h.client.logEvents({ events: Array.from({ length: 1001 }, () => click()) }));
    expect(error.code).toBe(Status.INVALID_ARGUMENT);
    expect(error.details).toMatch(/events: must hold at most 1000 events per request, got 1001/);
    expect(await counts()).toEqual({ clicks: 0, impressions: 0 });
    const ok = await h.client.logEvents({ events: Array.from({ length: 1000 }, () => impression()) });
    expect(ok.accepted).toBe(1000n);
  });

  it("refuses a request over 4 MiB with RESOURCE_EXHAUSTED, writing nothing", async () => {
    // 1,000 valid events of ~5 KB each (queries and product ids of four-byte characters)
    const events = Array.from({ length: 1000 }, () => click({ searchQuery: "🔎".repeat(1024), productId: "🛒".repeat(256) }));
    const body = toBinary(LogEventsRequestSchema, create(LogEventsRequestSchema, { events }));
    expect(body.length).toBeGreaterThan(4 * 1024 * 1024);
    // a client that would send it, to show the server enforces the limit itself
    const raw = new grpc.Client(h.server.address, grpc.credentials.createInsecure(), { "grpc.max_send_message_length": 64 * 1024 * 1024 });
    try {
      const error = await failure(rawUnary(raw, "/clickanalytics.v1.ClickAnalytics/LogEvents", body));
      expect(error.code).toBe(Status.RESOURCE_EXHAUSTED);
    } finally {
      raw.close();
    }
    // the typed client refuses to send it at all
    expect((await failure(h.client.logEvents({ events }))).code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(await counts()).toEqual({ clicks: 0, impressions: 0 });
  });

  it("counts a repeated event_id once, within a batch and across retries", async () => {
    const batch = { events: [click({ eventId: "e-1" }), click({ eventId: "e-1", rank: 9 }), impression({ eventId: "i-1" }), click({ eventId: "e-2" })] };
    const first = await h.client.logEvents(batch);
    expect(first.results.map((r) => r.outcome)).toEqual([EventOutcome.ACCEPTED, EventOutcome.DUPLICATE, EventOutcome.ACCEPTED, EventOutcome.ACCEPTED]);
    expect(first.results[1]!.eventId).toBe("e-1");
    const retry = await h.client.logEvents(batch);
    expect([retry.accepted, retry.duplicates, retry.rejected]).toEqual([0n, 4n, 0n]);
    expect(await counts()).toEqual({ clicks: 2, impressions: 1 });
    expect((await h.server.store.collections.clicks.findOne({ event_id: "e-1" }))!.rank).toBe(1);
    expect((await h.client.getCtr({})).clicks).toBe(2n);
  });
});

describe("idempotent unary logging", () => {
  it("LogClick with a known event_id returns OK with the original event", async () => {
    const when = timestampFromDate(new Date(Date.now() - 60_000));
    const first = await h.client.logClick({ eventId: "click-77", userId: "u1", productId: "p1", rank: 3, searchQuery: "q", variant: "v", responseTimeMs: 5, timestamp: when });
    const retry = await h.client.logClick({ eventId: "click-77", userId: "u1", productId: "p1", rank: 3, searchQuery: "q", variant: "v", responseTimeMs: 5 });
    expect(first.eventId).toBe("click-77");
    expect(retry).toMatchObject({ eventId: "click-77", userId: "u1", productId: "p1", rank: 3 });
    expect(timestampDate(retry.timestamp!).getTime()).toBe(timestampDate(when).getTime());
    expect(await counts()).toEqual({ clicks: 1, impressions: 0 });
  });

  it("LogImpression is idempotent by event_id and by impression_id", async () => {
    const a = await h.client.logImpression({ impressionId: "search-1", userId: "u1", query: "q", variant: "v", resultsCount: 3, responseTimeMs: 5 });
    expect(a.impressionId).toBe("search-1");
    const again = await h.client.logImpression({ impressionId: "search-1", eventId: "other-key", userId: "u2", query: "other", variant: "v", resultsCount: 3, responseTimeMs: 5 });
    expect(again).toMatchObject({ impressionId: "search-1", userId: "u1", query: "q" });
    const b = await h.client.logImpression({ eventId: "imp-key", userId: "u1", query: "q", variant: "v", resultsCount: 3, responseTimeMs: 5 });
    expect(b.impressionId).toBe("imp-key");
    await h.client.logImpression({ eventId: "imp-key", userId: "u1", query: "q", variant: "v", resultsCount: 3, responseTimeMs: 5 });
    expect(await counts()).toEqual({ clicks: 0, impressions: 2 });
  });

  it("without an event_id the server assigns a fresh one each time", async () => {
    const req = { userId: "u1", productId: "p1", rank: 0, searchQuery: "q", variant: "v", responseTimeMs: 5 };
    const [a, b] = [await h.client.logClick(req), await h.client.logClick(req)];
    expect(a.eventId).not.toBe(b.eventId);
    expect((await counts()).clicks).toBe(2);
  });
});

describe("clicks linked to their search", () => {
  it("stores impression_id on the click, known or not yet known", async () => {
    const search = await h.client.logImpression({ userId: "u1", query: "q", variant: "v", resultsCount: 3, responseTimeMs: 5 });
    await h.client.logClick({ impressionId: search.impressionId, userId: "u1", productId: "p1", rank: 0, searchQuery: "q", variant: "v", responseTimeMs: 5 });
    // the impression of this one arrives later: still accepted
    const early = await h.client.logClick({ impressionId: "late-search", userId: "u1", productId: "p2", rank: 1, searchQuery: "q", variant: "v", responseTimeMs: 5 });
    const unlinked = await h.client.logClick({ userId: "u1", productId: "p3", rank: 2, searchQuery: "q", variant: "v", responseTimeMs: 5 });
    const clicks = h.server.store.collections.clicks;
    expect((await clicks.findOne({ product_id: "p1" }))!.impression_id).toBe(search.impressionId);
    expect((await clicks.findOne({ event_id: early.eventId }))!.impression_id).toBe("late-search");
    expect(await clicks.findOne({ event_id: unlinked.eventId })).not.toHaveProperty("impression_id");
    await h.client.logImpression({ impressionId: "late-search", userId: "u1", query: "q", variant: "v", resultsCount: 3, responseTimeMs: 5 });
    const linked = await clicks.aggregate([{ $lookup: { from: "impressions", localField: "impression_id", foreignField: "impression_id", as: "search" } }, { $match: { "search.0": { $exists: true } } }]).toArray();
    expect(linked.map((c) => c.product_id).sort()).toEqual(["p1", "p2"]);
  });

  it("indexes impression_id and event ids", async () => {
    const clickIndexes = (await h.server.store.collections.clicks.indexes()).map((i) => ({ key: JSON.stringify(i.key), unique: i.unique ?? false }));
    expect(clickIndexes).toEqual(expect.arrayContaining([{ key: '{"impression_id":1}', unique: false }, { key: '{"event_id":1}', unique: true }]));
    const impressionIndexes = (await h.server.store.collections.impressions.indexes()).map((i) => ({ key: JSON.stringify(i.key), unique: i.unique ?? false }));
    expect(impressionIndexes).toEqual(expect.arrayContaining([{ key: '{"impression_id":1}', unique: true }, { key: '{"event_id":1}', unique: false }]));
  });
});

describe("LogEvents rejections", () => {
  it("a rejected event's result keeps the event_id the client gave it", async () => {
    const res = await h.client.logEvents({ events: [click({ eventId: "good-1" }), click({ eventId: "bad-rank", rank: -1 }), impression({ eventId: "bad-variant", variant: "bad variant" }), click({ rank: -1 }), {}] });
    expect(res.results.map((r) => [r.outcome, r.eventId])).toEqual([
      [EventOutcome.ACCEPTED, "good-1"],
      [EventOutcome.REJECTED, "bad-rank"],
      [EventOutcome.REJECTED, "bad-variant"],
      // Without an id of its own (the server assigns ids only to events it stores), or without a kind.
      [EventOutcome.REJECTED, ""],
      [EventOutcome.REJECTED, ""],
    ]);
  });
});

describe("StreamEvents", () => {
  it("writes batches as they come and answers with totals and the first rejections", async () => {
    async function* batches() {
      for (let b = 0; b < 5; b++) {
        yield { events: Array.from({ length: 100 }, (_, i) => (i === 7 ? click({ eventId: `bad-${b}`, rank: -2 }) : i % 2 ? click({ eventId: `s-${b}-${i}` }) : impression())) };
      }
      yield { events: [click({ eventId: "s-0-1" })] }; // a repeat of the first batch's event
    }
    const res = await h.client.streamEvents(batches());
    expect([res.accepted, res.duplicates, res.rejected, res.batches]).toEqual([495n, 1n, 5n, 6n]);
    expect(res.firstRejections.map((r) => Number(r.index))).toEqual([7, 107, 207, 307, 407]);
    expect(res.firstRejections[1]).toMatchObject({ field: "events[107].click.rank" });
    // Each rejection names its event by the id the client gave it.
    expect(res.firstRejections.map((r) => r.eventId)).toEqual(["bad-0", "bad-1", "bad-2", "bad-3", "bad-4"]);
    expect(await counts()).toEqual({ clicks: 245, impressions: 250 });
  });

  it("fails the stream on a message over 1,000 events, keeping what was acknowledged before", async () => {
    const error = await failure(h.client.streamEvents([{ events: [impression({ eventId: "before" })] }, { events: Array.from({ length: 1001 }, () => click()) }]));
    expect(error.code).toBe(Status.INVALID_ARGUMENT);
    expect(error.details).toMatch(/batches\[1\]\.events: must hold at most 1000/);
    expect(await counts()).toEqual({ clicks: 0, impressions: 1 });
  });
});

describe("concurrent writes combined into shared batches (group commit)", () => {
  let g: Harness;
  beforeAll(async () => {
    g = await startHarness({ metricsPort: 0 });
  });
  afterAll(() => g.close());

  /** The write-batch histogram's sum and count, and the calls' writes committed. */
  async function batchFigures(): Promise<{ events: number; batches: number; writes: number }> {
    const samples = async (name: string) => (await g.server.metrics!.registry.getSingleMetric(`${METRIC_PREFIX}${name}`)!.get()).values;
    const histogram = await samples("write_batch_events");
    const sample = (suffix: string) => histogram.find((v) => (v as { metricName?: string }).metricName === `${METRIC_PREFIX}write_batch_events_${suffix}`)!.value;
    return { events: sample("sum"), batches: sample("count"), writes: (await samples("write_calls_committed_total"))[0]!.value };
  }

  it("answers each caller for its own events, with repeats racing their originals, and counts every event once", async () => {
    const ids = Array.from({ length: 48 }, (_, i) => `gc-${i}`);
    const fields = (i: number) => ({ eventId: ids[i], userId: `user-${i % 7}`, productId: `p-${i}`, rank: (i % 10) + 1, searchQuery: "q", variant: i % 2 ? "search_v2" : "search_v1", responseTimeMs: i });
    // Every id sent twice at once (a retry racing its original), and four batches repeating ids too.
    const unary = ids.flatMap((_, i) => [fields(i), fields(i)].map((f) => g.client.logClick(f)));
    const batches = [0, 1, 2, 3].map((b) =>
      g.client.logEvents({ events: [{ kind: { case: "click", value: fields(b) } }, click({ eventId: `gc-batch-${b}` }), impression({ eventId: `gc-imp-${b}` })] }),
    );
    const [answers, results] = await Promise.all([Promise.all(unary), Promise.all(batches)]);

    answers.forEach((answer, k) => {
      const i = Math.floor(k / 2);
      expect(answer).toMatchObject({ eventId: ids[i], productId: `p-${i}`, rank: (i % 10) + 1, userId: `user-${i % 7}` });
    });
    for (const result of results) {
      expect(result.results.map((r) => r.outcome).slice(1)).toEqual([EventOutcome.ACCEPTED, EventOutcome.ACCEPTED]);
      expect([EventOutcome.ACCEPTED, EventOutcome.DUPLICATE]).toContain(result.results[0]!.outcome);
    }
    expect(await g.server.store.collections.clicks.countDocuments()).toBe(48 + 4);
    expect(await g.server.store.collections.impressions.countDocuments()).toBe(4);
    // What the rollups counted equals what was stored: each event exactly once.
    const ctr = await g.client.getCtr({ days: 1 });
    expect({ clicks: ctr.clicks, impressions: ctr.impressions }).toEqual({ clicks: 52n, impressions: 4n });

    const figures = await batchFigures();
    expect(figures.writes).toBe(unary.length + batches.length);
    expect(figures.events).toBe(unary.length + 3 * batches.length);
    // 100 concurrent writes went as far fewer batches.
    expect(figures.batches).toBeLessThan(figures.writes / 2);
  });

  it("writes concurrent StreamEvents streams' messages through the same batches, each event once and each stream answered for its own", async () => {
    const before = await batchFigures();
    const STREAMS = 4;
    const MESSAGES = 6;
    const EVENTS = 300;
    // Each stream repeats one event of its own first message in its last: a duplicate whichever write lands first.
    async function* messages(s: number): AsyncIterable<{ events: EventInit[] }> {
      for (let m = 0; m < MESSAGES; m++) {
        const events = Array.from({ length: EVENTS }, (_, i) => (i % 3 === 0 ? click({ eventId: `st-${s}-${m}-${i}` }) : impression({ eventId: `st-${s}-${m}-${i}` })));
        if (m === MESSAGES - 1) events[0] = click({ eventId: `st-${s}-0-0` });
        yield { events };
      }
    }
    const answers = await Promise.all(Array.from({ length: STREAMS }, (_, s) => g.client.streamEvents(messages(s))));
    for (const a of answers) expect([a.accepted, a.duplicates, a.rejected, a.batches]).toEqual([BigInt(MESSAGES * EVENTS - 1), 1n, 0n, BigInt(MESSAGES)]);
    const stored = (prefix: string) => ({ event_id: { $regex: `^${prefix}` } });
    expect(await g.server.store.collections.clicks.countDocuments(stored("st-"))).toBe(STREAMS * (MESSAGES * (EVENTS / 3) - 1));
    expect(await g.server.store.collections.impressions.countDocuments(stored("st-"))).toBe(STREAMS * MESSAGES * ((2 * EVENTS) / 3));
    const after = await batchFigures();
    expect(after.writes - before.writes).toBe(STREAMS * MESSAGES);
    expect(after.events - before.events).toBe(STREAMS * MESSAGES * EVENTS);
    // The rollups counted what was stored, each event once (this server's earlier events included).
    const ctr = await g.client.getCtr({ days: 1 });
    const all = { clicks: BigInt(await g.server.store.collections.clicks.countDocuments()), impressions: BigInt(await g.server.store.collections.impressions.countDocuments()) };
    expect({ clicks: ctr.clicks, impressions: ctr.impressions }).toEqual(all);
  });
});
