import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Granularity, Status, TopQueriesOrder, type ServiceError } from "../../src/client/index.js";
import { startHarness, type Harness } from "../support/harness.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** 00:00 UTC of the n-th Sunday of a month (month 0-based). */
const nthSunday = (year: number, month: number, n: number) => {
  const first = Date.UTC(year, month, 1);
  return first + (((7 - new Date(first).getUTCDay()) % 7) + 7 * (n - 1)) * DAY;
};
/** 00:00 UTC of the last Sunday of a month (month 0-based). */
const lastSunday = (year: number, month: number) => {
  const last = Date.UTC(year, month + 1, 0);
  return last - new Date(last).getUTCDay() * DAY;
};
/** Is New York on daylight time at midnight of this local date? (after the March Sunday, up to and including the November one) */
const nyDst = (year: number, month: number, day: number) => {
  const date = Date.UTC(year, month, day);
  const y = new Date(date).getUTCFullYear();
  return date > nthSunday(y, 2, 2) && date <= nthSunday(y, 10, 1);
};
let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());
beforeEach(async () => {
  await h.server.store.reset();
});

type Imp = { id: string; user?: string; variant?: string; query?: string; results?: number; ms?: number; at?: Date };
type Clk = { search?: string; user?: string; variant?: string; query?: string; rank?: number; at?: Date };
const imp = (i: Imp) =>
  h.client.logImpression({
    impressionId: i.id,
    userId: i.user ?? "u1",
    query: i.query ?? "q",
    variant: i.variant ?? "search_v1",
    resultsCount: i.results ?? 10,
    responseTimeMs: i.ms ?? 50,
    timestamp: i.at ? timestampFromDate(i.at) : undefined,
  });
const clk = (c: Clk) =>
  h.client.logClick({
    impressionId: c.search ?? "",
    userId: c.user ?? "u1",
    productId: "p",
    rank: c.rank ?? 0,
    searchQuery: c.query ?? "q",
    variant: c.variant ?? "search_v1",
    responseTimeMs: 50,
    timestamp: c.at ? timestampFromDate(c.at) : undefined,
  });

async function invalid(promise: Promise<unknown>, detail: RegExp) {
  const error = (await promise.catch((e: unknown) => e)) as ServiceError;
  expect(error.code).toBe(Status.INVALID_ARGUMENT);
  expect(error.details).toMatch(detail);
}

