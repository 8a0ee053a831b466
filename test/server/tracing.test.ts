/**
 * OpenTelemetry tracing through a real server and the real engine, with the SDK's in-memory
 * exporter: an incoming W3C traceparent is continued by the call's SERVER span, the MongoDB
 * commands of the call are its CLIENT children, the rpc log line carries the trace id, and a
 * failed call's span has the error status.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, beforeEach, expect, inject, it } from "vitest";
import { createClickAnalyticsClient, Status, type ServiceError } from "../../src/client/index.js";
import { createLogger } from "../../src/server/logger.js";
import { startHarness, type Harness } from "../support/harness.js";
import { startServerProcess } from "../support/server-process.js";

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const lines: string[] = [];
let h: Harness;
beforeAll(async () => {
  h = await startHarness({ tracer: provider.getTracer("click-analytics-test") }, {}, createLogger("info", (line) => lines.push(line)));
  await h.client.logClick({ eventId: "t1", userId: "u", productId: "p", rank: 0, searchQuery: "q", variant: "v", responseTimeMs: 1 });
});
afterAll(async () => {
  await h?.close();
  await provider.shutdown();
});
beforeEach(() => exporter.reset());

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID = "00f067aa0ba902b7";
const rpcLine = (method: string) =>
  lines
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === "rpc" && l.method === method)
    .at(-1);
/** Spans end when the call's status is sent; the client may see the answer a moment earlier. */
async function spansOf(traceId: string, count: (n: number) => boolean) {
  for (const until = Date.now() + 2_000; Date.now() < until; await new Promise((r) => setTimeout(r, 20))) {
    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    if (count(spans.length) && spans.some((s) => s.name.startsWith("clickanalytics"))) return spans;
  }
  return exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
}

it("continues the caller's traceparent through GetCtr into MongoDB command spans, and logs its trace_id", async () => {
  const res = await h.client.getCtr({ days: 1 }, { metadata: { traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01`, tracestate: "vendor=abc" } });
  expect(res.clicks).toBe(1n);
  const spans = await spansOf(TRACE_ID, (n) => n >= 2);
  const server = spans.find((s) => s.name === "clickanalytics.v1.ClickAnalytics/GetCtr");
  expect(server, `spans: ${spans.map((s) => s.name).join(", ")}`).toBeDefined();
  expect(server!.kind).toBe(1); // SERVER
  expect(server!.parentSpanContext?.spanId).toBe(PARENT_SPAN_ID);
  expect(server!.parentSpanContext?.isRemote).toBe(true);
  expect(server!.spanContext().traceState?.get("vendor")).toBe("abc");
  expect(server!.attributes).toMatchObject({ "rpc.system": "grpc", "rpc.service": "clickanalytics.v1.ClickAnalytics", "rpc.method": "GetCtr", "rpc.grpc.status_code": 0 });
  const commands = spans.filter((s) => s.name.startsWith("mongodb."));
  expect(commands.length).toBeGreaterThan(0);
  for (const c of commands) {
    expect(c.kind).toBe(2); // CLIENT
    expect(c.parentSpanContext?.spanId).toBe(server!.spanContext().spanId);
    expect(c.attributes["db.system"]).toBe("mongodb");
    expect(c.attributes["db.name"]).toBe(h.dbName);
  }
  expect(commands.some((c) => ["find", "aggregate"].includes(String(c.attributes["db.operation"])))).toBe(true);
  expect(rpcLine("/clickanalytics.v1.ClickAnalytics/GetCtr")?.trace_id).toBe(TRACE_ID);
});

it("a failed call's span has the error status and its gRPC code; a call without traceparent starts a new trace", async () => {
  const error = (await h.client.getCtr({ days: 999 }).catch((e: unknown) => e)) as ServiceError;
  expect(error.code).toBe(Status.INVALID_ARGUMENT);
  const logged = rpcLine("/clickanalytics.v1.ClickAnalytics/GetCtr");
  const traceId = String(logged?.trace_id);
  expect(traceId).toMatch(/^[0-9a-f]{32}$/);
  expect(traceId).not.toBe(TRACE_ID);
  const spans = await spansOf(traceId, (n) => n >= 1);
  const server = spans.find((s) => s.name === "clickanalytics.v1.ClickAnalytics/GetCtr");
  expect(server?.parentSpanContext).toBeUndefined();
  expect(server?.status).toEqual({ code: 2, message: "INVALID_ARGUMENT" }); // ERROR
  expect(server?.attributes["rpc.grpc.status_code"]).toBe(Status.INVALID_ARGUMENT);
});

it("ignores a malformed traceparent (a new trace, not an error)", async () => {
  await h.client.getCtr({ days: 1 }, { metadata: { traceparent: "00-zz-not-a-trace" } });
  const traceId = String(rpcLine("/clickanalytics.v1.ClickAnalytics/GetCtr")?.trace_id);
  expect(traceId).toMatch(/^[0-9a-f]{32}$/);
  const server = (await spansOf(traceId, (n) => n >= 1)).find((s) => s.name.endsWith("/GetCtr"));
  expect(server?.parentSpanContext).toBeUndefined();
  expect(server?.status.code).toBe(0); // UNSET: the call succeeded
});

it("`npm start` with OTEL_EXPORTER_OTLP_ENDPOINT exports the call's spans to that collector over OTLP/HTTP", { timeout: 60_000 }, async () => {
  // A collector: records what is POSTed to /v1/traces.
  const bodies: string[] = [];
  const collector = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")));
    req.on("end", () => {
      if (req.url === "/v1/traces") bodies.push(body);
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => collector.listen(0, "127.0.0.1", r));
  const { port } = collector.address() as AddressInfo;
  const server = await startServerProcess({ MONGODB_URI: inject("mongoUri"), MONGODB_DB: `trace_${Date.now()}`, OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_BSP_SCHEDULE_DELAY: "100" });
  const client = createClickAnalyticsClient(server.address);
  try {
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    await client.getCtr({ days: 1 }, { metadata: { traceparent: `00-${traceId}-b7ad6b7169203331-01` } });
    for (const until = Date.now() + 10_000; !bodies.some((b) => b.includes(traceId)) && Date.now() < until; ) await new Promise((r) => setTimeout(r, 100));
    const exported = bodies.find((b) => b.includes(traceId));
    expect(exported, `bodies received: ${bodies.length}`).toBeDefined();
    expect(exported).toContain("clickanalytics.v1.ClickAnalytics/GetCtr");
    expect(exported).toMatch(/mongodb\.(find|aggregate)/);
    expect(server.logs.some((l) => l.msg === "tracing on: spans exported over OTLP/HTTP")).toBe(true);
    expect(server.logs.find((l) => l.msg === "rpc" && l.method === "/clickanalytics.v1.ClickAnalytics/GetCtr")?.trace_id).toBe(traceId);
  } finally {
    client.close();
    await server.stop();
    collector.close();
  }
});
