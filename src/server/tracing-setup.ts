/**
 * Tracing for `npm start` / `click-analytics serve`, from the standard OpenTelemetry variables:
 * with OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set, spans are batched
 * to that collector over OTLP/HTTP; unset, there is no tracing and nothing is loaded. The SDK and
 * the exporter are optional peer dependencies, installed by whoever turns tracing on.
 */
import type { Tracer } from "@opentelemetry/api";
import { ConfigError } from "./config.js";

export interface ConfiguredTracing {
  tracer: Tracer;
  /** Sends what is still batched; call at shutdown. */
  shutdown(): Promise<void>;
}

/** Optional peers that only tracing needs. */
export const TRACING_PACKAGES = ["@opentelemetry/api", "@opentelemetry/exporter-trace-otlp-http", "@opentelemetry/sdk-trace-base"] as const;

export async function tracingFromEnv(env: NodeJS.ProcessEnv = process.env): Promise<ConfiguredTracing | undefined> {
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT && !env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return undefined;
  if (env.OTEL_SDK_DISABLED === "true") return undefined;
  let sdk: typeof import("@opentelemetry/sdk-trace-base");
  let otlp: typeof import("@opentelemetry/exporter-trace-otlp-http");
  try {
    [sdk, otlp] = await Promise.all([import("@opentelemetry/sdk-trace-base"), import("@opentelemetry/exporter-trace-otlp-http")]);
  } catch {
    throw new ConfigError(`OTEL_EXPORTER_OTLP_ENDPOINT is set but tracing's packages are not installed: npm install ${TRACING_PACKAGES.join(" ")}`);
  }
  // The exporter reads the endpoint, headers and timeout from the OTEL_EXPORTER_OTLP_* variables;
  // the batch processor reads OTEL_BSP_*.
  const provider = new sdk.BasicTracerProvider({ spanProcessors: [new sdk.BatchSpanProcessor(new otlp.OTLPTraceExporter())] });
  return { tracer: provider.getTracer("click-analytics"), shutdown: () => provider.shutdown() };
}
