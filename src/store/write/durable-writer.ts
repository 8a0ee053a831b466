/**
 * store/write/ (see its README.md): the write path, from DurableWriter.write (this module) through
 * group commit, spool and event writer to the rollups; writer leases. It imports core/, engine/,
 * schema/ and rollups/, never read/.
 */
/**
 * The write path with its fallback: events go to MongoDB, and when MongoDB cannot be reached
 * they go to the local spool instead (fsync'd before the call is acknowledged). A background
 * drainer replays the spool into MongoDB as soon as it answers again, while new writes go on.
 */
import type { WriteItem } from "../../core/batch.js";
import type { Collections } from "../schema/documents.js";
import { writeEvents, type BatchStage } from "./event-writer.js";
import { GroupCommit } from "./group-commit.js";
import { repairRollups } from "../rollups/repair.js";
import { pendingBatches, settleBatch } from "../rollups/pending-batches.js";
import { abortable } from "../schema/documents.js";
import type { Spool } from "./spool.js";
import { isStorageUnreachable } from "../engine/storage-errors.js";
import type { StorageWatchdog } from "../engine/storage-watchdog.js";
import { dropOldLeases, finishDeadWriters, type WriterLease } from "./writer-lease.js";

export interface WriterEvents {
  repaired?(events: number): void;
  spooled?(events: number): void;
  drained?(records: number): void;
  drainFailed?(error: unknown): void;
  /** A batch of `events` events, combined from `writes` callers' writes, was written. */
  committed?(events: number, writes: number): void;
  /**
   * A batch's write has not ended `seconds` after it began, still at `stage` (reported once per
   * batch). Until it ends its writer does not know whether it failed, so nothing settles it, and
   * reads may count fewer events than are stored.
   */
  stalled?(batch: { marker: string; stage: BatchStage; events: number; seconds: number }): void;
}

/** A batch being written, for the stall report. */
interface InFlightBatch {
  stage: BatchStage;
  since: number;
  events: number;
  reported: boolean;
}

export class DurableWriter {
  /** Set by an unreachable-storage failure; cleared by a successful drain. */
  private storageDown = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly group: GroupCommit;
  /** Batches whose write failed midway: settled first thing once MongoDB answers (see settleBatch). */
  private readonly unsettled = new Set<string>();
  /** Batches being written, by marker (see stalled). */
  private readonly inFlight = new Map<string, InFlightBatch>();
  private readonly onStage = (marker: string, stage: BatchStage, events: number): void => {
    if (stage === "ended") this.inFlight.delete(marker);
    else {
      const batch = this.inFlight.get(marker);
      if (batch === undefined) this.inFlight.set(marker, { stage, since: Date.now(), events, reported: false });
      else batch.stage = stage;
    }
  };
  /**
   * Bumped after every write attempt of this process (committed, failed, replayed, settled or
   * repaired): a cheap local "something may have changed" signal for live views. Other servers'
   * writes do not move it; readers that care check rollup versions too.
   */
  private changes = 0;

  get changeCount(): number {
    return this.changes;
  }

