/** Polling sync: List* cursor paging (full then incremental), tombstones, GetChanges, bad cursors, retention. */
import { afterEach, describe, expect, it, vi } from "vitest";
import { pruneExpired } from "../src/jobs/prune.ts";
import { PRUNE_QUEUE } from "../src/jobs/boss.ts";
import { Customer } from "../gen/shop/customer_pb.ts";
import { Fulfillment } from "../gen/shop/fulfillment_pb.ts";
import { Inventory } from "../gen/shop/inventory_pb.ts";
import { Order } from "../gen/shop/order_pb.ts";
import { Product } from "../gen/shop/product_pb.ts";
import { Variant } from "../gen/shop/variant_pb.ts";
import type { EntityName } from "../src/entities/model.ts";
import { type TestShop, useApp } from "./support/app.ts";
import { LISTS } from "./support/lists.ts";

// Its own cluster: tests here hold writing transactions open (a stalled horizon), which would stall every other file.
const t = useApp({ changeRetentionHours: 24 }, {}, { cluster: "private" });

afterEach(() => {
  vi.useRealTimers();
});

type ListName = EntityName;

/** Polls a List* RPC sorted by updated_at from `after` until an empty page; returns items and the last cursor. */
async function poll(shop: TestShop, list: ListName, after?: string, limit = 3) {
  const { path, items } = LISTS[list];
  const seen: any[] = [];
  let cursor = after;
  for (let i = 0; i < 1000; i++) {
    const res = await shop.post(`/v1/${path}`, { paging: cursor ? { after: cursor, limit } : { sort: "updated_at", limit } });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.paging.next).toBeTruthy();
    cursor = res.body.paging.next;
    if (res.body[items].length === 0) return { items: seen, cursor: cursor! };
    seen.push(...res.body[items]);
  }
  throw new Error("poll did not end");
}

async function seed(shop: TestShop) {
  const p = await shop.client(Product).createProduct({ name: "P" });
  const v1 = await shop.client(Variant).createVariant({ productId: p.id, name: "V1" });
  const v2 = await shop.client(Variant).createVariant({ productId: p.id, name: "V2" });
  await shop.client(Inventory).setInventory({ counts: [{ variantId: v1.id, availableQuantity: 10 }, { variantId: v2.id, availableQuantity: 10 }] });
  const c = await shop.client(Customer).createCustomer({ fullName: "C" });
  const orders = [];
  for (let i = 0; i < 4; i++) orders.push(await shop.client(Order).createOrder({ customerId: c.id, lines: [{ variantId: v1.id, quantity: 1 }] }));
  await shop.client(Order).confirmOrder({ id: orders[0]!.id });
  const f = await shop.client(Fulfillment).createFulfillment({ orderId: orders[0]!.id });
  for (let i = 0; i < 4; i++) await shop.client(Product).createProduct({ name: `Extra ${i}` });
  return { p, v1, v2, c, orders, f };
}

