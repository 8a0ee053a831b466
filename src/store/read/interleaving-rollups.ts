/**
 * Interleaving rollups: per UTC hour and per UTC day (and variant), every ranker pair's wins,
 * ties, uncredited clicks and per-user sums (d = wins_a - wins_b, n = decided searches, users
 * by their numbers, user-ids.ts), so GetInterleavingResult costs what the window's days cost, not
 * what its interleaved searches cost. Per-user sums add up across hours and days (a user's searches
 * of two periods are disjoint), so a window's tally is the sum of its parts, the same as over the
 * raw events (test/store/read/rollup-equivalence.test.ts).
 *
 * A search's outcome depends on all its clicks, which may arrive in any batch and in any order
 * (before the search, long after it). So the rollups are not incremented; they are rebuilt:
 * - Writers only move versions: every batch bumps `ver` of the (hour, variant) and (day,
 *   variant) documents of each interleaved search it stored and of each interleaved search a
 *   click it stored links to (one look-up by impression_id per batch with linked clicks). The
 *   hour's document is bumped before the day's (one ordered update command). This runs inside
 *   rollUp, after the events are inserted, so a writer that dies before it leaves a pending
 *   batch whose settling (rollups/pending-batches.ts) bumps them.
 * - Readers rebuild what moved: an hour whose built version (`bv`) is not its `ver` is tallied
 *   from its raw interleaved searches and their clicks; a day from its hours, or, when most of
 *   them are stale too (after a bulk load), from its raw events in one read split by hour. The result is
 *   stored only if `ver` has not moved meanwhile (the next read rebuilds it otherwise). Any event
 *   a rebuild missed was inserted after the rebuild's read, so its bump comes after the version
 *   the rebuild saw. A day bumped means its hour was bumped first, so a day rebuilt from hours
 *   sees that hour as stale.
 * - A window is answered from its partial edge hours, hourly documents up to the first whole
 *   day, and daily documents from there (windowRanges). An edge hour settled for over an hour is
 *   read once (its interleaved searches, tallied per minute) and cached under its documents'
 *   versions, which ride in the window's one listing; other edge hours are read raw
 *   (forEachInterleaved). A warm read is that listing: a window's sum is kept while it is made of
 *   the same cached parts (ComposedCache), and so is each pair's test (the service).
 *
 * A database whose interleaved searches predate these rollups gets their versions bumped once
 * (the first read of a process finds no `init` document), so every hour of theirs is built.
 * An hour rebuilt after its raw events expired (raw retention) would lose them: an hour is only
 * rebuilt when an event of it arrives, so in practice only a very late click does this.
 *
 * This module is the reader; the documents and their version bumps are
 * schema/interleaving-rollup-documents.ts, the writers' part rollups/interleaving-versions.ts.
 */
import { randomBytes } from "node:crypto";
import { Binary, type Document } from "mongodb";
import { emptyPairTally, mergePairTally, MultileaveTally, pairKey, type InterleavedImpression, type PairTally } from "../../core/interleaving.js";
import { ONE_ROUND_TRIP, type Collections } from "../schema/documents.js";
import { forEachInterleaved } from "./interleaving.js";
import { timeLimit, type MetricsFilter } from "./metrics-filter.js";
import { settledHours, timeRange, windowRanges } from "./window-ranges.js";
import { ReadTurns } from "./read-turns.js";
import { ComposedCache } from "../../core/composed-cache.js";
import { lowerBound } from "../../core/lower-bound.js";
import { userNumbers } from "../schema/user-ids.js";
import { floorTo } from "../schema/rollup-documents.js";
import { bumpVersions, docId, interleavingRollups, type Grain, type StoredPair } from "../schema/interleaving-rollup-documents.js";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const INIT_ID = "init";

/** Tallies keyed by user number, per pair (pairKey). */
export type PairTallies = Map<string, PairTally<number>>;

interface Decoded {
  bid: string;
  pairs: PairTallies;
}

const encodeUsers = (users: Map<number, { d: number; n: number }>): Binary => {
  const packed = new Int32Array(users.size * 3);
  let i = 0;
  for (const [num, { d, n }] of users) {
    packed[i++] = num;
    packed[i++] = d;
    packed[i++] = n;
  }
  return new Binary(Buffer.from(packed.buffer, packed.byteOffset, packed.byteLength));
};

