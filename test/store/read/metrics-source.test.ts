/**
 * Reads of one filter that overlap (a WatchMetrics snapshot asks five at once) share one window
 * read, and a read that starts after it finished sees what was written since; a settled edge
 * hour is cached (to the millisecond), and read again when an event lands in it; a warm window
 * read is one round trip.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, expect, it } from "vitest";
import { topQueries } from "../../../src/store/read/breakdowns.js";
import { QueryTableReader } from "../../../src/store/read/query-tables.js";
import { requestWindow, timeWindow } from "../../../src/core/window.js";
import { bucketStarts } from "../../../src/core/time-buckets.js";
import { fastMetrics, rawMetrics } from "../../../src/store/read/metrics-source.js";
import { RollupReader } from "../../../src/store/read/rollup-reader.js";
import { eventTotals, userActivity } from "../../../src/store/read/metrics-queries.js";
import { rawFirstClicks } from "../../../src/store/read/first-click-fields.js";
import { match } from "../../../src/store/read/metrics-filter.js";
import { rollupListing } from "../../../src/store/read/rollup-listing.js";
import { UserRollupReader } from "../../../src/store/read/user-rollups.js";
import type { UserTotals } from "../../../src/core/user-totals.js";
import type { WindowAggregates } from "../../../src/store/read/rollup-aggregate.js";
import type { MetricsFilter } from "../../../src/store/read/metrics-filter.js";
import { startHarness, type Harness } from "../../support/harness.js";
import { monitoredCollections as monitoredStore } from "../../support/monitored.js";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

/** A real reader that counts its window reads. */
class CountingReader extends RollupReader {
  reads = 0;
  override window(...args: Parameters<RollupReader["window"]>): Promise<WindowAggregates> {
    this.reads++;
    return super.window(...args);
  }
}

const search = (i: number, variant: string) => ({ kind: { case: "impression" as const, value: { eventId: `s${i}`, userId: `u${i % 5}`, query: "q", variant, resultsCount: 3, responseTimeMs: 10 + i } } });

it("shares one window read among the overlapping reads of one filter, and reads afresh afterwards", async () => {
  await h.client.logEvents({ events: Array.from({ length: 12 }, (_, i) => search(i, i % 2 === 0 ? "a" : "b")) });
  await h.client.logClick({ eventId: "c1", impressionId: "s0", userId: "u0", productId: "p", rank: 2, searchQuery: "q", variant: "a", responseTimeMs: 10 });
  const c = h.server.store.collections;
  const reader = new CountingReader(c);
  const metrics = fastMetrics(c, reader);
  const f: MetricsFilter = { window: timeWindow(1) };
  const [totals, ranks, ranksByVariant, latency, latencyByVariant] = await Promise.all([
    metrics.totals(f),
    metrics.ranks(f, false),
    metrics.ranks(f, true),
    metrics.latency(f, [0.5, 0.95], false),
    metrics.latency(f, [0.5, 0.95], true),
  ]);
  expect(reader.reads).toBe(1);
  // The same numbers as separate reads of separate filters.
  const fresh = (): MetricsFilter => ({ window: f.window });
  expect(totals).toEqual(await metrics.totals(fresh()));
  expect(ranks).toEqual(await metrics.ranks(fresh(), false));
  expect(ranksByVariant).toEqual(await metrics.ranks(fresh(), true));
  expect(latency).toEqual(await metrics.latency(fresh(), [0.5, 0.95], false));
  expect(latencyByVariant).toEqual(await metrics.latency(fresh(), [0.5, 0.95], true));
  expect(totals.overall).toMatchObject({ impressions: 12, clicks: 1 });
  expect([...totals.variants.keys()].sort()).toEqual(["a", "b"]);
  expect(reader.reads).toBe(6);

  // Once settled, the same filter object is read again: a later write is seen.
  await h.client.logEvents({ events: [search(100, "b")] });
  expect((await metrics.totals(f)).overall.impressions).toBe(13);
  expect(reader.reads).toBe(7);
});

