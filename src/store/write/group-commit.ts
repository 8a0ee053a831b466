/**
 * Group commit for the write path. Each batch costs a few journaled round trips (insert, rollup
 * increments, marker removal, linking) whatever its size, so writes that arrive while others are
 * in flight are combined into one batch: 64 concurrent LogClick calls become a handful of
 * batches instead of 64. A write arriving when a slot is free goes at once, so nothing waits
 * when the service is idle.
 *
 * Measured with the benchmark (64 unary clients, 2 cores): one write per call gave 312 calls/s;
 * combined, 860-895 calls/s with 1-2 batches in flight and fewer with more (452 with 16): the
 * engine serialises journaled writes, so more small batches at once only add round trips. Large
 * writes (LogEvents, StreamEvents batches) gain from running in parallel instead, so they skip
 * the queue.
 */
import type { WriteItem } from "../../core/batch.js";

/** Writes a batch; resolves with the `index` of every item that was a duplicate. */
export type BatchWrite = (items: readonly WriteItem[]) => Promise<Set<number>>;

interface Waiting {
  items: readonly WriteItem[];
  resolve(duplicates: Set<number>): void;
  reject(error: unknown): void;
}

export interface GroupCommitOptions {
  /** Combined batches in flight at once. Default 2. */
  maxInFlight?: number;
  /** A write of at least this many events is a batch already: it is written at once, alone. Default 250. */
  soloEvents?: number;
  /** Events in a combined batch at most; a larger single write still goes, alone. Default 1,000. */
  maxBatchEvents?: number;
  /** Called with the size of every batch written, for the metrics. */
  onBatch?(events: number, writes: number): void;
}

export class GroupCommit {
  private readonly queue: Waiting[] = [];
  private inFlight = 0;
  private readonly maxInFlight: number;
  private readonly maxBatchEvents: number;
  private readonly soloEvents: number;

  constructor(
    private readonly writeBatch: BatchWrite,
    private readonly options: GroupCommitOptions = {},
  ) {
    this.maxInFlight = options.maxInFlight ?? 2;
    this.maxBatchEvents = options.maxBatchEvents ?? 1_000;
    this.soloEvents = options.soloEvents ?? 250;
  }

  /**
   * Writes the items, possibly together with other callers' items; resolves with this caller's
   * duplicate indexes, or rejects with the batch's error (nothing of a failed batch is
   * acknowledged to anyone, and every event carries an event id, so each caller may retry).
   */
  write(items: readonly WriteItem[]): Promise<Set<number>> {
    return new Promise((resolve, reject) => {
      const waiting = { items, resolve, reject };
      if (items.length >= this.soloEvents) {
        void this.commit([waiting], items.length);
        return;
      }
      this.queue.push(waiting);
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const group: Waiting[] = [this.queue.shift()!];
      let events = group[0]!.items.length;
      while (this.queue.length > 0 && events + this.queue[0]!.items.length <= this.maxBatchEvents) {
        const next = this.queue.shift()!;
        group.push(next);
        events += next.items.length;
      }
      this.inFlight++;
      void this.commit(group, events).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async commit(group: Waiting[], events: number): Promise<void> {
    if (group.length === 1) return this.commitAlone(group[0]!, events);
    // Renumber into one batch, remembering whose item each position was.
    const combined: WriteItem[] = [];
    const owner: { member: number; index: number }[] = [];
    group.forEach((waiting, member) => {
      for (const item of waiting.items) {
        owner.push({ member, index: item.index });
        combined.push({ index: combined.length, tracked: item.tracked });
      }
    });
    try {
      const duplicates = await this.writeBatch(combined);
      this.options.onBatch?.(events, group.length);
      const perMember = group.map(() => new Set<number>());
      for (const position of duplicates) {
        const o = owner[position]!;
        perMember[o.member]!.add(o.index);
      }
      group.forEach((waiting, member) => waiting.resolve(perMember[member]!));
    } catch (error) {
      for (const waiting of group) waiting.reject(error);
    }
  }

  /** One caller's write (a large one, or alone in the queue): its items as they are, its own indexes back. */
  private async commitAlone(waiting: Waiting, events: number): Promise<void> {
    try {
      const duplicates = await this.writeBatch(waiting.items);
      this.options.onBatch?.(events, 1);
      waiting.resolve(duplicates);
    } catch (error) {
      waiting.reject(error);
    }
  }
}