function decodeUsers(b: Binary): Map<number, { d: number; n: number }> {
  const bytes = b.buffer;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Map<number, { d: number; n: number }>();
  for (let o = 0; o + 12 <= bytes.byteLength; o += 12) out.set(view.getInt32(o, true), { d: view.getInt32(o + 4, true), n: view.getInt32(o + 8, true) });
  return out;
}

const encodePairs = (pairs: PairTallies): StoredPair[] =>
  [...pairs.values()].map((p) => ({ a: p.a, b: p.b, n: p.impressions, wa: p.winsA, wb: p.winsB, ti: p.ties, uc: p.uncreditedClicks, u: encodeUsers(p.users) }));

function decodePairs(stored: readonly StoredPair[] | undefined): PairTallies {
  const out: PairTallies = new Map();
  for (const s of stored ?? []) out.set(pairKey(s.a, s.b), { a: s.a, b: s.b, impressions: s.n, winsA: s.wa, winsB: s.wb, ties: s.ti, uncreditedClicks: s.uc, users: decodeUsers(s.u) });
  return out;
}

/** Adds every pair of `from` into `into` (copying what it adds, so cached tallies stay as they are). */
export function mergeTallies(into: PairTallies, from: PairTallies): PairTallies {
  for (const [k, p] of from) {
    let have = into.get(k);
    if (!have) into.set(k, (have = emptyPairTally<number>(p.a, p.b)));
    mergePairTally(have, p);
  }
  return into;
}

const MINUTE_MS = 60_000;
/** Rebuilt at least this often whatever the versions say (a reset elsewhere that left none). */
const EDGE_MAX_AGE_MS = 10 * 60_000;
const EDGE_HOURS_CACHED = 64;

/** Raw reads of one reader at once (read-turns.ts). */
const RAW_READS_AT_ONCE = 2;

type Listed = { _id: string; g: Grain; t: Date; v: string; ver: number; bv?: number; bid?: string };

/**
 * Reads interleaving tallies for windows, caching decoded documents by build id. Each read lists
 * the window's documents (an index-only read), rebuilds those whose versions moved, and merges.
 */
export class InterleavingRollupReader {
  private readonly cache = new Map<string, Decoded>();
  private readonly building = new Map<string, Promise<Decoded>>();
  private ready: Promise<void> | undefined;
  /** Hours and days rebuilt by this reader (for tests and docs/benchmark.md's measurements). */
  builds = { h: 0, d: 0 };
  /** Settled edge hours tallied by minute (cache misses). */
  edgeHourBuilds = 0;
  /** Raw reads take turns (read-turns.ts). */
  private readonly turns = new ReadTurns(RAW_READS_AT_ONCE);
  private readonly edgeHours = new Map<string, { signature: string; builtAt: number; hour: Promise<EdgeHour> }>();
  /** Windows' sums by the cached parts they were made of (a warm read merges nothing). */
  private readonly sums = new ComposedCache<PairTallies, PairTallies>();

  constructor(
    private readonly c: Collections,
    private readonly maxCached = 5_000,
  ) {}

  /** Every ranker pair's tally over the window (users by number). Shared with other calls over the same data: read it, never change it. */
  async pairs(f: MetricsFilter): Promise<PairTallies> {
    await this.init();
    const ranges = windowRanges(f.window.start.getTime(), f.window.until?.getTime());
    const v = f.variant === undefined ? {} : { v: f.variant };
    // The settled edge hours' versions ride in the window's one listing (they are never among its whole hours).
    const edgeHours = settledHours(ranges.raw, Date.now());
    const grains: Document[] = [
      ...ranges.hours.map(([from, to]) => ({ g: "h", t: timeRange(from, to), ...v })),
      ...ranges.days.map(([from, to]) => ({ g: "d", t: timeRange(from, to), ...v })),
      ...[...edgeHours].map((hour) => ({ g: "h", t: new Date(hour), ...v })),
    ];
    const listing = grains.length === 0 ? Promise.resolve([]) : this.list({ $or: grains }, f);
    const isEdge = (d: Listed) => d.g === "h" && edgeHours.has(d.t.getTime());
    const [listed, ...edges] = await Promise.all([listing, ...ranges.raw.map(([from, to]) => this.edge(from, to, f.variant, f, edgeHours, listing.then((l) => l.filter(isEdge))))]);
    const parts = await Promise.all(listed.filter((d) => !isEdge(d)).map((d) => this.built(d, f)));
    const all = [...parts.map((p) => p.pairs), ...edges.flat()].filter((p) => p.size > 0);
    if (all.length === 0) return new Map();
    // The same cached parts (unchanged versions, the same stretch of the edge hour) make the same sum.
    const known = this.sums.get(all[0]!, all);
    if (known !== undefined) return known;
    const out: PairTallies = new Map();
    for (const part of all) mergeTallies(out, part);
    return this.sums.set(all[0]!, all, out);
  }

