/**
 * Example: subscribe a webhook, then sync every order by polling, with the typed client.
 *
 *   SHOPHOOK_URL=http://127.0.0.1:8080 SHOPHOOK_KEY=shk_... WEBHOOK_URL=https://example.com/hook \
 *     node examples/typescript/sync-orders.ts
 *
 * (`npm install` builds the client into dist/; `shophook/client` resolves to it.)
 */
import { createShopClient } from "shophook/client";

const shop = createShopClient({ baseUrl: process.env.SHOPHOOK_URL ?? "http://127.0.0.1:8080", apiKey: process.env.SHOPHOOK_KEY ?? "" });

// 1. Changes from now on are pushed to the webhook.
const hook = await shop.webhook.createWebhook({ url: process.env.WEBHOOK_URL ?? "https://example.com/hook", entities: ["order", "fulfillment"] });
console.log(JSON.stringify({ webhook: hook.id, secret_prefix: hook.secret.slice(0, 6) }));

// 2. Full sync by polling: pages in updated_at order until an empty page. Keep `after`:
//    calling again with it later returns exactly what changed since (deletes as tombstones).
let after = "";
let orders = 0;
for (;;) {
  const page = await shop.order.listOrders({ paging: after ? { after, limit: Number(process.env.PAGE_SIZE ?? 100) } : { sort: "updated_at", limit: Number(process.env.PAGE_SIZE ?? 100) } });
  for (const o of page.orders) console.log(JSON.stringify({ order: o.id, code: o.code, status: o.status, total: o.totalAmount.toString() }));
  orders += page.orders.length;
  after = page.paging!.next;
  if (page.orders.length === 0) break;
}
console.log(JSON.stringify({ orders, next: after }));
