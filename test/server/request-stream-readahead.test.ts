/**
 * A request stream's read-ahead: while a handler works on one message, the server decodes at most
 * a couple more, and the client is held back by HTTP/2 flow control. grpc-js decodes a message as
 * it arrives and hands it to a Readable whose default high-water mark is 16 messages; at the
 * bench's 1,000 events a message that kept ~16,000 decoded events per stream alive while the
 * store wrote one batch (48 MiB of the server's RSS at 300,000 events, 4 streams).
 */
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ClickAnalytics } from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import { createClickAnalyticsClient, type ClickAnalyticsClient, type StreamBatch } from "../../src/client/index.js";
import { SERVER_CHANNEL_OPTIONS } from "../../src/client/transport.js";
import { grpcService, type ServiceImpl } from "../../src/server/grpc-adapter.js";
import { createLogger } from "../../src/server/logger.js";

const MESSAGES = 40;
const EVENTS_PER_MESSAGE = 500;

let server: grpc.Server;
let client: ClickAnalyticsClient;
let decoded = 0;
let handled = 0;
let release!: () => void;
const released = new Promise<void>((r) => (release = r));

beforeAll(async () => {
  // StreamEvents takes one message, then waits (as for a store that has not answered yet).
  const streamEvents: ServiceImpl<typeof ClickAnalytics>["streamEvents"] = async (messages) => {
    for await (const message of messages) {
      handled++;
      if (handled === 1) await released;
      expect(message.events.length).toBe(EVENTS_PER_MESSAGE);
    }
    return { accepted: BigInt(handled * EVENTS_PER_MESSAGE), batches: BigInt(handled) };
  };
  const impl = new Proxy({ streamEvents }, { get: (target, name) => (name === "streamEvents" ? target.streamEvents : () => Promise.reject(new Error("not served here"))) });
  const { definition, implementation } = grpcService(ClickAnalytics, impl as unknown as ServiceImpl<typeof ClickAnalytics>, { logger: createLogger("silent") });
  const method = definition.streamEvents!;
  const deserialize = method.requestDeserialize;
  method.requestDeserialize = (bytes: Buffer) => {
    decoded++;
    return deserialize(bytes);
  };
  server = new grpc.Server(SERVER_CHANNEL_OPTIONS);
  server.addService(definition, implementation);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  client = createClickAnalyticsClient(`127.0.0.1:${port}`);
});
afterAll(() => {
  client?.close();
  server?.forceShutdown();
});

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

it("decodes at most a few messages ahead of a handler that is still working, and loses none", async () => {
  let sent = 0;
  async function* batches(): AsyncIterable<StreamBatch> {
    for (let m = 0; m < MESSAGES; m++) {
      sent++;
      yield {
        events: Array.from({ length: EVENTS_PER_MESSAGE }, (_, i) => ({
          kind: { case: "impression", value: { eventId: `m${m}-e${i}`, impressionId: `m${m}-e${i}`, userId: `user-${i}`, query: `query number ${i}`, variant: "control", resultsCount: 10, responseTimeMs: 12 } },
        })),
      };
    }
  }
  const answer = client.streamEvents(batches());
  // Wait until the client is held back: nothing more is sent or decoded for a while.
  let last = -1;
  for (let stable = 0; stable < 5; ) {
    await pause(100);
    stable = decoded === last ? stable + 1 : 0;
    last = decoded;
  }
  expect(handled).toBe(1);
  // The one being handled, one waiting to be read, one decoded from the last data frame.
  expect(decoded).toBeGreaterThanOrEqual(2);
  expect(decoded).toBeLessThanOrEqual(3);
  expect(sent).toBeLessThan(MESSAGES);
  release();
  const res = await answer;
  expect(res.batches).toBe(BigInt(MESSAGES));
  expect(handled).toBe(MESSAGES);
  expect(decoded).toBe(MESSAGES);
});
