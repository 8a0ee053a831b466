/**
 * Writer leases: which writers are alive, so that the rollup work of a dead one is finished at
 * once instead of after a fixed delay.
 *
 * Every server process (a "run") holds a lease document, renewed every quarter of the lease;
 * each pending batch it records names its run (see recordPendingBatch). A batch whose run's lease
 * has expired (or is gone) was left by a dead writer: the next metrics read, the restarted
 * service or any server's repair pass finishes it (settleBatch; its markers keep that exactly
 * once). A batch of a live run is in flight and finishes within its write. Expiry is judged by
 * MongoDB's clock alone ($$NOW), never by comparing two machines' clocks.
 *
 * An instance is what a local spool directory belongs to: a restarted process of the same
 * instance knows its previous run is over, and retires that run's lease at start, so its batches
 * are finished before the first read rather than when the lease would have expired.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Collection } from "mongodb";
import { abortable, type Collections } from "../schema/documents.js";
import { pendingBatches, settleBatch } from "../rollups/pending-batches.js";

export interface LeaseDocument {
  /** The run: one process's life. */
  _id: string;
  /** The instance the run belongs to (see instanceIdentity). */
  instance: string;
  expires: Date;
}

export const DEFAULT_LEASE_MS = 10_000;
/** The shortest lease a writer takes: how long a look that found no dead writer holds (see DeadWriterCheck). */
export const MIN_LEASE_MS = 1_000;

export function leaseCollection(c: Collections): Collection<LeaseDocument> {
  return c.db.collection<LeaseDocument>("writer_leases");
}

/** The instance id kept in the spool directory (created on first use); random without one. */
export function instanceIdentity(dir: string | undefined): string {
  if (dir === undefined) return randomBytes(9).toString("base64url");
  const path = join(dir, "instance-id");
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    mkdirSync(dir, { recursive: true });
    const id = randomBytes(9).toString("base64url");
    writeFileSync(path, `${id}\n`, { flag: "wx" });
    return id;
  }
}

export class WriterLease {
  /** By this process's clock, a conservative bound: measured from before the renewal was sent. */
  private validUntil = 0;
  private readonly timer: NodeJS.Timeout;
  private renewing: Promise<void> | undefined;

  private constructor(
    private readonly c: Collections,
    readonly run: string,
    readonly instance: string,
    readonly leaseMs: number,
    onRenewed: () => void,
  ) {
    this.timer = setInterval(() => void this.renew().then(onRenewed, () => undefined), Math.max(250, leaseMs / 4));
    this.timer.unref();
  }

  /** Takes a lease for a new run of `instance`, retiring the instance's earlier runs (they are over). */
  static async acquire(c: Collections, instance: string, leaseMs = DEFAULT_LEASE_MS, onRenewed: () => void = () => undefined): Promise<WriterLease> {
    const run = `${instance}.${randomBytes(6).toString("base64url")}`;
    await leaseCollection(c).updateMany({ instance, _id: { $ne: run } }, { $set: { expires: new Date(0) } });
    const lease = new WriterLease(c, run, instance, Math.max(MIN_LEASE_MS, leaseMs), onRenewed);
    try {
      await lease.renew();
    } catch (error) {
      clearInterval(lease.timer);
      throw error;
    }
    return lease;
  }

  renew(): Promise<void> {
    this.renewing ??= (async () => {
      const sent = Date.now();
      await leaseCollection(this.c).updateOne({ _id: this.run }, [{ $set: { instance: this.instance, expires: { $add: ["$$NOW", this.leaseMs] } } }], { upsert: true, ...abortable(this.c) });
      this.validUntil = sent + this.leaseMs;
    })().finally(() => (this.renewing = undefined));
    return this.renewing;
  }

  /**
   * Before a batch: at least half the lease left, renewing first if not. So a batch is begun
   * only by a writer that others still see alive for as long again; one that lost MongoDB longer
   * than its lease renews (and learns MongoDB is back) before it writes.
   */
  async ensure(): Promise<void> {
    if (Date.now() > this.validUntil - this.leaseMs / 2) await this.renew();
  }