describe("search-level CTR, no-results rate and users", () => {
  it("GetCtr reports them overall and per variant", async () => {
    // search_v1: 4 searches by 2 users; a1 clicked twice, a2 once, a3 never, a4 had no results
    await imp({ id: "a1", user: "u1" });
    await imp({ id: "a2", user: "u2" });
    await imp({ id: "a3", user: "u1" });
    await imp({ id: "a4", user: "u2", results: 0 });
    await clk({ search: "a1", user: "u1" });
    await clk({ search: "a1", user: "u1", rank: 3 });
    await clk({ search: "a2", user: "u2" });
    await clk({ user: "u9" }); // unlinked, by a user with no search
    // search_v2: 2 searches; b1 clicked, b2 not; a third user
    await imp({ id: "b1", user: "u3", variant: "search_v2" });
    await imp({ id: "b2", user: "u1", variant: "search_v2", results: 0 });
    await clk({ search: "b1", user: "u3", variant: "search_v2" });

    const res = await h.client.getCtr({});
    expect(res.variants.search_v1).toMatchObject({ impressions: 4n, clicks: 4n, ctr: 1, searchesWithClicks: 2n, searchCtr: 0.5, noClickRate: 0.5, noResultsSearches: 1n, noResultsRate: 0.25, users: 3n });
    expect(res.variants.search_v2).toMatchObject({ impressions: 2n, clicks: 1n, ctr: 0.5, searchesWithClicks: 1n, searchCtr: 0.5, noResultsRate: 0.5, users: 2n });
    expect(res).toMatchObject({ impressions: 6n, clicks: 5n, searchesWithClicks: 3n, searchCtr: 0.5, noClickRate: 0.5, noResultsRate: 2 / 6, users: 4n });
    const filtered = await h.client.getCtr({ userId: "u1" });
    expect(filtered).toMatchObject({ impressions: 3n, searchesWithClicks: 1n, users: 1n });
  });

  it("a click that arrives before its search is linked once the search arrives", async () => {
    await clk({ search: "late" });
    await clk({ search: "late" });
    expect((await h.client.getCtr({})).searchesWithClicks).toBe(0n);
    await imp({ id: "late" });
    const res = await h.client.getCtr({});
    expect(res).toMatchObject({ impressions: 1n, clicks: 2n, searchesWithClicks: 1n, searchCtr: 1 });
  });

  it("leaves the rates unset without searches", async () => {
    await clk({});
    const res = await h.client.getCtr({});
    expect(res.searchCtr).toBeUndefined();
    expect(res.noClickRate).toBeUndefined();
    expect(res.noResultsRate).toBeUndefined();
    expect(res.users).toBe(1n);
  });

  it("GetVariantComparison carries them per variant, with the p95 and intervals that never collapse", async () => {
    for (let i = 0; i < 10; i++) await imp({ id: `s${i}`, ms: 10 * (i + 1), results: i === 0 ? 0 : 5 });
    for (let i = 0; i < 4; i++) await clk({ search: `s${i}`, rank: i });
    const res = await h.client.getVariantComparison({});
    const v = res.variants.search_v1!;
    expect(v).toMatchObject({ searchCtr: 0.4, noClickRate: 0.6, noResultsRate: 0.1, users: 1n, searchesWithClicks: 4n, avgRankClicked: 1.5, avgResponseTimeMs: 55 });
    expect(Math.abs(v.p95ResponseTimeMs! - 95.5)).toBeLessThanOrEqual(0.955); // numpy.percentile([10..100], 95), sketch within 1%
    // One user: the delta method over users has no spread to measure, so the variance is the
    // floor, Agresti-Caffo's p~ = (4 + 1) / (10 + 2) with variance p~ (1 - p~) / 12, never [0.4, 0.4];
    // and one unit is few: Student's t on 1 df (scipy.stats.t.ppf(0.975, 1) = 12.706204736174694),
    // so the interval is the whole range, as one user can say nothing about the others.
    const half = 12.706204736174694 * Math.sqrt(((5 / 12) * (7 / 12)) / 12);
    expect(0.4 + half).toBeGreaterThan(1);
    expect(v.searchCtrInterval).toMatchObject({ low: 0, high: 1 });
    // CTR (4 clicks / 10 searches) floored by a Poisson variance with one pseudo-click, (4 + 1) / 10^2.
    expect(v.ctrInterval!.low).toBe(0);
    expect(v.ctrInterval!.high).toBeCloseTo(0.4 + 12.706204736174694 * Math.sqrt(5 / 100), 10);
  });

  it("GetVariantComparison intervals are the delta method over users, computed here from each user's own counts", async () => {
    // 40 users in two variants with 1..12 searches each, some clicked: per-user totals, then the
    // ratio's variance over the users' hash buckets (Deng et al. 2018), independently of the server.
    const perUser: { user: string; variant: string; searches: number; clicked: number; clicks: number }[] = [];
    let seed = 7;
    const rand = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    const events = [];
    for (let u = 0; u < 40; u++) {
      const user = `u${u}`;
      const variant = u % 2 === 0 ? "search_v1" : "search_v2";
      const searches = 1 + Math.floor(rand() * 12);
      const p = rand();
      let clicked = 0;
      let clicks = 0;
      for (let s = 0; s < searches; s++) {
        const id = `${user}-${s}`;
        events.push({ kind: { case: "impression" as const, value: { userId: user, query: "q", variant, resultsCount: 5, responseTimeMs: 20, impressionId: id } } });
        if (rand() < p) {
          clicked++;
          const n = 1 + Math.floor(rand() * 2);
          clicks += n;
          for (let k = 0; k < n; k++) events.push({ kind: { case: "click" as const, value: { userId: user, productId: "p", rank: k, searchQuery: "q", variant, responseTimeMs: 20, impressionId: id } } });
        }
      }
      perUser.push({ user, variant, searches, clicked, clicks });
    }
    await h.client.logEvents({ events });
    // Capping off (cap_percentile 1): the plain delta method over users; capping is checked below.
    const res = await h.client.getVariantComparison({ confidence: 0.9, capPercentile: 1 });
    // Since issue 21 the units are the users themselves (their exact totals): 20 per arm, so
    // Student's t on 20 - 1 = 19 df for each arm's interval.
    const z = 1.729132811521367; // scipy.stats.t.ppf(0.95, 19)
    const arms = new Map<string, { ctr: { R: number; variance: number }; searchCtr: { R: number; variance: number } }>();
    for (const variant of ["search_v1", "search_v2"]) {
      const users = perUser.filter((r) => r.variant === variant);
      const n = users.length;
      expect(n).toBe(20);
      const N = users.map((r) => r.searches);
      const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / n;
      const cov = (a: number[], b: number[]) => a.reduce((s, x, i) => s + (x - mean(a)) * (b[i]! - mean(b)), 0) / (n - 1);
      const deltaVariance = (y: number[]) => {
        const R = mean(y) / mean(N);
        return { R, variance: (cov(y, y) - 2 * R * cov(y, N) + R * R * cov(N, N)) / (n * mean(N) ** 2) };
      };
      const v = res.variants[variant]!;
      const Y = users.map((r) => r.clicked);
      const C = users.map((r) => r.clicks);
      for (const [interval, y] of [[v.searchCtrInterval!, Y], [v.ctrInterval!, C]] as const) {
        const { R, variance } = deltaVariance(y);
        expect(interval.low, variant).toBeCloseTo(Math.max(0, R - z * Math.sqrt(variance)), 10);
        expect(interval.high, variant).toBeCloseTo(R + z * Math.sqrt(variance) > 1 && y === Y ? 1 : R + z * Math.sqrt(variance), 10);
      }
      arms.set(variant, { ctr: deltaVariance(C), searchCtr: deltaVariance(Y) });
    }
    // CTR of search_v2 against search_v1 with 20 users per arm: a studentized permutation test over
    // users (issue 21; permutation.ts). Its critical value c is not computed here, but the
    // difference, its standard error and Fieller's relative interval at the same c are.
    const t = arms.get("search_v2")!.ctr;
    const c = arms.get("search_v1")!.ctr;
    const diff = t.R - c.R;
    const se = Math.sqrt(t.variance + c.variance);
    const x = res.comparisons[0]!;
    expect(x.ctrLift!.value).toBeCloseTo(diff, 12);
    const critical = (x.ctrLift!.high - x.ctrLift!.low) / (2 * se);
    expect(x.ctrLift!.low).toBeCloseTo(diff - critical * se, 10);
    // A permutation critical value at 90% is near the normal's 1.645 here, and agrees with the p-value.
    expect(critical).toBeGreaterThan(1.3);
    expect(critical).toBeLessThan(2.5);
    expect(x.ctrPValue! < 0.1).toBe(Math.abs(diff / se) > critical);
    // (t.R - rho c.R)^2 = c^2 (t.variance + rho^2 c.variance), solved for rho.
    const a = c.R ** 2 - critical * critical * c.variance;
    const b = -2 * t.R * c.R;
    const k = t.R ** 2 - critical * critical * t.variance;
    const root = Math.sqrt(b * b - 4 * a * k);
    expect(x.ctrRelativeLift!.value).toBeCloseTo(t.R / c.R - 1, 12);
    expect(x.ctrRelativeLift!.low).toBeCloseTo((-b - root) / (2 * a) - 1, 8);
    expect(x.ctrRelativeLift!.high).toBeCloseTo((-b + root) / (2 * a) - 1, 8);
    // The difference's interval and p-value come from the same test: significant exactly when it excludes 0.
    expect(x.searchCtr!.significant).toBe(x.searchCtr!.lift!.low > 0 || x.searchCtr!.lift!.high < 0);
    expect(x.searchCtrLift).toEqual(x.searchCtr!.lift);
    expect(res.capping).toMatchObject({ percentile: 1, applied: true });
    expect(res.capping!.searchCtr!.numeratorCap).toBeUndefined();
    // With the default capping (99th percentile of the 40 users' totals, numpy's linear
    // interpolation), each user's searches and clicked searches are capped before the same test.
    const capped = await h.client.getVariantComparison({ confidence: 0.9 });
    const quantile = (xs: number[], q: number) => {
      const sorted = [...xs].sort((p, r) => p - r);
      const pos = q * (sorted.length - 1);
      const lo = Math.floor(pos);
      return lo + 1 < sorted.length ? sorted[lo]! + (pos - lo) * (sorted[lo + 1]! - sorted[lo]!) : sorted[lo]!;
    };
    const capN = quantile(perUser.map((r) => r.searches), 0.99);
    const capY = quantile(perUser.map((r) => r.clicked), 0.99);
    expect(capped.capping!.percentile).toBe(0.99);
    expect(capped.capping!.searchCtr!.denominatorCap).toBeCloseTo(capN, 12);
    expect(capped.capping!.searchCtr!.numeratorCap).toBeCloseTo(capY, 12);
    for (const variant of ["search_v1", "search_v2"]) {
      const users = perUser.filter((r) => r.variant === variant);
      const value = users.reduce((s, r) => s + Math.min(r.clicked, capY), 0) / users.reduce((s, r) => s + Math.min(r.searches, capN), 0);
      expect(capped.capping!.searchCtr!.value[variant]).toBeCloseTo(value, 12);
      expect(Number(capped.capping!.searchCtr!.cappedUsers[variant])).toBe(users.filter((r) => r.clicked > capY || r.searches > capN).length);
    }
    expect(res.usersInSeveralVariants).toBe(0n);
  });
});

