/**
 * The first, partial hour of a top-queries window (read/query-tables.ts): a settled hour's
 * searches and unlinked clicks read once and kept, so any stretch of it is counted per query
 * without reading the events again.
 */
import type { Document } from "mongodb";
import type { QueryPositions, QueryRow } from "../../core/top-queries.js";
import { lowerBound } from "../../core/lower-bound.js";
import { ONE_ROUND_TRIP, type Collections } from "../schema/documents.js";
import { timeLimit, type MetricsFilter } from "./metrics-filter.js";
import type { RawRetention } from "../schema/retention.js";
import { HOUR_MS, RESULTS_COUNT_CAP } from "../schema/rollup-documents.js";

/** Rebuilt at least this often whatever the versions say. */
const EDGE_MAX_AGE_MS = 10 * 60_000;
/** Hours (and variant filters) kept: a few windows' first hours. */
const EDGE_HOURS_CACHED = 16;

/**
 * One search or unlinked click of an edge hour, as queryRows (breakdowns.ts) counts it: offset in
 * the hour, query, and what it adds. A search carries its linked clicks' summary (`c` clicks,
 * `rk` their rank sum, `sk` at shown ranks, `o` outside its results) and its first click's rank
 * `f` (core/click-attribution.ts); an unlinked click adds `c` 1 at rank `rk`.
 */
interface EdgeEvent {
  k: number;
  q: string;
  /** 1: a search (`s` clicked, `rc` results); 0: an unlinked click. */
  i: number;
  s: number;
  rc: number;
  c: number;
  rk: number;
  sk: number;
  o: number;
  f: number | null;
}

/**
 * The searches and clicks of a settled hour, read once (one command) and cached under the
 * versions of that hour's rollups (every event written, flagged or repaired in the hour moves
 * them), sorted by time: any stretch of the hour is then counted per query here, to the
 * millisecond, as queryRows counts it from the events.
 */
export class EdgeQueries {
  private readonly hours = new Map<string, { signature: string; builtAt: number; events: Promise<EdgeEvent[]> }>();
  /** Hours read (cache misses), for tests. */
  builds = 0;

  constructor(
    private readonly c: Collections,
    private readonly retention: RawRetention,
  ) {}

  async rows(hour: number, from: number, to: number, variant: string | undefined, versions: readonly { t: Date; v: string; ver: unknown }[], budget: MetricsFilter): Promise<QueryRow[]> {
    this.retention.require(new Date(from), "window-edge");
    const key = `${hour}|${variant ?? ""}`;
    const signature = versions.map((d) => `${d.v}@${String(d.ver)}`).sort().join(";");
    let cached = this.hours.get(key);
    let own = false;
    if (cached === undefined || cached.signature !== signature || Date.now() - cached.builtAt > EDGE_MAX_AGE_MS) {
      own = true;
      this.builds++;
      const entry = { signature, builtAt: Date.now(), events: edgeEvents(this.c, hour, variant, budget) };
      cached = entry;
      // A failed read (a deadline, an outage) is not kept.
      entry.events.catch(() => this.hours.get(key) === entry && this.hours.delete(key));
      this.hours.delete(key);
      this.hours.set(key, entry);
      while (this.hours.size > EDGE_HOURS_CACHED) this.hours.delete(this.hours.keys().next().value!);
    }
    let events: EdgeEvent[];
    try {
      events = await cached.events;
    } catch (error) {
      // Another call's read, stopped by that call's deadline: this call reads for itself.
      if (own) throw error;
      return this.rows(hour, from, to, variant, versions, budget);
    }
    // A trailing window's start moves by milliseconds but crosses an event only now and then:
    // the same events of the hour give the same rows (the same array, which callers keep by).
    const offset = (i: number) => events[i]!.k;
    const [first, end] = [lowerBound(events.length, offset, from - hour), lowerBound(events.length, offset, to - hour)];
    const known = this.stretches.get(events);
    if (known !== undefined && known.first === first && known.end === end) return known.rows;
    const rows = edgeQueryRows(events, first, end);
    this.stretches.set(events, { first, end, rows });
    return rows;
  }

