/**
 * gRPC server reflection (v1 and v1alpha) served from the generated files' own descriptors.
 * Each answer carries the FileDescriptorProto exactly as protoc-gen-es embedded it, with its real
 * `dependency` list and fully-qualified type names, so grpcurl resolves imports such as
 * google/protobuf/timestamp.proto (unlike descriptors rebuilt by proto-loader).
 */
import { toBinary, type DescFile, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { status as Status } from "@grpc/grpc-js";
import { ServerReflection as ServerReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1Alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { ServiceImpl } from "./grpc-adapter.js";

/** The request's oneof, shared by v1 and v1alpha. */
type ReflectionQuery =
  | { case: "fileByFilename"; value: string }
  | { case: "fileContainingSymbol"; value: string }
  | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
  | { case: "allExtensionNumbersOfType"; value: string }
  | { case: "listServices"; value: string }
  | { case: undefined; value?: undefined };

type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

export class DescriptorIndex {
  private readonly files = new Map<string, DescFile>();
  private readonly fileBySymbol = new Map<string, DescFile>();
  private readonly messages = new Map<string, DescMessage>();
  private readonly serialized = new Map<string, Uint8Array>();

  constructor(readonly services: readonly DescService[]) {
    for (const service of services) this.addFile(service.file);
  }

  private addFile(file: DescFile): void {
    if (this.files.has(file.proto.name)) return;
    this.files.set(file.proto.name, file);
    this.serialized.set(file.proto.name, toBinary(FileDescriptorProtoSchema, file.proto));
    const addMessage = (m: DescMessage) => {
      this.fileBySymbol.set(m.typeName, file);
      this.messages.set(m.typeName, m);
      m.nestedMessages.forEach(addMessage);
      m.nestedEnums.forEach((e) => this.fileBySymbol.set(e.typeName, file));
      m.nestedExtensions.forEach((x) => this.fileBySymbol.set(x.typeName, file));
    };
    file.messages.forEach(addMessage);
    file.enums.forEach((e) => this.fileBySymbol.set(e.typeName, file));
    file.extensions.forEach((x) => this.fileBySymbol.set(x.typeName, file));
    for (const s of file.services) {
      this.fileBySymbol.set(s.typeName, file);
      s.methods.forEach((m) => this.fileBySymbol.set(`${s.typeName}.${m.name}`, file));
    }
    file.dependencies.forEach((d) => this.addFile(d));
  }

  /** The file and everything it imports, transitively, dependencies first. */
  private withDependencies(file: DescFile): Uint8Array[] {
    const order: DescFile[] = [];
    const visit = (f: DescFile) => {
      if (order.includes(f)) return;
      f.dependencies.forEach(visit);
      order.push(f);
    };
    visit(file);
    return order.reverse().map((f) => this.serialized.get(f.proto.name)!);
  }

  answer(query: ReflectionQuery): ReflectionAnswer {
    const notFound = (what: string): ReflectionAnswer => ({ case: "errorResponse", value: { errorCode: Status.NOT_FOUND, errorMessage: `${what} not found` } });
    const files = (file: DescFile | undefined, what: string): ReflectionAnswer =>
      file ? { case: "fileDescriptorResponse", value: { fileDescriptorProto: this.withDependencies(file) } } : notFound(what);
    switch (query.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: this.services.map((s) => ({ name: s.typeName })) } };
      case "fileByFilename":
        return files(this.files.get(query.value), `file ${query.value}`);
      case "fileContainingSymbol":
        return files(this.fileBySymbol.get(query.value.replace(/^\./, "")), `symbol ${query.value}`);
      case "fileContainingExtension":
        return notFound(`extension ${query.value.extensionNumber} of ${query.value.containingType}`);
      case "allExtensionNumbersOfType":
        return this.messages.has(query.value)
          ? { case: "allExtensionNumbersResponse", value: { baseTypeName: query.value, extensionNumber: [] } }
          : notFound(`type ${query.value}`);
      default:
        return { case: "errorResponse", value: { errorCode: Status.INVALID_ARGUMENT, errorMessage: "message_request: one of its cases must be set" } };
    }
  }
}

export const reflectionServices = [ServerReflectionV1, ServerReflectionV1Alpha] as const;

export function reflectionV1(index: DescriptorIndex): ServiceImpl<typeof ServerReflectionV1> {
  return {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        yield { validHost: req.host, originalRequest: req, messageResponse: index.answer(req.messageRequest) };
      }
    },
  };
}

export function reflectionV1Alpha(index: DescriptorIndex): ServiceImpl<typeof ServerReflectionV1Alpha> {
  return {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        yield { validHost: req.host, originalRequest: req, messageResponse: index.answer(req.messageRequest) };
      }
    },
  };
}