  clear(): void {
    this.cache.clear();
    this.edgeHours.clear();
    this.ready = undefined;
  }

  /**
   * A window's partial edge [from, to) as parts to add up. A trailing window's start moves with
   * every call, so its first hour would be read raw every time: an hour settled for over an hour
   * is read once (its interleaved searches, tallied per minute) and cached under its documents'
   * versions (any write that may change its interleaving moves them); any stretch of it is then
   * whole minutes' tallies plus the searches of its partial minutes. Other hours are read raw.
   */
  private async edge(from: number, to: number, variant: string | undefined, budget: MetricsFilter, settled: ReadonlySet<number>, listed: Promise<readonly Listed[]>): Promise<PairTallies[]> {
    const pieces: Promise<PairTallies[]>[] = [];
    for (let cursor = from; cursor < to; ) {
      const hour = floorTo(cursor, HOUR_MS);
      const until = Math.min(hour + HOUR_MS, to);
      const [a, b] = [cursor, until];
      if (settled.has(hour)) pieces.push(listed.then((l) => this.hourOf(hour, variant, budget, l.filter((d) => d.t.getTime() === hour))).then((h) => stretchOf(h, a, b)));
      else pieces.push(this.raw(a, b, variant, budget).then((m) => [...m.values()]));
      cursor = until;
    }
    return (await Promise.all(pieces)).flat();
  }

  /** A settled hour's interleaved searches and their tallies per minute, cached under its documents' versions (`listed`). */
  private async hourOf(hour: number, variant: string | undefined, budget: MetricsFilter, listed: readonly Listed[]): Promise<EdgeHour> {
    const key = `${hour}|${variant ?? ""}`;
    const signature = listed.map((d) => `${d._id}@${d.ver}`).sort().join(";");
    const cached = this.edgeHours.get(key);
    if (cached !== undefined && cached.signature === signature && Date.now() - cached.builtAt <= EDGE_MAX_AGE_MS) {
      try {
        return await cached.hour;
      } catch {
        // Another call's read, stopped by that call's deadline: read here.
      }
    }
    this.edgeHourBuilds++;
    const built = this.rawSearches(hour, hour + HOUR_MS, variant, budget);
    const entry = { signature, builtAt: Date.now(), hour: built };
    this.edgeHours.delete(key);
    this.edgeHours.set(key, entry);
    built.catch(() => this.edgeHours.get(key) === entry && this.edgeHours.delete(key));
    while (this.edgeHours.size > EDGE_HOURS_CACHED) this.edgeHours.delete(this.edgeHours.keys().next().value!);
    return built;
  }

  /** An hour's interleaved searches by time, users by number, with their tallies per minute (one raw read, taking a turn as raw() does). */
  private async rawSearches(from: number, to: number, variant: string | undefined, budget: MetricsFilter): Promise<EdgeHour> {
    const searches = await this.turns.take(async () => {
      const found: { imp: InterleavedImpression; at: number }[] = [];
      await forEachInterleaved(this.c, rawFilter(from, to, variant, budget), (imp, at) => found.push({ imp, at: at.getTime() }));
      const numbers = found.length === 0 ? new Map<string, number>() : await userNumbers(this.c).resolve(new Set(found.map((s) => s.imp.userId)), timeLimit(budget).maxTimeMS);
      return found.sort((x, y) => x.at - y.at).map((s) => ({ ...s, user: numbers.get(s.imp.userId)! }));
    });
    const minutes = new Map<number, MultileaveTally<number>>();
    for (const s of searches) {
      const minute = floorTo(s.at, MINUTE_MS);
      let tally = minutes.get(minute);
      if (!tally) minutes.set(minute, (tally = new MultileaveTally<number>()));
      tally.add(s.imp, s.user);
    }
    return { at: searches.map((s) => s.at), searches, minutes: new Map([...minutes].map(([m, t]) => [m, t.pairs])), stretches: new Map() };
  }
  /** Its index, and versions for interleaved searches stored before these rollups existed (once per database). */
  private init(): Promise<void> {
    this.ready ??= (async () => {
      const col = interleavingRollups(this.c);
      await col.createIndex({ g: 1, t: 1, v: 1, ver: 1, bv: 1, bid: 1 }, { name: "grain_time_variant_versions" });
      if ((await col.findOne({ _id: INIT_ID }, { projection: { _id: 1 } })) !== null) return;
      const hours = await this.c.impressions
        .aggregate<{ _id: { t: Date; v: string } }>([
          { $match: { teams: { $exists: true } } },
          { $group: { _id: { t: { $subtract: ["$timestamp", { $mod: [{ $toLong: "$timestamp" }, HOUR_MS] }] }, v: "$variant" } } },
        ], { hint: "timestamp_interleaved" })
        .toArray();
      for (let i = 0; i < hours.length; i += 1000) await bumpVersions(this.c, hours.slice(i, i + 1000).map((x) => ({ t: new Date(x._id.t).getTime(), v: x._id.v })));
      // No g, t or v: never listed as a period.
      await col.updateOne({ _id: INIT_ID }, { $setOnInsert: { ver: 0 } }, { upsert: true });
    })().catch((error: unknown) => {
      this.ready = undefined;
      throw error;
    });
    return this.ready;
  }