describe("repeated GetVariantComparison", () => {
  it("answers a repeat over unchanged data the same, and a write in the window, late or new, at once", async () => {
    // Searches from 3 days ago (settled hours, the window's start inside one of them) to now.
    const now = Date.now();
    const at = (hoursAgo: number) => new Date(now - hoursAgo * 3_600_000);
    for (let i = 0; i < 40; i++) {
      await imp({ id: `r${i}`, user: `u${i % 8}`, variant: i % 2 === 0 ? "search_v1" : "search_v2", at: at(70 - i * 1.7), ms: 20 + i });
      if (i % 3 === 0) await clk({ search: `r${i}`, user: `u${i % 8}`, variant: i % 2 === 0 ? "search_v1" : "search_v2", rank: i % 4, at: at(70 - i * 1.7) });
    }
    const window = { startTime: timestampFromDate(at(71.5)) };
    const first = await h.client.getVariantComparison(window);
    const again = await h.client.getVariantComparison(window);
    expect(again.variants).toEqual(first.variants);
    expect(again.comparisons).toEqual(first.comparisons);
    expect(first.variants.search_v2!.totalImpressions).toBe(20n);
    // Other settings on the same data are their own comparison.
    const split = await h.client.getVariantComparison({ ...window, expectedSplit: { search_v1: 9, search_v2: 1 } });
    expect(split.srmPValue).not.toBe(first.srmPValue);
    expect(split.srmDetected).toBe(true);
    // A new search now, and a late click on an old search of the window's first hours.
    await imp({ id: "r-new", user: "u9", variant: "search_v2" });
    const afterNew = await h.client.getVariantComparison(window);
    expect(afterNew.variants.search_v2!.totalImpressions).toBe(21n);
    expect(afterNew.variants.search_v2!.users).toBe(first.variants.search_v2!.users + 1n);
    await clk({ search: "r1", user: "u1", variant: "search_v2", rank: 2, at: at(1) });
    const afterLate = await h.client.getVariantComparison(window);
    expect(afterLate.variants.search_v2!.totalClicks).toBe(afterNew.variants.search_v2!.totalClicks + 1n);
    expect(afterLate.variants.search_v2!.searchesWithClicks).toBe(afterNew.variants.search_v2!.searchesWithClicks + 1n);
  });
});

