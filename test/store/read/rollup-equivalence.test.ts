/**
 * The fast path (rollups + edge hour from raw events) against the raw-event path on randomised
 * data, windows, periods and filters: counts, sums, ranks, extremes, distinct users and the sums
 * per user bucket must be identical; latency percentiles within the sketch's 1%.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { EventSchema } from "../../../src/client/index.js";
import { bucketStarts } from "../../../src/core/time-buckets.js";
import { requestWindow, timeWindow } from "../../../src/core/window.js";
import type { MetricsFilter } from "../../../src/store/read/metrics-filter.js";
import { fastMetrics, rawMetrics, type MetricsSource } from "../../../src/store/read/metrics-source.js";
import { rollupCollection, rollupId } from "../../../src/store/schema/rollup-documents.js";
import { RollupReader } from "../../../src/store/read/rollup-reader.js";
import { pairResult } from "../../../src/core/interleaving.js";
import { rawInterleavingPairs } from "../../../src/store/read/interleaving.js";
import { startHarness, type Harness } from "../../support/harness.js";
import { clearOfHourBoundary, currentHour } from "../../support/clock.js";
import { mulberry32 } from "../../support/prng.js";

type EventInit = MessageInitShape<typeof EventSchema>;
const DAY = 86_400_000;

const SEED = Number(process.env.EQUIVALENCE_SEED ?? 20261128);
/** Queries whose text tests the query tables' field names and the order of ties. */
const ODD_QUERIES = ["node.js", "$where", "100% Cotton", "a.b.c", "%41", "Straße  Ünï", "emoji 🦄", "\uFFFD end", "ﬁle", " padded "];
const VARIANTS = ["search_v1", "search_v2", "search_v3"];
const RESULT_COUNTS = [1, 2, 3, 10, 10, 10, 99, 100, 101, 250];
let h: Harness;
let raw: MetricsSource;
let fast: MetricsSource;

