/**
 * The local spool: where acknowledged events wait while MongoDB is unreachable. Append-only
 * segment files of length- and checksum-framed records, each written whole and fsync'd before the
 * write is acknowledged; bounded in size (a full spool refuses, it never drops). A write that
 * fails part-way (a full disk, an I/O error, a short write) is cut back to the last whole record
 * and refused, so nothing after it lands behind a torn record. Draining replays records in order
 * and deletes a segment once every record in it is in MongoDB; a record replayed twice (after a
 * crash mid-drain) is recognised by its event ids, so each event lands exactly once.
 */
import { allEnded } from "./event-writer.js";
import * as fs from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import type { TrackedEvent } from "../../core/batch.js";
import { DomainError } from "../../core/errors.js";

/** The file operations the spool makes; tests put a faulty disk behind them. */
export interface SpoolFiles {
  openSync(path: string, flags: string): number;
  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number;
  fsyncSync(fd: number): void;
  ftruncateSync(fd: number, length: number): void;
  closeSync(fd: number): void;
}

const NODE_FILES: SpoolFiles = {
  openSync: (path, flags) => fs.openSync(path, flags),
  writeSync: (fd, buffer, offset, length, position) => fs.writeSync(fd, buffer, offset, length, position),
  fsyncSync: (fd) => fs.fsyncSync(fd),
  ftruncateSync: (fd, length) => fs.ftruncateSync(fd, length),
  closeSync: (fd) => fs.closeSync(fd),
};

export interface SpoolOptions {
  dir: string;
  /** Refuse new records (RESOURCE_EXHAUSTED) beyond this many bytes on disk. */
  maxBytes: number;
  /** A new segment is started past this size, so draining can free space as it goes. */
  segmentBytes?: number;
  /** Where the bytes go (default: node:fs). */
  files?: SpoolFiles;
}

/** Events replayed per write at most (see drain). */
const DRAIN_EVENTS = 1_000;
/** Replay writes in flight at once (see drain). */
const DRAIN_WRITES = 3;
const HEADER = 8; // u32 length, u32 crc32 of the payload
const SEGMENT = /^segment-(\d{12})\.log$/;
/** Every payload is a JSON array: a cheap first test when looking for a record past a torn one. */
const PAYLOAD_START = 0x5b; // "["
/** Codes of a disk (or quota) with no room left: the spool is full, RESOURCE_EXHAUSTED. */
const FULL_CODES = new Set(["ENOSPC", "EDQUOT", "EFBIG"]);

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

/** The whole record starting at `at`, if there is one. */
function recordAt(data: Buffer, at: number): Buffer | undefined {
  if (at + HEADER + 1 > data.length) return undefined;
  const end = at + HEADER + data.readUInt32LE(at);
  if (end > data.length || data[at + HEADER] !== PAYLOAD_START) return undefined;
  const payload = data.subarray(at + HEADER, end);
  return crc32(payload) === data.readUInt32LE(at + 4) ? payload : undefined;
}

/**
 * The whole records in a segment's bytes. A torn record (an append cut short by a crash or a
 * full disk, never acknowledged) is skipped: the records after it are found again by their
 * framing, so one bad write never hides the acknowledged ones behind it. `validBytes` ends after
 * the last whole record.
 */
export function readRecords(data: Buffer): { records: Buffer[]; validBytes: number; tornBytes: number } {
  const records: Buffer[] = [];
  let at = 0;
  let validBytes = 0;
  let tornBytes = 0;
  while (at + HEADER < data.length) {
    const payload = recordAt(data, at);
    if (payload) {
      records.push(payload);
      at += HEADER + payload.length;
      validBytes = at;
      continue;
    }
    // Resynchronise on the next position that frames a whole record.
    let next = at + 1;
    while (next + HEADER < data.length && recordAt(data, next) === undefined) next++;
    tornBytes += Math.min(next, data.length) - at;
    at = next;
  }
  return { records, validBytes, tornBytes };
}

/** What a failed append tells the caller: full (RESOURCE_EXHAUSTED) or the disk failing (UNAVAILABLE). Never an acknowledgement. */
function spoolFailure(error: unknown): DomainError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code !== undefined && FULL_CODES.has(code)) {
    return new DomainError("resource_exhausted", `storage is unavailable and the local spool's disk is full (${code}); the events were not accepted, retry later`);
  }
  return new DomainError("unavailable", `storage is unavailable and the local spool could not write (${code ?? (error instanceof Error ? error.message : String(error))}); the events were not accepted, retry later`);
}

interface Segment {
  seq: number;
  /** Whole records in it, and their bytes (torn bytes are not counted). */
  records: number;
  bytes: number;
}

export class Spool {
  private readonly segments: Segment[] = [];
  /** The segment appends go to, and the offset after its last whole record. */
  private active: { segment: Segment; fd: number; end: number } | undefined;
  private draining: Promise<number> | undefined;
  private readonly files: SpoolFiles;

  private constructor(private readonly options: Required<Omit<SpoolOptions, "files">>, files: SpoolFiles) {
    this.files = files;
  }

