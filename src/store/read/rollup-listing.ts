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
      const rows = await rollupCollection(this.c)
        .find({ $or: asked.flatMap((a) => a.clauses) as Document[] }, { projection: { _id: 0, g: 1, t: 1, v: 1, ver: 1 }, ...(maxTimeMS === undefined ? {} : { maxTimeMS }), ...ONE_ROUND_TRIP })
        .toArray();
      const listed = rows.map((d): ListedVersion => ({ g: d.g, t: d.t, v: d.v, ver: Number(d.ver) }));
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
