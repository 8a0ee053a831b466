/** Validated events (core/events.ts) for tests of the write path below validation. */
import type { ClickEvent, Impression } from "../../src/core/events.js";

export const impression = (id: string, over: Partial<Impression> = {}): Impression => ({
  eventId: id,
  impressionId: id,
  userId: "u1",
  sessionId: "s1",
  query: "shoes",
  variant: "A",
  resultsCount: 10,
  responseTimeMs: 12,
  timestamp: new Date("2026-12-01T10:00:00Z"),
  ...over,
});

export const click = (id: string, over: Partial<ClickEvent> = {}): ClickEvent => ({
  eventId: id,
  impressionId: null,
  userId: "u1",
  sessionId: "s1",
  productId: "p1",
  rank: 1,
  searchQuery: "shoes",
  variant: "A",
  responseTimeMs: 12,
  source: "SEARCH_RESULTS",
  timestamp: new Date("2026-12-01T10:00:01Z"),
  ...over,
});