it("takes a settled edge hour's whole minutes from its cache, and reads the hour again once an event lands in it", async () => {
  const c = h.server.store.collections;
  const reader = new RollupReader(c);
  const metrics = fastMetrics(c, reader);
  const raw = rawMetrics(c);
  // A trailing window whose start is 30.5 minutes into an hour that ended over an hour ago.
  const hour = Math.floor((Date.now() - DAY - 3 * HOUR) / HOUR) * HOUR;
  const now = new Date(hour + 30.5 * MINUTE + DAY);
  const at = (ms: number) => timestampFromDate(new Date(hour + ms));
  const edgeSearch = (id: string, ms: number, variant: string) => ({ kind: { case: "impression" as const, value: { eventId: id, userId: `edge-${id}`, query: "q", variant, resultsCount: 4, responseTimeMs: 7, timestamp: at(ms) } } });
  // Before the window, in the start's minute either side of it, in whole minutes, and the next hour.
  const offsets = [10 * MINUTE, 30 * MINUTE + 10_000, 30 * MINUTE + 40_000, 45 * MINUTE, 60 * MINUTE - 1, 70 * MINUTE];
  await h.client.logEvents({ events: offsets.map((ms, i) => edgeSearch(`e${i}`, ms, i % 2 === 0 ? "a" : "b")) });
  const same = async (f: MetricsFilter) => {
    const [fast, reference] = await Promise.all([metrics.totals(f), raw.totals(f)]);
    expect(fast).toEqual(reference);
    return fast.overall;
  };
  const window = (movedMs = 0): MetricsFilter => ({ window: timeWindow(1, new Date(now.getTime() + movedMs)) });
  const first = await same(window());
  expect(reader.edgeHourBuilds).toBe(1);
  // The start moves on by a minute and a half: still the same hour, read from the cache.
  await same(window(90_000));
  expect(reader.edgeHourBuilds).toBe(1);
  // A late event in a cached minute moves the hour's versions: read again, and counted.
  await h.client.logEvents({ events: [edgeSearch("late", 50 * MINUTE, "b")] });
  expect((await same(window())).impressions).toBe(first.impressions + 1);
  expect(reader.edgeHourBuilds).toBe(2);
  // Another variant filter is another entry.
  await same({ ...window(), variant: "b" });
  expect(reader.edgeHourBuilds).toBe(3);
});

/** The store's collections through a client whose every command is seen (`commands`). */
const monitoredCollections = () => monitoredStore(h.dbName);

