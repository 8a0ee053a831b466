/**
 * A reflection client, and on top of it the slice of grpcurl the README uses (`list`,
 * `describe`, and JSON calls with -H/-d): it knows only what the server's reflection tells it,
 * as grpcurl does.
 */
import { create, createFileRegistry, fromBinary, fromJson, toBinary, toJson, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { rawUnary } from "./raw-call.js";

export type ReflectionQuery = v1.ServerReflectionRequest["messageRequest"];

/** One request on a ServerReflectionInfo stream, answered as a v1 response (the wire format is shared). */
export function reflect(client: grpc.Client, version: "v1" | "v1alpha", query: ReflectionQuery): Promise<v1.ServerReflectionResponse> {
  const schemas =
    version === "v1"
      ? { req: v1.ServerReflectionRequestSchema, res: v1.ServerReflectionResponseSchema }
      : { req: v1alpha.ServerReflectionRequestSchema, res: v1alpha.ServerReflectionResponseSchema };
  return new Promise((resolve, reject) => {
    const call = client.makeBidiStreamRequest<Uint8Array, Uint8Array>(
      `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
      (b) => Buffer.from(b),
      (b) => new Uint8Array(b),
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
    );
    call.on("data", (bytes: Uint8Array) => {
      resolve(fromBinary(v1.ServerReflectionResponseSchema, toBinary(schemas.res, fromBinary(schemas.res, bytes))));
      call.end();
    });
    call.on("error", reject);
    call.write(toBinary(schemas.req, create(schemas.req, { host: "localhost", messageRequest: query } as never)));
  });
}

export function descriptors(res: v1.ServerReflectionResponse): FileDescriptorProto[] {
  if (res.messageResponse.case !== "fileDescriptorResponse") throw new Error(`expected file descriptors, got ${res.messageResponse.case}`);
  return res.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
}

/** The first file, its imports resolved only from what reflection returned. */
export function registryOf(files: FileDescriptorProto[]): FileRegistry {
  return createFileRegistry(files[0]!, (name) => files.find((f) => f.name === name));
}

/** Splits a command line the way sh does for the plain words and '…' quotes the README uses. */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  for (const m of line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)) words.push(m[1] ?? m[2] ?? m[3]!);
  return words;
}

/** Runs `grpcurl -plaintext [-H 'k: v']… [-d 'json'] ADDRESS (list | describe SYMBOL | SERVICE/METHOD)` against `address`. */
export async function grpcurl(address: string, args: string[]): Promise<unknown> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  try {
    const metadata = new grpc.Metadata();
    let body = "{}";
    const rest: string[] = [];
    for (let i = 0; i < args.length; i++) {
      const arg = args[i]!;
      if (arg === "-plaintext") continue;
      if (arg === "-H") {
        const [key, ...value] = args[++i]!.split(":");
        metadata.add(key!.trim().toLowerCase(), value.join(":").trim());
      } else if (arg === "-d") body = args[++i]!;
      else if (arg.startsWith("-")) throw new Error(`flag ${arg} is not emulated`);
      else rest.push(arg);
    }
    const [, verb, symbol] = rest; // rest[0] is the server address as written
    if (verb === "list") {
      const res = await reflect(client, "v1", { case: "listServices", value: "" });
      return res.messageResponse.case === "listServicesResponse" ? res.messageResponse.value.service.map((s) => s.name) : res.messageResponse.value;
    }
    if (verb === "describe") {
      const registry = registryOf(descriptors(await reflect(client, "v1", { case: "fileContainingSymbol", value: symbol! })));
      const service = registry.getService(symbol!);
      if (!service) throw new Error(`${symbol} not found`);
      return service.methods.map((m) => `rpc ${m.name} ( .${m.input.typeName} ) returns ( .${m.output.typeName} )`);
    }
    const [serviceName, methodName] = verb!.split("/");
    const registry = registryOf(descriptors(await reflect(client, "v1", { case: "fileContainingSymbol", value: serviceName! })));
    const method = registry.getService(serviceName!)?.methods.find((m) => m.name === methodName);
    if (!method) throw new Error(`${verb} not found`);
    const request = fromJson(method.input, JSON.parse(body), { registry });
    const bytes = await rawUnary(client, `/${serviceName}/${methodName}`, toBinary(method.input, request), metadata);
    return toJson(method.output, fromBinary(method.output, bytes), { registry });
  } finally {
    client.close();
  }
}
