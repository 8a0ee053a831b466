/**
 * The shared rollup listing: one find for the listings asked in one turn, and each asker gets
 * exactly what the engine returns for its own clauses (checked against the engine on random
 * documents and clauses of the shapes the readers write).
 */
import { BSON, Double, Long, MongoClient } from "mongodb";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { collections, type Collections } from "../../../src/store/schema/documents.js";
import { rollupCollection } from "../../../src/store/schema/rollup-documents.js";
import { listedVersion, rollupListing, type ListingClause } from "../../../src/store/read/rollup-listing.js";
import { mulberry32 } from "../../support/prng.js";

const HOUR = 3_600_000;
let client: MongoClient;
let c: Collections;

beforeAll(async () => {
  client = new MongoClient(inject("mongoUri"));
  await client.connect();
  c = collections(client.db(`rollup_listing_${process.pid}`));
});
afterAll(async () => {
  await client.db(`rollup_listing_${process.pid}`).dropDatabase();
  await client.close();
});

it("gives each of several listings asked at once what the engine gives for its clauses, in one find", async () => {
  const random = mulberry32(7);
  const base = Date.UTC(2026, 10, 1);
  const variants = ["a", "b", "ranker ü 🦄"];
  // Versions as the engine may keep them: int32, int64 past 2^32 ($inc on a long), double.
  const docs = Array.from({ length: 300 }, (_, i) => {
    const g = random() < 0.7 ? "h" : "d";
    const t = new Date(base + Math.floor(random() * 240) * (g === "h" ? HOUR : 24 * HOUR));
    return { _id: `x${i}`, g, t, v: variants[Math.floor(random() * 3)]!, ver: i % 3 === 0 ? Long.fromNumber(i + 2 ** 33) : i % 3 === 1 ? new Double(i + 0.5) : i };
  });
  await rollupCollection(c).insertMany(docs as never[]);
  const at = () => new Date(base + Math.floor(random() * 260) * HOUR);
  const clause = (): ListingClause => {
    const g = random() < 0.6 ? "h" : "d";
    const v = random() < 0.5 ? { v: variants[Math.floor(random() * 3)]! } : {};
    const shape = random();
    if (shape < 0.3) return { g, t: at(), ...v };
    const from = at();
    if (shape < 0.5) return { g, t: { $gte: from }, ...v };
    return { g, t: { $gte: from, $lt: new Date(from.getTime() + Math.floor(random() * 100) * HOUR) }, ...v };
  };
  const key = (d: { g: string; t: Date; v: string; ver: number }) => `${d.g}|${d.t.getTime()}|${d.v}|${d.ver}`;
  for (let round = 0; round < 20; round++) {
    const asks = Array.from({ length: 1 + Math.floor(random() * 3) }, () => Array.from({ length: 1 + Math.floor(random() * 4) }, clause));
    const listing = rollupListing(c);
    const sent = listing.sent;
    const answers = await Promise.all(asks.map((clauses) => listing.list(clauses, {})));
    expect(listing.sent - sent).toBe(1);
    for (const [k, clauses] of asks.entries()) {
      const engine = await rollupCollection(c).find({ $or: clauses as never[] }, { projection: { _id: 0, g: 1, t: 1, v: 1, ver: 1 } }).toArray();
      expect(answers[k]!.map(key).sort()).toEqual(engine.map((d) => key({ g: d.g, t: d.t, v: d.v, ver: Number(d.ver) })).sort());
    }
  }
});

it("fails every listing of a turn when the find fails, and lists again next time", async () => {
  const listing = rollupListing(c);
  // A clause the engine refuses (an unknown operator): both askers of the turn hear it.
  const bad = { g: "h", t: { $bogus: 1 } } as unknown as ListingClause;
  const good: ListingClause = { g: "h", t: { $gte: new Date(0) } };
  const results = await Promise.allSettled([listing.list([good], {}), listing.list([bad], {})]);
  expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
  expect((await listing.list([good], {})).length).toBeGreaterThan(0);
});

it("reads a listed document from its BSON, skipping fields it does not know and refusing one without its keys", () => {
  const t = new Date(Date.UTC(2026, 11, 6, 13));
  const bytes = BSON.serialize({ a: { nested: [1, 2] }, g: "qh", flag: true, nothing: null, t, big: Long.fromNumber(2 ** 40), v: "variante ü", pi: 3.14, ver: 7, tail: "x" });
  expect(listedVersion(bytes)).toEqual({ g: "qh", t, v: "variante ü", ver: 7 });
  // At an offset inside a larger buffer, as the driver hands out raw documents.
  const padded = new Uint8Array(bytes.length + 5);
  padded.set(bytes, 5);
  expect(listedVersion(padded.subarray(5))).toEqual({ g: "qh", t, v: "variante ü", ver: 7 });
  // A long variant name, a start before 1970, versions as int64 and double.
  const long = "a-variant-name-longer-than-thirty-two-bytes";
  const before1970 = new Date(Date.UTC(1969, 6, 20, 20, 17, 40, 123));
  expect(listedVersion(BSON.serialize({ g: "d", t: before1970, v: long, ver: Long.fromNumber(2 ** 40 + 3) }))).toEqual({ g: "d", t: before1970, v: long, ver: 2 ** 40 + 3 });
  expect(listedVersion(BSON.serialize({ g: "d", t, v: "b", ver: new Double(12) }))).toEqual({ g: "d", t, v: "b", ver: 12 });
  expect(() => listedVersion(BSON.serialize({ g: "h", v: "a" }))).toThrow(/without its grain, start or variant/);
  expect(() => listedVersion(BSON.serialize({ g: "h", t, v: "a", r: /x/ }))).toThrow(/unexpected BSON type 0xb in field "r"/);
});
