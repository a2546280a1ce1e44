/** Every entity, by its change-log name. */
import { customerEntity } from "./customer.ts";
import { fulfillmentEntity } from "./fulfillment.ts";
import { inventoryLevelEntity } from "./inventory-level.ts";
import type { EntityDef, EntityName } from "./model.ts";
import { orderEntity } from "./order.ts";
import { productEntity } from "./product.ts";
import { variantEntity } from "./variant.ts";

export const entities: Record<EntityName, EntityDef> = {
  product: productEntity,
  variant: variantEntity,
  order: orderEntity,
  fulfillment: fulfillmentEntity,
  customer: customerEntity,
  inventory_level: inventoryLevelEntity,
};