  private async list(filter: Document, budget: MetricsFilter): Promise<Listed[]> {
    const rows = await interleavingRollups(this.c)
      .find(filter, { projection: { _id: 0, g: 1, t: 1, v: 1, ver: 1, bv: 1, bid: 1 }, ...timeLimit(budget), ...ONE_ROUND_TRIP })
      .toArray();
    return rows.map((d) => ({ ...d, _id: docId(d.g, d.t.getTime(), d.v), ver: Number(d.ver), ...(d.bv === undefined ? {} : { bv: Number(d.bv) }) }) as Listed);
  }

  /** The document's tallies as of its listed version: cached, fetched, or rebuilt. */
  private async built(d: Listed, budget: MetricsFilter): Promise<Decoded> {
    if (d.bv === d.ver && d.bid !== undefined) {
      const cached = this.cache.get(d._id);
      if (cached?.bid === d.bid) return cached;
      const stored = await interleavingRollups(this.c).findOne({ _id: d._id, bid: d.bid }, { projection: { bid: 1, pairs: 1 }, ...timeLimit(budget) });
      if (stored !== null) return this.remember(d._id, { bid: d.bid, pairs: decodePairs(stored.pairs) });
      // Rebuilt by another reader in between: build it here too.
    }
    const key = `${d._id}@${d.ver}`;
    let pending = this.building.get(key);
    if (!pending) {
      pending = this.rebuild(d, budget).finally(() => this.building.delete(key));
      this.building.set(key, pending);
    }
    return pending;
  }

  private async rebuild(d: Listed, budget: MetricsFilter): Promise<Decoded> {
    const t = d.t.getTime();
    let pairs: PairTallies;
    if (d.g === "h") {
      this.builds.h++;
      pairs = (await this.raw(t, t + HOUR_MS, d.v, budget)).get(t) ?? new Map();
    } else {
      this.builds.d++;
      const hours = await this.list({ g: "h", t: { $gte: new Date(t), $lt: new Date(t + DAY_MS) }, v: d.v }, budget);
      const stale = hours.filter((x) => !(x.bv === x.ver && x.bid !== undefined));
      pairs = new Map();
      if (stale.length * 2 <= hours.length) {
        // Mostly built (a live day): its hours, the stale ones rebuilt.
        for (const part of await Promise.all(hours.map((x) => this.built(x, budget)))) mergeTallies(pairs, part.pairs);
      } else {
        // Mostly unbuilt (after a bulk load, or a database that predates these rollups): the day's
        // events in one read, split by hour; its stale hours are kept as they come out.
        const byHour = await this.raw(t, t + DAY_MS, d.v, budget);
        for (const part of byHour.values()) mergeTallies(pairs, part);
        await Promise.all(stale.map((x) => this.store(x, byHour.get(x.t.getTime()) ?? new Map())));
      }
    }
    return this.store(d, pairs);
  }

  /** Keeps `pairs` as `d`'s build, if no write moved its version since it was listed. */
  private async store(d: Listed, pairs: PairTallies): Promise<Decoded> {
    const built: Decoded = { bid: randomBytes(9).toString("base64url"), pairs };
    // A period whose users would take the document past 16 MiB (about 1.3 million users of one
    // pair) is not kept: it is built again from its parts on every read that needs it.
    const stored = await interleavingRollups(this.c)
      .updateOne({ _id: d._id, ver: d.ver }, { $set: { bv: d.ver, bid: built.bid, pairs: encodePairs(pairs) } })
      .catch((error: { code?: number; message?: string }) => {
        if (error.code === 10334 || error.code === 17419 || error.code === 10329 || /larger than the max|too large/i.test(error.message ?? "")) return { modifiedCount: 0 };
        throw error;
      });
    return stored.modifiedCount === 1 ? this.remember(d._id, built) : built;
  }

