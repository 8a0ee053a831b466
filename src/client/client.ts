/**
 * The typed client other TypeScript services use: one Promise method per RPC, named after it,
 * taking the generated request shapes and resolving to the generated response messages.
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { ClickAnalytics } from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import { CLIENT_CHANNEL_OPTIONS } from "./transport.js";

export interface ClientOptions {
  /** Defaults to plaintext (insecure) credentials. */
  credentials?: grpc.ChannelCredentials;
  /** Deadline applied to every call that does not set its own; default 10 s. */
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

type MethodsOf<S> = S extends GenService<infer R> ? R : never;
type UnaryMethod<M extends Pick<DescMethod, "input" | "output">> = (
  request: MessageInitShape<M["input"]>,
  options?: CallOptions,
) => Promise<MessageShape<M["output"]>>;

export type ClickAnalyticsMethods = {
  [K in keyof MethodsOf<typeof ClickAnalytics>]: UnaryMethod<MethodsOf<typeof ClickAnalytics>[K]>;
};

export interface ClickAnalyticsClient extends ClickAnalyticsMethods {
  /** Resolves once connected, or rejects when the deadline passes first. */
  waitForReady(timeoutMs?: number): Promise<void>;
  close(): void;
}

const DEFAULT_TIMEOUT_MS = 10_000;

export function createClickAnalyticsClient(address: string, options: ClientOptions = {}): ClickAnalyticsClient {
  const channel = new grpc.Client(address, options.credentials ?? grpc.credentials.createInsecure(), {
    ...CLIENT_CHANNEL_OPTIONS,
    ...options.channelOptions,
  });

  const metadataFor = (call: CallOptions): grpc.Metadata => {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries({ ...options.metadata, ...call.metadata })) md.set(k, v);
    const userId = call.userId ?? options.userId;
    if (userId) md.set("x-user-id", userId);
    if (call.sessionId) md.set("x-session-id", call.sessionId);
    if (options.token) md.set("authorization", `Bearer ${options.token}`);
    return md;
  };

  const unary = <I extends DescMessage, O extends DescMessage>(method: DescMethod & { input: I; output: O }) => {
    const path = `/${ClickAnalytics.typeName}/${method.name}`;
    return (request: MessageInitShape<I>, call: CallOptions = {}): Promise<MessageShape<O>> =>
      new Promise((resolve, reject) => {
        const deadline = call.deadline ?? new Date(Date.now() + (call.timeoutMs ?? options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS));
        const pending = channel.makeUnaryRequest<MessageShape<I>, MessageShape<O>>(
          path,
          (message) => Buffer.from(toBinary(method.input, message)),
          (bytes) => fromBinary(method.output, bytes),
          create(method.input, request),
          metadataFor(call),
          { deadline },
          (error, response) => (error || response === undefined ? reject(error) : resolve(response)),
        );
        call.signal?.addEventListener("abort", () => pending.cancel(), { once: true });
      });
  };

  const methods = Object.fromEntries(ClickAnalytics.methods.map((m) => [m.localName, unary(m)])) as unknown as ClickAnalyticsMethods;
  return {
    ...methods,
    waitForReady: (timeoutMs = DEFAULT_TIMEOUT_MS) =>
      new Promise<void>((resolve, reject) => channel.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(error) : resolve()))),
    close: () => channel.close(),
  };
}
