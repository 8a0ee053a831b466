/**
 * Type tests for the package's public surface (src/client/index.ts, the "." export): checked by
 * tsc through vitest's typecheck mode, never executed. Every `@ts-expect-error` marks a mistake a
 * caller could make that the types must keep rejecting; if a type is widened (e.g. to `any` or
 * `unknown`) the directive becomes unused and tsc fails.
 */
import { create, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { assertType, describe, expectTypeOf, test } from "vitest";
import {
  BufferedLogger,
  ClickAnalytics,
  ClickSource,
  createBufferedLogger,
  createClickAnalyticsClient,
  credentials,
  EventOutcome,
  ExportKind,
  Granularity,
  LogClickRequestSchema,
  LogEventsResponseSchema,
  Metadata,
  Status,
  TopQueriesOrder,
  type BufferedLoggerError,
  type BufferedLoggerOptions,
  type BufferedLoggerStats,
  type CallOptions,
  type ClickAnalyticsClient,
  type ClickAnalyticsMethods,
  type ClickInit,
  type ClientOptions,
  type ClientTlsOptions,
  type EventResult,
  type ExportedEvent,
  type ExportEventsResponse,
  type GetCtrResponse,
  type GetCtrResponseSchema,
  type GetTimeSeriesResponse,
  type GetVariantComparisonResponse,
  type ImpressionInit,
  type LogClickRequest,
  type LogClickResponse,
  type LogEventsResponse,
  type LogImpressionRequestSchema,
  type LogImpressionResponse,
  type ServiceError,
  type StreamBatch,
  type StreamEventsRequestSchema,
  type StreamEventsResponse,
  type WatchMetricsResponse,
} from "../../src/client/index.js";
import type * as Root from "../../src/client/index.js";

declare const client: ClickAnalyticsClient;
declare const logger: BufferedLogger;
declare const error: ServiceError;

/** The channel credentials type, named through the root export (grpc-js's ChannelCredentials). */
type ChannelCredentials = ReturnType<typeof credentials.createInsecure>;

// Derived from the generated service descriptor, so an RPC added to the proto is covered here
// without touching this file.
type Methods = (typeof ClickAnalytics)["method"];
type MethodName = keyof Methods;
type UnaryName = { [K in MethodName]: Methods[K]["methodKind"] extends "unary" ? K : never }[MethodName];
type ExpectedUnaryMethods = {
  [K in UnaryName]: (request: MessageInitShape<Methods[K]["input"]>, options?: CallOptions) => Promise<MessageShape<Methods[K]["output"]>>;
};
type ServerStreamName = { [K in MethodName]: Methods[K]["methodKind"] extends "server_streaming" ? K : never }[MethodName];
type ExpectedServerStreams = {
  [K in ServerStreamName]: (request: MessageInitShape<Methods[K]["input"]>, options?: CallOptions) => AsyncIterable<MessageShape<Methods[K]["output"]>>;
};

describe("createClickAnalyticsClient", () => {
  test("takes an address and optional ClientOptions and returns a ClickAnalyticsClient", () => {
    expectTypeOf(createClickAnalyticsClient).parameters.toEqualTypeOf<[address: string, options?: ClientOptions]>();
    expectTypeOf(createClickAnalyticsClient).returns.toEqualTypeOf<ClickAnalyticsClient>();
    expectTypeOf(createClickAnalyticsClient).toBeCallableWith("localhost:50051");
    expectTypeOf(createClickAnalyticsClient).toBeCallableWith("dns:///analytics:443", { tls: {}, token: "t" });

    // @ts-expect-error the address is required
    createClickAnalyticsClient();
    // @ts-expect-error the address is a string, not a URL
    createClickAnalyticsClient(new URL("http://localhost:50051"));
  });

  test("ClientOptions has exactly the documented fields", () => {
    type CallDefaults = {
      defaultTimeoutMs?: number;
      userId?: string;
      token?: string;
      metadata?: Record<string, string>;
      channelOptions?: ClientOptions["channelOptions"];
    };
    // credentials or tls, never both
    expectTypeOf<ClientOptions>().toEqualTypeOf<CallDefaults & ({ credentials?: ChannelCredentials; tls?: undefined } | { tls?: ClientTlsOptions; credentials?: undefined })>();
    // a client certificate and its key together, or neither
    expectTypeOf<ClientTlsOptions>().toEqualTypeOf<{ ca?: Buffer | string; serverNameOverride?: string } & ({ cert: Buffer | string; key: Buffer | string } | { cert?: undefined; key?: undefined })>();
    expectTypeOf<NonNullable<ClientOptions["channelOptions"]>>().toHaveProperty("grpc.keepalive_time_ms").toEqualTypeOf<number | undefined>();

    assertType<ClientOptions>({});
    assertType<ClientOptions>({ credentials: credentials.createInsecure() });
    assertType<ClientOptions>({ credentials: credentials.createSsl(Buffer.from("ca")) });
    assertType<ClientOptions>({ tls: { ca: Buffer.from("ca"), cert: "-----BEGIN CERTIFICATE-----", key: Buffer.from("k"), serverNameOverride: "analytics.internal" } });
    assertType<ClientOptions>({ defaultTimeoutMs: 2_000, userId: "svc", token: "secret", metadata: { "x-team": "search" } });
    assertType<ClientOptions>({ channelOptions: { "grpc.keepalive_time_ms": 30_000, "grpc.max_receive_message_length": 8 << 20 } });
  });

  test("ClientOptions rejects wrong types", () => {
    // @ts-expect-error credentials is a ChannelCredentials object, not a name
    assertType<ClientOptions>({ credentials: "insecure" });
    // @ts-expect-error tls.ca is PEM contents (Buffer | string), not a number
    assertType<ClientOptions>({ tls: { ca: 42 } });
    // @ts-expect-error tls takes PEM contents, not file paths: there is no caFile
    assertType<ClientOptions>({ tls: { caFile: "/etc/ssl/ca.pem" } });
    // @ts-expect-error serverNameOverride is a string
    assertType<ClientOptions>({ tls: { serverNameOverride: true } });
    // @ts-expect-error tls is an options object, not a boolean
    assertType<ClientOptions>({ tls: true });
    // @ts-expect-error defaultTimeoutMs is milliseconds, not a duration string
    assertType<ClientOptions>({ defaultTimeoutMs: "10s" });
    // @ts-expect-error userId is a string
    assertType<ClientOptions>({ userId: 7 });
    // @ts-expect-error token is a string
    assertType<ClientOptions>({ token: Buffer.from("secret") });
    // @ts-expect-error metadata values are strings
    assertType<ClientOptions>({ metadata: { "x-retries": 3 } });
    // @ts-expect-error channelOptions is an object of options
    assertType<ClientOptions>({ channelOptions: "grpc.keepalive_time_ms=1000" });
    // @ts-expect-error known channel options keep their types
    assertType<ClientOptions>({ channelOptions: { "grpc.keepalive_time_ms": "30s" } });
    // @ts-expect-error unknown option (timeouts are defaultTimeoutMs)
    assertType<ClientOptions>({ timeoutMs: 1_000 });
    // @ts-expect-error credentials and tls exclude each other
    assertType<ClientOptions>({ credentials: credentials.createInsecure(), tls: {} });
    // @ts-expect-error a client certificate needs its key
    assertType<ClientOptions>({ tls: { cert: "-----BEGIN CERTIFICATE-----" } });
    // @ts-expect-error and a key its certificate
    assertType<ClientTlsOptions>({ ca: "ca", key: Buffer.from("k") });
  });
});

describe("unary RPCs", () => {
  test("every unary RPC of the service descriptor is a method: (init shape, CallOptions?) => Promise<response>", () => {
    // Nothing silently filtered away: the derived set is not empty and holds the known RPCs.
    expectTypeOf<UnaryName>().not.toBeNever();
    expectTypeOf<"logClick" | "logImpression" | "logEvents" | "getCtr" | "getRankMetrics" | "getResponseTimeMetrics" | "getUserSummary" | "getVariantComparison" | "getTopQueries" | "getTimeSeries" | "reset">().toExtend<UnaryName>();
    expectTypeOf<Pick<ClickAnalyticsClient, UnaryName>>().toEqualTypeOf<ExpectedUnaryMethods>();
    expectTypeOf<Pick<ClickAnalyticsMethods, UnaryName>>().toEqualTypeOf<ExpectedUnaryMethods>();
  });

  test("the client has exactly these members: every RPC, waitForReady and close", () => {
    expectTypeOf<keyof ClickAnalyticsClient>().toEqualTypeOf<MethodName | "waitForReady" | "close">();
    expectTypeOf<keyof ClickAnalyticsMethods>().toEqualTypeOf<MethodName>();
    expectTypeOf<ServerStreamName>().toEqualTypeOf<"watchMetrics" | "exportEvents">();
    expectTypeOf<Pick<ClickAnalyticsClient, ServerStreamName>>().toEqualTypeOf<ExpectedServerStreams>();
  });

  test("concrete methods", () => {
    expectTypeOf(client.logClick).parameter(0).toEqualTypeOf<ClickInit>();
    expectTypeOf(client.logClick).parameter(1).toEqualTypeOf<CallOptions | undefined>();
    expectTypeOf(client.logClick).returns.toEqualTypeOf<Promise<LogClickResponse>>();
    expectTypeOf(client.logImpression).parameter(0).toEqualTypeOf<ImpressionInit>();
    expectTypeOf(client.logImpression).returns.resolves.toEqualTypeOf<LogImpressionResponse>();
    expectTypeOf(client.getCtr).returns.toEqualTypeOf<Promise<GetCtrResponse>>();
    expectTypeOf(client.getVariantComparison).returns.toEqualTypeOf<Promise<GetVariantComparisonResponse>>();
    expectTypeOf(client.getTimeSeries).returns.resolves.toEqualTypeOf<GetTimeSeriesResponse>();
    expectTypeOf(client.logEvents).returns.resolves.toEqualTypeOf<LogEventsResponse>();

    expectTypeOf(client.getCtr).toBeCallableWith({});
    expectTypeOf(client.getCtr).toBeCallableWith({ days: 7, variant: "search_v2" }, { timeoutMs: 500 });
    expectTypeOf(client.logClick).toBeCallableWith({ productId: "p1", rank: 0, searchQuery: "shoes", variant: "search_v1", source: ClickSource.SEARCH_RESULTS, timestamp: { seconds: 1_700_000_000n, nanos: 0 } });
    expectTypeOf(client.logClick).toBeCallableWith(create(LogClickRequestSchema, { productId: "p1" }));
    expectTypeOf(client.getVariantComparison).toBeCallableWith({ control: "search_v1", confidence: 0.95, expectedSplit: { search_v1: 0.5, search_v2: 0.5 }, minImpressions: 100n });
    expectTypeOf(client.getTimeSeries).toBeCallableWith({ granularity: Granularity.HOUR, timeZone: "Europe/Berlin" });
    expectTypeOf(client.getTopQueries).toBeCallableWith({ orderBy: TopQueriesOrder.CTR, limit: 10 });
    expectTypeOf(client.logEvents).toBeCallableWith({ events: [{ kind: { case: "click", value: { productId: "p1" } } }, { kind: { case: "impression", value: { query: "shoes" } } }] });
  });

  test("responses are the generated messages (int64 as bigint, proto3 optional as T | undefined)", async () => {
    const ctr = await client.getCtr({ days: 7 });
    expectTypeOf(ctr).toEqualTypeOf<GetCtrResponse>();
    expectTypeOf(ctr).toEqualTypeOf<MessageShape<typeof GetCtrResponseSchema>>();
    expectTypeOf(ctr.clicks).toEqualTypeOf<bigint>();
    expectTypeOf(ctr.ctr).toEqualTypeOf<number | undefined>();
    expectTypeOf((await client.logClick({ productId: "p1" })).eventId).toEqualTypeOf<string>();
  });

  test("requests with wrong fields and unknown methods are rejected", () => {
    // @ts-expect-error rank is an int32 (number), not a string
    void client.logClick({ rank: "1" });
    // @ts-expect-error unknown field
    void client.logClick({ productId: "p1", position: 1 });
    // @ts-expect-error `query` belongs to impressions; clicks have searchQuery
    void client.logClick({ query: "shoes" });
    // @ts-expect-error not a ClickSource
    void client.logClick({ source: 99 });
    // @ts-expect-error the request is required (pass {} for defaults)
    void client.getCtr();
    // @ts-expect-error days is an int32
    void client.getCtr({ days: "7" });
    // @ts-expect-error granularity is the Granularity enum, not its name
    void client.getTimeSeries({ granularity: "HOUR" });
    // @ts-expect-error expected_split maps variant -> double
    void client.getVariantComparison({ expectedSplit: { search_v1: "0.5" } });
    // @ts-expect-error min_impressions is an int64 (bigint | number | string), not a boolean
    void client.getVariantComparison({ minImpressions: true });
    // @ts-expect-error an event is a click or an impression
    void client.logEvents({ events: [{ kind: { case: "purchase", value: {} } }] });
    // @ts-expect-error unknown method
    void client.logClicks({ productId: "p1" });
    // @ts-expect-error ExportEvents' kind is the ExportKind enum, not its name
    void client.exportEvents({ kind: "clicks" });
  });

  test("the response type is what the method says, not any", async () => {
    // @ts-expect-error logClick does not resolve to a GetCtrResponse
    const wrong: GetCtrResponse = await client.logClick({ productId: "p1" });
    // @ts-expect-error responses are wrapped in a Promise
    const notAwaited: LogClickResponse = client.logClick({ productId: "p1" });
    void wrong;
    void notAwaited;
    expectTypeOf(client.logClick).returns.not.toBeAny();
    expectTypeOf(client.logClick).parameter(0).not.toBeAny();
  });
});

describe("streaming RPCs", () => {
  test("streamEvents takes an Iterable or AsyncIterable of batches and resolves to StreamEventsResponse", () => {
    expectTypeOf<StreamBatch>().toEqualTypeOf<MessageInitShape<typeof StreamEventsRequestSchema>>();
    expectTypeOf(client.streamEvents).parameters.toEqualTypeOf<[batches: Iterable<StreamBatch> | AsyncIterable<StreamBatch>, options?: CallOptions]>();
    expectTypeOf(client.streamEvents).returns.toEqualTypeOf<Promise<StreamEventsResponse>>();

    const batch: StreamBatch = { events: [{ kind: { case: "click", value: { productId: "p1" } } }] };
    function* syncBatches(): Generator<StreamBatch> {
      yield batch;
    }
    async function* asyncBatches(): AsyncGenerator<StreamBatch> {
      yield batch;
    }
    expectTypeOf(client.streamEvents).toBeCallableWith([batch]);
    expectTypeOf(client.streamEvents).toBeCallableWith(new Set([batch]));
    expectTypeOf(client.streamEvents).toBeCallableWith(syncBatches());
    expectTypeOf(client.streamEvents).toBeCallableWith(asyncBatches(), { signal: new AbortController().signal });

    // @ts-expect-error one batch is not a stream of batches
    void client.streamEvents(batch);
    // @ts-expect-error a Promise of batches is not an AsyncIterable
    void client.streamEvents(Promise.resolve([batch]));
    // @ts-expect-error batches are StreamEventsRequest init shapes
    void client.streamEvents([{ events: [], flush: true }]);
    // @ts-expect-error events are Event init shapes
    void client.streamEvents([{ events: [{ productId: "p1" }] }]);
  });

  test("watchMetrics returns an AsyncIterable of WatchMetricsResponse", async () => {
    expectTypeOf(client.watchMetrics).returns.toEqualTypeOf<AsyncIterable<WatchMetricsResponse>>();
    expectTypeOf(client.watchMetrics).parameter(1).toEqualTypeOf<CallOptions | undefined>();
    expectTypeOf(client.watchMetrics).toBeCallableWith({ intervalSeconds: 5, variant: "search_v1" }, { signal: new AbortController().signal });
    for await (const snapshot of client.watchMetrics({ intervalSeconds: 5 })) {
      expectTypeOf(snapshot).toEqualTypeOf<WatchMetricsResponse>();
      expectTypeOf(snapshot.overall?.clicks).toEqualTypeOf<bigint | undefined>();
    }
    expectTypeOf(client.watchMetrics({})).not.toExtend<PromiseLike<unknown>>();

    // @ts-expect-error it is an async iterable, not a sync one
    for (const snapshot of client.watchMetrics({})) void snapshot;
    // @ts-expect-error interval_seconds is an int32
    void client.watchMetrics({ intervalSeconds: "5" });
  });

  test("exportEvents returns an AsyncIterable of ExportEventsResponse batches", async () => {
    expectTypeOf(client.exportEvents).returns.toEqualTypeOf<AsyncIterable<ExportEventsResponse>>();
    expectTypeOf(client.exportEvents).toBeCallableWith({ days: 30, kind: ExportKind.CLICKS }, { signal: new AbortController().signal });
    for await (const batch of client.exportEvents({ days: 1 })) expectTypeOf(batch.events).toEqualTypeOf<ExportedEvent[]>();
    // @ts-expect-error days is an int32
    void client.exportEvents({ days: "30" });
  });
});

describe("CallOptions", () => {
  test("has exactly timeoutMs, deadline, userId, sessionId, metadata and signal", () => {
    expectTypeOf<CallOptions>().toEqualTypeOf<{
      timeoutMs?: number;
      deadline?: Date;
      userId?: string;
      sessionId?: string;
      metadata?: Record<string, string>;
      signal?: AbortSignal;
    }>();
    assertType<CallOptions>({});
    assertType<CallOptions>({ timeoutMs: 250, deadline: new Date(), userId: "u1", sessionId: "s1", metadata: { "x-request-id": "r1" }, signal: AbortSignal.timeout(1_000) });
  });

  test("rejects wrong types", () => {
    // @ts-expect-error timeoutMs is milliseconds
    void client.getCtr({}, { timeoutMs: "5s" });
    // @ts-expect-error deadline is a Date, not epoch milliseconds
    void client.getCtr({}, { deadline: Date.now() + 1_000 });
    // @ts-expect-error deadline is a Date, not a string
    void client.getCtr({}, { deadline: "2030-01-01T00:00:00Z" });
    // @ts-expect-error userId is a string
    void client.getCtr({}, { userId: 1 });
    // @ts-expect-error sessionId is a string
    void client.getCtr({}, { sessionId: null });
    // @ts-expect-error metadata values are strings
    void client.getCtr({}, { metadata: { "x-attempt": 2 } });
    // @ts-expect-error metadata is a plain record, not grpc Metadata
    void client.getCtr({}, { metadata: new Metadata() });
    // @ts-expect-error signal is the AbortSignal, not its controller
    void client.getCtr({}, { signal: new AbortController() });
    // @ts-expect-error unknown option
    void client.getCtr({}, { timeout: 5_000 });
  });
});

describe("lifecycle", () => {
  test("waitForReady(timeoutMs?) => Promise<void>, close() => void", () => {
    expectTypeOf(client.waitForReady).toEqualTypeOf<(timeoutMs?: number) => Promise<void>>();
    expectTypeOf(client.close).toEqualTypeOf<() => void>();
    expectTypeOf(client.waitForReady).toBeCallableWith();
    expectTypeOf(client.waitForReady).toBeCallableWith(5_000);
    // @ts-expect-error timeoutMs is a number
    void client.waitForReady("5s");
    // @ts-expect-error close is synchronous: nothing to await
    void client.close().then(() => undefined);
  });
});

describe("errors", () => {
  test("Status is grpc's numeric status enum", () => {
    expectTypeOf(Status.INVALID_ARGUMENT).toExtend<number>();
    assertType<number>(Status.INVALID_ARGUMENT);
    const code: number = Status.NOT_FOUND;
    void code;
    expectTypeOf<Status>().toExtend<number>();
    expectTypeOf(Status.OK).toExtend<Status>();
    expectTypeOf(Status.UNAVAILABLE).toExtend<Status>();
    expectTypeOf(Status.DEADLINE_EXCEEDED).toExtend<Status>();
    // @ts-expect-error the enum has numbers, not names
    assertType<Status>("INVALID_ARGUMENT");
    // @ts-expect-error no such status
    void Status.BAD_REQUEST;
  });

  test("ServiceError carries code, details and metadata", () => {
    expectTypeOf<ServiceError>().toExtend<Error>();
    expectTypeOf(error.code).toEqualTypeOf<Status>();
    expectTypeOf(error.details).toEqualTypeOf<string>();
    expectTypeOf(error.metadata).toEqualTypeOf<Metadata>();
    expectTypeOf(error.metadata.get).returns.toExtend<unknown[]>();
    const retryable = (e: ServiceError): boolean => e.code === Status.UNAVAILABLE || e.code === Status.DEADLINE_EXCEEDED;
    expectTypeOf(retryable).parameter(0).toEqualTypeOf<ServiceError>();
    // @ts-expect-error code is a number (compare with Status.NOT_FOUND)
    if (error.code === "NOT_FOUND") void error;
  });
});

describe("generated enums and messages are re-exported", () => {
  test("enums", () => {
    expectTypeOf(ClickSource.SEARCH_RESULTS).toExtend<ClickSource>();
    expectTypeOf<ClickSource>().toExtend<number>();
    expectTypeOf(Granularity.HOUR).toExtend<Granularity>();
    expectTypeOf(Granularity.DAY).toExtend<Granularity>();
    expectTypeOf(EventOutcome.REJECTED).toExtend<EventOutcome>();
    expectTypeOf<EventResult["outcome"]>().toEqualTypeOf<EventOutcome>();
    expectTypeOf(TopQueriesOrder.CLICKS).toExtend<TopQueriesOrder>();
    expectTypeOf(ExportKind.CLICKS).toExtend<ExportKind>();
    // @ts-expect-error no such ClickSource
    void ClickSource.EMAIL;
    // @ts-expect-error enums are distinct: a Granularity is not a ClickSource
    assertType<ClickSource>(Granularity.HOUR);
  });

  test("schemas create the generated messages", () => {
    expectTypeOf(create(LogClickRequestSchema)).toEqualTypeOf<LogClickRequest>();
    expectTypeOf(create(LogClickRequestSchema, { productId: "p1", rank: 2 })).toEqualTypeOf<LogClickRequest>();
    expectTypeOf(create(LogEventsResponseSchema)).toEqualTypeOf<LogEventsResponse>();
    expectTypeOf<MessageShape<typeof LogClickRequestSchema>>().toEqualTypeOf<LogClickRequest>();
    expectTypeOf(create(LogClickRequestSchema).$typeName).toEqualTypeOf<"clickanalytics.v1.LogClickRequest">();
    expectTypeOf(ClickAnalytics.typeName).toBeString();
    // @ts-expect-error create checks the init shape too
    create(LogClickRequestSchema, { rank: "1" });
  });
});

describe("BufferedLogger", () => {
  type LogEventsClient = Pick<ClickAnalyticsClient, "logEvents">;

  test("constructor and factory take a logEvents client and optional options", () => {
    expectTypeOf(BufferedLogger).constructorParameters.toEqualTypeOf<[client: LogEventsClient, options?: BufferedLoggerOptions]>();
    expectTypeOf(createBufferedLogger).parameters.toEqualTypeOf<[client: LogEventsClient, options?: BufferedLoggerOptions]>();
    expectTypeOf(createBufferedLogger).returns.toEqualTypeOf<BufferedLogger>();
    expectTypeOf(BufferedLogger).instance.toEqualTypeOf<BufferedLogger>();

    // The whole client, or anything with a matching logEvents (a test double).
    expectTypeOf(createBufferedLogger).toBeCallableWith(client);
    expectTypeOf(createBufferedLogger).toBeCallableWith({ logEvents: async () => create(LogEventsResponseSchema, { accepted: 1n }) }, { maxBatchSize: 100 });
    assertType<BufferedLogger>(new BufferedLogger(client, { flushIntervalMs: 50 }));

    // @ts-expect-error the client is required
    createBufferedLogger();
    // @ts-expect-error the client must have logEvents
    createBufferedLogger({ logClick: client.logClick });
    // @ts-expect-error logEvents must resolve to a LogEventsResponse message
    createBufferedLogger({ logEvents: async () => ({ accepted: 1n }) });
    // @ts-expect-error a client address is not a client
    new BufferedLogger("localhost:50051");
  });

  test("options", () => {
    expectTypeOf<BufferedLoggerOptions>().toEqualTypeOf<{
      maxBatchSize?: number;
      flushIntervalMs?: number;
      maxBufferedEvents?: number;
      maxConcurrentBatches?: number;
      callOptions?: CallOptions;
      onError?: (error: BufferedLoggerError) => void;
    }>();
    assertType<BufferedLoggerOptions>({ maxBatchSize: 500, flushIntervalMs: 200, maxBufferedEvents: 10_000, maxConcurrentBatches: 2, callOptions: { timeoutMs: 5_000, userId: "svc" }, onError: (e) => void e.kind });

    // @ts-expect-error maxBatchSize is a number
    assertType<BufferedLoggerOptions>({ maxBatchSize: "500" });
    // @ts-expect-error flushIntervalMs is milliseconds
    assertType<BufferedLoggerOptions>({ flushIntervalMs: "200ms" });
    // @ts-expect-error callOptions are CallOptions
    assertType<BufferedLoggerOptions>({ callOptions: { timeoutMs: "5s" } });
    // @ts-expect-error onError receives a BufferedLoggerError, not a string
    assertType<BufferedLoggerOptions>({ onError: (message: string) => void message });
    // @ts-expect-error unknown option
    assertType<BufferedLoggerOptions>({ batchSize: 500 });
  });

  test("logging methods, pending and stats", () => {
    expectTypeOf<ClickInit>().toEqualTypeOf<MessageInitShape<typeof LogClickRequestSchema>>();
    expectTypeOf<ImpressionInit>().toEqualTypeOf<MessageInitShape<typeof LogImpressionRequestSchema>>();
    expectTypeOf(logger.logClick).toEqualTypeOf<(click: ClickInit) => string>();
    expectTypeOf(logger.logImpression).toEqualTypeOf<(impression: ImpressionInit) => string>();
    expectTypeOf(logger.flush).toEqualTypeOf<() => Promise<void>>();
    expectTypeOf(logger.close).toEqualTypeOf<() => Promise<void>>();
    expectTypeOf(logger.pending).toEqualTypeOf<number>();
    expectTypeOf(logger.stats).toEqualTypeOf<BufferedLoggerStats>();
    expectTypeOf<BufferedLoggerStats>().toEqualTypeOf<{
      accepted: number;
      duplicates: number;
      rejected: number;
      failed: number;
      dropped: number;
      batches: number;
    }>();
    expectTypeOf(logger.logClick).toBeCallableWith({ productId: "p1", rank: 0, searchQuery: "shoes", variant: "search_v1", impressionId: logger.logImpression({ query: "shoes", resultsCount: 10 }) });

    // @ts-expect-error rank is a number
    logger.logClick({ rank: "1" });
    // @ts-expect-error clicks have searchQuery, impressions have query
    logger.logClick({ query: "shoes" });
    // @ts-expect-error resultsCount is a number
    logger.logImpression({ resultsCount: "10" });
    // @ts-expect-error an impression is not a click (productId is a click field)
    logger.logImpression({ productId: "p1" });
    // @ts-expect-error stats is read-only
    logger.stats = { accepted: 0, duplicates: 0, rejected: 0, failed: 0, dropped: 0, batches: 0 };
    // @ts-expect-error pending is a getter
    logger.pending = 0;
    // @ts-expect-error the buffer is private
    void logger.buffer;
    // @ts-expect-error the client is private
    void logger.client;
  });

  test("BufferedLoggerError", () => {
    expectTypeOf<BufferedLoggerError["kind"]>().toEqualTypeOf<"rejected" | "failed" | "dropped">();
    expectTypeOf<BufferedLoggerError>().toEqualTypeOf<{
      kind: "rejected" | "failed" | "dropped";
      message: string;
      events: number;
      results?: EventResult[];
      cause?: unknown;
    }>();
    // A switch over kind is exhaustive with exactly these three cases.
    const describeError = (e: BufferedLoggerError): string => {
      switch (e.kind) {
        case "rejected":
          return `${e.results?.length ?? 0} rejected`;
        case "failed":
          return "failed";
        case "dropped":
          return "dropped";
        default: {
          const unreachable: never = e.kind;
          return unreachable;
        }
      }
    };
    expectTypeOf(describeError).returns.toBeString();

    // @ts-expect-error not a kind
    assertType<BufferedLoggerError["kind"]>("timeout");
    // @ts-expect-error kind is a literal union, not any string
    assertType<BufferedLoggerError["kind"]>("" as string);
  });
});

describe("the root export exposes no server internals", () => {
  type RootModule = typeof import("../../src/client/index.js");

  test("values", () => {
    expectTypeOf<RootModule>().toHaveProperty("createClickAnalyticsClient");
    expectTypeOf<RootModule>().toHaveProperty("createBufferedLogger");
    expectTypeOf<RootModule>().not.toHaveProperty("startServer");
    expectTypeOf<RootModule>().not.toHaveProperty("runServer");
    expectTypeOf<RootModule>().not.toHaveProperty("ClickStore");
    expectTypeOf<RootModule>().not.toHaveProperty("MongoClient");
    expectTypeOf<RootModule>().not.toHaveProperty("startEmbeddedMongo");
    expectTypeOf<RootModule>().not.toHaveProperty("configFromEnv");
    expectTypeOf<RootModule>().not.toHaveProperty("createLogger");
    expectTypeOf<RootModule>().not.toHaveProperty("CLIENT_CHANNEL_OPTIONS");
    expectTypeOf<RootModule>().not.toHaveProperty("retryServiceConfig");
  });

  test("types", () => {
    // @ts-expect-error server configuration is not part of the client package
    type Config = Root.ServerConfig;
    // @ts-expect-error the running server handle is not exported
    type Running = Root.RunningServer;
    // @ts-expect-error store types are not exported
    type Store = Root.ClickStore;
    expectTypeOf<Root.ClientOptions>().toEqualTypeOf<ClientOptions>();
  });
});