  /** Opens (creating) the directory and takes stock of what a previous process left behind. */
  static open(options: SpoolOptions): Spool {
    const spool = new Spool({ segmentBytes: options.segmentBytes ?? 4 * 1024 * 1024, dir: options.dir, maxBytes: options.maxBytes }, options.files ?? NODE_FILES);
    fs.mkdirSync(options.dir, { recursive: true });
    for (const name of fs.readdirSync(options.dir).sort()) {
      const m = SEGMENT.exec(name);
      if (!m) continue;
      const { records, validBytes } = readRecords(fs.readFileSync(join(options.dir, name)));
      // Appends never go to an earlier run's segment, so its torn bytes (if any) stay where
      // they are and are skipped when it is replayed.
      spool.segments.push({ seq: Number(m[1]), records: records.length, bytes: validBytes });
    }
    return spool;
  }

  /** Records (batches) waiting to reach MongoDB: exactly the whole records on disk. */
  get pendingRecords(): number {
    return this.segments.reduce((n, s) => n + s.records, 0);
  }

  get pendingBytes(): number {
    return this.segments.reduce((n, s) => n + s.bytes, 0);
  }

  private path(seq: number): string {
    return join(this.options.dir, `segment-${String(seq).padStart(12, "0")}.log`);
  }

  private closeActive(): void {
    if (!this.active) return;
    const { fd } = this.active;
    this.active = undefined;
    try {
      this.files.closeSync(fd);
    } catch {
      // Everything in it was fsync'd already; a failing close loses nothing.
    }
  }

  private openSegment(): { segment: Segment; fd: number; end: number } {
    const seq = (this.segments[this.segments.length - 1]?.seq ?? 0) + 1;
    const fd = this.files.openSync(this.path(seq), "wx");
    try {
      const dir = this.files.openSync(this.options.dir, "r");
      try {
        this.files.fsyncSync(dir); // the new file's name is durable too
      } finally {
        this.files.closeSync(dir);
      }
    } catch (error) {
      this.files.closeSync(fd);
      fs.rmSync(this.path(seq), { force: true });
      throw error;
    }
    const segment = { seq, records: 0, bytes: 0 };
    this.segments.push(segment);
    return { segment, fd, end: 0 };
  }

  /**
   * Appends one batch durably (written whole and fsync'd) or throws: RESOURCE_EXHAUSTED when the
   * spool or its disk is full, UNAVAILABLE when the disk fails. A write that fails part-way is cut
   * back to the last whole record first; if even that fails, the segment is closed for appends
   * and the next batch starts a new one (replay skips the torn bytes).
   */
  append(events: readonly TrackedEvent[]): void {
    const record = encode(events);
    if (this.pendingBytes + record.length > this.options.maxBytes) {
      throw new DomainError("resource_exhausted", `storage is unavailable and the local spool is full (${this.options.maxBytes} bytes, SPOOL_MAX_BYTES); the events were not accepted, retry later`);
    }
    if (this.active && this.active.end >= this.options.segmentBytes) this.closeActive();
    try {
      this.active ??= this.openSegment();
    } catch (error) {
      throw spoolFailure(error);
    }
    const active = this.active;
    try {
      let written = 0;
      while (written < record.length) {
        const n = this.files.writeSync(active.fd, record, written, record.length - written, active.end + written);
        if (n <= 0) throw Object.assign(new Error("the disk took no bytes"), { code: "ENOSPC" });
        written += n;
      }
      this.files.fsyncSync(active.fd);
    } catch (error) {
      try {
        this.files.ftruncateSync(active.fd, active.end);
        this.files.fsyncSync(active.fd);
      } catch {
        this.closeActive();
      }
      throw spoolFailure(error);
    }
    active.end += record.length;
    active.segment.records++;
    active.segment.bytes += record.length;
  }

  /**
   * Replays every record, oldest first, through `write` (which must be idempotent by event id, and
   * take repeats of an event id within one call), deleting each segment once every whole record
   * in it is written. Stops at the first failure, leaving the rest for the next call. One drain at
   * a time; returns the number of records replayed.
   */
  drain(write: (events: TrackedEvent[]) => Promise<void>): Promise<number> {
    this.draining ??= (async () => {
      let replayed = 0;
      try {
        while (this.segments.length > 0) {
          const segment = this.segments[0]!;
          // Appends go on in a fresh segment while this one is replayed.
          if (this.active?.segment === segment) this.closeActive();
          const path = this.path(segment.seq);
          const { records, validBytes } = readRecords(fs.readFileSync(path));
          // What is on disk is the truth (the file is closed to appends now).
          segment.records = records.length;
          segment.bytes = validBytes;
          // Consecutive records go together, up to DRAIN_EVENTS events a write: after an outage
          // under unary load the spool holds thousands of one-event records, and one write per
          // record drained slower than clients filled it. DRAIN_WRITES groups are written at once
          // (event ids make any order exact): reads wait for an empty spool, and one write at a
          // time left them waiting through whole runs of outages on a busy machine.
          const groups: { events: TrackedEvent[]; members: number }[] = [];
          for (const payload of records) {
            const events = decode(payload);
            const last = groups[groups.length - 1];
            if (last && last.events.length + events.length <= DRAIN_EVENTS) {
              last.events.push(...events);
              last.members++;
            } else groups.push({ events: [...events], members: 1 });
          }
          let next = 0;
          let failed = false;
          const worker = async () => {
            while (next < groups.length && !failed) {
              const group = groups[next++]!;
              try {
                await write(group.events);
              } catch (error) {
                failed = true;
                throw error;
              }
              replayed += group.members;
            }
          };
          // Every write has ended before the drain does (the next drain starts from a quiet spool).
          await allEnded(Array.from({ length: Math.min(DRAIN_WRITES, groups.length) }, worker));
          fs.unlinkSync(path);
          this.segments.shift();
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
