/**
 * The comparison through the service on the built-in generator's data (the traffic `load`
 * sends: users split 50/50 by a hash, Pareto activity): no sample-ratio alarm, since the test is
 * on users, who are what is randomised; while a 58/42 split of users and an expected variant that
 * gets no users are flagged.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chunks, generateEvents, toStreamEvent, type DatasetEvent } from "../../src/cli/traffic-generator.js";
import { fnv1a } from "../../src/cli/traffic-random.js";
import { renderComparison } from "../../src/cli/commands/report.js";
import { createStyle } from "../../src/cli/format.js";
import { startHarness, type Harness } from "../support/harness.js";

const DATASET = { events: 30_000, days: 14, users: 2_000, seed: 11 };

async function load(h: Harness, events: Iterable<DatasetEvent>): Promise<void> {
  for (const batch of chunks(events, 1000)) {
    const res = await h.client.logEvents({ events: batch.map(toStreamEvent) });
    expect(res.rejected).toBe(0n);
  }
}

describe("the comparison on the generator's data", () => {
  let fair: Harness;
  let skewed: Harness;
  beforeAll(async () => {
    [fair, skewed] = await Promise.all([startHarness(), startHarness()]);
    await load(fair, generateEvents(DATASET));
    // Move 16% of search_v2's users to search_v1 (whole users, all their events): 58/42 by users.
    const moved = (userId: string) => fnv1a(`move:${userId}`) % 100 < 16;
    const skew = function* () {
      for (const e of generateEvents(DATASET)) yield e.variant === "search_v2" && moved(e.userId) ? { ...e, variant: "search_v1" } : e;
    };
    await load(skewed, skew());
  }, 180_000);
  afterAll(async () => {
    await Promise.all([fair?.close(), skewed?.close()]);
  });

  it("raises no sample-ratio alarm on a fair split of users, although searches split unevenly", async () => {
    const c = await fair.client.getVariantComparison({ days: 30 });
    const [v1, v2] = [c.variants.search_v1!, c.variants.search_v2!];
    const users = Number(v1.users) + Number(v2.users);
    expect(users).toBeGreaterThan(1000);
    expect(c.srmDetected).toBe(false);
    expect(c.srmPValue!).toBeGreaterThan(0.001);
    expect(c.trustworthy).toBe(true);
    expect(c.usersInSeveralVariants).toBe(0n);
    // Heavy users make searches per arm lopsided: the old search-level test would have alarmed.
    const searchShare = Number(v1.totalImpressions) / (Number(v1.totalImpressions) + Number(v2.totalImpressions));
    const userShare = Number(v1.users) / users;
    expect(Math.abs(searchShare - 0.5)).toBeGreaterThan(Math.abs(userShare - 0.5));
    const text = renderComparison(c, createStyle(false));
    expect(text).toMatch(/^Sample ratio: +ok \(p = [\d.]+\): users search_v1 [\d,]+, search_v2 [\d,]+$/m);
    expect(text).not.toContain("MISMATCH");
  });

  it("flags a 58/42 split of users and an expected variant without users", async () => {
    const c = await skewed.client.getVariantComparison({ days: 30 });
    const [v1, v2] = [Number(c.variants.search_v1!.users), Number(c.variants.search_v2!.users)];
    const share = v1 / (v1 + v2);
    expect(share).toBeGreaterThan(0.55);
    expect(share).toBeLessThan(0.61);
    expect(c.srmDetected).toBe(true);
    expect(c.trustworthy).toBe(false);
    expect(c.recommendation).toBe("");
    expect(c.recommendationReason).toBe("srm");
    expect(renderComparison(c, createStyle(false))).toMatch(/^Sample ratio: +MISMATCH \(p < 0\.001\): users are not split as expected/m);

    const dead = await fair.client.getVariantComparison({ days: 30, expectedSplit: { search_v1: 1, search_v2: 1, search_v3: 1 } });
    expect(dead.srmDetected).toBe(true);
    expect(dead.srmPValue!).toBeLessThan(0.001);
    expect(dead.recommendationReason).toBe("srm");
  });
});
