/**
 * Months, not minutes: idle subscriptions move with the feed (never pin the log, never stop for
 * a prune of changes they would not get), one rule of "this webhook gets this change" for
 * delivery and metrics, and one request in flight per webhook on every path.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { Inventory } from "../gen/shop/inventory_pb.ts";
import { Order } from "../gen/shop/order_pb.ts";
import { Product } from "../gen/shop/product_pb.ts";
import { Variant } from "../gen/shop/variant_pb.ts";
import { Webhook } from "../gen/shop/webhook_pb.ts";
import * as sql from "../src/db/sql/webhooks.ts";
import { pruneExpired } from "../src/jobs/prune.ts";
import { useApp } from "./support/app.ts";
import { feedSettled } from "./support/db.ts";
import { ManualClock } from "./support/clock.ts";
import { type Receiver, useReceivers } from "./support/receiver.ts";

const DAY = 86_400_000;
const clock = new ManualClock();
const t = useApp({ webhookAllowHttp: true, webhookAllowPrivate: ["127.0.0.1"], deliveryTimeoutMs: 1500, sweepIntervalMs: 100 }, { clock });
const receiver = useReceivers();
const changesOf = (r: Receiver) => r.requests.flatMap((x) => x.body?.changes ?? []);
const hours = { changes: 168, backlog: 720, historyDays: 30 };
const retention = () => ({ ...hours });

describe("idle subscriptions", () => {
  it("an order webhook in a shop that writes only products for 31 days delivers the next order and stays ok; it pins nothing and is never woken", async () => {
    const shop = await t.shop();
    const orders = await receiver();
    const products = await receiver();
    const orderHook = await shop.client(Webhook).createWebhook({ url: orders.url, entities: ["order"] });
    await shop.client(Webhook).createWebhook({ url: products.url, entities: ["product"] });
    // The wake-ups CreateWebhook asked for are taken first; from here on, count every wake-up.
    const queued = async () =>
      (await t.app.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'webhook-wake' AND state IN ('created', 'retry', 'active')")).rows[0]!.n;
    await expect.poll(queued, { timeout: 10_000 }).toBe(0);
    const wakes = new Map<string, number>();
    const deliverer = t.app.delivery!.deliverer;
    const wake = deliverer.wake.bind(deliverer);
    deliverer.wake = (id: string) => {
      wakes.set(id, (wakes.get(id) ?? 0) + 1);
      wake(id);
    };
    try {
      // 1,000 products over 31 days.
      for (let i = 0; i < 1000; i++) {
        await shop.client(Product).createProduct({ name: `p${i}` });
        if (i % 32 === 31) clock.advance(DAY);
      }
      await products.until(() => changesOf(products).length >= 1000, 30_000);
      expect(wakes.get(orderHook.id) ?? 0).toBe(0); // unrelated writes never wake it
    } finally {
      deliverer.wake = wake;
    }
    // (A transaction open anywhere in the cluster holds the horizon; positions move only up to it.)
    await expect.poll(() => feedSettled(t.app.pool, shop.id), { timeout: 10_000 }).toBe(true);
    const pruned = await pruneExpired(t.app.pool, retention(), clock.now());
    // Only the 7-day retention holds the log: the idle order webhook pins nothing.
    expect(pruned.changes).toBeGreaterThan(700);
    const { rows } = await t.app.pool.query<{ oldest: Date }>("SELECT min(time) AS oldest FROM changes WHERE shop_id = $1", [shop.id]);
    expect(clock.now().getTime() - rows[0]!.oldest.getTime()).toBeLessThanOrEqual(hours.changes * 3_600_000);

    const p = await shop.client(Product).createProduct({ name: "Tea" });
    const v = await shop.client(Variant).createVariant({ productId: p.id, retailPrice: 100n });
    await shop.client(Inventory).setInventory({ counts: [{ variantId: v.id, availableQuantity: 10 }] });
    const o = await shop.client(Order).createOrder({ lines: [{ variantId: v.id, quantity: 1 }] });
    await orders.until(() => changesOf(orders).length >= 1);
    expect(changesOf(orders).map((c: any) => c.entity_id)).toEqual([o.id]);
    const hook = await shop.client(Webhook).getWebhook({ id: orderHook.id });
    expect(hook.states?.state).toBe("ok");
    expect(hook.disabledReason).toBe("");
  });

  it("a paused webhook holds the log from its first undelivered change on, not from where it was created; once delivered, the rest goes", async () => {
    const shop = await t.shop();
    const r = await receiver();
    const wh = await shop.client(Webhook).createWebhook({ url: r.url, topics: ["product.created"] });
    await shop.client(Webhook).setActive({ id: wh.id, active: false });
    const before = await shop.client(Product).createProduct({ name: "gone" });
    await shop.client(Product).deleteProduct({ id: before.id }); // the create it gets, then a delete it does not
    await shop.client(Webhook).setActive({ id: wh.id, active: true });
    await r.until(() => changesOf(r).length >= 1);
    await shop.client(Webhook).setActive({ id: wh.id, active: false });
    const kept = await shop.client(Product).createProduct({ name: "kept" });
    for (let i = 0; i < 20; i++) await shop.client(Product).updateProduct({ id: kept.id, note: `n${i}` });
    clock.advance(10 * DAY);
    await expect.poll(() => feedSettled(t.app.pool, shop.id), { timeout: 10_000 }).toBe(true);
    const count = async () => (await t.app.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM changes WHERE shop_id = $1", [shop.id])).rows[0]!.n;
    await pruneExpired(t.app.pool, retention(), clock.now());
    // The create it delivered and the delete it passed go; its undelivered create holds the rest.
    expect(await count()).toBe(21);
    await shop.client(Webhook).setActive({ id: wh.id, active: true });
    await r.until(() => changesOf(r).length >= 2);
    expect(changesOf(r).map((c: any) => [c.entity_id, c.change_type])).toEqual([[before.id, "create"], [kept.id, "create"]]);
    // Delivered (once the 2xx is recorded): the updates it never gets go at the next prune.
    await expect.poll(async () => (await pruneExpired(t.app.pool, retention(), clock.now()), await count()), { timeout: 10_000 }).toBe(0);
  });
});

describe("one rule for delivery and metrics", () => {
  const scrape = async () => (await fetch(`${t.app.url}/metrics`)).text();
  const sample = (text: string, name: string, labels: string) => Number(text.split("\n").find((x) => x.startsWith(`${name}{${labels}} `))?.split(" ").at(-1) ?? NaN);

  it("the undelivered-changes gauge of a paused webhook with topics and fields equals what it then delivers", async () => {
    const shop = await t.shop();
    const r = await receiver();
    const wh = await shop.client(Webhook).createWebhook({ url: r.url, topics: ["product.created", "product.updated"], fields: ["name"] });
    await shop.client(Webhook).setActive({ id: wh.id, active: false });
    const made = [];
    for (let i = 0; i < 6; i++) made.push(await shop.client(Product).createProduct({ name: `p${i}` }));
    for (const p of made.slice(0, 3)) await shop.client(Product).updateProduct({ id: p.id, name: `${p.name}!` }); // sent
    for (const p of made) await shop.client(Product).updateProduct({ id: p.id, note: "not a listed field" }); // not sent
    for (const p of made.slice(0, 2)) await shop.client(Product).deleteProduct({ id: p.id }); // not subscribed
    const gauge = sample(await scrape(), "shophook_undelivered_changes", 'state="ok",active="false"');
    expect(gauge).toBe(9);
    await shop.client(Webhook).setActive({ id: wh.id, active: true });
    await r.until(() => changesOf(r).length >= gauge);
    await new Promise((res) => setTimeout(res, 300)); // nothing more arrives
    expect(changesOf(r)).toHaveLength(gauge);
    expect(sample(await scrape(), "shophook_undelivered_changes", 'state="ok",active="true"')).toBe(0);
  });
});

describe("one request in flight per webhook, on every path", () => {
  it("two concurrent RecoverWebhook calls on one webhook both succeed, one after the other", async () => {
    const shop = await t.shop();
    const r = await receiver();
    const wh = await shop.client(Webhook).createWebhook({ url: r.url, entities: ["product"] });
    const since = clock.now();
    for (let i = 0; i < 3; i++) await shop.client(Product).createProduct({ name: `p${i}` });
    await r.until(() => changesOf(r).length >= 3);
    const both = await Promise.allSettled([0, 1].map(() => shop.client(Webhook).recoverWebhook({ id: wh.id, since: { seconds: BigInt(Math.floor(since.getTime() / 1000)), nanos: 0 } })));
    expect(both.map((b) => (b.status === "fulfilled" ? "ok" : Code[ConnectError.from(b.reason).code]))).toEqual(["ok", "ok"]);
    await r.until(() => changesOf(r).length >= 6);
    // A lease held by an owner that is no engine (these RPCs) is not a dead engine's: no deliverer takes it over.
    await expect.poll(async () => (await t.app.pool.query(sql.acquireLeases([wh.id], "RecoverWebhook:x", 60, true))).rowCount).toBe(1);
    expect((await t.app.pool.query(sql.acquireLeases([wh.id], t.app.delivery!.owner, 60))).rowCount).toBe(0);
    await t.app.pool.query(sql.releaseExclusive(shop.id, wh.id, "RecoverWebhook:x"));
    expect((await t.app.pool.query(sql.acquireLeases([wh.id], t.app.delivery!.owner, 60))).rowCount).toBe(1);
    await t.app.pool.query(sql.releaseLeases([wh.id], t.app.delivery!.owner));
  });

  it("TestWebhook and RetryDelivery of an earlier batch wait for a delivery request in flight: never two at once", async () => {
    const shop = await t.shop();
    let inFlight = 0;
    let most = 0;
    const r = await receiver();
    // Count requests open at once at the receiver (each answers after 400 ms).
    r.behave(() => {
      inFlight++;
      most = Math.max(most, inFlight);
      setTimeout(() => inFlight--, 400);
      return { status: 200, delayMs: 400 };
    });
    const wh = await shop.client(Webhook).createWebhook({ url: r.url, entities: ["product"] });
    await shop.client(Product).createProduct({ name: "first" });
    await r.until((rs) => rs.length >= 1);
    const history = async () => (await shop.client(Webhook).listDeliveries({ filter: { webhookId: wh.id } })).deliveries;
    await expect.poll(async () => (await history()).length).toBe(1);
    const first = (await history())[0]!;
    // A delivery in flight (400 ms), then a test and a retry of the first batch asked at once.
    await shop.client(Product).createProduct({ name: "second" });
    await new Promise((res) => setTimeout(res, 50));
    const [test, retry] = await Promise.all([
      shop.client(Webhook).testWebhook({ id: wh.id, event: "product.created" }),
      shop.client(Webhook).retryDelivery({ id: first.id }),
    ]);
    expect(test.ok).toBe(true);
    expect(retry.delivery?.status).toBe("success");
    await r.until((rs) => rs.length >= 4);
    expect(most).toBe(1);
  });
});
