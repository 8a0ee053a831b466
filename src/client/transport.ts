/**
 * Transport settings shared by the server and the typed client. Keepalive has to be agreed on
 * both sides: a client that pings more often than the server permits is sent GOAWAY
 * ("too_many_pings"), so both sets are derived from the same numbers here.
 */
export const MAX_REQUEST_BYTES = 4 * 1024 * 1024;
export const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

const CLIENT_KEEPALIVE_TIME_MS = 30_000;
const KEEPALIVE_TIMEOUT_MS = 10_000;

export const CLIENT_CHANNEL_OPTIONS = {
  "grpc.keepalive_time_ms": CLIENT_KEEPALIVE_TIME_MS,
  "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.max_send_message_length": MAX_REQUEST_BYTES,
  "grpc.max_receive_message_length": MAX_RESPONSE_BYTES,
  // No channelz service is served or queried: its per-call bookkeeping would be cost only.
  "grpc.enable_channelz": 0,
} as const;

export const SERVER_CHANNEL_OPTIONS = {
  "grpc.keepalive_time_ms": 2 * CLIENT_KEEPALIVE_TIME_MS,
  "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
  "grpc.keepalive_permit_without_calls": 1,
  // Must stay below the client's ping interval, or well-behaved clients get disconnected.
  "grpc.http2.min_ping_interval_without_data_ms": CLIENT_KEEPALIVE_TIME_MS / 3,
  "grpc.max_receive_message_length": MAX_REQUEST_BYTES,
  "grpc.max_send_message_length": MAX_RESPONSE_BYTES,
  "grpc.max_concurrent_streams": 1_000,
  "grpc.enable_channelz": 0,
} as const;

/** Writes the server recognises when repeated (they carry event ids): the only ones retried. */
export const RETRIED_METHODS = ["LogClick", "LogImpression", "LogEvents"] as const;

/**
 * gRPC service config retrying UNAVAILABLE (server unreachable, connection dropped) with
 * exponential backoff: about 3 s of attempts in all.
 */
export function retryServiceConfig(maxAttempts = 5): object {
  return {
    methodConfig: [
      {
        name: RETRIED_METHODS.map((method) => ({ service: "clickanalytics.v1.ClickAnalytics", method })),
        retryPolicy: {
          maxAttempts,
          initialBackoff: "0.2s",
          maxBackoff: "2s",
          backoffMultiplier: 2,
          retryableStatusCodes: ["UNAVAILABLE"],
        },
      },
    ],
  };
}