describe("GetTopQueries", () => {
  beforeEach(async () => {
    // "blue shoes": 3 searches (spelled three ways), 2 clicked, 3 clicks; "red hat": 2 searches, 1 no-results, no clicks;
    // "zebra": 1 search, 1 click (the highest CTR); "apple": 2 searches, 2 no-results
    await imp({ id: "q1", query: "blue shoes" });
    await imp({ id: "q2", query: "  Blue   SHOES " });
    await imp({ id: "q3", query: "BLUE\tshoes" });
    await clk({ search: "q1", query: "blue shoes", rank: 1 });
    await clk({ search: "q1", query: "Blue shoes", rank: 2 });
    await clk({ search: "q2", query: "blue  shoes", rank: 6 });
    await imp({ id: "r1", query: "red hat" });
    await imp({ id: "r2", query: "Red Hat", results: 0 });
    await imp({ id: "z1", query: "zebra" });
    await clk({ search: "z1", query: "zebra", rank: 0 });
    await clk({ search: "z1", query: "zebra", rank: 0 });
    await imp({ id: "p1", query: "apple", results: 0 });
    await imp({ id: "p2", query: "apple", results: 0 });
    await imp({ id: "other", query: "blue shoes", variant: "search_v2" });
  });

  it("groups normalised queries and orders by searches, ties by query text", async () => {
    const res = await h.client.getTopQueries({ variant: "search_v1" });
    expect(res.queries.map((q) => [q.query, Number(q.searches)])).toEqual([["blue shoes", 3], ["apple", 2], ["red hat", 2], ["zebra", 1]]);
    expect(res.queries[0]).toMatchObject({ clicks: 3n, ctr: 1, searchCtr: 2 / 3, avgClickRank: 3, noResults: 0n });
    expect(res.queries[2]).toMatchObject({ query: "red hat", clicks: 0n, ctr: 0, searchCtr: 0, noResults: 1n });
    expect(res.queries[2]!.avgClickRank).toBeUndefined();
    expect((await h.client.getTopQueries({})).queries[0]).toMatchObject({ query: "blue shoes", searches: 4n });
  });

  it("orders by clicks, CTR and no-results, and honours the limit", async () => {
    const by = async (orderBy: TopQueriesOrder, limit = 0) => (await h.client.getTopQueries({ variant: "search_v1", orderBy, limit })).queries.map((q) => q.query);
    expect(await by(TopQueriesOrder.CLICKS)).toEqual(["blue shoes", "zebra", "apple", "red hat"]);
    expect(await by(TopQueriesOrder.CTR)).toEqual(["zebra", "blue shoes", "apple", "red hat"]);
    expect(await by(TopQueriesOrder.NO_RESULTS)).toEqual(["apple", "red hat", "blue shoes", "zebra"]);
    expect(await by(TopQueriesOrder.SEARCHES, 2)).toEqual(["blue shoes", "apple"]);
  });

  it("validates limit and order", async () => {
    await invalid(h.client.getTopQueries({ limit: 1001 }), /limit: must be between 1 and 1000/);
    await invalid(h.client.getTopQueries({ limit: -1 }), /limit/);
    await invalid(h.client.getTopQueries({ orderBy: 42 as TopQueriesOrder }), /order_by/);
    expect((await h.client.getTopQueries({ days: 1, variant: "none_such" })).queries).toEqual([]);
  });
});

describe("GetTimeSeries", () => {
  it("has one point per day, empty days included, in UTC by default", async () => {
    const now = Date.now();
    await imp({ id: "d0", at: new Date(now - 1000) });
    await imp({ id: "d2", at: new Date(now - 2 * DAY) });
    await clk({ search: "d2", at: new Date(now - 2 * DAY), rank: 4 });
    await imp({ id: "old", at: new Date(now - 9 * DAY) });
    const res = await h.client.getTimeSeries({ days: 7 });
    expect(res.timeZone).toBe("UTC");
    expect(res.granularity).toBe(Granularity.DAY);
    const starts = res.points.map((p) => timestampDate(p.start!).getTime());
    expect(res.points).toHaveLength(8); // the window's partial first day, six whole days, today
    expect(starts.every((t) => t % DAY === 0)).toBe(true);
    expect(starts[7]).toBe(now - (now % DAY));
    expect(res.points.map((p) => Number(p.impressions))).toEqual(starts.map((t) => (t === (now - 2 * DAY) - ((now - 2 * DAY) % DAY) || t === now - (now % DAY) ? 1 : 0)));
    const twoDaysAgo = res.points[starts.indexOf(now - 2 * DAY - ((now - 2 * DAY) % DAY))]!;
    expect(twoDaysAgo).toMatchObject({ clicks: 1n, ctr: 1, searchCtr: 1, avgClickRank: 4, p95ResponseTimeMs: 50 });
    const empty = res.points.find((p) => p.impressions === 0n && p.clicks === 0n)!;
    expect(empty.ctr).toBeUndefined();
    expect(empty.p95ResponseTimeMs).toBeUndefined();
  });

  it("puts an event on the local day of the requested time zone", async () => {
    const now = Date.now();
    // New York midnights, written out from the US rule (EDT from the second Sunday of March to
    // the first Sunday of November): 04:00 UTC in summer, 05:00 UTC in winter. The buckets run
    // from the one holding the window's start (3 days ago) to today's.
    const midnights: number[] = [];
    for (let k = -5; k <= 1; k++) {
      const d = new Date(now + k * DAY);
      const [y, m, day] = [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()];
      midnights.push(Date.UTC(y, m, day, nyDst(y, m, day) ? 4 : 5));
    }
    const first = midnights.filter((t) => t <= now - 3 * DAY).at(-1)!;
    const expected = midnights.filter((t) => t >= first && t <= now);
    expect(expected.length).toBe(4);
    const midnight = expected.at(-2)!; // yesterday's New York midnight
    await imp({ id: "before", at: new Date(midnight - 60_000) });
    await imp({ id: "after", at: new Date(midnight + 60_000) });
    const ny = await h.client.getTimeSeries({ days: 3, timeZone: "America/New_York" });
    expect(ny.timeZone).toBe("America/New_York");
    const got = ny.points.map((p) => timestampDate(p.start!).getTime());
    expect(got).toEqual(expected);
    const at = (t: number) => Number(ny.points[got.indexOf(t)]!.impressions);
    expect(at(expected.at(-3)!)).toBe(1);
    expect(at(midnight)).toBe(1);
    // in UTC both fall on the same day
    const utc = await h.client.getTimeSeries({ days: 3 });
    expect(utc.points.filter((p) => p.impressions > 0n).map((p) => Number(p.impressions))).toEqual([2]);
  });

  it("echoes the zone as asked, in its proper case, and renamed zones by their current name", async () => {
    await imp({ id: "z1", user: "zoned" });
    for (const [asked, answered] of [
      ["Asia/Kolkata", "Asia/Kolkata"],
      ["Asia/Calcutta", "Asia/Kolkata"],
      ["asia/kolkata", "Asia/Kolkata"],
      ["europe/berlin", "Europe/Berlin"],
      ["EUROPE/BERLIN", "Europe/Berlin"],
      ["Europe/Kyiv", "Europe/Kyiv"],
      ["Europe/Kiev", "Europe/Kyiv"],
      ["Asia/Ho_Chi_Minh", "Asia/Ho_Chi_Minh"],
      ["America/New_York", "America/New_York"],
      ["utc", "UTC"],
    ] as const) {
      for (const granularity of [Granularity.DAY, Granularity.HOUR]) {
        // Rollups, and raw events grouped in MongoDB in the zone (a user filter).
        for (const userId of ["", "zoned"]) {
          const res = await h.client.getTimeSeries({ days: 1, timeZone: asked, granularity, userId });
          expect(res.timeZone, `${asked} ${Granularity[granularity]} ${userId}`).toBe(answered);
          expect(res.points.reduce((n, p) => n + Number(p.impressions), 0), `${asked} ${Granularity[granularity]} ${userId}`).toBe(1);
        }
      }
    }
  });

  it("hours follow the zone's offset, half-hour zones included", async () => {
    const now = Date.now();
    await imp({ id: "h1", at: new Date(now - 30 * 60_000), ms: 10 });
    await imp({ id: "h2", at: new Date(now - 30 * 60_000), ms: 30 });
    const res = await h.client.getTimeSeries({ days: 1, granularity: Granularity.HOUR, timeZone: "Asia/Kolkata" });
    const starts = res.points.map((p) => timestampDate(p.start!).getTime());
    expect(starts.every((t) => t % HOUR === 30 * 60_000)).toBe(true); // UTC+05:30
    expect(starts.length).toBeGreaterThanOrEqual(25);
    expect(res.points.reduce((n, p) => n + Number(p.impressions), 0)).toBe(2);
    expect(res.points.find((p) => p.impressions === 2n)!.p95ResponseTimeMs).toBeCloseTo(29, 10);
  });

  it("filters by user and variant, and refuses unknown zones", async () => {
    await imp({ id: "x1", user: "a", variant: "v1" });
    await imp({ id: "x2", user: "b", variant: "v1" });
    await imp({ id: "x3", user: "a", variant: "v2" });
    const res = await h.client.getTimeSeries({ days: 1, userId: "a", variant: "v1" });
    expect(res.points.reduce((n, p) => n + Number(p.impressions), 0)).toBe(1);
    await invalid(h.client.getTimeSeries({ timeZone: "Mars/Olympus_Mons" }), /time_zone: must be an IANA time zone/);
    await invalid(h.client.getTimeSeries({ granularity: 9 as Granularity }), /granularity/);
  });
});

