/**
 * Rollup work a writer started and never finished is completed once, by whoever repairs first,
 * whether or not the writer had counted it before it stopped.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { latencyBucket } from "../../../src/core/sketches.js";
import { timeWindow } from "../../../src/core/window.js";
import { fastMetrics, rawMetrics } from "../../../src/store/read/metrics-source.js";
import type { ClickDocument } from "../../../src/store/schema/documents.js";
import { flagClickedImpressions } from "../../../src/store/rollups/click-claims.js";
import { pendingBatches, recordPendingBatch, settleBatch } from "../../../src/store/rollups/pending-batches.js";
import { pendingMarker, rollUp } from "../../../src/store/rollups/rollup-delta.js";
import { repairRollups } from "../../../src/store/rollups/repair.js";
import { rollupCollection } from "../../../src/store/schema/rollup-documents.js";
import { RollupReader } from "../../../src/store/read/rollup-reader.js";
import { DeadWriterCheck, finishDeadWriters, MIN_LEASE_MS, WriterLease } from "../../../src/store/write/writer-lease.js";
import { startHarness, type Harness } from "../../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

it("counts events left marked pending, once, even with concurrent repairers", async () => {
  const c = h.server.store.collections;
  await h.client.logEvents({
    events: Array.from({ length: 20 }, (_, i) => ({ kind: { case: "impression" as const, value: { eventId: `s${i}`, userId: `u${i % 4}`, query: "q", variant: "search_v1", resultsCount: i % 5, responseTimeMs: 10 + i } } })),
  });
  // As if a writer had died after inserting these and before counting them.
  const stamp = `${String(Date.now() - 120_000).padStart(15, "0")}:dead-writer`;
  const now = new Date();
  await c.clicks.insertMany(
    Array.from({ length: 7 }, (_, i) => ({ event_id: `orphan-${i}`, impression_id: `s${i}`, user_id: "u9", product_id: "p", rank: i, search_query: "q", query_normalized: "q", variant: "search_v1", response_time_ms: 10, session_id: null, source: "SEARCH_RESULTS" as const, timestamp: now, pending_rollup: stamp })),
  );
  // A search stored clicked with its click in the same batch, by the same dead writer.
  await c.impressions.insertOne({ event_id: "orphan-search", impression_id: "orphan-search", user_id: "u9", query: "q", query_normalized: "q", variant: "search_v1", results_count: 3, clicked: true, clicked_on_insert: true, response_time_ms: 12, session_id: null, timestamp: now, pending_rollup: stamp });
  const claim = `${String(Date.now() - 120_000).padStart(15, "0")}:dead-claimer`;
  await c.impressions.updateMany({ impression_id: { $in: ["s0", "s1"] } }, { $set: { clicked: true, click_claim: claim } });
  const f = { window: timeWindow(1) };
  const fast = fastMetrics(c, new RollupReader(c));
  expect((await fast.totals(f)).overall.clicks).toBe(0);

  const repaired = await Promise.all([repairRollups(c, 60_000), repairRollups(c, 60_000), repairRollups(c, 60_000)]);
  expect(repaired.reduce((a, b) => a + b, 0)).toBe(10); // 7 clicks + 1 search + 2 clicked impressions, once in all
  const [q, r] = await Promise.all([fast.totals(f), rawMetrics(c).totals(f)]);
  expect({ ...q.overall, users: 0 }).toEqual({ ...r.overall, users: 0 });
  expect(q.overall).toMatchObject({ clicks: 7, impressions: 21, searchesWithClicks: 3 });
  expect(await c.clicks.countDocuments({ pending_rollup: { $exists: true } })).toBe(0);
  expect(await c.impressions.countDocuments({ click_claim: { $exists: true } })).toBe(0);
  // nothing left to do, and recent markers (writers still at work) are left alone
  expect(await repairRollups(c, 60_000)).toBe(0);
});

/** A click as the writer stores it, `minutesAgo` in the past, still marked with `marker`. */
function pendingClick(id: string, minutesAgo: number, marker: string): ClickDocument {
  return { event_id: id, user_id: "u1", product_id: "p", rank: 2, search_query: "q", query_normalized: "q", variant: "search_v1", response_time_ms: 10, session_id: null, source: "SEARCH_RESULTS", timestamp: new Date(Date.now() - minutesAgo * 60_000), pending_rollup: marker };
}

async function fastEqualsRaw(): Promise<{ clicks: number }> {
  const c = h.server.store.collections;
  const f = { window: timeWindow(7) };
  const [q, r] = await Promise.all([fastMetrics(c, new RollupReader(c)).totals(f), rawMetrics(c).totals(f)]);
  expect({ ...q.overall, users: 0 }).toEqual({ ...r.overall, users: 0 });
  return q.overall;
}

