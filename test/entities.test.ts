/** Entity write RPCs over the wire: create/get/update/delete, validation, stock, and the change each write records. */
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { History } from "../gen/shop/change_pb.ts";
import { Customer } from "../gen/shop/customer_pb.ts";
import { Fulfillment } from "../gen/shop/fulfillment_pb.ts";
import { Inventory } from "../gen/shop/inventory_pb.ts";
import { Order } from "../gen/shop/order_pb.ts";
import { Product } from "../gen/shop/product_pb.ts";
import { Variant } from "../gen/shop/variant_pb.ts";
import { type TestShop, useApp } from "./support/app.ts";

const t = useApp();

const codeOf = (p: Promise<unknown>) => p.then(() => "ok", (e: unknown) => Code[ConnectError.from(e).code]);
const messageOf = (p: Promise<unknown>) => p.then(() => "ok", (e: unknown) => ConnectError.from(e).rawMessage);

async function allChanges(shop: TestShop) {
  const res = await shop.post("/v1/shop.History/GetChanges", { paging: { limit: 1000 } });
  expect(res.status).toBe(200);
  return res.body.changes as any[];
}

describe("products and variants", () => {
  it("creates a product over curl-style JSON with eTop's snake_case shape and records a create change", async () => {
    const shop = await t.shop();
    const res = await shop.post("/v1/shop.Product/CreateProduct", {
      external_id: "P-1",
      name: "Áo thun",
      list_price: 200000,
      retail_price: "150000",
      image_urls: ["https://img.example/1.jpg"],
    });
    expect(res.status).toBe(200);
    const p = res.body;
    expect(p).toMatchObject({ external_id: "P-1", name: "Áo thun", status: "active", list_price: "200000", retail_price: "150000", deleted: false, variants: [] });
    expect(p.id).toMatch(/^\d+$/);
    expect(p.created_at).toBe(p.updated_at);

    const changes = await allChanges(shop);
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ change_type: "create", entity: "product", entity_id: p.id });
    const { variants: _v, ...withoutVariants } = p;
    expect(changes[0].latest).toEqual({ product: withoutVariants });
    expect(changes[0].time).toBe(p.updated_at);
  });

  it("updates only the fields sent, records only what changed, and skips a no-op", async () => {
    const shop = await t.shop();
    const products = shop.client(Product);
    const p = await products.createProduct({ name: "Mug", retailPrice: 10n });
    const u = await products.updateProduct({ id: p.id, name: "Big mug", retailPrice: 10n });
    expect(u.name).toBe("Big mug");
    expect(u.retailPrice).toBe(10n);
    await products.updateProduct({ id: p.id, name: "Big mug" }); // no-op
    const changes = await allChanges(shop);
    expect(changes.map((c) => c.change_type)).toEqual(["create", "update"]);
    expect(changes[1].changed).toEqual({ product: { name: "Big mug" } });
    expect(changes[1].latest.product.name).toBe("Big mug");
  });

  it("refuses bad input naming the field, and changes nothing", async () => {
    const shop = await t.shop();
    const products = shop.client(Product);
    const cases: Array<[() => Promise<unknown>, string, RegExp]> = [
      [() => products.createProduct({ name: "" }), "InvalidArgument", /^name: required/],
      [() => products.createProduct({ name: "x".repeat(501) }), "InvalidArgument", /^name: at most 500/],
      [() => products.createProduct({ name: "x", status: "weird" }), "InvalidArgument", /^status: must be one of/],
      [() => products.createProduct({ name: "x", listPrice: -1n }), "InvalidArgument", /^list_price: must not be negative/],
      [() => products.createProduct({ name: "x", imageUrls: ["ftp://x"] }), "InvalidArgument", /^image_urls\[0\]: must be an http/],
      [() => products.createProduct({ name: "x", imageUrls: ["not a url"] }), "InvalidArgument", /^image_urls\[0\]: not an absolute URL/],
      [() => products.createProduct({ name: "a\u0001b" }), "InvalidArgument", /^name: must not contain control/],
      [() => products.updateProduct({ id: "123", name: "x" }), "NotFound", /^product 123 not found/],
      [() => products.updateProduct({ id: "", name: "x" }), "InvalidArgument", /^id: required/],
      [() => products.getProduct({ id: "-5" }), "InvalidArgument", /^id: not a valid id/],
    ];
    for (const [call, code, msg] of cases) {
      const err = await call().then(() => undefined, (e: unknown) => ConnectError.from(e));
      expect(err, String(msg)).toBeDefined();
      expect(Code[err!.code]).toBe(code);
      expect(err!.rawMessage).toMatch(msg);
    }
    expect(await allChanges(shop)).toEqual([]);
  });

  it("keeps external_id unique per shop (already_exists), reusable after delete and across shops", async () => {
    const a = await t.shop();
    const b = await t.shop();
    const p = await a.client(Product).createProduct({ name: "x", externalId: "E1" });
    expect(await messageOf(a.client(Product).createProduct({ name: "y", externalId: "E1" }))).toBe("external_id: already used by another product of this shop");
    expect(await codeOf(a.client(Product).createProduct({ name: "y", externalId: "E1" }))).toBe("AlreadyExists");
    expect(await codeOf(b.client(Product).createProduct({ name: "y", externalId: "E1" }))).toBe("ok");
    await a.client(Product).deleteProduct({ id: p.id });
    expect(await codeOf(a.client(Product).createProduct({ name: "z", externalId: "E1" }))).toBe("ok");
  });

  it("concurrent creates go in group commits: each gets its own answer, a duplicate only fails itself", async () => {
    const shop = await t.shop();
    const products = shop.client(Product);
    // 40 at once: while the first insert runs the rest queue and go as multi-row statements;
    // two of them share an external_id, which fails its batch, retried row by row.
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        products.createProduct({ name: `p${i}`, externalId: i === 7 || i === 23 ? "DUP" : `E${i}`, retailPrice: BigInt(i) }).then(
          (p) => ({ ok: true as const, p, i }),
          (e: unknown) => ({ ok: false as const, e: ConnectError.from(e), i }),
        ),
      ),
    );
    const failed = results.filter((r) => !r.ok);
    expect(failed).toHaveLength(1);
    expect([7, 23]).toContain(failed[0]!.i);
    expect(Code[(failed[0] as { e: ConnectError }).e.code]).toBe("AlreadyExists");
    expect((failed[0] as { e: ConnectError }).e.rawMessage).toBe("external_id: already used by another product of this shop");
    const made = results.flatMap((r) => (r.ok ? [r] : []));
    for (const r of made) expect(r.p).toMatchObject({ name: `p${r.i}`, retailPrice: BigInt(r.i) });
    const changes = await allChanges(shop);
    expect(changes).toHaveLength(39);
    expect(new Set(changes.map((c) => c.id)).size).toBe(39);
    // Creates that arrive together are grouped: fewer transactions than creates. (Measured on 40
    // more without a duplicate: a batch holding the duplicate is retried row by row, so how many
    // transactions the 40 above took depends on how they happened to be batched.)
    const other = await t.shop();
    await Promise.all(Array.from({ length: 40 }, (_, i) => other.client(Product).createProduct({ name: `q${i}` })));
    const { rows } = await t.app.pool.query("SELECT count(*)::int AS changes, count(DISTINCT xid)::int AS n FROM changes WHERE shop_id = $1", [other.id]);
    expect(rows[0].changes).toBe(40);
    expect(rows[0].n).toBeLessThan(40);
    for (const r of made) {
      const c = changes.find((x) => x.entity_id === r.p.id);
      expect(c?.latest.product).toMatchObject({ id: r.p.id, name: `p${r.i}`, external_id: r.i === 7 || r.i === 23 ? "DUP" : `E${r.i}` });
    }
    // What was created reads back exactly as each caller was told.
    for (const r of made.slice(0, 5)) expect(await products.getProduct({ id: r.p.id })).toEqual(r.p);
  });

  it("concurrent updates and deletes go in group commits: same-row updates in order, a duplicate only fails itself, every change right", async () => {
    const shop = await t.shop();
    const products = shop.client(Product);
    const made: Array<{ id: string }> = [];
    for (let i = 0; i < 30; i++) made.push(await products.createProduct({ name: `p${i}`, externalId: `X${i}` }));
    const before = (await allChanges(shop)).length;
    // 25 renames, 10 more of the first 10 (the same rows again), one external_id taken by
    // another product, 5 deletes of other products: all at once.
    const calls = [
      ...made.flatMap((p, i) => (i >= 20 && i < 25 ? [] : [() => products.updateProduct({ id: p.id, name: `renamed ${i}` })])),
      ...made.slice(0, 10).map((p, i) => () => products.updateProduct({ id: p.id, retailPrice: BigInt(100 + i) })),
      () => products.updateProduct({ id: made[29]!.id, externalId: "X28" }),
      ...made.slice(20, 25).map((p) => () => products.deleteProduct({ id: p.id })),
    ];
    const results = await Promise.all(calls.map((c) => c().then(() => "ok", (e: unknown) => ConnectError.from(e).rawMessage)));
    expect(results.filter((r) => r !== "ok")).toEqual(["external_id: already used by another product of this shop"]);
    const { rows } = await t.app.pool.query("SELECT count(DISTINCT xid)::int AS n, count(*)::int AS c FROM changes WHERE shop_id = $1 AND change_type <> 'create'", [shop.id]);
    expect(rows[0].c).toBe(40);
    expect(rows[0].n).toBeLessThan(40); // grouped
    const changes = (await allChanges(shop)).slice(before);
    expect(changes).toHaveLength(40);
    // Replaying the changes in feed order gives each product exactly as the database has it.
    const replay = new Map<string, any>();
    for (const c of changes) replay.set(c.entity_id, c.latest.product);
    for (const [i, p] of made.entries()) {
      const now = await shop.post("/v1/shop.Product/ListProducts", { filter: { id: [p.id] }, include_deleted: true });
      const { variants: _v, ...row } = now.body.products[0];
      expect(replay.get(p.id), `product ${i}`).toEqual(row);
      if (i >= 20 && i < 25) expect(row.deleted).toBe(true);
      else expect(row.name).toBe(`renamed ${i}`);
      if (i < 10) expect(row.retail_price).toBe(String(100 + i));
    }
    for (const c of changes.filter((x) => x.change_type === "delete")) expect(c.changed).toBeUndefined();
    for (const c of changes.filter((x) => x.change_type === "update")) expect(Object.keys(c.changed.product).length).toBeGreaterThan(0);
  });

  it("creates variants with inventory levels; deleting the product deletes both; updates of deleted are not_found", async () => {
    const shop = await t.shop();
    const p = await shop.client(Product).createProduct({ name: "Shirt" });
    const v = await shop.client(Variant).createVariant({ productId: p.id, code: "SKU-1", name: "Red / M", retailPrice: 99n, attributes: [{ name: "color", value: "red" }] });
    expect(v.productId).toBe(p.id);
    const level = await shop.client(Inventory).getInventoryLevel({ variantId: v.id });
    expect(level).toMatchObject({ variantId: v.id, productId: p.id, availableQuantity: 0 });
    const got = await shop.client(Product).getProduct({ id: p.id });
    expect(got.variants.map((x) => x.id)).toEqual([v.id]);

    expect((await shop.client(Product).deleteProduct({ id: p.id })).removed).toBe(1);
    expect((await shop.client(Product).deleteProduct({ id: p.id })).removed).toBe(0);
    expect(await codeOf(shop.client(Variant).getVariant({ id: v.id }))).toBe("NotFound");
    expect(await codeOf(shop.client(Variant).updateVariant({ id: v.id, name: "x" }))).toBe("NotFound");
    expect(await codeOf(shop.client(Product).updateProduct({ id: p.id, name: "x" }))).toBe("NotFound");
    expect(await codeOf(shop.client(Inventory).getInventoryLevel({ variantId: v.id }))).toBe("NotFound");
    expect(await codeOf(shop.client(Variant).createVariant({ productId: p.id }))).toBe("NotFound");

    const changes = await allChanges(shop);
    expect(changes.map((c) => `${c.change_type} ${c.entity}`)).toEqual([
      "create product",
      "create variant",
      "create inventory_level",
      "delete variant",
      "delete inventory_level",
      "delete product",
    ]);
    expect(changes.at(-1).latest.product.deleted).toBe(true);
  });
});