describe("GetTimeSeries across daylight saving time changes", () => {
  // Transition dates written out from the rules: the US changes at 02:00 local time on the second
  // Sunday of March (EST -5 -> EDT -4, at 07:00 UTC) and the first Sunday of November (EDT ->
  // EST, at 06:00 UTC); the EU at 01:00 UTC on the last Sunday of March (CET +1 -> CEST +2) and
  // of October. Each case takes the latest such Sunday at least two days ago.
  type Case = { zone: string; change: string; sunday: (year: number) => number; offsetBefore: number; offsetAfter: number; switchUtcHour: number };
  const CASES: Case[] = [
    { zone: "America/New_York", change: "spring forward", sunday: (y) => nthSunday(y, 2, 2), offsetBefore: -5, offsetAfter: -4, switchUtcHour: 7 },
    { zone: "America/New_York", change: "fall back", sunday: (y) => nthSunday(y, 10, 1), offsetBefore: -4, offsetAfter: -5, switchUtcHour: 6 },
    { zone: "Europe/Berlin", change: "spring forward", sunday: (y) => lastSunday(y, 2), offsetBefore: 1, offsetAfter: 2, switchUtcHour: 1 },
    { zone: "Europe/Berlin", change: "fall back", sunday: (y) => lastSunday(y, 9), offsetBefore: 2, offsetAfter: 1, switchUtcHour: 1 },
  ];
  const latest = (c: Case) => {
    const now = Date.now();
    const year = new Date(now).getUTCFullYear();
    return [year, year - 1].map(c.sunday).find((d) => d <= now - 2 * DAY)!;
  };

  for (const c of CASES) {
    it(`${c.zone} ${c.change}: days of ${24 - c.offsetAfter + c.offsetBefore} hours, hours one UTC hour apart`, async () => {
      const sunday = latest(c); // 00:00 UTC of the transition Sunday
      // Local midnights: Saturday and Sunday at the offset before, Monday at the offset after.
      const sat = sunday - DAY - c.offsetBefore * HOUR;
      const sun = sunday - c.offsetBefore * HOUR;
      const mon = sunday + DAY - c.offsetAfter * HOUR;
      const change = sunday + c.switchUtcHour * HOUR;
      // Events: 30 minutes before Sunday's midnight (Saturday), 30 minutes after it (Sunday), in
      // the last hour before the change and the first after it (both Sunday), 30 minutes before
      // Monday's midnight (Sunday: a 24-hour day would miss or over-run it), 30 minutes after (Monday).
      const at = [sun - 30 * 60_000, sun + 30 * 60_000, change - 30 * 60_000, change + 30 * 60_000, mon - 30 * 60_000, mon + 30 * 60_000];
      for (const [i, t] of at.entries()) {
        await imp({ id: `dst-${i}`, at: new Date(t) });
        await imp({ id: `dst-${i}-u`, user: "dst-user", at: new Date(t) });
      }
      const days = Math.ceil((Date.now() - sat) / DAY) + 1;
      for (const userId of ["", "dst-user"]) {
        const label = `${c.zone} ${c.change} ${userId || "rollups"}`;
        const daily = await h.client.getTimeSeries({ days, timeZone: c.zone, granularity: Granularity.DAY, userId });
        const starts = daily.points.map((p) => timestampDate(p.start!).getTime());
        const i = starts.indexOf(sat);
        expect(i, `${label}: Saturday's midnight ${new Date(sat).toISOString()} among ${starts.slice(0, 3).map((t) => new Date(t).toISOString())}…`).toBeGreaterThanOrEqual(0);
        expect(starts.slice(i, i + 3), label).toEqual([sat, sun, mon]);
        expect(daily.points.slice(i, i + 3).map((p) => Number(p.impressions)), label).toEqual([userId ? 1 : 2, userId ? 4 : 8, userId ? 1 : 2]);

        const hourly = await h.client.getTimeSeries({ days, timeZone: c.zone, granularity: Granularity.HOUR, userId });
        const hours = hourly.points.map((p) => timestampDate(p.start!).getTime());
        const j = hours.indexOf(change - 2 * HOUR);
        expect(j, label).toBeGreaterThanOrEqual(0);
        // Whole UTC hours around the change, each its own bucket (a fall-back hour is not merged
        // with its repeat, a skipped one leaves no gap).
        expect(hours.slice(j, j + 4), label).toEqual([change - 2 * HOUR, change - HOUR, change, change + HOUR]);
        // Each UTC hour holds the events logged in it (one per user filter, two without).
        const inHour = (t: number) => at.filter((e) => e >= t && e < t + HOUR).length * (userId ? 1 : 2);
        expect(hourly.points.slice(j, j + 4).map((p) => Number(p.impressions)), label).toEqual([change - 2 * HOUR, change - HOUR, change, change + HOUR].map(inHour));
        expect(inHour(change - HOUR) + inHour(change)).toBe(userId ? 2 : 4);
        const count = (t: number) => Number(hourly.points[hours.indexOf(t)]!.impressions);
        expect([sun - HOUR, sun, mon - HOUR, mon].map(count), label).toEqual([sun - HOUR, sun, mon - HOUR, mon].map(inHour));
        expect(hourly.points.reduce((n, p) => n + Number(p.impressions), 0), label).toBe(at.length * (userId ? 1 : 2));
        expect(hours.every((t, k) => k === 0 || t - hours[k - 1]! === HOUR), label).toBe(true);
      }
    });
  }
});

