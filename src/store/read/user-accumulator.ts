/**
 * Summing per-user tables over a window (read/user-rollups.ts) into each variant's users' totals.
 */
import { COARSE_LATENCY_MIN, COARSE_LATENCY_STEPS, coarseShareBelow, type UserTotals } from "../../core/user-totals.js";
import { DAY_MS } from "../schema/rollup-documents.js";
import { C, F, I, N, R, S, WIDTH, type Grain, type UserTable } from "./user-tables.js";

/**
 * Sums tables into one set of users per variant, keeping what the bot rule needs (searches per
 * user per UTC day) and the latency triples. An accumulator made `over` another (the cached
 * settled part of a window) adds a call's live hours and edges without touching it.
 */
export class Accumulator {
  private readonly index = new Map<number, number>();
  /** Users (numbers) by row, `n` of them (the arrays have room for more). */
  private ids: Uint32Array;
  private n: number;
  /** The WIDTH totals, one column per field (what the comparison reads), row by row as `ids`. */
  private cols: Float64Array[];
  /** Most searches in one whole day from daily tables; the base's until a daily table is added here. */
  private dayMax: Float64Array;
  private ownDayMax: boolean;
  /** Days made of hours and edges (this accumulator's own): day start -> row -> searches. */
  private readonly partialDays = new Map<number, Map<number, number>>();
  /** Latency entries of the tables added here: their rows' rows in this accumulator (`row`) and entries. */
  private readonly latency: { row: Uint32Array; start: Uint32Array; key: Int16Array; count: Uint16Array | Uint32Array }[] = [];
  /** Searches below and in the last coarse bucket asked, per row (see below). */
  private lastSplit: { bucket: number; under: Float64Array; at: Float64Array } | undefined;

  /**
   * Made `over` a base (a window's cached settled part), it starts from copies of the base's
   * columns (ready: no per-call conversion of rows) and adds only the call's live hours and edges.
   */
  constructor(private readonly base?: Accumulator) {
    const room = base ? base.n + 1024 : 1024;
    const copy = (a: Float64Array | Uint32Array, length: number) => {
      const out = new (a.constructor as Float64ArrayConstructor)(room);
      out.set(a.subarray(0, length));
      return out;
    };
    this.n = base ? base.n : 0;
    this.ids = base ? (copy(base.ids, base.n) as unknown as Uint32Array) : new Uint32Array(room);
    this.cols = base ? base.cols.map((c) => copy(c, base.n) as Float64Array) : Array.from({ length: WIDTH }, () => new Float64Array(room));
    this.dayMax = base ? base.dayMax : new Float64Array(room);
    this.ownDayMax = base === undefined;
  }

  get size(): number {
    return this.n;
  }

  private grow(): void {
    const room = this.ids.length * 2;
    const grown = <T extends Float64Array | Uint32Array>(a: T): T => {
      const out = new (a.constructor as Float64ArrayConstructor)(room) as unknown as T;
      out.set(a);
      return out;
    };
    this.ids = grown(this.ids);
    this.cols = this.cols.map(grown);
    if (this.ownDayMax) this.dayMax = grown(this.dayMax);
  }

  private row(n: number): number {
    let r = this.index.get(n) ?? this.base?.index.get(n);
    if (r === undefined) {
      r = this.n++;
      if (r >= this.ids.length) this.grow();
      this.index.set(n, r);
      this.ids[r] = n;
    }
    return r;
  }

  /** Adds a table of grain `g` starting at `t` (an edge or a minute counts as part of its day). */
  add(table: UserTable, g: Grain | "part", t: number): void {
    const map = new Uint32Array(table.ids.length);
    let partial: Map<number, number> | undefined;
    if (g !== "d") {
      const day = Math.floor(t / DAY_MS) * DAY_MS;
      partial = this.partialDays.get(day);
      if (!partial) this.partialDays.set(day, (partial = new Map()));
    } else if (!this.ownDayMax) {
      const own = new Float64Array(this.ids.length);
      own.set(this.dayMax.subarray(0, Math.min(this.dayMax.length, own.length)));
      this.dayMax = own;
      this.ownDayMax = true;
    }
    for (let j = 0; j < table.ids.length; j++) {
      const r = this.row(table.ids[j]!);
      map[j] = r;
      const p = j * WIDTH;
      const cols = this.cols;
      for (let k = 0; k < WIDTH; k++) cols[k]![r]! += table.rows[p + k]!;
      const searches = table.rows[p + I]!;
      if (partial === undefined) {
        if (searches > this.dayMax[r]!) this.dayMax[r] = searches;
      } else partial.set(r, (partial.get(r) ?? 0) + searches);
    }
    if (table.latKey.length > 0) this.latency.push({ row: map, start: table.latStart, key: table.latKey, count: table.latCount });
    this.lastSplit = undefined;
  }

