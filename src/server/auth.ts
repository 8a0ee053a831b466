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

/**
 * Who may call a ClickAnalytics method: Log*, Stream* and the experiment writes (Create, Update,
 * Conclude) write; Get*, List*, Watch*, Export* read; anything else (Reset) is admin only.
 */
export function rolesFor(method: Pick<DescMethod, "name">): readonly Role[] {
  if (/^(Log|Stream)[A-Z]/.test(method.name) || /^(Create|Update|Conclude)Experiment$/.test(method.name)) return ["writer", "admin"];
  if (/^(Get|List|Watch|Export)[A-Z]/.test(method.name)) return ["reader", "admin"];
  return ["admin"];
}

/** The role (and token name) the access guard admitted a call under, so handlers that check for themselves (Reset) can see it. */
const admitted = new WeakMap<CallContext, { role: Role; name: string | undefined }>();

/** The token a presented one matches. Compares against every token, without stopping at a match. */
function tokenOf(tokens: readonly AccessToken[], presented: string): AccessToken | undefined {
  let found: AccessToken | undefined;
  for (const t of tokens) {
    const equal = tokensEqual(presented, t.token);
    found = equal ? t : found;
  }
  return found;
}

/**
 * Who made a call, for records such as an experiment's history: the admitted token's name, else
 * the `x-user-id` metadata, else the admitted token's role ("writer token"), else "anonymous".
 * Never the token itself.
 */
export function callerName(ctx: CallContext): string {
  const a = admitted.get(ctx);
  if (a?.name) return a.name;
  const user = ctx.header("x-user-id");
  if (user) return user.slice(0, 256);
  return a ? `${a.role} token` : "anonymous";
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
    const token = tokenOf(tokens, presented);
    if (token === undefined) throw new DomainError("unauthenticated", `the bearer token is not a configured token: ${needs}`);
    const role = token.role;
    if (!allowed.includes(role)) throw new DomainError("permission_denied", `${needs}; the presented token has role ${role}`);
    admitted.set(ctx, { role, name: token.name });
  };
}

/**
 * Admin-only operations need the configured admin token; without one configured they are disabled.
 * A call the access guard already admitted with an admin token passes.
 */
export function requireAdmin(ctx: CallContext, adminToken: string | undefined): void {
  if (admitted.get(ctx)?.role === "admin") return;
  if (adminToken === undefined) {
    throw new DomainError("permission_denied", "this operation is disabled: the server was started without CLICK_ANALYTICS_ADMIN_TOKEN");
  }
  const presented = bearerToken(ctx);
  if (presented === undefined || !tokensEqual(presented, adminToken)) {
    throw new DomainError("permission_denied", "this operation needs `authorization: Bearer <admin token>`");
  }
}
