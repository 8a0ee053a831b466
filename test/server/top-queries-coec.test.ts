/**
 * COEC per query in GetTopQueries, through the published client against a real server and engine,
 * checked against an independent computation straight from the events this test logged:
 * expected clicks of a query = for every rank r < 100, its searches in the window (and variant)
 * with results_count > r, times the window's clicks at rank r over all variants divided by all
 * the window's searches with results_count > r; COEC = its clicks at ranks < 100 / expected.
 *
 * Randomised (seeded) data over five days, three variants, results counts from 0 to 150 and
 * clicks at ranks up to 140, with a cluster in the trailing window's partial first hour: trailing
 * windows with and without a variant, an open-ended period (hourly tables, day tables, raw edge),
 * an explicit period (raw events); the same numbers from day tables stored by a reader, from a
 * cold cache, and with tables marked full (their hours read from raw events); a database whose
 * tables predate the histograms; and the README's worked example.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { TopQueriesOrder, type EventSchema, type QueryStats } from "../../src/client/index.js";
import { HISTOGRAMS_META_ID, markQueryTables } from "../../src/store/read/query-table-meta.js";
import { markFull, rollupCollection } from "../../src/store/schema/rollup-documents.js";
import { startHarness, type Harness } from "../support/harness.js";
import { mulberry32 } from "../support/prng.js";

type EventInit = MessageInitShape<typeof EventSchema>;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const SEED = Number(process.env.COEC_SEED ?? 20261204);
const VARIANTS = ["search_v1", "search_v2", "search_v3"];
/** "only clicks" is clicked but never searched; "no results" is searched without results only. */
const QUERIES = [...Array.from({ length: 12 }, (_, i) => `q${i}`), "no results"];
/** The trailing window the tests ask for most. */
const DAYS = 3;
/** Events keep this far from a trailing window's start, whose exact instant is the server's now. */
const EDGE_GAP = 90_000;

interface Impression {
  query: string;
  variant: string;
  resultsCount: number;
  t: number;
}
interface Click {
  query: string;
  variant: string;
  rank: number;
  t: number;
  /** The search it is linked to (by impression_id); none: unlinked. */
  search?: Impression;
}

let h: Harness;
const impressions: Impression[] = [];
const clicks: Click[] = [];
let now: number;