beforeAll(async () => {
  h = await startHarness();
  const rand = mulberry32(SEED);
  const pickQuery = mulberry32(SEED + 1);
  // Result counts either side of the cap of kept counts (its own generator, so the rest of the data stays as it was).
  const pickCount = mulberry32(SEED + 3);
  // Clicks some time after (or a little before) their search, and earlier clicks that arrive
  // last: first clicks that change after they were counted (its own generator, as above).
  const pickDelay = mulberry32(SEED + 4);
  // Linked clicks that carry another query and variant than their search's (attributed to the
  // search), and clicks naming a search that never arrives (its own generator, as above).
  const pickCarried = mulberry32(SEED + 5);
  const carried = (query: string, variant: string): [string, string] =>
    pickCarried() < 0.2 ? [`other ${Math.floor(pickCarried() * 5)}`, VARIANTS[Math.floor(pickCarried() * VARIANTS.length)]!] : [query, variant];
  const earlierLate: EventInit[] = [];
  const now = Date.now();
  const impressions: EventInit[] = [];
  const clicks: EventInit[] = [];
  const lateImpressions: EventInit[] = [];
  // Searches sent in one batch with their clicks (stored clicked at once).
  const together: EventInit[] = [];
  // Ages spread over 40 days, plus events a minute either side of the 1/2/7/30-day edges.
  const ages = [...Array.from({ length: 2500 }, () => rand() * 40 * DAY), ...[1, 2, 7, 30].flatMap((d) => [d * DAY - 60_000, d * DAY + 60_000, d * DAY - 1000])];
  ages.forEach((age, i) => {
    const at = timestampFromDate(new Date(now - age));
    const variant = VARIANTS[Math.floor(rand() * VARIANTS.length)]!;
    const userId = `user-${Math.floor(rand() ** 2 * 400)}`;
    const ms = Math.round(Math.exp(3.5 + rand() * 2.5) * 100) / 100;
    // Its own generator, so the rest of the data is what it was before odd queries were added.
    const query = pickQuery() < 0.2 ? ODD_QUERIES[Math.floor(pickQuery() * ODD_QUERIES.length)]! : `q${i % 50}`;
    const impression: EventInit = { kind: { case: "impression", value: { eventId: `imp-${i}`, impressionId: `imp-${i}`, userId, query, variant, resultsCount: rand() < 0.05 ? 0 : RESULT_COUNTS[Math.floor(pickCount() * RESULT_COUNTS.length)]!, responseTimeMs: ms, timestamp: at } } };
    // Some impressions arrive after their clicks, some in the same batch.
    const late = rand() < 0.1;
    const withClicks = !late && i % 3 === 0;
    (late ? lateImpressions : withClicks ? together : impressions).push(impression);
    const n = rand() < 0.25 ? 1 + Math.floor(rand() * 3) : 0;
    const clickAt = () => timestampFromDate(new Date(Math.min(now, now - age + Math.round((pickDelay() - 0.05) * 600_000))));
    for (let k = 0; k < n; k++) {
      const [searchQuery, clickVariant] = carried(query, variant);
      (withClicks ? together : clicks).push({ kind: { case: "click", value: { eventId: `clk-${i}-${k}`, impressionId: `imp-${i}`, userId, productId: "p", rank: Math.floor(-Math.log(1 - rand()) * 3), searchQuery, variant: clickVariant, responseTimeMs: ms, timestamp: clickAt() } } });
    }
    if (n > 0 && pickDelay() < 0.3) earlierLate.push({ kind: { case: "click", value: { eventId: `early-${i}`, impressionId: `imp-${i}`, userId, productId: "p", rank: Math.floor(pickDelay() * 8), searchQuery: query, variant, responseTimeMs: ms, timestamp: timestampFromDate(new Date(now - age + Math.round((pickDelay() - 0.5) * 60_000))) } } });
    if (rand() < 0.03) clicks.push({ kind: { case: "click", value: { eventId: `free-${i}`, userId: `user-${Math.floor(rand() * 500)}`, productId: "p", rank: 0, searchQuery: "q", variant, responseTimeMs: ms, timestamp: at } } });
    if (pickCarried() < 0.02) clicks.push({ kind: { case: "click", value: { eventId: `orphan-${i}`, impressionId: `never-${i}`, userId, productId: "p", rank: 1, searchQuery: "orphan", variant, responseTimeMs: ms, timestamp: at } } });
  });
  const send = async (events: EventInit[]) => {
    for (let i = 0; i < events.length; i += 1000) await h.client.logEvents({ events: events.slice(i, i + 1000) });
  };
  await send(impressions);
  await send(clicks);
  await send(together);
  await send(lateImpressions);
  await send(clicks.slice(0, 300)); // retries: duplicates must not count again
  await send(together.slice(0, 300));
  await send(earlierLate);
  await send(earlierLate.slice(0, 100)); // and their retries
  raw = rawMetrics(h.server.store.collections);
  // A reader with a cold cache, so these reads exercise fetching as well as caching.
  fast = fastMetrics(h.server.store.collections, new RollupReader(h.server.store.collections));
}, 120_000);
afterAll(() => h.close());

/** Periods [start, end): within an hour, across hours of one day, across days; edges at odd minutes and on whole hours and days. */
function periods(): [string, MetricsFilter["window"]][] {
  const rand = mulberry32(SEED + 2);
  const now = Date.now();
  const hour = 3_600_000;
  const spans = [0.3 * hour, 5 * hour, 1.5 * DAY, 9 * DAY, 33 * DAY];
  const out: [string, MetricsFilter["window"]][] = spans.map((span) => {
    const start = now - span - rand() * 5 * DAY;
    return [`period ${(span / hour).toFixed(1)}h`, requestWindow({ days: 0, startTime: new Date(start), endTime: new Date(start + span) }, new Date(now))];
  });
  const dayStart = Math.floor((now - 10 * DAY) / DAY) * DAY;
  out.push(["period whole days", requestWindow({ days: 0, startTime: new Date(dayStart), endTime: new Date(dayStart + 4 * DAY) }, new Date(now))]);
  out.push(["period whole hours", requestWindow({ days: 0, startTime: new Date(dayStart + 3 * hour), endTime: new Date(dayStart + DAY + 7 * hour) }, new Date(now))]);
  out.push(["period open end", requestWindow({ days: 0, startTime: new Date(now - 3.2 * DAY) }, new Date(now))]);
  return out;
}

