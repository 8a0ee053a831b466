/**
 * The store's one entry (src/store/README.md): ClickStore opens the database and assembles the
 * engine/, schema/, write/, rollups/ and read/ parts, and the end of this module re-exports what
 * else the server uses, so src/server/ imports nothing else from src/store/.
 */
import { MongoClient, type Db, type MongoClientOptions } from "mongodb";
import { collections, type Collections } from "./schema/documents.js";
import { ensureIndexes } from "./schema/indexes.js";
import { DurableWriter, type WriterEvents } from "./write/durable-writer.js";
import { markQueryTables } from "./read/query-table-meta.js";
import { QueryTableReader } from "./read/query-tables.js";
import { upgradeRollups } from "./rollups/rollup-upgrade.js";
import { pendingBatches } from "./rollups/pending-batches.js";
import { RollupReader } from "./read/rollup-reader.js";
import { rollupCollection } from "./schema/rollup-documents.js";
import { InterleavingRollupReader } from "./read/interleaving-rollups.js";
import { interleavingRollups } from "./schema/interleaving-rollup-documents.js";
import { UserRollupReader } from "./read/user-rollups.js";
import { userRollups } from "./read/user-tables.js";
import { Spool, type SpoolOptions } from "./write/spool.js";
import { isStorageUnreachable } from "./engine/storage-errors.js";
import { ConnectionInterrupts } from "./engine/connection-interrupts.js";
import { DEFAULT_PING_TIMEOUT_MS, StorageWatchdog, type WatchdogOptions } from "./engine/storage-watchdog.js";
import { DeadWriterCheck, DEFAULT_LEASE_MS, finishDeadWriters, instanceIdentity, WriterLease } from "./write/writer-lease.js";
import { DomainError } from "../core/errors.js";
import { hasTtlMonitor, RawRetention, sweepExpired } from "./schema/retention.js";

export interface StoreOptions {
  uri: string;
  dbName: string;
  /** How long an operation waits for a reachable server before failing as unavailable. */
  serverSelectionTimeoutMS?: number;
  /** When a write counts as done: default majority-acknowledged and journaled. */
  writeConcern?: { w: number | "majority"; journal: boolean };
  /** Where acknowledged events wait while MongoDB is unreachable; without it such writes fail UNAVAILABLE. */
  spool?: SpoolOptions;
  writerEvents?: WriterEvents;
  /** Rollup work of earlier versions (which name no writer) left unfinished this long is finished by another (default 60 s). */
  rollupRepairAfterMs?: number;
  /** A writer not heard of for this long is dead, and its unfinished batches are finished by others (default 10 s). */
  writerLeaseMs?: number;
  /** Raw events older than this many days are expired (TTL index); undefined keeps them all. */
  rawRetentionDays?: number | undefined;
  /** Where MongoDB runs no TTL monitor (the embedded engine), how often the service expires raw events itself (default 10 min). */
  retentionSweepMs?: number | undefined;
  /** How often the engine is pinged, and how long an unanswered ping takes to mark it unresponsive. */
  watchdog?: WatchdogOptions;
  /** With tracing on: told the client (created with command monitoring) to trace its commands. */
  traceCommands?: ((client: MongoClient) => void) | undefined;
}

/** The MongoDB side of tracking: one client, the two event collections, and their writes. */
export class ClickStore {
  private constructor(
    private readonly client: MongoClient,
    readonly db: Db,
    readonly collections: Collections,
    /** Writes events to MongoDB, or to the spool while MongoDB is unreachable. */
    readonly writer: DurableWriter,
    readonly lease: WriterLease,
    /** How long raw events are kept; reads that need older ones are refused (see retention.ts). */
    readonly retention: RawRetention,
    /** Whether the engine answers; writes spool and reads fail fast while it does not. */
    readonly watchdog: StorageWatchdog,
    private readonly closeWatchdog: () => Promise<void>,
    private readonly sweeper?: NodeJS.Timeout,
  ) {
    this.rollups = new RollupReader(collections);
    this.interleaving = new InterleavingRollupReader(collections);
    this.userRollups = new UserRollupReader(collections, retention);
    this.queryTables = new QueryTableReader(collections, undefined, retention);
    this.deadWriters = new DeadWriterCheck(collections, lease.run);
  }

  /** Finishes dead writers' batches before reads (a look only when one could have died since the last). */
  readonly deadWriters: DeadWriterCheck;

  /** Per-query counters for GetTopQueries. */
  readonly queryTables: QueryTableReader;


  /** Pre-aggregated metrics for unfiltered and variant-filtered windows. */
  readonly rollups: RollupReader;
  /** Interleaving tallies per hour and day (interleaving-rollups.ts). */
  readonly interleaving: InterleavingRollupReader;
  /** Per-user totals per hour and day, for the comparison (user-rollups.ts). */
  readonly userRollups: UserRollupReader;

