import { appendFileSync, closeSync, fsyncSync, ftruncateSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from "node:fs";
import fc from "fast-check";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { TrackedEvent } from "../../../src/core/batch.js";
import { DomainError } from "../../../src/core/errors.js";
import { validateClick } from "../../../src/core/events.js";
import { readRecords, Spool, type SpoolFiles } from "../../../src/store/write/spool.js";

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
    expect((refused as DomainError).kind).toBe("resource_exhausted");
    expect((refused as DomainError).message).toContain("SPOOL_MAX_BYTES");
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

/**
 * A disk that fails on cue, for the spool's own file operations: writes that take only part of
 * the bytes, ENOSPC/EIO/EDQUOT at any byte offset, failing fsyncs and truncates. The bytes a
 * short write takes really land in the file, as on a full filesystem.
 */
class FaultyDisk implements SpoolFiles {
  /** Faults still to come, consumed one per write, fsync or truncate (undefined: none). */
  constructor(private readonly next: () => Fault | undefined) {}
  faults = 0;

  openSync(path: string, flags: string): number {
    return openSync(path, flags);
  }
  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number {
    const fault = this.next();
    if (fault?.kind === "short") {
      this.faults++;
      const part = Math.min(length - 1, Math.floor(fault.fraction * length));
      return part > 0 ? writeSync(fd, buffer, offset, part, position) : 0;
    }
    if (fault?.kind === "error") {
      this.faults++;
      // Some bytes may land before the error, as when a disk fills mid-write.
      const part = Math.floor(fault.fraction * length);
      if (part > 0) writeSync(fd, buffer, offset, part, position);
      throw Object.assign(new Error(`${fault.code}: injected`), { code: fault.code });
    }
    return writeSync(fd, buffer, offset, length, position);
  }
  fsyncSync(fd: number): void {
    const fault = this.next();
    if (fault?.kind === "fsync") {
      this.faults++;
      throw Object.assign(new Error("EIO: injected fsync failure"), { code: "EIO" });
    }
    fsyncSync(fd);
  }
  ftruncateSync(fd: number, length: number): void {
    const fault = this.next();
    if (fault?.kind === "truncate") {
      this.faults++;
      throw Object.assign(new Error("EIO: injected truncate failure"), { code: "EIO" });
    }
    ftruncateSync(fd, length);
  }
  closeSync(fd: number): void {
    closeSync(fd);
  }
}

type Fault = { kind: "short"; fraction: number } | { kind: "error"; code: "ENOSPC" | "EIO" | "EDQUOT"; fraction: number } | { kind: "fsync" } | { kind: "truncate" };

const faultArb: fc.Arbitrary<Fault | undefined> = fc.oneof(
  { weight: 6, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("short" as const), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("error" as const), code: fc.constantFrom("ENOSPC" as const, "EIO" as const, "EDQUOT" as const), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: "fsync" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "truncate" as const }) },
);

type Step = { op: "append"; events: number } | { op: "drain"; failAfter: number | undefined } | { op: "restart" };
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant("append" as const), events: fc.integer({ min: 1, max: 40 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("drain" as const), failAfter: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }) }) },
  { weight: 1, arbitrary: fc.constant({ op: "restart" as const }) },
);

/** The whole records the segment files hold right now (what the spool must report as pending). */
function recordsOnDisk(at: string): number {
  return readdirSync(at)
    .filter((name) => name.endsWith(".log"))
    .reduce((n, name) => n + readRecords(readFileSync(join(at, name))).records.length, 0);
}

