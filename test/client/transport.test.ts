import { describe, expect, it } from "vitest";
import { CLIENT_CHANNEL_OPTIONS, MAX_REQUEST_BYTES, SERVER_CHANNEL_OPTIONS } from "../../src/client/transport.js";

describe("transport settings agree on both sides", () => {
  it("the client never pings more often than the server permits", () => {
    // A client pinging faster than grpc.http2.min_ping_interval_without_data_ms gets GOAWAY (too_many_pings).
    expect(CLIENT_CHANNEL_OPTIONS["grpc.keepalive_time_ms"]).toBeGreaterThan(SERVER_CHANNEL_OPTIONS["grpc.http2.min_ping_interval_without_data_ms"]);
    expect(SERVER_CHANNEL_OPTIONS["grpc.keepalive_permit_without_calls"]).toBe(1);
  });

  it("the client sends no more than the server accepts, and accepts what the server sends", () => {
    expect(CLIENT_CHANNEL_OPTIONS["grpc.max_send_message_length"]).toBe(MAX_REQUEST_BYTES);
    expect(SERVER_CHANNEL_OPTIONS["grpc.max_receive_message_length"]).toBe(MAX_REQUEST_BYTES);
    expect(CLIENT_CHANNEL_OPTIONS["grpc.max_receive_message_length"]).toBeGreaterThanOrEqual(SERVER_CHANNEL_OPTIONS["grpc.max_send_message_length"]);
    expect(SERVER_CHANNEL_OPTIONS["grpc.max_concurrent_streams"]).toBeGreaterThan(0);
  });
});
