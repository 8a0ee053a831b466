/**
 * RAW_RETENTION_DAYS: raw events expire through the TTL index on `timestamp` (where MongoDB has
 * no TTL monitor, as with the embedded engine here, the service expires them itself on the same
 * terms); rollups are kept and go on answering exactly; a request that would need expired raw
 * events is FAILED_PRECONDITION naming the retention, and answers within it stay exact.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { MongoClient } from "mongodb";
import { Status, type ServiceError } from "../../src/client/index.js";
import { serveEnv } from "../../src/cli/commands/serve.js";
import { ConfigError, configFromEnv } from "../../src/server/config.js";
import { createLogger } from "../../src/server/logger.js";
import { startServer } from "../../src/server/server.js";
import { startHarness, type Harness } from "../support/harness.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const RETENTION_DAYS = 2;
/** What the TTL index keeps: the retention and an hour's grace (see src/store/schema/retention.ts). */
const TTL_SECONDS = (RETENTION_DAYS * DAY + HOUR) / 1000;

let h: Harness;
const now = Date.now();
/** A whole UTC hour six days ago: a window starting there needs no raw events at its start. */
const wholeHour = new Date(Math.floor((now - 6 * DAY) / HOUR) * HOUR);
const old = new Date(now - 5 * DAY);
const recent = new Date(now - DAY);

const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: ServiceError) => e);
async function refused(p: Promise<unknown>): Promise<string> {
  const error = await failure(p);
  expect(error?.code, error?.details).toBe(Status.FAILED_PRECONDITION);
  expect(error!.details).toContain(`${RETENTION_DAYS}-day retention`);
  return error!.details;
}

beforeAll(async () => {
  // A real mongod's TTL monitor runs every 60 s: made fast here. The embedded engine has none
  // (it refuses the parameter), and the service expires raw events itself, every 200 ms here.
  const mongo = new MongoClient(inject("mongoUri"));
  await mongo.db("admin").command({ setParameter: 1, ttlMonitorSleepSecs: 1 }).catch(() => undefined);
  await mongo.close();
  h = await startHarness({ rawRetentionDays: RETENTION_DAYS, retentionSweepMs: 200 });
  const events = [old, old, old, recent, recent].map((at, i) => [
    { kind: { case: "impression" as const, value: { eventId: `i${i}`, userId: "u1", query: `q${i % 2}`, variant: i % 2 ? "B" : "A", resultsCount: 3, responseTimeMs: 10 + i, timestamp: timestampFromDate(at) } } },
    { kind: { case: "click" as const, value: { eventId: `c${i}`, impressionId: `i${i}`, userId: "u1", productId: "p", rank: 1 + i, searchQuery: `q${i % 2}`, variant: i % 2 ? "B" : "A", responseTimeMs: 5, timestamp: timestampFromDate(new Date(at.getTime() + 1_000)) } } },
  ]);
  const res = await h.client.logEvents({ events: events.flat() });
  expect(res.accepted).toBe(10n);
});
afterAll(() => h.close());

describe("expiry", () => {
  it("the {timestamp: 1} index of both event collections is a TTL index of the retention", async () => {
    for (const c of [h.server.store.collections.clicks, h.server.store.collections.impressions]) {
      const index = (await c.indexes()).find((i) => i.name === "timestamp_1");
      expect(index).toMatchObject({ key: { timestamp: 1 }, expireAfterSeconds: TTL_SECONDS });
    }
  });

  it("expires raw events past the retention and keeps the others; rollups still count every event", async () => {
    const { clicks, impressions } = h.server.store.collections;
    for (const until = Date.now() + 15_000; (await impressions.countDocuments({ timestamp: { $lt: recent } })) + (await clicks.countDocuments({ timestamp: { $lt: recent } })) > 0; ) {
      if (Date.now() > until) throw new Error("old raw events were not expired");
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await impressions.countDocuments()).toBe(2);
    expect(await clicks.countDocuments()).toBe(2);
    // Rollups are not expired: a window starting on a whole hour is answered from them alone.
    const all = await h.client.getCtr({ startTime: timestampFromDate(wholeHour) });
    expect([all.impressions, all.clicks, all.searchesWithClicks, all.users]).toEqual([5n, 5n, 5n, 1n]);
    expect(Object.fromEntries(Object.entries(all.variants).map(([v, t]) => [v, Number(t.impressions)]))).toEqual({ A: 3, B: 2 });
    const rank = await h.client.getRankMetrics({ startTime: timestampFromDate(wholeHour) });
    expect(rank.totalClicks).toBe(5n);
    const top = await h.client.getTopQueries({ startTime: timestampFromDate(wholeHour) });
    expect(top.queries.map((q) => [q.query, Number(q.searches), Number(q.clicks)])).toEqual([
      ["q0", 3, 3],
      ["q1", 2, 2],
    ]);
    const series = await h.client.getTimeSeries({ startTime: timestampFromDate(wholeHour) });
    expect(series.points.reduce((n, p) => n + Number(p.impressions), 0)).toBe(5);
  });
});

