/** SQL for shops and API keys. */
import type { Query } from "./query.ts";

export interface ShopRow {
  id: string;
  name: string;
  created_at: Date;
}

export interface ApiKeyRow {
  id: string;
  shop_id: string;
  name: string;
  prefix: string;
  created_at: Date;
  revoked_at: Date | null;
  /** Null: every scope. */
  scopes: string[] | null;
}

export const insertShop = (name: string): Query => ({
  text: "INSERT INTO shops (name) VALUES ($1) RETURNING id, name, created_at",
  values: [name],
});

export const listShops = (): Query => ({
  text: "SELECT id, name, created_at FROM shops ORDER BY id",
  values: [],
});

export const getShop = (id: string): Query => ({
  text: "SELECT id, name, created_at FROM shops WHERE id = $1",
  values: [id],
});

export const insertApiKey = (shopId: string, name: string, prefix: string, hash: Buffer, scopes: string[] | null): Query => ({
  text: `INSERT INTO api_keys (shop_id, name, prefix, key_hash, scopes) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, shop_id, name, prefix, created_at, revoked_at, scopes`,
  values: [shopId, name, prefix, hash, scopes],
});

export const revokeApiKey = (id: string): Query => ({
  text: `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
         RETURNING id, shop_id, name, prefix, created_at, revoked_at, scopes`,
  values: [id],
});

export const listApiKeys = (shopId: string): Query => ({
  text: "SELECT id, shop_id, name, prefix, created_at, revoked_at, scopes FROM api_keys WHERE shop_id = $1 ORDER BY id",
  values: [shopId],
});

/** The live key with this hash, joined to its shop. */
export const findApiKeyByHash = (hash: Buffer): Query => ({
  text: `SELECT k.id, k.shop_id, k.name, k.prefix, k.created_at, k.revoked_at, k.scopes,
                s.name AS shop_name, s.created_at AS shop_created_at
           FROM api_keys k JOIN shops s ON s.id = k.shop_id
          WHERE k.key_hash = $1 AND k.revoked_at IS NULL`,
  values: [hash],
});

/** Revokes a key only when it belongs to `shopId`: another shop's key id is simply not found. */
export const revokeShopApiKey = (shopId: string, id: string): Query => ({
  text: `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND shop_id = $2
         RETURNING id, shop_id, name, prefix, created_at, revoked_at, scopes`,
  values: [id, shopId],
});
