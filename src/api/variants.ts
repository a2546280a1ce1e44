/** shop.Variant: variants (SKUs) of a product; each has an inventory level created and deleted with it. */
import type { ServiceImpl } from "@connectrpc/connect";
import type { Attribute, Variant } from "../../gen/shop/variant_pb.ts";
import type { AppContext } from "../context.ts";
import { inventoryLevelEntity as IL } from "../entities/inventory-level.ts";
import { productEntity } from "../entities/product.ts";
import { variantEntity as V, type VariantRow } from "../entities/variant.ts";
import { updateOne, write } from "../store/write.ts";
import { principal } from "./auth.ts";
import { invalidArgument } from "./errors.ts";
import { live, readLive, removed } from "./entity-rpc.ts";
import { idsFilter, listPage, readerOf } from "./paging.ts";
import { STATUSES } from "./products.ts";
import { ifSet, money, oneOf, patchOf, requireId, text, urls } from "./validate.ts";

function attributes(field: string, list: Attribute[]) {
  if (list.length > 50) throw invalidArgument(field, `at most 50 attributes, got ${list.length}`);
  const names = new Set<string>();
  return list.map((a, i) => {
    const name = text(`${field}[${i}].name`, a.name, 100, true);
    if (names.has(name)) throw invalidArgument(`${field}[${i}].name`, `duplicate attribute "${name}"`);
    names.add(name);
    return { name, value: text(`${field}[${i}].value`, a.value, 500) };
  });
}

export function variantService(ctx: AppContext): ServiceImpl<typeof Variant> {
  return {
    async createVariant(req, hc) {
      const shopId = principal(hc).shopId;
      const productId = requireId("product_id", req.productId);
      const data = {
        product_id: productId,
        external_id: text("external_id", req.externalId, 100),
        code: text("code", req.code, 100),
        name: text("name", req.name, 500),
        attributes: attributes("attributes", req.attributes),
        image_urls: urls("image_urls", req.imageUrls),
        note: text("note", req.note, 2000),
        status: oneOf("status", req.status, STATUSES, "active"),
        list_price: money("list_price", req.listPrice),
        retail_price: money("retail_price", req.retailPrice),
        cost_price: money("cost_price", req.costPrice),
      };
      const id = await ctx.ids.next();
      // The product's lock keeps a concurrent DeleteProduct from missing this variant.
      const row = await write(ctx, shopId, [["product", productId]], async (w) => {
        live(await w.get(productEntity, productId), productEntity, productId, "product_id");
        const variant = await w.insert(V, { id, ...data });
        await w.insert(IL, { variant_id: id, product_id: productId, available_quantity: 0, reserved_quantity: 0, picked_quantity: 0 });
        return variant;
      });
      return V.toMessage(row);
    },

    async getVariant(req, hc) {
      return V.toMessage(await readLive(ctx, V, principal(hc).shopId, requireId("id", req.id)));
    },

    async updateVariant(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const patch = patchOf<Partial<VariantRow>>({
        external_id: ifSet(req.externalId, (v) => text("external_id", v, 100)),
        code: ifSet(req.code, (v) => text("code", v, 100)),
        name: ifSet(req.name, (v) => text("name", v, 500)),
        note: ifSet(req.note, (v) => text("note", v, 2000)),
        status: ifSet(req.status, (v) => oneOf("status", v, STATUSES)),
        list_price: ifSet(req.listPrice, (v) => money("list_price", v)),
        retail_price: ifSet(req.retailPrice, (v) => money("retail_price", v)),
        cost_price: ifSet(req.costPrice, (v) => money("cost_price", v)),
      });
      return V.toMessage(await updateOne(ctx, shopId, V, id, (old) => (live(old, V, id), patch)));
    },

    async updateVariantAttributes(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const attrs = attributes("attributes", req.attributes);
      return V.toMessage(await updateOne(ctx, shopId, V, id, (old) => (live(old, V, id), { attributes: attrs })));
    },

    async deleteVariant(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const n = await write(ctx, shopId, [["variant", id], ["inventory_level", id]], async (w) => {
        const old = await w.get(V, id);
        if (!old) live(old, V, id);
        if (old!.deleted_at) return 0;
        await w.remove(V, old!);
        const level = await w.get(IL, id);
        if (level && !level.deleted_at) await w.remove(IL, level);
        return 1;
      });
      return removed(n);
    },

    async listVariants(req, hc) {
      const shopId = principal(hc).shopId;
      const filters = [...idsFilter("id", "filter.id", req.filter?.id ?? []), ...idsFilter("product_id", "filter.product_id", req.filter?.productId ?? [])];
      const { rows, paging } = await listPage(ctx, readerOf(ctx, hc), shopId, V, "variants", req.paging, req.includeDeleted, filters);
      return { shopVariants: rows.map(V.toMessage), paging };
    },
  };
}
