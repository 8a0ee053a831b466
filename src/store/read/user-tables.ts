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
 * click, reciprocal ranks), and the coarse latency histogram as (row, bucket, searches) triples.
 */
export interface UserTable {
  ids: Uint32Array;
  rows: Float64Array;
  latRow: Uint32Array;
  latKey: Int16Array;
  latCount: Uint32Array;
}

export const tableBytes = (t: UserTable) => t.ids.byteLength + t.rows.byteLength + t.latRow.byteLength + t.latKey.byteLength + t.latCount.byteLength;

/** [version 1, users, latency triples] then the arrays, each at an 8-byte boundary. */
export function encode(t: UserTable): Binary {
  const n = t.ids.length;
  const m = t.latRow.length;
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
  new Uint32Array(buffer, o, m).set(t.latRow);
  o += sizes[3]!;
  new Int16Array(buffer, o, m).set(t.latKey);
  o += sizes[4]!;
  new Uint32Array(buffer, o, m).set(t.latCount);
  return new Binary(new Uint8Array(buffer));
}

export function decode(b: Binary): UserTable {
  // A copy at offset 0, so every array is aligned.
  const bytes = new Uint8Array(b.buffer.byteLength);
  bytes.set(b.buffer);
  const buffer = bytes.buffer;
  const [version, n, m] = new Uint32Array(buffer, 0, 3);
  if (version !== 1) throw new Error(`user rollup table of unknown version ${version}`);
  const pad = (x: number) => Math.ceil(x / 8) * 8;
  let o = 16;
  const ids = new Uint32Array(buffer, o, n!);
  o += pad(n! * 4);
  const rows = new Float64Array(buffer, o, n! * WIDTH);
  o += n! * WIDTH * 8;
  const latRow = new Uint32Array(buffer, o, m!);
  o += pad(m! * 4);
  const latKey = new Int16Array(buffer, o, m!);
  o += pad(m! * 2);
  const latCount = new Uint32Array(buffer, o, m!);
  return { ids, rows, latRow, latKey, latCount };
}

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
    const latRow: number[] = [];
    const latKey: number[] = [];
    const latCount: number[] = [];
    numbers.forEach((n, r) => {
      const u = this.users.get(n)!;
      rows.set(u.row, r * WIDTH);
      for (const [k, count] of [...u.lat].sort((a, b) => a[0] - b[0])) {
        latRow.push(r);
        latKey.push(k);
        latCount.push(count);
      }
    });
    return { ids: Uint32Array.from(numbers), rows, latRow: Uint32Array.from(latRow), latKey: Int16Array.from(latKey), latCount: Uint32Array.from(latCount) };
  }
}