  constructor(
    private readonly c: Collections,
    private readonly spool: Spool | undefined,
    private readonly ping: () => Promise<boolean>,
    private readonly events: WriterEvents = {},
    /** Rollup work left unfinished for this long is taken over (see repairRollups). */
    private readonly repairAfterMs = 60_000,
    private readonly retryMs = 500,
    /** This run's lease; each batch's record names its run, so that others know when to finish it. */
    private readonly lease?: WriterLease,
    /** Tells when the engine stops answering: writes then go to the spool at once (see write). */
    private readonly watchdog?: StorageWatchdog,
    /** A batch write not ended after this long is reported (WriterEvents.stalled). */
    private readonly stallAfterMs = 10_000,
  ) {
    this.group = new GroupCommit(async (items) => {
      // A retry of a failed batch's events is a duplicate of what that batch stored: settle it
      // first, so that the retry is not acknowledged before those events are counted.
      if (this.unsettled.size > 0) await this.settleFailedBatches();
      await this.lease?.ensure();
      try {
        return await writeEvents(this.c, items, (marker) => this.unsettled.add(marker), this.lease?.run, this.onStage);
      } finally {
        this.changes++;
      }
    }, {
      onBatch: (events, writes) => this.events.committed?.(events, writes),
    });
    if ((spool?.pendingRecords ?? 0) > 0) this.scheduleDrain(0);
    this.stopWatching = watchdog?.onChange((responsive) => {
      if (responsive) {
        if ((this.spool?.pendingRecords ?? 0) > 0) this.scheduleDrain(0);
      } else if (this.spool) {
        this.storageDown = true;
        this.scheduleDrain(this.retryMs);
      }
    });
    this.repairTimer = setInterval(() => void this.repair(), Math.max(1000, Math.min(repairAfterMs / 2, 30_000)));
    this.repairTimer.unref();
    this.stallTimer = setInterval(() => this.reportStalls(), Math.max(100, Math.min(stallAfterMs / 4, 5_000)));
    this.stallTimer.unref();
    void this.repair();
  }

  private readonly repairTimer: NodeJS.Timeout;
  private readonly stallTimer: NodeJS.Timeout;

  /** Reports, once each, batch writes that have gone on for stallAfterMs. */
  private reportStalls(): void {
    const now = Date.now();
    for (const [marker, batch] of this.inFlight) {
      if (batch.reported || now - batch.since < this.stallAfterMs) continue;
      batch.reported = true;
      this.events.stalled?.({ marker, stage: batch.stage, events: batch.events, seconds: Math.round((now - batch.since) / 1000) });
    }
  }
  private readonly stopWatching: (() => void) | undefined;
  /** Writes answered from the spool while their MongoDB write hung: still running, not yet counted. */
  private abandoned = 0;
  private repairing: Promise<void> | undefined;

  /** Counts events whose writer died between writing them and counting them in the rollups. */
  repair(): Promise<void> {
    this.repairing ??= this.settleFailedBatches()
      .then(() => finishDeadWriters(this.c, this.lease?.run))
      .then(async (finished) => {
        if (finished > 0) {
          this.changes++;
          this.events.repaired?.(finished);
        }
        await dropOldLeases(this.c);
        return repairRollups(this.c, this.repairAfterMs);
      })
      .then((n) => {
        if (n > 0) {
          this.changes++;
          this.events.repaired?.(n);
        }
      })
      .catch(() => undefined) // storage down: the next round tries again
      .finally(() => (this.repairing = undefined));
    return this.repairing;
  }

  /** Batches acknowledged but not yet in MongoDB. */
  get pending(): number {
    return this.spool?.pendingRecords ?? 0;
  }

  /**
   * MongoDB writes still running that were given up on when the engine stopped answering (their
   * callers were answered from the spool, or UNAVAILABLE): until they end, what they stored may
   * not be counted yet.
   */
  get abandonedWrites(): number {
    return this.abandoned;
  }

  get spoolBytes(): number {
    return this.spool?.pendingBytes ?? 0;
  }

  /**
   * Writes a batch (combined with concurrent writers' batches, see GroupCommit); returns the
   * indexes that were duplicates. Spooled events are reported as new: whether they repeat an
   * earlier event is settled, by event id, when they reach MongoDB.
   */
  async write(items: readonly WriteItem[]): Promise<Set<number>> {
    if (this.spool && (this.storageDown || this.watchdog?.responsive === false)) return this.toSpool(items);
    try {
      return await this.unlessUnresponsive(this.group.write(items));
    } catch (error) {
      if (!this.spool || !isStorageUnreachable(error)) throw error;
      this.storageDown = true;
      return this.toSpool(items);
    }
  }

