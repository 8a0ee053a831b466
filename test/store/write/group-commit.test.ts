/**
 * Group commit: concurrent writes are combined into batches of bounded events and size, at most
 * two batches in flight, and each caller learns only its own duplicates (or its batch's error).
 * The batch writer here records what it is given and finishes when the test says.
 */
import { BSON } from "mongodb";
import { describe, expect, it } from "vitest";
import type { WriteItem } from "../../../src/core/batch.js";
import { estimatedItemBytes, GroupCommit, type GroupCommitOptions } from "../../../src/store/write/group-commit.js";
import { batchDocuments } from "../../../src/store/write/event-writer.js";
import { pendingMarker } from "../../../src/store/rollups/rollup-delta.js";
import { click, impression } from "../../support/validated-events.js";

/** `n` impressions of a caller, indexed from 0 as a request's events are. */
const items = (caller: string, n: number): WriteItem[] => Array.from({ length: n }, (_, index) => ({ index, tracked: { kind: "impression", event: impression(`${caller}-${index}`) } }));

/** A batch writer that holds every batch until released; a batch's duplicates are its items whose event id is in `duplicateIds`. */
function heldWriter(duplicateIds: ReadonlySet<string> = new Set()) {
  const batches: { ids: string[]; release(error?: Error): void }[] = [];
  const write = (batch: readonly WriteItem[]) =>
    new Promise<Set<number>>((resolve, reject) => {
      const ids = batch.map((i) => i.tracked.event.eventId);
      batches.push({
        ids,
        release: (error) => (error ? reject(error) : resolve(new Set(batch.filter((i) => duplicateIds.has(i.tracked.event.eventId)).map((i) => i.index)))),
      });
    });
  return { batches, write };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe("GroupCommit", () => {
  it("writes two batches at once and combines the writes that wait meanwhile, each caller answered with its own duplicates", async () => {
    const writer = heldWriter(new Set(["c-5", "d-999", "a-0"]));
    const sizes: [number, number][] = [];
    const group = new GroupCommit(writer.write, { onBatch: (events, writes) => sizes.push([events, writes]) });
    const [a, b, c, d] = ["a", "b", "c", "d"].map((caller) => group.write(items(caller, 1_000)));
    await settle();
    expect(writer.batches.map((x) => x.ids.length), "two batches in flight, the rest waiting").toEqual([1_000, 1_000]);
    writer.batches[0]!.release();
    expect(await a).toEqual(new Set([0]));
    await settle();
    expect(writer.batches.length).toBe(3);
    expect(writer.batches[2]!.ids.length, "c and d in one batch").toBe(2_000);
    expect(writer.batches[2]!.ids[1_000]).toBe("d-0");
    writer.batches[2]!.release();
    writer.batches[1]!.release();
    expect(await c).toEqual(new Set([5]));
    expect(await d).toEqual(new Set([999]));
    expect(await b).toEqual(new Set());
    expect(sizes).toEqual([[1_000, 1], [2_000, 2], [1_000, 1]]);
  });

  it("combines no more than maxBatchEvents events, and a larger write still goes alone", async () => {
    const writer = heldWriter();
    const group = new GroupCommit(writer.write, { maxInFlight: 1, maxBatchEvents: 1_500 } satisfies GroupCommitOptions);
    const writes = [group.write(items("a", 10)), group.write(items("b", 2_000)), group.write(items("c", 700)), group.write(items("d", 700)), group.write(items("e", 200))];
    for (let i = 0; i < 4; i++) {
      await settle();
      writer.batches[i]!.release();
    }
    await Promise.all(writes);
    expect(writer.batches.map((x) => x.ids.length)).toEqual([10, 2_000, 1_400, 200]);
  });

  it("combines no more than maxBatchBytes of estimated size", async () => {
    const writer = heldWriter();
    const group = new GroupCommit(writer.write, { maxInFlight: 1, maxBatchBytes: 10_000, itemBytes: () => 1_000 });
    const writes = [group.write(items("a", 1)), group.write(items("b", 6)), group.write(items("c", 4)), group.write(items("d", 1)), group.write(items("e", 12))];
    for (let i = 0; i < 4; i++) {
      await settle();
      writer.batches[i]!.release();
    }
    await Promise.all(writes);
    expect(writer.batches.map((x) => x.ids.length), "b+c is 10 items (10,000 bytes); d would pass it; e alone is over").toEqual([1, 10, 1, 12]);
  });

  it("rejects every write of a failed batch with its error, and goes on with the next", async () => {
    const writer = heldWriter();
    const group = new GroupCommit(writer.write, { maxInFlight: 1 });
    const first = group.write(items("a", 3));
    const [b, c] = [group.write(items("b", 3)), group.write(items("c", 3))];
    const d = group.write(items("d", 3));
    await settle();
    writer.batches[0]!.release();
    await first;
    await settle();
    expect(writer.batches[1]!.ids.length).toBe(9);
    const failure = new Error("engine gone");
    writer.batches[1]!.release(failure);
    await expect(b).rejects.toBe(failure);
    await expect(c).rejects.toBe(failure);
    await expect(d).rejects.toBe(failure);
    const e = group.write(items("e", 2));
    await settle();
    writer.batches[2]!.release();
    expect(await e).toEqual(new Set());
  });
});

describe("estimatedItemBytes", () => {
  // Each character of these takes UTF-8's most bytes per UTF-16 unit (3), or a pair's 4 for 2.
  const wide = (n: number) => "€😀".repeat(Math.ceil(n / 3)).slice(0, n);

  it("is at least the stored document's BSON size, for short and for the longest fields", () => {
    const marker = pendingMarker();
    const cases: WriteItem[] = [
      { index: 0, tracked: { kind: "impression", event: impression("i") } },
      { index: 1, tracked: { kind: "click", event: click("c", { impressionId: "i" }) } },
      { index: 2, tracked: { kind: "impression", event: impression(wide(128), { impressionId: wide(128), userId: wide(256), sessionId: wide(256), query: wide(1_024), variant: "v".repeat(64), teams: Array.from({ length: 1_000 }, () => "t".repeat(64)), resultsCount: 1_000 }) } },
      { index: 3, tracked: { kind: "click", event: click(wide(128), { impressionId: wide(128), userId: wide(256), sessionId: wide(256), productId: wide(256), searchQuery: wide(1_024), variant: "v".repeat(64) }) } },
      { index: 4, tracked: { kind: "impression", event: impression("j", { sessionId: null, query: "" }) } },
      { index: 5, tracked: { kind: "click", event: click("d", { impressionId: "j", rank: 3, sessionId: null, searchQuery: "" }) } },
    ];
    // Stored together: a search with clicks in the batch is stored with its first and linked clicks.
    const { clicks, impressions } = batchDocuments(cases, marker);
    const stored = new Map([...clicks, ...impressions].map((x) => [x.index, x.doc]));
    expect(stored.get(4)).toHaveProperty("clicked", true);
    for (const item of cases) {
      const size = BSON.calculateObjectSize(stored.get(item.index)!);
      expect(estimatedItemBytes(item), `item ${item.index} (${size} bytes stored)`).toBeGreaterThanOrEqual(size);
      expect(estimatedItemBytes(item), `item ${item.index}: not wildly above`).toBeLessThan(3 * size + 500);
    }
  });
});
