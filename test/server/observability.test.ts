/**
 * Observability: one JSON "rpc" log line per call (method, code, duration, peer, request id; never
 * a body or a credential), the request id echoed as `x-request-id`, and Prometheus metrics on their
 * own HTTP port, with a registry per server.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetCtrRequestSchema } from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import { HealthCheckRequestSchema } from "../../gen/grpc/health/v1/health_pb.js";
import { Status, type ServiceError } from "../../src/client/index.js";
import { configFromEnv } from "../../src/server/config.js";
import { createLogger } from "../../src/server/logger.js";
import { configRefusal } from "../support/config-refusal.js";
import { startHarness, type Harness } from "../support/harness.js";

const GET_CTR = "/clickanalytics.v1.ClickAnalytics/GetCtr";
const LOG_EVENTS = "/clickanalytics.v1.ClickAnalytics/LogEvents";
const WATCH_METRICS = "/clickanalytics.v1.ClickAnalytics/WatchMetrics";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

// Values that must never reach a log line: a credential and request field values.
const SECRET_TOKEN = `secret-${randomUUID()}`;
const USER_ID = `user-${randomUUID()}`;
const PRODUCT_ID = `product-${randomUUID()}`;
const QUERY = `query ${randomUUID()}`;
const NEVER_LOGGED = [SECRET_TOKEN, USER_ID, PRODUCT_ID, QUERY];

interface RpcLine {
  level: string;
  time: string;
  msg: string;
  method: string;
  code: number;
  codeName: string;
  durationMs: number;
  peer: string;
  requestId: string;
}

const lines: string[] = [];
const rpcLines = (): RpcLine[] => lines.map((l) => JSON.parse(l) as RpcLine).filter((e) => e.msg === "rpc");

let h: Harness;
let raw: grpc.Client;

beforeAll(async () => {
  h = await startHarness({ metricsPort: 0 }, {}, createLogger("info", (line) => lines.push(line)));
  raw = new grpc.Client(h.server.address, grpc.credentials.createInsecure());
});
afterAll(async () => {
  raw?.close();
  await h?.close();
});

async function failure(promise: Promise<unknown>): Promise<ServiceError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e as ServiceError,
  );
  expect(error, "call should have failed").toBeDefined();
  return error!;
}

/** Polls until `check` passes (log lines of cancelled streams arrive when the server notices). */
async function eventually(check: () => void, timeoutMs = 5_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      check();
      return;
    } catch (error) {
      if (Date.now() > until) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}

/** Prometheus text format: `name{a="x",b="y"} value` lines, comments skipped. */
function samples(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries([...(match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1]!, m[2]!]));
    out.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return out;
}

/** The value of the one sample named `name` whose labels include `labels`; undefined when none. */
function valueOf(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples(text).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  expect(found.length, `${name} ${JSON.stringify(labels)}`).toBeLessThanOrEqual(1);
  return found[0]?.value;
}

async function scrape(port: number | undefined, path = "/metrics", init?: RequestInit): Promise<Response> {
  expect(port).toBeTypeOf("number");
  return fetch(`http://127.0.0.1:${port}${path}`, init);
}

async function metricsText(harness: Harness): Promise<string> {
  const res = await scrape(harness.server.metricsPort);
  expect(res.status).toBe(200);
  return res.text();
}

/** A raw unary GetCtr: the response headers and the status trailers as the client sees them. */
function rawGetCtr(days: number, metadata: grpc.Metadata): Promise<{ headers: grpc.Metadata | undefined; error: grpc.ServiceError | null }> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    const call = raw.makeUnaryRequest<Uint8Array, Uint8Array>(
      GET_CTR,
      (b) => Buffer.from(b),
      (b) => new Uint8Array(b),
      toBinary(GetCtrRequestSchema, create(GetCtrRequestSchema, { days })),
      metadata,
      { deadline: Date.now() + 10_000 },
      (error) => resolve({ headers, error }),
    );
    call.on("metadata", (m: grpc.Metadata) => (headers = m));
  });
}