beforeAll(async () => {
  h = await startHarness();
  const rand = mulberry32(SEED);
  now = Date.now();
  const windowStart = now - DAYS * DAY;
  const partialHour = Math.ceil(windowStart / HOUR) * HOUR - windowStart;
  // Ages over five days, kept away from the 3-day edge; and a cluster inside the window's partial first hour.
  const ages = Array.from({ length: 2600 }, () => rand() * 5 * DAY).filter((age) => Math.abs(age - DAYS * DAY) > EDGE_GAP);
  if (partialHour > 2 * EDGE_GAP) for (let i = 0; i < 150; i++) ages.push(DAYS * DAY - EDGE_GAP - rand() * (partialHour - 2 * EDGE_GAP));
  const resultsCount = () => {
    const u = rand();
    if (u < 0.06) return 0;
    if (u < 0.2) return [1, 2, 10, 20, 99, 100, 101][Math.floor(rand() * 7)]!;
    return Math.floor(rand() * 151);
  };
  const rank = () => (rand() < 0.1 ? Math.floor(rand() * 141) : Math.floor(-Math.log(1 - rand()) * 2.5));
  const events: EventInit[] = [];
  ages.forEach((age, i) => {
    const t = now - age;
    const variant = VARIANTS[Math.floor(rand() * VARIANTS.length)]!;
    const query = QUERIES[Math.floor(rand() ** 1.5 * (QUERIES.length - 1))]!;
    const imp: Impression = { query, variant, resultsCount: resultsCount(), t };
    impressions.push(imp);
    const id = `imp-${i}`;
    events.push({ kind: { case: "impression", value: { eventId: id, impressionId: id, userId: `u${i % 97}`, query, variant, resultsCount: imp.resultsCount, responseTimeMs: 10, timestamp: timestampFromDate(new Date(t)) } } });
    const n = rand() < 0.45 ? 1 + Math.floor(rand() * 3) : 0;
    for (let k = 0; k < n; k++) {
      // A click a little after its search (within the 5 minutes the server accepts ahead of now).
      const click: Click = { query, variant, rank: rank(), t: Math.min(now + 60_000, t + Math.floor(rand() * 120_000)), search: imp };
      if (Math.abs(click.t - (now - DAYS * DAY)) <= EDGE_GAP) continue;
      clicks.push(click);
      events.push({ kind: { case: "click", value: { eventId: `${id}-c${k}`, impressionId: id, userId: `u${i % 97}`, productId: "p", rank: click.rank, searchQuery: query, variant, responseTimeMs: 10, timestamp: timestampFromDate(new Date(click.t)) } } });
    }
  });
  // Clicks of a query nobody searched for (in the window): clicks, and nothing expected.
  for (let i = 0; i < 5; i++) {
    const click: Click = { query: "only clicks", variant: VARIANTS[i % 3]!, rank: i, t: now - (i + 1) * 7 * HOUR };
    clicks.push(click);
    events.push({ kind: { case: "click", value: { eventId: `free-${i}`, userId: "u", productId: "p", rank: click.rank, searchQuery: click.query, variant: click.variant, responseTimeMs: 10, timestamp: timestampFromDate(new Date(click.t)) } } });
  }
  // A rare query: three searches (5, 120 and no results) and two clicks, one past rank 100.
  for (const [i, resultsCount] of [5, 120, 0].entries()) {
    const imp: Impression = { query: "rare", variant: "search_v1", resultsCount, t: now - 2 * DAY - i * HOUR };
    impressions.push(imp);
    events.push({ kind: { case: "impression", value: { eventId: `rare-${i}`, userId: "u", query: imp.query, variant: imp.variant, resultsCount, responseTimeMs: 10, timestamp: timestampFromDate(new Date(imp.t)) } } });
  }
  for (const [i, rank] of [1, 110].entries()) {
    const click: Click = { query: "rare", variant: "search_v1", rank, t: now - 2 * DAY - i * HOUR };
    clicks.push(click);
    events.push({ kind: { case: "click", value: { eventId: `rare-c${i}`, userId: "u", productId: "p", rank, searchQuery: click.query, variant: click.variant, responseTimeMs: 10, timestamp: timestampFromDate(new Date(click.t)) } } });
  }
  for (const imp of impressions) if (imp.query === "no results") imp.resultsCount = 0;
  for (const e of events) if (e.kind?.case === "impression" && e.kind.value.query === "no results") e.kind.value.resultsCount = 0;
  for (let i = 0; i < events.length; i += 1000) {
    const res = await h.client.logEvents({ events: events.slice(i, i + 1000) });
    expect(Number(res.accepted)).toBe(Math.min(1000, events.length - i));
  }
}, 120_000);
afterAll(() => h.close());

interface Expected {
  searches: number;
  clicks: number;
  noResults: number;
  coec: number | undefined;
  mrr: number | undefined;
  abandonmentRate: number | undefined;
  clicksOutsideResults: number;
}

/**
 * Straight from the logged events: every query's counts and COEC over [from, to) (to: none), in
 * `variant` if given. A linked click counts with its search (its time, variant and query), and in
 * COEC (and the per-rank CTRs it is measured against) only at a rank below 100 the search showed;
 * an unlinked click counts with its own time, variant and query, and in no CTR per rank. MRR and
 * abandonment from each search with results' first click at a shown rank (earliest, then lowest rank).
 */
