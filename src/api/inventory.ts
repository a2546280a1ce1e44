/** shop.Inventory: stock levels; adjustments and counts are all-or-nothing. */
import type { ServiceImpl } from "@connectrpc/connect";
import type { Inventory } from "../../gen/shop/inventory_pb.ts";
import type { AppContext } from "../context.ts";
import { inventoryLevelEntity as IL } from "../entities/inventory-level.ts";
import { write } from "../store/write.ts";
import { principal } from "./auth.ts";
import { failedPrecondition, invalidArgument } from "./errors.ts";
import { live, readLive } from "./entity-rpc.ts";
import { idsFilter, listPage, readerOf } from "./paging.ts";
import { quantity, requireId } from "./validate.ts";

const MAX_QTY = 1_000_000_000;

/** Validates a list of per-variant items: 1 to 100, each variant once. */
function variantItems<T extends { variantId: string }>(field: string, items: T[]): Array<[string, T]> {
  if (!items.length) throw invalidArgument(field, "at least one item is required");
  if (items.length > 100) throw invalidArgument(field, `at most 100 items, got ${items.length}`);
  const seen = new Set<string>();
  return items.map((it, i) => {
    const id = requireId(`${field}[${i}].variant_id`, it.variantId);
    if (seen.has(id)) throw invalidArgument(`${field}[${i}].variant_id`, `variant ${id} appears twice`);
    seen.add(id);
    return [id, it];
  });
}

export function inventoryService(ctx: AppContext): ServiceImpl<typeof Inventory> {
  return {
    async getInventoryLevel(req, hc) {
      return IL.toMessage(await readLive(ctx, IL, principal(hc).shopId, requireId("variant_id", req.variantId)));
    },

    async listInventoryLevels(req, hc) {
      const shopId = principal(hc).shopId;
      const filters = idsFilter("variant_id", "filter.variant_id", req.filter?.variantId ?? []);
      const { rows, paging } = await listPage(ctx, readerOf(ctx, hc), shopId, IL, "inventory_levels", req.paging, req.includeDeleted, filters);
      return { inventoryLevels: rows.map(IL.toMessage), paging };
    },

    async adjustInventory(req, hc) {
      const shopId = principal(hc).shopId;
      const items = variantItems("adjustments", req.adjustments);
      items.forEach(([, a], i) => quantity(`adjustments[${i}].available_delta`, a.availableDelta, -MAX_QTY, MAX_QTY));
      const rows = await write(ctx, shopId, items.map(([id]) => ["inventory_level", id] as ["inventory_level", string]), async (w) => {
        const out = [];
        for (const [i, [id, a]] of items.entries()) {
          const level = live(await w.get(IL, id), IL, id, `adjustments[${i}].variant_id`);
          const next = level.available_quantity + a.availableDelta;
          if (next < 0) throw failedPrecondition(`adjustments[${i}].available_delta: variant ${id} has ${level.available_quantity} available; ${a.availableDelta} would make it negative`);
          if (next > MAX_QTY) throw invalidArgument(`adjustments[${i}].available_delta`, `available quantity would exceed ${MAX_QTY}`);
          out.push(await w.update(IL, level, { available_quantity: next }));
        }
        return out;
      });
      return { inventoryLevels: rows.map(IL.toMessage) };
    },

    async setInventory(req, hc) {
      const shopId = principal(hc).shopId;
      const items = variantItems("counts", req.counts);
      items.forEach(([, c], i) => quantity(`counts[${i}].available_quantity`, c.availableQuantity, 0, MAX_QTY));
      const rows = await write(ctx, shopId, items.map(([id]) => ["inventory_level", id] as ["inventory_level", string]), async (w) => {
        const out = [];
        for (const [i, [id, c]] of items.entries()) {
          const level = live(await w.get(IL, id), IL, id, `counts[${i}].variant_id`);
          out.push(await w.update(IL, level, { available_quantity: c.availableQuantity }));
        }
        return out;
      });
      return { inventoryLevels: rows.map(IL.toMessage) };
    },
  };
}