const click = (eventId: string, rank = 1) => ({
  kind: { case: "click" as const, value: { eventId, userId: USER_ID, productId: PRODUCT_ID, rank, searchQuery: QUERY, variant: "search_v1", responseTimeMs: 12 } },
});

describe("request logs", () => {
  it("writes one JSON line per call with method, code, duration, peer and request id", async () => {
    const before = rpcLines().length;
    await h.client.getCtr({ userId: USER_ID }, { metadata: { "x-request-id": "req-abc-123", authorization: `Bearer ${SECRET_TOKEN}` } });
    const bad = await failure(h.client.getCtr({ days: 999 }));
    expect(Status[bad.code]).toBe("INVALID_ARGUMENT");
    // A request id that is too long (or has spaces) is replaced by a UUID.
    await h.client.getCtr({}, { metadata: { "x-request-id": "x".repeat(129) } });
    await h.client.getCtr({}, { metadata: { "x-request-id": "has space" } });

    const [ok, invalid, tooLong, spaced, ...rest] = rpcLines().slice(before);
    expect(rest).toEqual([]);
    expect(ok).toEqual({
      level: "info",
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      msg: "rpc",
      method: GET_CTR,
      code: 0,
      codeName: "OK",
      durationMs: expect.any(Number),
      peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      requestId: "req-abc-123",
    });
    expect(ok!.durationMs).toBeGreaterThanOrEqual(0);
    expect(invalid).toMatchObject({ level: "info", method: GET_CTR, code: Status.INVALID_ARGUMENT, codeName: "INVALID_ARGUMENT", requestId: expect.stringMatching(UUID) });
    expect(tooLong!.requestId).toMatch(UUID);
    expect(spaced!.requestId).toMatch(UUID);
    expect(new Set([invalid!.requestId, tooLong!.requestId, spaced!.requestId]).size).toBe(3);
  });

  it("logs a batch with mixed outcomes as one line, without any of its field values", async () => {
    const before = rpcLines().length;
    const first = `evt-${randomUUID()}`;
    await h.client.logEvents({ events: [click(first)] });
    const mixed = await h.client.logEvents({ events: [click(first), click(`evt-${randomUUID()}`), click(`evt-${randomUUID()}`, -1)] });
    expect([mixed.accepted, mixed.duplicates, mixed.rejected]).toEqual([1n, 1n, 1n]);
    const logged = rpcLines().slice(before);
    expect(logged.map((l) => [l.method, l.codeName])).toEqual([
      [LOG_EVENTS, "OK"],
      [LOG_EVENTS, "OK"],
    ]);
    // Unary writes too: new, duplicate (a retry), rejected.
    const unary = click(`evt-${randomUUID()}`).kind.value;
    await h.client.logClick(unary);
    await h.client.logClick(unary);
    expect(Status[(await failure(h.client.logClick({ ...unary, eventId: `evt-${randomUUID()}`, rank: -1 }))).code]).toBe("INVALID_ARGUMENT");
  });

  it("logs a cancelled stream as CANCELLED", async () => {
    const abort = new AbortController();
    for await (const snapshot of h.client.watchMetrics({ intervalSeconds: 1 }, { signal: abort.signal, metadata: { "x-request-id": "watch-1" } })) {
      expect(snapshot).toBeDefined();
      abort.abort();
    }
    await eventually(() => expect(rpcLines().find((l) => l.requestId === "watch-1")).toMatchObject({ method: WATCH_METRICS, codeName: "CANCELLED", level: "info" }));
  });

  it("never logs a credential, a body or a field value", () => {
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) for (const value of NEVER_LOGGED) expect(line).not.toContain(value);
    for (const entry of rpcLines()) expect(Object.keys(entry).sort()).toEqual(["code", "codeName", "durationMs", "level", "method", "msg", "peer", "requestId", "time"]);
  });
});

