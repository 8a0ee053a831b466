import { appendFileSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { TrackedEvent } from "../../src/core/batch.js";
import { DomainError } from "../../src/core/errors.js";
import { validateClick } from "../../src/core/events.js";
import { Spool } from "../../src/store/spool.js";

const click = (eventId: string): TrackedEvent => ({
  kind: "click",
  event: validateClick({ eventId, userId: "u", productId: "p", rank: 2, searchQuery: "q", variant: "v", responseTimeMs: 1.5, source: "SEARCH_RESULTS" }, new Date("2026-11-28T10:00:00Z")),
});

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "ca-spool-"));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe("spool", () => {
  it("keeps records across reopening and replays them in order, exactly as written", async () => {
    const first = Spool.open({ dir, maxBytes: 1 << 20, segmentBytes: 200 });
    for (let i = 0; i < 5; i++) first.append([click(`e${i}`), click(`f${i}`)]);
    first.close();
    expect(readdirSync(dir).length).toBeGreaterThan(1); // small segments: several files
    const reopened = Spool.open({ dir, maxBytes: 1 << 20 });
    expect(reopened.pendingRecords).toBe(5);
    const seen: TrackedEvent[][] = [];
    expect(await reopened.drain(async (events) => void seen.push(events))).toBe(5);
    expect(seen.map((b) => b.map((t) => t.event.eventId))).toEqual([0, 1, 2, 3, 4].map((i) => [`e${i}`, `f${i}`]));
    expect(seen[0]![0]).toEqual(click("e0"));
    expect(reopened.pendingRecords).toBe(0);
    expect(reopened.pendingBytes).toBe(0);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("cuts off a torn tail left by a crash mid-append", async () => {
    const spool = Spool.open({ dir, maxBytes: 1 << 20 });
    spool.append([click("kept")]);
    spool.close();
    appendFileSync(join(dir, readdirSync(dir)[0]!), Buffer.from([200, 0, 0, 0, 1, 2, 3])); // a header promising 200 bytes
    const reopened = Spool.open({ dir, maxBytes: 1 << 20 });
    expect(reopened.pendingRecords).toBe(1);
    const ids: string[] = [];
    await reopened.drain(async (events) => void ids.push(...events.map((e) => e.event.eventId)));
    expect(ids).toEqual(["kept"]);
  });

  it("refuses rather than drops when full", () => {
    const spool = Spool.open({ dir, maxBytes: 600 });
    spool.append([click("a")]);
    let refused: unknown;
    try {
      for (let i = 0; i < 10; i++) spool.append([click(`b${i}`)]);
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(DomainError);
    expect((refused as DomainError).kind).toBe("unavailable");
    expect(spool.pendingBytes).toBeLessThanOrEqual(600);
  });

  it("stops at a failed write and replays from there next time", async () => {
    const spool = Spool.open({ dir, maxBytes: 1 << 20, segmentBytes: 1 });
    spool.append([click("a")]);
    spool.append([click("b")]); // a segment of its own
    let calls = 0;
    await expect(spool.drain(async () => {
      if (++calls === 2) throw new Error("storage went away");
    })).rejects.toThrow("storage went away");
    expect(spool.pendingRecords).toBe(1); // "b"'s segment stays until wholly written
    const ids: string[] = [];
    await spool.drain(async (events) => void ids.push(...events.map((e) => e.event.eventId)));
    expect(ids).toEqual(["b"]);
  });

  it("replays consecutive records together, in order, up to 1,000 events a write", async () => {
    const spool = Spool.open({ dir, maxBytes: 64 << 20 });
    // After an outage under unary load: many one-event records (and a few large ones).
    for (let i = 0; i < 1500; i++) spool.append([click(`one-${i}`)]);
    spool.append(Array.from({ length: 700 }, (_, i) => click(`big-${i}`)));
    spool.append([click("last")]);
    const writes: string[][] = [];
    expect(await spool.drain(async (events) => void writes.push(events.map((e) => e.event.eventId)))).toBe(1502);
    expect(writes.map((w) => w.length)).toEqual([1000, 500, 701]);
    expect(writes.flat()).toEqual([...Array.from({ length: 1500 }, (_, i) => `one-${i}`), ...Array.from({ length: 700 }, (_, i) => `big-${i}`), "last"]);
    expect(spool.pendingRecords).toBe(0);
  });
});
