/**
 * Per-user rollups (issue 21): every user's totals over a window from the hourly and daily tables
 * (built by the reader from raw events, stored, cached) equal the same totals straight from the
 * events, over a window with raw edges, settled days, hours and a first click; a late event in an
 * already built day moves the answer (the day's version moved, so it is built again); a restarted
 * reader finds the stored tables instead of rebuilding.
 */
import { Binary } from "mongodb";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { UserTotals } from "../../../src/core/user-totals.js";
import { Accumulator } from "../../../src/store/read/user-accumulator.js";
import { rawEvents, rawUserTables, tablesFromEvents } from "../../../src/store/read/user-raw-tables.js";
import { rawUserWindow, UserRollupReader } from "../../../src/store/read/user-rollups.js";
import { decode, encode, TableBuilder, userRollups, type UserTable } from "../../../src/store/read/user-tables.js";
import { startHarness, type Harness } from "../../support/harness.js";
import { clearOfHourBoundary, currentHour } from "../../support/clock.js";
import { mulberry32 } from "../../support/prng.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

/** Per variant, user number -> [searches, clicks, clicked, no results, first clicked, reciprocal ranks, max searches in a day]. */
function byUser(w: Map<string, UserTotals>): Record<string, Record<number, number[]>> {
  const out: Record<string, Record<number, number[]>> = {};
  for (const [v, t] of w) {
    out[v] = {};
    for (let i = 0; i < t.ids.length; i++) {
      out[v][t.ids[i]!] = [t.impressions[i]!, t.clicks[i]!, t.searchesWithClicks[i]!, t.noResults[i]!, t.firstClicked[i]!, Number(t.reciprocalRanks[i]!.toFixed(12)), t.maxDaySearches![i]!];
    }
  }
  return out;
}

// Up to a minute more than its own work: it waits out an hour boundary when one is near.
it("equal the raw events' per-user totals, move with a late event, and are stored for the next reader", { timeout: 120_000 }, async () => {
  const now = Date.now();
  // 40 users over the last 9 days in two variants, a few clicks linked to their searches.
  const events = [];
  let seed = 21;
  const rand = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
  for (let i = 0; i < 600; i++) {
    const user = `u${Math.floor(rand() * rand() * 40)}`;
    const variant = Number(user.slice(1)) % 2 === 0 ? "a" : "b";
    const at = new Date(now - Math.floor(rand() * 9 * DAY));
    const id = `s${i}`;
    events.push({ kind: { case: "impression" as const, value: { eventId: id, impressionId: id, userId: user, query: "q", variant, resultsCount: rand() < 0.1 ? 0 : 5, responseTimeMs: 5 + rand() * 200, timestamp: { seconds: BigInt(Math.floor(at.getTime() / 1000)), nanos: 0 } } } });
    if (rand() < 0.3) {
      const click = new Date(at.getTime() + 2000);
      events.push({ kind: { case: "click" as const, value: { eventId: `c${i}`, impressionId: id, userId: user, productId: "p", rank: Math.floor(rand() * 4), searchQuery: "q", variant, responseTimeMs: 10, timestamp: { seconds: BigInt(Math.floor(click.getTime() / 1000)), nanos: 0 } } } });
    }
  }
  for (let i = 0; i < events.length; i += 500) await h.client.logEvents({ events: events.slice(i, i + 500) });
  const c = h.server.store.collections;
  const window = { start: new Date(now - 8 * DAY - 17 * 60_000 - 3_000), until: undefined };
  const reader = new UserRollupReader(c);
  const hour = await clearOfHourBoundary();
  const fromRollups = await reader.window(window, undefined);
  const fromEvents = await rawUserWindow(c, window, undefined);
  expect(fromRollups).toBeDefined();
  expect(byUser(fromRollups!)).toEqual(byUser(fromEvents));
  expect(reader.builds.d).toBeGreaterThanOrEqual(6);
  // A second read builds nothing.
  const builds = { ...reader.builds };
  expect(byUser((await reader.window(window, undefined))!)).toEqual(byUser(fromEvents));
  expect(reader.builds.d).toBe(builds.d);
  expect(reader.builds.h).toBe(builds.h);
  expect(currentHour(), "both reads within one hour (a window's whole hours move at hour boundaries)").toBe(hour);

  // A late search in a settled, already built day: its version moved, so it is built again.
  const late = new Date(now - 5 * DAY);
  await h.client.logEvents({ events: [{ kind: { case: "impression", value: { eventId: "late", impressionId: "late", userId: "u0", query: "q", variant: "a", resultsCount: 5, responseTimeMs: 50, timestamp: { seconds: BigInt(Math.floor(late.getTime() / 1000)), nanos: 0 } } } }] });
  const after = await reader.window(window, undefined);
  expect(byUser(after!)).toEqual(byUser(await rawUserWindow(c, window, undefined)));
  expect(byUser(after!)).not.toEqual(byUser(fromEvents));
  expect(reader.builds.d).toBe(builds.d + 1);

  // A new reader (another server, or a restart) finds the stored tables.
  expect(await userRollups(c).countDocuments({ g: "d" })).toBeGreaterThanOrEqual(12);
  const fresh = new UserRollupReader(c);
  expect(byUser((await fresh.window(window, undefined))!)).toEqual(byUser(await rawUserWindow(c, window, undefined)));
  expect(fresh.builds.d).toBe(0);
});