describe("orders, stock and fulfillments", () => {
  async function stocked(shop: TestShop, qty: number) {
    const p = await shop.client(Product).createProduct({ name: "Tea" });
    const v = await shop.client(Variant).createVariant({ productId: p.id, name: "Green", retailPrice: 50_000n, listPrice: 60_000n });
    await shop.client(Inventory).setInventory({ counts: [{ variantId: v.id, availableQuantity: qty }] });
    return { p, v };
  }

  it("computes totals, reserves on confirm, ships through fulfillment states, and completes the order", async () => {
    const shop = await t.shop();
    const { v } = await stocked(shop, 10);
    const orders = shop.client(Order);
    const inv = shop.client(Inventory);
    const o = await orders.createOrder({
      lines: [{ variantId: v.id, quantity: 3 }, { productName: "Gift wrap", quantity: 1, retailPrice: 5_000n }],
      totalDiscount: 10_000n,
      totalFee: 20_000n,
      shippingAddress: { fullName: "Lan", phone: "0901234567", province: "Hà Nội" },
    });
    expect(o).toMatchObject({ status: "created", confirmStatus: "pending", basketValue: 155_000n, totalAmount: 165_000n });
    expect(o.code).toMatch(/^SO/);
    expect(o.lines[0]).toMatchObject({ productName: "Tea - Green", retailPrice: 50_000n, paymentPrice: 50_000n, listPrice: 60_000n });

    const confirmed = await orders.confirmOrder({ id: o.id });
    expect(confirmed).toMatchObject({ status: "processing", confirmStatus: "confirmed" });
    expect(confirmed.confirmedAt).toBeDefined();
    expect(await inv.getInventoryLevel({ variantId: v.id })).toMatchObject({ availableQuantity: 7, reservedQuantity: 3 });
    expect(await messageOf(orders.confirmOrder({ id: o.id }))).toMatch(/only a created order can be confirmed/);

    const f = await shop.client(Fulfillment).createFulfillment({ orderId: o.id, carrier: "ghn", codAmount: 165_000n });
    expect(f.shippingState).toBe("created");
    expect(await messageOf(shop.client(Fulfillment).createFulfillment({ orderId: o.id }))).toMatch(/already has fulfillment/);
    const ff = shop.client(Fulfillment);
    await ff.updateShippingState({ id: f.id, shippingState: "picking" });
    expect(await inv.getInventoryLevel({ variantId: v.id })).toMatchObject({ availableQuantity: 7, reservedQuantity: 0, pickedQuantity: 3 });
    expect(await messageOf(ff.updateShippingState({ id: f.id, shippingState: "delivered" }))).toMatch(/cannot go from "picking" to "delivered"/);
    expect(await messageOf(orders.cancelOrder({ id: o.id, cancelReason: "x" }))).toMatch(/cancel that fulfillment first/);
    await ff.updateShippingState({ id: f.id, shippingState: "delivering" });
    const done = await ff.updateShippingState({ id: f.id, shippingState: "delivered" });
    expect(done.deliveredAt).toBeDefined();
    expect(await inv.getInventoryLevel({ variantId: v.id })).toMatchObject({ availableQuantity: 7, reservedQuantity: 0, pickedQuantity: 0 });
    expect(await orders.getOrder({ id: o.id })).toMatchObject({ status: "completed", fulfillmentShippingStatus: "delivered" });
  });

  it("refuses to confirm beyond stock, releases stock on cancel, and returns stock on a returned shipment", async () => {
    const shop = await t.shop();
    const { v } = await stocked(shop, 2);
    const orders = shop.client(Order);
    const inv = shop.client(Inventory);
    const big = await orders.createOrder({ lines: [{ variantId: v.id, quantity: 5 }] });
    expect(await codeOf(orders.confirmOrder({ id: big.id }))).toBe("FailedPrecondition");
    expect(await inv.getInventoryLevel({ variantId: v.id })).toMatchObject({ availableQuantity: 2, reservedQuantity: 0 });

    const small = await orders.createOrder({ lines: [{ variantId: v.id, quantity: 2 }] });
    await orders.confirmOrder({ id: small.id });
    await shop.client(Fulfillment).createFulfillment({ orderId: small.id });
    const cancelled = await orders.cancelOrder({ id: small.id, cancelReason: "customer changed mind" });
    expect(cancelled).toMatchObject({ status: "cancelled", cancelReason: "customer changed mind", fulfillmentShippingStatus: "cancelled" });
    expect(await inv.getInventoryLevel({ variantId: v.id })).toMatchObject({ availableQuantity: 2, reservedQuantity: 0 });
    expect(await messageOf(orders.cancelOrder({ id: small.id, cancelReason: "again" }))).toMatch(/is cancelled and cannot be cancelled/);

    const third = await orders.createOrder({ lines: [{ variantId: v.id, quantity: 1 }] });
    await orders.confirmOrder({ id: third.id });
    const f = await shop.client(Fulfillment).createFulfillment({ orderId: third.id });
    for (const s of ["picking", "delivering", "undeliverable", "returning", "returned"]) await shop.client(Fulfillment).updateShippingState({ id: f.id, shippingState: s });
    expect(await inv.getInventoryLevel({ variantId: v.id })).toMatchObject({ availableQuantity: 2, reservedQuantity: 0, pickedQuantity: 0 });
    expect(await orders.getOrder({ id: third.id })).toMatchObject({ status: "cancelled", cancelReason: "fulfillment returned" });
  });

  it("validates orders and inventory input naming the field", async () => {
    const shop = await t.shop();
    const { v } = await stocked(shop, 1);
    const orders = shop.client(Order);
    const inv = shop.client(Inventory);
    expect(await messageOf(orders.createOrder({ lines: [] }))).toBe("lines: at least one line is required");
    expect(await messageOf(orders.createOrder({ lines: [{ quantity: 1 }] }))).toBe("lines[0].product_name: required");
    expect(await messageOf(orders.createOrder({ lines: [{ variantId: v.id, quantity: 0 }] }))).toMatch(/^lines\[0\].quantity: must be an integer from 1/);
    expect(await messageOf(orders.createOrder({ lines: [{ variantId: "42", quantity: 1 }] }))).toBe("lines[0].variant_id: variant 42 not found");
    expect(await messageOf(orders.createOrder({ lines: [{ variantId: v.id, quantity: 1 }], customerId: "77" }))).toBe("customer_id: customer 77 not found");
    expect(await messageOf(orders.createOrder({ lines: [{ variantId: v.id, quantity: 1 }], totalDiscount: 10n ** 12n }))).toMatch(/^total_discount: /);
    expect(await messageOf(orders.cancelOrder({ id: "1", cancelReason: "" }))).toBe("cancel_reason: required");
    expect(await messageOf(inv.adjustInventory({ adjustments: [] }))).toBe("adjustments: at least one item is required");
    expect(await messageOf(inv.adjustInventory({ adjustments: [{ variantId: v.id, availableDelta: -2 }] }))).toMatch(/^adjustments\[0\].available_delta: variant .* has 1 available/);
    expect(await messageOf(inv.adjustInventory({ adjustments: [{ variantId: v.id, availableDelta: 1 }, { variantId: v.id, availableDelta: 1 }] }))).toMatch(/^adjustments\[1\].variant_id: variant .* appears twice/);
    expect(await messageOf(inv.setInventory({ counts: [{ variantId: v.id, availableQuantity: -1 }] }))).toMatch(/^counts\[0\].available_quantity: /);
    expect(await messageOf(shop.client(Fulfillment).updateShippingState({ id: "5", shippingState: "lost" }))).toMatch(/^shipping_state: must be one of/);
    expect(await messageOf(shop.client(Customer).createCustomer({ email: "nope" }))).toBe('email: not an email address: "nope"');
    expect(await messageOf(shop.client(Customer).createCustomer({ birthday: "2020-02-30" }))).toBe('birthday: must be a date YYYY-MM-DD, got "2020-02-30"');
    // All-or-nothing: the first adjustment of a failing batch did not stick.
    const other = await stocked(shop, 5);
    await codeOf(inv.adjustInventory({ adjustments: [{ variantId: other.v.id, availableDelta: 3 }, { variantId: v.id, availableDelta: -9 }] }));
    expect((await inv.getInventoryLevel({ variantId: other.v.id })).availableQuantity).toBe(5);
  });
});

