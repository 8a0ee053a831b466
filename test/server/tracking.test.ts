import { timestampFromDate, timestampDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ClickSource, Status, type ServiceError } from "../../src/client/index.js";
import { startHarness, type Harness } from "../support/harness.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const click = { userId: "u1", productId: "p1", rank: 2, searchQuery: "blue shoes", variant: "search_v1", responseTimeMs: 45.2 };
const impression = { userId: "u1", query: "blue shoes", variant: "search_v1", resultsCount: 42, responseTimeMs: 45.2 };

async function expectStatus(promise: Promise<unknown>, code: Status, detail: RegExp): Promise<void> {
  const error = (await promise.then(
    () => undefined,
    (e: unknown) => e,
  )) as ServiceError | undefined;
  expect(error, "call should have failed").toBeDefined();
  expect(error!.code).toBe(code);
  expect(error!.details).toMatch(detail);
}

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());
beforeEach(async () => {
  await h.server.store.reset();
});

describe("LogClick", () => {
  it("stores the click in the users' schema and echoes it", async () => {
    const res = await h.client.logClick({ ...click, sessionId: "s1", source: ClickSource.RECOMMENDATIONS });
    expect(res.eventId).toMatch(UUID);
    expect(res).toMatchObject({ userId: "u1", productId: "p1", rank: 2 });
    const doc = await h.server.store.collections.clicks.findOne({}, { projection: { _id: 0 } });
    expect(doc).toEqual({
      event_id: res.eventId,
      user_id: "u1",
      product_id: "p1",
      rank: 2,
      search_query: "blue shoes",
      query_normalized: "blue shoes",
      variant: "search_v1",
      response_time_ms: 45.2,
      session_id: "s1",
      source: "RECOMMENDATIONS",
      timestamp: timestampDate(res.timestamp!),
      // the marker of the write that stored it (see src/store/rollups/repair.ts)
      b: expect.stringMatching(/^\d{15}:/),
    });
    expect(doc!.timestamp).toBeInstanceOf(Date);
  });

  it("defaults source to SEARCH_RESULTS, timestamp to now and session to none", async () => {
    const before = Date.now();
    const res = await h.client.logClick(click);
    const doc = await h.server.store.collections.clicks.findOne({ event_id: res.eventId });
    expect(doc!.source).toBe("SEARCH_RESULTS");
    expect(doc!.session_id).toBeNull();
    expect(doc!.timestamp.getTime()).toBeGreaterThanOrEqual(before - 1);
    expect(doc!.timestamp.getTime()).toBeLessThanOrEqual(Date.now() + 1);
  });

  it("keeps a client timestamp for backfills", async () => {
    const when = new Date(Date.now() - 3 * 24 * 3600 * 1000);
    const res = await h.client.logClick({ ...click, timestamp: timestampFromDate(when) });
    expect(timestampDate(res.timestamp!).getTime()).toBe(when.getTime());
  });

  it("takes user and session from metadata when the fields are empty", async () => {
    const res = await h.client.logClick({ ...click, userId: "" }, { userId: "from-header", sessionId: "sess-h" });
    expect(res.userId).toBe("from-header");
    const doc = await h.server.store.collections.clicks.findOne({ event_id: res.eventId });
    expect(doc).toMatchObject({ user_id: "from-header", session_id: "sess-h" });
  });

  it("prefers the request field over metadata", async () => {
    const res = await h.client.logClick({ ...click, userId: "field" }, { userId: "header" });
    expect(res.userId).toBe("field");
  });

  it("generates and returns a user id when none is given", async () => {
    const res = await h.client.logClick({ ...click, userId: "" });
    expect(res.userId).toMatch(UUID);
    expect(await h.server.store.collections.clicks.countDocuments({ user_id: res.userId })).toBe(1);
  });
});

describe("LogImpression", () => {
  it("stores the impression and returns its id", async () => {
    const res = await h.client.logImpression({ ...impression, sessionId: "s9" });
    expect(res.impressionId).toMatch(UUID);
    expect(res).toMatchObject({ userId: "u1", query: "blue shoes", variant: "search_v1" });
    const doc = await h.server.store.collections.impressions.findOne({}, { projection: { _id: 0, event_id: 0 } });
    expect(doc).toEqual({
      impression_id: res.impressionId,
      user_id: "u1",
      query: "blue shoes",
      query_normalized: "blue shoes",
      variant: "search_v1",
      results_count: 42,
      response_time_ms: 45.2,
      session_id: "s9",
      timestamp: timestampDate(res.timestamp!),
      b: expect.stringMatching(/^\d{15}:/),
    });
  });

  it("stores whole-number latencies as BSON doubles", async () => {
    await h.client.logImpression({ ...impression, responseTimeMs: 40 });
    expect(await h.server.store.collections.impressions.countDocuments({ response_time_ms: { $type: "double" } })).toBe(1);
  });
});