it("does not count again a batch the writer had counted before it stopped (a lost reply, or a crash before clearing its marker)", async () => {
  await h.server.store.reset();
  const c = h.server.store.collections;
  const marker = pendingMarker(Date.now() - 120_000);
  const clicks = [pendingClick("counted-1", 90, marker), pendingClick("counted-2", 30, marker)];
  await c.clicks.insertMany(clicks.map((d) => ({ ...d })));
  await rollUp(c, clicks, [], marker);
  // Sent again (a retry after a lost reply): already counted, nothing changes.
  await rollUp(c, clicks, [], marker);
  expect(await repairRollups(c, 60_000)).toBe(2);
  expect(await fastEqualsRaw()).toMatchObject({ clicks: 2 });
  expect(await c.clicks.countDocuments({ pending_rollup: { $exists: true } })).toBe(0);
});

it("counts every batch once when writers race to create the same rollup documents", async () => {
  await h.server.store.reset();
  const c = h.server.store.collections;
  // Fresh hours, so each pair of writers races to insert the hour's (and day's) first document;
  // each pair also sends its batches twice.
  for (let hour = 1; hour <= 12; hour++) {
    const a = [pendingClick(`race-a-${hour}`, hour * 60 + 5, "")];
    const b = [pendingClick(`race-b-${hour}`, hour * 60 + 10, "")];
    const [ma, mb] = [pendingMarker(), pendingMarker()];
    await Promise.all([rollUp(c, a, [], ma), rollUp(c, b, [], mb), rollUp(c, a, [], ma), rollUp(c, b, [], mb)]);
    await c.clicks.insertMany([...a, ...b].map(({ pending_rollup: _, ...d }) => d));
  }
  expect(await fastEqualsRaw()).toMatchObject({ clicks: 24 });
  const busiest = await rollupCollection(c).findOne({ g: "d" }, { sort: { clk: -1 } });
  expect(busiest?.ap?.length).toBe(busiest?.ver);
});

it("finishes a batch whose writer died after recording it and storing its events, once, and not a duplicate it did not store", async () => {
  await h.server.store.reset();
  const c = h.server.store.collections;
  const dead = pendingMarker(Date.now() - 120_000);
  const other = pendingMarker(Date.now() - 120_000);
  // The dead writer meant to store three clicks; "shared" was already stored by another write.
  await c.clicks.insertMany([pendingClick("mine-1", 30, ""), pendingClick("shared", 40, "")].map(({ pending_rollup: _, ...d }, i) => ({ ...d, b: i === 0 ? dead : other })));
  await rollUp(c, [pendingClick("shared", 40, "")], [], other); // the other write counted its click
  await recordPendingBatch(c, dead, ["mine-1", "shared", "never-stored"], []);
  // A second batch that had counted its click before dying (only its record was left).
  const counted = pendingMarker(Date.now() - 120_000);
  await c.clicks.insertOne({ ...(({ pending_rollup: _, ...d }) => d)(pendingClick("counted", 50, "")), b: counted });
  await recordPendingBatch(c, counted, ["counted"], []);
  await rollUp(c, [pendingClick("counted", 50, "")], [], counted);
  // A batch still being written (a recent record) is left alone.
  const recent = pendingMarker();
  await recordPendingBatch(c, recent, ["in-flight"], []);

  const repaired = await Promise.all([repairRollups(c, 60_000), repairRollups(c, 60_000)]);
  expect(repaired[0]! + repaired[1]!).toBe(2); // mine-1, and counted (again, harmlessly)
  expect(await fastEqualsRaw()).toMatchObject({ clicks: 3 });
  expect(await pendingBatches(c).find({}, { projection: { _id: 1 } }).toArray()).toEqual([{ _id: recent }]);
});

it("a batch written through the service leaves no pending record, and its events carry its marker", async () => {
  await h.server.store.reset();
  const c = h.server.store.collections;
  await h.client.logEvents({ events: [{ kind: { case: "click", value: { eventId: "through-1", userId: "u", productId: "p", rank: 1, searchQuery: "q", variant: "search_v1", responseTimeMs: 1 } } }] });
  expect(await pendingBatches(c).countDocuments()).toBe(0);
  const stored = await c.clicks.findOne({ event_id: "through-1" });
  expect(stored?.b).toMatch(/^\d{15}:/);
  expect(stored?.pending_rollup).toBeUndefined();
  expect(await fastEqualsRaw()).toMatchObject({ clicks: 1 });
});

