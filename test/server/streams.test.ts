/**
 * Limits of request streams (StreamEvents): a stream that sends nothing for the idle timeout is
 * ended with DEADLINE_EXCEEDED (what it sent before stays written), and past the per-connection cap
 * a new stream is refused RESOURCE_EXHAUSTED at once instead of waiting in the client.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { createClickAnalyticsClient, Status, type ServiceError, type StreamBatch } from "../../src/client/index.js";
import { startHarness, type Harness } from "../support/harness.js";

const IDLE_MS = 1_000;
const CAP = 3;
let h: Harness;
beforeAll(async () => {
  h = await startHarness({ streamIdleTimeoutMs: IDLE_MS, streamsPerConnection: CAP });
});
afterAll(() => h?.close());

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
const batch = (id: string): StreamBatch => ({ events: [{ kind: { case: "click", value: { eventId: id, userId: "u", productId: "p", rank: 0, searchQuery: "q", variant: "v", responseTimeMs: 1 } } }] });

/** Sends `first` (if any), then nothing until `release` is called. */
function quietSource(first?: StreamBatch) {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  async function* batches(): AsyncIterable<StreamBatch> {
    if (first) yield first;
    await released;
  }
  return { batches: batches(), release };
}

it("ends a stream that sends nothing for the idle timeout with DEADLINE_EXCEEDED, keeping what it sent", async () => {
  const source = quietSource(batch("idle-sent"));
  const started = Date.now();
  const error = (await h.client.streamEvents(source.batches).catch((e: unknown) => e)) as ServiceError;
  const took = Date.now() - started;
  source.release();
  expect(error.code).toBe(Status.DEADLINE_EXCEEDED);
  expect(error.details).toMatch(/no message for 1000 ms \(STREAM_IDLE_TIMEOUT_MS\)/);
  expect(took).toBeGreaterThanOrEqual(IDLE_MS - 50);
  expect(took).toBeLessThan(IDLE_MS + 5_000);
  // The message sent before the idle time was written.
  expect((await h.client.getCtr({ days: 1 })).clicks).toBe(1n);
});

it("keeps a stream that sends more often than the idle timeout, however long it lasts", async () => {
  async function* slow(): AsyncIterable<StreamBatch> {
    for (let i = 0; i < 5; i++) {
      yield batch(`slow-${i}`);
      await pause(IDLE_MS / 2);
    }
  }
  const res = await h.client.streamEvents(slow());
  expect(res.accepted).toBe(5n);
  expect(res.batches).toBe(5n);
});

it(`refuses a stream past ${CAP} open on one connection with RESOURCE_EXHAUSTED at once, and takes new ones once a slot frees`, async () => {
  const client = createClickAnalyticsClient(h.server.address);
  const sources = Array.from({ length: CAP }, () => quietSource());
  try {
    // Long idle time is not reached here: each is released within the test.
    const open = sources.map((s) => client.streamEvents(s.batches).catch((e: unknown) => e as ServiceError));
    await pause(300); // the server has taken all three
    const started = Date.now();
    const refused = (await client.streamEvents(quietSource(batch("refused")).batches).catch((e: unknown) => e)) as ServiceError;
    expect(refused.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(refused.details).toMatch(/3 request streams are open on this connection already \(STREAMS_PER_CONNECTION\)/);
    expect(Date.now() - started).toBeLessThan(IDLE_MS);
    // Another connection has slots of its own (grpc-js shares one connection between clients with equal options unless told not to).
    const other = createClickAnalyticsClient(h.server.address, { channelOptions: { "grpc.use_local_subchannel_pool": 1 } });
    try {
      expect((await other.streamEvents([batch("other-connection")])).accepted).toBe(1n);
    } finally {
      other.close();
    }
    sources[0]!.release();
    const first = await open[0];
    expect("accepted" in (first as object) ? (first as { accepted: bigint }).accepted : -1n).toBe(0n);
    expect((await client.streamEvents([batch("after-release")])).accepted).toBe(1n);
  } finally {
    sources.forEach((s) => s.release());
    client.close();
  }
});