  /**
   * Per row (this accumulator's numbering, `size` rows), searches faster than `ms`: those in
   * coarse buckets below the one holding `ms`, plus its share of that bucket (coarseShareBelow).
   * The two per-bucket vectors are kept for the last bucket asked: the p95 moves a little with
   * every call (the window's edge), its bucket (9% wide) rarely, so a call costs one pass over the
   * users, not over every latency triple.
   */
  private below(ms: number, size: number): Float64Array {
    const position = ms > 0 ? Math.log2(ms) * COARSE_LATENCY_STEPS : -Infinity;
    const bucket = Math.max(COARSE_LATENCY_MIN, Math.floor(position));
    const share = bucket === COARSE_LATENCY_MIN ? coarseShareBelow(COARSE_LATENCY_MIN, ms) : position - bucket;
    const { under, at } = this.split(bucket);
    const out = new Float64Array(size);
    const n = Math.min(size, under.length);
    for (let r = 0; r < n; r++) out[r] = under[r]! + share * at[r]!;
    return out;
  }

  /** Per row, searches in coarse buckets below `bucket`, and in `bucket` (cached for the last bucket). */
  private split(bucket: number): { under: Float64Array; at: Float64Array } {
    if (this.lastSplit?.bucket !== bucket) {
      const base = this.base?.split(bucket);
      const under = new Float64Array(this.n);
      const at = new Float64Array(this.n);
      if (base) {
        under.set(base.under.subarray(0, Math.min(base.under.length, under.length)));
        at.set(base.at.subarray(0, Math.min(base.at.length, at.length)));
      }
      for (const { row, start, key, count } of this.latency) {
        for (let j = 0; j < row.length; j++) {
          const r = row[j]!;
          for (let e = start[j]!; e < start[j + 1]!; e++) {
            const k = key[e]!;
            if (k < bucket) under[r]! += count[e]!;
            else if (k === bucket) at[r]! += count[e]!;
          }
        }
      }
      this.lastSplit = { bucket, under, at };
    }
    return this.lastSplit;
  }

  /** Searches per user per UTC day, summed over this accumulator's parts and its base's. */
  private partialDaysAll(): Map<number, Map<number, number>> {
    const base = this.base?.partialDaysAll() ?? new Map<number, Map<number, number>>();
    if (this.partialDays.size === 0) return base;
    const out = new Map(base);
    for (const [day, own] of this.partialDays) {
      const merged = new Map(base.get(day) ?? []);
      for (const [r, n] of own) merged.set(r, (merged.get(r) ?? 0) + n);
      out.set(day, merged);
    }
    return out;
  }

  totals(): UserTotals {
    const n = this.n;
    let maxDay: Float64Array | undefined;
    // Only the bot rule reads it: merged on first use.
    const maxDaySearches = () => {
      if (maxDay === undefined) {
        maxDay = new Float64Array(n);
        maxDay.set(this.dayMax.subarray(0, Math.min(n, this.dayMax.length)));
        for (const m of this.partialDaysAll().values()) for (const [r, searches] of m) if (searches > maxDay[r]!) maxDay[r] = searches;
      }
      return maxDay;
    };
    const col = (k: number) => this.cols[k]!.subarray(0, n);
    return {
      ids: this.ids.subarray(0, n),
      impressions: col(I),
      clicks: col(C),
      searchesWithClicks: col(S),
      noResults: col(N),
      firstClicked: col(F),
      reciprocalRanks: col(R),
      get maxDaySearches() {
        return maxDaySearches();
      },
      latencyBelow: (ms) => this.below(ms, n),
    };
  }
}