describe("List* sorted by updated_at", () => {
  it("full sync, then the same cursor returns exactly what changed, tombstones included, for every entity", async () => {
    const shop = await t.shop();
    const s = await seed(shop);
    const cursors = {} as Record<ListName, string>;
    const full = {} as Record<ListName, any[]>;
    for (const list of Object.keys(LISTS) as ListName[]) {
      const r = await poll(shop, list);
      cursors[list] = r.cursor;
      full[list] = r.items;
    }
    expect(full.product).toHaveLength(5);
    expect(full.variant).toHaveLength(2);
    expect(full.customer).toHaveLength(1);
    expect(full.order).toHaveLength(4);
    expect(full.fulfillment).toHaveLength(1);
    expect(full.inventory_level).toHaveLength(2);
    // in updated_at order
    for (const items of Object.values(full)) {
      const times = items.map((x) => x.updated_at);
      expect(times).toEqual([...times].sort());
    }

    // Re-polling with nothing changed: empty, and still a cursor to keep polling with.
    for (const list of Object.keys(LISTS) as ListName[]) expect((await poll(shop, list, cursors[list])).items).toEqual([]);

    // Change one of each, delete some.
    await shop.client(Product).updateProduct({ id: s.p.id, name: "P2" });
    await shop.client(Variant).deleteVariant({ id: s.v2.id }); // variant + its inventory level
    await shop.client(Customer).updateCustomer({ id: s.c.id, note: "vip" });
    await shop.client(Order).cancelOrder({ id: s.orders[1]!.id, cancelReason: "x" });
    await shop.client(Order).deleteOrder({ id: s.orders[2]!.id });
    await shop.client(Fulfillment).updateShippingState({ id: s.f.id, shippingState: "picking" }); // fulfillment, order 0, v1's level

    const inc = {} as Record<ListName, any[]>;
    for (const list of Object.keys(LISTS) as ListName[]) inc[list] = (await poll(shop, list, cursors[list])).items;
    const ids = (list: ListName) => inc[list].map((x) => x[LISTS[list].key]).sort();
    expect(inc.product.map((x) => x.name)).toEqual(["P2"]);
    expect(inc.variant).toMatchObject([{ id: s.v2.id, deleted: true }]);
    expect(inc.customer).toMatchObject([{ id: s.c.id, note: "vip" }]);
    expect(ids("order")).toEqual([s.orders[0]!.id, s.orders[1]!.id, s.orders[2]!.id].sort());
    expect(inc.order.find((o) => o.id === s.orders[2]!.id).deleted).toBe(true);
    expect(inc.fulfillment).toMatchObject([{ id: s.f.id, shipping_state: "picking" }]);
    expect(ids("inventory_level")).toEqual([s.v1.id, s.v2.id].sort());
  });

  it("pages in creation order with filters, include_deleted, and prev/before", async () => {
    const shop = await t.shop();
    const products = shop.client(Product);
    const made = [];
    for (let i = 0; i < 7; i++) made.push(await products.createProduct({ name: `N${i}` }));
    await products.deleteProduct({ id: made[3]!.id });

    const page1 = await products.listProducts({ paging: { limit: 3 } });
    expect(page1.products.map((p) => p.name)).toEqual(["N0", "N1", "N2"]);
    expect(page1.paging?.prev).toBe("");
    const page2 = await products.listProducts({ paging: { after: page1.paging!.next, limit: 3 } });
    expect(page2.products.map((p) => p.name)).toEqual(["N4", "N5", "N6"]);
    const back = await products.listProducts({ paging: { before: page2.paging!.prev, limit: 3 } });
    expect(back.products.map((p) => p.name)).toEqual(["N0", "N1", "N2"]);

    const all = await products.listProducts({ includeDeleted: true });
    expect(all.products.map((p) => `${p.name}${p.deleted ? "†" : ""}`)).toEqual(["N0", "N1", "N2", "N3†", "N4", "N5", "N6"]);
    const some = await products.listProducts({ filter: { id: [made[1]!.id, made[5]!.id] } });
    expect(some.products.map((p) => p.name)).toEqual(["N1", "N5"]);

    const orders = await shop.client(Order).listOrders({ filter: { status: ["cancelled"] } });
    expect(orders.orders).toEqual([]);
  });

  it("refuses bad cursors, sorts, limits and filters with invalid_argument naming the field", async () => {
    const a = await t.shop();
    const b = await t.shop();
    await a.client(Product).createProduct({ name: "x" });
    const first = await a.post("/v1/shop.Product/ListProducts", { paging: { sort: "updated_at", limit: 1 } });
    const cursor: string = first.body.paging.next;
    const creation: string = (await a.post("/v1/shop.Product/ListProducts", {})).body.paging.next;
    const [body, mac] = cursor.split(".");
    const decoded = JSON.parse(Buffer.from(body!, "base64url").toString());
    const forged = Buffer.from(JSON.stringify({ ...decoded, k: ["1", "1"] })).toString("base64url") + "." + mac;

    const cases: Array<[TestShop, string, unknown, RegExp]> = [
      [a, "shop.Product/ListProducts", { paging: { after: "garbage" } }, /^paging.after: invalid cursor/],
      [a, "shop.Product/ListProducts", { paging: { after: cursor.slice(0, -2) + "AA" } }, /^paging.after: invalid cursor/],
      [a, "shop.Product/ListProducts", { paging: { after: forged } }, /^paging.after: invalid cursor/],
      [a, "shop.Product/ListProducts", { paging: { before: "x.y" } }, /^paging.before: invalid cursor/],
      [b, "shop.Product/ListProducts", { paging: { after: cursor } }, /^paging.after: cursor was issued to another shop/],
      [a, "shop.Order/ListOrders", { paging: { after: cursor } }, /^paging.after: cursor is for products, not orders/],
      [a, "shop.Product/ListProducts", { paging: { after: creation, sort: "updated_at" } }, /^paging.after: cursor is for sort "", not "updated_at"/],
      [a, "shop.Product/ListProducts", { paging: { after: cursor, before: cursor } }, /^paging: set after or before/],
      [a, "shop.Product/ListProducts", { paging: { sort: "name" } }, /^paging.sort: must be/],
      [a, "shop.Product/ListProducts", { paging: { limit: 1001 } }, /^paging.limit: must be between 1 and 1000/],
      [a, "shop.Product/ListProducts", { paging: { limit: -1 } }, /^paging.limit: /],
      [a, "shop.Product/ListProducts", { filter: { id: ["1", "abc"] } }, /id|invalid/],
      [a, "shop.Product/ListProducts", { filter: { id: Array.from({ length: 101 }, (_, i) => String(i + 1)) } }, /^filter.id: at most 100 ids/],
      [a, "shop.Order/ListOrders", { filter: { status: ["shipped"] } }, /^filter.status: unknown value "shipped"/],
      [a, "shop.History/GetChanges", { paging: { after: cursor } }, /^paging.after: cursor is for products, not changes/],
      [a, "shop.History/GetChanges", { entities: ["orders"] }, /^entities: unknown entity "orders"/],
      [a, "shop.History/GetChanges", { entities: ["order", "order"] }, /^entities: duplicate entity "order"/],
    ];
    for (const [shop, path, req, msg] of cases) {
      const res = await shop.post(`/v1/${path}`, req);
      expect(res.status, `${path} ${JSON.stringify(req).slice(0, 80)}`).toBe(400);
      expect(res.body.code).toBe("invalid_argument");
      expect(res.body.message).toMatch(msg);
    }
  });
});

