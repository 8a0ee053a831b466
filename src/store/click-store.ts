import { MongoClient, type Db, type MongoClientOptions } from "mongodb";
import { collections, type Collections } from "./documents.js";
import { ensureIndexes } from "./indexes.js";
import { DurableWriter, type WriterEvents } from "./durable-writer.js";
import { markQueryTables, QueryTableReader } from "./query-tables.js";
import { upgradeRollups } from "./rollup-upgrade.js";
import { pendingBatches, RollupReader, rollupCollection } from "./rollups.js";
import { Spool, type SpoolOptions } from "./spool.js";

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
  /** Rollup work a writer left unfinished for this long is finished by another (default 60 s). */
  rollupRepairAfterMs?: number;
}

async function ping(db: Db): Promise<boolean> {
  try {
    await db.command({ ping: 1 });
    return true;
  } catch {
    return false;
  }
}

/** The MongoDB side of tracking: one client, the two event collections, and their writes. */
export class ClickStore {
  private constructor(
    private readonly client: MongoClient,
    readonly db: Db,
    readonly collections: Collections,
    /** Writes events to MongoDB, or to the spool while MongoDB is unreachable. */
    readonly writer: DurableWriter,
  ) {
    this.rollups = new RollupReader(collections);
    this.queryTables = new QueryTableReader(collections);
  }

  /** Per-query counters for GetTopQueries. */
  readonly queryTables: QueryTableReader;


  /** Pre-aggregated metrics for unfiltered and variant-filtered windows. */
  readonly rollups: RollupReader;

  static async open(options: StoreOptions): Promise<ClickStore> {
    const clientOptions: MongoClientOptions = {
      serverSelectionTimeoutMS: options.serverSelectionTimeoutMS ?? 2_000,
      appName: "click-analytics",
      writeConcern: options.writeConcern ?? { w: "majority", journal: true },
    };
    const client = new MongoClient(options.uri, clientOptions);
    await client.connect();
    try {
      const db = client.db(options.dbName);
      const c = collections(db);
      await ensureIndexes(c);
      await markQueryTables(c);
      await upgradeRollups(c);
      const spool = options.spool ? Spool.open(options.spool) : undefined;
      const store = new ClickStore(client, db, c, new DurableWriter(c, spool, () => ping(db), options.writerEvents, options.rollupRepairAfterMs));
      return store;
    } catch (error) {
      await client.close();
      throw error;
    }
  }

  /** Deletes every event but keeps the collections and their indexes. */
  async reset(): Promise<void> {
    await Promise.all([
      this.collections.clicks.deleteMany({}),
      this.collections.impressions.deleteMany({}),
      rollupCollection(this.collections).deleteMany({}),
      pendingBatches(this.collections).deleteMany({}),
    ]);
    this.rollups.clear();
    this.queryTables.clear();
    await markQueryTables(this.collections);
  }

  /** True when the server answers a ping. */
  isReachable(): Promise<boolean> {
    return ping(this.db);
  }

  async close(): Promise<void> {
    this.writer.close();
    await this.client.close();
  }
}