const filters = (): [string, MetricsFilter][] =>
  [...[1, 2, 7, 30, 35, 365].map((days): [string, MetricsFilter["window"]] => [`${days}d`, timeWindow(days)]), ...periods()].flatMap(([label, window]) =>
    [undefined, ...VARIANTS, "nope"].map((variant): [string, MetricsFilter] => [`${label} ${variant ?? "all"}`, { window, variant }]),
  );

const close = (a: number | undefined, b: number | undefined, relative: number) => {
  if (a === undefined || b === undefined) return expect(a).toBe(b);
  expect(Math.abs(a - b)).toBeLessThanOrEqual(Math.abs(b) * relative + 1e-9);
};

describe("rollups equal raw events", () => {
  it("totals: counts, sums and distinct users exactly", async () => {
    let periodsWithEvents = 0;
    for (const [name, f] of filters()) {
      const [r, q] = await Promise.all([raw.totals(f), fast.totals(f)]);
      expect([...q.variants.keys()].sort(), name).toEqual([...r.variants.keys()].sort());
      if (name.startsWith("period") && r.overall.impressions > 0) periodsWithEvents++;
      for (const [key, expected, actual] of [["overall", r.overall, q.overall] as const, ...[...r.variants].map(([v, t]) => [v, t, q.variants.get(v)!] as const)]) {
        const { responseTimeSum: rs, ...rest } = expected;
        const { responseTimeSum: qs, ...qrest } = actual;
        expect(qrest, `${name} ${key}`).toEqual(rest);
        close(qs, rs, 1e-9);
      }
    }
    // The periods are not vacuous: most hold events.
    expect(periodsWithEvents).toBeGreaterThanOrEqual(5 * 5);
  });

  it("first clicks are not vacuous: many ranks and delays, clicks before their search, first clicks moved after counting", async () => {
    const first = (await raw.totals({ window: timeWindow(30) })).overall.firstClicks;
    expect(first.ranks.size).toBeGreaterThan(3);
    expect(first.delays.size).toBeGreaterThan(50);
    expect(first.delays.get(0)).toBeGreaterThan(0);
    const c = h.server.store.collections;
    expect(await c.impressions.countDocuments({ $expr: { $lt: ["$fc_t", "$fi_t"] } })).toBeGreaterThan(0);
    expect(await c.impressions.countDocuments({ click_claim: { $exists: true } })).toBe(0);
  });

  it("click attribution is not vacuous: clicks outside results, clicks carrying another query or variant, linked clicks whose search never came", async () => {
    const c = h.server.store.collections;
    // Searches whose linked clicks include some outside their results, and some whose every click is.
    expect(await c.impressions.countDocuments({ "lk.o": { $gt: 0 } })).toBeGreaterThan(20);
    expect(await c.impressions.countDocuments({ "lk.o": { $gt: 0 }, fc_t: { $exists: false } })).toBeGreaterThan(5);
    // A first click moved from outside the results to a shown rank by a click that came later.
    expect(await c.impressions.countDocuments({ fc_r: { $exists: true }, "li.o": { $gt: 0 }, fi_t: { $exists: false } })).toBeGreaterThan(0);
    expect(await c.clicks.countDocuments({ search_query: /^other / })).toBeGreaterThan(50);
    expect(await c.clicks.countDocuments({ impression_id: /^never-/ })).toBeGreaterThan(5);
    const f: MetricsFilter = { window: timeWindow(365) };
    const [positions, top, totals] = await Promise.all([fast.positions(f, false), fast.topQueries(f, "clicks", 1000), fast.totals(f)]);
    expect(positions.get("")!.clicksOutsideResults).toBe(totals.overall.clicksOutsideResults);
    expect(positions.get("")!.clicksOutsideResults).toBeGreaterThan(20);
    // Linked clicks count in their searches' queries: none in the queries they carried, nor in the orphans' "orphan".
    expect(top.some((row) => row.query.startsWith("other ") || row.query === "orphan")).toBe(false);
    expect(top.some((row) => row.positions !== undefined && row.positions.firstClickRanks.size > 2)).toBe(true);
  });

  it("experiment arms: per-user-bucket sums, users and users in several arms exactly, latency histograms alike", async () => {
    let several = 0;
    for (const [name, f] of filters().filter(([, f]) => f.variant === undefined)) {
      const [r, q] = await Promise.all([raw.arms(f), fast.arms(f)]);
      expect([...q.arms.keys()].sort(), name).toEqual([...r.arms.keys()].sort());
      expect([q.users, q.usersInSeveralArms], name).toEqual([r.users, r.usersInSeveralArms]);
      several += r.usersInSeveralArms;
      for (const [v, expected] of r.arms) {
        const actual = q.arms.get(v)!;
        // Reciprocal ranks are fractions added in another order: equal to rounding; the rest exactly.
        const { reciprocalRanks: rr, ...counts } = actual.buckets;
        const { reciprocalRanks: err, ...expectedCounts } = expected.buckets;
        expect(counts, `${name} ${v}`).toEqual(expectedCounts);
        rr.forEach((x, b) => close(x, err[b], 1e-12));
        const { responseTimeSum: rs, ...rest } = expected.totals;
        const { responseTimeSum: qs, ...qrest } = actual.totals;
        expect(qrest, `${name} ${v}`).toEqual(rest);
        close(qs, rs, 1e-9);
        expect(actual.latency.histogram, `${name} ${v}`).toEqual(expected.latency.histogram);
        expect(actual.latency.bounds, `${name} ${v}`).toEqual(expected.latency.bounds);
        expect(actual.positions, `${name} ${v}`).toEqual(expected.positions);
      }
    }
    expect(several).toBeGreaterThan(0);
  });

  it("rank statistics exactly, overall and per variant", async () => {
    for (const [name, f] of filters()) {
      for (const perVariant of [false, true]) {
        const [r, q] = await Promise.all([raw.ranks(f, perVariant), fast.ranks(f, perVariant)]);
        expect(q, name).toEqual(r);
        const [rp, qp] = await Promise.all([raw.positions(f, perVariant), fast.positions(f, perVariant)]);
        expect(qp, name).toEqual(rp);
      }
    }
  });

  it("latency: count, extremes and mean exactly, percentiles within 1%", async () => {
    for (const [name, f] of filters()) {
      const [r, q] = await Promise.all([raw.responseTimes(f), fast.responseTimes(f)]);
      expect([q.count, q.min, q.max], name).toEqual([r.count, r.min, r.max]);
      close(q.avg, r.avg, 1e-9);
      for (const k of ["p50", "p95", "p99"] as const) close(q[k], r[k], 0.01);
      const [rv, qv] = await Promise.all([raw.latency(f, [0.5, 0.95], true), fast.latency(f, [0.5, 0.95], true)]);
      expect([...qv.keys()].sort(), name).toEqual([...rv.keys()].sort());
      for (const [v, values] of rv) values.forEach((x, i) => close(qv.get(v)![i], x, 0.01));
    }
  });

  it("time series: per-bucket counts exactly, p95 within 1%, in whole-hour and half-hour zones", async () => {
    for (const zone of ["UTC", "America/New_York", "Asia/Kolkata"]) {
      for (const unit of ["day", "hour"] as const) {
        for (const days of unit === "day" ? [7, 35] : [2]) {
          for (const variant of [undefined, "search_v2"]) {
            const f: MetricsFilter = { window: timeWindow(days), variant };
            const starts = bucketStarts(zone, unit, f.window.start, f.window.end);
            const [r, q] = await Promise.all([raw.timeSeries(f, unit, zone, starts), fast.timeSeries(f, unit, zone, starts)]);
            const name = `${zone} ${unit} ${days}d ${variant ?? "all"}`;
            expect(q.map(({ p95: _, ...counts }) => counts), name).toEqual(r.map(({ p95: _, ...counts }) => counts));
            r.forEach((row, i) => close(q[i]!.p95, row.p95, 0.01));
          }
        }
      }
    }
  });

  it("top queries: the same rows in the same order, for every order and limit", async () => {
    let longest = 0;
    for (const [name, f] of filters()) {
      for (const order of ["searches", "clicks", "ctr", "no_results"] as const) {
        // The reference once per order (its ranking is total, so a smaller limit is its prefix):
        // the raw aggregation is most of this test's time.
        const [r, ...qs] = await Promise.all([raw.topQueries(f, order, 1000), ...[1, 7, 1000].map((limit) => fast.topQueries(f, order, limit))]);
        longest = Math.max(longest, r.length);
        [1, 7, 1000].forEach((limit, k) => expect(qs[k], `${name} ${order} ${limit}`).toEqual(r.slice(0, limit)));
      }
    }
    expect(longest).toBeGreaterThan(7); // the limits cut
    // Hourly tables written, finished days compacted and stored by the reader.
    expect(await rollupCollection(h.server.store.collections).countDocuments({ g: "qh" })).toBeGreaterThan(0);
    expect(await rollupCollection(h.server.store.collections).countDocuments({ g: "qd" })).toBeGreaterThan(0);
    // The odd queries made it through as themselves (normalised), not as their field names.
    const all = await fast.topQueries({ window: timeWindow(365) }, "searches", 1000);
    expect(all.map((row) => row.query)).toEqual(expect.arrayContaining(["node.js", "$where", "100% cotton", "%41", "emoji 🦄", "padded"]));
  });

  it("sees late events in hours it has already cached", async () => {
    const f: MetricsFilter = { window: timeWindow(30) };
    const before = await fast.totals(f);
    // Nothing moved: the window's ranking is kept (the same rows), not ranked again.
    const kept = await fast.topQueries(f, "no_results", 1000);
    expect(await fast.topQueries(f, "no_results", 1000)).toBe(kept);
    await h.client.logEvents({
      events: [{ kind: { case: "impression", value: { eventId: "backfill-1", userId: "late-user", query: "q", variant: "search_v1", resultsCount: 0, responseTimeMs: 1, timestamp: timestampFromDate(new Date(Date.now() - 20 * DAY)) } } }],
    });
    const after = await fast.totals(f);
    // The day it fell on was compacted (and cached) by the top-queries test: it is rebuilt.
    const ranked = await fast.topQueries(f, "no_results", 1000);
    expect(ranked).not.toBe(kept);
    expect(ranked).toEqual(await raw.topQueries(f, "no_results", 1000));
    expect(after.overall.impressions).toBe(before.overall.impressions + 1);
    expect(after.overall.noResults).toBe(before.overall.noResults + 1);
    expect(after.overall).toEqual({ ...(await raw.totals(f)).overall, users: after.overall.users, responseTimeSum: after.overall.responseTimeSum });
  });
});