it("finishes a batch as soon as its writer's lease ends, and leaves a live writer's batch alone", async () => {
  await h.server.store.reset();
  const c = h.server.store.collections;
  const live = await WriterLease.acquire(c, "lease-test", 60_000);
  try {
    // Half-way batch of a live writer: its events stored, not yet counted.
    const marker = pendingMarker();
    await recordPendingBatch(c, marker, ["leased-1"], [], live.run);
    await c.clicks.insertOne({ ...(({ pending_rollup: _, ...d }) => d)(pendingClick("leased-1", 5, "")), b: marker });
    expect(await finishDeadWriters(c, undefined)).toBe(0);
    expect(await pendingBatches(c).countDocuments()).toBe(1);
    // The writer is gone (here: its lease released; a crash lets it expire): the next reader finishes it, once.
    await live.release();
    const finished = await Promise.all([finishDeadWriters(c, undefined), finishDeadWriters(c, undefined)]);
    expect(finished[0]! + finished[1]!).toBeGreaterThanOrEqual(1);
    expect(await pendingBatches(c).countDocuments()).toBe(0);
    expect(await fastEqualsRaw()).toMatchObject({ clicks: 1 });
  } finally {
    live.stop();
  }
});

it("a read looks for dead writers only when a lease it saw could have ended since, and then finishes their batches", async () => {
  await h.server.store.reset();
  const c = h.server.store.collections;
  const check = new DeadWriterCheck(c, undefined);
  const sleepUntil = async (t: number) => {
    while (performance.now() < t) await new Promise((r) => setTimeout(r, 10));
  };
  // A writer that stops renewing at once (as if it crashed): by this process's clock its lease
  // ends before `began + LEASE`.
  const LEASE = 5_000;
  const dying = await WriterLease.acquire(c, "dying-writer", LEASE);
  dying.stop();
  const began = performance.now();
  const marker = pendingMarker();
  await recordPendingBatch(c, marker, ["dying-1"], [], dying.run);
  await c.clicks.insertOne({ ...(({ pending_rollup: _, ...d }) => d)(pendingClick("dying-1", 3, "")), b: marker });
  // Less than MIN_LEASE_MS of the lease left: the look holds until the lease's end, not longer.
  await sleepUntil(began + LEASE - MIN_LEASE_MS + 200);
  const looked = performance.now();
  expect(await check.finish()).toBe(0);
  expect(await pendingBatches(c).countDocuments()).toBe(1);
  expect(check.holdsUntil).toBeGreaterThan(looked);
  expect(check.holdsUntil).toBeLessThanOrEqual(began + LEASE);
  // The first read after the lease ended looks again and finishes the batch, once.
  await sleepUntil(began + LEASE + 20);
  expect(await check.finish()).toBe(1);
  expect(check.looks).toBe(2);
  expect(await pendingBatches(c).countDocuments()).toBe(0);
  expect(await fastEqualsRaw()).toMatchObject({ clicks: 1 });
  // Having finished some, the next read looks again; that look finds nothing dead and the only
  // live lease (the harness server's) runs for seconds: it holds MIN_LEASE_MS, and reads skip.
  expect(await check.finish()).toBe(0);
  expect(check.looks).toBe(3);
  expect(check.holdsUntil - performance.now()).toBeGreaterThan(MIN_LEASE_MS / 2);
  expect(check.holdsUntil - performance.now()).toBeLessThanOrEqual(MIN_LEASE_MS);
  expect(await check.finish()).toBe(0);
  expect(check.looks).toBe(3);
});

