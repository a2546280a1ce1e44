/** Shops and their API keys: creation (CLI), revocation, and request authentication. */
import { createHash, randomBytes } from "node:crypto";
import type { Pool } from "../db/pool.ts";
import * as sql from "../db/sql/shops.ts";
import { parseScopes, type Scope, SCOPES } from "./scopes.ts";

const KEY_PREFIX = "shk_";

/** The shop and key a request authenticated as. */
export interface Principal {
  shopId: string;
  shopName: string;
  shopCreatedAt: Date;
  keyId: string;
  keyName: string;
  keyPrefix: string;
  keyCreatedAt: Date;
  /** The key's scopes; undefined: every scope. */
  scopes?: ReadonlySet<Scope>;
}

export function hashKey(key: string): Buffer {
  return createHash("sha256").update(key).digest();
}

/** A new key: `shk_` + 43 base64url characters (256 random bits). */
export function generateKey(): string {
  return KEY_PREFIX + randomBytes(32).toString("base64url");
}

export async function createShop(pool: Pool, name: string): Promise<sql.ShopRow> {
  const trimmed = name.trim();
  if (trimmed.length < 1 || trimmed.length > 200) throw new RangeError("shop name must be 1 to 200 characters");
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(trimmed)) throw new RangeError("shop name must not contain control characters");
  const { rows } = await pool.query<sql.ShopRow>(sql.insertShop(trimmed));
  return rows[0]!;
}

/**
 * Creates a key for a shop; the returned `key` is the only time the secret exists in the clear.
 * `scopes`: what it may do (src/auth/scopes.ts); none given, or all of them: every scope.
 */
export async function createApiKey(pool: Pool, shopId: string, name = "", scopes: readonly string[] = []): Promise<{ key: string; row: sql.ApiKeyRow }> {
  if (!/^\d{1,19}$/.test(shopId)) throw new RangeError(`shop id must be an integer, got "${shopId}"`);
  const { rows: shops } = await pool.query(sql.getShop(shopId));
  if (shops.length === 0) throw new RangeError(`no shop with id ${shopId}`);
  // eslint-disable-next-line no-control-regex
  if (name.length > 100 || /[\u0000-\u001f\u007f]/.test(name)) throw new RangeError("key name must be at most 100 characters, without control characters");
  const parsed = parseScopes(scopes);
  // Stored as NULL when it is every scope: such a key also gets scopes added later.
  const stored = parsed.length && parsed.length < SCOPES.length ? parsed : null;
  const key = generateKey();
  const { rows } = await pool.query<sql.ApiKeyRow>(sql.insertApiKey(shopId, name, key.slice(0, KEY_PREFIX.length + 8), hashKey(key), stored));
  return { key, row: rows[0]! };
}

/** Revokes a key; with `shopId`, only when the key belongs to that shop. */
export async function revokeApiKey(pool: Pool, keyId: string, shopId?: string): Promise<sql.ApiKeyRow | undefined> {
  if (!/^\d{1,19}$/.test(keyId)) throw new RangeError(`key id must be an integer, got "${keyId}"`);
  const { rows } = await pool.query<sql.ApiKeyRow>(shopId ? sql.revokeShopApiKey(shopId, keyId) : sql.revokeApiKey(keyId));
  if (rows[0]) forgetKey(rows[0].id);
  return rows[0];
}

/**
 * Known keys are remembered for a second: it saves a query on every RPC. A key revoked through
 * this process is forgotten at once; other instances notice within the TTL.
 */
const CACHE_TTL_MS = 1_000;
const CACHE_MAX = 10_000;
const cache = new Map<string, { principal: Principal; expires: number }>();

export function forgetKey(keyId: string) {
  for (const [hash, entry] of cache) if (entry.principal.keyId === keyId) cache.delete(hash);
}

/** Resolves a bearer key to its principal, or undefined when unknown or revoked. */
export async function authenticate(pool: Pool, key: string): Promise<Principal | undefined> {
  // Cheap shape check first: garbage never reaches the database.
  if (!key.startsWith(KEY_PREFIX) || key.length !== KEY_PREFIX.length + 43) return undefined;
  const hash = hashKey(key);
  const cacheKey = hash.toString("base64");
  const hit = cache.get(cacheKey);
  if (hit && hit.expires > Date.now()) return hit.principal;
  const { rows } = await pool.query<sql.ApiKeyRow & { shop_name: string; shop_created_at: Date }>(sql.findApiKeyByHash(hash));
  const r = rows[0];
  if (!r) {
    cache.delete(cacheKey);
    return undefined;
  }
  const principal: Principal = {
    shopId: r.shop_id,
    shopName: r.shop_name,
    shopCreatedAt: r.shop_created_at,
    keyId: r.id,
    keyName: r.name,
    keyPrefix: r.prefix,
    keyCreatedAt: r.created_at,
    scopes: r.scopes ? new Set(parseScopes(r.scopes)) : undefined,
  };
  if (cache.size >= CACHE_MAX) cache.clear();
  cache.set(cacheKey, { principal, expires: Date.now() + CACHE_TTL_MS });
  return principal;
}
