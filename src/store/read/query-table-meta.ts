/**
 * What a database's query tables hold (read/query-tables.ts): the records, made once at open
 * (markQueryTables), of whether every stored event is in the tables and from which hour they
 * hold their histograms and linked-click counters.
 */
import { LIMITS } from "../../core/events.js";
import type { Collections } from "../schema/documents.js";
import { HOUR_MS, rollupCollection } from "../schema/rollup-documents.js";

/** Says whether every stored event is in the query tables (see markQueryTables). */
export const META_ID = "meta|query-tables";
/** Says from when every query table holds its queries' searches per results_count (`h<k>`) and clicks past the cap (`x`). */
export const HISTOGRAMS_META_ID = "meta|query-histograms";
/**
 * Says from when every query table counts linked clicks under their searches' queries, with
 * their clicks at shown ranks (`k`), outside results (`o`) and first-click ranks (`f<r>`):
 * core/click-attribution.ts. COEC, MRR and abandonment per query need them.
 */
export const ATTRIBUTION_META_ID = "meta|query-attribution";

interface QueryTablesMeta {
  _id: string;
  g: "meta";
  /** META_ID: every stored event is in the tables. */
  complete?: boolean;
  /** HISTOGRAMS_META_ID: tables of hours from this one on hold the histograms of all their events. */
  from?: Date;
  at: Date;
}

export const metaCollection = (c: Collections) => c.db.collection<QueryTablesMeta>(rollupCollection(c).collectionName);

/**
 * At open: a database without events gets query tables from its first event on, so they are
 * complete; one that already has events without the record was written by an older version,
 * and its tables never will be. The first server to record either wins.
 *
 * The same for the tables' histograms (COEC's inputs, query-table-fields.ts): a database without
 * events has them from the beginning; in one with events, the tables of this hour (and of the
 * next, which a writer of the older version may have reached with an event up to the allowed
 * clock skew ahead) may hold searches counted without them, so they are complete from the first
 * whole hour after that. Writers of the older version still running then are not foreseen.
 */
export async function markQueryTables(c: Collections, now = Date.now()): Promise<void> {
  const meta = metaCollection(c);
  const recorded = new Set((await meta.find({ _id: { $in: [META_ID, HISTOGRAMS_META_ID, ATTRIBUTION_META_ID] } }, { projection: { _id: 1 } }).toArray()).map((d) => d._id));
  if (recorded.size === 3) return;
  const empty = (await c.impressions.countDocuments({}, { limit: 1 })) + (await c.clicks.countDocuments({}, { limit: 1 })) === 0;
  const record = (doc: QueryTablesMeta) =>
    meta.insertOne(doc).catch((error: { code?: number }) => {
      if (error.code !== 11000) throw error;
    });
  if (!recorded.has(META_ID)) await record({ _id: META_ID, g: "meta", complete: empty, at: new Date(now) });
  const from = empty ? 0 : Math.floor((now + LIMITS.maxFutureSkewMs) / HOUR_MS) * HOUR_MS + HOUR_MS;
  for (const id of [HISTOGRAMS_META_ID, ATTRIBUTION_META_ID]) if (!recorded.has(id)) await record({ _id: id, g: "meta", from: new Date(from), at: new Date(now) });
}
