import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { LogEventsRequestSchema, StreamEventsRequestSchema, type Event } from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import { generateEvents, toStreamEvent } from "../../src/cli/traffic-generator.js";
import { decodeEventBatch } from "../../src/server/event-decoding.js";
import { mulberry32 } from "../support/prng.js";

type Schema = typeof LogEventsRequestSchema | typeof StreamEventsRequestSchema;
const SCHEMAS: Schema[] = [LogEventsRequestSchema, StreamEventsRequestSchema];

/** decodeEventBatch gives exactly what fromBinary gives: the same message, or the same error (for a Buffer, as grpc-js hands it, and a plain Uint8Array). */
function expectSame(schema: Schema, bytes: Uint8Array): void {
  for (const input of [Buffer.from(bytes), new Uint8Array(bytes)]) {
    let expected: unknown;
    let expectedError: unknown;
    try {
      expected = fromBinary(schema, input);
    } catch (error) {
      expectedError = error;
    }
    if (expectedError !== undefined) expect(() => decodeEventBatch(schema, input)).toThrow(expectedError as Error);
    else expect(decodeEventBatch(schema, input)).toStrictEqual(expected);
  }
}

const random = mulberry32(23);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
const STRINGS = ["", "a", "blue shoes", "  Blue   SHOES ", "ünïcödé", "😀 emoji", "x".repeat(40), "é".repeat(40), "tab\tnew\nline", "\u0000nul", "\ufeffbom"];
const NUMBERS = [0, 1, 7, 127, 128, 300, 16_383, 16_384, 2 ** 21, 2 ** 28 - 1, 2 ** 28, 2 ** 31 - 1, -1, -(2 ** 31)];
const DOUBLES = [0, -0, 1, 12.5, 3_600_000, Number.NaN, Infinity, -Infinity, 1e-300, Number.MAX_VALUE];
const SECONDS = [0n, 1n, 1_764_000_000n, 2n ** 35n, 2n ** 48n, 2n ** 49n, 2n ** 62n, -1n, -62_135_596_800n];
const NANOS = [0, 1, 999_999_999, 1_000_000_000, -1, 2 ** 31 - 1];

function randomTimestamp() {
  return random() < 0.2 ? undefined : { seconds: pick(SECONDS), nanos: pick(NANOS) };
}

function randomEvent(): Record<string, unknown> {
  const r = random();
  if (r < 0.05) return {};
  if (r < 0.5) {
    return {
      kind: {
        case: "click",
        value: { userId: pick(STRINGS), sessionId: pick(STRINGS), productId: pick(STRINGS), rank: pick(NUMBERS), searchQuery: pick(STRINGS), variant: pick(STRINGS), responseTimeMs: pick(DOUBLES), source: pick([0, 1, 2, 5, 99, -3]), timestamp: randomTimestamp(), eventId: pick(STRINGS), impressionId: pick(STRINGS) },
      },
    };
  }
  return {
    kind: {
      case: "impression",
      value: { userId: pick(STRINGS), sessionId: pick(STRINGS), query: pick(STRINGS), variant: pick(STRINGS), resultsCount: pick(NUMBERS), responseTimeMs: pick(DOUBLES), timestamp: randomTimestamp(), eventId: pick(STRINGS), impressionId: pick(STRINGS), teams: random() < 0.7 ? [] : Array.from({ length: 1 + Math.floor(random() * 4) }, () => pick(STRINGS)) },
    },
  };
}

const encode = (schema: Schema, events: readonly Record<string, unknown>[]) => toBinary(schema, create(schema, { events: events as Event[] }));

describe("decoding LogEvents and StreamEvents requests", () => {
  it("gives what fromBinary gives for generated traffic", () => {
    const events = [...generateEvents({ events: 3000, days: 2, users: 300, seed: 5, now: Date.UTC(2026, 10, 20) })].map(toStreamEvent);
    for (const schema of SCHEMAS) for (let i = 0; i < events.length; i += 1000) expectSame(schema, encode(schema, events.slice(i, i + 1000)));
  });

  it("gives what fromBinary gives for every value form: unicode, negative and large numbers, NaN, odd timestamps, teams, empty events", () => {
    for (let round = 0; round < 300; round++) {
      const schema = pick(SCHEMAS);
      expectSame(schema, encode(schema, Array.from({ length: Math.floor(random() * 20) }, randomEvent)));
    }
    for (const schema of SCHEMAS) expectSame(schema, new Uint8Array(0));
  });

  it("gives what fromBinary gives (or its error) for cut, corrupted, extended and repeated encodings", () => {
    for (let round = 0; round < 1500; round++) {
      const schema = pick(SCHEMAS);
      const bytes = Array.from(encode(schema, Array.from({ length: 1 + Math.floor(random() * 5) }, randomEvent)));
      const mutation = random();
      if (mutation < 0.3) bytes.length = Math.floor(random() * bytes.length);
      else if (mutation < 0.6) for (let k = 0; k < 1 + random() * 3; k++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      else if (mutation < 0.8) bytes.splice(Math.floor(random() * bytes.length), 0, ...Array.from({ length: 1 + Math.floor(random() * 6) }, () => Math.floor(random() * 256)));
      else bytes.push(...bytes.slice(0, Math.floor(random() * bytes.length)));
      expectSame(schema, Uint8Array.from(bytes));
    }
  });

  it("leaves unknown fields, repeated timestamps and repeated oneof cases to fromBinary", () => {
    const w = new BinaryWriter();
    // An event with an unknown field, then a click whose timestamp comes twice (merged), then an
    // event whose case changes (the last wins), then an invalid UTF-8 query.
    w.tag(1, 2).fork().tag(9, 0).uint32(5).tag(1, 2).fork().tag(3, 2).string("p").join().join();
    w.tag(1, 2).fork().tag(1, 2).fork().tag(9, 2).fork().tag(1, 0).int64(100n).join().tag(9, 2).fork().tag(2, 0).int32(7).join().join().join();
    w.tag(1, 2).fork().tag(1, 2).fork().tag(3, 2).string("p").join().tag(2, 2).fork().tag(3, 2).string("q").join().join();
    w.tag(1, 2).fork().tag(2, 2).fork().tag(3, 2).bytes(Uint8Array.of(0x61, 0xff, 0x62)).join().join();
    for (const schema of SCHEMAS) expectSame(schema, w.finish());
    const merged = decodeEventBatch(StreamEventsRequestSchema, new BinaryWriter().tag(1, 2).fork().tag(1, 2).fork().tag(9, 2).fork().tag(1, 0).int64(100n).join().tag(9, 2).fork().tag(2, 0).int32(7).join().join().join().finish());
    expect(merged.events[0]!.kind.case === "click" && merged.events[0]!.kind.value.timestamp).toMatchObject({ seconds: 100n, nanos: 7 });
  });
});
