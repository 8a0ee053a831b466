/**
 * Click claims: linking clicks to their searches (core/click-attribution.ts) and counting what the
 * linking changed in the rollups exactly once, however many writers race on a search.
 */
import { MongoServerError, type Document } from "mongodb";
import type { RankClicks } from "../../core/click-attribution.js";
import { abortable, ONE_ROUND_TRIP, writeCommand, type Collections } from "../schema/documents.js";
import { keyIn, keyIs } from "../schema/indexes.js";
import { RESULTS_COUNT_CAP } from "../schema/rollup-documents.js";
import { clearMarker, RollupDelta } from "./rollup-delta.js";

/** Per impression (linked clicks only), per rank: how many of `clicks` and the earliest one's timestamp. */
export function clickRanks(clicks: Iterable<{ impression_id?: string | undefined; timestamp: Date; rank: number }>, into = new Map<string, RankClicks[]>()): Map<string, RankClicks[]> {
  for (const k of clicks) {
    if (k.impression_id === undefined) continue;
    let rows = into.get(k.impression_id);
    if (!rows) into.set(k.impression_id, (rows = []));
    const t = k.timestamp.getTime();
    const row = rows.find((x) => x.r === k.rank);
    if (row === undefined) rows.push({ r: k.rank, n: 1, t });
    else {
      row.n++;
      row.t = Math.min(row.t, t);
    }
  }
  return into;
}

/** How many clicks the rows hold. */
export const clickCount = (rows: readonly RankClicks[] | undefined): number => (rows ?? []).reduce((sum, x) => sum + x.n, 0);

/** How many times a claim blocked by another writer's claim is retried after finishing that one. */
const CLAIM_ATTEMPTS = 5;
/** MongoDB's WriteConflict: another writer holds what this one needs (see storage-errors.ts). */
const WRITE_CONFLICT = 112;

/**
 * Marks impressions that have at least one linked click, rebuilds each one's linked clicks and
 * first click at a shown rank (core/click-attribution.ts) from `candidates`, which hold ALL its
 * stored clicks as read after the batch's own were stored, and counts the change exactly once in
 * the rollups. An impression is claimed with a marker unique to this call when the candidate
 * counts more clicks than it has (stored clicks only accumulate, so a later read holds every
 * click an earlier one did, and a larger count is the newer state), recording in `cf` what was
 * counted before; so of two writers racing on the same impression only the one whose update
 * matched counts the change, and a stale read never replaces a newer one. The marker is removed
 * once counted, and a marker left behind (a crash in between) is picked up by repairRollups. An
 * impression under another writer's claim is not taken over (that claim's `cf` must stay what
 * it moves from): its claim is finished here (counting is idempotent), then the impression is
 * tried again. One `update` command; reads only when some candidate did not match.
 */
/**
 * The impression `id`, if its stored clicks, `n` of them, may claim it: unclaimed, and with
 * fewer linked clicks counted (or none: also searches clicked by versions before linked-click
 * summaries, whose first click is then rebuilt by the rules of this one). Through keyIs, so that
 * the lookup uses the partial impression_id index (plain equality does not imply its filter, and
 * each statement would scan the collection).
 */
export function claimableFilter(id: string, n: number): Document {
  return { impression_id: keyIs(id), click_claim: { $exists: false }, $or: [{ "lk.n": { $exists: false } }, { "lk.n": { $lt: n } }] };
}

/**
 * The update that rebuilds a search's linked clicks and first click from its stored clicks by
 * rank, against its own results_count (which only the stored search knows).
 */
function claimUpdate(rows: readonly RankClicks[], claim: string): Document[] {
  const byRank = [...rows].sort((a, b) => a.r - b.r);
  const byTime = [...rows].sort((a, b) => a.t - b.t || a.r - b.r).map((x) => ({ r: x.r, t: new Date(x.t) }));
  const shown = (input: unknown[]) => ({ $filter: { input: { $literal: input }, cond: { $lt: ["$$this.r", "$results_count"] } } });
  const first = { $arrayElemAt: [shown(byTime), 0] };
  return [
    // Gone first: $set merges an object into the one it replaces, and what was counted before may lack some of the fields.
    { $unset: "cf" },
    {
      $set: {
        cf: { c: { $eq: ["$clicked", true] }, t: "$fc_t", r: "$fc_r", k: "$lk" },
        clicked: true,
        lk: {
          n: { $literal: clickCount(rows) },
          s: { $literal: rows.reduce((sum, x) => sum + x.n * x.r, 0) },
          o: { $sum: { $map: { input: { $filter: { input: { $literal: byRank }, cond: { $gte: ["$$this.r", "$results_count"] } } }, in: "$$this.n" } } },
          k: shown(byRank.filter((x) => x.r < RESULTS_COUNT_CAP).map((x) => ({ r: x.r, n: x.n }))),
        },
        fc_t: { $ifNull: [{ $let: { vars: { f: first }, in: "$$f.t" } }, "$$REMOVE"] },
        fc_r: { $ifNull: [{ $let: { vars: { f: first }, in: "$$f.r" } }, "$$REMOVE"] },
        click_claim: claim,
      },
    },
  ];
}

