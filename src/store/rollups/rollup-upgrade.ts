/**
 * Rollups written before exact users and user buckets (v0.1) hold HyperLogLog registers (`u`)
 * and neither the user bitmap (`um`) nor the per-bucket sums (`ub`): their users and their
 * statistics over users would be missing. At start, before serving, such hourly and daily
 * rollups are rebuilt once from the events. Query tables are unaffected.
 *
 * Events whose writer has not counted them yet (a pending batch, an older `pending_rollup`
 * marker, an impression whose click is claimed but not counted) are left out: the repair
 * counts them under their own markers, so nothing is counted twice. The query tables are kept
 * as they are, so the rebuild adds nothing to them. Run the upgrade with one
 * instance (see docs/storage.md): a writer of an older version counting events meanwhile
 * would be counted twice.
 */
import type { Document } from "mongodb";
import type { ClickDocument, Collections, ImpressionDocument } from "../schema/documents.js";
import { pendingBatches } from "./pending-batches.js";
import { pendingMarker, rollUp } from "./rollup-delta.js";
import { rollupCollection } from "../schema/rollup-documents.js";

const BATCH = 1000;

/** True when rollups of an older format were found and rebuilt. */
export async function upgradeRollups(c: Collections): Promise<boolean> {
  const legacy = await rollupCollection(c).findOne({ g: { $in: ["h", "d"] }, u: { $exists: true }, um: { $exists: false } }, { projection: { _id: 1 } });
  if (legacy === null) return false;
  const pending = new Set((await pendingBatches(c).find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id));
  const counted = (d: { b?: string; pending_rollup?: string }) => d.pending_rollup === undefined && (d.b === undefined || !pending.has(d.b));
  await rollupCollection(c).deleteMany({ g: { $in: ["h", "d"] } });
  const each = async <T extends Document>(docs: AsyncIterable<T>, add: (batch: T[]) => Promise<void>) => {
    let batch: T[] = [];
    for await (const d of docs) {
      batch.push(d);
      if (batch.length === BATCH) {
        await add(batch);
        batch = [];
      }
    }
    if (batch.length > 0) await add(batch);
  };
  await each(c.clicks.find({}).sort({ _id: 1 }) as AsyncIterable<ClickDocument>, (batch) => rollUp(c, batch.filter(counted), [], pendingMarker(), false));
  await each(c.impressions.find({}).sort({ _id: 1 }) as AsyncIterable<ImpressionDocument>, (batch) =>
    rollUp(
      c,
      [],
      // A search counts as clicked, with its first click and linked clicks, once its click was
      // counted; under a pending claim, as it was before the claim (which counts the change).
      batch
        .filter(counted)
        .map((d) =>
          d.click_claim === undefined ? { ...d, clicked_on_insert: d.clicked === true, fi_t: d.fc_t, fi_r: d.fc_r, li: d.lk } : { ...d, clicked_on_insert: d.cf?.c === true, fi_t: d.cf?.t, fi_r: d.cf?.r, li: d.cf?.k },
        ),
      pendingMarker(),
      false,
    ),
  );
  return true;
}