function reference(from: number, to: number | undefined, variant?: string): Map<string, Expected> {
  const inWindow = (t: number) => t >= from && (to === undefined || t < to);
  const clicksOf = new Map<Impression, Click[]>();
  for (const c of clicks) if (c.search) clicksOf.set(c.search, [...(clicksOf.get(c.search) ?? []), c]);
  const shownRank = (c: Click) => c.rank < c.search!.resultsCount && c.rank < 100;
  // The window's CTR per rank over all variants.
  const shown = new Array<number>(100).fill(0);
  const clicked = new Array<number>(100).fill(0);
  for (const imp of impressions) if (inWindow(imp.t)) for (let r = 0; r < Math.min(imp.resultsCount, 100); r++) shown[r]!++;
  for (const c of clicks) if (c.search && inWindow(c.search.t) && shownRank(c)) clicked[c.rank]!++;
  const ctr = shown.map((n, r) => (n > 0 ? clicked[r]! / n : 0));
  const out = new Map<string, Omit<Expected, "coec" | "mrr" | "abandonmentRate"> & { expected: number; shownClicks: number; withResults: number; rr: number; firstClicked: number }>();
  const row = (q: string) => {
    let e = out.get(q);
    if (!e) out.set(q, (e = { searches: 0, clicks: 0, noResults: 0, clicksOutsideResults: 0, expected: 0, shownClicks: 0, withResults: 0, rr: 0, firstClicked: 0 }));
    return e;
  };
  for (const imp of impressions) {
    if (!inWindow(imp.t) || (variant !== undefined && imp.variant !== variant)) continue;
    const e = row(imp.query);
    e.searches++;
    if (imp.resultsCount === 0) e.noResults++;
    else e.withResults++;
    for (let r = 0; r < Math.min(imp.resultsCount, 100); r++) e.expected += ctr[r]!;
    const its = clicksOf.get(imp) ?? [];
    e.clicks += its.length;
    e.shownClicks += its.filter(shownRank).length;
    e.clicksOutsideResults += its.filter((c) => c.rank >= imp.resultsCount).length;
    const first = its.filter((c) => c.rank < imp.resultsCount).sort((a, b) => a.t - b.t || a.rank - b.rank)[0];
    if (first) {
      e.firstClicked++;
      e.rr += 1 / (first.rank + 1);
    }
  }
  for (const c of clicks) if (!c.search && inWindow(c.t) && (variant === undefined || c.variant === variant)) row(c.query).clicks++;
  return new Map(
    [...out].map(([q, { expected, shownClicks, withResults, rr, firstClicked, ...counts }]) => [
      q,
      { ...counts, coec: expected > 0 ? shownClicks / expected : undefined, mrr: withResults > 0 ? rr / withResults : undefined, abandonmentRate: withResults > 0 ? (withResults - firstClicked) / withResults : undefined },
    ]),
  );
}

/** Every returned row against the reference: counts exactly, COEC to 1e-12 relative (or both unset). */
function expectRows(label: string, rows: readonly QueryStats[], ref: ReadonlyMap<string, Expected>, all = true): void {
  if (all) expect(rows.map((q) => q.query).sort(), label).toEqual([...ref.keys()].sort());
  for (const q of rows) {
    const want = ref.get(q.query);
    expect(want, `${label} ${q.query}`).toBeDefined();
    const counts = (x: { searches: unknown; clicks: unknown; noResults: unknown; clicksOutsideResults: unknown }) => [x.searches, x.clicks, x.noResults, x.clicksOutsideResults].map(Number);
    expect(counts(q), `${label} ${q.query}`).toEqual(counts(want!));
    for (const field of ["coec", "mrr", "abandonmentRate"] as const) {
      const [got, expected] = [q[field], want![field]];
      if (expected === undefined) expect(got, `${label} ${q.query} ${field}`).toBeUndefined();
      else {
        expect(got, `${label} ${q.query} ${field}`).toBeDefined();
        expect(Math.abs(got! - expected), `${label} ${q.query} ${field}: ${got} vs ${expected}`).toBeLessThanOrEqual(1e-12 * Math.max(1, expected));
      }
    }
  }
}

