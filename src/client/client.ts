/**
 * The typed client other TypeScript services use: one Promise method per RPC, named after it,
 * taking the generated request shapes and resolving to the generated response messages.
 */
import { once } from "node:events";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import {
  ClickAnalytics,
  type ExportEventsRequestSchema,
  type ExportEventsResponse,
  type StreamEventsRequestSchema,
  type StreamEventsResponse,
  type WatchMetricsRequestSchema,
  type WatchMetricsResponse,
} from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import { CLIENT_CHANNEL_OPTIONS, retryServiceConfig } from "./transport.js";

/**
 * TLS settings for the typed client: PEM contents (not file paths), as Buffers or strings. A
 * client certificate and its key go together (mutual TLS), or neither is given.
 */
export type ClientTlsOptions = {
  /** CA certificates that sign the server's certificate; default: the system's trusted roots. */
  ca?: Buffer | string;
  /** Host name to verify the server certificate against instead of the address's host. */
  serverNameOverride?: string;
} & (
  | {
      /** Client certificate chain, for servers that require mutual TLS. */
      cert: Buffer | string;
      /** Private key of `cert`. */
      key: Buffer | string;
    }
  | { cert?: undefined; key?: undefined }
);

/** Either `credentials` (grpc-js channel credentials) or `tls`, or neither (plaintext). */
export type ClientOptions = ClientCallDefaults &
  (
    | {
        /** Channel credentials, e.g. from grpc-js's `credentials.createSsl`. */
        credentials?: grpc.ChannelCredentials;
        tls?: undefined;
      }
    | {
        /** Connect with TLS (mutual TLS with cert and key). */
        tls?: ClientTlsOptions;
        credentials?: undefined;
      }
  );

export interface ClientCallDefaults {
  /** Deadline applied to every call that does not set its own; default 10 s; Infinity sets none. */
  defaultTimeoutMs?: number;
  /** Sent as `x-user-id` on every call unless a call sets its own. */
  userId?: string;
  /** Sent as `authorization: Bearer <token>` on every call. */
  token?: string;
  /** Extra metadata on every call. */
  metadata?: Record<string, string>;
  /** Extra grpc-js channel options (merged over the defaults shared with the server). */
  channelOptions?: grpc.ChannelOptions;
}

export interface CallOptions {
  /** Milliseconds from now until the call is abandoned with DEADLINE_EXCEEDED. */
  timeoutMs?: number;
  /** Absolute deadline; wins over timeoutMs. */
  deadline?: Date;
  /** `x-user-id` metadata for this call. */
  userId?: string;
  /** `x-session-id` metadata for this call. */
  sessionId?: string;
  metadata?: Record<string, string>;
  /** Cancels the call. */
  signal?: AbortSignal;
}

type Methods = typeof ClickAnalytics extends GenService<infer R> ? R : never;
type UnaryMethod<M extends Pick<DescMethod, "input" | "output">> = (
  request: MessageInitShape<M["input"]>,
  options?: CallOptions,
) => Promise<MessageShape<M["output"]>>;
type UnaryNames = { [K in keyof Methods]: Methods[K]["methodKind"] extends "unary" ? K : never }[keyof Methods];

export type StreamBatch = MessageInitShape<typeof StreamEventsRequestSchema>;

export type ClickAnalyticsMethods = { [K in UnaryNames]: UnaryMethod<Methods[K]> } & {
  /**
   * Sends the batches (each at most 1,000 events) on one client stream, waiting whenever the
   * transport asks it to, and resolves with the server's totals. No default deadline: a stream
   * lives as long as its source, unless `timeoutMs`/`deadline` say otherwise.
   */
  streamEvents(batches: Iterable<StreamBatch> | AsyncIterable<StreamBatch>, options?: CallOptions): Promise<StreamEventsResponse>;
  /**
   * Snapshots as the server sends them (one at once, then one per interval). Leaving the loop
   * (break, return, throw) or aborting `signal` cancels the call. No default deadline.
   */
  watchMetrics(request: MessageInitShape<typeof WatchMetricsRequestSchema>, options?: CallOptions): AsyncIterable<WatchMetricsResponse>;
  /**
   * The stored events of a window, oldest first, in batches of up to 1,000 as the server reads
   * them. The server produces only as fast as the loop consumes (HTTP/2 flow control). Leaving
   * the loop or aborting `signal` cancels the call. No default deadline.
   */
  exportEvents(request: MessageInitShape<typeof ExportEventsRequestSchema>, options?: CallOptions): AsyncIterable<ExportEventsResponse>;
};

