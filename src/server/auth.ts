import { createHash, timingSafeEqual } from "node:crypto";
import type { DescMethod } from "@bufbuild/protobuf";
import { DomainError } from "../core/errors.js";
import type { CallContext, CallGuard } from "./grpc-adapter.js";

export const ROLES = ["reader", "writer", "admin"] as const;
export type Role = (typeof ROLES)[number];

/** One configured bearer token. `name` says whose it is (in logs and errors; the token never is). */
export interface AccessToken {
  token: string;
  role: Role;
  name?: string | undefined;
}

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

/** Who may call a ClickAnalytics method: Log*, Stream* write; Get*, Watch* read; anything else (Reset) is admin only. */
export function rolesFor(method: Pick<DescMethod, "name">): readonly Role[] {
  if (/^(Log|Stream)[A-Z]/.test(method.name)) return ["writer", "admin"];
  if (/^(Get|Watch|Export)[A-Z]/.test(method.name)) return ["reader", "admin"];
  return ["admin"];
}

/** The role the access guard admitted a call under, so handlers that check for themselves (Reset) can see it. */
const admitted = new WeakMap<CallContext, Role>();

/** The role of a presented token. Compares against every token, without stopping at a match. */
function roleOf(tokens: readonly AccessToken[], presented: string): Role | undefined {
  let role: Role | undefined;
  for (const t of tokens) {
    const equal = tokensEqual(presented, t.token);
    role = equal ? t.role : role;
  }
  return role;
}

/**
 * The adapter guard that enforces bearer tokens with roles on every call of the service it guards:
 * no or an unknown token is UNAUTHENTICATED, a role that may not call the method PERMISSION_DENIED.
 * Messages say which roles would do; they never repeat the presented token.
 */
export function accessGuard(tokens: readonly AccessToken[]): CallGuard {
  return (method, ctx) => {
    const allowed = rolesFor(method);
    const needs = `${method.name} needs a token with role ${allowed.join(" or ")}`;
    const presented = bearerToken(ctx);
    if (presented === undefined) throw new DomainError("unauthenticated", `missing \`authorization: Bearer <token>\`: ${needs}`);
    const role = roleOf(tokens, presented);
    if (role === undefined) throw new DomainError("unauthenticated", `the bearer token is not a configured token: ${needs}`);
    if (!allowed.includes(role)) throw new DomainError("permission_denied", `${needs}; the presented token has role ${role}`);
    admitted.set(ctx, role);
  };
}

/**
 * Admin-only operations need the configured admin token; without one configured they are disabled.
 * A call the access guard already admitted with an admin token passes.
 */
export function requireAdmin(ctx: CallContext, adminToken: string | undefined): void {
  if (admitted.get(ctx) === "admin") return;
  if (adminToken === undefined) {
    throw new DomainError("permission_denied", "this operation is disabled: the server was started without CLICK_ANALYTICS_ADMIN_TOKEN");
  }
  const presented = bearerToken(ctx);
  if (presented === undefined || !tokensEqual(presented, adminToken)) {
    throw new DomainError("permission_denied", "this operation needs `authorization: Bearer <admin token>`");
  }
}
