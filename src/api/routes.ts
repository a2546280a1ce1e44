/** Assembles every service onto a router. */
import type { ConnectRouter } from "@connectrpc/connect";
import { ApiKey } from "../../gen/shop/api_key_pb.ts";
import { History } from "../../gen/shop/change_pb.ts";
import { Customer } from "../../gen/shop/customer_pb.ts";
import { Fulfillment } from "../../gen/shop/fulfillment_pb.ts";
import { Inventory } from "../../gen/shop/inventory_pb.ts";
import { Misc } from "../../gen/shop/misc_pb.ts";
import { Order } from "../../gen/shop/order_pb.ts";
import { Product } from "../../gen/shop/product_pb.ts";
import { Variant } from "../../gen/shop/variant_pb.ts";
import { Webhook } from "../../gen/shop/webhook_pb.ts";
import type { AppContext } from "../context.ts";
import { apiKeyService } from "./api-keys.ts";
import { getChanges } from "./changes.ts";
import { customerService } from "./customers.ts";
import { fulfillmentService } from "./fulfillments.ts";
import { inventoryService } from "./inventory.ts";
import { miscService } from "./misc.ts";
import { orderService } from "./orders.ts";
import { productService } from "./products.ts";
import { variantService } from "./variants.ts";
import { type WebhookApiDeps, webhookService } from "./webhooks.ts";

export function routes(ctx: AppContext, webhooks: WebhookApiDeps) {
  const changes = getChanges(ctx);
  const services = {
    webhook: webhookService(ctx, webhooks),
    misc: miscService(),
    apiKey: apiKeyService(ctx),
    product: productService(ctx),
    variant: variantService(ctx),
    customer: customerService(ctx),
    order: orderService(ctx),
    fulfillment: fulfillmentService(ctx),
    inventory: inventoryService(ctx),
  };
  return (router: ConnectRouter) => {
    router.service(Misc, services.misc);
    router.service(ApiKey, services.apiKey);
    router.service(Product, services.product);
    router.service(Variant, services.variant);
    router.service(Customer, services.customer);
    router.service(Order, services.order);
    router.service(Fulfillment, services.fulfillment);
    router.service(Inventory, services.inventory);
    router.service(History, { getChanges: changes });
    router.service(Webhook, services.webhook);
  };
}