export interface ClickAnalyticsClient extends ClickAnalyticsMethods {
  /** Resolves once connected, or rejects when the deadline passes first. */
  waitForReady(timeoutMs?: number): Promise<void>;
  close(): void;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/** Retries are safe only where the server can recognise a repeat: every event carries an event_id. */
function carriesEventIds(method: DescMethod, request: Record<string, unknown>): boolean {
  switch (method.localName) {
    case "logClick":
    case "logImpression":
      return typeof request.eventId === "string" && request.eventId !== "";
    case "logEvents": {
      const events = (request.events ?? []) as { kind?: { value?: { eventId?: string } } }[];
      return events.length > 0 && events.every((e) => Boolean(e.kind?.value?.eventId));
    }
    default:
      return false;
  }
}

function tlsCredentials(tls: ClientTlsOptions): grpc.ChannelCredentials {
  if ((tls.cert === undefined) !== (tls.key === undefined)) throw new TypeError("tls.cert and tls.key go together");
  const pem = (value: Buffer | string | undefined) => (value === undefined ? null : Buffer.from(value));
  return grpc.credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert));
}

export function createClickAnalyticsClient(address: string, options: ClientOptions = {}): ClickAnalyticsClient {
  if (options.credentials && options.tls) throw new TypeError("give either credentials or tls, not both");
  const credentials = options.credentials ?? (options.tls ? tlsCredentials(options.tls) : grpc.credentials.createInsecure());
  const nameOverride = options.tls?.serverNameOverride;
  const channelOptions = { ...CLIENT_CHANNEL_OPTIONS, ...(nameOverride ? { "grpc.ssl_target_name_override": nameOverride } : {}), ...options.channelOptions };
  // Two channels: calls that carry event ids go through one whose service config retries
  // UNAVAILABLE; everything else through one with retries off, so nothing is counted twice.
  const plain = new grpc.Client(address, credentials, { ...channelOptions, "grpc.enable_retries": 0 });
  const retrying = new grpc.Client(address, credentials, { ...channelOptions, "grpc.enable_retries": 1, "grpc.service_config": JSON.stringify(retryServiceConfig()) });

  const metadataFor = (call: CallOptions): grpc.Metadata => {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries({ ...options.metadata, ...call.metadata })) md.set(k, v);
    const userId = call.userId ?? options.userId;
    if (userId) md.set("x-user-id", userId);
    if (call.sessionId) md.set("x-session-id", call.sessionId);
    if (options.token) md.set("authorization", `Bearer ${options.token}`);
    return md;
  };
  const deadlineFor = (call: CallOptions, fallbackMs: number | undefined): grpc.Deadline =>
    call.deadline ?? (call.timeoutMs !== undefined ? new Date(Date.now() + call.timeoutMs) : fallbackMs === undefined || fallbackMs === Infinity ? Infinity : new Date(Date.now() + fallbackMs));
  const pathOf = (method: DescMethod) => `/${ClickAnalytics.typeName}/${method.name}`;

  const unary = <I extends DescMessage, O extends DescMessage>(method: DescMethod & { input: I; output: O }) => {
    return (request: MessageInitShape<I>, call: CallOptions = {}): Promise<MessageShape<O>> =>
      new Promise((resolve, reject) => {
        const message = create(method.input, request);
        const channel = carriesEventIds(method, message as unknown as Record<string, unknown>) ? retrying : plain;
        let pending: grpc.ClientUnaryCall | undefined;
        const cancel = () => pending?.cancel();
        pending = channel.makeUnaryRequest<MessageShape<I>, MessageShape<O>>(
          pathOf(method),
          (m) => Buffer.from(toBinary(method.input, m)),
          (bytes) => fromBinary(method.output, bytes),
          message,
          metadataFor(call),
          { deadline: deadlineFor(call, options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS) },
          (error, response) => {
            // One signal may serve many calls: each removes its own listener when it ends.
            call.signal?.removeEventListener("abort", cancel);
            if (error || response === undefined) reject(error);
            else resolve(response);
          },
        );
        call.signal?.addEventListener("abort", cancel, { once: true });
      });
  };

  const streamMethod = ClickAnalytics.method.streamEvents;
  const streamEvents: ClickAnalyticsMethods["streamEvents"] = async (batches, call = {}) => {
    let stream!: grpc.ClientWritableStream<MessageShape<typeof streamMethod.input>>;
    const result = new Promise<StreamEventsResponse>((resolve, reject) => {
      stream = plain.makeClientStreamRequest(
        pathOf(streamMethod),
        (m: MessageShape<typeof streamMethod.input>) => Buffer.from(toBinary(streamMethod.input, m)),
        (bytes: Buffer) => fromBinary(streamMethod.output, bytes),
        metadataFor(call),
        { deadline: deadlineFor(call, undefined) },
        (error, response) => (error || response === undefined ? reject(error) : resolve(response)),
      );
    });
    call.signal?.addEventListener("abort", () => stream.cancel(), { once: true });
    // Settles early if the server ends the call (an error) while batches are still being sent.
    const ended = result.then(
      () => "ended" as const,
      () => "ended" as const,
    );
    // Each next batch is awaited against the call's end too: a source that goes quiet does not
    // hold the caller once the server has ended the stream (e.g. its idle timeout).
    const source = Symbol.asyncIterator in batches ? batches[Symbol.asyncIterator]() : batches[Symbol.iterator]();
    try {
      for (;;) {
        const next = await Promise.race([source.next(), ended]);
        if (next === "ended" || next.done) break;
        if (!stream.write(create(streamMethod.input, next.value))) {
          if ((await Promise.race([once(stream, "drain").then(() => "drained" as const), ended])) === "ended") break;
        }
      }
    } finally {
      stream.end();
      void Promise.resolve(source.return?.()).catch(() => undefined);
    }
    return result;
  };

  /** A server-streaming RPC as an AsyncIterable: one call per iteration, cancelled when the loop is left. */
  const serverStream =
    <I extends DescMessage, O extends DescMessage>(method: DescMethod & { input: I; output: O }) =>
    (request: MessageInitShape<I>, call: CallOptions = {}): AsyncIterable<MessageShape<O>> => ({
      async *[Symbol.asyncIterator]() {
        const stream = plain.makeServerStreamRequest(
          pathOf(method),
          (m: MessageShape<I>) => Buffer.from(toBinary(method.input, m)),
          (bytes: Buffer) => fromBinary(method.output, bytes),
          create(method.input, request),
          metadataFor(call),
          { deadline: deadlineFor(call, undefined) },
        );
        const cancel = () => stream.cancel();
        call.signal?.addEventListener("abort", cancel, { once: true });
        try {
          for await (const message of stream) yield message as MessageShape<O>;
        } catch (error) {
          // Our own cancellation (abort or leaving the loop) ends the iteration quietly.
          if ((error as grpc.ServiceError).code !== grpc.status.CANCELLED || !(call.signal?.aborted ?? false)) throw error;
        } finally {
          call.signal?.removeEventListener("abort", cancel);
          stream.cancel();
        }
      },
    });

  const methods = Object.fromEntries(
    ClickAnalytics.methods.filter((m) => m.methodKind === "unary").map((m) => [m.localName, unary(m)]),
  ) as unknown as Omit<ClickAnalyticsMethods, "streamEvents" | "watchMetrics" | "exportEvents">;
  return {
    ...methods,
    streamEvents,
    watchMetrics: serverStream(ClickAnalytics.method.watchMetrics),
    exportEvents: serverStream(ClickAnalytics.method.exportEvents),
    waitForReady: (timeoutMs = DEFAULT_TIMEOUT_MS) =>
      new Promise<void>((resolve, reject) => plain.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(error) : resolve()))),
    close: () => {
      plain.close();
      retrying.close();
    },
  };
}
