import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createBufferedLogger, createClickAnalyticsClient, type BufferedLoggerError } from "../../src/client/index.js";
import { startHarness, type Harness } from "../support/harness.js";

const click = (i: number) => ({ userId: `u${i % 7}`, productId: `p${i}`, rank: i % 10, searchQuery: "q", variant: "search_v1", responseTimeMs: 12 });
const impression = (i: number) => ({ userId: `u${i % 7}`, query: `q${i}`, variant: "search_v1", resultsCount: 10, responseTimeMs: 12 });

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());
beforeEach(async () => {
  await h.server.store.reset();
});

const storedClicks = () => h.server.store.collections.clicks.countDocuments();
async function eventually(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("buffered logger", () => {
  it("sends a batch as soon as it is full", async () => {
    const logger = createBufferedLogger(h.client, { maxBatchSize: 50, flushIntervalMs: 60_000 });
    for (let i = 0; i < 120; i++) logger.logClick(click(i));
    await eventually(async () => logger.stats.accepted === 100);
    expect(await storedClicks()).toBe(100);
    expect(logger.stats.batches).toBe(2);
    expect(logger.pending).toBe(20); // a partial batch waits for its time
    await logger.close();
    expect(await storedClicks()).toBe(120);
    expect(logger.stats).toMatchObject({ accepted: 120, batches: 3, dropped: 0, failed: 0 });
  });

  it("sends a partial batch when its time is up, without being asked", async () => {
    const logger = createBufferedLogger(h.client, { maxBatchSize: 500, flushIntervalMs: 150 });
    for (let i = 0; i < 10; i++) logger.logClick(click(i));
    expect(logger.stats.batches).toBe(0);
    expect(logger.pending).toBe(10);
    await eventually(async () => logger.stats.accepted === 10);
    expect(await storedClicks()).toBe(10);
    expect(logger.stats.batches).toBe(1);
    await logger.close();
  });

  it("flush() waits for what was queued before it; close() sends the rest and refuses more", async () => {
    const errors: BufferedLoggerError[] = [];
    const logger = createBufferedLogger(h.client, { maxBatchSize: 500, flushIntervalMs: 60_000, onError: (e) => errors.push(e) });
    for (let i = 0; i < 30; i++) logger.logClick(click(i));
    await logger.flush();
    expect(await storedClicks()).toBe(30);
    for (let i = 30; i < 45; i++) logger.logImpression(impression(i));
    await logger.close();
    expect(await h.server.store.collections.impressions.countDocuments()).toBe(15);
    logger.logClick(click(99));
    expect(logger.stats.dropped).toBe(1);
    expect(errors).toEqual([expect.objectContaining({ kind: "dropped", message: "logger is closed" })]);
  });

  it("bounds memory: past the limit events are dropped and reported", async () => {
    const errors: BufferedLoggerError[] = [];
    const logger = createBufferedLogger(h.client, { maxBatchSize: 1000, flushIntervalMs: 60_000, maxBufferedEvents: 100, onError: (e) => errors.push(e) });
    for (let i = 0; i < 150; i++) logger.logClick(click(i));
    expect(logger.pending).toBe(100);
    expect(logger.stats.dropped).toBe(50);
    expect(errors.filter((e) => e.kind === "dropped")).toHaveLength(50);
    await logger.close();
    expect(await storedClicks()).toBe(100);
  });

  it("gives every event an id, links clicks to impressions, and reports rejected events", async () => {
    const errors: BufferedLoggerError[] = [];
    const logger = createBufferedLogger(h.client, { onError: (e) => errors.push(e) });
    const search = logger.logImpression(impression(1));
    const clickId = logger.logClick({ ...click(1), impressionId: search });
    logger.logClick({ ...click(2), rank: -1 });
    await logger.close();
    const stored = await h.server.store.collections.clicks.findOne({ event_id: clickId });
    expect(stored?.impression_id).toBe(search);
    expect(await h.server.store.collections.impressions.countDocuments({ impression_id: search, event_id: search })).toBe(1);
    expect(logger.stats).toMatchObject({ accepted: 2, rejected: 1 });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ kind: "rejected", events: 1 });
    expect(errors[0]!.results![0]).toMatchObject({ field: "events[2].click.rank" });
  });

  it("reports a batch it could not deliver", async () => {
    const dead = createClickAnalyticsClient("127.0.0.1:1");
    const errors: BufferedLoggerError[] = [];
    const logger = createBufferedLogger(dead, { callOptions: { timeoutMs: 300 }, onError: (e) => errors.push(e) });
    for (let i = 0; i < 5; i++) logger.logClick(click(i));
    await logger.close();
    dead.close();
    expect(logger.stats.failed).toBe(5);
    expect(errors).toEqual([expect.objectContaining({ kind: "failed", events: 5 })]);
  });

  it("retried batches are not counted twice", async () => {
    const logger = createBufferedLogger(h.client, { maxBatchSize: 10 });
    const ids = Array.from({ length: 10 }, (_, i) => logger.logClick(click(i)));
    await logger.flush();
    // the same events again, as a retry after a lost answer would send them
    for (let i = 0; i < 10; i++) logger.logClick({ ...click(i), eventId: ids[i]! });
    await logger.close();
    expect(await storedClicks()).toBe(10);
    expect(logger.stats).toMatchObject({ accepted: 10, duplicates: 10 });
  });
});
