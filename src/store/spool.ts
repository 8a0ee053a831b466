/**
 * The local spool: where acknowledged events wait while MongoDB is unreachable. Append-only
 * segment files of length- and checksum-framed records, each fsync'd before the write is
 * acknowledged; bounded in size (a full spool refuses, it never drops). Draining replays records
 * in order and deletes a segment once every record in it is in MongoDB; a record replayed twice
 * (after a crash mid-drain) is recognised by its event ids, so each event lands exactly once.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, truncateSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import type { TrackedEvent } from "../core/batch.js";
import { DomainError } from "../core/errors.js";

export interface SpoolOptions {
  dir: string;
  /** Refuse new records (UNAVAILABLE) beyond this many bytes on disk. */
  maxBytes: number;
  /** A new segment is started past this size, so draining can free space as it goes. */
  segmentBytes?: number;
}

/** Events replayed per write at most (see drain). */
const DRAIN_EVENTS = 1_000;
const HEADER = 8; // u32 length, u32 crc32 of the payload
const SEGMENT = /^segment-(\d{12})\.log$/;

function encode(events: readonly TrackedEvent[]): Buffer {
  const payload = Buffer.from(JSON.stringify(events.map((t) => ({ kind: t.kind, event: { ...t.event, timestamp: t.event.timestamp.getTime() } }))));
  const record = Buffer.allocUnsafe(HEADER + payload.length);
  record.writeUInt32LE(payload.length, 0);
  record.writeUInt32LE(crc32(payload), 4);
  payload.copy(record, HEADER);
  return record;
}

function decode(payload: Buffer): TrackedEvent[] {
  return (JSON.parse(payload.toString("utf8")) as { kind: TrackedEvent["kind"]; event: Record<string, unknown> }[]).map(
    (r) => ({ kind: r.kind, event: { ...r.event, timestamp: new Date(r.event.timestamp as number) } }) as TrackedEvent,
  );
}

/** The whole records in a segment file; a torn tail (a crash mid-append, never acknowledged) is cut off. */
function readRecords(path: string): { records: Buffer[]; validBytes: number } {
  const data = readFileSync(path);
  const records: Buffer[] = [];
  let at = 0;
  while (at + HEADER <= data.length) {
    const length = data.readUInt32LE(at);
    const end = at + HEADER + length;
    if (end > data.length) break;
    const payload = data.subarray(at + HEADER, end);
    if (crc32(payload) !== data.readUInt32LE(at + 4)) break;
    records.push(payload);
    at = end;
  }
  return { records, validBytes: at };
}

export class Spool {
  private segments: number[] = [];
  private active: { seq: number; fd: number; bytes: number } | undefined;
  private bytes = 0;
  private records = 0;
  private draining: Promise<number> | undefined;

  private constructor(private readonly options: Required<SpoolOptions>) {}

  /** Opens (creating) the directory and takes stock of what a previous process left behind. */
  static open(options: SpoolOptions): Spool {
    const spool = new Spool({ segmentBytes: 4 * 1024 * 1024, ...options });
    mkdirSync(options.dir, { recursive: true });
    for (const name of readdirSync(options.dir).sort()) {
      const m = SEGMENT.exec(name);
      if (!m) continue;
      const path = join(options.dir, name);
      const { records, validBytes } = readRecords(path);
      if (validBytes < statSync(path).size) truncateSync(path, validBytes);
      spool.segments.push(Number(m[1]));
      spool.bytes += validBytes;
      spool.records += records.length;
    }
    return spool;
  }

  /** Records waiting to reach MongoDB. */
  get pendingRecords(): number {
    return this.records;
  }

  get pendingBytes(): number {
    return this.bytes;
  }

  private path(seq: number): string {
    return join(this.options.dir, `segment-${String(seq).padStart(12, "0")}.log`);
  }

  private closeActive(): void {
    if (!this.active) return;
    closeSync(this.active.fd);
    this.active = undefined;
  }

  /** Appends one batch durably (fsync'd) or throws UNAVAILABLE when the spool is full. */
  append(events: readonly TrackedEvent[]): void {
    const record = encode(events);
    if (this.bytes + record.length > this.options.maxBytes) {
      throw new DomainError("unavailable", "storage is unavailable and the local spool is full; retry later");
    }
    if (this.active && this.active.bytes >= this.options.segmentBytes) this.closeActive();
    if (!this.active) {
      const seq = (this.segments[this.segments.length - 1] ?? 0) + 1;
      this.active = { seq, fd: openSync(this.path(seq), "a"), bytes: 0 };
      this.segments.push(seq);
      const dir = openSync(this.options.dir, "r");
      fsyncSync(dir); // the new file's name is durable too
      closeSync(dir);
    }
    writeSync(this.active.fd, record);
    fsyncSync(this.active.fd);
    this.active.bytes += record.length;
    this.bytes += record.length;
    this.records++;
  }

  /**
   * Replays every record, oldest first, through `write` (which must be idempotent by event id, and
 * take repeats of an event id within one call),
   * deleting each segment once it is fully written. Stops at the first failure, leaving the
   * rest for the next call. One drain at a time; returns the number of records replayed.
   */
  drain(write: (events: TrackedEvent[]) => Promise<void>): Promise<number> {
    this.draining ??= (async () => {
      let replayed = 0;
      try {
        while (this.segments.length > 0) {
          const seq = this.segments[0]!;
          // Appends go on in a fresh segment while this one is replayed.
          if (this.active?.seq === seq) this.closeActive();
          const path = this.path(seq);
          const { records, validBytes } = readRecords(path);
          // Consecutive records go together, up to DRAIN_EVENTS events a write: after an outage
          // under unary load the spool holds thousands of one-event records, and one write per
          // record drained slower than clients filled it.
          let group: TrackedEvent[] = [];
          let members = 0;
          const flush = async () => {
            if (members === 0) return;
            await write(group);
            replayed += members;
            group = [];
            members = 0;
          };
          for (const payload of records) {
            const events = decode(payload);
            if (group.length + events.length > DRAIN_EVENTS) await flush();
            group.push(...events);
            members++;
          }
          await flush();
          unlinkSync(path);
          this.segments.shift();
          this.bytes -= validBytes;
          this.records -= records.length;
        }
      } finally {
        this.draining = undefined;
      }
      return replayed;
    })();
    return this.draining;
  }

  close(): void {
    this.closeActive();
  }
}
