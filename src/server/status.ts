import { Metadata, status as Status, type ServiceError } from "@grpc/grpc-js";
import { MongoError, MongoServerError } from "mongodb";
import { DomainError, type FailureKind } from "../core/errors.js";
import { storageFailure } from "../store/click-store.js";
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
  already_exists: Status.ALREADY_EXISTS,
  aborted: Status.ABORTED,
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

/**
 * Longest status message sent, in Unicode characters. Messages may quote the caller's input
 * (`time_zone: ... got "<zone>"`, `expected_split[<key>]`, `service <name>: unknown`), and a
 * request may be 4 MiB: a grpc-message trailer beyond ~64 KB is never delivered by grpc-js, the
 * call hangs until its deadline and the HTTP/2 connection is dropped (every other call on it too).
 * 1,024 characters are at most ~12 KB percent-encoded, under every client's metadata limit.
 */
export const MAX_DETAILS_CHARS = 1_024;

/** Cuts at a character (never inside a surrogate pair, which encodeURI would throw on). */
export function boundedDetails(details: string): string {
  if (details.length <= MAX_DETAILS_CHARS) return details;
  const chars = Array.from(details);
  return chars.length <= MAX_DETAILS_CHARS ? details : `${chars.slice(0, MAX_DETAILS_CHARS).join("")}… (truncated)`;
}

/** MongoDB's "unrecognized time zone identifier" (e.g. $dateTrunc's timezone). */
const UNKNOWN_TIME_ZONE = 40485;

/**
 * The one place anything thrown becomes a gRPC status. Errors that carry their own code keep it;
 * storage outages are UNAVAILABLE; everything else is a generic INTERNAL, logged in full here so
 * that no internal detail reaches the caller.
 */
export function toServiceError(error: unknown, logger: Logger, method: string): Partial<ServiceError> {
  const make = (code: Status, details: string) => ({ code, details: boundedDetails(details), metadata: new Metadata() });
  if (error instanceof StatusError) return make(error.code, error.details);
  if (error instanceof DomainError) return make(CODE_BY_KIND[error.kind], error.message);
  if (error instanceof MongoServerError && error.code === UNKNOWN_TIME_ZONE) {
    // The only time zone that reaches MongoDB is GetTimeSeries' time_zone, checked against Node's
    // ICU first; but the two zone databases differ (ICU has zones newer than MongoDB's tzdata,
    // e.g. America/Coyhaique). The caller's choice, not an internal error.
    return make(Status.INVALID_ARGUMENT, 'time_zone: must be a canonical IANA time zone such as "Europe/Berlin" that the database knows');
  }
  const storage = storageFailure(error);
  if (storage === "deadline_exceeded") return make(Status.DEADLINE_EXCEEDED, "deadline exceeded");
  if (storage === "unavailable") {
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
