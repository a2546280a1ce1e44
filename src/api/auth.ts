/** Bearer-key authentication for every shop RPC; handlers read the principal from the context. */
import { Code, ConnectError, createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { authenticate, type Principal } from "../auth/api-keys.ts";
import type { Pool } from "../db/pool.ts";

const principalKey = createContextKey<Principal | undefined>(undefined, { description: "authenticated shop" });

export function authInterceptor(pool: Pool): Interceptor {
  return (next) => async (req) => {
    const header = req.header.get("authorization");
    if (!header) throw new ConnectError("authorization: missing; send 'Authorization: Bearer <api key>'", Code.Unauthenticated);
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) throw new ConnectError("authorization: expected 'Bearer <api key>'", Code.Unauthenticated);
    const principal = await authenticate(pool, m[1]!);
    if (!principal) throw new ConnectError("authorization: unknown or revoked api key", Code.Unauthenticated);
    req.contextValues.set(principalKey, principal);
    return next(req);
  };
}

/** The authenticated principal of this call (the interceptor guarantees one). */
export function principal(ctx: HandlerContext): Principal {
  const p = ctx.values.get(principalKey);
  if (!p) throw new ConnectError("not authenticated", Code.Unauthenticated);
  return p;
}
