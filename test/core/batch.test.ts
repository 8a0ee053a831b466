import { describe, expect, it } from "vitest";
import { prepareBatch, requireBatchSize, settleBatch, tally } from "../../src/core/batch.js";
import { validateClick, validateImpression } from "../../src/core/events.js";

const now = new Date("2026-11-28T12:00:00Z");
type Item = { kind: "click" | "impression"; eventId?: string; impressionId?: string; rank?: number };
const validate = (item: Item) =>
  item.kind === "click"
    ? { kind: "click" as const, event: validateClick({ productId: "p", rank: item.rank ?? 0, searchQuery: "q", variant: "v", responseTimeMs: 1, source: "SEARCH_RESULTS", eventId: item.eventId }, now) }
    : { kind: "impression" as const, event: validateImpression({ query: "q", variant: "v", resultsCount: 1, responseTimeMs: 1, eventId: item.eventId, impressionId: item.impressionId }, now) };

describe("batches", () => {
  it("rejects bad items with prefixed fields, and treats in-batch repeats as duplicates", () => {
    const items: Item[] = [
      { kind: "click", eventId: "a" },
      { kind: "click", rank: -1 },
      { kind: "click", eventId: "a" },
      { kind: "impression", impressionId: "s1" },
      { kind: "impression", eventId: "other", impressionId: "s1" },
      { kind: "impression", eventId: "a" }, // clicks and impressions have separate key spaces
    ];
    const batch = prepareBatch(items, validate, (i, item) => `events[${i}].${item.kind}.`, 10);
    expect(batch.toWrite.map((w) => w.index)).toEqual([10, 13, 15]);
    expect(batch.decided).toEqual([
      { index: 11, outcome: "rejected", eventId: "", field: "events[11].click.rank", reason: "must be a non-negative integer, got -1" },
      { index: 12, outcome: "duplicate", eventId: "a" },
      { index: 14, outcome: "duplicate", eventId: "other" },
    ]);
    const outcomes = settleBatch(batch, new Set([15]));
    expect(outcomes.map((o) => o.outcome)).toEqual(["accepted", "rejected", "duplicate", "accepted", "duplicate", "duplicate"]);
    expect(tally(outcomes)).toEqual({ accepted: 2, duplicate: 3, rejected: 1 });
  });

  it("propagates failures that are not the item's fault", () => {
    expect(() =>
      prepareBatch([1], () => {
        throw new Error("boom");
      }, () => ""),
    ).toThrow("boom");
  });

  it("limits a batch to 1,000 events", () => {
    expect(() => requireBatchSize(1000)).not.toThrow();
    expect(() => requireBatchSize(1001)).toThrow(/events: must hold at most 1000 events per request, got 1001/);
  });
});
