import { create } from "@bufbuild/protobuf";
import { InventoryLevelSchema } from "../../gen/shop/inventory_pb.ts";
import { ts } from "../api/convert.ts";
import { type BaseRow, defineEntity } from "./model.ts";

export interface InventoryLevelRow extends BaseRow {
  variant_id: string;
  product_id: string;
  available_quantity: number;
  reserved_quantity: number;
  picked_quantity: number;
}

export const inventoryLevelEntity = defineEntity<InventoryLevelRow, typeof InventoryLevelSchema>({
  name: "inventory_level",
  table: "inventory_levels",
  key: "variant_id",
  columns: ["variant_id", "product_id", "available_quantity", "reserved_quantity", "picked_quantity", "created_at", "updated_at", "deleted_at"],
  jsonColumns: new Set(),
  schema: InventoryLevelSchema,
  toMessage: (r) =>
    create(InventoryLevelSchema, {
      variantId: r.variant_id,
      productId: r.product_id,
      availableQuantity: r.available_quantity,
      reservedQuantity: r.reserved_quantity,
      pickedQuantity: r.picked_quantity,
      createdAt: ts(r.created_at),
      updatedAt: ts(r.updated_at),
      deleted: r.deleted_at !== null,
    }),
});
