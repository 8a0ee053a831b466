/**
 * Everything grpc-js specific about serving a protobuf-es service lives here: method
 * definitions built from the generated descriptor, (de)serialization with toBinary/fromBinary,
 * call contexts, and the single route from a thrown error to a gRPC status.
 */
import { once } from "node:events";
import type { Readable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { decodeEventBatch, isEventBatch } from "./event-decoding.js";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { DomainError, InvalidArgumentError } from "../core/errors.js";
import { requestIdFrom, trackCall, withRequestId, type CallObserver } from "./call-tracking.js";
import type { Logger } from "./logger.js";
import { toServiceError } from "./status.js";
import type { Tracing } from "./tracing.js";

/** What a handler may know about its call, without touching grpc-js. */
export interface CallContext {
  /** `/package.Service/Method` */
  readonly path: string;
  readonly peer: string;
  /** The caller's `x-request-id` (1..128 visible ASCII characters) or a new UUID; echoed back as `x-request-id`. */
  readonly requestId: string;
  /** Aborted when the client cancels or the deadline passes: abandon the work. */
  readonly signal: AbortSignal;
  /** The caller's deadline in epoch ms; Infinity when it set none. */
  readonly deadline: number;
  /** First string value of a metadata key (lower-case), if any. */
  header(name: string): string | undefined;
}

type Init<D extends DescMessage> = MessageInitShape<D>;
type Shape<D extends DescMessage> = MessageShape<D>;
type MethodShape = Pick<DescMethod, "methodKind" | "input" | "output">;

export type MethodImpl<M extends MethodShape> = M["methodKind"] extends "unary"
  ? (request: Shape<M["input"]>, ctx: CallContext) => Promise<Init<M["output"]>>
  : M["methodKind"] extends "server_streaming"
    ? (request: Shape<M["input"]>, ctx: CallContext) => AsyncIterable<Init<M["output"]>>
    : M["methodKind"] extends "client_streaming"
      ? (requests: AsyncIterable<Shape<M["input"]>>, ctx: CallContext) => Promise<Init<M["output"]>>
      : (requests: AsyncIterable<Shape<M["input"]>>, ctx: CallContext) => AsyncIterable<Init<M["output"]>>;

type MethodsOf<S> = S extends GenService<infer R> ? R : never;

/** Handlers typed from the generated service descriptor, keyed by the methods' local names. */
export type ServiceImpl<S extends DescService> = { [K in keyof MethodsOf<S>]: MethodImpl<MethodsOf<S>[K]> };

/** Runs before every handler (authentication, authorization); throws to refuse the call. */
export type CallGuard = (method: DescMethod, ctx: CallContext) => void | Promise<void>;

export interface AdapterOptions {
  logger: Logger;
  guard?: CallGuard | undefined;
  /** Told once how each call ended (method, code, duration, peer, request id): request logs and metrics. */
  observe?: CallObserver | undefined;
  /** Server-streaming methods (local names) written one message at a time: see writeAll. */
  oneInFlight?: ReadonlySet<string> | undefined;
  /**
   * Unary methods (local names) answered as soon as `race` gives up on their work, e.g. reads
   * while the storage does not respond: a caller without a deadline is not left waiting.
   */
  failFast?: { methods: ReadonlySet<string>; race<T>(work: Promise<T>): Promise<T> } | undefined;
  /** Client-streaming calls: ended when no message arrives for `idleMs`, and at most `perConnection` open on one connection. */
  requestStreams?: RequestStreamLimits | undefined;
  /** A span per call (continuing the caller's traceparent), parent of its MongoDB commands. */
  tracing?: Tracing | undefined;
}

/** A request stream with no message for this long is ended (STREAM_IDLE_TIMEOUT_MS). */
export const DEFAULT_STREAM_IDLE_TIMEOUT_MS = 60_000;
/** Request streams open at once on one connection (STREAMS_PER_CONNECTION). */
export const DEFAULT_STREAMS_PER_CONNECTION = 100;

export interface RequestStreamLimits {
  idleMs: number;
  perConnection: number;
}

// grpc-js answers a request it cannot deserialize with INTERNAL; a client's garbage is not an
// internal error, so undecodable bytes become this marker and then INVALID_ARGUMENT.
const MALFORMED = Symbol("malformed request");
type Malformed = { [MALFORMED]: string };
function isMalformed(value: unknown): value is Malformed {
  return typeof value === "object" && value !== null && MALFORMED in value;
}
function checked<T>(value: T | Malformed): T {
  if (isMalformed(value)) throw new InvalidArgumentError("request", `is not a valid protobuf message (${value[MALFORMED]})`);
  return value;
}

type SurfaceCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerReadableStream<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>;

function deadlineOf(call: SurfaceCall): number {
  const d = call.getDeadline();
  return d instanceof Date ? d.getTime() : Number.isFinite(d) ? Number(d) : Infinity;
}

function contextOf(call: SurfaceCall, path: string): CallContext {
  const controller = new AbortController();
  (call as NodeJS.EventEmitter).once("cancelled", () => controller.abort(new Error("call cancelled or deadline exceeded")));
  return {
    path,
    peer: call.getPeer(),
    requestId: requestIdFrom(call.metadata),
    signal: controller.signal,
    deadline: deadlineOf(call),
    header(name) {
      return call.metadata.get(name).find((v: string | Buffer): v is string => typeof v === "string");
    },
  };
}

/**
 * The decoded messages of a request stream, read about one ahead of the handler. Iterated
 * without `destroyOnReturn`: a handler that stops reading early (an undecodable or oversized
 * message) must leave the call's stream intact, because grpc-js sends a bidi stream's status from
 * that stream's end(); destroyed, it never does, and the client waits for its deadline (forever
 * without one).
 */
async function* decodedStream<T>(call: Readable): AsyncIterable<T> {
  // grpc-js decodes each message as it arrives and buffers up to the Readable's high-water mark
  // (16 in object mode) before it stops reading: 16 decoded batches per stream kept alive while
  // the handler writes one. At 1 the client is held back after about two (it has no option for
  // this, so its state is set).
  (call as unknown as { _readableState: { highWaterMark: number } })._readableState.highWaterMark = 1;
  for await (const message of call.iterator({ destroyOnReturn: false }) as AsyncIterable<T | Malformed>) yield checked(message);
}

/**
 * The messages of a request stream, ended with DEADLINE_EXCEEDED when the client sends none for
 * `idleMs` (time spent handling a message does not count): an idle stream would otherwise hold
 * its slot, its HTTP/2 stream and its memory forever.
 */
async function* idleLimited<T>(messages: AsyncIterable<T>, idleMs: number, method: string): AsyncIterable<T> {
  const it = messages[Symbol.asyncIterator]();
  for (;;) {
    const next = it.next();
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new DomainError("deadline_exceeded", `${method}: no message for ${idleMs} ms (STREAM_IDLE_TIMEOUT_MS), so the stream was ended; the messages before were written; open a new stream to send more`)),
        idleMs,
      );
    });
    let result: IteratorResult<T>;
    try {
      result = await Promise.race([next, idle]);
    } catch (error) {
      next.catch(() => undefined); // settles when the call ends
      throw error;
    } finally {
      clearTimeout(timer);
    }
    if (result.done) return;
    yield result.value;
  }
}

