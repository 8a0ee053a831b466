import { Metadata, status as Status, type ServiceError } from "@grpc/grpc-js";
import { MongoError, MongoNetworkError, MongoServerSelectionError, MongoNotConnectedError, MongoTopologyClosedError } from "mongodb";
import { DomainError, type FailureKind } from "../core/errors.js";
import type { Logger } from "./logger.js";

const CODE_BY_KIND: Record<FailureKind, Status> = {
  invalid_argument: Status.INVALID_ARGUMENT,
  not_found: Status.NOT_FOUND,
  unauthenticated: Status.UNAUTHENTICATED,
  permission_denied: Status.PERMISSION_DENIED,
  resource_exhausted: Status.RESOURCE_EXHAUSTED,
  unavailable: Status.UNAVAILABLE,
  failed_precondition: Status.FAILED_PRECONDITION,
  deadline_exceeded: Status.DEADLINE_EXCEEDED,
  cancelled: Status.CANCELLED,
};

/** A status the handler chose on purpose; it passes through unchanged. */
export class StatusError extends Error {
  constructor(
    readonly code: Status,
    readonly details: string,
  ) {
    super(details);
    this.name = "StatusError";
  }
}

function isStorageUnreachable(error: unknown): boolean {
  return (
    error instanceof MongoNetworkError ||
    error instanceof MongoServerSelectionError ||
    error instanceof MongoNotConnectedError ||
    error instanceof MongoTopologyClosedError
  );
}

/**
 * The one place anything thrown becomes a gRPC status. Errors that carry their own code keep it;
 * storage outages are UNAVAILABLE; everything else is a generic INTERNAL, logged in full here so
 * that no internal detail reaches the caller.
 */
export function toServiceError(error: unknown, logger: Logger, method: string): Partial<ServiceError> {
  const make = (code: Status, details: string) => ({ code, details, metadata: new Metadata() });
  if (error instanceof StatusError) return make(error.code, error.details);
  if (error instanceof DomainError) return make(CODE_BY_KIND[error.kind], error.message);
  if (isStorageUnreachable(error)) {
    logger.warn({ method, err: String(error) }, "storage unavailable");
    return make(Status.UNAVAILABLE, "storage is unavailable, retry later");
  }
  if (error instanceof MongoError && error.code === 11000) {
    // A duplicate key that reached here was not expected by the handler.
    logger.error({ method, err: String(error) }, "unexpected duplicate key");
    return make(Status.ALREADY_EXISTS, "the event already exists");
  }
  logger.error({ method, err: error instanceof Error ? (error.stack ?? error.message) : String(error) }, "internal error");
  return make(Status.INTERNAL, "internal error");
}
