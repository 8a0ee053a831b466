/**
 * Click attribution (issue 22), through the published client against a real server and engine:
 * a linked click belongs to its search's query, variant and shown ranks, whatever it carries and
 * whichever batch it comes in (with its search, after it, before it); a click at a rank its search
 * did not show is kept out of CTR per rank, COEC and MRR and counted in clicks_outside_results;
 * unlinked clicks move neither CTR per rank nor the pooled COEC reference. Each case is the
 * issue's reproduction, and each failed on the code before this change.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { EventSchema } from "../../src/client/index.js";
import { timeWindow } from "../../src/core/window.js";
import { fastMetrics, rawMetrics } from "../../src/store/read/metrics-source.js";
import { RollupReader } from "../../src/store/read/rollup-reader.js";
import { startHarness, type Harness } from "../support/harness.js";

type EventInit = MessageInitShape<typeof EventSchema>;

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());
beforeEach(() => h.server.store.reset());

const at = (minutesAgo: number) => timestampFromDate(new Date(Date.now() - minutesAgo * 60_000));
const search = (id: string, query: string, variant: string, resultsCount: number, minutesAgo = 30): EventInit => ({
  kind: { case: "impression", value: { eventId: id, impressionId: id, userId: `u-${id}`, query, variant, resultsCount, responseTimeMs: 10, timestamp: at(minutesAgo) } },
});
const click = (id: string, searchId: string | undefined, query: string, variant: string, rank: number, minutesAgo = 29): EventInit => ({
  kind: { case: "click", value: { eventId: id, ...(searchId === undefined ? {} : { impressionId: searchId }), userId: `u-${searchId ?? id}`, productId: "p", rank, searchQuery: query, variant, responseTimeMs: 10, timestamp: at(minutesAgo) } },
});

describe("a linked click belongs to its search's query and variant", () => {
  // The search is "boots" in search_v1; its click says "red boots" and search_v2.
  const boots = search("s-boots", "boots", "search_v1", 10);
  const linked = click("c-boots", "s-boots", "red boots", "search_v2", 0);
  const orders: [string, EventInit[][]][] = [
    ["in the same batch", [[boots, linked]]],
    ["in a later batch", [[boots], [linked]]],
    ["before its search", [[linked], [boots]]],
  ];
  for (const [name, batches] of orders) {
    it(`${name}: "boots" gets the click (CTR 1, COEC > 0), "red boots" nothing`, async () => {
      for (const events of batches) await h.client.logEvents({ events });
      // From the query tables (a trailing window) and from the raw events (an explicit period).
      const trailing = await h.client.getTopQueries({ days: 1 });
      const period = await h.client.getTopQueries({ startTime: at(120), endTime: at(0) });
      for (const answer of [trailing, period]) {
        expect(answer.queries.map((q) => q.query)).toEqual(["boots"]);
        const q = answer.queries[0]!;
        expect([Number(q.searches), Number(q.clicks), q.ctr, q.searchCtr, q.avgClickRank]).toEqual([1, 1, 1, 1, 0]);
        // The only search showed rank 0 and got its click there: as many as its position predicts.
        expect(q.coec).toBe(1);
        expect([q.mrr, q.abandonmentRate, Number(q.clicksOutsideResults)]).toEqual([1, 0, 0]);
      }
      // The click's position counts for its search's variant, not the one it carries.
      const v1 = await h.client.getRankMetrics({ days: 1, variant: "search_v1" });
      expect(v1.linkedClicksByRank).toEqual({ 0: 1n });
      expect(v1.ctrByRank[0]).toBe(1);
      const v2 = await h.client.getRankMetrics({ days: 1, variant: "search_v2" });
      expect(v2.linkedClicksByRank).toEqual({});
      expect(v2.ctrByRank).toEqual({});
      // As an event the click is still search_v2's (clicks, CTR and the rank distribution describe events).
      expect(Number(v2.totalClicks)).toBe(1);
      const comparison = await h.client.getVariantComparison({ days: 1, control: "search_v1", minImpressions: 0n });
      expect(comparison.variants.search_v1!.coec).toBe(1);
      expect(comparison.variants.search_v1!.firstClick?.mrr).toBe(1);
    });
  }
});

describe("clicks at ranks the search did not show", () => {
  it("a search with 1 result and 3 clicks at rank 5: no CTR at rank 5, no COEC of 6, MRR without them, 3 clicks outside results", async () => {
    await h.client.logEvents({
      events: [
        search("s-one", "one result", "search_v1", 1),
        click("c-out-1", "s-one", "one result", "search_v1", 5),
        click("c-out-2", "s-one", "one result", "search_v1", 5, 28),
        click("c-out-3", "s-one", "one result", "search_v1", 5, 27),
        // A search that did show rank 5 (clicked at rank 0): rank 5's CTR has a denominator.
        search("s-ten", "ten results", "search_v1", 10),
        click("c-in", "s-ten", "ten results", "search_v1", 0),
      ],
    });
    const ranks = await h.client.getRankMetrics({ days: 1 });
    expect(ranks.searchesByRank[5]).toBe(1n);
    expect(ranks.ctrByRank[5]).toBe(0);
    expect(ranks.ctrByRank[0]).toBe(0.5);
    expect(ranks.linkedClicksByRank).toEqual({ 0: 1n });
    expect(Number(ranks.clicksOutsideResults)).toBe(3);
    // Where clicks landed, as events: all four.
    expect(ranks.clicksByRank).toEqual({ 0: 1n, 5: 3n });

    const top = await h.client.getTopQueries({ days: 1 });
    const one = top.queries.find((q) => q.query === "one result")!;
    // Expected of it: rank 0's CTR (1/2); clicks at shown ranks: none.
    expect(one.coec).toBe(0);
    expect([Number(one.clicks), Number(one.clicksOutsideResults), one.mrr, one.abandonmentRate]).toEqual([3, 3, 0, 1]);
    const ten = top.queries.find((q) => q.query === "ten results")!;
    expect([ten.mrr, ten.abandonmentRate, Number(ten.clicksOutsideResults)]).toEqual([1, 0, 0]);

    const ctr = await h.client.getCtr({ days: 1 });
    expect(Number(ctr.clicksOutsideResults)).toBe(3);
    expect(Number(ctr.variants.search_v1!.clicksOutsideResults)).toBe(3);
    // MRR: (0 + 1) / 2; the search clicked only outside its results has no first click (abandoned), though it counts as clicked.
    expect(ctr.firstClick?.mrr).toBe(0.5);
    expect(Number(ctr.firstClick?.abandonedSearches)).toBe(1);
    expect(Number(ctr.searchesWithClicks)).toBe(2);
  });

  it("a first click outside the results gives way to the earliest click at a shown rank, whatever arrives when", async () => {
    await h.client.logEvents({ events: [click("c-early-out", "s-3", "q", "search_v1", 7, 29), search("s-3", "q", "search_v1", 3)] });
    expect((await h.client.getCtr({ days: 1 })).firstClick?.mrr).toBe(0);
    await h.client.logEvents({ events: [click("c-late-in", "s-3", "q", "search_v1", 1, 20)] });
    const ctr = await h.client.getCtr({ days: 1 });
    expect(ctr.firstClick?.mrr).toBe(0.5);
    expect(Number(ctr.clicksOutsideResults)).toBe(1);
    const top = await h.client.getTopQueries({ days: 1 });
    expect([top.queries[0]!.mrr, Number(top.queries[0]!.clicks), Number(top.queries[0]!.clicksOutsideResults)]).toEqual([0.5, 2, 1]);
  });
});

describe("unlinked clicks", () => {
  it("30 unlinked clicks move neither CTR per rank nor the pooled COEC reference", async () => {
    const events: EventInit[] = [];
    for (let i = 0; i < 40; i++) {
      events.push(search(`s-${i}`, i % 2 === 0 ? "shoes" : "boots", i % 3 === 0 ? "search_v2" : "search_v1", 5));
      if (i % 4 === 0) events.push(click(`c-${i}`, `s-${i}`, "shoes", "search_v1", i % 8 === 0 ? 0 : 2));
    }
    await h.client.logEvents({ events });
    const before = await Promise.all([h.client.getRankMetrics({ days: 1 }), h.client.getTopQueries({ days: 1 }), h.client.getVariantComparison({ days: 1, control: "search_v1", minImpressions: 0n })]);
    await h.client.logEvents({ events: Array.from({ length: 30 }, (_, i) => click(`free-${i}`, undefined, "shoes", "search_v1", 0)) });
    const [ranks, top, comparison] = await Promise.all([h.client.getRankMetrics({ days: 1 }), h.client.getTopQueries({ days: 1 }), h.client.getVariantComparison({ days: 1, control: "search_v1", minImpressions: 0n })]);
    expect(ranks.ctrByRank).toEqual(before[0].ctrByRank);
    expect(ranks.linkedClicksByRank).toEqual(before[0].linkedClicksByRank);
    // Counted as clicks (events), though.
    expect(Number(ranks.totalClicks)).toBe(Number(before[0].totalClicks) + 30);
    expect(Number(ranks.clicksByRank[0])).toBe(Number(before[0].clicksByRank[0]) + 30);
    // COEC per query and per variant against the same reference: unchanged.
    expect(top.queries.map((q) => [q.query, q.coec])).toEqual(before[1].queries.map((q) => [q.query, q.coec]));
    expect(Object.fromEntries(Object.entries(comparison.variants).map(([v, s]) => [v, s.coec]))).toEqual(Object.fromEntries(Object.entries(before[2].variants).map(([v, s]) => [v, s.coec])));
    // They count under the query they carry.
    expect(Number(top.queries.find((q) => q.query === "shoes")!.clicks)).toBe(Number(before[1].queries.find((q) => q.query === "shoes")!.clicks) + 30);
  });
});

describe("clicks of one search in concurrent batches", () => {
  it("every click is counted once with its search, whichever batch stores it (retries too) and whichever writer claims the search", async () => {
    // 40 batches at once, each with clicks for the same two searches (ranks inside and outside
    // their results), the searches themselves in two of the middle ones: clicks before, with and
    // after their search, linked by racing writers.
    const batches: EventInit[][] = Array.from({ length: 40 }, (_, b) => [
      click(`race-a-${b}`, "race-1", "race", "search_v1", b % 7, 29 - b / 100),
      click(`race-b-${b}`, "race-2", "race two", "search_v2", (b * 3) % 5, 28 - b / 100),
    ]);
    // Retries of the first click racing with it (and with each other): stored and counted once.
    for (let b = 30; b < 40; b++) batches[b]!.push(batches[0]![0]!);
    batches[17]!.push(search("race-1", "race", "search_v1", 4));
    batches[23]!.push(search("race-2", "race two", "search_v2", 3));
    const results = await Promise.all(batches.map((events) => h.client.logEvents({ events })));
    expect(results.reduce((n, r) => n + Number(r.duplicates), 0)).toBe(10);
    const c = h.server.store.collections;
    const stored = await c.impressions.find({}, { projection: { _id: 0, impression_id: 1, lk: 1, fc_r: 1, click_claim: 1 } }).toArray();
    expect(stored.map((d) => [d.impression_id, d.lk?.n, d.click_claim]).sort()).toEqual([
      ["race-1", 40, undefined],
      ["race-2", 40, undefined],
    ]);
    // Outside results: ranks 4, 5 and 6 of the first (4 results), 3 and 4 of the second (3 results).
    expect(stored.find((d) => d.impression_id === "race-1")!.lk!.o).toBe(batches.filter((_, b) => b % 7 >= 4).length);
    expect(stored.find((d) => d.impression_id === "race-2")!.lk!.o).toBe(batches.filter((_, b) => (b * 3) % 5 >= 3).length);
    const f = { window: timeWindow(1) };
    const [fast, raw] = [fastMetrics(c, new RollupReader(c)), rawMetrics(c)];
    expect(await fast.positions(f, true)).toEqual(await raw.positions(f, true));
    expect(await fast.topQueries(f, "clicks", 10)).toEqual(await raw.topQueries(f, "clicks", 10));
    const totals = await fast.totals(f);
    expect(totals).toEqual({ ...(await raw.totals(f)), overall: { ...(await raw.totals(f)).overall, responseTimeSum: totals.overall.responseTimeSum } });
    const top = await h.client.getTopQueries({ days: 1, orderBy: 2 });
    expect(top.queries.map((q) => [q.query, Number(q.clicks)])).toEqual([
      ["race", 40],
      ["race two", 40],
    ]);
  });
});
