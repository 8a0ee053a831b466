/**
 * Raw-event retention (RAW_RETENTION_DAYS): click_events and impressions are expired by a TTL
 * index on `timestamp`; rollups and query tables are not expired (they are small, and they keep
 * answering windows of any age exactly). A read that would need raw events older than the
 * retention is refused (FAILED_PRECONDITION) rather than answered short: that rule is
 * RawRetention.require, which every raw read of the metrics, the export and user summaries
 * passes through.
 *
 * Exactness at the boundary: events are kept RETENTION_GRACE_MS longer than the retention, and
 * reads may reach back the retention plus READ_SLACK_MS, so a read allowed when it starts never
 * meets an event the TTL monitor already removed ("the last 7 days" with a 7-day retention is
 * allowed, though its start was computed a moment before the check).
 */
import type { Collection, Db, Document } from "mongodb";
import { DomainError } from "../../core/errors.js";
import type { Collections } from "./documents.js";

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
export const RETENTION_GRACE_MS = HOUR_MS;
const READ_SLACK_MS = 60_000;

/** Why a read needs raw events from some time on: it decides the advice in the refusal. */
export type RawNeed = "window-edge" | "events";

export class RawRetention {
  /** `days` undefined: raw events are kept forever. */
  constructor(readonly days: number | undefined) {}

  /** expireAfterSeconds of the TTL index; undefined without retention. */
  get ttlSeconds(): number | undefined {
    return this.days === undefined ? undefined : (this.days * DAY_MS + RETENTION_GRACE_MS) / 1000;
  }

  /** Raw events with timestamps before this may already be expired. */
  expiredBefore(now = Date.now()): Date | undefined {
    return this.days === undefined ? undefined : new Date(now - this.days * DAY_MS - READ_SLACK_MS);
  }

  /**
   * The one rule: a read of raw events from `from` on is allowed only within the retention;
   * otherwise FAILED_PRECONDITION naming it (never an answer that silently misses events).
   * `window-edge`: rollups answer the rest, so a window starting on a whole UTC hour needs no
   * raw events at its start.
   */
  require(from: Date, need: RawNeed, now = Date.now()): void {
    const cutoff = this.expiredBefore(now);
    if (cutoff === undefined || from.getTime() >= cutoff.getTime()) return;
    const n = this.days!;
    const advice = need === "window-edge" ? `start the window on a whole hour or within ${n} days` : `ask for at most the last ${n} days`;
    throw new DomainError(
      "failed_precondition",
      `this request needs raw events from ${from.toISOString()}, older than the ${n}-day retention of raw events (RAW_RETENTION_DAYS=${n}); ${advice}`,
    );
  }
}

export const KEEP_EVERYTHING = new RawRetention(undefined);

const TIMESTAMP_INDEX = "timestamp_1";

/**
 * Brings the {timestamp: 1} index of an event collection to the retention: a TTL index with
 * `ttlSeconds`, or a plain one without. The index keeps its name either way (readers hint it).
 * collMod changes expireAfterSeconds in place; where it cannot (no collMod, as in the embedded
 * engine; or a TTL to be removed, which collMod cannot do) the index is rebuilt.
 */
export async function reconcileTimestampIndex(collection: Collection<Document>, ttlSeconds: number | undefined): Promise<void> {
  const existing = (await collection.listIndexes().toArray().catch(() => [] as Document[])).find((i) => i.name === TIMESTAMP_INDEX);
  if (existing === undefined) return; // created with the others, already in the wanted form
  const current = existing.expireAfterSeconds as number | undefined;
  if (current === ttlSeconds) return;
  if (ttlSeconds !== undefined) {
    const modified = await collection.db
      .command({ collMod: collection.collectionName, index: { name: TIMESTAMP_INDEX, expireAfterSeconds: ttlSeconds } })
      .then(() => true, () => false);
    if (modified) return;
  }
  await collection.dropIndex(TIMESTAMP_INDEX).catch((error: { code?: number }) => {
    // Another instance starting at the same time dropped it first.
    if (error.code !== 27) throw error;
  });
}

/** The timestamp index spec for the retention (see EVENT_INDEXES). */
export function timestampIndexOptions(ttlSeconds: number | undefined): { expireAfterSeconds?: number } {
  return ttlSeconds === undefined ? {} : { expireAfterSeconds: ttlSeconds };
}

/**
 * Whether MongoDB expires TTL indexes itself. The embedded engine has no TTL monitor (it refuses
 * the parameter); a mongos has none either, but its shards do.
 */
export async function hasTtlMonitor(db: Db): Promise<boolean> {
  const admin = db.admin();
  const enabled = await admin.command({ getParameter: 1, ttlMonitorEnabled: 1 }).then(
    (r) => r.ttlMonitorEnabled === true,
    () => undefined,
  );
  if (enabled !== undefined) return enabled;
  const hello = await admin.command({ hello: 1 }).catch(() => ({}) as Document);
  return hello.msg === "isdbgrid";
}

/**
 * What the TTL monitor would do, for servers without one: deletes expired events in chunks (so
 * no single delete holds the collection long). Resolves with how many it deleted.
 */
export async function sweepExpired(c: Collections, retention: RawRetention, now = Date.now()): Promise<number> {
  const ttl = retention.ttlSeconds;
  if (ttl === undefined) return 0;
  const before = new Date(now - ttl * 1000);
  let deleted = 0;
  for (const collection of [c.clicks, c.impressions] as unknown as Collection<Document>[]) {
    for (;;) {
      const ids = (await collection.find({ timestamp: { $lt: before } }, { projection: { _id: 1 }, hint: TIMESTAMP_INDEX }).limit(10_000).toArray()).map((d) => d._id);
      if (ids.length === 0) break;
      deleted += (await collection.deleteMany({ _id: { $in: ids } })).deletedCount;
    }
  }
  return deleted;
}
