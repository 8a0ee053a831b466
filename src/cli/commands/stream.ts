/**
 * A server-streaming call for RPCs the typed client does not map (ExportEvents), built the way
 * src/client/client.ts builds watchMetrics: grpc-js with the generated schemas, the same channel
 * options, credentials and bearer token as the typed client gets from the connection flags.
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { ClickAnalytics } from "../../client/index.js";
import { CLIENT_CHANNEL_OPTIONS } from "../../client/transport.js";
import type { Connection } from "./common.js";

function credentialsFor(conn: Connection): grpc.ChannelCredentials {
  const tls = conn.tls;
  if (tls === undefined) return grpc.credentials.createInsecure();
  const pem = (value: Buffer | string | undefined) => (value === undefined ? null : Buffer.from(value));
  return grpc.credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert));
}

/**
 * The messages of one server-streaming call, as they arrive. grpc-js stops reading from the
 * connection while the consumer does not pull (HTTP/2 flow control reaches the server, which
 * then stops producing). Leaving the loop or aborting `signal` cancels the call. No deadline:
 * a stream lives as long as it has data.
 */
export async function* serverStream<I extends DescMessage, O extends DescMessage>(
  conn: Connection,
  method: DescMethod & { input: I; output: O },
  request: MessageInitShape<I>,
  signal?: AbortSignal,
): AsyncGenerator<MessageShape<O>, void, undefined> {
  const nameOverride = conn.tls?.serverNameOverride;
  const client = new grpc.Client(conn.address, credentialsFor(conn), {
    ...CLIENT_CHANNEL_OPTIONS,
    ...(nameOverride ? { "grpc.ssl_target_name_override": nameOverride } : {}),
    "grpc.enable_retries": 0,
  });
  const metadata = new grpc.Metadata();
  if (conn.token) metadata.set("authorization", `Bearer ${conn.token}`);
  const call = client.makeServerStreamRequest(
    `/${ClickAnalytics.typeName}/${method.name}`,
    (m: MessageShape<I>) => Buffer.from(toBinary(method.input, m)),
    (bytes: Buffer) => fromBinary(method.output, bytes),
    create(method.input, request),
    metadata,
    { deadline: Infinity },
  );
  const cancel = () => call.cancel();
  signal?.addEventListener("abort", cancel, { once: true });
  try {
    for await (const message of call) yield message as MessageShape<O>;
  } finally {
    signal?.removeEventListener("abort", cancel);
    call.cancel();
    client.close();
  }
}
