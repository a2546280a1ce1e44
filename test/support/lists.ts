/** Each entity's List* RPC as JSON sees it: path, the response's items field, the item's key. */
import type { EntityName } from "../../src/entities/model.ts";

export const LISTS: Record<EntityName, { path: string; items: string; key: string }> = {
  product: { path: "shop.Product/ListProducts", items: "products", key: "id" },
  variant: { path: "shop.Variant/ListVariants", items: "shop_variants", key: "id" },
  customer: { path: "shop.Customer/ListCustomers", items: "customers", key: "id" },
  order: { path: "shop.Order/ListOrders", items: "orders", key: "id" },
  fulfillment: { path: "shop.Fulfillment/ListFulfillments", items: "fulfillments", key: "id" },
  inventory_level: { path: "shop.Inventory/ListInventoryLevels", items: "inventory_levels", key: "variant_id" },
};