it("take a settled edge hour's partial minutes from its cached events: the same tables as reading them raw (issue 21b)", async () => {
  const c = h.server.store.collections;
  const now = Date.now();
  let seed = 5;
  const rand = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
  // Hours with events (settled ones), and the partial minutes of a few random starts in each.
  const times = (await c.impressions.find({ timestamp: { $lt: new Date(now - 2 * HOUR) } }, { projection: { timestamp: 1 } }).limit(12).toArray()).map((d) => d.timestamp.getTime());
  expect(times.length).toBe(12);
  for (let k = 0; k < 12; k++) {
    const hour = Math.floor(times[k]! / HOUR) * HOUR;
    const events = await rawEvents(c, hour, hour + HOUR, k % 3 === 0 ? "a" : undefined, {});
    const a = Math.max(hour, times[k]! - Math.floor(rand() * 90_000));
    const b = Math.min(hour + HOUR, a + Math.floor(rand() * 3 * 60_000));
    for (const [from, to, slice] of [[a, b, b - a], [hour, hour + HOUR, 60_000], [a, hour + HOUR, hour + HOUR - a]] as const) {
      const raw = await rawUserTables(c, from, to, slice, k % 3 === 0 ? "a" : undefined, {});
      const cached = tablesFromEvents(events, from, to, slice);
      expect(cached).toEqual(raw);
      if (from === hour && k % 3 !== 0) expect(raw.size).toBeGreaterThan(0);
    }
  }
});

