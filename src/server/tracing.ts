/**
 * OpenTelemetry tracing, off unless a tracer is given (`@opentelemetry/api` is an optional peer
 * dependency, loaded only then). Each RPC continues the caller's W3C `traceparent` (and
 * `tracestate`) from its metadata in a SERVER span; each MongoDB command the call causes is a
 * CLIENT child span, from the driver's command monitoring. The call's span is found by the
 * command through AsyncLocalStorage, so no global context manager has to be installed.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type * as grpc from "@grpc/grpc-js";
import type { Span, Tracer } from "@opentelemetry/api";
import type { CommandFailedEvent, CommandStartedEvent, CommandSucceededEvent, MongoClient } from "mongodb";
import { codeName } from "./call-tracking.js";

type Api = typeof import("@opentelemetry/api");

/** W3C trace context: version-traceid-parentid-flags, lower-case hex (https://www.w3.org/TR/trace-context/). */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;

/** One call's span, while it runs. */
export interface CallSpan {
  readonly traceId: string;
  /** Runs `work` with this span as the parent of the MongoDB commands it causes. */
  run<T>(work: () => T): T;
  /** Ends the span with the call's status. */
  end(code: grpc.status): void;
}

export interface Tracing {
  startCall(path: string, metadata: grpc.Metadata): CallSpan;
  /** Makes every command of `client` (created with monitorCommands) a child span of the call that sent it. */
  traceCommands(client: MongoClient): void;
}

/** Loads the API and returns the tracing of `tracer`. */
export async function createTracing(tracer: Tracer): Promise<Tracing> {
  const api: Api = await import("@opentelemetry/api");
  return tracingWith(api, tracer);
}

function first(metadata: grpc.Metadata, key: string): string | undefined {
  return metadata.get(key).find((v): v is string => typeof v === "string");
}

function tracingWith(api: Api, tracer: Tracer): Tracing {
  const active = new AsyncLocalStorage<Span>();

  /** The caller's context when it sent a valid traceparent; a new trace otherwise. */
  const parentOf = (metadata: grpc.Metadata) => {
    const m = TRACEPARENT.exec(first(metadata, "traceparent")?.trim() ?? "");
    if (!m || m[1] === "ff") return api.ROOT_CONTEXT;
    const tracestate = first(metadata, "tracestate");
    const spanContext = { traceId: m[2]!, spanId: m[3]!, traceFlags: parseInt(m[4]!, 16) & 1, isRemote: true, ...(tracestate ? { traceState: api.createTraceState(tracestate) } : {}) };
    return api.isSpanContextValid(spanContext) ? api.trace.setSpanContext(api.ROOT_CONTEXT, spanContext) : api.ROOT_CONTEXT;
  };

  return {
    startCall(path, metadata) {
      const [, service = "", method = ""] = path.split("/");
      const span = tracer.startSpan(
        `${service}/${method}`,
        { kind: api.SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method } },
        parentOf(metadata),
      );
      let ended = false;
      return {
        traceId: span.spanContext().traceId,
        run: (work) => active.run(span, work),
        end(code) {
          if (ended) return;
          ended = true;
          span.setAttribute("rpc.grpc.status_code", code);
          if (code !== 0) span.setStatus({ code: api.SpanStatusCode.ERROR, message: codeName(code) });
          span.end();
        },
      };
    },

    traceCommands(client) {
      const open = new Map<string, Span>();
      const key = (e: { requestId: number; connectionId?: string | number | undefined }) => `${e.connectionId ?? ""}:${e.requestId}`;
      client.on("commandStarted", (e: CommandStartedEvent) => {
        const parent = active.getStore();
        if (!parent) return; // background work (watchdog, leases, repairs) belongs to no call
        const collection = e.command[e.commandName];
        const span = tracer.startSpan(
          `mongodb.${e.commandName}`,
          {
            kind: api.SpanKind.CLIENT,
            attributes: {
              "db.system": "mongodb",
              "db.name": e.databaseName,
              "db.operation": e.commandName,
              ...(typeof collection === "string" ? { "db.mongodb.collection": collection } : {}),
              "server.address": e.address,
            },
          },
          api.trace.setSpan(api.ROOT_CONTEXT, parent),
        );
        open.set(key(e), span);
      });
      const finish = (e: CommandSucceededEvent | CommandFailedEvent, failure?: Error) => {
        const span = open.get(key(e));
        if (!span) return;
        open.delete(key(e));
        if (failure) span.setStatus({ code: api.SpanStatusCode.ERROR, message: failure.message });
        span.end();
      };
      client.on("commandSucceeded", (e: CommandSucceededEvent) => finish(e));
      client.on("commandFailed", (e: CommandFailedEvent) => finish(e, e.failure));
    },
  };
}
