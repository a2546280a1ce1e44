/** shop.ApiKey: a shop manages its own keys. */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { type ApiKey, CreateApiKeyResponseSchema, ListApiKeysResponseSchema, RevokeApiKeyResponseSchema } from "../../gen/shop/api_key_pb.ts";
import { type ApiKeyInfo, ApiKeyInfoSchema } from "../../gen/shop/common_pb.ts";
import { createApiKey, revokeApiKey } from "../auth/api-keys.ts";
import { parseScopes, SCOPES } from "../auth/scopes.ts";
import type { AppContext } from "../context.ts";
import * as sql from "../db/sql/shops.ts";
import { principal } from "./auth.ts";
import { ts } from "./convert.ts";
import { invalidArgument, notFound, permissionDenied } from "./errors.ts";
import { requireId, text } from "./validate.ts";

function info(r: sql.ApiKeyRow): ApiKeyInfo {
  return create(ApiKeyInfoSchema, { id: r.id, prefix: r.prefix, name: r.name, createdAt: ts(r.created_at), revokedAt: ts(r.revoked_at), scopes: r.scopes ?? [...SCOPES] });
}

export function apiKeyService(ctx: AppContext): ServiceImpl<typeof ApiKey> {
  return {
    async createApiKey(req, hc) {
      const name = text("name", req.name, 100);
      // eslint-disable-next-line no-control-regex
      if (/[\u0000-\u001f\u007f]/.test(name)) throw invalidArgument("name", "must not contain control characters");
      let scopes: string[];
      try {
        scopes = parseScopes(req.scopes);
      } catch (err) {
        throw invalidArgument("scopes", (err as Error).message);
      }
      // No key makes a key that can do more than itself.
      const own = principal(hc).scopes;
      const wanted = scopes.length ? scopes : [...SCOPES];
      const beyond = own ? wanted.filter((s) => !own.has(s as never)) : [];
      if (beyond.length) throw permissionDenied(`scopes: this key cannot grant ${beyond.map((s) => `"${s}"`).join(", ")}, which it does not have`);
      const { key, row } = await createApiKey(ctx.pool, principal(hc).shopId, name, scopes);
      return create(CreateApiKeyResponseSchema, { apiKey: info(row), key });
    },
    async listApiKeys(_req, hc) {
      const { rows } = await ctx.pool.query<sql.ApiKeyRow>(sql.listApiKeys(principal(hc).shopId));
      return create(ListApiKeysResponseSchema, { apiKeys: rows.map(info) });
    },
    async revokeApiKey(req, hc) {
      const row = await revokeApiKey(ctx.pool, requireId("id", req.id), principal(hc).shopId);
      if (!row) throw notFound(`api key ${req.id}`);
      return create(RevokeApiKeyResponseSchema, { apiKey: info(row) });
    },
  };
}