describe("spool on a failing disk", () => {
  it("acknowledges only what it wrote whole: every acknowledged event replayed, nothing refused replayed, the pending count equal to the disk's whole records (random short writes, ENOSPC/EIO/EDQUOT at any offset, failed fsyncs and truncates, replays and restarts)", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { minLength: 5, maxLength: 40 }), fc.array(faultArb, { minLength: 1, maxLength: 200 }), fc.integer({ min: 150, max: 5_000 }), async (steps, faults, segmentBytes) => {
        const at = join(dir, `run-${run++}`);
        let f = 0;
        const disk = new FaultyDisk(() => faults[f++ % faults.length]);
        let spool = Spool.open({ dir: at, maxBytes: 1 << 24, segmentBytes, files: disk });
        const acked = new Set<string>();
        const refused = new Set<string>();
        const stored = new Map<string, number>(); // MongoDB's view: event id → times written (idempotent by id)
        let next = 0;
        const store = (events: TrackedEvent[]) => events.forEach((e) => stored.set(e.event.eventId, (stored.get(e.event.eventId) ?? 0) + 1));
        for (const step of steps) {
          if (step.op === "append") {
            const ids = Array.from({ length: step.events }, () => `e${next++}`);
            try {
              spool.append(ids.map(click));
              ids.forEach((id) => acked.add(id));
            } catch (error) {
              expect(error).toBeInstanceOf(DomainError);
              expect(["resource_exhausted", "unavailable"]).toContain((error as DomainError).kind);
              ids.forEach((id) => refused.add(id));
            }
          } else if (step.op === "drain") {
            let writes = 0;
            await spool
              .drain(async (events) => {
                if (step.failAfter !== undefined && writes++ >= step.failAfter) throw new Error("storage went away");
                store(events);
              })
              .catch(() => undefined);
          } else {
            spool.close();
            spool = Spool.open({ dir: at, maxBytes: 1 << 24, segmentBytes, files: disk });
          }
          expect(spool.pendingRecords, "pending = whole records on disk").toBe(recordsOnDisk(at));
        }
        spool.close();
        // After a restart on a healthy disk, a full drain empties it.
        const last = Spool.open({ dir: at, maxBytes: 1 << 24, segmentBytes });
        await last.drain(async (events) => store(events));
        expect(last.pendingRecords).toBe(0);
        expect(last.pendingBytes).toBe(0);
        expect(readdirSync(at)).toEqual([]);
        expect([...acked].filter((id) => !stored.has(id)), "acknowledged but never replayed").toEqual([]);
        // A refused batch is not replayed, except where the disk took it whole and then failed
        // both its fsync and the truncate that would cut it back (it is then stored, once).
        const refusedStored = [...refused].filter((id) => stored.has(id));
        if (refusedStored.length > 0) expect(disk.faults).toBeGreaterThan(0);
        for (const id of [...stored.keys()]) expect(acked.has(id) || refused.has(id)).toBe(true);
      }),
      { numRuns: 150, seed: 20261206 },
    );
  });

  it("after a failed write, later acknowledged batches are replayed: nothing lands behind a torn record", async () => {
    const faults: (Fault | undefined)[] = [undefined, undefined, { kind: "short", fraction: 0.5 }, { kind: "error", code: "ENOSPC", fraction: 0 }];
    let f = 0;
    const spool = Spool.open({ dir, maxBytes: 1 << 20, files: new FaultyDisk(() => faults[f++]) });
    spool.append([click("before")]);
    expect(() => spool.append([click("torn")])).toThrow(/disk is full \(ENOSPC\)/);
    spool.append([click("after-1")]);
    spool.append([click("after-2")]);
    expect(spool.pendingRecords).toBe(3);
    spool.close();
    const reopened = Spool.open({ dir, maxBytes: 1 << 20 });
    expect(reopened.pendingRecords).toBe(3);
    const ids: string[] = [];
    await reopened.drain(async (events) => void ids.push(...events.map((e) => e.event.eventId)));
    expect(ids).toEqual(["before", "after-1", "after-2"]);
  });

  it("skips a torn record in the middle of a segment and replays the records after it", async () => {
    const spool = Spool.open({ dir, maxBytes: 1 << 20 });
    spool.append([click("a")]);
    spool.close();
    const [name] = readdirSync(dir);
    const torn = Buffer.from([120, 0, 0, 0, 9, 9, 9, 9, 0x5b, 1, 2, 3]); // a header promising 120 bytes, cut short
    appendFileSync(join(dir, name!), torn);
    const after = Spool.open({ dir: join(dir, "other"), maxBytes: 1 << 20 });
    after.append([click("b")]);
    after.close();
    const other = join(dir, "other", readdirSync(join(dir, "other"))[0]!);
    appendFileSync(join(dir, name!), readFileSync(other));
    rmSync(join(dir, "other"), { recursive: true });
    const reopened = Spool.open({ dir, maxBytes: 1 << 20 });
    expect(reopened.pendingRecords).toBe(2);
    const ids: string[] = [];
    await reopened.drain(async (events) => void ids.push(...events.map((e) => e.event.eventId)));
    expect(ids).toEqual(["a", "b"]);
    expect(readdirSync(dir)).toEqual([]);
  });
});
