import { createHash, timingSafeEqual } from "node:crypto";
import { DomainError } from "../core/errors.js";
import type { CallContext } from "./grpc-adapter.js";

/** Constant-time comparison; hashing first makes the lengths equal so length does not leak either. */
export function tokensEqual(presented: string, expected: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();
  return timingSafeEqual(digest(presented), digest(expected));
}

/** The token of an `authorization: Bearer <token>` header, if the call carries one. */
export function bearerToken(ctx: CallContext): string | undefined {
  const header = ctx.header("authorization");
  const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

/** Admin-only operations need the configured admin token; without one configured they are disabled. */
export function requireAdmin(ctx: CallContext, adminToken: string | undefined): void {
  if (adminToken === undefined) {
    throw new DomainError("permission_denied", "this operation is disabled: the server was started without CLICK_ANALYTICS_ADMIN_TOKEN");
  }
  const presented = bearerToken(ctx);
  if (presented === undefined || !tokensEqual(presented, adminToken)) {
    throw new DomainError("permission_denied", "this operation needs `authorization: Bearer <admin token>`");
  }
}