/** A trailing window's answer and its reference (no event lies where the server's and this test's edges differ). */
async function trailing(req: { days: number; variant?: string; limit?: number; orderBy?: TopQueriesOrder }): Promise<{ rows: QueryStats[]; ref: Map<string, Expected> }> {
  const before = Date.now();
  const rows = (await h.client.getTopQueries({ limit: 1000, ...req })).queries;
  const after = Date.now();
  const [lo, hi] = [before - req.days * DAY, after - req.days * DAY];
  expect([...impressions, ...clicks.filter((c) => !c.search)].filter((e) => e.t >= lo && e.t <= hi)).toEqual([]);
  return { rows, ref: reference(before - req.days * DAY, undefined, req.variant) };
}

const period = (from: number, to?: number) => ({ startTime: timestampFromDate(new Date(from)), ...(to === undefined ? {} : { endTime: timestampFromDate(new Date(to)) }) });
/** An open-ended period from 20 minutes past an hour 62 hours ago: a 40-minute raw first hour, then tables. */
const openStart = () => Math.floor((now - 62 * HOUR) / HOUR) * HOUR + 20 * 60_000;
/** A period with an end, answered from the raw events. */
const closed = () => [now - 4 * DAY + 17 * 60_000, now - DAY - 13 * 60_000] as const;

describe("GetTopQueries COEC", () => {
  it("equals the independent computation: trailing windows with and without a variant, an open-ended period, an explicit period", async () => {
    const windowStart = now - DAYS * DAY;
    const edge = impressions.filter((e) => e.t >= windowStart && e.t < Math.ceil(windowStart / HOUR) * HOUR).length;
    console.log(`COEC test data (seed ${SEED}): ${impressions.length} searches, ${clicks.length} clicks (${clicks.filter((c) => c.rank >= 100).length} at ranks >= 100), ${edge} searches in the 3-day window's partial first hour`);
    let defined = 0;
    for (const variant of [undefined, "search_v2"]) {
      const { rows, ref } = await trailing({ days: DAYS, ...(variant ? { variant } : {}) });
      expectRows(`${DAYS}d ${variant ?? "all"}`, rows, ref);
      defined += rows.filter((q) => q.coec !== undefined).length;
      // Unset where nothing is expected.
      expect(rows.find((q) => q.query === "only clicks")?.coec).toBeUndefined();
      expect(rows.find((q) => q.query === "no results")?.coec).toBeUndefined();
      expect(Number(rows.find((q) => q.query === "only clicks")?.clicks ?? 0)).toBeGreaterThan(0);
    }
    expect(defined).toBeGreaterThanOrEqual(20);
    // A cut: the rows returned get their COEC whichever order ranks them.
    for (const orderBy of [TopQueriesOrder.SEARCHES, TopQueriesOrder.CLICKS, TopQueriesOrder.CTR, TopQueriesOrder.NO_RESULTS]) {
      const { rows, ref } = await trailing({ days: 5, limit: 3, orderBy });
      expect(rows).toHaveLength(3);
      expectRows(`5d top 3 by ${TopQueriesOrder[orderBy]}`, rows, ref, false);
    }
    const open = openStart();
    expectRows("open-ended period", (await h.client.getTopQueries({ limit: 1000, ...period(open) })).queries, reference(open, undefined));
    expectRows("open-ended period search_v3", (await h.client.getTopQueries({ limit: 1000, variant: "search_v3", ...period(open) })).queries, reference(open, undefined, "search_v3"));
    const [from, to] = closed();
    expectRows("explicit period", (await h.client.getTopQueries({ limit: 1000, ...period(from, to) })).queries, reference(from, to));
    expectRows("explicit period search_v1", (await h.client.getTopQueries({ limit: 1000, variant: "search_v1", ...period(from, to) })).queries, reference(from, to, "search_v1"));
  });

  it("is the same from hourly tables, stored day tables, a cold cache and tables marked full (read from raw events)", async () => {
    const c = h.server.store.collections;
    const first = await trailing({ days: 4 });
    expectRows("4d", first.rows, first.ref);
    // Finished days were compacted and stored, histograms included.
    const days = await rollupCollection(c).find({ g: "qd" }).toArray();
    expect(days.length).toBeGreaterThan(0);
    const stored = days.flatMap((d) => Object.values(d.qt ?? {}).flatMap((bucket) => Object.values(bucket).flatMap((n) => Object.keys(n))));
    expect(stored.some((k) => /^h\d+$/.test(k))).toBe(true);
    expect(stored).toContain("k");
    expect(stored.some((k) => /^f\d+$/.test(k))).toBe(true);
    // From the stored day tables, by a reader with nothing cached.
    h.server.store.queryTables.clear();
    const cold = await trailing({ days: 4 });
    expect(cold.rows).toEqual(first.rows);
    expectRows("4d cold", cold.rows, cold.ref);
    // A third of the hourly tables full: their hours come from the raw events (days recompacted without them).
    const rand = mulberry32(SEED + 1);
    const hours = await rollupCollection(c).find({ g: "qh" }, { projection: { _id: 1 } }).toArray();
    const full = hours.filter(() => rand() < 1 / 3).map((d) => d._id);
    expect(full.length).toBeGreaterThan(10);
    await markFull(c, full);
    for (const variant of [undefined, "search_v1"]) {
      const { rows, ref } = await trailing({ days: 4, ...(variant ? { variant } : {}) });
      expectRows(`4d ${variant ?? "all"} with full tables`, rows, ref);
    }
    const open = openStart();
    expectRows("open-ended period with full tables", (await h.client.getTopQueries({ limit: 1000, ...period(open) })).queries, reference(open, undefined));
  });
});

