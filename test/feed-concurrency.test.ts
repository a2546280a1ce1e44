/**
 * The feed never skips a change. Many writers commit out of order (random delays inside their
 * transactions, random aborts) while pollers read GetChanges and every List* continuously; at
 * the end each poller's copy equals the database exactly, for every entity.
 */
import { describe, expect, it } from "vitest";
import { Customer } from "../gen/shop/customer_pb.ts";
import { Fulfillment } from "../gen/shop/fulfillment_pb.ts";
import { Inventory } from "../gen/shop/inventory_pb.ts";
import { Order } from "../gen/shop/order_pb.ts";
import { Product } from "../gen/shop/product_pb.ts";
import { Variant } from "../gen/shop/variant_pb.ts";
import { customerEntity } from "../src/entities/customer.ts";
import { entities } from "../src/entities/index.ts";
import type { EntityName } from "../src/entities/model.ts";
import { productEntity, type ProductRow } from "../src/entities/product.ts";
import { entityJson, write } from "../src/store/write.ts";
import { type TestShop, useApp } from "./support/app.ts";
import { feedSettled } from "./support/db.ts";
import { LISTS } from "./support/lists.ts";

const t = useApp({ dbPoolSize: 30 });

const DURATION_MS = Number(process.env.FEED_TEST_MS ?? 4000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T>(xs: T[]): T | undefined => xs[Math.floor(Math.random() * xs.length)];


class Abort extends Error {}

/** Writes through the store directly, so it can sleep inside its transaction and abort after writing. */
async function directWriter(shop: TestShop, known: { products: string[]; customers: string[] }, until: number, stats: { aborted: number; committed: number }) {
  const { ids } = t.app;
  while (Date.now() < until) {
    const op = Math.random();
    const abort = Math.random() < 0.2;
    try {
      if (op < 0.35) {
        const id = await ids.next();
        await write(t.app, shop.id, [], async (w) => {
          await w.insert(productEntity, { id, external_id: "", external_code: "", name: abort ? `ABORTED ${id}` : `direct ${id}`, description: "", short_desc: "", image_urls: [], note: "", status: "active", list_price: "0", retail_price: String(Math.floor(Math.random() * 1000)) });
          await sleep(Math.random() * 15);
          if (abort) throw new Abort();
        });
        known.products.push(id);
      } else {
        // Two entities in one transaction, delayed between and after the writes.
        const hot = Math.random() < 0.5;
        const pid = pick(hot ? known.products.slice(0, 3) : known.products);
        const cid = pick(hot ? known.customers.slice(0, 3) : known.customers);
        if (!pid || !cid) continue;
        await write(t.app, shop.id, [["product", pid], ["customer", cid]], async (w) => {
          const p = await w.get<ProductRow>(productEntity, pid);
          const c = await w.get(customerEntity, cid);
          if (!p || p.deleted_at || !c || c.deleted_at) return;
          if (op < 0.9) await w.update(productEntity, p, { note: `n${Math.random()}`, ...(abort ? { name: `ABORTED ${pid}` } : {}) });
          else await w.remove(productEntity, p);
          await sleep(Math.random() * 10);
          await w.update(customerEntity, c, { note: `n${Math.random()}` });
          await sleep(Math.random() * 10);
          if (abort) throw new Abort();
        });
      }
      stats.committed++;
    } catch (err) {
      if (!(err instanceof Abort)) throw err;
      stats.aborted++;
    }
  }
}

/** Writes through the API: every entity type, multi-entity transactions (stock, orders, fulfillments). */
async function apiWriter(shop: TestShop, known: { products: string[]; customers: string[]; variants: string[]; orders: string[]; fulfillments: string[] }, until: number) {
  const c = {
    product: shop.client(Product),
    variant: shop.client(Variant),
    customer: shop.client(Customer),
    order: shop.client(Order),
    fulfillment: shop.client(Fulfillment),
    inventory: shop.client(Inventory),
  };
  const ops: Array<() => Promise<unknown>> = [
    async () => known.customers.push((await c.customer.createCustomer({ fullName: "api" })).id),
    async () => known.products.push((await c.product.createProduct({ name: "api" })).id),
    async () => known.variants.push((await c.variant.createVariant({ productId: pick(known.products) ?? "1", retailPrice: 10n })).id),
    () => c.inventory.adjustInventory({ adjustments: [{ variantId: pick(known.variants) ?? "1", availableDelta: 5 }] }),
    async () => {
      const v = [pick(known.variants), pick(known.variants)].filter(Boolean) as string[];
      known.orders.push((await c.order.createOrder({ lines: v.map((variantId) => ({ variantId, quantity: 1 })) })).id);
    },
    () => c.order.confirmOrder({ id: pick(known.orders) ?? "1" }),
    () => c.order.cancelOrder({ id: pick(known.orders) ?? "1", cancelReason: "test" }),
    async () => known.fulfillments.push((await c.fulfillment.createFulfillment({ orderId: pick(known.orders) ?? "1" })).id),
    () => c.fulfillment.updateShippingState({ id: pick(known.fulfillments) ?? "1", shippingState: pick(["picking", "delivering", "delivered", "cancelled"])! }),
    // Hot rows: the first customers and products are also written by the direct writers.
    () => c.customer.updateCustomer({ id: pick(known.customers.slice(0, 3)) ?? "1", fullName: `u${Math.random()}` }),
    () => c.customer.updateCustomer({ id: pick(known.customers.slice(0, 3)) ?? "1", phone: `09${Math.floor(Math.random() * 1e8)}` }),
    () => c.product.updateProduct({ id: pick(known.products.slice(0, 3)) ?? "1", description: `d${Math.random()}` }),
    () => c.variant.deleteVariant({ id: pick(known.variants) ?? "1" }),
    () => c.product.deleteProduct({ id: pick(known.products) ?? "1" }),
    () => c.order.updateOrder({ id: pick(known.orders) ?? "1", orderNote: `n${Math.random()}` }),
    async () => {
      // A whole order life: stock, order, confirm, fulfillment, shipping states.
      const variantId = pick(known.variants) ?? "1";
      await c.inventory.adjustInventory({ adjustments: [{ variantId, availableDelta: 2 }] });
      const o = await c.order.createOrder({ lines: [{ variantId, quantity: 2 }] });
      known.orders.push(o.id);
      await c.order.confirmOrder({ id: o.id });
      const f = await c.fulfillment.createFulfillment({ orderId: o.id });
      known.fulfillments.push(f.id);
      for (const s of ["picking", "delivering", pick(["delivered", "undeliverable"])!]) await c.fulfillment.updateShippingState({ id: f.id, shippingState: s });
    },
  ];
  while (Date.now() < until) {
    // Refusals (not found after a concurrent delete, not enough stock...) are part of the mix.
    await pick(ops)!().catch(() => undefined);
  }
}

/** Polls `page` until `done()` and then until one empty page; applies every item to `copy`. */
async function poller(page: (after: string | undefined) => Promise<{ items: any[]; next: string }>, apply: (item: any) => void, done: () => Promise<boolean>) {
  let after: string | undefined;
  let pages = 0;
  for (;;) {
    const finished = await done();
    const { items, next } = await page(after);
    pages++;
    after = next;
    items.forEach(apply);
    if (finished && items.length === 0) return pages;
    if (!items.length) await sleep(5);
  }
}

async function dbState(shopId: string, entity: EntityName) {
  const def = entities[entity];
  const { rows } = await t.app.pool.query(`SELECT * FROM ${def.table} WHERE shop_id = $1`, [shopId]);
  return new Map(rows.map((r) => [String(r[def.key]), entityJson(def, r)]));
}

describe("the change feed under concurrency", () => {
  it.each([1, 2])("round %i: pollers end with exactly the database, nothing skipped, nothing from aborts", async () => {
    const shop = await t.shop();
    const known = { products: [] as string[], customers: [] as string[], variants: [] as string[], orders: [] as string[], fulfillments: [] as string[] };
    for (let i = 0; i < 5; i++) {
      known.customers.push((await shop.client(Customer).createCustomer({ fullName: `seed ${i}` })).id);
      known.products.push((await shop.client(Product).createProduct({ name: `seed ${i}` })).id);
      known.variants.push((await shop.client(Variant).createVariant({ productId: known.products[i]!, retailPrice: 10n })).id);
    }
    const stats = { aborted: 0, committed: 0 };
    let writing = true;
    const until = Date.now() + DURATION_MS;

    const fromChanges = new Map<string, any>();
    const changeIds = new Set<string>();
    let duplicates = 0;
    const changesPoller = poller(
      async (after) => {
        const res = await shop.post("/v1/shop.History/GetChanges", { paging: { after, limit: 200 } });
        return { items: res.body.changes, next: res.body.paging.next };
      },
      (c) => {
        if (changeIds.has(c.id)) duplicates++;
        changeIds.add(c.id);
        fromChanges.set(`${c.entity}:${c.entity_id}`, c.latest[c.entity]);
      },
      async () => !writing && (await feedSettled(t.app.pool, shop.id)),
    );
    const fromLists = new Map<EntityName, Map<string, any>>();
    const listPollers = (Object.keys(LISTS) as EntityName[]).map((entity) => {
      const { path, items, key } = LISTS[entity];
      const copy = new Map<string, any>();
      fromLists.set(entity, copy);
      return poller(
        async (after) => {
          const res = await shop.post(`/v1/${path}`, { paging: after ? { after, limit: 50 } : { sort: "updated_at", limit: 50 } });
          if (res.status !== 200) throw new Error(`${path}: ${JSON.stringify(res.body)}`);
          return { items: res.body[items], next: res.body.paging.next };
        },
        (item) => {
          const { variants: _v, ...rest } = item;
          copy.set(item[key], entity === "product" ? rest : item);
        },
        async () => !writing && (await feedSettled(t.app.pool, shop.id)),
      );
    });

    await Promise.all([
      ...Array.from({ length: 4 }, () => directWriter(shop, known, until, stats)),
      ...Array.from({ length: 4 }, () => apiWriter(shop, known, until)),
    ]);
    writing = false;
    await Promise.all([changesPoller, ...listPollers]);

    expect(stats.aborted).toBeGreaterThan(5);
    expect(stats.committed).toBeGreaterThan(50);
    expect(duplicates).toBe(0);
    for (const entity of Object.keys(LISTS) as EntityName[]) {
      const db = await dbState(shop.id, entity);
      expect(db.size, entity).toBeGreaterThan(0);
      const viaChanges = new Map([...fromChanges].filter(([k]) => k.startsWith(`${entity}:`)).map(([k, v]) => [k.slice(entity.length + 1), v]));
      expect(Object.fromEntries(viaChanges), `GetChanges copy of ${entity}`).toEqual(Object.fromEntries(db));
      const viaList = fromLists.get(entity)!;
      expect(Object.fromEntries(viaList), `List copy of ${entity}`).toEqual(Object.fromEntries(db));
    }
    const { rows } = await t.app.pool.query("SELECT count(*)::int AS n FROM changes WHERE shop_id = $1 AND latest->>'name' LIKE 'ABORTED%'", [shop.id]);
    expect(rows[0].n).toBe(0);
    expect((await t.app.pool.query("SELECT count(*)::int AS n FROM changes WHERE shop_id = $1", [shop.id])).rows[0].n).toBe(changeIds.size);
  }, 60_000);
});