describe("WatchMetrics", () => {
  it("sends a snapshot at once, then one per interval, reflecting new events", async () => {
    await imp({ id: "w1", ms: 20 });
    await clk({ search: "w1", rank: 2 });
    const controller = new AbortController();
    const received: { at: number; impressions: bigint; variants: string[]; median?: number; p95?: number }[] = [];
    const started = Date.now();
    for await (const snap of h.client.watchMetrics({ intervalSeconds: 1 }, { signal: controller.signal })) {
      received.push({ at: Date.now() - started, impressions: snap.overall!.impressions, variants: Object.keys(snap.variants), median: snap.overall!.medianRank, p95: snap.variants.search_v1?.p95ResponseTimeMs });
      if (received.length === 1) await imp({ id: "w2", ms: 40 });
      if (received.length === 3) break;
    }
    expect(received[0]).toMatchObject({ impressions: 1n, variants: ["search_v1"], median: 2, p95: 20 });
    expect(received[1]!.impressions).toBe(2n);
    expect(received[0]!.at).toBeLessThan(900); // immediately, not after the first interval
    expect(received[1]!.at - received[0]!.at).toBeGreaterThanOrEqual(900);
    expect(received[2]!.at - received[1]!.at).toBeGreaterThanOrEqual(900);
  });

  it("stops when the client cancels, and ends cleanly when the server shuts down", async () => {
    const server = await startHarness();
    const controller = new AbortController();
    const seen: number[] = [];
    const watching = (async () => {
      for await (const snap of server.client.watchMetrics({ intervalSeconds: 1 }, { signal: controller.signal })) seen.push(Number(snap.overall!.impressions));
    })();
    await new Promise((r) => setTimeout(r, 300));
    controller.abort();
    await expect(watching).resolves.toBeUndefined();
    expect(seen).toEqual([0]);

    const second: number[] = [];
    const open = (async () => {
      for await (const snap of server.client.watchMetrics({ intervalSeconds: 60 })) second.push(Number(snap.overall!.clicks));
    })();
    await new Promise((r) => setTimeout(r, 300));
    const closing = Date.now();
    await server.close();
    await expect(open).resolves.toBeUndefined(); // OK status, not an error
    expect(Date.now() - closing).toBeLessThan(1500); // not held for the 2 s grace period
    expect(second).toEqual([0]);
  });

  it("validates the interval and filters before streaming", async () => {
    const consume = async (req: Parameters<Harness["client"]["watchMetrics"]>[0]) => {
      for await (const _ of h.client.watchMetrics(req)) break;
    };
    await invalid(consume({ intervalSeconds: 3601 }), /interval_seconds: must be between 1 and 3600/);
    await invalid(consume({ days: 400 }), /days/);
  });
});

