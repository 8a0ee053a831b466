/**
 * Per-user tables (read/user-rollups.ts): one period's users of one variant with their totals, as
 * stored in `user_rollups` (packed in a Binary) and as built from raw rows.
 */
import { Binary, type Collection } from "mongodb";
import type { Collections } from "../schema/documents.js";
import type { MetricsFilter } from "./metrics-filter.js";

export const COLLECTION = "user_rollups";
/** The fields of a user's row, in order. */
export const WIDTH = 6;
export const [I, C, S, N, F, R] = [0, 1, 2, 3, 4, 5];

export type Grain = "h" | "d";
export type Budget = Pick<MetricsFilter, "maxTimeMS">;

export interface UserRollupDocument {
  _id: string;
  g: Grain;
  t: Date;
  v: string;
  /** The `ver` of the period's document in `rollups` this table was built at. */
  bv: number;
  /** Users in the table. */
  n: number;
  /** The packed table (see encode). */
  data: Binary;
}

export function userRollups(c: Collections): Collection<UserRollupDocument> {
  return c.db.collection<UserRollupDocument>(COLLECTION);
}

/**
 * One period's users of one variant: their numbers (ascending), WIDTH totals per user (row-major:
 * searches, clicks, searches with a click, no-result searches, searches with results and a first
 * click, reciprocal ranks), and the coarse latency histogram: row r's (bucket, searches) entries
 * are [latStart[r], latStart[r + 1]) of latKey and latCount. (Stored as (row, bucket, searches)
 * triples; in memory the row is implied and counts take 16 bits when they fit: tables are cached
 * by the hundred thousand users, and a window's merge keeps them.)
 */
export interface UserTable {
  ids: Uint32Array;
  rows: Float64Array;
  latStart: Uint32Array;
  latKey: Int16Array;
  latCount: Uint16Array | Uint32Array;
}

export const tableBytes = (t: UserTable) => t.ids.byteLength + t.rows.byteLength + t.latStart.byteLength + t.latKey.byteLength + t.latCount.byteLength;

/** Counts in 16 bits when every one fits. */
const compactCounts = (counts: ArrayLike<number>): Uint16Array | Uint32Array => (Array.prototype.some.call(counts, (c: number) => c > 0xffff) ? Uint32Array.from(counts) : Uint16Array.from(counts));

/** Row offsets of (row, bucket, searches) triples sorted by row: row r's are [start[r], start[r + 1]). */
function rowStarts(latRow: ArrayLike<number>, users: number): Uint32Array {
  const start = new Uint32Array(users + 1);
  for (let e = 0; e < latRow.length; e++) start[latRow[e]! + 1]!++;
  for (let r = 0; r < users; r++) start[r + 1]! += start[r]!;
  return start;
}

/** [version 1, users, latency triples] then the arrays, each at an 8-byte boundary. */
export function encode(t: UserTable): Binary {
  const n = t.ids.length;
  const m = t.latKey.length;
  const pad = (x: number) => Math.ceil(x / 8) * 8;
  const sizes = [16, pad(n * 4), n * WIDTH * 8, pad(m * 4), pad(m * 2), pad(m * 4)];
  const buffer = new ArrayBuffer(sizes.reduce((a, b) => a + b, 0));
  const header = new Uint32Array(buffer, 0, 4);
  header.set([1, n, m, 0]);
  let o = 16;
  new Uint32Array(buffer, o, n).set(t.ids);
  o += sizes[1]!;
  new Float64Array(buffer, o, n * WIDTH).set(t.rows);
  o += sizes[2]!;
  const latRow = new Uint32Array(buffer, o, m);
  for (let r = 0; r < n; r++) latRow.fill(r, t.latStart[r]!, t.latStart[r + 1]!);
  o += sizes[3]!;
  new Int16Array(buffer, o, m).set(t.latKey);
  o += sizes[4]!;
  new Uint32Array(buffer, o, m).set(t.latCount);
  return new Binary(new Uint8Array(buffer));
}

export function decode(b: Binary): UserTable {
  const bytes = b.buffer;
  // Views need aligned offsets: a copy at offset 0 when the reply's isn't 8-aligned.
  const aligned = bytes.byteOffset % 8 === 0 ? bytes : Uint8Array.from(bytes);
  const at = aligned.byteOffset;
  const [version, n, m] = new Uint32Array(aligned.buffer, at, 3);
  if (version !== 1) throw new Error(`user rollup table of unknown version ${version}`);
  const pad = (x: number) => Math.ceil(x / 8) * 8;
  let o = at + 16;
  // Copies: the table outlives the reply's buffer (which may be shared with others).
  const ids = new Uint32Array(aligned.buffer, o, n!).slice();
  o += pad(n! * 4);
  const rows = new Float64Array(aligned.buffer, o, n! * WIDTH).slice();
  o += n! * WIDTH * 8;
  const latRow = new Uint32Array(aligned.buffer, o, m!);
  o += pad(m! * 4);
  const latKey = new Int16Array(aligned.buffer, o, m!);
  o += pad(m! * 2);
  const latCount = new Uint32Array(aligned.buffer, o, m!);
  for (let e = 1; e < m!; e++) if (latRow[e]! < latRow[e - 1]!) throw new Error("user rollup table's latency triples are not sorted by row");
  return { ids, rows, latStart: rowStarts(latRow, n!), latKey: latKey.slice(), latCount: compactCounts(latCount) };
}

export const emptyTable = (): UserTable => ({ ids: new Uint32Array(0), rows: new Float64Array(0), latStart: new Uint32Array(1), latKey: new Int16Array(0), latCount: new Uint16Array(0) });

/** Builds tables from raw rows: per user, the six totals and (bucket -> searches). */
export class TableBuilder {
  private readonly users = new Map<number, { row: number[]; lat: Map<number, number> }>();

  user(n: number) {
    let u = this.users.get(n);
    if (!u) this.users.set(n, (u = { row: new Array<number>(WIDTH).fill(0), lat: new Map() }));
    return u;
  }

  build(): UserTable {
    const numbers = [...this.users.keys()].sort((a, b) => a - b);
    const rows = new Float64Array(numbers.length * WIDTH);
    const latStart = new Uint32Array(numbers.length + 1);
    const latKey: number[] = [];
    const latCount: number[] = [];
    numbers.forEach((n, r) => {
      const u = this.users.get(n)!;
      rows.set(u.row, r * WIDTH);
      for (const [k, count] of [...u.lat].sort((a, b) => a[0] - b[0])) {
        latKey.push(k);
        latCount.push(count);
      }
      latStart[r + 1] = latKey.length;
    });
    return { ids: Uint32Array.from(numbers), rows, latStart, latKey: Int16Array.from(latKey), latCount: compactCounts(latCount) };
  }
}
