/**
 * The rollup reader: a window's metrics from pre-aggregated rollups (schema/rollup-documents.ts).
 * A window [start, now] is answered from three parts that never overlap (read/window-ranges.ts):
 *   raw events in [start, next hour), hourly rollups up to the next UTC midnight, daily rollups
 *   from there on (no upper bound, so late and slightly-future events are included).
 */
import { createHash } from "node:crypto";
import type { TimeWindow } from "../../core/window.js";
import { batchesOf, type Collections } from "../schema/documents.js";
import { requireTimeLeft, timeLimit } from "./metrics-filter.js";
import { DAY_MS, floorTo, HOUR_MS, rollupCollection, rollupId, type Grain } from "../schema/rollup-documents.js";
import { addCountsInto, addInto, decode, emptyAggregate, emptySeriesAggregate, mergeAggregate, type Decoded, type Part, type RollupAggregate, type SeriesAggregate, type WindowAggregates } from "./rollup-aggregate.js";
import { settledHours, timeRange, windowRanges } from "./window-ranges.js";
import { byOffset, rawPart, rawRows, rowRange, slicesOf, type MaxTime, type RawRows } from "./rollup-raw-parts.js";
import { rollupListing, type ListingClause } from "./rollup-listing.js";
import { ComposedCache } from "../../core/composed-cache.js";

const sameRange = (x: readonly [number, number], y: readonly [number, number]) => x[0] === y[0] && x[1] === y[1];

/**
 * Decoded rollup documents kept, by estimated size: ~46 KB an hour's document at 3M events (its
 * user-bucket sums ~28 KB, its histograms the rest), so ~700 of them; a month of hours and days
 * at 3M events is ~1,500 (the benchmark's reads use ~200).
 */
const ROLLUPS_CACHED_BYTES = 32 * 2 ** 20;

/** A decoded document's size, estimated: its typed arrays, ~40 bytes a histogram entry, and its own objects. */
export function decodedBytes(d: Decoded): number {
  const entries = d.ranks.size + d.resultsCounts.size + d.rt.size + d.fr.size + d.ft.size + d.sr.size;
  return 1_024 + 40 * entries + d.users.words.byteLength + d.users.bits.byteLength + d.buckets.index.byteLength + d.buckets.sums.byteLength;
}

/** Cached hours (an hour and variant filter each): a few windows' edges, with room to spare. */
const EDGE_HOURS_CACHED = 64;
/** Windows' rollup sums kept (see RollupReader.rollupSums): ~15 KB per variant each. */
const WINDOW_SUMS_CACHED = 32;
/**
 * Time-series buckets' sums kept (see RollupReader.knownBucketSum), ~20 KB each at 3M events: a
 * week of hours for both variants and each alone is 504, a 30-day daily series 30.
 */
const BUCKET_SUMS_CACHED = 512;
/** Rebuilt at least this often whatever the versions say (a reset elsewhere that left none). */
const EDGE_MAX_AGE_MS = 10 * 60_000;

/**
 * A settled hour's events, grouped by millisecond (rawRows with 1 ms slices: `_id.k` is the
 * offset into the hour), sorted by it, and the versions of its rollups they match. Any stretch
 * of the hour is then summed here, to the millisecond, without reading the events again.
 */
interface EdgeHour {
  signature: string;
  builtAt: number;
  rows: Promise<RawRows>;
  /** Rows held (for the cache's bound), once built. */
  size: number;
  /**
   * The last stretch summed, by the rows it covers: a window's start moves by milliseconds from
   * call to call but crosses an event only now and then, so most calls sum the same rows again.
   */
  lastSlice?: { imps: readonly [number, number]; clks: readonly [number, number]; part: Map<string, Part> | undefined };
}

/**
 * Rows held by the edge-hour cache at most (well under 1 KB each: ~35 MB), the oldest hours going
 * first. An hour at 3M events over 30 days is ~5,500 rows; the benchmark's windows keep ~30,000.
 */
const EDGE_ROWS_CACHED = 50_000;