describe("GetChanges", () => {
  it("pages through every change in order at both eTop paths, filters by entity, and keeps a cursor on an empty page", async () => {
    const shop = await t.shop();
    const s = await seed(shop);
    const seen: any[] = [];
    let after: string | undefined;
    for (;;) {
      const res = await shop.post("/v1/shop.Webhook/GetChanges", { paging: { after, limit: 4 } });
      expect(res.status).toBe(200);
      after = res.body.paging.next;
      if (!res.body.changes.length) break;
      seen.push(...res.body.changes);
    }
    expect(seen.length).toBeGreaterThan(15);
    expect(new Set(seen.map((c) => c.id)).size).toBe(seen.length);
    for (const c of seen) {
      expect(Object.keys(c.latest)).toEqual([c.entity]);
      expect(c.time).toBe(c.latest[c.entity].updated_at);
    }
    const confirm = seen.find((c) => c.entity === "order" && c.entity_id === s.orders[0]!.id && c.change_type === "update");
    expect(confirm.changed.order).toMatchObject({ status: "processing", confirm_status: "confirmed" });

    const fromHistory = await shop.post("/v1/shop.History/GetChanges", { paging: { limit: 1000 }, entities: ["customer", "fulfillment"] });
    expect(fromHistory.body.changes.map((c: any) => c.entity).sort()).toEqual(["customer", "fulfillment"]);

    await shop.client(Customer).updateCustomer({ id: s.c.id, fullName: "C2" });
    const more = await shop.post("/v1/shop.History/GetChanges", { paging: { after } });
    expect(more.body.changes.map((c: any) => `${c.change_type} ${c.entity}`)).toEqual(["update customer"]);
    expect(more.body.changes[0].changed).toEqual({ customer: { full_name: "C2" } });
  });
});

describe("read your writes behind a concurrent transaction", () => {
  it("waits briefly for a short transaction elsewhere, and a long one pauses the feed without skipping", async () => {
    const shop = await t.shop();
    const other = await t.app.pool.connect();
    try {
      // Another transaction that holds an xid: it holds the feed horizon until it ends.
      await other.query("BEGIN");
      await other.query("SELECT pg_current_xact_id()");
      const p1 = await shop.client(Product).createProduct({ name: "behind a short transaction" });
      const ended = new Promise((r) => setTimeout(r, 40)).then(() => other.query("COMMIT"));
      const list = await shop.post("/v1/shop.Product/ListProducts", { paging: { sort: "updated_at" } });
      const changes = await shop.post("/v1/shop.History/GetChanges", {});
      await ended;
      expect(list.body.products.map((p: any) => p.id)).toEqual([p1.id]);
      expect(changes.body.changes.map((c: any) => c.entity_id)).toEqual([p1.id]);

      // A transaction open longer than the wait: the page answers without the held-back write,
      // and the cursor it gives returns that write once the transaction ends.
      await other.query("BEGIN");
      await other.query("SELECT pg_current_xact_id()");
      const p2 = await shop.client(Product).createProduct({ name: "behind a long transaction" });
      const started = performance.now();
      const held = await shop.post("/v1/shop.Product/ListProducts", { paging: { after: list.body.paging.next } });
      const heldChanges = await shop.post("/v1/shop.History/GetChanges", { paging: { after: changes.body.paging.next } });
      expect(performance.now() - started).toBeLessThan(2000);
      expect(held.body.products).toEqual([]);
      expect(heldChanges.body.changes).toEqual([]);
      await other.query("COMMIT");
      const after = await shop.post("/v1/shop.Product/ListProducts", { paging: { after: held.body.paging.next } });
      const afterChanges = await shop.post("/v1/shop.History/GetChanges", { paging: { after: heldChanges.body.paging.next } });
      expect(after.body.products.map((p: any) => p.id)).toEqual([p2.id]);
      expect(afterChanges.body.changes.map((c: any) => c.entity_id)).toEqual([p2.id]);
    } finally {
      await other.query("ROLLBACK").catch(() => undefined);
      other.release();
    }
  });
});

