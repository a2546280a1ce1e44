/**
 * A typed client for shophook, generated from proto/ (protobuf-es + Connect), as the package
 * entry `shophook/client`:
 *
 *   import { createShopClient } from "shophook/client";
 *   const shop = createShopClient({ baseUrl: "http://127.0.0.1:8080", apiKey: process.env.SHOPHOOK_KEY! });
 *   const hook = await shop.webhook.createWebhook({ url: "https://example.com/hook", entities: ["order"] });
 *   for (let after = ""; ; ) {
 *     const page = await shop.order.listOrders({ paging: { after, limit: 100, sort: "updated_at" } });
 *     // ... page.orders
 *     if (!page.orders.length) break;
 *     after = page.paging!.next;
 *   }
 *
 * Node only (it uses @connectrpc/connect-node's transports); the generated messages and services
 * are exported too, for other transports.
 */
import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { ApiKey } from "../gen/shop/api_key_pb.ts";
import { History } from "../gen/shop/change_pb.ts";
import { Customer } from "../gen/shop/customer_pb.ts";
import { Fulfillment } from "../gen/shop/fulfillment_pb.ts";
import { Inventory } from "../gen/shop/inventory_pb.ts";
import { Misc } from "../gen/shop/misc_pb.ts";
import { Order } from "../gen/shop/order_pb.ts";
import { Product } from "../gen/shop/product_pb.ts";
import { Variant } from "../gen/shop/variant_pb.ts";
import { Webhook } from "../gen/shop/webhook_pb.ts";

export * from "../gen/shop/api_key_pb.ts";
export * from "../gen/shop/change_pb.ts";
export * from "../gen/shop/common_pb.ts";
export * from "../gen/shop/customer_pb.ts";
export * from "../gen/shop/fulfillment_pb.ts";
export * from "../gen/shop/inventory_pb.ts";
export * from "../gen/shop/misc_pb.ts";
export * from "../gen/shop/order_pb.ts";
export * from "../gen/shop/product_pb.ts";
export * from "../gen/shop/variant_pb.ts";
export * from "../gen/shop/webhook_pb.ts";

export interface ShopClientOptions {
  /** The server, e.g. http://127.0.0.1:8080 */
  baseUrl: string;
  /** The shop's API key (shk_...). */
  apiKey: string;
  /** "connect" (JSON over HTTP/1.1, the default), "grpc" (HTTP/2) or "grpc-web". */
  protocol?: "connect" | "grpc" | "grpc-web";
  /** Per-call deadline in milliseconds (default 30000). */
  timeoutMs?: number;
}

export interface ShopClient {
  product: Client<typeof Product>;
  variant: Client<typeof Variant>;
  customer: Client<typeof Customer>;
  order: Client<typeof Order>;
  fulfillment: Client<typeof Fulfillment>;
  inventory: Client<typeof Inventory>;
  history: Client<typeof History>;
  webhook: Client<typeof Webhook>;
  apiKey: Client<typeof ApiKey>;
  misc: Client<typeof Misc>;
}

export function shopTransport(opts: ShopClientOptions): Transport {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${opts.apiKey}`);
    return next(req);
  };
  const common = { baseUrl: opts.baseUrl, interceptors: [auth], defaultTimeoutMs: opts.timeoutMs ?? 30_000 };
  switch (opts.protocol ?? "connect") {
    case "grpc":
      return createGrpcTransport(common);
    case "grpc-web":
      return createGrpcWebTransport({ ...common, httpVersion: "1.1" });
    default:
      return createConnectTransport({ ...common, httpVersion: "1.1", useBinaryFormat: false, jsonOptions: { ignoreUnknownFields: true } });
  }
}

/** Clients for every shophook service, authenticated as one shop. */
export function createShopClient(opts: ShopClientOptions): ShopClient {
  const t = shopTransport(opts);
  return {
    product: createClient(Product, t),
    variant: createClient(Variant, t),
    customer: createClient(Customer, t),
    order: createClient(Order, t),
    fulfillment: createClient(Fulfillment, t),
    inventory: createClient(Inventory, t),
    history: createClient(History, t),
    webhook: createClient(Webhook, t),
    apiKey: createClient(ApiKey, t),
    misc: createClient(Misc, t),
  };
}
