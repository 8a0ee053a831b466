/**
 * Per-call bookkeeping for the adapter: the request id, its echo to the caller, and one record of
 * how each call ended (method, status code, duration, peer, request id) for logs and metrics.
 * Never a request or response body, and no metadata other than the request id.
 */
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "./logger.js";

/** Metadata key of the request id, both ways. */
export const REQUEST_ID_HEADER = "x-request-id";

/** A caller's request id is used when it is 1..128 visible ASCII characters (no spaces). */
const VALID_REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/** The caller's `x-request-id` when acceptable, else a new UUID. */
export function requestIdFrom(metadata: grpc.Metadata): string {
  const sent = metadata.get(REQUEST_ID_HEADER).find((v): v is string => typeof v === "string");
  return sent !== undefined && VALID_REQUEST_ID.test(sent) ? sent : randomUUID();
}

/** How one call ended. */
export interface CallRecord {
  /** `/package.Service/Method` */
  readonly method: string;
  readonly code: grpc.status;
  /** From the handler being invoked to the status being sent (streams: the whole stream). */
  readonly durationMs: number;
  readonly peer: string;
  readonly requestId: string;
  /** The call's trace (W3C trace id, 32 hex digits), with tracing on. */
  readonly traceId?: string | undefined;
}

export type CallObserver = (record: CallRecord) => void;

/** The name of a status code ("OK", "INVALID_ARGUMENT", …). */
export function codeName(code: grpc.status): string {
  return grpc.status[code] ?? String(code);
}

type TrackedCall = Pick<grpc.ServerUnaryCall<unknown, unknown>, "getDeadline" | "sendMetadata"> & { once(event: "cancelled", listener: () => void): unknown };

/**
 * How a call ends. Each sends through `answer` first and records afterwards: the log line and the
 * metrics (~0.2 ms of CPU a call on a 2-core machine) are not on the caller's path.
 */
export interface CallEnd {
  /** The call succeeded: sends the request-id header (unless headers are out already), then `answer()`, then records OK. */
  ok(answer: () => void): void;
  /** The call fails with `status`: `answer` gets it with the request id in its trailers, then its code is recorded. */
  failed<S extends { code?: grpc.status | undefined; metadata?: grpc.Metadata | undefined }>(status: S, answer: (status: S & { metadata: grpc.Metadata }) => void): void;
}

function deadlinePassed(deadline: grpc.Deadline): boolean {
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  // grpc-js's deadline timer may fire a little before Date.now() reaches the deadline.
  return Number.isFinite(ms) && Date.now() >= ms - 10;
}

/**
 * Follows one call to its end and reports exactly one record to `observe`: when the adapter sends
 * the status (ok/failed), or when the call ends without it (the client cancelled, the deadline
 * passed, the server was forced down). Calls with a response stream send their headers (with the
 * request id) at once; other calls send it with the answer.
 */
export function trackCall(call: TrackedCall, ctx: { path: string; peer: string; requestId: string }, observe: CallObserver | undefined, responseStream: boolean): CallEnd {
  const started = performance.now();
  const echo = () => {
    const metadata = new grpc.Metadata();
    metadata.set(REQUEST_ID_HEADER, ctx.requestId);
    return metadata;
  };
  let ended = false;
  /** Ends the record's clock; the returned function reports it (once, whoever ends first). */
  const end = (code: grpc.status): (() => void) => {
    if (ended) return () => undefined;
    ended = true;
    const durationMs = Math.round((performance.now() - started) * 1000) / 1000;
    return () => {
      try {
        observe?.({ method: ctx.path, code, durationMs, peer: ctx.peer, requestId: ctx.requestId });
      } catch {
        // Logging or metrics must never break a call.
      }
    };
  };
  // grpc-js emits "cancelled" after every call, answered ones too; before our answer it means the
  // call ended without one.
  call.once("cancelled", () => end(deadlinePassed(call.getDeadline()) ? grpc.status.DEADLINE_EXCEEDED : grpc.status.CANCELLED)());
  if (responseStream) call.sendMetadata(echo());
  return {
    ok(answer) {
      call.sendMetadata(echo());
      const record = end(grpc.status.OK);
      answer();
      record();
    },
    failed(status, answer) {
      const metadata = status.metadata ?? new grpc.Metadata();
      metadata.set(REQUEST_ID_HEADER, ctx.requestId);
      const record = end(status.code ?? grpc.status.UNKNOWN);
      answer({ ...status, metadata });
      record();
    },
  };
}

/** `logger` with the request id (and trace id, with tracing on) on every line (for the error lines of a failing call). */
export function withRequestId(logger: Logger, requestId: string, traceId?: string): Logger {
  const ids = traceId === undefined ? { requestId } : { requestId, trace_id: traceId };
  return {
    info: (fields, message) => logger.info({ ...fields, ...ids }, message),
    warn: (fields, message) => logger.warn({ ...fields, ...ids }, message),
    error: (fields, message) => logger.error({ ...fields, ...ids }, message),
  };
}