describe("retention", () => {
  it("refuses a cursor behind pruned changes or tombstones with a stable resync message, even one issued a moment ago", async () => {
    const shop = await t.shop();
    const products = shop.client(Product);
    const made = [];
    for (const name of ["a", "b", "c"]) made.push(await products.createProduct({ name }));
    for (const p of made) await products.deleteProduct({ id: p.id });
    // Mid-sync cursors: after the first change, and after the first tombstone.
    const changes = await shop.post("/v1/shop.History/GetChanges", { paging: { limit: 1 } });
    const list = await shop.post("/v1/shop.Product/ListProducts", { paging: { sort: "updated_at", limit: 1 } });
    expect(list.body.products[0].id).toBe(made[0]!.id);
    // The rows after both cursors get old, and the prune deletes them.
    await t.app.pool.query("UPDATE changes SET time = now() - interval '30 hours' WHERE shop_id = $1", [shop.id]);
    await t.app.pool.query("UPDATE products SET deleted_at = now() - interval '30 hours' WHERE shop_id = $1", [shop.id]);
    const pruned = await pruneExpired(t.app.pool, { changes: 24, backlog: 720, historyDays: 30 });
    expect(pruned).toMatchObject({ changes: 6, tombstones: 3 });
    // GetChanges: the poller holds the create of a whose delete was pruned: it must resync.
    const res = await shop.post("/v1/shop.History/GetChanges", { paging: { after: changes.body.paging.next } });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("failed_precondition");
    expect(res.body.message).toMatch(/^paging.after: cursor expired: changes after it were pruned \(retention 24h\); resync from the start/);
    // ListProducts: the tombstones pruned were deletes from before this sync began, of rows it
    // never saw (each row comes once, at its latest position): it carries on, its copy exact.
    const rest = await shop.post("/v1/shop.Product/ListProducts", { paging: { after: list.body.paging.next } });
    expect(rest.status).toBe(200);
    expect(rest.body.products ?? []).toEqual([]);
    // A delete after the sync began, pruned before the sync reached it (the sync took longer
    // than the retention): that cursor expires.
    const d = await products.createProduct({ name: "d" });
    const e = await products.createProduct({ name: "e" });
    const slow = await shop.post("/v1/shop.Product/ListProducts", { paging: { sort: "updated_at", limit: 1 } });
    expect(slow.body.products[0].id).toBe(d.id);
    await products.deleteProduct({ id: e.id });
    await t.app.pool.query("UPDATE products SET deleted_at = now() - interval '30 hours' WHERE shop_id = $1 AND id = $2", [shop.id, e.id]);
    expect(await pruneExpired(t.app.pool, { changes: 24, backlog: 720, historyDays: 30 })).toMatchObject({ tombstones: 1 });
    const late = await shop.post("/v1/shop.Product/ListProducts", { paging: { after: slow.body.paging.next } });
    expect(late.status).toBe(400);
    expect(late.body.message).toMatch(/^paging.after: cursor expired/);
    // A resync from the start works, and its cursor is good again.
    const fresh = await shop.post("/v1/shop.History/GetChanges", {});
    expect(fresh.status).toBe(200);
    expect((await shop.post("/v1/shop.History/GetChanges", { paging: { after: fresh.body.paging.next } })).status).toBe(200);
  });

  it("keeps an old cursor valid while nothing behind it was pruned; the prune marks one shop only", async () => {
    const shop = await t.shop();
    const other = await t.shop();
    await shop.client(Product).createProduct({ name: "x" });
    const changes = await shop.post("/v1/shop.History/GetChanges", {});
    const list = await shop.post("/v1/shop.Product/ListProducts", { paging: { sort: "updated_at" } });
    // Another shop's old changes are pruned; ours are not touched.
    await other.client(Product).createProduct({ name: "old" });
    await t.app.pool.query("UPDATE changes SET time = now() - interval '30 hours' WHERE shop_id = $1", [other.id]);
    expect((await pruneExpired(t.app.pool, { changes: 24, backlog: 720, historyDays: 30 })).changes).toBe(1);
    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() + 25 * 3_600_000 });
    try {
      for (const [path, cursor] of [["shop.History/GetChanges", changes.body.paging.next], ["shop.Product/ListProducts", list.body.paging.next]]) {
        const res = await shop.post(`/v1/${path}`, { paging: { after: cursor } });
        expect(res.status, JSON.stringify(res.body)).toBe(200);
      }
    } finally {
      vi.useRealTimers();
    }
  });

  it("binds a GetChanges cursor to its entities filter", async () => {
    const shop = await t.shop();
    const page = await shop.post("/v1/shop.History/GetChanges", { entities: ["order", "product"] });
    const same = await shop.post("/v1/shop.History/GetChanges", { entities: ["product", "order"], paging: { after: page.body.paging.next } });
    expect(same.status).toBe(200);
    const other = await shop.post("/v1/shop.History/GetChanges", { entities: ["product"], paging: { after: page.body.paging.next } });
    expect(other.status).toBe(400);
    expect(other.body).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/^paging.after: cursor is for entities \[order,product\], not \[product\]/) });
  });

  it("prunes old changes and tombstones from the scheduled job", async () => {
    const shop = await t.shop();
    const products = shop.client(Product);
    const old = await products.createProduct({ name: "old" });
    await products.deleteProduct({ id: old.id });
    const fresh = await products.createProduct({ name: "fresh" });
    await t.app.pool.query("UPDATE changes SET time = now() - interval '30 hours' WHERE shop_id = $1 AND entity_id = $2", [shop.id, old.id]);
    await t.app.pool.query("UPDATE products SET deleted_at = now() - interval '30 hours' WHERE shop_id = $1 AND id = $2", [shop.id, old.id]);

    expect((await t.app.boss.getSchedules()).map((s: { name: string }) => s.name)).toContain(PRUNE_QUEUE);
    await t.app.boss.send(PRUNE_QUEUE, {});
    await expect.poll(async () => (await t.app.pool.query("SELECT count(*)::int AS n FROM changes WHERE shop_id = $1 AND entity_id = $2", [shop.id, old.id])).rows[0].n, { timeout: 15_000 }).toBe(0);
    // The job goes on with tombstones and history: wait until it has finished.
    const running = "SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state IN ('created', 'retry', 'active')";
    await expect.poll(async () => (await t.app.pool.query(running, [PRUNE_QUEUE])).rows[0].n, { timeout: 15_000 }).toBe(0);
    const { rows } = await t.app.pool.query("SELECT id FROM products WHERE shop_id = $1", [shop.id]);
    expect(rows.map((r) => r.id)).toEqual([fresh.id]);
    const left = await shop.post("/v1/shop.History/GetChanges", {});
    expect(left.body.changes.map((c: any) => c.entity_id)).toEqual([fresh.id]);
    // Running it again finds nothing more.
    expect(await pruneExpired(t.app.pool, { changes: 24, backlog: 720, historyDays: 30 })).toMatchObject({ changes: 0, tombstones: 0, deliveries: 0 });
    // Old delivery history goes too, newer stays.
    const fake = (id: number, age: string) =>
      t.app.pool.query(
        `INSERT INTO deliveries (id, shop_id, webhook_id, callback_id, attempt, url, events, change_count, request_headers, body_size, status, response_status, duration_ms, created_at)
         VALUES ($1, $2, 1, 1, 1, 'https://example.com/', '{}', 1, '{}', 10, 'success', 200, 5, now() - $3::interval)`,
        [id, shop.id, age],
      );
    await fake(1, "31 days");
    await fake(2, "29 days");
    expect(await pruneExpired(t.app.pool, { changes: 24, backlog: 720, historyDays: 30 })).toMatchObject({ changes: 0, tombstones: 0, deliveries: 1 });
    expect((await t.app.pool.query("SELECT id FROM deliveries WHERE shop_id = $1", [shop.id])).rows.map((r) => r.id)).toEqual(["2"]);
  });
});
