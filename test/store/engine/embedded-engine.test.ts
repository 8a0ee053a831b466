// The embedded MongoDB engine as the rest of the project uses it: through the mongod-style
// launcher (bin/mongod-embedded), via mongodb-memory-server (inject('mongoUri')) and via
// startEmbeddedMongo (what `npm start` uses). No mocks: everything talks to the real engine.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { MongoClient, MongoServerError, type Collection } from 'mongodb';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { embeddedMongodPath, startEmbeddedMongo } from '../../../src/store/engine/embedded-engine.js';

const DB_NAME = 'test_store_embedded_engine';

/** The version `bin/mongod-embedded --version` reports, parsed the way mongodb-memory-server does. */
async function launcherVersion(): Promise<string> {
  const { stdout } = await promisify(execFile)(embeddedMongodPath(), ['--version']);
  const match = /^\s*db\s+version\s+v?(\d+\.\d+\.\d+)(-\d*)?(-[a-zA-Z0-9].*)?\s*$/im.exec(stdout);
  expect(match, stdout).not.toBeNull();
  const buildInfo = JSON.parse(stdout.slice(stdout.indexOf('Build Info: ') + 'Build Info: '.length)) as {
    version: string;
  };
  expect(stdout).toContain(`db version v${buildInfo.version}\n`);
  return buildInfo.version;
}

