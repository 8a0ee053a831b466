/** Calls by path with raw bytes, as grpcurl does once it has resolved types through reflection. */
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll } from "vitest";
import { startHarness, type Harness } from "./harness.js";

export function rawUnary(client: grpc.Client, path: string, body: Uint8Array, metadata = new grpc.Metadata()): Promise<Uint8Array> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest<Uint8Array, Uint8Array>(
      path,
      (b) => Buffer.from(b),
      (b) => new Uint8Array(b),
      body,
      metadata,
      { deadline: Date.now() + 10_000 },
      (error, response) => (error || !response ? reject(error) : resolve(response)),
    ),
  );
}

/**
 * A harness (real server on 127.0.0.1:0, typed client) and a raw grpc-js client to the same
 * server, started before the enclosing suite's tests and closed after them.
 */
export function useHarnessWithRawClient(): { readonly h: Harness; readonly raw: grpc.Client } {
  const state = {} as { h: Harness; raw: grpc.Client };
  beforeAll(async () => {
    state.h = await startHarness();
    state.raw = new grpc.Client(state.h.server.address, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    state.raw?.close();
    await state.h?.close();
  });
  return state;
}