/**
 * Open request streams per connection (by peer address): past the cap a new one is
 * RESOURCE_EXHAUSTED at once, instead of waiting in the client for an HTTP/2 stream slot.
 */
class StreamSlots {
  private readonly open = new Map<string, number>();

  take(peer: string, cap: number, method: string): () => void {
    const n = this.open.get(peer) ?? 0;
    if (n >= cap) throw new DomainError("resource_exhausted", `${method}: ${cap} request streams are open on this connection already (STREAMS_PER_CONNECTION); end one or open another connection`);
    this.open.set(peer, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(peer) ?? 1) - 1;
      if (left > 0) this.open.set(peer, left);
      else this.open.delete(peer);
    };
  }
}

/** Resolves when `signal` aborts (at once if it has), without leaving a listener behind otherwise. */
function raceAbort(signal: AbortSignal, work: (settle: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      signal.removeEventListener("abort", done);
      resolve();
    };
    signal.addEventListener("abort", done, { once: true });
    work(done);
  });
}

/**
 * Writes messages honouring the transport's back-pressure. With `oneInFlight`, the next message
 * is not even taken from the handler until the previous one has left for the client: a stream
 * whose client stops reading holds one message, and the handler may replace what it would send
 * next (WatchMetrics sends the latest snapshot, not a backlog).
 */
async function writeAll<D extends DescMessage>(
  call: grpc.ServerWritableStream<unknown, Shape<D>> | grpc.ServerDuplexStream<unknown, Shape<D>>,
  schema: D,
  messages: AsyncIterable<Init<D>>,
  ctx: CallContext,
  oneInFlight = false,
): Promise<void> {
  for await (const init of messages) {
    if (ctx.signal.aborted) return;
    if (oneInFlight) await raceAbort(ctx.signal, (done) => call.write(create(schema, init), () => done()));
    else if (!call.write(create(schema, init))) await Promise.race([once(call, "drain"), once(ctx.signal, "abort")]);
  }
}

/**
 * Starts one call: its context, its span (with tracing on) and the record of its end. `run`
 * runs the handler's work inside the span, so that its MongoDB commands become the span's children.
 */
function begin(call: SurfaceCall, path: string, responseStream: boolean, options: AdapterOptions) {
  const ctx = contextOf(call, path);
  const span = options.tracing?.startCall(path, call.metadata);
  const observe: CallObserver | undefined = span
    ? (record) => {
        span.end(record.code);
        options.observe?.({ ...record, traceId: span.traceId });
      }
    : options.observe;
  const end = trackCall(call, ctx, observe, responseStream);
  const run = <T>(work: () => Promise<T>): Promise<T> => (span ? span.run(work) : work());
  const logger = withRequestId(options.logger, ctx.requestId, span?.traceId);
  return { ctx, end, run, logger };
}