/**
 * Reads rollups for a window, caching decoded documents by (id, version) up to a size
 * (ROLLUPS_CACHED_BYTES): finished hours and days that fit are fetched once per process, and
 * every read re-checks versions so a late event (or another server's write) is never missed.
 *
 * A window's partial edge hours are raw events. A trailing window's start moves every call, so
 * its edge hour used to be aggregated from the events on every read (at 3M events, most of a
 * GetCtr's time). A settled hour's events are now read once, grouped by millisecond, and cached
 * under the versions of that hour's rollups (any event written, flagged or repaired in the hour
 * moves them), which the window's one listing of rollup versions includes: a warm read is that
 * one listing, and the edge is summed from the cache to the millisecond.
 */
/** Every bucket without rollups: one object, so that what is kept by it (rows, a first bucket's edge sum) is found again. */
const EMPTY_BUCKET: SeriesAggregate = emptySeriesAggregate();

export class RollupReader {
  private readonly cache = new Map<string, Decoded>();
  /** Estimated bytes of the documents in `cache`, each and in all. */
  private readonly cacheSizes = new Map<string, number>();
  private cachedBytes = 0;
  private readonly edgeHours = new Map<string, EdgeHour>();
  /** Windows' rollups summed per variant, by the ids and versions summed (see rollupSums). */
  private readonly windowSums = new Map<string, Map<string, RollupAggregate>>();
  /** Windows' rollup sums being made, by the same signature. */
  private readonly summing = new Map<string, Promise<Map<string, RollupAggregate>>>();
  /** Time-series buckets' sums, by variant and bucket bounds, with the decoded documents summed (see bucketSum). */
  private readonly bucketSums = new Map<string, { versions: string; sum: SeriesAggregate }>();
  /** Windows' answers, by their sums and edge parts (read-only for callers, as reads of one filter already share one). */
  private readonly windows = new ComposedCache<Map<string, RollupAggregate>, WindowAggregates>();
  /** A series' first bucket with its raw edge added, by the kept bucket sum and the edge's parts. */
  private readonly edgeBuckets = new ComposedCache<SeriesAggregate, SeriesAggregate>();
  /** Settled hours read into the edge-hour cache (cache misses), for tests and metrics. */
  edgeHourBuilds = 0;

  constructor(
    private readonly c: Collections,
    /** Decoded documents kept at most, by their estimated size (decodedBytes). */
    private readonly maxCachedBytes = ROLLUPS_CACHED_BYTES,
  ) {}

  async window(window: Pick<TimeWindow, "start" | "until">, variant?: string, budget: MaxTime = {}): Promise<WindowAggregates> {
    const ranges = windowRanges(window.start.getTime(), window.until?.getTime());
    const variantFilter = variant === undefined ? {} : { v: variant };
    // The settled edge hours' versions in the same listing: a warm read is this one round trip.
    const edgeHours = settledHours(ranges.raw, Date.now());
    const grains = [
      ...ranges.hours.map(([from, to]) => ({ g: "h", t: timeRange(from, to), ...variantFilter })),
      ...ranges.days.map(([from, to]) => ({ g: "d", t: timeRange(from, to), ...variantFilter })),
      ...[...edgeHours].map((hour) => ({ g: "h", t: new Date(hour), ...variantFilter })),
    ];
    const listing = this.list(grains, budget);
    const [listed, ...edges] = await Promise.all([listing, ...ranges.raw.map(([from, to]) => this.rawRange(from, to, variant, budget, edgeHours, listing))]);
    const versions = listed.filter((d) => !isEdgeListing(d, edgeHours));
    // The rollups' sum, per variant, as summed for the same versions before (the common case: the
    // same window again: no document is needed), else summed now; a copy of it is what the edges
    // are added to. The same sums with the same edge parts (a settled edge's stretch is kept) give
    // the same answer again.
    const sums = await this.rollupSums(versions, budget);
    const parts = edges.flat();
    const known = this.windows.get(sums, parts);
    if (known !== undefined) return known;
    const out: WindowAggregates = { overall: emptyAggregate(), variants: new Map() };
    const into = (v: string) => {
      let agg = out.variants.get(v);
      if (!agg) out.variants.set(v, (agg = emptyAggregate()));
      return agg;
    };
    for (const [v, agg] of sums) mergeAggregate(into(v), agg);
    for (const part of parts) for (const [v, d] of part) addInto(into(v), d);
    for (const agg of out.variants.values()) mergeAggregate(out.overall, agg);
    return this.windows.set(sums, parts, out);
  }