describe("a query table that reached its size limit", () => {
  it("is marked full when a write finds it so, and its period is then answered from raw events", async () => {
    const c = h.server.store.collections;
    const at = new Date(Date.now() - 3 * DAY);
    const hour = new Date(Math.floor(at.getTime() / 3_600_000) * 3_600_000);
    const id = rollupId("qh", hour.getTime(), "search_v1");
    const impression = (eventId: string, query: string) => ({ kind: { case: "impression" as const, value: { eventId, userId: "u", query, variant: "search_v1", resultsCount: 1, responseTimeMs: 1, timestamp: timestampFromDate(at) } } });
    await h.client.logEvents({ events: [impression("before-full-table", "first query")] });
    // Pad the table of an hour in a finished (compacted) day to just under 16 MiB, as a flood of
    // distinct queries would: the next update cannot fit.
    const size = (await rollupCollection(c).aggregate<{ n: number }>([{ $match: { _id: id } }, { $project: { n: { $bsonSize: "$$ROOT" } } }]).toArray())[0]!.n;
    await rollupCollection(c).updateOne({ _id: id }, { $set: { pad: "x".repeat(16 * 1024 * 1024 - size - 48) }, $inc: { ver: 1 } });
    const f: MetricsFilter = { window: timeWindow(7), variant: "search_v1" };
    await fast.topQueries(f, "searches", 1000); // caches the table as it is now
    await h.client.logEvents({ events: [impression("into-full-table", "overflow query")] });
    expect((await rollupCollection(c).findOne({ _id: id }, { projection: { full: 1 } }))?.full).toBe(true);
    const [r, q] = await Promise.all([raw.topQueries(f, "searches", 1000), fast.topQueries(f, "searches", 1000)]);
    expect(q).toEqual(r);
    expect(q.find((row) => row.query === "overflow query")?.searches).toBe(1);
  });
});