describe("GetVariantComparison statistics", () => {
  /** n searches in a variant, the first `clicked` of them with one linked click each, p95 ~ latency. */
  async function variant(name: string, n: number, clicked: number, latency: number) {
    const events = [];
    for (let i = 0; i < n; i++) {
      events.push({ kind: { case: "impression" as const, value: { impressionId: `${name}-${i}`, userId: `u${i}`, query: "q", variant: name, resultsCount: 5, responseTimeMs: latency } } });
      if (i < clicked) events.push({ kind: { case: "click" as const, value: { impressionId: `${name}-${i}`, userId: `u${i}`, productId: "p", rank: 1, searchQuery: "q", variant: name, responseTimeMs: latency } } });
    }
    for (let i = 0; i < events.length; i += 1000) expect((await h.client.logEvents({ events: events.slice(i, i + 1000) })).rejected).toBe(0n);
  }

  it("compares each variant with the control and recommends the better one", async () => {
    await variant("search_v1", 600, 120, 40);
    await variant("search_v2", 600, 180, 42);
    const res = await h.client.getVariantComparison({ days: 1 });
    expect(res).toMatchObject({ control: "search_v1", confidence: 0.95, srmDetected: false, trustworthy: true, recommendation: "search_v2", recommendationReason: "significant lift", winnerByCtr: "search_v2" });
    expect(res.srmPValue).toBeCloseTo(1, 10);
    const [c] = res.comparisons;
    expect(c).toMatchObject({ variant: "search_v2", searchCtrSignificant: true, ctrSignificant: true, latencyRegression: false });
    expect(c!.searchCtrLift!.value).toBeCloseTo(0.1, 12);
    expect(c!.searchCtrLift!.low).toBeLessThan(0.1);
    expect(c!.searchCtrRelativeLift!.value).toBeCloseTo(0.5, 12);
    expect(c!.ctrLift!.value).toBeCloseTo(0.1, 12);
    expect(c!.searchCtrPValue).toBeLessThan(0.05);
    expect(c!.p95LatencyRelativeDiff).toBe(0.05); // every search_v2 search took 42 ms, every search_v1 one 40 ms
    expect(res.variants.search_v2!.searchCtrInterval!.low).toBeLessThan(0.3);
  });

  it("uses the request's control, confidence, split and thresholds", async () => {
    await variant("search_v1", 600, 120, 40);
    await variant("search_v2", 400, 120, 60);
    const defaults = await h.client.getVariantComparison({ days: 1 });
    expect(defaults).toMatchObject({ srmDetected: true, trustworthy: false, recommendation: "", recommendationReason: "srm" });
    const planned = await h.client.getVariantComparison({ days: 1, expectedSplit: { search_v1: 3, search_v2: 2 } });
    expect(planned).toMatchObject({ srmDetected: false, recommendation: "", recommendationReason: "latency regression" });
    const lenient = await h.client.getVariantComparison({ days: 1, expectedSplit: { search_v1: 3, search_v2: 2 }, latencyThreshold: 0.6 });
    expect(lenient.recommendation).toBe("search_v2");
    const strict = await h.client.getVariantComparison({ days: 1, expectedSplit: { search_v1: 3, search_v2: 2 }, latencyThreshold: 0.6, minImpressions: 500n });
    expect(strict.recommendationReason).toBe("insufficient data");
    // 600 and 400 users: the default minimum of 100 users per arm is met; 401 is not
    expect(lenient.minUsers).toBe(100n);
    const fewUsers = await h.client.getVariantComparison({ days: 1, expectedSplit: { search_v1: 3, search_v2: 2 }, latencyThreshold: 0.6, minUsers: 401n });
    expect([fewUsers.minUsers, fewUsers.recommendation, fewUsers.recommendationReason]).toEqual([401n, "", "insufficient data"]);
    expect((await h.client.getVariantComparison({ days: 1, expectedSplit: { search_v1: 3, search_v2: 2 }, latencyThreshold: 0.6, minUsers: 400n })).recommendation).toBe("search_v2");
    const reversed = await h.client.getVariantComparison({ days: 1, control: "search_v2", confidence: 0.99, expectedSplit: { search_v1: 3, search_v2: 2 } });
    expect(reversed).toMatchObject({ control: "search_v2", confidence: 0.99 });
    expect(reversed.comparisons.map((x) => x.variant)).toEqual(["search_v1"]);
    expect(reversed.comparisons[0]!.searchCtrLift!.value).toBeCloseTo(-0.1, 12);
  });

  it("validates the comparison settings", async () => {
    await invalid(h.client.getVariantComparison({ confidence: 1.5 }), /confidence: must be between 0.5 and 0.9999 \(inclusive\), got 1.5/);
    // Issue 21: a confidence of 1e-9 was accepted (significant with p = 0.78) and recommended.
    for (const confidence of [1e-9, 0.4999, 0.99995, Number.NaN, Number.POSITIVE_INFINITY]) {
      await invalid(h.client.getVariantComparison({ confidence }), /^confidence: must be between 0.5 and 0.9999 \(inclusive\)/);
    }
    // the bounds themselves are valid
    for (const confidence of [0.5, 0.9999]) expect((await h.client.getVariantComparison({ confidence })).confidence).toBe(confidence);
    // Issue 21: {ctl: 1e300, trt: 1e-300} left srm_p_value unset and said trustworthy.
    await invalid(h.client.getVariantComparison({ expectedSplit: { search_v1: 1e300, search_v2: 1e-300 } }), /^expected_split\[search_v1\]: must be a finite weight between 0.000001 and 1000000, got 1e\+300/);
    await invalid(h.client.getVariantComparison({ expectedSplit: { search_v1: 1, search_v2: 1e-7 } }), /^expected_split\[search_v2\]: must be a finite weight between 0.000001 and 1000000, got 1e-7/);
    await invalid(h.client.getVariantComparison({ expectedSplit: { search_v1: 1, search_v2: Number.POSITIVE_INFINITY } }), /^expected_split\[search_v2\]: must be a finite weight/);
    await invalid(h.client.getVariantComparison({ control: "bad control" }), /control: must match/);
    await invalid(h.client.getVariantComparison({ minUsers: 1n }), /^min_users: must be an integer >= 2/);
    await invalid(h.client.getVariantComparison({ expectedSplit: { a: -1 } }), /expected_split\[a\]/);
    const empty = await h.client.getVariantComparison({});
    // No SRM can be computed without users: never "trustworthy".
    expect(empty).toMatchObject({ recommendation: "", recommendationReason: "insufficient data", comparisons: [], srmDetected: false, trustworthy: false });
    expect(empty.srmPValue).toBeUndefined();
  });
});

