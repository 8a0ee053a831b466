/**
 * Errors the domain raises on purpose. Each carries the kind of failure so the transport can map
 * it to a status without the core knowing about gRPC.
 */
export type FailureKind =
  | "invalid_argument"
  | "not_found"
  | "unauthenticated"
  | "permission_denied"
  | "resource_exhausted"
  | "unavailable"
  | "failed_precondition"
  | "deadline_exceeded"
  | "cancelled"
  | "already_exists"
  | "aborted";

export class DomainError extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
  ) {
    super(message);
    this.name = "DomainError";
  }
}

/** A request field broke a rule. The message always names the field and the rule. */
export class InvalidArgumentError extends DomainError {
  constructor(
    readonly field: string,
    readonly rule: string,
  ) {
    super("invalid_argument", `${field}: ${rule}`);
    this.name = "InvalidArgumentError";
  }
}