describe("a database whose events predate query tables", () => {
  it("answers top queries from the raw events, never from incomplete tables", async () => {
    const c = h.server.store.collections;
    const meta = c.db.collection<{ _id: string; complete: boolean }>("rollups");
    await meta.updateOne({ _id: "meta|query-tables" }, { $set: { complete: false } });
    try {
      // A table that disagrees with the events: it must not be read.
      await rollupCollection(c).updateMany({ g: "qh" }, { $inc: { ver: 1, "qt.0.bogus.i": 1_000_000 } });
      const f: MetricsFilter = { window: timeWindow(30) };
      const fresh = fastMetrics(c, new RollupReader(c));
      const [r, q] = await Promise.all([raw.topQueries(f, "searches", 1000), fresh.topQueries(f, "searches", 1000)]);
      expect(q).toEqual(r);
      expect(q.some((row) => row.query === "bogus")).toBe(false);
    } finally {
      await rollupCollection(c).updateMany({ g: "qh" }, { $unset: { "qt.0.bogus": "" }, $inc: { ver: 1 } });
      await meta.updateOne({ _id: "meta|query-tables" }, { $set: { complete: true } });
    }
  });
});

describe("interleaving rollups equal the raw computation", () => {
  // Its own server: interleaved searches of two and three rankers over 40 days, users active on
  // many days (their sums add across days), clicks repeated, past the shown list, before their
  // search, long after it, on ordinary searches and unlinked.
  let hi: Harness;
  const IL_VARIANTS = ["il_v1", "il_v2"];
  const RANKERS = ["r_a", "r_b", "r_c"];
  const rand = mulberry32(SEED + 22);
  const search = (id: string, user: string, variant: string, teams: string[], resultsCount: number, at: number): EventInit => ({
    kind: { case: "impression", value: { eventId: id, impressionId: id, userId: user, query: "q", variant, resultsCount, responseTimeMs: 5, timestamp: timestampFromDate(new Date(at)), teams } },
  });
  const click = (id: string, search: string, user: string, variant: string, rank: number, at: number): EventInit => ({
    kind: { case: "click", value: { eventId: id, ...(search === "" ? {} : { impressionId: search }), userId: user, productId: "p", rank, searchQuery: "q", variant, responseTimeMs: 5, timestamp: timestampFromDate(new Date(Math.min(Date.now(), at))) } },
  });
  /** Searches and clicks of `n` interleaved searches (ids from `prefix`), and clicks to send much later. */
  function dataset(n: number, prefix: string): { first: EventInit[]; lateSearches: EventInit[]; lateClicks: EventInit[] } {
    const now = Date.now();
    const first: EventInit[] = [];
    const lateSearches: EventInit[] = [];
    const lateClicks: EventInit[] = [];
    for (let i = 0; i < n; i++) {
      const id = `${prefix}${i}`;
      const at = now - (i < 40 ? rand() * 2 * 3_600_000 : rand() * 40 * DAY);
      const user = `il-user-${Math.floor(rand() ** 2 * 60)}`;
      const variant = IL_VARIANTS[Math.floor(rand() * 2)]!;
      const kind = rand();
      // Two rankers by team draft; three rankers; one ranker only (counts for no pair); ordinary.
      const teams =
        kind < 0.6
          ? Array.from({ length: 2 + Math.floor(rand() * 6) }, (_, k) => (k % 2 === 0) !== rand() < 0.5 ? "r_a" : "r_b")
          : kind < 0.85
            ? Array.from({ length: 3 + Math.floor(rand() * 5) }, () => RANKERS[Math.floor(rand() * 3)]!)
            : kind < 0.92
              ? ["r_c", "r_c"]
              : [];
      const resultsCount = teams.length + Math.floor(rand() * 3);
      (rand() < 0.1 ? lateSearches : first).push(search(id, user, variant, teams, resultsCount, at));
      const clicks = rand() < 0.5 ? 1 + Math.floor(rand() * 4) : 0;
      for (let k = 0; k < clicks; k++) {
        // Mostly shown positions, sometimes the same one again, sometimes past the list.
        const rank = rand() < 0.15 ? resultsCount + Math.floor(rand() * 3) : Math.floor(rand() * Math.max(1, teams.length));
        (rand() < 0.15 ? lateClicks : first).push(click(`${id}-c${k}`, id, user, variant, rank, at + 30_000));
      }
      if (rand() < 0.05) first.push(click(`${id}-free`, "", user, variant, 0, at));
    }
    return { first, lateSearches, lateClicks };
  }
  const send = async (events: EventInit[]) => {
    for (let i = 0; i < events.length; i += 1000) await hi.client.logEvents({ events: events.slice(i, i + 1000) });
  };
  let data: ReturnType<typeof dataset>;

  beforeAll(async () => {
    hi = await startHarness();
    data = dataset(1500, "il-");
    // Clicks first for some: clicks sent before their search.
    await send([...data.first.filter((e) => e.kind?.case === "click"), ...data.first.filter((e) => e.kind?.case !== "click")]);
  }, 120_000);
  afterAll(() => hi.close());

  const windows = (): [string, MetricsFilter][] =>
    [...[1, 2, 7, 30, 365].map((days): [string, MetricsFilter["window"]] => [`${days}d`, timeWindow(days)]), ...periods()].flatMap(([label, window]) =>
      [undefined, ...IL_VARIANTS].map((variant): [string, MetricsFilter] => [`${label} ${variant ?? "all"}`, { window, variant }]),
    );

  /** Every pair's result both ways, at the default confidence and at 0.9. */
  async function compare(): Promise<number> {
    const store = hi.server.store;
    let decided = 0;
    for (const [name, f] of windows()) {
      const [fromRollups, fromRaw] = await Promise.all([store.interleaving.pairs(f), rawInterleavingPairs(store.collections, f)]);
      expect([...fromRollups.keys()].sort(), name).toEqual([...fromRaw.keys()].sort());
      for (const [key, r] of fromRaw) {
        for (const confidence of [0.95, 0.9]) expect(pairResult(fromRollups.get(key)!, confidence), `${name} ${key}`).toEqual(pairResult(r, confidence));
        decided += r.winsA + r.winsB + r.ties;
      }
    }
    return decided;
  }

  it("every pair, every window, period and variant: counts, users and the test exactly", async () => {
    expect(await compare()).toBeGreaterThan(1000);
    // Not vacuous: three-ranker searches make all three pairs; some clicks were past the list.
    const all = await hi.server.store.interleaving.pairs({ window: timeWindow(365) });
    expect([...all.keys()].length).toBe(3);
    expect([...all.values()].some((p) => p.uncreditedClicks > 0)).toBe(true);
  });

  // Up to a minute more than its own work: it waits out an hour boundary when one is near.
  it("rebuilds the hours and days that late searches and late clicks change, and only those", { timeout: 120_000 }, async () => {
    const store = hi.server.store;
    const hour = await clearOfHourBoundary();
    await compare();
    const before = { ...store.interleaving.builds };
    const edgesBefore = store.interleaving.edgeHourBuilds;
    await compare();
    // Nothing moved: nothing rebuilt; the windows' settled edge hours come from the minute cache.
    // (Both reads in one hour: past an hour boundary every window's edge is another hour.)
    expect(store.interleaving.builds).toEqual(before);
    expect(edgesBefore).toBeGreaterThan(0);
    expect(store.interleaving.edgeHourBuilds).toBe(edgesBefore);
    expect(currentHour(), "both reads within one hour (windows' edges move at hour boundaries)").toBe(hour);
    // Whole days, nothing moved: the window's sum is kept (the same object), not merged again.
    const dayStart = Math.floor((Date.now() - 20 * DAY) / DAY) * DAY;
    const wholeDays = (): MetricsFilter => ({ window: requestWindow({ days: 0, startTime: new Date(dayStart), endTime: new Date(dayStart + 15 * DAY) }, new Date()) });
    const kept = await store.interleaving.pairs(wholeDays());
    expect(await store.interleaving.pairs(wholeDays())).toBe(kept);
    const impressionsOf = (pairs: Map<string, { impressions: number }>) => [...pairs.values()].reduce((n, p) => n + p.impressions, 0);
    const keptImpressions = impressionsOf(kept);
    await send(data.lateSearches);
    await send(data.lateClicks);
    await send(data.lateClicks.slice(0, 20)); // retries: duplicates
    await compare();
    expect(store.interleaving.builds.h).toBeGreaterThan(before.h);
    // Late searches landed in those days: a new sum, the raw events' own; the kept one is as it was.
    const moved = await store.interleaving.pairs(wholeDays());
    expect(moved).not.toBe(kept);
    expect(impressionsOf(moved)).toBeGreaterThan(keptImpressions);
    expect(impressionsOf(kept)).toBe(keptImpressions);
    const movedRaw = await rawInterleavingPairs(store.collections, wholeDays());
    for (const [key, r] of movedRaw) expect(pairResult(moved.get(key)!, 0.95), key).toEqual(pairResult(r, 0.95));
    // Through the service: the same as a server that reads raw events.
    const viaRollups = await hi.client.getInterleavingResult({ days: 30, rankerA: "r_a", rankerB: "r_b" });
    const { clickAnalyticsService } = await import("../../../src/server/click-analytics-service.js");
    const rawService = clickAnalyticsService({ store, rawInterleaving: true });
    const viaRaw = (await rawService.getInterleavingResult({ days: 30, rankerA: "r_a", rankerB: "r_b", variant: "" } as never, { deadline: Infinity, signal: new AbortController().signal } as never)) as Record<string, unknown>;
    const fields = ["impressions", "winsA", "winsB", "ties", "uncreditedClicks", "users", "usersPreferringA", "usersPreferringB", "usersTied", "delta", "pValue", "significant", "preferred", "test"] as const;
    const plain = (x: Record<string, unknown>) =>
      Object.fromEntries(fields.map((k) => [k, typeof x[k] === "bigint" ? Number(x[k]) : k === "delta" && x[k] !== undefined ? (({ value, low, high }) => ({ value, low, high }))(x[k] as { value: number; low: number; high: number }) : x[k]]));
    expect(plain(viaRollups as unknown as Record<string, unknown>)).toEqual(plain(viaRaw));
    expect(viaRollups.pairs).toHaveLength((viaRaw.pairs as unknown[]).length);
    expect(Number(viaRollups.winsA + viaRollups.winsB)).toBeGreaterThan(0);
  });

  it("a late click on a search in a window's cached edge hour moves that window's answer", async () => {
    const store = hi.server.store;
    const start = Date.now() - DAY;
    const at = Math.floor(start / 60_000) * 60_000 + 2 * 60_000 + 10_000;
    // Needs whole minutes of the edge hour after the search (else the edge is read raw anyway).
    if (Math.floor(at / 3_600_000) !== Math.floor(start / 3_600_000) || at % 3_600_000 > 3_540_000) return;
    await send([search("edge-s", "edge-u", "il_v1", ["r_a", "r_b"], 2, at), click("edge-c0", "edge-s", "edge-u", "il_v1", 0, at + 1000)]);
    const f = (): MetricsFilter => ({ window: timeWindow(1) });
    const first = await store.interleaving.pairs(f());
    const builds = store.interleaving.edgeHourBuilds;
    expect(pairResult(first.get("r_a\u0000r_b")!, 0.95)).toEqual(pairResult((await rawInterleavingPairs(store.collections, f())).get("r_a\u0000r_b")!, 0.95));
    // A second click, on r_b's position: a win for r_a becomes a tie.
    await send([click("edge-c1", "edge-s", "edge-u", "il_v1", 1, at + 2000)]);
    const [after, raw] = await Promise.all([store.interleaving.pairs(f()), rawInterleavingPairs(store.collections, f())]);
    expect(pairResult(after.get("r_a\u0000r_b")!, 0.95)).toEqual(pairResult(raw.get("r_a\u0000r_b")!, 0.95));
    expect(after.get("r_a\u0000r_b")!.ties).toBe(first.get("r_a\u0000r_b")!.ties + 1);
    expect(store.interleaving.edgeHourBuilds).toBeGreaterThan(builds);
  });

  it("a database whose interleaved searches predate the rollups: their versions are made on first read", async () => {
    const store = hi.server.store;
    const { InterleavingRollupReader } = await import("../../../src/store/read/interleaving-rollups.js");
    const { interleavingRollups } = await import("../../../src/store/schema/interleaving-rollup-documents.js");
    await interleavingRollups(store.collections).deleteMany({});
    const fresh = new InterleavingRollupReader(store.collections);
    const f: MetricsFilter = { window: timeWindow(30) };
    expect([...(await fresh.pairs(f))].map(([k, p]) => [k, pairResult(p, 0.95)])).toEqual([...(await rawInterleavingPairs(store.collections, f))].map(([k, p]) => [k, pairResult(p, 0.95)]));
  });
});
