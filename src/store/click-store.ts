import { MongoClient, type Db, type MongoClientOptions } from "mongodb";
import { collections, type Collections } from "./documents.js";
import { ensureIndexes } from "./indexes.js";
import { RollupReader, rollupCollection } from "./rollups.js";

export interface StoreOptions {
  uri: string;
  dbName: string;
  /** How long an operation waits for a reachable server before failing as unavailable. */
  serverSelectionTimeoutMS?: number;
}

/** The MongoDB side of tracking: one client, the two event collections, and their writes. */
export class ClickStore {
  private constructor(
    private readonly client: MongoClient,
    readonly db: Db,
    readonly collections: Collections,
  ) {
    this.rollups = new RollupReader(collections);
  }

  /** Pre-aggregated metrics for unfiltered and variant-filtered windows. */
  readonly rollups: RollupReader;

  static async open(options: StoreOptions): Promise<ClickStore> {
    const clientOptions: MongoClientOptions = {
      serverSelectionTimeoutMS: options.serverSelectionTimeoutMS ?? 5_000,
      appName: "click-analytics",
    };
    const client = new MongoClient(options.uri, clientOptions);
    await client.connect();
    try {
      const db = client.db(options.dbName);
      const store = new ClickStore(client, db, collections(db));
      await ensureIndexes(store.collections);
      return store;
    } catch (error) {
      await client.close();
      throw error;
    }
  }

  /** Deletes every event but keeps the collections and their indexes. */
  async reset(): Promise<void> {
    await Promise.all([this.collections.clicks.deleteMany({}), this.collections.impressions.deleteMany({}), rollupCollection(this.collections).deleteMany({})]);
    this.rollups.clear();
  }

  /** True when the server answers a ping. */
  async isReachable(): Promise<boolean> {
    try {
      await this.db.command({ ping: 1 });
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
