/**
 * Listing rollup versions (`rollups` documents' grain, start, variant and version: an index-only
 * read). A window's rollup reader and its per-user reader list the same collection for the same
 * window (GetVariantComparison asks both at once): listings asked in the same turn are sent to the
 * engine as one find, and each asker gets the documents its own clauses match.
 */
import type { Document } from "mongodb";
import { ONE_ROUND_TRIP, type Collections } from "../schema/documents.js";
import { rollupCollection } from "../schema/rollup-documents.js";
import type { MetricsFilter } from "./metrics-filter.js";

/** One listed document. */
export interface ListedVersion {
  g: string;
  t: Date;
  v: string;
  ver: number;
}

/**
 * A clause of a listing, as the readers write them: a grain, a start (exact, or a range with
 * `$gte` and maybe `$lt`) and maybe a variant.
 */
export interface ListingClause {
  g: string;
  t: Date | { $gte: Date; $lt?: Date };
  v?: string;
}

interface Asked {
  clauses: readonly ListingClause[];
  maxTimeMS: number | undefined;
  resolve: (rows: ListedVersion[]) => void;
  reject: (error: unknown) => void;
}

const listers = new WeakMap<Collections, RollupListing>();

/** The listing shared by every reader of these collections. */
export function rollupListing(c: Collections): RollupListing {
  let l = listers.get(c);
  if (!l) listers.set(c, (l = new RollupListing(c)));
  return l;
}

export class RollupListing {
  private asked: Asked[] = [];
  /** Finds sent (for tests). */
  sent = 0;

  constructor(private readonly c: Collections) {}

  /** The documents matching any of `clauses`; sent with whatever else is asked before this turn ends. */
  list(clauses: readonly ListingClause[], budget: Pick<MetricsFilter, "maxTimeMS">): Promise<ListedVersion[]> {
    if (clauses.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.asked.push({ clauses, maxTimeMS: budget.maxTimeMS, resolve, reject });
      if (this.asked.length === 1) queueMicrotask(() => void this.send());
    });
  }

  private async send(): Promise<void> {
    const asked = this.asked;
    this.asked = [];
    // The most patient asker's limit: the others' calls end at their own deadlines anyway.
    const limits = asked.map((a) => a.maxTimeMS);
    const maxTimeMS = limits.some((m) => m === undefined) ? undefined : Math.max(...(limits as number[]));
    try {
      this.sent++;
      // Raw documents, read by listedVersion: the driver's general decoding was most of a warm
      // GetTopQueries' own CPU (a week's 337 listed hours: 0.9 ms of 3.8 per call).
      const rows = (await rollupCollection(this.c)
        .find({ $or: asked.flatMap((a) => a.clauses) as Document[] }, { projection: { _id: 0, g: 1, t: 1, v: 1, ver: 1 }, raw: true, ...(maxTimeMS === undefined ? {} : { maxTimeMS }), ...ONE_ROUND_TRIP })
        .toArray()) as unknown as Uint8Array[];
      const listed = rows.map(listedVersion);
      for (const a of asked) a.resolve(asked.length === 1 ? listed : listed.filter((d) => a.clauses.some((clause) => matches(clause, d))));
    } catch (error) {
      for (const a of asked) a.reject(error);
    }
  }
}

/** Whether a listed document matches a clause, as the engine matches it. */
export function matches(clause: ListingClause, d: ListedVersion): boolean {
  if (clause.g !== d.g || (clause.v !== undefined && clause.v !== d.v)) return false;
  const t = d.t.getTime();
  if (clause.t instanceof Date) return t === clause.t.getTime();
  return t >= clause.t.$gte.getTime() && (clause.t.$lt === undefined || t < clause.t.$lt.getTime());
}

const utf8 = new TextDecoder();

/** The fields a listing keeps, by their BSON names' bytes: g, t, v (one byte) and ver. */
const enum Field {
  Other,
  G,
  T,
  V,
  Ver,
}

function fieldAt(bytes: Uint8Array, start: number, end: number): Field {
  const length = end - start;
  if (length === 1) {
    const c = bytes[start];
    return c === 0x67 ? Field.G : c === 0x74 ? Field.T : c === 0x76 ? Field.V : Field.Other;
  }
  return length === 3 && bytes[start] === 0x76 && bytes[start + 1] === 0x65 && bytes[start + 2] === 0x72 ? Field.Ver : Field.Other;
}

/** A BSON string's bytes: ASCII ones (grains, most variants) without the TextDecoder's cost per call. */
function stringAt(bytes: Uint8Array, start: number, end: number): string {
  if (end - start > 32) return utf8.decode(bytes.subarray(start, end));
  let ascii = "";
  for (let k = start; k < end; k++) {
    const c = bytes[k]!;
    if (c >= 0x80) return utf8.decode(bytes.subarray(start, end));
    ascii += String.fromCharCode(c);
  }
  return ascii;
}

/**
 * One listed document from its BSON: the four fields the projection keeps (strings g and v, the
 * date t, the number ver as an int32, int64 or double); anything else is skipped by its size.
 * (Every warm read decodes its window's listing — a week's is 337 documents — so fields are told
 * by their names' bytes and ASCII strings are built directly: ~3.5x less CPU than decoding both.)
 */
export function listedVersion(bytes: Uint8Array): ListedVersion {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Partial<ListedVersion> = {};
  let i = 4;
  const end = view.getInt32(0, true) - 1;
  while (i < end) {
    const type = bytes[i++]!;
    const nameStart = i;
    while (bytes[i] !== 0) i++;
    const field = fieldAt(bytes, nameStart, i++);
    let size: number;
    let value: string | number | undefined;
    switch (type) {
      case 0x02: // string: int32 length (with its NUL), bytes
        size = 4 + view.getInt32(i, true);
        if (field === Field.G || field === Field.V) value = stringAt(bytes, i + 4, i + size - 1);
        break;
      case 0x09: // UTC datetime: int64 ms (exact as a double below 2^53 ms, ~285,000 years)
      case 0x12: // int64
        size = 8;
        value = view.getInt32(i + 4, true) * 4_294_967_296 + view.getUint32(i, true);
        break;
      case 0x10:
        size = 4;
        value = view.getInt32(i, true);
        break;
      case 0x01:
        size = 8;
        value = view.getFloat64(i, true);
        break;
      case 0x03: // an embedded document or an array: its own int32 size
      case 0x04:
        size = view.getInt32(i, true);
        break;
      case 0x08:
        size = 1;
        break;
      case 0x0a:
        size = 0;
        break;
      default:
        throw new Error(`rollup listing: unexpected BSON type 0x${type.toString(16)} in field "${utf8.decode(bytes.subarray(nameStart, i - 1))}"`);
    }
    if (field === Field.G) out.g = value as string;
    else if (field === Field.V) out.v = value as string;
    else if (field === Field.T && type === 0x09) out.t = new Date(value as number);
    else if (field === Field.Ver) out.ver = Number(value);
    i += size;
  }
  if (out.g === undefined || out.t === undefined || out.v === undefined) throw new Error("rollup listing: a document without its grain, start or variant");
  return { g: out.g, t: out.t, v: out.v, ver: out.ver ?? Number.NaN };
}