describe("first clicks (MRR, abandonment, time to first click) under claims", () => {
  const c = () => h.server.store.collections;
  const f = { window: timeWindow(7) };
  const firstClicks = async () => {
    const [q, r] = await Promise.all([fastMetrics(c(), new RollupReader(c())).totals(f), rawMetrics(c()).totals(f)]);
    return { fast: q.overall.firstClicks, raw: r.overall.firstClicks };
  };
  const base = Date.now() - 3_600_000;
  const at = (ms: number) => new Date(base + ms);
  const click = (id: string, search: string, rank: number, t: Date): ClickDocument => ({ event_id: id, impression_id: search, user_id: "u1", product_id: "p", rank, search_query: "q", query_normalized: "q", variant: "search_v1", response_time_ms: 10, session_id: null, source: "SEARCH_RESULTS", timestamp: t });
  /** A search logged with one click in the same batch (stored clicked, counted with the batch). */
  const searchWithClick = async (id: string, rank: number, delayMs: number) => {
    await h.client.logEvents({
      events: [
        { kind: { case: "impression", value: { eventId: id, userId: "u1", query: "q", variant: "search_v1", resultsCount: 10, responseTimeMs: 5, timestamp: timestampFromDate(at(0)) } } },
        { kind: { case: "click", value: { eventId: `${id}-c`, impressionId: id, userId: "u1", productId: "p", rank, searchQuery: "q", variant: "search_v1", responseTimeMs: 5, timestamp: timestampFromDate(at(delayMs)) } } },
      ],
    });
  };
  /** What a writer does before counting a move to an earlier click: the click stored and counted, the search claimed (its linked clicks left as they were: moved from themselves to themselves). */
  const claimMove = async (search: string, rank: number, delayMs: number, claim: string) => {
    await c().clicks.insertOne(click(`${search}-early`, search, rank, at(delayMs)));
    await rollUp(c(), [click(`${search}-early`, search, rank, at(delayMs))], [], pendingMarker());
    await c().impressions.updateOne({ impression_id: search }, [{ $set: { cf: { c: { $eq: ["$clicked", true] }, t: "$fc_t", r: "$fc_r", k: "$lk" }, clicked: true, fc_t: at(delayMs), fc_r: rank, click_claim: claim } }]);
  };

  it("a dead writer's claim that moved a first click is finished by the repair, once", async () => {
    await h.server.store.reset();
    await searchWithClick("m1", 3, 5_000);
    expect((await firstClicks()).fast.ranks).toEqual(new Map([[3, 1]]));
    const dead = `${String(Date.now() - 120_000).padStart(15, "0")}:dead-mover`;
    await claimMove("m1", 0, 1_000, dead);
    // Not yet counted: the rollups still hold the old first click.
    expect((await firstClicks()).fast.ranks).toEqual(new Map([[3, 1]]));
    await Promise.all([repairRollups(c(), 60_000), repairRollups(c(), 60_000), repairRollups(c(), 60_000)]);
    const { fast, raw } = await firstClicks();
    expect(fast).toEqual(raw);
    expect(fast).toEqual({ searchesWithResults: 1, ranks: new Map([[0, 1]]), delays: new Map([[latencyBucket(1_000), 1]]) });
    expect(await c().impressions.countDocuments({ click_claim: { $exists: true } })).toBe(0);
    expect(await fastEqualsRaw()).toMatchObject({ searchesWithClicks: 1, clicks: 2 });
  });

  it("a batch settled after its search's first click moved counts the batch's own first click, and the move once", async () => {
    await h.server.store.reset();
    // A dead writer stored a search with its click (rank 4) and did not count the batch.
    const marker = pendingMarker(Date.now() - 120_000);
    await recordPendingBatch(c(), marker, [], ["m2"], "a-dead-run");
    await c().impressions.insertOne({ event_id: "m2", impression_id: "m2", user_id: "u1", query: "q", query_normalized: "q", variant: "search_v1", results_count: 10, clicked: true, clicked_on_insert: true, fc_t: at(9_000), fc_r: 4, fi_t: at(9_000), fi_r: 4, response_time_ms: 5, session_id: null, timestamp: at(0), b: marker });
    // Meanwhile an earlier click moved its first click, counted in full (by the repair: the
    // batch, of a writer's run, is left to settleBatch).
    await claimMove("m2", 1, 2_000, pendingMarker(Date.now() - 1_000));
    await repairRollups(c(), 0);
    expect(await pendingBatches(c()).countDocuments()).toBe(1);
    expect((await firstClicks()).fast.ranks).toEqual(new Map([[4, -1], [1, 1]]));
    await Promise.all([settleBatch(c(), marker), settleBatch(c(), marker)]);
    const { fast, raw } = await firstClicks();
    expect(fast).toEqual(raw);
    expect(fast.ranks).toEqual(new Map([[1, 1]]));
  });

  it("a click claim blocked by another writer's unfinished claim finishes that one first, then moves on from it", async () => {
    await h.server.store.reset();
    await searchWithClick("m3", 5, 30_000);
    // Another writer claimed a move to rank 2 and has not counted it yet (alive: a recent marker).
    await claimMove("m3", 2, 20_000, pendingMarker());
    await c().clicks.insertOne(click("m3-earliest", "m3", 7, at(-500)));
    // Every stored click of the search, by rank (as a writer reads them after storing its own).
    const stored = [
      { r: 5, n: 1, t: at(30_000).getTime() },
      { r: 2, n: 1, t: at(20_000).getTime() },
      { r: 7, n: 1, t: at(-500).getTime() },
    ];
    await flagClickedImpressions(c(), new Map([["m3", stored]]), pendingMarker());
    const { fast, raw } = await firstClicks();
    expect(fast).toEqual(raw);
    // Clicked before its search: 0 ms.
    expect(fast).toEqual({ searchesWithResults: 1, ranks: new Map([[7, 1]]), delays: new Map([[0, 1]]) });
    expect(await c().impressions.countDocuments({ click_claim: { $exists: true } })).toBe(0);
  });
});
