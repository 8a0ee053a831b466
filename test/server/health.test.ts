import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { HealthCheckRequestSchema, HealthCheckResponse_ServingStatus as Serving, HealthCheckResponseSchema } from "../../gen/grpc/health/v1/health_pb.js";
import { Status, createClickAnalyticsClient, type ServiceError } from "../../src/client/index.js";
import { createLogger } from "../../src/server/logger.js";
import { startServer } from "../../src/server/server.js";
import { startEmbeddedMongo } from "../../src/store/engine/embedded-engine.js";
import { startHarness } from "../support/harness.js";
import { rawUnary, useHarnessWithRawClient } from "../support/raw-call.js";

const CHECK = "/grpc.health.v1.Health/Check";

async function check(client: grpc.Client, service: string): Promise<Serving> {
  const bytes = await rawUnary(client, CHECK, toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service })));
  return fromBinary(HealthCheckResponseSchema, bytes).status;
}

const suite = useHarnessWithRawClient();

describe("grpc.health.v1.Health", () => {
  it("reports SERVING for the server and for ClickAnalytics while storage is reachable", async () => {
    expect(await check(suite.raw, "")).toBe(Serving.SERVING);
    expect(await check(suite.raw, "clickanalytics.v1.ClickAnalytics")).toBe(Serving.SERVING);
  });

  it("answers NOT_FOUND for an unknown service", async () => {
    const error = (await check(suite.raw, "no.such.Service").catch((e: unknown) => e)) as ServiceError;
    expect(error.code).toBe(grpc.status.NOT_FOUND);
  });

  it("Watch streams the status and its changes", async () => {
    const server = await startHarness();
    const client = new grpc.Client(server.server.address, grpc.credentials.createInsecure());
    try {
      const seen: Serving[] = [];
      const call = client.makeServerStreamRequest<Uint8Array, Uint8Array>(
        "/grpc.health.v1.Health/Watch",
        (b) => Buffer.from(b),
        (b) => new Uint8Array(b),
        toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service: "" })),
      );
      const done = new Promise<void>((resolve) => {
        call.on("data", (b: Uint8Array) => {
          seen.push(fromBinary(HealthCheckResponseSchema, b).status);
          if (seen.length === 1) server.server.health.shutdown();
        });
        call.on("end", resolve);
        call.on("error", () => resolve());
      });
      await done;
      expect(seen).toEqual([Serving.SERVING, Serving.NOT_SERVING]);
    } finally {
      client.close();
      await server.close();
    }
  });
});

describe("storage outage", () => {
  it("turns health NOT_SERVING and metrics UNAVAILABLE, without crashing the server", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ca-outage-"));
    const engine = await startEmbeddedMongo({ dbPath: dir });
    const server = await startServer(
      { host: "127.0.0.1", port: 0, mongoUri: engine.uri, dbName: "outage", storageTimeoutMs: 500, healthIntervalMs: 100 },
      createLogger("silent"),
    );
    const client = createClickAnalyticsClient(server.address);
    const rawClient = new grpc.Client(server.address, grpc.credentials.createInsecure());
    try {
      expect(await check(rawClient, "")).toBe(Serving.SERVING);
      await engine.stop();
      await server.health.check();
      expect(await check(rawClient, "")).toBe(Serving.NOT_SERVING);
      const error = (await client.getCtr({}).catch((e: unknown) => e)) as ServiceError;
      expect(error.code).toBe(Status.UNAVAILABLE);
      expect(error.details).not.toMatch(/Mongo|ECONNREFUSED/);
      const write = (await client.logClick({ userId: "u", productId: "p", rank: 0, searchQuery: "q", variant: "v", responseTimeMs: 1 }).catch((e: unknown) => e)) as ServiceError;
      expect(write.code).toBe(Status.UNAVAILABLE);
      // still serving bad-input answers while storage is down
      const bad = (await client.getCtr({ days: 999 }).catch((e: unknown) => e)) as ServiceError;
      expect(bad.code).toBe(Status.INVALID_ARGUMENT);
    } finally {
      client.close();
      rawClient.close();
      await server.close();
      await engine.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
