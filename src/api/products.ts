/** shop.Product: products; deleting one deletes its variants and their stock levels. */
import type { ServiceImpl } from "@connectrpc/connect";
import type { ShopProduct, Product } from "../../gen/shop/product_pb.ts";
import type { AppContext } from "../context.ts";
import { Batcher } from "../db/batcher.ts";
import { selectLiveBy, selectLiveByMany } from "../db/sql/entities.ts";
import { inventoryLevelEntity } from "../entities/inventory-level.ts";
import { productEntity as P, type ProductRow } from "../entities/product.ts";
import { variantEntity, type VariantRow } from "../entities/variant.ts";
import { createOne, updateOne, write, type Writer } from "../store/write.ts";
import { principal } from "./auth.ts";
import { live, readLive, removed } from "./entity-rpc.ts";
import { idsFilter, listPage, readerOf } from "./paging.ts";
import { ifSet, money, oneOf, patchOf, requireId, text, urls } from "./validate.ts";

export const STATUSES = ["active", "inactive"] as const;

async function withVariants(ctx: AppContext, shopId: string, rows: ProductRow[]): Promise<ShopProduct[]> {
  if (!rows.length) return [];
  const { rows: variants } = await ctx.pool.query<VariantRow>(selectLiveBy(variantEntity, shopId, "product_id", rows.map((r) => r.id)));
  return rows.map((r) => {
    const p = P.toMessage(r);
    if (!r.deleted_at) p.variants = variants.filter((v) => v.product_id === r.id).map(variantEntity.toMessage);
    return p;
  });
}

/** Deletes a product's live variants and their stock levels (the product's lock is held). */
export async function deleteVariantsOf(w: Writer, productId: string) {
  const variants = await w.query<VariantRow>(selectLiveBy(variantEntity, w.shopId, "product_id", [productId]));
  await w.lock(variants.flatMap((v) => [["variant", v.id], ["inventory_level", v.id]] as const));
  for (const v of variants) {
    const fresh = await w.get(variantEntity, v.id);
    if (!fresh || fresh.deleted_at) continue;
    await w.remove(variantEntity, fresh);
    const level = await w.get(inventoryLevelEntity, v.id);
    if (level && !level.deleted_at) await w.remove(inventoryLevelEntity, level);
  }
}

export function productService(ctx: AppContext): ServiceImpl<typeof Product> {
  // One product's variants, read together with those of the other products answered meanwhile.
  const variantsOf = new Batcher<{ shopId: string; id: string }, VariantRow[]>(async (keys) => {
    const { rows } = await ctx.pool.query<VariantRow>(selectLiveByMany(variantEntity, "product_id", keys));
    return keys.map((k) => rows.filter((v) => v.shop_id === k.shopId && v.product_id === k.id));
  });
  const one = async (shopId: string, row: ProductRow) => {
    const p = P.toMessage(row);
    if (!row.deleted_at) p.variants = (await variantsOf.call({ shopId, id: row.id })).map(variantEntity.toMessage);
    return p;
  };
  return {
    async createProduct(req, hc) {
      const shopId = principal(hc).shopId;
      const data = {
        external_id: text("external_id", req.externalId, 100),
        external_code: text("external_code", req.externalCode, 100),
        name: text("name", req.name, 500, true),
        description: text("description", req.description, 20_000),
        short_desc: text("short_desc", req.shortDesc, 1000),
        image_urls: urls("image_urls", req.imageUrls),
        note: text("note", req.note, 2000),
        status: oneOf("status", req.status, STATUSES, "active"),
        list_price: money("list_price", req.listPrice),
        retail_price: money("retail_price", req.retailPrice),
      };
      const id = await ctx.ids.next();
      // A new product has no variants yet: no read for them.
      const p = P.toMessage(await createOne(ctx, shopId, P, { id, ...data }));
      p.variants = [];
      return p;
    },

    async getProduct(req, hc) {
      const shopId = principal(hc).shopId;
      return one(shopId, await readLive(ctx, P, shopId, requireId("id", req.id)));
    },

    async updateProduct(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const patch = patchOf<Partial<ProductRow>>({
        external_id: ifSet(req.externalId, (v) => text("external_id", v, 100)),
        external_code: ifSet(req.externalCode, (v) => text("external_code", v, 100)),
        name: ifSet(req.name, (v) => text("name", v, 500, true)),
        description: ifSet(req.description, (v) => text("description", v, 20_000)),
        short_desc: ifSet(req.shortDesc, (v) => text("short_desc", v, 1000)),
        note: ifSet(req.note, (v) => text("note", v, 2000)),
        status: ifSet(req.status, (v) => oneOf("status", v, STATUSES)),
        list_price: ifSet(req.listPrice, (v) => money("list_price", v)),
        retail_price: ifSet(req.retailPrice, (v) => money("retail_price", v)),
      });
      return one(shopId, await updateOne(ctx, shopId, P, id, (old) => (live(old, P, id), patch)));
    },

    async updateProductImages(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const image_urls = urls("image_urls", req.imageUrls);
      return one(shopId, await updateOne(ctx, shopId, P, id, (old) => (live(old, P, id), { image_urls })));
    },

    async deleteProduct(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const n = await write(ctx, shopId, [["product", id]], async (w) => {
        const old = await w.get(P, id);
        if (!old) live(old, P, id);
        if (old!.deleted_at) return 0;
        await deleteVariantsOf(w, id);
        await w.remove(P, old!);
        return 1;
      });
      return removed(n);
    },

    async listProducts(req, hc) {
      const shopId = principal(hc).shopId;
      const filters = idsFilter("id", "filter.id", req.filter?.id ?? []);
      const { rows, paging } = await listPage(ctx, readerOf(ctx, hc), shopId, P, "products", req.paging, req.includeDeleted, filters);
      return { products: await withVariants(ctx, shopId, rows), paging };
    },
  };
}