describe("a database whose query tables predate the histograms", () => {
  it("leaves COEC unset for windows starting before they were kept, with every other field right", async () => {
    const c = h.server.store.collections;
    const meta = c.db.collection<{ _id: string; from?: Date }>("rollups");
    expect((await meta.findOne({ _id: HISTOGRAMS_META_ID }))?.from).toEqual(new Date(0));
    const before = await trailing({ days: DAYS });
    const [closedFrom, closedTo] = closed();
    const closedBefore = (await h.client.getTopQueries({ limit: 1000, ...period(closedFrom, closedTo) })).queries;
    // As an older version left it: tables of hours before `from` without histograms (and day
    // tables compacted from them), and the record of the first server of this version.
    const from = Math.floor((now - 30 * HOUR) / HOUR) * HOUR;
    for (const doc of await rollupCollection(c).find({ g: { $in: ["qh", "qd"] }, t: { $lt: new Date(from) } }).toArray()) {
      const qt = Object.fromEntries(Object.entries(doc.qt ?? {}).map(([b, bucket]) => [b, Object.fromEntries(Object.entries(bucket).map(([q, n]) => [q, Object.fromEntries(Object.entries(n).filter(([k]) => !/^(h\d+|f\d+|x|k)$/.test(k)))]))]));
      await rollupCollection(c).updateOne({ _id: doc._id }, { $set: { qt }, $inc: { ver: 1 } });
    }
    await meta.updateOne({ _id: HISTOGRAMS_META_ID }, { $set: { from: new Date(from) } });
    h.server.store.queryTables.clear();
    // MRR and abandonment need what the histograms' record covers too.
    const withoutCoec = (rows: QueryStats[]) => rows.map(({ coec: _, mrr: _m, abandonmentRate: _a, ...rest }) => rest);
    // Windows reaching back before `from`: no COEC, whichever path answers; the rest as before.
    const old = await trailing({ days: DAYS });
    expect(old.rows.length).toBeGreaterThan(0);
    expect(old.rows.filter((q) => q.coec !== undefined || q.mrr !== undefined || q.abandonmentRate !== undefined)).toEqual([]);
    expect(withoutCoec(old.rows)).toEqual(withoutCoec(before.rows));
    expect(before.rows.filter((q) => q.coec !== undefined).length).toBeGreaterThan(0);
    const closedAfter = (await h.client.getTopQueries({ limit: 1000, ...period(closedFrom, closedTo) })).queries;
    expect(closedAfter.filter((q) => q.coec !== undefined)).toEqual([]);
    expect(withoutCoec(closedAfter)).toEqual(withoutCoec(closedBefore));
    // From `from` on the tables are whole: COEC as before.
    expectRows("period from the record", (await h.client.getTopQueries({ limit: 1000, ...period(from) })).queries, reference(from, undefined));
    expectRows("period after the record", (await h.client.getTopQueries({ limit: 1000, ...period(from + 20 * 60_000) })).queries, reference(from + 20 * 60_000, undefined));
  });

  it("is recorded at open: from the next whole hour past the clock skew when events exist, from the beginning when none do", async () => {
    const c = h.server.store.collections;
    const meta = c.db.collection<{ _id: string; from?: Date }>("rollups");
    const hour = Math.floor(Date.now() / HOUR) * HOUR;
    const recordedAt = async (at: number) => {
      await meta.deleteOne({ _id: HISTOGRAMS_META_ID });
      await markQueryTables(c, at);
      return (await meta.findOne({ _id: HISTOGRAMS_META_ID }))!.from!.getTime();
    };
    // Opened at 10:30, the tables are whole from 11:00; at 10:57, an older writer may have
    // reached 11:02 (5 minutes of clock skew ahead), so from 12:00.
    expect(await recordedAt(hour + 30 * 60_000)).toBe(hour + HOUR);
    expect(await recordedAt(hour + 57 * 60_000)).toBe(hour + 2 * HOUR);
    const from = await recordedAt(Date.now());
    expect(from).toBeGreaterThan(Date.now());
    // A second server opening the database keeps the first one's record.
    await meta.updateOne({ _id: HISTOGRAMS_META_ID }, { $set: { from: new Date(from + HOUR) } });
    await markQueryTables(c);
    expect((await meta.findOne({ _id: HISTOGRAMS_META_ID }))!.from!.getTime()).toBe(from + HOUR);
    h.server.store.queryTables.clear();
    const rows = (await h.client.getTopQueries({ days: 1, limit: 1000 })).queries;
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.filter((q) => q.coec !== undefined)).toEqual([]);
    // Reset empties the database: histograms from the beginning again.
    await h.server.store.reset();
    expect((await meta.findOne({ _id: HISTOGRAMS_META_ID }))?.from).toEqual(new Date(0));
  });
});