  static async open(options: StoreOptions): Promise<ClickStore> {
    const clientOptions: MongoClientOptions = {
      serverSelectionTimeoutMS: options.serverSelectionTimeoutMS ?? 2_000,
      appName: "click-analytics",
      writeConcern: options.writeConcern ?? { w: "majority", journal: true },
      // Bounds the driver's heartbeat (and each handshake) as the watchdog bounds its ping: the
      // engine's hello has no topologyVersion, so the monitor polls, and one unanswered check kept
      // the server unknown (every command failing selection, the spool undrained) for 30 s.
      connectTimeoutMS: options.watchdog?.timeoutMs ?? DEFAULT_PING_TIMEOUT_MS,
      // Only when tracing (monitorCommands=true in the URI still works without it).
      ...(options.traceCommands ? { monitorCommands: true } : {}),
    };
    const client = new MongoClient(options.uri, clientOptions);
    options.traceCommands?.(client);
    await client.connect();
    const { watchdog, close: closeWatchdog } = StorageWatchdog.forUri(options.uri, options.watchdog);
    try {
      const db = client.db(options.dbName);
      const c = collections(db, new ConnectionInterrupts(client));
      const retention = new RawRetention(options.rawRetentionDays);
      await ensureIndexes(c, retention.ttlSeconds);
      await markQueryTables(c);
      await upgradeRollups(c);
      const spool = options.spool ? Spool.open(options.spool) : undefined;
      // The same spool directory is the same instance: its previous process is over, and the
      // batches it left are finished now, before this one serves a read.
      let writer: DurableWriter | undefined;
      const lease = await WriterLease.acquire(c, instanceIdentity(options.spool?.dir), options.writerLeaseMs ?? DEFAULT_LEASE_MS, () => {
        // MongoDB answers: batches of this writer that failed are settled now, not at its next write.
        void writer?.settleFailedBatches().catch(() => undefined);
      });
      writer = new DurableWriter(c, spool, () => watchdog.ping(), options.writerEvents, options.rollupRepairAfterMs, undefined, lease, watchdog);
      watchdog.start();
      const finished = await finishDeadWriters(c, lease.run).catch((error: unknown) => {
        writer?.close();
        lease.stop();
        throw error;
      });
      if (finished > 0) options.writerEvents?.repaired?.(finished);
      // MongoDB's TTL monitor expires raw events; where there is none, this process does the same.
      let sweeper: NodeJS.Timeout | undefined;
      if (retention.days !== undefined && !(await hasTtlMonitor(db))) {
        const sweep = () => void sweepExpired(c, retention).catch(() => undefined);
        sweep();
        sweeper = setInterval(sweep, options.retentionSweepMs ?? 600_000);
        sweeper.unref();
      }
      return new ClickStore(client, db, c, writer, lease, retention, watchdog, closeWatchdog, sweeper);
    } catch (error) {
      await closeWatchdog();
      await client.close();
      throw error;
    }
  }

  private resets = 0;

  /**
   * Moves after every write, repair or reset this process made (see DurableWriter.changeCount):
   * unchanged means this process changed nothing; other servers' writes show in rollup versions.
   */
  get changeCount(): number {
    return this.writer.changeCount + this.resets;
  }

  /** Deletes every event but keeps the collections and their indexes. */
  async reset(): Promise<void> {
    try {
      await this.deleteAll();
    } finally {
      this.resets++;
    }
  }

  private async deleteAll(): Promise<void> {
    await Promise.all([
      this.collections.clicks.deleteMany({}),
      this.collections.impressions.deleteMany({}),
      rollupCollection(this.collections).deleteMany({}),
      interleavingRollups(this.collections).deleteMany({}),
      userRollups(this.collections).deleteMany({}),
      pendingBatches(this.collections).deleteMany({}),
    ]);
    this.rollups.clear();
    this.interleaving.clear();
    this.userRollups.clear();
    this.queryTables.clear();
    await markQueryTables(this.collections);
  }

  /**
   * Before a metrics read: every stored event is counted. This writer's failed batches are
   * settled, and the batches dead writers left are finished here and now (not after a delay;
   * looked for only when a writer could have died since the last look: DeadWriterCheck);
   * batches of live writers are in flight and finish within their write. While that cannot be
   * done, the read is UNAVAILABLE with the reason.
   */
  async countEverythingStored(): Promise<void> {
    if (!this.watchdog.responsive) throw new DomainError("unavailable", `metrics are unavailable: the storage is not responding (no answer to a ping for ${this.watchdog.timeoutMs} ms); retry shortly`);
    const abandoned = this.writer.abandonedWrites;
    if (abandoned > 0) throw new DomainError("unavailable", `metrics are unavailable while ${abandoned} write(s) interrupted by the storage's stall finish; retry shortly`);
    try {
      await this.writer.settleFailedBatches();
      await this.deadWriters.finish();
    } catch (error) {
      if (!isStorageUnreachable(error)) throw error;
      // The reason, not MongoDB's error text: host names and ports stay out of client answers.
      throw new DomainError("unavailable", "metrics are unavailable: the storage cannot be reached to count the batches a writer left unfinished; retry shortly");
    }
  }

  /** True when the engine answers a ping within the watchdog's timeout. */
  isReachable(): Promise<boolean> {
    return this.watchdog.ping();
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await this.closeWatchdog();
    this.writer.close();
    await this.lease.release();
    await this.client.close();
  }
}

// Everything else the server uses of the store comes through here, so that this module is the one
// entry to src/store/ (test/architecture.test.ts holds src/server/ to it).
export { startEmbeddedMongo, type EmbeddedMongo, type EmbeddedMongoOptions } from "./engine/embedded-engine.js";
export { storageFailure } from "./engine/storage-errors.js";
export { DEFAULT_PING_INTERVAL_MS, DEFAULT_PING_TIMEOUT_MS } from "./engine/storage-watchdog.js";
export type { ClickDocument, ImpressionDocument } from "./schema/documents.js";
export { RESULTS_COUNT_CAP } from "./schema/rollup-documents.js";
export type { SpoolOptions } from "./write/spool.js";
export type { DurableWriter } from "./write/durable-writer.js";
export { findOriginalClick, findOriginalImpression } from "./write/event-writer.js";
export { match, type MetricsFilter } from "./read/metrics-filter.js";
export { anyEventBetween, userActivity, type EventTotals } from "./read/metrics-queries.js";
export { fastMetrics, type ArmsBreakdown, type MetricsSource } from "./read/metrics-source.js";
export { rawInterleavingPairs } from "./read/interleaving.js";
export type { BucketRow } from "./read/breakdowns.js";
export { ExperimentStore } from "./experiments.js";