  /** The interleaved searches of [from, to) (of one variant, or all) straight from the events, per UTC hour (by its start). */
  private raw(from: number, to: number, variant: string | undefined, budget: MetricsFilter, unit = HOUR_MS): Promise<Map<number, PairTallies>> {
    return this.turns.take(() => this.rawNow(from, to, variant, budget, unit));
  }

  /** The interleaved searches of [from, to) straight from the events, per `unit` (an hour or a minute, by its start). */
  private async rawNow(from: number, to: number, variant: string | undefined, budget: MetricsFilter, unit: number): Promise<Map<number, PairTallies>> {
    const byHour = new Map<number, MultileaveTally<string>>();
    await forEachInterleaved(this.c, rawFilter(from, to, variant, budget), (imp, at) => {
      const hour = floorTo(at.getTime(), unit);
      let tally = byHour.get(hour);
      if (!tally) byHour.set(hour, (tally = new MultileaveTally<string>()));
      tally.add(imp);
    });
    const ids = new Set<string>();
    for (const tally of byHour.values()) for (const p of tally.pairs.values()) for (const id of p.users.keys()) ids.add(id);
    const numbers = ids.size === 0 ? new Map<string, number>() : await userNumbers(this.c).resolve(ids, timeLimit(budget).maxTimeMS);
    const out = new Map<number, PairTallies>();
    for (const [hour, tally] of byHour) out.set(hour, new Map([...tally.pairs].map(([k, p]) => [k, { ...p, users: new Map([...p.users].map(([id, u]) => [numbers.get(id)!, u])) }])));
    return out;
  }

  private remember(id: string, d: Decoded): Decoded {
    this.cache.delete(id);
    this.cache.set(id, d);
    while (this.cache.size > this.maxCached) this.cache.delete(this.cache.keys().next().value!);
    return d;
  }
}

/** A settled hour as cached: its interleaved searches by time (`at` alongside), and their tallies per minute. */
interface EdgeHour {
  at: number[];
  searches: { imp: InterleavedImpression; at: number; user: number }[];
  minutes: Map<number, PairTallies>;
  /** Tallies of partial minutes, by the searches they cover (a window's start crosses a search only now and then). */
  stretches: Map<string, PairTallies>;
}

const STRETCHES_CACHED = 8;

/** [a, b) of a cached hour: its whole minutes' tallies, and the searches of the partial minutes at either end. */
function stretchOf(h: EdgeHour, a: number, b: number): PairTallies[] {
  const [firstMinute, endMinute] = [Math.ceil(a / MINUTE_MS) * MINUTE_MS, Math.floor(b / MINUTE_MS) * MINUTE_MS];
  if (firstMinute >= endMinute) return [searchesBetween(h, a, b)];
  const out = [searchesBetween(h, a, firstMinute), searchesBetween(h, endMinute, b)];
  for (let m = firstMinute; m < endMinute; m += MINUTE_MS) {
    const part = h.minutes.get(m);
    if (part !== undefined) out.push(part);
  }
  return out;
}

/** The tally of a cached hour's searches in [a, b), kept by the searches it covers. */
function searchesBetween(h: EdgeHour, a: number, b: number): PairTallies {
  const at = (k: number) => h.at[k]!;
  const [i, j] = [lowerBound(h.at.length, at, a), lowerBound(h.at.length, at, b)];
  if (i >= j) return new Map();
  const key = `${i}-${j}`;
  const known = h.stretches.get(key);
  if (known !== undefined) return known;
  const tally = new MultileaveTally<number>();
  for (let k = i; k < j; k++) tally.add(h.searches[k]!.imp, h.searches[k]!.user);
  h.stretches.set(key, tally.pairs);
  while (h.stretches.size > STRETCHES_CACHED) h.stretches.delete(h.stretches.keys().next().value!);
  return tally.pairs;
}

const rawFilter = (from: number, to: number, variant: string | undefined, budget: MetricsFilter): MetricsFilter => ({
  window: { start: new Date(from), until: new Date(to), end: new Date(to), days: 1 },
  ...(variant === undefined ? {} : { variant }),
  ...timeLimit(budget),
});
