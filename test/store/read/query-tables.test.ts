/**
 * Top queries from query tables: a window whose day tables no longer fit the day cache is still
 * answered from its kept merge, in one round trip, and a late event in one of its days is seen.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, expect, it } from "vitest";
import { topQueries } from "../../../src/store/read/breakdowns.js";
import { QueryTableReader } from "../../../src/store/read/query-tables.js";
import { timeWindow } from "../../../src/core/window.js";
import type { MetricsFilter } from "../../../src/store/read/metrics-filter.js";
import { clearOfHourBoundary, currentHour } from "../../support/clock.js";
import { startHarness, type Harness } from "../../support/harness.js";
import { monitoredCollections } from "../../support/monitored.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

const at = (ms: number) => timestampFromDate(new Date(ms));

/** Searches (and a click on every third) on `day` days ago at noon UTC, over a few queries and both variants. */
function dayOfSearches(day: number, prefix: string) {
  const noon = Math.floor((Date.now() - day * DAY) / DAY) * DAY + 12 * HOUR;
  const events = [];
  for (let i = 0; i < 12; i++) {
    const id = `${prefix}-${day}-${i}`;
    const variant = i % 2 === 0 ? "a" : "b";
    events.push({ kind: { case: "impression" as const, value: { eventId: id, impressionId: id, userId: `u${i % 4}`, query: `query ${(i * day) % 5}`, variant, resultsCount: 1 + (i % 6), responseTimeMs: 10, timestamp: at(noon + i * 60_000) } } });
    if (i % 3 === 0) events.push({ kind: { case: "click" as const, value: { eventId: `${id}-c`, impressionId: id, userId: `u${i % 4}`, productId: "p", rank: 1, searchQuery: `query ${(i * day) % 5}`, variant, responseTimeMs: 10, timestamp: at(noon + i * 60_000 + 5_000) } } });
  }
  return events;
}

// Up to a minute more than its own work: it waits out an hour boundary when one is near.
it("answers a window whose day tables left the day cache from its kept merge in one round trip, and sees a late event in one of its days", { timeout: 120_000 }, async () => {
  for (const day of [2, 3, 4]) await h.client.logEvents({ events: dayOfSearches(day, "s") });
  const { monitored, commands, c } = await monitoredCollections(h.dbName);
  try {
    // Caches of one query entry: each keeps only the table set last, so the window's six day
    // tables (three finished days, two variants) never stay in the day cache together.
    const reader = new QueryTableReader(c, 1);
    const f = (): MetricsFilter => ({ window: timeWindow(6) });
    const same = async () => {
      const filter = f();
      const rows = await reader.top(filter, "searches", 100);
      expect(rows).toEqual(await topQueries(c, filter, "searches", 100));
      return rows;
    };
    const hour = await clearOfHourBoundary();
    const cold = await same();
    expect(cold.length).toBe(5);
    commands.length = 0;
    const warm = await reader.top(f(), "searches", 100);
    // The listing of the tables' versions, and no read of a day table.
    expect(commands).toEqual(["find rollups"]);
    expect(currentHour(), "both reads within one hour (a trailing window's edges move at hour boundaries)").toBe(hour);
    expect(warm).toEqual(cold);

    // A late search in one of the days moves its hour's version: the window is merged again.
    await h.client.logEvents({ events: dayOfSearches(3, "late").slice(0, 1) });
    const later = await same();
    expect(later.reduce((n, r) => n + r.searches, 0)).toBe(cold.reduce((n, r) => n + r.searches, 0) + 1);
  } finally {
    await monitored.close();
  }
});