describe("the README's worked example", () => {
  it("gives shoes 6/7 and boots 1.5, with a variant too", async () => {
    const w = await startHarness();
    try {
      const at = timestampFromDate(new Date(Date.now() - HOUR));
      const search = (id: string, query: string, variant: string, resultsCount: number): EventInit => ({ kind: { case: "impression", value: { eventId: id, impressionId: id, userId: "u", query, variant, resultsCount, responseTimeMs: 10, timestamp: at } } });
      const click = (id: string, query: string, variant: string, rank: number): EventInit => ({ kind: { case: "click", value: { eventId: `${id}-c`, impressionId: id, userId: "u", productId: "p", rank, searchQuery: query, variant, responseTimeMs: 10, timestamp: at } } });
      await w.client.logEvents({
        events: [search("S1", "shoes", "search_v1", 3), search("S2", "shoes", "search_v1", 3), search("S3", "boots", "search_v2", 1), search("S4", "boots", "search_v2", 0), click("S1", "shoes", "search_v1", 0), click("S2", "shoes", "search_v1", 2), click("S3", "boots", "search_v2", 0)],
      });
      const coec = async (variant = "") => Object.fromEntries((await w.client.getTopQueries({ days: 1, variant })).queries.map((q) => [q.query, q.coec]));
      const all = await coec();
      expect(all.shoes).toBeCloseTo(6 / 7, 12);
      expect(all.boots).toBeCloseTo(1.5, 12);
      expect(await coec("search_v2")).toEqual({ boots: all.boots });
    } finally {
      await w.close();
    }
  });
});
