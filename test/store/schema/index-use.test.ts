/** Key lookups on the write path must use their indexes: a collection scan per batch makes ingest slow down as data grows. */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Document } from "mongodb";
import { keyIn, keyIs } from "../../../src/store/schema/indexes.js";
import { claimableFilter } from "../../../src/store/rollups/click-claims.js";
import { startHarness, type Harness } from "../../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
  await h.client.logImpression({ impressionId: "i1", userId: "u", query: "q", variant: "v", resultsCount: 1, responseTimeMs: 1 });
});
afterAll(() => h.close());

async function indexesUsed(collection: "clicks" | "impressions", filter: Document): Promise<string[]> {
  const plan = await h.server.store.collections[collection].find(filter).explain("queryPlanner");
  const text = JSON.stringify(plan.queryPlanner.winningPlan);
  expect(text, JSON.stringify(filter)).not.toContain("COLLSCAN");
  return [...text.matchAll(/"indexName":"([^"]+)"/g)].map((m) => m[1]!);
}

it("uses the unique key indexes for event and impression id lookups", async () => {
  expect(await indexesUsed("clicks", { event_id: keyIs("e1") })).toEqual(["event_id_unique"]);
  expect(await indexesUsed("impressions", { impression_id: keyIn(["i1", "i2"]), clicked: { $ne: true } })).toEqual(["impression_id_unique"]);
  expect(await indexesUsed("impressions", { impression_id: keyIs("i") })).toEqual(["impression_id_unique"]);
  expect(await indexesUsed("impressions", { event_id: keyIs("e") })).toEqual(["event_id_1"]);
  expect(await indexesUsed("clicks", { impression_id: { $in: ["i1"] } })).toEqual(["impression_id_1"]);
  // A click claiming its impression (one statement per click of a batch): a scan here made a
  // replayed spool of 900 batches take minutes.
  expect(await indexesUsed("impressions", claimableFilter("i1", 1))).toEqual(["impression_id_unique"]);
});