it("reads a warm window in one round trip (its rollup versions), summing a settled edge hour from its cache to the millisecond", async () => {
  const { monitored, commands, c } = await monitoredCollections();
  try {
    const reader = new RollupReader(c);
    const metrics = fastMetrics(c, reader);
    const raw = rawMetrics(c);
    // A window starting at a millisecond 20 minutes into an hour that ended two days ago, with
    // searches a millisecond either side of the start, at it, and later in the hour; a click at
    // the start + 1 ms.
    const hour = Math.floor((Date.now() - 2 * DAY - 5 * HOUR) / HOUR) * HOUR;
    const start = hour + 20 * MINUTE + 123;
    const at = (ms: number) => timestampFromDate(new Date(ms));
    const edgeSearch = (id: string, ms: number, variant: string) => ({ kind: { case: "impression" as const, value: { eventId: id, userId: `ms-${id}`, query: "q", variant, resultsCount: 4, responseTimeMs: 7, timestamp: at(ms) } } });
    await h.client.logEvents({
      events: [edgeSearch("m-1", start - 1, "a"), edgeSearch("m0", start, "b"), edgeSearch("m1", start + 1, "a"), edgeSearch("m2", hour + 50 * MINUTE, "b")],
    });
    await h.client.logClick({ eventId: "m1-click", impressionId: "m1", userId: "ms-m1", productId: "p", rank: 1, searchQuery: "q", variant: "a", responseTimeMs: 7, timestamp: at(start + 1) });
    const windowFrom = (ms: number): MetricsFilter => ({ window: timeWindow(2, new Date(ms + 2 * DAY)) });
    const same = async (f: MetricsFilter) => {
      const [fast, reference] = await Promise.all([metrics.totals(f), raw.totals(f)]);
      expect(fast).toEqual(reference);
      return fast.overall;
    };
    const cold = await same(windowFrom(start));
    expect(reader.edgeHourBuilds).toBe(1);
    // A millisecond later the search at the start has left the window; two, the click and its search too.
    const later = await same(windowFrom(start + 1));
    expect(later.impressions).toBe(cold.impressions - 1);
    expect(later.clicks).toBe(cold.clicks);
    const after = await same(windowFrom(start + 2));
    expect(after.impressions).toBe(cold.impressions - 2);
    expect(after.clicks).toBe(cold.clicks - 1);
    // A start that crosses no event sums the same rows (kept from the last call); one that
    // crosses back sums them again: each against the raw events.
    expect(await same(windowFrom(start + 3))).toEqual(after);
    expect(await same(windowFrom(start + 1))).toEqual(later);
    expect(await same(windowFrom(start + 1))).toEqual(later);
    expect(await same(windowFrom(start))).toEqual(cold);
    expect(reader.edgeHourBuilds).toBe(1);
    // Warm: the window's rollup versions (the edge hour's among them), and nothing else.
    commands.length = 0;
    await reader.window(windowFrom(start + 1).window);
    expect(commands).toEqual(["find rollups"]);

    // Top queries likewise: the first hour from its cache to the millisecond, the same rows as
    // the raw events give, and a warm read is the one listing of table and edge versions.
    const tables = new QueryTableReader(c);
    for (const ms of [start, start + 1, start + 2, start]) {
      const f = windowFrom(ms);
      expect(await tables.top(f, "searches", 1_000)).toEqual(await topQueries(c, f, "searches", 1_000));
    }
    commands.length = 0;
    await tables.top(windowFrom(start + 1), "searches", 10);
    expect(commands).toEqual(["find rollups"]);
    // GetTopQueries also asks for the window's positions: both listings are one find.
    const positionsToo = fastMetrics(c, reader, tables);
    await Promise.all([positionsToo.topQueries(windowFrom(start + 1), "searches", 10), positionsToo.positions(windowFrom(start + 1), false)]);
    commands.length = 0;
    const [rows, positions] = await Promise.all([positionsToo.topQueries(windowFrom(start + 1), "searches", 10), positionsToo.positions(windowFrom(start + 1), false)]);
    expect(commands).toEqual(["find rollups"]);
    expect(rows).toEqual(await raw.topQueries(windowFrom(start + 1), "searches", 10));
    expect(positions).toEqual(await raw.positions(windowFrom(start + 1), false));

    // GetVariantComparison's read: the window's rollups and its users' tables are listed by one
    // find, each reader getting its own documents; the same arms as the raw events give.
    const users = new UserRollupReader(c);
    const comparing = fastMetrics(c, reader, tables, undefined, users);
    const armsOf = async (f: MetricsFilter) => {
      const [fast, reference] = await Promise.all([comparing.arms(f), raw.arms(f)]);
      for (const [v, arm] of reference.arms) {
        expect(fast.arms.get(v)?.totals).toEqual(arm.totals);
        const byUser = (t: UserTotals) => new Map(Array.from(t.ids, (id, i) => [id, [t.impressions[i], t.clicks[i]]]));
        expect(byUser(fast.arms.get(v)!.perUser!)).toEqual(byUser(arm.perUser!));
      }
      return fast;
    };
    await armsOf(windowFrom(start + 1));
    commands.length = 0;
    const sentBefore = rollupListing(c).sent;
    const warm = await armsOf(windowFrom(start + 1));
    expect(rollupListing(c).sent - sentBefore).toBe(1);
    expect(commands.filter((x) => x.startsWith("find rollups"))).toEqual(["find rollups"]);
    expect(warm.arms.size).toBe(2);
  } finally {
    await monitored.close();
  }
});

it("reads one user's totals (with first clicks) and summary in one aggregation per collection each, sent at once, the same as separate passes", async () => {
  const { monitored, commands, c } = await monitoredCollections();
  try {
    const at = (ms: number) => timestampFromDate(new Date(ms));
    const now = Date.now();
    // One user in two variants: searches with and without results, first clicks at several
    // ranks and delays, a repeated click, and another user's events that must not count.
    const events = [];
    for (let i = 0; i < 12; i++) {
      const id = `one-${i}`;
      const variant = i % 3 === 0 ? "b" : "a";
      events.push({ kind: { case: "impression" as const, value: { eventId: id, impressionId: id, userId: i === 11 ? "someone-else" : "one-user", query: "q", variant, resultsCount: i % 5 === 4 ? 0 : 6, responseTimeMs: 10 + i, timestamp: at(now - HOUR - i * MINUTE) } } });
      if (i % 2 === 0 && i % 5 !== 4)
        for (const [k, rank] of (i % 4 === 0 ? [1, 3] : [i % 6]).entries())
          events.push({ kind: { case: "click" as const, value: { eventId: `${id}-c${k}`, impressionId: id, userId: i === 11 ? "someone-else" : "one-user", productId: "p", rank, searchQuery: "q", variant, responseTimeMs: 5, timestamp: at(now - HOUR - i * MINUTE + 1_000 * (k + 1) * (i + 1)) } } });
    }
    await h.client.logEvents({ events });
    const f: MetricsFilter = { window: timeWindow(1), userId: "one-user" };
    commands.length = 0;
    const totals = await eventTotals(c, f);
    expect(commands.sort()).toEqual(["aggregate click_events", "aggregate impressions"]);
    // The same first clicks as their own pass over the impressions (the path unfiltered reads take).
    const separate = await rawFirstClicks(c, match(f), "$variant", f);
    expect(new Map([...totals.variants].map(([v, t]) => [v, t.firstClicks]))).toEqual(new Map([...separate].map(([v, x]) => [v, x.stats])));
    expect(totals.variants.get("a")!.firstClicks.ranks.size).toBeGreaterThan(1);
    expect(totals.overall.impressions).toBe(11);
    expect(totals.overall.users).toBe(1);
    // Counted against what was sent: the user's clicks and their ranks, per variant.
    const sentClicks = events.flatMap((e) => (e.kind.case === "click" && e.kind.value.userId === "one-user" ? [e.kind.value as { rank: number; variant: string }] : []));
    for (const v of ["a", "b"]) {
      const mine = sentClicks.filter((x) => x.variant === v);
      expect(totals.variants.get(v), v).toMatchObject({ clicks: mine.length, rankSum: mine.reduce((n, x) => n + x.rank, 0), users: 1 });
    }
    expect(totals.overall.clicks).toBe(sentClicks.length);
    commands.length = 0;
    const summary = await userActivity(c, "one-user", f);
    expect(commands.sort()).toEqual(["aggregate click_events", "aggregate impressions"]);
    expect(summary).toMatchObject({ impressions: 11, clicks: totals.overall.clicks, variantsUsed: ["a", "b"] });
    expect(summary.avgResponseTimeMs).toBeCloseTo(totals.overall.responseTimeSum / 11, 12);
    expect(summary.avgRankClicked).toBeCloseTo(totals.overall.rankSum / totals.overall.clicks, 12);
  } finally {
    await monitored.close();
  }
});