/** A grpc-js service definition and implementation for a protobuf-es service descriptor. */
export function grpcService<S extends DescService>(service: S, impl: ServiceImpl<S>, options: AdapterOptions): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
  const definition: Record<string, grpc.MethodDefinition<MessageShape<DescMessage>, MessageShape<DescMessage>>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  const handlers = impl as unknown as Record<string, (...args: unknown[]) => unknown>;
  const slots = new StreamSlots();
  for (const method of service.methods) {
    const path = `/${service.typeName}/${method.name}`;
    definition[method.localName] = {
      path,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: (message: MessageShape<DescMessage>) => Buffer.from(toBinary(method.input, message)),
      requestDeserialize: (bytes: Buffer) => {
        try {
          return isEventBatch(method.input) ? decodeEventBatch(method.input, bytes) : fromBinary(method.input, bytes);
        } catch (error) {
          return { [MALFORMED]: error instanceof Error ? error.message : String(error) } as unknown as MessageShape<DescMessage>;
        }
      },
      responseSerialize: (message: MessageShape<DescMessage>) => Buffer.from(toBinary(method.output, message)),
      responseDeserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
    };
    const handler = handlers[method.localName];
    if (typeof handler !== "function") throw new Error(`no handler for ${path}`);
    const fail = (error: unknown, ctx: CallContext, logger: Logger) =>
      // A request stream that grpc-js closed because the client cancelled or the deadline passed
      // ends its reader with "Premature close": the call is already answered (CANCELLED or
      // DEADLINE_EXCEEDED), and that is not an internal error to log.
      ctx.signal.aborted && (error as { code?: unknown } | null)?.code === "ERR_STREAM_PREMATURE_CLOSE"
        ? { code: grpc.status.CANCELLED, details: "call cancelled or deadline exceeded", metadata: new grpc.Metadata() }
        : toServiceError(error, logger, path);
    const guarded = async (ctx: CallContext) => {
      await options.guard?.(method, ctx);
    };
    switch (method.methodKind) {
      case "unary": {
        const race = options.failFast?.methods.has(method.localName) ? options.failFast.race.bind(options.failFast) : undefined;
        implementation[method.localName] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
          const { ctx, end, run, logger } = begin(call, path, false, options);
          run(async () => {
            await guarded(ctx);
            const work = handler(checked(call.request), ctx) as Promise<unknown>;
            const init = await (race ? race(work) : work);
            return create(method.output, init as Init<DescMessage>);
          }).then(
            (response) => end.ok(() => callback(null, response)),
            (error: unknown) => end.failed(fail(error, ctx, logger), (status) => callback(status)),
          );
        };
        break;
      }
      case "server_streaming":
        implementation[method.localName] = (call: grpc.ServerWritableStream<unknown, Shape<DescMessage>>) => {
          const { ctx, end, run, logger } = begin(call, path, true, options);
          run(async () => {
            await guarded(ctx);
            await writeAll(call, method.output, handler(checked(call.request), ctx) as AsyncIterable<Init<DescMessage>>, ctx, options.oneInFlight?.has(method.localName));
          }).then(
            () => end.ok(() => call.end()),
            (error: unknown) => end.failed(fail(error, ctx, logger), (status) => call.emit("error", status)),
          );
        };
        break;
      case "client_streaming":
        implementation[method.localName] = (call: grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
          const { ctx, end, run, logger } = begin(call, path, false, options);
          const limits = options.requestStreams;
          let release: (() => void) | undefined;
          run(async () => {
            await guarded(ctx);
            release = limits ? slots.take(ctx.peer, limits.perConnection, method.name) : undefined;
            const messages = decodedStream<unknown>(call);
            const init = await handler(limits ? idleLimited(messages, limits.idleMs, method.name) : messages, ctx);
            return create(method.output, init as Init<DescMessage>);
          }).finally(() => release?.()).then(
            (response) => end.ok(() => callback(null, response)),
            (error: unknown) => end.failed(fail(error, ctx, logger), (status) => callback(status)),
          );
        };
        break;
      case "bidi_streaming":
        implementation[method.localName] = (call: grpc.ServerDuplexStream<unknown, Shape<DescMessage>>) => {
          const { ctx, end, run, logger } = begin(call, path, true, options);
          run(async () => {
            await guarded(ctx);
            await writeAll(call, method.output, handler(decodedStream(call), ctx) as AsyncIterable<Init<DescMessage>>, ctx);
          }).then(
            () => end.ok(() => call.end()),
            (error: unknown) => end.failed(fail(error, ctx, logger), (status) => call.emit("error", status)),
          );
        };
        break;
    }
  }
  return { definition, implementation };
}
