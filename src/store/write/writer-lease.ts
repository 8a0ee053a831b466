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
import type { Collections } from "../schema/documents.js";
import { pendingBatches, settleBatch } from "../rollups/pending-batches.js";

export interface LeaseDocument {
  /** The run: one process's life. */
  _id: string;
  /** The instance the run belongs to (see instanceIdentity). */
  instance: string;
  expires: Date;
}

export const DEFAULT_LEASE_MS = 10_000;

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
    const lease = new WriterLease(c, run, instance, leaseMs, onRenewed);
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
      await leaseCollection(this.c).updateOne({ _id: this.run }, [{ $set: { instance: this.instance, expires: { $add: ["$$NOW", this.leaseMs] } } }], { upsert: true });
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

/**
 * Finishes the pending batches of dead writers (runs other than `ownRun` whose lease expired or
 * is gone); batches of live writers and of versions that record no writer are left alone.
 * Resolves with how many batches it finished; what it counts, it counts once however many
 * servers do this at the same time.
 */
export async function finishDeadWriters(c: Collections, ownRun: string | undefined): Promise<number> {
  const pending = await pendingBatches(c).find({ w: { $exists: true, $ne: ownRun ?? "" } }, { projection: { _id: 1, w: 1 } }).limit(1_000).toArray();
  if (pending.length === 0) return 0;
  const runs = [...new Set(pending.map((p) => p.w!))];
  const live = new Set((await leaseCollection(c).find({ _id: { $in: runs }, $expr: { $gt: ["$expires", "$$NOW"] } }, { projection: { _id: 1 } }).toArray()).map((l) => l._id));
  let finished = 0;
  for (const p of pending) {
    if (live.has(p.w!)) continue;
    await settleBatch(c, p._id);
    finished++;
  }
  return finished;
}

/** Leases that ended long ago: no batch needs them (a batch of a missing lease counts as dead). */
export async function dropOldLeases(c: Collections, olderThanMs = 86_400_000): Promise<void> {
  await leaseCollection(c).deleteMany({ $expr: { $lt: ["$expires", { $subtract: ["$$NOW", olderThanMs] }] } });
}