it("sum tables column by column over a cached base exactly as a straightforward per-user sum of the same tables in order (issue 21b)", () => {
  let seed = 11;
  const rand = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
  const table = (users: number): UserTable => {
    const ids = [...new Set(Array.from({ length: users }, () => Math.floor(rand() * 3000)))].sort((a, b) => a - b);
    const rows = Float64Array.from({ length: ids.length * 6 }, (_, i) => (i % 6 === 5 ? rand() * 3 : Math.floor(rand() * 20)));
    const lat = ids.flatMap((_, r) => Array.from({ length: Math.floor(rand() * 3) }, () => [r, Math.floor(rand() * 80) - 10, 1 + Math.floor(rand() * 5)]));
    const latStart = new Uint32Array(ids.length + 1);
    for (const [r] of lat) latStart[r! + 1]!++;
    for (let r = 0; r < ids.length; r++) latStart[r + 1]! += latStart[r]!;
    return { ids: Uint32Array.from(ids), rows, latStart, latKey: Int16Array.from(lat.map((x) => x[1]!)), latCount: Uint32Array.from(lat.map((x) => x[2]!)) };
  };
  const day = Math.floor(Date.now() / DAY) * DAY;
  const baseParts = Array.from({ length: 30 }, (_, k) => ({ table: table(1500), g: (k < 25 ? "d" : "h") as "d" | "h", t: k < 25 ? day - (30 - k) * DAY : day - 5 * DAY + k * HOUR }));
  const callParts = Array.from({ length: 6 }, (_, k) => ({ table: table(k < 2 ? 1000 : 40), g: (k < 2 ? "h" : "part") as "h" | "part", t: k < 2 ? day + k * HOUR : day - 29 * DAY - 3600_000 + k * 60_000 }));
  const base = new Accumulator();
  for (const p of baseParts) base.add(p.table, p.g, p.t);
  for (let call = 0; call < 2; call++) {
    const over = new Accumulator(base);
    for (const p of callParts) over.add(p.table, p.g, p.t);
    const got = over.totals();
    // Straightforward: rows in order of first appearance, each field summed table after table.
    const rowOf = new Map<number, number>();
    const rows: number[][] = [];
    const dayMax: number[] = [];
    const perDay = new Map<number, Map<number, number>>();
    const lat: [number, number, number][] = [];
    for (const p of [...baseParts, ...callParts]) {
      p.table.ids.forEach((n, j) => {
        let r = rowOf.get(n);
        if (r === undefined) (rowOf.set(n, (r = rows.length)), rows.push([0, 0, 0, 0, 0, 0]), dayMax.push(0));
        for (let k = 0; k < 6; k++) rows[r]![k]! += p.table.rows[j * 6 + k]!;
        const s = p.table.rows[j * 6]!;
        if (p.g === "d") dayMax[r] = Math.max(dayMax[r]!, s);
        else {
          const d = Math.floor(p.t / DAY) * DAY;
          if (!perDay.has(d)) perDay.set(d, new Map());
          perDay.get(d)!.set(r, (perDay.get(d)!.get(r) ?? 0) + s);
        }
      });
      p.table.ids.forEach((n, j) => {
        for (let e = p.table.latStart[j]!; e < p.table.latStart[j + 1]!; e++) lat.push([rowOf.get(n)!, p.table.latKey[e]!, p.table.latCount[e]!]);
      });
    }
    for (const m of perDay.values()) for (const [r, s] of m) dayMax[r] = Math.max(dayMax[r]!, s);
    expect(Array.from(got.ids)).toEqual([...rowOf.keys()]);
    (["impressions", "clicks", "searchesWithClicks", "noResults", "firstClicked", "reciprocalRanks"] as const).forEach((f, k) => expect(Array.from(got[f])).toEqual(rows.map((r) => r[k])));
    expect(Array.from(got.maxDaySearches!)).toEqual(dayMax);
    for (const ms of [0, 0.5, 3, 40.2, 1e6]) {
      const position = ms > 0 ? Math.log2(ms) * 8 : -Infinity;
      const bucket = Math.max(-64, Math.floor(position));
      const share = bucket === -64 ? (ms > 0 && position - bucket >= 1 ? 1 : 0.5) : position - bucket;
      const under = new Float64Array(rows.length);
      const at = new Float64Array(rows.length);
      for (const [r, k, n] of lat) if (k < bucket) under[r]! += n; else if (k === bucket) at[r]! += n;
      const below = got.latencyBelow!(ms);
      for (let r = 0; r < rows.length; r++) expect(below[r]).toBeCloseTo(under[r]! + share * at[r]!, 9);
    }
  }
});

it("a table stored and read back is the same table: triples by row in the stored form, counts past 16 bits kept", () => {
  const random = mulberry32(5);
  for (const big of [false, true]) {
    const builder = new TableBuilder();
    for (let k = 0; k < 400; k++) {
      const u = builder.user(Math.floor(random() * 300));
      for (let f = 0; f < 6; f++) u.row[f]! += f === 5 ? random() : Math.floor(random() * 9);
      const bucket = Math.floor(random() * 60) - 20;
      u.lat.set(bucket, (u.lat.get(bucket) ?? 0) + (big && k === 7 ? 70_000 : 1 + Math.floor(random() * 4)));
    }
    const table = builder.build();
    expect(table.latCount instanceof Uint32Array).toBe(big);
    const stored = encode(table);
    // The stored layout (version 1): [1, users, triples, 0], ids, rows, then (row, bucket, searches).
    const bytes = Uint8Array.from(stored.buffer);
    const [version, n, m] = new Uint32Array(bytes.buffer, 0, 3);
    expect([version, n, m]).toEqual([1, table.ids.length, table.latKey.length]);
    const pad = (x: number) => Math.ceil(x / 8) * 8;
    const latRow = new Uint32Array(bytes.buffer, 16 + pad(n! * 4) + n! * 6 * 8, m!);
    table.ids.forEach((_, r) => {
      for (let e = table.latStart[r]!; e < table.latStart[r + 1]!; e++) expect(latRow[e]).toBe(r);
    });
    // Read back from a reply whose bytes sit at an odd offset of a larger buffer, as the driver's may.
    const reply = new Uint8Array(bytes.length + 3);
    reply.set(bytes, 3);
    const back = decode(new Binary(reply.subarray(3)));
    expect(Array.from(back.ids)).toEqual(Array.from(table.ids));
    expect(Array.from(back.rows)).toEqual(Array.from(table.rows));
    expect(Array.from(back.latStart)).toEqual(Array.from(table.latStart));
    expect(Array.from(back.latKey)).toEqual(Array.from(table.latKey));
    expect(Array.from(back.latCount)).toEqual(Array.from(table.latCount));
    expect(back.latCount.constructor).toBe(table.latCount.constructor);
  }
});