it("skips a time series' bucket work for a caller whose deadline has passed, and answers one still in time", async () => {
  await h.client.logEvents({ events: Array.from({ length: 6 }, (_, i) => search(1_000 + i, "a")) });
  const metrics = fastMetrics(h.server.store.collections, new RollupReader(h.server.store.collections));
  // A year of hourly buckets: the work a caller gone should not pay for.
  const window = timeWindow(365);
  const starts = Array.from({ length: 365 * 24 }, (_, i) => new Date(Math.ceil(window.start.getTime() / HOUR) * HOUR + i * HOUR));
  const late: MetricsFilter = { window, maxTimeMS: 60_000, deadline: Date.now() - 1 };
  await expect(metrics.timeSeries(late, "hour", "UTC", starts)).rejects.toMatchObject({ kind: "deadline_exceeded" });
  const inTime = await metrics.timeSeries({ ...late, deadline: Date.now() + 60_000 }, "hour", "UTC", starts);
  expect(inTime).toHaveLength(starts.length);
  expect(inTime.reduce((n, p) => n + p.impressions, 0)).toBeGreaterThanOrEqual(6);
});

it("keeps a time series' bucket rows while their rollups are unchanged, and recomputes the bucket a late event lands in", async () => {
  const c = h.server.store.collections;
  const at = (daysAgo: number) => timestampFromDate(new Date(Date.now() - daysAgo * DAY - 2 * HOUR));
  await h.client.logEvents({ events: [3, 4, 5].map((d) => ({ kind: { case: "impression" as const, value: { eventId: `series-${d}`, userId: "u1", query: "q", variant: "a", resultsCount: 3, responseTimeMs: 20 + d, timestamp: at(d) } } })) });
  const fast = fastMetrics(c, new RollupReader(c));
  const f: MetricsFilter = { window: timeWindow(7) };
  const starts = bucketStarts("UTC", "day", f.window.start, f.window.end);
  const first = await fast.timeSeries(f, "day", "UTC", starts);
  const again = await fast.timeSeries(f, "day", "UTC", starts);
  // Whole days with events before today: the same row objects (kept), and equal to the events.
  const dayOf = (daysAgo: number) => starts.findIndex((s, i) => s.getTime() <= Date.now() - daysAgo * DAY - 2 * HOUR && (starts[i + 1]?.getTime() ?? Infinity) > Date.now() - daysAgo * DAY - 2 * HOUR);
  const [d3, d4] = [dayOf(3), dayOf(4)];
  expect(again[d3]).toBe(first[d3]);
  expect(again[d4]).toBe(first[d4]);
  // A late search four days back: its day is summed again, the others are still kept.
  await h.client.logEvents({ events: [{ kind: { case: "impression" as const, value: { eventId: "series-late", userId: "u2", query: "q", variant: "b", resultsCount: 0, responseTimeMs: 90, timestamp: at(4) } } }] });
  const [after, raw] = await Promise.all([fast.timeSeries(f, "day", "UTC", starts), rawMetrics(c).timeSeries(f, "day", "UTC", starts)]);
  expect(after[d4]).not.toBe(first[d4]);
  expect(after[d4]!.impressions).toBe(first[d4]!.impressions + 1);
  expect(after[d3]).toBe(first[d3]);
  expect(after.map(({ p95: _, ...counts }) => counts)).toEqual(raw.map(({ p95: _, ...counts }) => counts));
});