describe("x-request-id", () => {
  it("is echoed in the response headers, and in the trailers of a failure", async () => {
    const sent = new grpc.Metadata();
    sent.set("x-request-id", "echo-me-1");
    const ok = await rawGetCtr(7, sent);
    expect(ok.error).toBeNull();
    expect(ok.headers?.get("x-request-id")).toEqual(["echo-me-1"]);

    const failing = new grpc.Metadata();
    failing.set("x-request-id", "echo-me-2");
    const bad = await rawGetCtr(999, failing);
    expect(bad.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.error?.metadata.get("x-request-id")).toEqual(["echo-me-2"]);

    // A generated id is echoed too, so a caller can quote it.
    const generated = await rawGetCtr(7, new grpc.Metadata());
    const [id] = generated.headers?.get("x-request-id") ?? [];
    expect(id).toMatch(UUID);
    expect(rpcLines().some((l) => l.requestId === id)).toBe(true);
  });

  it("is sent at once by a server stream", async () => {
    const metadata = new grpc.Metadata();
    metadata.set("x-request-id", "stream-echo");
    const call = raw.makeServerStreamRequest<Uint8Array, Uint8Array>(
      "/grpc.health.v1.Health/Watch",
      (b) => Buffer.from(b),
      (b) => new Uint8Array(b),
      toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service: "" })),
      metadata,
    );
    call.on("error", () => undefined); // CANCELLED below
    const headers = await new Promise<grpc.Metadata>((resolve) => call.once("metadata", resolve));
    expect(headers.get("x-request-id")).toEqual(["stream-echo"]);
    call.cancel();
    await eventually(() => expect(rpcLines().find((l) => l.requestId === "stream-echo")).toMatchObject({ method: "/grpc.health.v1.Health/Watch", codeName: "CANCELLED" }));
  });
});