describe("bad input is INVALID_ARGUMENT naming field and rule, and writes nothing", () => {
  const long = (n: number) => "x".repeat(n);
  const future = timestampFromDate(new Date(Date.now() + 10 * 60 * 1000));
  const clickCases: [string, Record<string, unknown>, RegExp][] = [
    ["empty product_id", { productId: "" }, /product_id: is required/],
    ["over-long product_id", { productId: long(257) }, /product_id: must be at most 256 characters/],
    ["over-long user_id", { userId: long(257) }, /user_id: must be at most 256/],
    ["control characters in user_id", { userId: "a\u0001b" }, /user_id: must not contain control characters/],
    ["over-long session_id", { sessionId: long(257) }, /session_id: must be at most 256/],
    ["empty search_query", { searchQuery: "" }, /search_query: is required/],
    ["blank search_query", { searchQuery: "   " }, /search_query: is required and must not be blank/],
    ["over-long search_query", { searchQuery: long(1025) }, /search_query: must be at most 1024/],
    ["empty variant", { variant: "" }, /variant: must match/],
    ["variant with a space", { variant: "search v1" }, /variant: must match \[A-Za-z0-9_.-\]\{1,64\}/],
    ["over-long variant", { variant: long(65) }, /variant: must match/],
    ["negative rank", { rank: -1 }, /rank: must be a non-negative integer/],
    ["negative response_time_ms", { responseTimeMs: -0.5 }, /response_time_ms: must be >= 0/],
    ["NaN response_time_ms", { responseTimeMs: NaN }, /response_time_ms: must be a finite number/],
    ["infinite response_time_ms", { responseTimeMs: Infinity }, /response_time_ms: must be a finite number/],
    ["timestamp in the future", { timestamp: future }, /timestamp: must not be more than 5 minutes in the future/],
    ["unknown source", { source: 99 }, /source: must be one of/],
  ];
  it.each(clickCases)("LogClick: %s", async (_name, patch, detail) => {
    await expectStatus(h.client.logClick({ ...click, ...patch }), Status.INVALID_ARGUMENT, detail);
    expect(await h.server.store.collections.clicks.countDocuments()).toBe(0);
  });

  it("LogClick: an over-long x-user-id header is refused too", async () => {
    await expectStatus(h.client.logClick({ ...click, userId: "" }, { userId: long(300) }), Status.INVALID_ARGUMENT, /user_id: must be at most 256/);
  });

  it("lengths count Unicode characters, not UTF-16 units", async () => {
    const emoji = "😀".repeat(256); // 512 UTF-16 units, 256 characters
    await expect(h.client.logClick({ ...click, productId: emoji })).resolves.toBeDefined();
    await expectStatus(h.client.logClick({ ...click, productId: emoji + "😀" }), Status.INVALID_ARGUMENT, /product_id: must be at most 256/);
  });

  const impressionCases: [string, Record<string, unknown>, RegExp][] = [
    ["empty query", { query: "" }, /query: is required/],
    ["over-long query", { query: long(1025) }, /query: must be at most 1024/],
    ["negative results_count", { resultsCount: -3 }, /results_count: must be a non-negative integer/],
    ["bad variant", { variant: "v$1" }, /variant: must match/],
    ["-Infinity response_time_ms", { responseTimeMs: -Infinity }, /response_time_ms: must be a finite number/],
    ["timestamp in the future", { timestamp: future }, /timestamp: must not be more than 5 minutes/],
  ];
  it.each(impressionCases)("LogImpression: %s", async (_name, patch, detail) => {
    await expectStatus(h.client.logImpression({ ...impression, ...patch }), Status.INVALID_ARGUMENT, detail);
    expect(await h.server.store.collections.impressions.countDocuments()).toBe(0);
  });

  it("accepts a timestamp within the 5 minute skew", async () => {
    const soon = timestampFromDate(new Date(Date.now() + 4 * 60 * 1000));
    await expect(h.client.logImpression({ ...impression, timestamp: soon })).resolves.toBeDefined();
  });

  it("keeps serving after bad input", async () => {
    await expectStatus(h.client.logClick({ ...click, rank: -5 }), Status.INVALID_ARGUMENT, /rank/);
    await expect(h.client.logClick(click)).resolves.toMatchObject({ rank: 2 });
  });
});

describe("Reset", () => {
  it("is PERMISSION_DENIED when the server has no admin token", async () => {
    await h.client.logClick(click);
    await expectStatus(h.client.reset({}), Status.PERMISSION_DENIED, /CLICK_ANALYTICS_ADMIN_TOKEN/);
    expect(await h.server.store.collections.clicks.countDocuments()).toBe(1);
  });

  it("needs the configured token as a bearer token", async () => {
    const admin = await startHarness({ adminToken: "s3cret" });
    try {
      await admin.client.logClick(click);
      await admin.client.logImpression(impression);
      await expectStatus(admin.client.reset({}), Status.PERMISSION_DENIED, /Bearer/);
      await expectStatus(admin.client.reset({}, { metadata: { authorization: "Bearer wrong" } }), Status.PERMISSION_DENIED, /Bearer/);
      expect(await admin.server.store.collections.clicks.countDocuments()).toBe(1);
      const res = await admin.client.reset({}, { metadata: { authorization: "Bearer s3cret" } });
      expect(res.message).toMatch(/deleted/);
      expect(res.timestamp).toBeDefined();
      expect(await admin.server.store.collections.clicks.countDocuments()).toBe(0);
      expect(await admin.server.store.collections.impressions.countDocuments()).toBe(0);
    } finally {
      await admin.close();
    }
  });
});

describe("storage", () => {
  it("creates the seed indexes on both collections", async () => {
    for (const c of [h.server.store.collections.clicks, h.server.store.collections.impressions]) {
      const keys = (await c.indexes()).map((i) => JSON.stringify(i.key));
      expect(keys).toEqual(expect.arrayContaining(['{"user_id":1}', '{"variant":1}', '{"timestamp":1}', '{"user_id":1,"variant":1,"timestamp":1}']));
    }
  });
});