  /** Graceful stop: the lease ends now, so any batch this run leaves is finished by the next reader. */
  async release(): Promise<void> {
    clearInterval(this.timer);
    await leaseCollection(this.c)
      .updateOne({ _id: this.run }, { $set: { expires: new Date(0) } })
      .catch(() => undefined);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** What one look at other writers found: the batches it finished, and how long every lease it saw still runs. */
interface DeadWriterLook {
  finished: number;
  /** Until the first live lease of another run can end, by MongoDB's clock (Infinity: none). */
  liveForMs: number;
}

/**
 * Finishes the pending batches of dead writers (runs other than `ownRun` whose lease expired or is
 * gone) and measures the live leases: one command when nothing is dead (the batches and the leases
 * in one aggregation), and each lease's time left computed by MongoDB's clock, never this one's.
 */
async function lookAtOtherWriters(c: Collections, ownRun: string | undefined): Promise<DeadWriterLook> {
  const own = ownRun ?? "";
  const rows = await pendingBatches(c)
    .aggregate<{ _id: string; w?: string; left?: number }>([
      { $match: { w: { $exists: true, $ne: own } } },
      { $limit: 1_000 },
      { $project: { _id: 1, w: 1 } },
      { $unionWith: { coll: leaseCollection(c).collectionName, pipeline: [{ $match: { _id: { $ne: own } } }, { $project: { _id: 1, left: { $subtract: ["$expires", "$$NOW"] } } }] } },
    ])
    .toArray();
  const live = new Set<string>();
  let liveForMs = Infinity;
  for (const r of rows) {
    if (r.left === undefined || r.left <= 0) continue;
    live.add(r._id);
    liveForMs = Math.min(liveForMs, r.left);
  }
  let finished = 0;
  for (const p of rows) {
    if (p.w === undefined || live.has(p.w)) continue;
    await settleBatch(c, p._id);
    finished++;
  }
  return { finished, liveForMs };
}

/**
 * Finishes the pending batches of dead writers (runs other than `ownRun` whose lease expired or
 * is gone); batches of live writers and of versions that record no writer are left alone.
 * Resolves with how many batches it finished; what it counts, it counts once however many
 * servers do this at the same time.
 */
export async function finishDeadWriters(c: Collections, ownRun: string | undefined): Promise<number> {
  return (await lookAtOtherWriters(c, ownRun)).finished;
}

/**
 * finishDeadWriters before every metrics read, without a command before most of them. A batch
 * becomes a dead writer's only when its writer's lease ends, so after a look that left no dead
 * writer's batch, none can appear before the first lease it saw could end (its time left, by
 * MongoDB's clock, counted here from before the look was sent), nor before a writer that joins
 * later could lose its lease (no lease is shorter than MIN_LEASE_MS). Until the earlier of the
 * two, reads skip the look.
 *
 * Only a lease ended early escapes this: a run's graceful release, or a restarted instance
 * retiring its previous run (which finishes that run's batches itself before it serves). Other
 * servers then look at most MIN_LEASE_MS later.
 */
export class DeadWriterCheck {
  /** performance.now() before which no other writer's batch can be a dead one. */
  private quietUntil = 0;

  /** Until when (performance.now()) reads skip the look. */
  get holdsUntil(): number {
    return this.quietUntil;
  }
  /** Looks sent (for tests). */
  looks = 0;

  constructor(
    private readonly c: Collections,
    private readonly ownRun: string | undefined,
  ) {}

  /** Resolves with the number of dead writers' batches finished (0 without a look). */
  finish(): Promise<number> {
    return performance.now() < this.quietUntil ? Promise.resolve(0) : this.look();
  }

  private async look(): Promise<number> {
    const sent = performance.now();
    this.looks++;
    const { finished, liveForMs } = await lookAtOtherWriters(this.c, this.ownRun);
    // After finishing some, look again at the next read: settling took time, leases moved.
    this.quietUntil = finished > 0 ? 0 : Math.max(this.quietUntil, sent + Math.min(liveForMs, MIN_LEASE_MS));
    return finished;
  }
}

/** Leases that ended long ago: no batch needs them (a batch of a missing lease counts as dead). */
export async function dropOldLeases(c: Collections, olderThanMs = 86_400_000): Promise<void> {
  await leaseCollection(c).deleteMany({ $expr: { $lt: ["$expires", { $subtract: ["$$NOW", olderThanMs] }] } });
}