describe("metrics endpoint", () => {
  it("serves the Prometheus text format: calls by method and code, durations, spool, storage, process", async () => {
    const res = await scrape(h.server.metricsPort);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();

    // Every finished call is counted once, exactly as logged.
    const logged = new Map<string, number>();
    for (const l of rpcLines()) logged.set(`${l.method} ${l.codeName}`, (logged.get(`${l.method} ${l.codeName}`) ?? 0) + 1);
    const counted = samples(text).filter((s) => s.name === "click_analytics_rpc_requests_total");
    expect(new Map(counted.map((s) => [`${s.labels.method} ${s.labels.code}`, s.value]))).toEqual(logged);
    expect(valueOf(text, "click_analytics_rpc_requests_total", { method: GET_CTR, code: "OK" })).toBeGreaterThanOrEqual(4);
    expect(valueOf(text, "click_analytics_rpc_requests_total", { method: GET_CTR, code: "INVALID_ARGUMENT" })).toBe(2);
    expect(valueOf(text, "click_analytics_rpc_requests_total", { method: LOG_EVENTS, code: "OK" })).toBe(2);

    const getCtrCalls = [...logged].filter(([key]) => key.startsWith(`${GET_CTR} `)).reduce((n, [, v]) => n + v, 0);
    expect(valueOf(text, "click_analytics_rpc_duration_seconds_count", { method: GET_CTR })).toBe(getCtrCalls);
    expect(valueOf(text, "click_analytics_rpc_duration_seconds_bucket", { method: GET_CTR, le: "+Inf" })).toBe(getCtrCalls);
    expect(valueOf(text, "click_analytics_rpc_duration_seconds_sum", { method: GET_CTR })).toBeGreaterThan(0);
    expect(valueOf(text, "click_analytics_rpc_duration_seconds_bucket", { method: GET_CTR, le: "0.001" })).toBeTypeOf("number");

    // LogEvents: [a] then [a again, b, c with rank -1]; LogClick: d, d again, then one with rank -1.
    const ingested = (outcome: string) => valueOf(text, "click_analytics_events_ingested_total", { outcome });
    expect([ingested("accepted"), ingested("duplicate"), ingested("rejected")]).toEqual([3, 2, 2]);
    expect(valueOf(text, "click_analytics_spool_pending_batches")).toBe(0);
    expect(valueOf(text, "click_analytics_spool_bytes")).toBe(0);
    expect(valueOf(text, "click_analytics_storage_up")).toBe(1);
    expect(valueOf(text, "click_analytics_process_cpu_user_seconds_total")).toBeGreaterThan(0);
    expect(valueOf(text, "click_analytics_process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(text).toContain("# TYPE click_analytics_nodejs_eventloop_lag_seconds gauge");
  });

  it("answers 404 anywhere else", async () => {
    for (const path of ["/", "/metrics/x", "/health"]) expect((await scrape(h.server.metricsPort, path)).status).toBe(404);
    expect((await scrape(h.server.metricsPort, "/metrics", { method: "POST", body: "x" })).status).toBe(404);
    expect((await scrape(h.server.metricsPort, "/metrics?name[]=x")).status).toBe(200);
  });

  it("is not served without metricsPort", async () => {
    const plain = await startHarness();
    try {
      expect(plain.server.metricsPort).toBeUndefined();
      expect(plain.server.metrics).toBeUndefined();
      await expect(plain.client.getCtr({})).resolves.toBeDefined();
    } finally {
      await plain.close();
    }
  });

  it("keeps a registry per server, and closes with its server", async () => {
    const before = await metricsText(h);
    const other = await startHarness({ metricsPort: 0 });
    let otherPort: number | undefined;
    try {
      otherPort = other.server.metricsPort;
      expect(otherPort).not.toBe(h.server.metricsPort);
      await other.client.getCtr({});
      const otherText = await metricsText(other);
      expect(valueOf(otherText, "click_analytics_rpc_requests_total", { method: GET_CTR, code: "OK" })).toBe(1);
      expect(valueOf(otherText, "click_analytics_rpc_requests_total", { method: LOG_EVENTS, code: "OK" })).toBeUndefined();
      expect(valueOf(otherText, "click_analytics_process_cpu_user_seconds_total")).toBeGreaterThan(0);
      // The first server's counts did not move.
      const after = await metricsText(h);
      expect(valueOf(after, "click_analytics_rpc_requests_total", { method: GET_CTR, code: "OK" })).toBe(valueOf(before, "click_analytics_rpc_requests_total", { method: GET_CTR, code: "OK" }));
    } finally {
      await other.close();
    }
    await expect(fetch(`http://127.0.0.1:${otherPort}/metrics`)).rejects.toThrow();
  });
});

describe("configuration", () => {
  const refused = configRefusal;

  it("reads METRICS_PORT (default 9464, off) and METRICS_HOST (default HOST)", () => {
    expect(configFromEnv({})).toMatchObject({ metricsPort: 9464, metricsHost: "0.0.0.0" });
    expect(configFromEnv({ METRICS_PORT: "0", HOST: "127.0.0.1" })).toMatchObject({ metricsPort: 0, metricsHost: "127.0.0.1" });
    expect(configFromEnv({ METRICS_PORT: "9100", METRICS_HOST: "10.0.0.1" })).toMatchObject({ metricsPort: 9100, metricsHost: "10.0.0.1" });
    expect(configFromEnv({ METRICS_PORT: "off" }).metricsPort).toBeUndefined();
  });

  it("refuses an invalid METRICS_PORT with a message naming it", () => {
    expect(refused({ METRICS_PORT: "abc" })).toBe('METRICS_PORT must be an integer between 0 and 65535, or "off", got "abc"');
    expect(refused({ METRICS_PORT: "65536" })).toMatch(/^METRICS_PORT /);
    expect(refused({ METRICS_PORT: "-1" })).toMatch(/^METRICS_PORT /);
    expect(refused({ METRICS_PORT: "50051" })).toBe("METRICS_PORT must differ from PORT (both are 50051)");
    expect(refused({ PORT: "9464" })).toMatch(/^METRICS_PORT must differ from PORT/);
    expect(configFromEnv({ PORT: "9464", METRICS_PORT: "9465" }).metricsPort).toBe(9465);
  });
});
