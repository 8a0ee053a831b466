import { fromBinary, fromJson, toBinary, toJson } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { descriptors, reflect, registryOf } from "../support/grpcurl.js";
import { rawUnary, useHarnessWithRawClient } from "../support/raw-call.js";

const suite = useHarnessWithRawClient();

describe("server reflection", () => {
  it.each(["v1", "v1alpha"] as const)("%s lists the services (grpcurl list)", async (version) => {
    const res = await reflect(suite.raw, version, { case: "listServices", value: "" });
    expect(res.messageResponse.case).toBe("listServicesResponse");
    const names = res.messageResponse.case === "listServicesResponse" ? res.messageResponse.value.service.map((s) => s.name) : [];
    expect(names).toEqual(
      expect.arrayContaining(["clickanalytics.v1.ClickAnalytics", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]),
    );
  });

  it("describes the service with its imports and fully-qualified types (grpcurl describe)", async () => {
    const files = descriptors(await reflect(suite.raw, "v1", { case: "fileContainingSymbol", value: "clickanalytics.v1.ClickAnalytics" }));
    const main = files.find((f) => f.name === "clickanalytics/v1/click_analytics.proto");
    expect(main?.dependency).toEqual(["clickanalytics/v1/experiments.proto", "google/protobuf/timestamp.proto"]);
    // Imports come along, transitively (experiments.proto's own: duration, field_mask).
    expect(files.map((f) => f.name)).toEqual(expect.arrayContaining(["google/protobuf/timestamp.proto", "clickanalytics/v1/experiments.proto", "google/protobuf/field_mask.proto", "google/protobuf/duration.proto"]));
    const logClick = main!.messageType.find((m) => m.name === "LogClickRequest")!;
    expect(logClick.field.find((f) => f.name === "timestamp")?.typeName).toBe(".google.protobuf.Timestamp");
    // proto3 optional survives, so reflection clients see field presence
    const ctr = main!.messageType.find((m) => m.name === "VariantCtr")!.field.find((f) => f.name === "ctr")!;
    expect(ctr.proto3Optional).toBe(true);
    const registry = registryOf(files);
    const service = registry.getService("clickanalytics.v1.ClickAnalytics");
    expect(service?.methods.map((m) => m.name)).toEqual(
      expect.arrayContaining(["LogClick", "LogImpression", "GetCtr", "GetRankMetrics", "GetResponseTimeMetrics", "GetUserSummary", "GetVariantComparison", "Reset"]),
    );
    expect(registry.getMessage("clickanalytics.v1.GetCtrResponse")?.field.ctr?.proto.proto3Optional).toBe(true);
  });

  it("resolves methods and messages by symbol, and files by name", async () => {
    for (const symbol of ["clickanalytics.v1.ClickAnalytics.LogClick", "clickanalytics.v1.LogClickRequest", "clickanalytics.v1.ClickSource", "google.protobuf.Timestamp"]) {
      expect(descriptors(await reflect(suite.raw, "v1alpha", { case: "fileContainingSymbol", value: symbol })).length).toBeGreaterThan(0);
    }
    const ts = descriptors(await reflect(suite.raw, "v1", { case: "fileByFilename", value: "google/protobuf/timestamp.proto" }));
    expect(ts[0]?.package).toBe("google.protobuf");
    const missing = await reflect(suite.raw, "v1", { case: "fileContainingSymbol", value: "no.such.Thing" });
    expect(missing.messageResponse.case).toBe("errorResponse");
    expect(missing.messageResponse.value).toMatchObject({ errorCode: grpc.status.NOT_FOUND });
  });

  it("supports a JSON call with a Timestamp using only reflected descriptors (grpcurl -d)", async () => {
    const registry = registryOf(descriptors(await reflect(suite.raw, "v1", { case: "fileContainingSymbol", value: "clickanalytics.v1.ClickAnalytics" })));
    const method = registry.getService("clickanalytics.v1.ClickAnalytics")!.methods.find((m) => m.name === "LogClick")!;
    const when = new Date(Date.now() - 3_600_000).toISOString();
    const request = fromJson(
      method.input,
      { userId: "reflected", productId: "p-9", rank: 3, searchQuery: "red hat", variant: "search_v2", responseTimeMs: 12.5, source: "CLICK_SOURCE_SPONSORED", timestamp: when },
      { registry },
    );
    const bytes = await rawUnary(suite.raw, `/clickanalytics.v1.ClickAnalytics/LogClick`, toBinary(method.input, request));
    const json = toJson(method.output, fromBinary(method.output, bytes), { registry }) as Record<string, unknown>;
    expect(json).toMatchObject({ userId: "reflected", productId: "p-9", rank: 3, timestamp: when });
    const stored = await suite.h.server.store.collections.clicks.findOne({ user_id: "reflected" });
    expect(stored).toMatchObject({ source: "SPONSORED", variant: "search_v2", timestamp: new Date(when) });
  });
});
