/** Calls by path with raw bytes, as grpcurl does once it has resolved types through reflection. */
import * as grpc from "@grpc/grpc-js";

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