  /**
   * A write answered as soon as the engine is found unresponsive, not when its hung socket gives
   * up: the caller is answered from the spool within the watchdog's timeout. The write itself goes
   * on; whatever it stores is a duplicate of the spooled copy, recognised by event id.
   */
  private unlessUnresponsive<T>(work: Promise<T>): Promise<T> {
    if (!this.watchdog) return work;
    let settled = false;
    void work.then(
      () => (settled = true),
      () => (settled = true),
    );
    return this.watchdog.race(work).catch((error: unknown) => {
      if (!settled) {
        this.abandoned++;
        void work.then(
          () => this.abandoned--,
          () => this.abandoned--,
        );
      }
      throw error;
    });
  }

  private toSpool(items: readonly WriteItem[]): Set<number> {
    if (items.length > 0) {
      this.spool!.append(items.map((i) => i.tracked));
      this.events.spooled?.(items.length);
    }
    this.scheduleDrain(this.retryMs);
    return new Set();
  }

  private scheduleDrain(delayMs: number): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.drainOnce();
    }, delayMs);
    this.timer.unref();
  }

  /**
   * Settles this writer's failed batches, before it writes anything else (so their markers are
   * still remembered) and before a read on this server (their events are stored: they count).
   */
  async settleFailedBatches(): Promise<void> {
    await this.adoptLeftRecords();
    for (const marker of [...this.unsettled]) {
      await settleBatch(this.c, marker);
      this.unsettled.delete(marker);
      this.changes++;
    }
  }

  /** The pool clears (see ConnectionInterrupts.clears) after which this writer last looked for records it left. */
  private clearsLookedAt = 0;

  /**
   * After the engine's connections broke (a pool clear): this writer's pending records of batches
   * it is not writing join the unsettled ones. Such a record belongs to a write that ended, as far
   * as this writer knows successfully, whose last writes (its rollup update, its record's removal)
   * the engine lost when it was killed: the embedded engine sometimes comes back without the last
   * write it acknowledged. Settling a batch already counted changes nothing (its marker is applied).
   */
  private async adoptLeftRecords(): Promise<void> {
    const clears = this.c.interrupts?.clears ?? 0;
    if (clears === this.clearsLookedAt || this.lease === undefined) return;
    const left = await pendingBatches(this.c).find({ w: this.lease.run }, { projection: { _id: 1 }, ...abortable(this.c) }).toArray();
    for (const { _id } of left) if (!this.inFlight.has(_id)) this.unsettled.add(_id);
    this.clearsLookedAt = clears;
  }

  /** One attempt: if MongoDB answers, replay the whole spool; otherwise try again later. */
  private async drainOnce(): Promise<void> {
    if (!this.spool || this.closed) return;
    try {
      if (!(await this.ping())) throw new Error("storage still unreachable");
      await this.settleFailedBatches();
      await this.lease?.ensure();
      // New writes go to MongoDB again from here, while the spool drains: kept in the spool
      // until it was empty, they came in (fsync'd, under load) faster than it drained, and
      // after an outage it never emptied. Event ids keep either order exact.
      this.storageDown = false;
      const replayed = await this.spool.drain(async (events) => {
        await this.lease?.ensure();
        try {
          await writeEvents(this.c, events.map((tracked, index) => ({ index, tracked })), (marker) => this.unsettled.add(marker), this.lease?.run, this.onStage);
        } finally {
          this.changes++;
        }
      });
      if (replayed > 0) this.events.drained?.(replayed);
    } catch (error) {
      this.events.drainFailed?.(error);
    }
    if (this.spool.pendingRecords > 0) this.scheduleDrain(this.retryMs);
  }

  /** Resolves once the spool is empty (or the timeout passes); for shutdown and tests. */
  async settle(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.pending > 0 && Date.now() < until) {
      if (!this.timer) this.scheduleDrain(0);
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.pending === 0;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    clearInterval(this.repairTimer);
    clearInterval(this.stallTimer);
    this.stopWatching?.();
    this.spool?.close();
  }
}