  /**
   * The documents of `versions` summed per variant, remembered under those exact ids and
   * versions (any write, repair or reset moves a version, or the list, and so misses): only a
   * miss needs the documents.
   */
  private async rollupSums(versions: readonly { _id: string; ver: number }[], budget: MaxTime): Promise<Map<string, RollupAggregate>> {
    const signature = versions
      .map((d) => `${d._id}@${d.ver}`)
      .sort()
      .join(";");
    const known = this.windowSums.get(signature);
    if (known !== undefined) {
      this.windowSums.delete(signature);
      this.windowSums.set(signature, known);
      return known;
    }
    // Reads of the same versions at once share one sum (and so one answer).
    const inFlight = this.summing.get(signature);
    if (inFlight !== undefined) {
      try {
        return await inFlight;
      } catch {
        // That call's read failed (its deadline, say): this one reads for itself.
      }
    }
    const summing = this.refresh(versions, budget).then((docs) => {
      const sums = new Map<string, RollupAggregate>();
      for (const { _id } of versions) {
        const d = docs.get(_id);
        if (!d) continue;
        let agg = sums.get(d.v);
        if (!agg) sums.set(d.v, (agg = emptyAggregate()));
        addInto(agg, d);
      }
      this.windowSums.set(signature, sums);
      while (this.windowSums.size > WINDOW_SUMS_CACHED) this.windowSums.delete(this.windowSums.keys().next().value!);
      return sums;
    });
    this.summing.set(signature, summing);
    try {
      return await summing;
    } finally {
      if (this.summing.get(signature) === summing) this.summing.delete(signature);
    }
  }