describe("requests that would need expired raw events", () => {
  it("are FAILED_PRECONDITION, naming the retention", async () => {
    // A window's partial first hour is read from raw events: 7 days ago is past the retention.
    const edge = await refused(h.client.getCtr({ days: 7 }));
    expect(edge).toContain("start the window on a whole hour or within 2 days");
    expect(edge).toContain("RAW_RETENTION_DAYS=2");
    await refused(h.client.getCtr({ days: 7, variant: "A" }));
    await refused(h.client.getResponseTimeMetrics({ days: 3 }));
    await refused(h.client.getVariantComparison({ days: 7 }));
    await refused(h.client.getTopQueries({ days: 7 }));
    await refused(h.client.getTimeSeries({ days: 7 }));
    // A period whose end is past the retention needs raw events for its partial last hour.
    await refused(h.client.getCtr({ startTime: timestampFromDate(wholeHour), endTime: timestampFromDate(new Date(wholeHour.getTime() + DAY + 30 * 60_000)) }));
    // A user's metrics and the export are raw events from the window's start.
    const user = await refused(h.client.getCtr({ userId: "u1", startTime: timestampFromDate(wholeHour) }));
    expect(user).toContain("ask for at most the last 2 days");
    await refused(h.client.getRankMetrics({ userId: "u1", days: 3 }));
    await refused(h.client.getUserSummary({ userId: "u1", days: 7 }));
    await refused(h.client.getTimeSeries({ userId: "u1", days: 3 }));
    await refused((async () => {
      for await (const _ of h.client.exportEvents({ days: 7 })) void _;
    })());
  });

  it("within the retention the answers stay exact", async () => {
    const ctr = await h.client.getCtr({ days: RETENTION_DAYS });
    expect([ctr.impressions, ctr.clicks, ctr.searchesWithClicks]).toEqual([2n, 2n, 2n]);
    const user = await h.client.getCtr({ userId: "u1", days: RETENTION_DAYS });
    expect([user.impressions, user.clicks]).toEqual([2n, 2n]);
    const summary = await h.client.getUserSummary({ userId: "u1", days: RETENTION_DAYS });
    expect([summary.totalImpressions, summary.totalClicks]).toEqual([2n, 2n]);
    const rt = await h.client.getResponseTimeMetrics({ days: RETENTION_DAYS });
    expect([rt.count, rt.minResponseTimeMs, rt.maxResponseTimeMs]).toEqual([2n, 13, 14]);
    let exported = 0;
    for await (const batch of h.client.exportEvents({ days: RETENTION_DAYS })) exported += batch.events.length;
    expect(exported).toBe(4);
    const top = await h.client.getTopQueries({ days: RETENTION_DAYS });
    expect(top.queries.map((q) => [q.query, Number(q.searches)])).toEqual([
      ["q0", 1],
      ["q1", 1],
    ]);
  });
});

describe("configuration", () => {
  it("RAW_RETENTION_DAYS and serve --raw-retention-days; unset or 0 keeps everything", () => {
    expect(configFromEnv({ RAW_RETENTION_DAYS: "30" }).rawRetentionDays).toBe(30);
    expect(configFromEnv({}).rawRetentionDays).toBeUndefined();
    expect(configFromEnv({ RAW_RETENTION_DAYS: "0" }).rawRetentionDays).toBeUndefined();
    expect(() => configFromEnv({ RAW_RETENTION_DAYS: "1.5" })).toThrow(ConfigError);
    expect(serveEnv({ "raw-retention-days": "14" }, {}).RAW_RETENTION_DAYS).toBe("14");
  });

  it("a restart with another retention changes the TTL; without retention the index is plain again", async () => {
    const reopen = async (rawRetentionDays: number | undefined) => {
      const s = await startServer({ host: "127.0.0.1", port: 0, mongoUri: inject("mongoUri"), dbName: `${h.dbName}_ttl`, rawRetentionDays }, createLogger("silent"));
      try {
        return (await s.store.collections.impressions.indexes()).find((i) => i.name === "timestamp_1");
      } finally {
        await s.close();
      }
    };
    try {
      expect((await reopen(undefined))?.expireAfterSeconds).toBeUndefined();
      expect((await reopen(3))?.expireAfterSeconds).toBe(3 * 86_400 + 3_600);
      expect((await reopen(10))?.expireAfterSeconds).toBe(10 * 86_400 + 3_600);
      expect((await reopen(undefined))?.expireAfterSeconds).toBeUndefined();
    } finally {
      await h.server.store.db.client.db(`${h.dbName}_ttl`).dropDatabase();
    }
  });
});