it("keeps a time series' first bucket, its raw edge included, while the window's start crosses no event", async () => {
  const c = h.server.store.collections;
  const f: MetricsFilter = { window: timeWindow(9) };
  const start = f.window.start.getTime();
  const hourEdge = Math.ceil(start / HOUR) * HOUR;
  // A search in the window's partial first hour (read from raw events, not from the rollups).
  const inEdge = start + Math.max(1, Math.floor((hourEdge - start) / 2));
  await h.client.logEvents({ events: [{ kind: { case: "impression" as const, value: { eventId: "edge-bucket-1", userId: "u1", query: "q", variant: "a", resultsCount: 3, responseTimeMs: 40, timestamp: timestampFromDate(new Date(inEdge)) } } }] });
  const fast = fastMetrics(c, new RollupReader(c));
  const starts = bucketStarts("UTC", "day", f.window.start, f.window.end);
  const first = await fast.timeSeries(f, "day", "UTC", starts);
  const again = await fast.timeSeries(f, "day", "UTC", starts);
  expect(again[0]).toBe(first[0]);
  // The edge counts, as the events say.
  const raw = await rawMetrics(c).timeSeries(f, "day", "UTC", starts);
  expect(first[0]!.impressions).toBe(raw[0]!.impressions);
  expect(first[0]!.impressions).toBeGreaterThan(0);
  // A start one event later: the first bucket is summed again, without that search.
  const later: MetricsFilter = { window: { ...f.window, start: new Date(inEdge + 1) } };
  const moved = await fast.timeSeries(later, "day", "UTC", starts);
  expect(moved[0]).not.toBe(first[0]);
  expect(moved[0]!.impressions).toBe((await rawMetrics(c).timeSeries(later, "day", "UTC", starts))[0]!.impressions);
});

it("keeps a window's answers while its rollups are unchanged, and answers afresh, as the events do, once an event lands in it", async () => {
  const c = h.server.store.collections;
  const dayStart = Math.floor((Date.now() - 6 * DAY) / DAY) * DAY;
  const at = (hours: number) => timestampFromDate(new Date(dayStart + hours * HOUR));
  const event = (id: string, hours: number, variant: string) => ({ kind: { case: "impression" as const, value: { eventId: id, userId: `u-${id}`, query: "q", variant, resultsCount: 3, responseTimeMs: 30 + hours, timestamp: at(hours) } } });
  await h.client.logEvents({ events: [event("answers-1", 5, "a"), event("answers-2", 30, "b")] });
  await h.client.logClick({ eventId: "answers-c1", impressionId: "answers-1", userId: "u-answers-1", productId: "p", rank: 1, searchQuery: "q", variant: "a", responseTimeMs: 30, timestamp: at(5.1) });
  const fast = fastMetrics(c, new RollupReader(c));
  // Whole days: no raw edge, so the window's sums are the reader's kept ones.
  const f = (): MetricsFilter => ({ window: requestWindow({ days: 0, startTime: new Date(dayStart), endTime: new Date(dayStart + 3 * DAY) }, new Date()) });
  const read = () => Promise.all([fast.totals(f()), fast.ranks(f(), true), fast.latency(f(), [0.5, 0.95], false), fast.positions(f(), false), fast.responseTimes(f())]);
  const first = await read();
  const again = await read();
  again.forEach((answer, i) => expect(answer, `answer ${i}`).toBe(first[i]));
  await h.client.logEvents({ events: [event("answers-late", 40, "a")] });
  const [after, raw] = await Promise.all([read(), Promise.all([rawMetrics(c).totals(f()), rawMetrics(c).responseTimes(f())])]);
  after.forEach((answer, i) => expect(answer, `answer ${i}`).not.toBe(first[i]));
  expect(after[0].overall.impressions).toBe(first[0].overall.impressions + 1);
  expect(after[0].overall).toMatchObject({ impressions: raw[0].overall.impressions, clicks: raw[0].overall.clicks, users: raw[0].overall.users, responseTimeSum: raw[0].overall.responseTimeSum });
  expect(after[4]).toMatchObject({ count: raw[1].count, min: raw[1].min, max: raw[1].max });
});
