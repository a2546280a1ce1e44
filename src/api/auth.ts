/** Bearer-key authentication for every shop RPC; handlers read the principal from the context. */
import { Code, ConnectError, createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { authenticate, type Principal } from "../auth/api-keys.ts";
import { scopeOf } from "../auth/scopes.ts";
import type { Pool } from "../db/pool.ts";

const principalKey = createContextKey<Principal | undefined>(undefined, { description: "authenticated shop" });

/** The shop an Authorization header authenticates, or why it does not (the message of an `unauthenticated`). */
export async function checkAuthorization(pool: Pool, header: string | null | undefined): Promise<{ principal: Principal } | { error: string }> {
  if (!header) return { error: "authorization: missing; send 'Authorization: Bearer <api key>'" };
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) return { error: "authorization: expected 'Bearer <api key>'" };
  const principal = await authenticate(pool, m[1]!);
  return principal ? { principal } : { error: "authorization: unknown or revoked api key" };
}

/**
 * Sets the call's principal. The HTTP handler has already refused a call without a valid key,
 * before reading its body (server/http-handler.ts); this checks again (a cache hit) for calls
 * that reach the router another way.
 */
export function authInterceptor(pool: Pool): Interceptor {
  return (next) => async (req) => {
    const auth = await checkAuthorization(pool, req.header.get("authorization"));
    if ("error" in auth) throw new ConnectError(auth.error, Code.Unauthenticated);
    // The key's scopes (src/auth/scopes.ts): checked here, for every RPC, before its handler.
    const needed = scopeOf(req.service.typeName, req.method.name);
    const has = auth.principal.scopes;
    if (needed && has && !has.has(needed)) {
      throw new ConnectError(`this API key lacks the "${needed}" scope that ${req.method.name} needs (it has: ${[...has].join(", ")})`, Code.PermissionDenied);
    }
    req.contextValues.set(principalKey, auth.principal);
    return next(req);
  };
}

/** The authenticated principal of this call (the interceptor guarantees one). */
export function principal(ctx: HandlerContext): Principal {
  const p = ctx.values.get(principalKey);
  if (!p) throw new ConnectError("not authenticated", Code.Unauthenticated);
  return p;
}