describe("customers", () => {
  it("creates with a generated code, updates, deletes", async () => {
    const shop = await t.shop();
    const c = shop.client(Customer);
    const x = await c.createCustomer({ fullName: "Nguyễn Văn A", phone: "+84 90 123 4567", gender: "male", birthday: "1990-01-31" });
    expect(x.code).toMatch(/^CUS[0-9A-Z]+$/);
    expect(await codeOf(c.createCustomer({ code: x.code }))).toBe("AlreadyExists");
    expect((await c.updateCustomer({ id: x.id, email: "a@example.com" })).email).toBe("a@example.com");
    expect((await c.deleteCustomer({ id: x.id })).removed).toBe(1);
    expect(await codeOf(c.getCustomer({ id: x.id }))).toBe("NotFound");
  });
});

describe("tenancy", () => {
  it("never shows or changes another shop's entities through Get, Update, Delete, List or GetChanges", async () => {
    const a = await t.shop();
    const b = await t.shop();
    const p = await a.client(Product).createProduct({ name: "A's product" });
    const v = await a.client(Variant).createVariant({ productId: p.id });
    const c = await a.client(Customer).createCustomer({ fullName: "A's customer" });
    const o = await a.client(Order).createOrder({ lines: [{ variantId: v.id, quantity: 1 }] });

    const probes: Array<() => Promise<unknown>> = [
      () => b.client(Product).getProduct({ id: p.id }),
      () => b.client(Product).updateProduct({ id: p.id, name: "stolen" }),
      () => b.client(Product).updateProductImages({ id: p.id, imageUrls: [] }),
      () => b.client(Product).deleteProduct({ id: p.id }),
      () => b.client(Variant).getVariant({ id: v.id }),
      () => b.client(Variant).createVariant({ productId: p.id }),
      () => b.client(Variant).deleteVariant({ id: v.id }),
      () => b.client(Inventory).getInventoryLevel({ variantId: v.id }),
      () => b.client(Inventory).adjustInventory({ adjustments: [{ variantId: v.id, availableDelta: 5 }] }),
      () => b.client(Customer).getCustomer({ id: c.id }),
      () => b.client(Customer).deleteCustomer({ id: c.id }),
      () => b.client(Order).getOrder({ id: o.id }),
      () => b.client(Order).confirmOrder({ id: o.id }),
      () => b.client(Order).cancelOrder({ id: o.id, cancelReason: "x" }),
      () => b.client(Fulfillment).createFulfillment({ orderId: o.id }),
    ];
    for (const probe of probes) expect(await codeOf(probe())).toBe("NotFound");
    // B cannot order A's variant either.
    expect(await codeOf(b.client(Order).createOrder({ lines: [{ variantId: v.id, quantity: 1 }] }))).toBe("InvalidArgument");

    const lists = await Promise.all([
      b.client(Product).listProducts({ paging: { sort: "updated_at" }, includeDeleted: true }),
      b.client(Product).listProducts({ filter: { id: [p.id] } }),
      b.client(Variant).listVariants({ filter: { productId: [p.id] } }),
      b.client(Customer).listCustomers({ filter: { id: [c.id] } }),
      b.client(Order).listOrders({ filter: { id: [o.id] } }),
      b.client(Inventory).listInventoryLevels({ filter: { variantId: [v.id] } }),
      b.client(History).getChanges({}),
    ]);
    expect(lists.map((l) => Object.values(l).find(Array.isArray)?.length)).toEqual([0, 0, 0, 0, 0, 0, 0]);
    // and A's data is untouched
    expect((await a.client(Product).getProduct({ id: p.id })).name).toBe("A's product");
    expect((await a.client(Inventory).getInventoryLevel({ variantId: v.id })).availableQuantity).toBe(0);
  });
});
