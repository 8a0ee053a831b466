/**
 * The indexes the service creates can live on a sharded cluster with the shard keys docs/operations.md
 * "Running at scale" documents: MongoDB enforces a unique index on a sharded collection only
 * when the index starts with the shard key, and refuses to shard a collection otherwise.
 */
import { inject } from "vitest";
import { afterAll, beforeAll, expect, it } from "vitest";
import { MongoClient, ObjectId, type Document } from "mongodb";
import { SHARD_KEYS } from "../../../src/store/schema/indexes.js";
import { readDoc } from "../../support/docs.js";
import { startHarness, type Harness } from "../../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
  // Every collection the service keeps comes into being: events, a linked click, users, batches, leases.
  await h.client.logImpression({ impressionId: "s1", userId: "u1", query: "q", variant: "v", resultsCount: 1, responseTimeMs: 1 });
  await h.client.logClick({ impressionId: "s1", userId: "u1", productId: "p", rank: 1, searchQuery: "q", variant: "v", responseTimeMs: 1 });
  await h.client.getTopQueries({});
  // And an interleaved search, read once (interleaving rollups).
  await h.client.logImpression({ impressionId: "s2", userId: "u1", query: "q", variant: "v", resultsCount: 2, responseTimeMs: 1, teams: ["a", "b"] });
  await h.client.getInterleavingResult({ rankerA: "a", rankerB: "b" });
  // A comparison (per-user rollups, built by readers).
  await h.client.getVariantComparison({ days: 1 });
  // And an experiment (its collection is created with the first one).
  await h.client.createExperiment({ experimentId: "shard-keys", experiment: { displayName: "shard keys", arms: [{ variant: "a", weight: 1 }, { variant: "b", weight: 1 }], control: "a" } });
});
afterAll(() => h.close());

/** The key as docs/operations.md writes it. */
export const shownKey = (key: Record<string, 1 | "hashed"> | null) =>
  key === null ? "not sharded" : `{ ${Object.entries(key).map(([f, v]) => `${f}: ${typeof v === "string" ? `"${v}"` : v}`).join(", ")} }`;

it("every unique index of a fresh database starts with its collection's documented shard key", async () => {
  const db = h.server.store.db;
  const names = (await db.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name).sort();
  // A collection the service adds must be given a documented shard key (or null) first.
  expect(names).toEqual(Object.keys(SHARD_KEYS).sort());
  const incompatible: string[] = [];
  for (const name of names) {
    const key = SHARD_KEYS[name]!;
    if (key === null) continue;
    const fields = Object.keys(key);
    const indexes = (await db.collection(name).listIndexes().toArray()) as Document[];
    // The _id index matters where the service chooses _id (it relies on it being unique); an
    // ObjectId the driver generates is unique anyway.
    const sample = await db.collection(name).findOne({});
    const ownIds = sample !== null && !(sample._id instanceof ObjectId);
    for (const index of indexes) {
      const unique = index.unique === true || (index.name === "_id_" && ownIds);
      if (!unique) continue;
      const prefix = Object.keys(index.key as Document).slice(0, fields.length);
      if (prefix.join(",") !== fields.join(",")) incompatible.push(`${name}.${String(index.name)} ${JSON.stringify(index.key)} under ${shownKey(key)}`);
    }
  }
  expect(incompatible).toEqual([]);
});

it("docs/operations.md's table mirrors SHARD_KEYS", () => {
  const readme = readDoc("docs/operations.md");
  const section = readme.slice(readme.indexOf("## Running at scale"));
  expect(section.length).toBeLessThan(readme.length);
  for (const [name, key] of Object.entries(SHARD_KEYS)) expect(section, name).toContain(`| \`${name}\` | \`${shownKey(key)}\` |`);
});

it("a database made by an earlier version keeps its unique event_id index on impressions, and opens", async () => {
  const mongo = new MongoClient(inject("mongoUri"));
  const dbName = `${h.dbName}_legacy`;
  try {
    await mongo.db(dbName).collection("impressions").createIndex({ event_id: 1 }, { name: "event_id_unique", unique: true, partialFilterExpression: { event_id: { $type: "string" } } });
    const legacy = await startHarness({ dbName });
    try {
      await legacy.client.logImpression({ eventId: "e1", impressionId: "i1", userId: "u", query: "q", variant: "v", resultsCount: 1, responseTimeMs: 1 });
      // Stricter there: the same event_id is a duplicate whatever its impression_id.
      const again = await legacy.client.logImpression({ eventId: "e1", impressionId: "i2", userId: "u", query: "other", variant: "v", resultsCount: 1, responseTimeMs: 1 });
      expect(again).toMatchObject({ impressionId: "i1", query: "q" });
      const names = (await mongo.db(dbName).collection("impressions").listIndexes().toArray()).map((i) => String(i.name));
      expect(names).toContain("event_id_unique");
      expect(names).not.toContain("event_id_1");
    } finally {
      await legacy.close();
    }
  } finally {
    await mongo.db(dbName).dropDatabase();
    await mongo.close();
  }
});

it("on a fresh database an impression is a duplicate by its impression_id, not by an event_id given with another impression_id", async () => {
  const first = await h.client.logImpression({ eventId: "k1", impressionId: "search-a", userId: "u", query: "q", variant: "v", resultsCount: 1, responseTimeMs: 1 });
  const retry = await h.client.logImpression({ eventId: "k2", impressionId: "search-a", userId: "u", query: "other", variant: "v", resultsCount: 1, responseTimeMs: 1 });
  expect(retry).toMatchObject({ impressionId: first.impressionId, query: "q" });
  const other = await h.client.logImpression({ eventId: "k1", impressionId: "search-b", userId: "u", query: "third", variant: "v", resultsCount: 1, responseTimeMs: 1 });
  expect(other).toMatchObject({ impressionId: "search-b", query: "third" });
  expect(await h.server.store.collections.impressions.countDocuments({ event_id: "k1" })).toBe(2);
});