describe('bin/mongod-embedded', () => {
  it('prints a mongod-style version', async () => {
    expect(await launcherVersion()).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('the shared test MongoDB (inject("mongoUri"))', () => {
  let client: MongoClient;
  let events: Collection<{ variant: string; latencyMs: number; queryId?: string }>;

  beforeAll(async () => {
    client = await MongoClient.connect(inject('mongoUri'));
    const db = client.db(DB_NAME);
    await db.dropDatabase();
    events = db.collection('events');
  });

  afterAll(async () => {
    await client?.close();
  });

  it('inserts many documents', async () => {
    const docs = [10, 20, 30, 40, 50].flatMap((latencyMs) => [
      { variant: 'A', latencyMs },
      { variant: 'B', latencyMs: latencyMs * 2 },
    ]);
    const result = await events.insertMany(docs);
    expect(result.insertedCount).toBe(10);
    expect(await events.countDocuments({ variant: 'B' })).toBe(5);
  });

  it('enforces a unique index with duplicate key error 11000', async () => {
    const uniques = client.db(DB_NAME).collection<{ queryId: string }>('uniques');
    expect(await uniques.createIndex({ queryId: 1 }, { unique: true })).toBe('queryId_1');
    await uniques.insertOne({ queryId: 'q1' });
    const error: unknown = await uniques.insertOne({ queryId: 'q1' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MongoServerError);
    expect((error as MongoServerError).code).toBe(11000);
    expect(await uniques.countDocuments()).toBe(1);
  });

  it('aggregates with $group and $percentile', async () => {
    const rows = await events
      .aggregate<{ _id: string; n: number; p: number[]; mod: number }>([
        {
          $group: {
            _id: '$variant',
            n: { $sum: 1 },
            p: { $percentile: { input: '$latencyMs', p: [0.5, 0.9], method: 'approximate' } },
            // A double $mod runs the engine's fmod, which the glibc shim supplies on glibc < 2.38.
            mod: { $sum: { $mod: ['$latencyMs', 7.5] } },
          },
        },
        { $sort: { _id: 1 } },
      ])
      .toArray();
    expect(rows).toEqual([
      { _id: 'A', n: 5, p: [30, 50], mod: 15 },
      { _id: 'B', n: 5, p: [60, 100], mod: 15 },
    ]);
  });
});

describe('startEmbeddedMongo', () => {
  let dbPath: string;

  beforeAll(async () => {
    dbPath = await mkdtemp(path.join(os.tmpdir(), 'embedded-engine-test-'));
  });

  afterAll(async () => {
    await rm(dbPath, { recursive: true, force: true });
  });

  /** Runs `fn` against a fresh engine process on dbPath, always stopping it. */
  async function withEngine<T>(fn: (client: MongoClient) => Promise<T>, cacheSizeGB?: number): Promise<{ result: T; pid: number }> {
    const engine = await startEmbeddedMongo({ dbPath, ...(cacheSizeGB === undefined ? {} : { cacheSizeGB }) });
    expect(engine.uri).toMatch(/^mongodb:\/\/127\.0\.0\.1:\d+\/\?directConnection=true$/);
    try {
      const client = await MongoClient.connect(engine.uri);
      try {
        return { result: await fn(client), pid: engine.pid };
      } finally {
        await client.close();
      }
    } finally {
      await engine.stop();
      await engine.stop(); // idempotent
    }
  }

  // The engine opens with a fixed 256 MiB cache, which a million events' indexes outgrow (ingest
  // then reads evicted pages back); the launcher sizes it as mongod does, or as asked.
  it("sizes the WiredTiger cache as mongod does by default, or as --wiredTigerCacheSizeGB asks", async () => {
    const configured = (client: MongoClient) => client.db('admin').command({ serverStatus: 1 }).then((s) => Number(s.wiredTiger.cache['maximum bytes configured']));
    const mongodDefault = Math.round(Math.max(0.25, (os.totalmem() / 2 ** 30 - 1) / 2) * 1024) * 2 ** 20;
    expect((await withEngine(configured)).result).toBe(mongodDefault);
    expect((await withEngine(configured, 0.5)).result).toBe(512 * 2 ** 20);
    await expect(promisify(execFile)(embeddedMongodPath(), ['--dbpath', dbPath, '--wiredTigerCacheSizeGB', 'lots'])).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('--wiredTigerCacheSizeGB') });
  });

  it('keeps data across a stop and a restart on the same directory', async () => {
    const first = await withEngine(async (client) => {
      await client.db(DB_NAME).collection('kept').insertOne({ _id: 'restart', n: 42 } as never);
      return (await client.db('admin').command({ buildInfo: 1 })).version as string;
    });
    // The launcher's --version (what mongodb-memory-server checks) is the engine's real version.
    expect(first.result).toBe(await launcherVersion());
    // stop() only resolves once the process is gone.
    expect(() => process.kill(first.pid, 0)).toThrow();

    const second = await withEngine((client) => client.db(DB_NAME).collection('kept').findOne({ _id: 'restart' } as never));
    expect(second.pid).not.toBe(first.pid);
    expect(second.result).toEqual({ _id: 'restart', n: 42 });
  }, 120_000);

  // What `npm start` connects through: the engine's own Unix socket, in a directory of this user's only.
  it('serves the same engine on its Unix socket (socketUri) as on its TCP front (uri)', async () => {
    const engine = await startEmbeddedMongo({ dbPath });
    try {
      const socketPath = decodeURIComponent(/^mongodb:\/\/([^/]+)\/\?directConnection=true$/.exec(engine.socketUri)?.[1] ?? '');
      expect(socketPath).toMatch(/\.sock$/);
      expect((await stat(socketPath)).isSocket()).toBe(true);
      expect((await stat(path.dirname(socketPath))).mode & 0o077).toBe(0);
      const [tcp, unix] = await Promise.all([MongoClient.connect(engine.uri), MongoClient.connect(engine.socketUri)]);
      try {
        await tcp.db(DB_NAME).collection('both').insertOne({ _id: 'written over tcp' } as never);
        expect(await unix.db(DB_NAME).collection('both').findOne({ _id: 'written over tcp' } as never)).toEqual({ _id: 'written over tcp' });
      } finally {
        await Promise.all([tcp.close(), unix.close()]);
      }
    } finally {
      await engine.stop();
    }
  }, 120_000);

  it('rejects with the reason when the directory is already in use', async () => {
    const engine = await startEmbeddedMongo({ dbPath });
    try {
      await expect(startEmbeddedMongo({ dbPath })).rejects.toThrow(/exited before it was ready[\s\S]*DBPathInUse/);
    } finally {
      await engine.stop();
    }
  }, 120_000);
});