describe("periods [start_time, end_time)", () => {
  it("count exactly the events in the period, on every metrics RPC, and refuse bad periods naming the field", async () => {
    const day = 86_400_000;
    const base = Math.floor((Date.now() - 20 * day) / day) * day; // a UTC midnight 20 days ago
    // Searches at base + 1d 10:30, + 3d 00:00 (on the start edge), + 5d 23:59:59.999 and + 6d 00:00 (on the end edge: out).
    const at = [base + day + 10.5 * 3_600_000, base + 3 * day, base + 6 * day - 1, base + 6 * day];
    for (const [i, t] of at.entries()) await imp({ id: `p${i}`, user: `u${i}`, at: new Date(t) });
    await clk({ search: "p1", user: "u1", at: new Date(at[1]!) });
    await clk({ search: "p3", user: "u3", at: new Date(at[3]!) });
    const period = { startTime: timestampFromDate(new Date(base + 3 * day)), endTime: timestampFromDate(new Date(base + 6 * day)) };
    const ctr = await h.client.getCtr(period);
    expect(ctr).toMatchObject({ impressions: 2n, clicks: 1n, users: 2n, periodDays: 3 });
    expect((await h.client.getRankMetrics(period)).totalClicks).toBe(1n);
    expect((await h.client.getResponseTimeMetrics(period)).count).toBe(2n);
    expect((await h.client.getTopQueries(period)).queries[0]).toMatchObject({ query: "q", searches: 2n, clicks: 1n });
    const series = await h.client.getTimeSeries({ ...period, granularity: Granularity.DAY });
    expect(series.points.map((p) => [timestampDate(p.start!).getTime() - base, Number(p.impressions)])).toEqual([
      [3 * day, 1],
      [4 * day, 0],
      [5 * day, 1],
    ]);
    const comparison = await h.client.getVariantComparison(period);
    expect(comparison.variants.search_v1).toMatchObject({ totalImpressions: 2n, totalClicks: 1n, users: 2n });
    expect(timestampDate(comparison.startTime!).getTime()).toBe(base + 3 * day);
    expect(timestampDate(comparison.endTime!).getTime()).toBe(base + 6 * day);
    // Open-ended: from start_time on.
    expect((await h.client.getCtr({ startTime: period.startTime })).impressions).toBe(3n);
    const exported = [];
    for await (const batch of h.client.exportEvents(period)) exported.push(...batch.events);
    expect(exported.map((e) => e.impressionId).sort()).toEqual(["p1", "p1", "p2"]); // two searches and the click on p1

    await invalid(h.client.getCtr({ endTime: period.endTime }), /^end_time: needs start_time/);
    await invalid(h.client.getCtr({ ...period, days: 3 }), /^days: must be 0 \(unset\) when start_time is given/);
    await invalid(h.client.getCtr({ startTime: period.endTime, endTime: period.startTime }), /^end_time: must be after start_time/);
    await invalid(h.client.getCtr({ startTime: timestampFromDate(new Date(Date.now() + day)) }), /^start_time: must not be in the future/);
    await invalid(h.client.getVariantComparison({ startTime: timestampFromDate(new Date(base - 400 * day)), endTime: period.endTime }), /^end_time: must be at most 365 days after start_time/);
  });
});

describe("position bias", () => {
  it("CTR per rank over the searches that showed it, and COEC per variant, against a computation here on random data", async () => {
    let seed = 99;
    const rand = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    const events = [];
    const logged: { variant: string; results: number; ranks: number[] }[] = [];
    for (let i = 0; i < 300; i++) {
      const variant = i % 2 === 0 ? "search_v1" : "search_v2";
      const results = [0, 1, 2, 3, 5, 8, 120][Math.floor(rand() * 7)]!;
      const ranks: number[] = [];
      for (let r = 0; r < Math.min(results, 6); r++) if (rand() < (variant === "search_v1" ? 0.3 : 0.4) / (r + 1)) ranks.push(r);
      if (results > 100 && rand() < 0.5) ranks.push(110); // beyond the kept ranks: counted as a click, not in the position measures
      logged.push({ variant, results, ranks });
      events.push({ kind: { case: "impression" as const, value: { impressionId: `p${i}`, userId: `u${i % 17}`, query: "q", variant, resultsCount: results, responseTimeMs: 5 } } });
      for (const rank of ranks) events.push({ kind: { case: "click" as const, value: { impressionId: `p${i}`, userId: `u${i % 17}`, productId: "x", rank, searchQuery: "q", variant, responseTimeMs: 5 } } });
    }
    for (let i = 0; i < events.length; i += 500) await h.client.logEvents({ events: events.slice(i, i + 500) });
    // Here: searches showing each rank below 100 and clicks there, per variant and pooled.
    const count = (rows: typeof logged) => {
      const shown = new Map<number, number>();
      const clicks = new Map<number, number>();
      for (const row of rows) {
        for (let r = 0; r < Math.min(row.results, 100); r++) shown.set(r, (shown.get(r) ?? 0) + 1);
        for (const r of row.ranks) if (r < 100) clicks.set(r, (clicks.get(r) ?? 0) + 1);
      }
      return { shown, clicks };
    };
    const all = count(logged);
    const pooledCtr = new Map([...all.shown].map(([r, n]) => [r, (all.clicks.get(r) ?? 0) / n]));
    const ranks = await h.client.getRankMetrics({});
    expect(Object.fromEntries(Object.entries(ranks.searchesByRank).map(([r, n]) => [r, Number(n)]))).toEqual(Object.fromEntries(all.shown));
    for (const [r, ctr] of pooledCtr) expect(ranks.ctrByRank[r], `rank ${r}`).toBeCloseTo(ctr, 12);
    const comparison = await h.client.getVariantComparison({});
    for (const variant of ["search_v1", "search_v2"]) {
      const mine = count(logged.filter((row) => row.variant === variant));
      let expected = 0;
      for (const [r, n] of mine.shown) expected += n * pooledCtr.get(r)!;
      const clicks = [...mine.clicks.values()].reduce((a, b) => a + b, 0);
      expect(comparison.variants[variant]!.coec, variant).toBeCloseTo(clicks / expected, 12);
    }
    // search_v2 clicks more at every position than search_v1: its COEC is above 1, search_v1's below.
    expect(comparison.variants.search_v2!.coec!).toBeGreaterThan(1);
    expect(comparison.variants.search_v1!.coec!).toBeLessThan(1);
  });
});