  /**
   * Per time-series bucket (`starts` are bucket starts on UTC hour boundaries, oldest first):
   * the window's partial first hour from raw events, then every hourly rollup from there on,
   * each added to the bucket its hour falls in. Distinct users are not tracked per bucket.
   */
  async buckets(start: Date, starts: readonly Date[], variant?: string, budget: MaxTime = {}): Promise<SeriesAggregate[]> {
    const hourEdge = Math.ceil(start.getTime() / HOUR_MS) * HOUR_MS;
    const variantFilter = variant === undefined ? {} : { v: variant };
    // Buckets that are whole UTC days (daily series in UTC) are read from daily rollups: a
    // 24th of the documents to read and merge.
    const dayEdge = starts.every((t) => t.getTime() % DAY_MS === 0) ? Math.ceil(hourEdge / DAY_MS) * DAY_MS : Infinity;
    const edgeHours = settledHours([[start.getTime(), hourEdge]], Date.now());
    const listing = this.list(
      [
        { g: "h", t: { $gte: new Date(hourEdge), $lt: new Date(dayEdge === Infinity ? 8.64e15 : dayEdge) }, ...variantFilter },
        { g: "d", t: { $gte: new Date(dayEdge === Infinity ? 8.64e15 : dayEdge) }, ...variantFilter },
        ...[...edgeHours].map((hour) => ({ g: "h", t: new Date(hour), ...variantFilter })),
      ],
      budget,
    );
    const [listed, edge] = await Promise.all([listing, this.rawRange(start.getTime(), hourEdge, variant, budget, edgeHours, listing)]);
    const versions = listed.filter((d) => !isEdgeListing(d, edgeHours));
    const bucketOf = (t: number): number => {
      // The last bucket starting at or before t (binary search).
      let lo = 0;
      let hi = starts.length - 1;
      if (hi < 0 || t < starts[0]!.getTime()) return -1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (starts[mid]!.getTime() <= t) lo = mid;
        else hi = mid - 1;
      }
      return lo;
    };
    // Each bucket's documents; a bucket summed before from the same ids and versions needs none of them.
    const parts = starts.map(() => ({ ids: [] as { _id: string; ver: number }[], signature: "" }));
    for (const d of versions) {
      const k = bucketOf(d.t.getTime());
      if (k >= 0) parts[k]!.ids.push(d);
    }
    const keyOf = (k: number) => `${variant ?? ""}|${starts[k]!.getTime()}|${starts[k + 1]?.getTime() ?? "open"}`;
    const out: (SeriesAggregate | undefined)[] = parts.map((p, k) => {
      if (p.ids.length === 0) return EMPTY_BUCKET;
      p.signature = p.ids.map((d) => `${d._id}@${d.ver}`).join(";");
      return this.knownBucketSum(keyOf(k), p.signature);
    });
    const missing = parts.filter((_, k) => out[k] === undefined).flatMap((p) => p.ids);
    if (missing.length > 0) {
      const docs = await this.refresh(missing, budget);
      requireTimeLeft(budget);
      for (const [k, p] of parts.entries()) {
        if (out[k] !== undefined) continue;
        const sum = emptySeriesAggregate();
        for (const { _id } of p.ids) {
          const d = docs.get(_id);
          if (d) addCountsInto(sum, d);
        }
        out[k] = this.keepBucketSum(keyOf(k), p.signature, sum);
      }
    }
    // The first bucket's raw edge moves with the window's start: added to a copy, never to a kept
    // sum; the copy is kept too, while the start crosses no event (the edge's parts are the same).
    const first = bucketOf(start.getTime());
    const series = out as SeriesAggregate[];
    const edgeParts = edge.flatMap((part) => [...part.values()]);
    if (first >= 0 && edgeParts.length > 0) {
      const kept = series[first]!;
      let sum = this.edgeBuckets.get(kept, edgeParts);
      if (sum === undefined) {
        sum = emptySeriesAggregate();
        addCountsInto(sum, kept);
        for (const d of edgeParts) addCountsInto(sum, d);
        this.edgeBuckets.set(kept, edgeParts, sum);
      }
      series[first] = sum;
    }
    return series;
  }

  /**
   * A bucket's sum of its rollup documents, kept under their ids and versions (`signature`), not
   * the documents themselves: a warm time series adds only what moved, and reads no document.
   * Callers must not change what these return.
   */
  private knownBucketSum(key: string, signature: string): SeriesAggregate | undefined {
    const known = this.bucketSums.get(key);
    if (known === undefined || known.versions !== signature) return undefined;
    this.bucketSums.delete(key);
    this.bucketSums.set(key, known);
    return known.sum;
  }

  private keepBucketSum(key: string, signature: string, sum: SeriesAggregate): SeriesAggregate {
    this.bucketSums.delete(key);
    this.bucketSums.set(key, { versions: signature, sum });
    while (this.bucketSums.size > BUCKET_SUMS_CACHED) this.bucketSums.delete(this.bucketSums.keys().next().value!);
    return sum;
  }

  /**
   * A digest of the versions of every hourly and daily rollup that covers any part of the window
   * (its raw edge hours included). Every event written, counted late, flagged clicked or repaired
   * bumps the version of its hour's and its day's documents, by whichever server did it, and a
   * reset deletes them: an unchanged digest means the window's stored events are unchanged. One
   * index-only read; a trailing window's moving start is not covered (see anyEventBetween).
   */
  async fingerprint(window: Pick<TimeWindow, "start" | "until">, variant?: string, budget: MaxTime = {}): Promise<string> {
    const hStart = floorTo(window.start.getTime(), HOUR_MS);
    const dStart = Math.ceil(hStart / DAY_MS) * DAY_MS;
    const v = variant === undefined ? {} : { v: variant };
    const h = (from: number, to: number) => (from < to ? [{ g: "h", t: timeRange(from, to), ...v }] : []);
    let grains: ListingClause[];
    if (window.until === undefined) {
      grains = [...h(hStart, dStart), { g: "d", t: timeRange(dStart, undefined), ...v }];
    } else {
      const hEnd = Math.ceil(window.until.getTime() / HOUR_MS) * HOUR_MS;
      const dEnd = floorTo(hEnd, DAY_MS);
      grains = dEnd <= dStart ? h(hStart, hEnd) : [...h(hStart, dStart), { g: "d", t: timeRange(dStart, dEnd), ...v }, ...h(dEnd, hEnd)];
    }
    const listed = await this.list(grains, budget);
    const digest = createHash("sha1");
    for (const d of listed.sort((a, b) => (a._id < b._id ? -1 : a._id > b._id ? 1 : 0))) digest.update(`${d._id}@${d.ver};`);
    return `${listed.length}:${digest.digest("base64url")}`;
  }

  /**
   * The rollups matching any of `clauses`, with their versions: an index-only read of {g, t, v,
   * ver} (the ids follow from g, t and v), which never touches the documents themselves; shared
   * with the per-user reader's listing of the same call (rollup-listing.ts).
   */
  private async list(clauses: readonly ListingClause[], budget: MaxTime): Promise<{ _id: string; ver: number; t: Date }[]> {
    const listed = await rollupListing(this.c).list(clauses, budget);
    return listed.map((d) => ({ _id: rollupId(d.g as Grain, d.t.getTime(), d.v), ver: d.ver, t: d.t }));
  }

  /**
   * The events of [from, to) per variant, as parts to add up: settled hours (`settled`, whose
   * rollup versions `listing` holds) from the edge-hour cache, to the millisecond; the rest
   * (recent hours) straight from the events.
   */
  private async rawRange(from: number, to: number, variant: string | undefined, budget: MaxTime, settled: ReadonlySet<number>, listing: Promise<Listed[]>): Promise<Map<string, Part>[]> {
    const pieces: Promise<Map<string, Part>[]>[] = [];
    for (let cursor = from; cursor < to; ) {
      const hour = floorTo(cursor, HOUR_MS);
      const until = Math.min(hour + HOUR_MS, to);
      if (settled.has(hour)) pieces.push(this.settledRange(hour, cursor, until, variant, budget, listing));
      else pieces.push(rawPart(this.c, new Date(cursor), new Date(until), variant, budget).then((part) => [part]));
      cursor = until;
    }
    return (await Promise.all(pieces)).flat();
  }

  /**
   * [from, to) of a settled hour, per variant, from the edge-hour cache: built (one read of the
   * hour's events) or rebuilt when the hour's rollup versions in `listing` moved.
   */
  private async settledRange(hour: number, from: number, to: number, variant: string | undefined, budget: MaxTime, listing: Promise<Listed[]>): Promise<Map<string, Part>[]> {
    const key = `${hour}|${variant ?? ""}`;
    // The versions first, then the events: a write that lands between the two moves the versions
    // again later, so the cache can be behind the events only until the next read.
    const listed = (await listing).filter((d) => isEdgeListing(d, new Set([hour])));
    const signature = listed.map((d) => `${d._id}@${d.ver}`).sort().join(";");
    let cached = this.edgeHours.get(key);
    let own = false;
    if (cached === undefined || cached.signature !== signature || Date.now() - cached.builtAt > EDGE_MAX_AGE_MS) {
      own = true;
      this.edgeHourBuilds++;
      const entry: EdgeHour = { signature, builtAt: Date.now(), size: 0, rows: rawRows(this.c, new Date(hour), new Date(hour + HOUR_MS), 1, variant, budget).then(byOffset) };
      cached = entry;
      entry.rows.then(
        (rows) => {
          entry.size = rows.imps.length + rows.clks.length;
          this.trimEdgeHours();
        },
        // A failed read (a deadline, an outage) is not kept.
        () => this.edgeHours.get(key) === entry && this.edgeHours.delete(key),
      );
      this.edgeHours.delete(key);
      this.edgeHours.set(key, entry);
      this.trimEdgeHours();
    }
    let rows: RawRows;
    try {
      rows = await cached.rows;
    } catch (error) {
      // Another call's read, stopped by that call's deadline: this call reads for itself.
      if (own) throw error;
      return this.settledRange(hour, from, to, variant, budget, listing);
    }
    const [a, b] = [from - hour, to - hour];
    const imps = rowRange(rows.imps, a, b);
    const clks = rowRange(rows.clks, a, b);
    const last = cached.lastSlice;
    let part: Map<string, Part> | undefined;
    if (last !== undefined && sameRange(last.imps, imps) && sameRange(last.clks, clks)) part = last.part;
    else {
      part = slicesOf({ imps: rows.imps.slice(...imps), clks: rows.clks.slice(...clks), numbers: rows.numbers }, () => 0).get(0);
      cached.lastSlice = { imps, clks, part };
    }
    return part === undefined ? [] : [part];
  }

  /** Oldest-inserted hours go first, past EDGE_HOURS_CACHED hours or EDGE_ROWS_CACHED rows (the newest stays). */
  private trimEdgeHours(): void {
    let rows = 0;
    for (const e of this.edgeHours.values()) rows += e.size;
    while (this.edgeHours.size > 1 && (this.edgeHours.size > EDGE_HOURS_CACHED || rows > EDGE_ROWS_CACHED)) {
      const oldest = this.edgeHours.keys().next().value!;
      rows -= this.edgeHours.get(oldest)!.size;
      this.edgeHours.delete(oldest);
    }
  }

  /**
   * These documents at these versions, for the caller's use (the cache may let go of some before
   * the caller is done): cached, or read and decoded one at a time (a decoded document is ~3x
   * its BSON; a month of hours at 3M events is 1,400 of them).
   */
  private async refresh(versions: readonly { _id: string; ver: number }[], budget: MaxTime): Promise<Map<string, Decoded>> {
    const docs = new Map<string, Decoded>();
    const stale: string[] = [];
    for (const { _id, ver } of versions) {
      const d = this.cache.get(_id);
      if (d?.ver === Number(ver)) {
        docs.set(_id, d);
        // Used: the newest again (the cache lets the least recently used go first).
        this.cache.delete(_id);
        this.cache.set(_id, d);
      } else stale.push(_id);
    }
    if (stale.length === 0) return docs;
    // Not the applied-marker list (bookkeeping of the writers, and the bulk of a busy document),
    // nor the user registers of older versions.
    // ~64 documents a batch: 15–22 KB of BSON each at 3M events.
    for await (const doc of rollupCollection(this.c).find({ _id: { $in: stale } }, { projection: { ap: 0, u: 0 }, ...timeLimit(budget), ...batchesOf(64) })) {
      const d = decode(doc);
      docs.set(doc._id, d);
      this.remember(doc._id, d);
    }
    return docs;
  }

  private remember(id: string, d: Decoded): void {
    this.forget(id);
    const bytes = decodedBytes(d);
    this.cache.set(id, d);
    this.cacheSizes.set(id, bytes);
    this.cachedBytes += bytes;
    // Least recently used first: a Map iterates in insertion order, and a use re-inserts.
    while (this.cachedBytes > this.maxCachedBytes && this.cache.size > 1) this.forget(this.cache.keys().next().value!);
  }

  private forget(id: string): void {
    this.cachedBytes -= this.cacheSizes.get(id) ?? 0;
    this.cacheSizes.delete(id);
    this.cache.delete(id);
  }

  clear(): void {
    this.cache.clear();
    this.cacheSizes.clear();
    this.cachedBytes = 0;
    this.summing.clear();
    this.edgeHours.clear();
    this.windowSums.clear();
    this.bucketSums.clear();
  }
}

/** A listed rollup version: its id, version and hour or day. */
type Listed = { _id: string; ver: number; t: Date };

/** Whether a listed version is of one of these edge hours' hourly rollups (listed for the edge cache, not summed). */
const isEdgeListing = (d: Listed, hours: ReadonlySet<number>) => d._id.startsWith("h|") && hours.has(d.t.getTime());
