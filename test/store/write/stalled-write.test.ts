/**
 * A batch write that does not end is reported, once, with the stage it is stuck at: until it ends
 * its writer cannot know whether it failed, so nothing settles it (the faults test's rare
 * undercount was such a batch, its events stored and its pending record left). The stall is made
 * real: the engine's fsync lock holds the batch's first journaled write. An engine of its own,
 * so that the lock holds no other test's writes.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { MongoClient } from "mongodb";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startEmbeddedMongo, type EmbeddedMongo } from "../../../src/store/engine/embedded-engine.js";
import { collections, type Collections } from "../../../src/store/schema/documents.js";
import { ensureIndexes } from "../../../src/store/schema/indexes.js";
import { DurableWriter, type WriterEvents } from "../../../src/store/write/durable-writer.js";
import { impression } from "../../support/validated-events.js";

let dir: string;
let engine: EmbeddedMongo;
let client: MongoClient;
let c: Collections;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "stalled-write-"));
  engine = await startEmbeddedMongo({ dbPath: dir });
  client = await new MongoClient(engine.socketUri, { writeConcern: { w: "majority", journal: true } }).connect();
  c = collections(client.db("stalled"));
  await ensureIndexes(c);
}, 120_000);

afterAll(async () => {
  await client?.close();
  await engine?.stop();
  await rm(dir, { recursive: true, force: true });
});

it("reports a batch write that has not ended, once, with its stage; and nothing for one that ends in time", { timeout: 60_000 }, async () => {
  const stalls: Parameters<NonNullable<WriterEvents["stalled"]>>[0][] = [];
  const writer = new DurableWriter(c, undefined, async () => true, { stalled: (batch) => stalls.push(batch) }, 60_000, 500, undefined, undefined, 400);
  try {
    // Ends in time: no report.
    await writer.write([{ index: 0, tracked: { kind: "impression", event: impression("quick") } }]);
    await new Promise((r) => setTimeout(r, 600));
    expect(stalls).toEqual([]);

    await client.db("admin").command({ fsync: 1, lock: true });
    let unlocked = false;
    try {
      const write = writer.write([{ index: 0, tracked: { kind: "impression", event: impression("held") } }]);
      for (const until = Date.now() + 10_000; stalls.length === 0 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 50));
      // Held at its first journaled write: the pending record.
      expect(stalls).toEqual([{ marker: expect.stringMatching(/^\d{15}:/), stage: "recording", events: 1, seconds: expect.any(Number) }]);
      await new Promise((r) => setTimeout(r, 1_000));
      expect(stalls, "reported once").toHaveLength(1);
      await client.db("admin").command({ fsyncUnlock: 1 });
      unlocked = true;
      expect((await write).size).toBe(0);
    } finally {
      if (!unlocked) await client.db("admin").command({ fsyncUnlock: 1 });
    }
    expect(await c.impressions.countDocuments({ event_id: "held" })).toBe(1);
    // The stalled batch ended: its record is gone and nothing more is reported.
    expect(await c.db.collection("pending_batches").countDocuments({ _id: stalls[0]!.marker as never })).toBe(0);
    await new Promise((r) => setTimeout(r, 600));
    expect(stalls).toHaveLength(1);
  } finally {
    writer.close();
  }
});