  /** The last stretch counted of each cached hour's events. */
  private readonly stretches = new WeakMap<readonly EdgeEvent[], { first: number; end: number; rows: QueryRow[] }>();
}


/** The hour's searches and unlinked clicks (of `variant`), by time. */
async function edgeEvents(c: Collections, hour: number, variant: string | undefined, budget: MetricsFilter): Promise<EdgeEvent[]> {
  const m: Document = { timestamp: { $gte: new Date(hour), $lt: new Date(hour + HOUR_MS) }, ...(variant === undefined ? {} : { variant }) };
  const offset = { $subtract: ["$timestamp", new Date(hour)] };
  const rows = await c.impressions
    .aggregate<EdgeEvent>(
      [
        { $match: m },
        {
          $project: {
            _id: 0,
            k: offset,
            q: "$query_normalized",
            i: { $literal: 1 },
            s: { $cond: [{ $eq: ["$clicked", true] }, 1, 0] },
            rc: "$results_count",
            c: { $ifNull: ["$lk.n", 0] },
            rk: { $ifNull: ["$lk.s", 0] },
            sk: { $sum: "$lk.k.n" },
            o: { $ifNull: ["$lk.o", 0] },
            f: { $ifNull: ["$fc_r", null] },
          },
        },
        {
          $unionWith: {
            coll: c.clicks.collectionName,
            pipeline: [
              { $match: { ...m, impression_id: { $exists: false } } },
              { $project: { _id: 0, k: offset, q: "$query_normalized", i: { $literal: 0 }, s: { $literal: 0 }, rc: { $literal: 0 }, c: { $literal: 1 }, rk: "$rank", sk: { $literal: 0 }, o: { $literal: 0 }, f: { $literal: null } } },
            ],
          },
        },
      ],
      // At most an hour of events by time (as rollup-raw-parts.ts reads an hour).
      { hint: "timestamp_1", ...timeLimit(budget), ...ONE_ROUND_TRIP },
    )
    .toArray();
  const events = rows.map((r) => ({ k: Number(r.k), q: String(r.q), i: Number(r.i), s: Number(r.s), rc: Number(r.rc), c: Number(r.c), rk: Number(r.rk), sk: Number(r.sk), o: Number(r.o), f: r.f === null || r.f === undefined ? null : Number(r.f) }));
  return events.sort((a, b) => a.k - b.k);
}

/** Per query, the events [first, end) (by time): what queryRows (breakdowns.ts) answers for that stretch. */
function edgeQueryRows(events: readonly EdgeEvent[], first: number, end: number): QueryRow[] {
  const rows = new Map<string, QueryRow & { positions: QueryPositions }>();
  const add = (into: Map<number, number>, key: number) => into.set(key, (into.get(key) ?? 0) + 1);
  for (let j = first; j < end; j++) {
    const e = events[j]!;
    let row = rows.get(e.q);
    if (!row) rows.set(e.q, (row = { query: e.q, searches: 0, clicks: 0, searchesWithClicks: 0, noResults: 0, rankSum: 0, clicksOutsideResults: 0, positions: { resultsCounts: new Map(), shownClicks: 0, firstClickRanks: new Map() } }));
    row.clicks += e.c;
    row.rankSum += e.rk;
    if (e.i !== 1) continue;
    row.searches++;
    row.searchesWithClicks += e.s;
    row.clicksOutsideResults += e.o;
    row.positions.shownClicks += e.sk;
    if (e.rc === 0) row.noResults++;
    else {
      add(row.positions.resultsCounts, Math.min(e.rc, RESULTS_COUNT_CAP));
      if (e.f !== null) add(row.positions.firstClickRanks, e.f);
    }
  }
  // By key, as the query tables and queryRows give them.
  const sorted = (h: Map<number, number>) => new Map([...h].sort((x, y) => x[0] - y[0]));
  for (const row of rows.values()) Object.assign(row.positions, { resultsCounts: sorted(row.positions.resultsCounts), firstClickRanks: sorted(row.positions.firstClickRanks) });
  return [...rows.values()];
}