export async function flagClickedImpressions(c: Collections, candidates: ReadonlyMap<string, readonly RankClicks[]>, claim: string): Promise<void> {
  let pending = [...candidates.keys()];
  // Nothing matched, nothing to count: a batch with nothing to flag costs no round trip.
  let claimed = false;
  for (let attempt = 1; pending.length > 0; attempt++) {
    const updates = pending.map((id) => {
      const rows = candidates.get(id)!;
      return { q: claimableFilter(id, clickCount(rows)), u: claimUpdate(rows, claim) };
    });
    const reply = await writeCommand(c, { update: c.impressions.collectionName, updates, ordered: false });
    const failed = (reply.writeErrors as { errmsg: string; code: number }[] | undefined)?.[0] ?? reply.writeConcernError;
    if (failed) throw new MongoServerError({ message: `click flag failed: ${failed.errmsg}`, code: failed.code });
    claimed ||= Number(reply.n) > 0;
    if (Number(reply.n) === pending.length) break;
    // Some did not match: already holding every click read here (the usual case), not stored
    // yet, or under another claim (finished here, then tried again; as is one whose claim ended
    // between the update and this read).
    const stored = await c.impressions
      .find({ impression_id: keyIn(pending), click_claim: { $ne: claim } }, { projection: { _id: 0, impression_id: 1, click_claim: 1, "lk.n": 1 }, ...ONE_ROUND_TRIP, ...abortable(c) })
      .toArray();
    const again = stored.filter((d) => d.click_claim !== undefined || (d.lk?.n ?? -1) < clickCount(candidates.get(d.impression_id)));
    if (again.length === 0) break;
    // Contention, not a fault: WriteConflict, which callers treat as transient (UNAVAILABLE; a retry by event id is safe).
    if (attempt >= CLAIM_ATTEMPTS) throw new MongoServerError({ message: `impressions ${again.map((b) => b.impression_id).join(", ")} stayed claimed by other writers`, code: WRITE_CONFLICT });
    for (const other of new Set(again.flatMap((d) => (d.click_claim === undefined ? [] : [d.click_claim])))) await countClicked(c, other);
    pending = again.map((d) => d.impression_id);
  }
  if (claimed) await countClicked(c, claim);
}

/**
 * Counts what the impressions under `claim` changed, once: a search newly flagged clicked counts
 * as a search with clicks, its first click moves from the one counted before (`cf`) to the one
 * it has now, and so do its linked clicks. Then clears the claim.
 */
export async function countClicked(c: Collections, claim: string): Promise<number> {
  const flipped = await c.impressions
    .find({ click_claim: claim }, { projection: { _id: 1, timestamp: 1, variant: 1, query_normalized: 1, user_id: 1, results_count: 1, cf: 1, fc_t: 1, fc_r: 1, lk: 1 }, ...ONE_ROUND_TRIP, ...abortable(c) })
    .toArray();
  if (flipped.length === 0) return 0;
  const delta = new RollupDelta();
  for (const imp of flipped) {
    // Claims of earlier versions have no `cf`: they only ever flagged unclicked impressions.
    if (imp.cf?.c !== true) delta.clicked(imp);
    if (imp.cf?.t !== undefined && imp.cf.r !== undefined) delta.firstClick(imp, imp.cf.t, imp.cf.r, -1);
    if (imp.fc_t !== undefined && imp.fc_r !== undefined) delta.firstClick(imp, imp.fc_t, imp.fc_r, 1);
    delta.linked(imp, imp.cf?.k, -1);
    delta.linked(imp, imp.lk, 1);
  }
  await delta.apply(c, claim);
  return clearMarker(c.impressions, "click_claim", claim);
}
