/** The package root: the typed client and the generated messages it speaks. */
export { createClickAnalyticsClient, type CallOptions, type ClientOptions, type ClientTlsOptions, type ClickAnalyticsClient, type ClickAnalyticsMethods, type StreamBatch } from "./client.js";
export * from "../../gen/clickanalytics/v1/click_analytics_pb.js";
export * from "../../gen/clickanalytics/v1/experiments_pb.js";
export { credentials, Metadata, status as Status, type ServiceError } from "@grpc/grpc-js";
export { teamDraftInterleave, type InterleaveOptions, type Interleaved } from "./interleave.js";
export { BufferedLogger, createBufferedLogger, type BufferedLoggerError, type BufferedLoggerOptions, type BufferedLoggerStats, type ClickInit, type ImpressionInit } from "./buffered-logger.js";
export { assign, bucketRanges, chooseVariation, fnv1a32, hash, type AssignableExperiment, type Assignment, type BucketRange } from "./assignment.js";
