/**
 * Roles: an API-only instance takes the writes, a delivery-only instance delivers them, and a
 * commit on the API instance wakes delivery at once (NOTIFY to the change watcher), not at the
 * next poll: both instances here poll every 10 minutes, so only the notification can do it.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { Customer } from "../gen/shop/customer_pb.ts";
import { Product } from "../gen/shop/product_pb.ts";
import { Webhook } from "../gen/shop/webhook_pb.ts";
import { type App, startApp } from "../src/app.ts";
import { createApiKey, createShop } from "../src/auth/api-keys.ts";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/logger.ts";
import { postJson, shopHandle, testConfig } from "./support/app.ts";
import { createTestDatabase, dropTestDatabase } from "./support/db.ts";
import { type Received, type Receiver, startReceiver } from "./support/receiver.ts";

let dbUrl: string;
let api: App;
let delivery: App;
let r: Receiver;
const quiet = { webhookAllowHttp: true, webhookAllowPrivate: ["127.0.0.1"], sweepIntervalMs: 600_000, fullSweepIntervalMs: 600_000 };

beforeAll(async () => {
  dbUrl = await createTestDatabase();
  const log = createLogger("silent");
  api = await startApp(testConfig(dbUrl, { ...quiet, role: "api", apiEnabled: true, deliveryEnabled: false }), log);
  delivery = await startApp(testConfig(dbUrl, { ...quiet, role: "delivery", apiEnabled: false, deliveryEnabled: true }), log);
  r = await startReceiver();
});
afterAll(async () => {
  await r?.close();
  await api?.stop();
  await delivery?.stop();
  if (dbUrl) await dropTestDatabase(dbUrl);
});

it("a commit on an API-only instance is delivered by a delivery-only instance within milliseconds", async () => {
  expect(api.delivery).toBeUndefined();
  const s = await createShop(api.pool, "roles");
  const { key } = await createApiKey(api.pool, s.id, "test");
  const shop = shopHandle(api.url, s.id, s.name, key);
  await shop.client(Webhook).createWebhook({ url: r.url, entities: ["customer"] });
  const latencies: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    const c = await shop.client(Customer).createCustomer({ fullName: `c${i}` });
    await r.until((rs) => rs.some((x) => x.body.changes.some((ch: any) => ch.entity_id === c.id)));
    latencies.push(performance.now() - t0);
  }
  latencies.sort((a, b) => a - b);
  console.log(`api -> delivery instance, create to receipt: p50 ${latencies[10]!.toFixed(1)} ms, max ${latencies.at(-1)!.toFixed(1)} ms`);
  // Far below the 10-minute poll: the notification woke the watcher.
  expect(latencies.at(-1)!).toBeLessThan(3_000);
});

it("every kind of write on an API-only instance wakes delivery: update, delete, a transaction of several statements", async () => {
  const s = await createShop(api.pool, "roles-writes");
  const { key } = await createApiKey(api.pool, s.id, "test");
  const shop = shopHandle(api.url, s.id, s.name, key);
  await shop.client(Webhook).createWebhook({ url: r.url, entities: ["customer", "product"] });
  const seen = (entityId: string, type: string) => (rs: Received[]) => rs.some((x) => x.body.changes.some((ch: any) => ch.entity_id === entityId && ch.change_type === type));
  const c = await shop.client(Customer).createCustomer({ fullName: "before" });
  const p = await shop.client(Product).createProduct({ name: "p" });
  await r.until(seen(p.id, "create"));
  // One of each write path: a grouped update, a grouped delete, and write()'s transaction (DeleteProduct).
  const t0 = performance.now();
  await shop.client(Customer).updateCustomer({ id: c.id, fullName: "after" });
  await r.until(seen(c.id, "update"));
  await shop.client(Customer).deleteCustomer({ id: c.id });
  await r.until(seen(c.id, "delete"));
  await shop.client(Product).deleteProduct({ id: p.id });
  await r.until(seen(p.id, "delete"));
  // Far below the 10-minute poll: each commit's own NOTIFY woke the watcher.
  expect(performance.now() - t0).toBeLessThan(9_000);
});

it("the delivery instance serves probes and metrics but no RPC; SHOPHOOK_ROLE is checked", async () => {
  expect((await fetch(`${delivery.url}/healthz`)).status).toBe(200);
  expect((await fetch(`${delivery.url}/metrics`)).status).toBe(200);
  const rpc = await postJson(`${delivery.url}/v1/shop.Misc/VersionInfo`, {});
  expect(rpc.status).toBe(404);
  expect(loadConfig({ SHOPHOOK_ROLE: "api" })).toMatchObject({ role: "api", apiEnabled: true, deliveryEnabled: false });
  expect(loadConfig({ SHOPHOOK_DELIVERY_ENABLED: "false" })).toMatchObject({ role: "api", deliveryEnabled: false });
  expect(loadConfig({})).toMatchObject({ role: "all", apiEnabled: true, deliveryEnabled: true });
  expect(() => loadConfig({ SHOPHOOK_ROLE: "worker" })).toThrow(/SHOPHOOK_ROLE must be one of all, api, delivery, got "worker"/);
});
