/**
 * Entity RPCs over curl-style JSON, closing what the other files leave out: the update RPCs
 * of lists and attributes (UpdateOrderLines, UpdateVariantAttributes, UpdateProductImages),
 * UpdateFulfillment, GetFulfillment and DeleteFulfillment, each with the change it records;
 * already_exists for every unique index; not_found for writes to deleted entities; tombstones
 * for pollers of every entity; paging limits of every list; order amount bounds and free-form
 * lines' product_id; API key names. Every refused write is checked to have recorded nothing.
 */
import { describe, expect, it } from "vitest";
import type { EntityName } from "../src/entities/model.ts";
import { type TestShop, useApp } from "./support/app.ts";
import { feedSettled } from "./support/db.ts";
import { LISTS } from "./support/lists.ts";

const t = useApp();

/** The largest amount of money the API takes (src/api/validate.ts MONEY_MAX: 1e15, far below int64). */
const MAX = "1000000000000000";
const LIMIT_MESSAGE = (limit: number) => `paging.limit: must be between 1 and 1000 (0 means 100), got ${limit}`;

/** Calls `method` ("shop.Order/GetOrder") with a JSON body; it must succeed. Returns the body. */
async function call(shop: TestShop, method: string, body: unknown = {}): Promise<any> {
  const res = await shop.post(`/v1/${method}`, body);
  expect(res.status, `${method} ${JSON.stringify(body).slice(0, 200)} -> ${JSON.stringify(res.body).slice(0, 300)}`).toBe(200);
  return res.body;
}

/** Calls `method` expecting a refusal (never a 5xx); returns the Connect error's code and message. */
async function refused(shop: TestShop, method: string, body: unknown): Promise<{ code: string; message: string }> {
  const res = await shop.post(`/v1/${method}`, body);
  const what = `${method} ${JSON.stringify(body).slice(0, 200)} -> ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`;
  expect(res.status, what).toBeGreaterThanOrEqual(400);
  expect(res.status, what).toBeLessThan(500);
  return { code: res.body.code, message: res.body.message };
}

/** Waits until every change of the shop is below the feed horizon (another file's open transaction may hold it). */
async function settled(shop: TestShop) {
  await expect.poll(() => feedSettled(t.app.pool, shop.id), { timeout: 10_000, interval: 5 }).toBe(true);
}

/** Every change after `after` (from the start without it), and the cursor to continue from. */
async function changesAfter(shop: TestShop, after?: string): Promise<{ changes: any[]; next: string }> {
  await settled(shop);
  const changes: any[] = [];
  let cursor = after;
  for (;;) {
    const body = await call(shop, "shop.History/GetChanges", { paging: { after: cursor, limit: 1000 } });
    changes.push(...body.changes);
    cursor = body.paging.next;
    expect(cursor).toBeTruthy();
    if (body.changes.length < 1000) return { changes, next: cursor! };
  }
}

/** The feed's end now: a cursor after every change so far. */
const feedEnd = async (shop: TestShop) => (await changesAfter(shop)).next;

/** Asserts that nothing was recorded after `mark`. */
async function expectNoChange(shop: TestShop, mark: string) {
  expect((await changesAfter(shop, mark)).changes).toEqual([]);
}

/** Polls a List* sorted by updated_at, from `after` (from the start without it), until an empty page. */
async function pollList(shop: TestShop, entity: EntityName, after?: string): Promise<{ items: any[]; next: string }> {
  await settled(shop);
  const { path, items } = LISTS[entity];
  const seen: any[] = [];
  let cursor = after;
  for (;;) {
    const body = await call(shop, path, { paging: cursor ? { after: cursor, limit: 1000 } : { sort: "updated_at", limit: 1000 } });
    cursor = body.paging.next;
    expect(cursor).toBeTruthy();
    if (!body[items].length) return { items: seen, next: cursor! };
    seen.push(...body[items]);
  }
}

const GETS: Record<EntityName, [string, string]> = {
  product: ["shop.Product/GetProduct", "id"],
  variant: ["shop.Variant/GetVariant", "id"],
  order: ["shop.Order/GetOrder", "id"],
  fulfillment: ["shop.Fulfillment/GetFulfillment", "id"],
  customer: ["shop.Customer/GetCustomer", "id"],
  inventory_level: ["shop.Inventory/GetInventoryLevel", "variant_id"],
};

async function get(shop: TestShop, entity: EntityName, id: string): Promise<any> {
  const [method, key] = GETS[entity];
  return call(shop, method, { [key]: id });
}

/** An entity as the change log holds it: Get's JSON without read-time fields (a product's variants). */
function stored(entity: EntityName, json: any): any {
  if (entity !== "product") return json;
  const { variants: _variants, ...rest } = json;
  return rest;
}

/** Asserts the only change after `mark` is an update of `id` with exactly `changed`, and latest = Get. Returns the feed's new end. */
async function expectOneUpdate(shop: TestShop, mark: string, entity: EntityName, id: string, changed: object): Promise<string> {
  const { changes, next } = await changesAfter(shop, mark);
  expect(changes.map((c) => `${c.change_type} ${c.entity} ${c.entity_id}`)).toEqual([`update ${entity} ${id}`]);
  const now = stored(entity, await get(shop, entity, id));
  expect(changes[0].changed).toEqual({ [entity]: changed });
  expect(changes[0].latest).toEqual({ [entity]: now });
  expect(changes[0].time).toBe(now.updated_at);
  return next;
}

const later = (a: string, b: string) => Date.parse(a) > Date.parse(b);

async function product(shop: TestShop, body: object = {}) {
  return call(shop, "shop.Product/CreateProduct", { name: "Tea", ...body });
}

async function variant(shop: TestShop, body: object = {}) {
  const productId = (body as { product_id?: string }).product_id ?? (await product(shop)).id;
  return call(shop, "shop.Variant/CreateVariant", { name: "Green", ...body, product_id: productId });
}

const freeLine = (over: object = {}) => ({ product_name: "Gift wrap", quantity: 1, retail_price: "1000", ...over });

async function order(shop: TestShop, body: object = {}) {
  return call(shop, "shop.Order/CreateOrder", { lines: [freeLine()], ...body });
}

/** A confirmed order (free-form lines: no stock needed). */
async function confirmedOrder(shop: TestShop, body: object = {}) {
  return call(shop, "shop.Order/ConfirmOrder", { id: (await order(shop, body)).id });
}

async function fulfillment(shop: TestShop, body: object = {}) {
  const orderId = (body as { order_id?: string }).order_id ?? (await confirmedOrder(shop)).id;
  return call(shop, "shop.Fulfillment/CreateFulfillment", { carrier: "ghn", ...body, order_id: orderId });
}

/** Cancels then deletes a fulfillment (only a finished one can be deleted). */
async function removeFulfillment(shop: TestShop, id: string) {
  await call(shop, "shop.Fulfillment/CancelFulfillment", { id, cancel_reason: "test" });
  expect(await call(shop, "shop.Fulfillment/DeleteFulfillment", { id })).toEqual({ removed: 1 });
}

/** Runs `fn(0..n-1)`, `concurrency` at a time. */
async function times(n: number, fn: (i: number) => Promise<unknown>, concurrency = 16) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

describe("update RPCs of lists, attributes and fulfillments", () => {
  it("UpdateFulfillment changes only the fields sent, records exactly those, and a no-op records nothing", async () => {
    const shop = await t.shop();
    const f = await fulfillment(shop, { shipping_code: "A1", cod_amount: "50000", shipping_fee: "30000", shipping_note: "fragile" });
    const mark = await feedEnd(shop);

    // cod_amount is sent with its current value: not a change.
    const u = await call(shop, "shop.Fulfillment/UpdateFulfillment", { id: f.id, carrier: "ghtk", shipping_code: "B2", cod_amount: "50000" });
    expect(later(u.updated_at, f.updated_at)).toBe(true);
    expect(u).toEqual({ ...f, carrier: "ghtk", shipping_code: "B2", updated_at: u.updated_at });
    expect(await get(shop, "fulfillment", f.id)).toEqual(u);
    let end = await expectOneUpdate(shop, mark, "fulfillment", f.id, { carrier: "ghtk", shipping_code: "B2" });

    // Present fields may be set to their zero values: "" and 0 are values, absence is not.
    const cleared = await call(shop, "shop.Fulfillment/UpdateFulfillment", { id: f.id, shipping_note: "", shipping_fee: "0", external_id: "F-9" });
    expect(cleared).toMatchObject({ shipping_note: "", shipping_fee: "0", external_id: "F-9", carrier: "ghtk", cod_amount: "50000" });
    end = await expectOneUpdate(shop, end, "fulfillment", f.id, { shipping_note: "", shipping_fee: "0", external_id: "F-9" });

    // No-ops: the same values again, or nothing at all.
    expect(await call(shop, "shop.Fulfillment/UpdateFulfillment", { id: f.id, carrier: "ghtk", shipping_code: "B2", cod_amount: "50000" })).toEqual(cleared);
    expect(await call(shop, "shop.Fulfillment/UpdateFulfillment", { id: f.id })).toEqual(cleared);
    await expectNoChange(shop, end);

    // Bad input names the field and changes nothing.
    expect(await refused(shop, "shop.Fulfillment/UpdateFulfillment", { id: f.id, cod_amount: "-1" })).toEqual({ code: "invalid_argument", message: "cod_amount: must not be negative, got -1" });
    expect(await refused(shop, "shop.Fulfillment/UpdateFulfillment", { id: f.id, carrier: "x".repeat(101) })).toEqual({ code: "invalid_argument", message: "carrier: at most 100 characters, got 101" });
    expect(await refused(shop, "shop.Fulfillment/UpdateFulfillment", { id: f.id, shipping_note: "a\u0000b" })).toEqual({ code: "invalid_argument", message: "shipping_note: must not contain control characters" });
    expect(await refused(shop, "shop.Fulfillment/UpdateFulfillment", { carrier: "x" })).toEqual({ code: "invalid_argument", message: "id: required" });
    expect(await refused(shop, "shop.Fulfillment/UpdateFulfillment", { id: "1", carrier: "x" })).toEqual({ code: "not_found", message: "fulfillment 1 not found" });
    await expectNoChange(shop, end);
    expect(await get(shop, "fulfillment", f.id)).toEqual(cleared);
  });

  it("UpdateOrderLines replaces the lines, recomputes totals, records exactly what changed, and a no-op records nothing", async () => {
    const shop = await t.shop();
    const p = await product(shop, { name: "Tea" });
    const v = await variant(shop, { product_id: p.id, name: "Green", retail_price: "50", list_price: "60" });
    const o = await order(shop, { lines: [freeLine({ retail_price: "100" })], total_fee: "10" });
    expect(o).toMatchObject({ basket_value: "100", total_amount: "110" });
    let mark = await feedEnd(shop);

    // Same basket value (2 x 50 = 100): only the lines change.
    const u = await call(shop, "shop.Order/UpdateOrderLines", { id: o.id, lines: [{ variant_id: v.id, quantity: 2 }] });
    const line = { variant_id: v.id, product_id: p.id, product_name: "Tea - Green", quantity: 2, list_price: "60", retail_price: "50", payment_price: "50" };
    expect(u).toEqual({ ...o, lines: [line], updated_at: u.updated_at });
    expect(later(u.updated_at, o.updated_at)).toBe(true);
    expect(await get(shop, "order", o.id)).toEqual(u);
    mark = await expectOneUpdate(shop, mark, "order", o.id, { lines: [line] });

    // A new basket value moves the totals too.
    const u2 = await call(shop, "shop.Order/UpdateOrderLines", { id: o.id, lines: [{ variant_id: v.id, quantity: 3 }, freeLine({ retail_price: "7", quantity: 2 })] });
    const lines2 = [{ ...line, quantity: 3 }, { variant_id: "0", product_id: "0", product_name: "Gift wrap", quantity: 2, list_price: "0", retail_price: "7", payment_price: "7" }];
    expect(u2).toMatchObject({ lines: lines2, basket_value: "164", total_fee: "10", total_amount: "174" });
    mark = await expectOneUpdate(shop, mark, "order", o.id, { lines: lines2, basket_value: "164", total_amount: "174" });

    // The same lines again: no-op.
    expect(await call(shop, "shop.Order/UpdateOrderLines", { id: o.id, lines: [{ variant_id: v.id, quantity: 3 }, freeLine({ retail_price: "7", quantity: 2 })] })).toEqual(u2);
    await expectNoChange(shop, mark);

    // Bad lines, and lines of a confirmed order, are refused and change nothing.
    expect(await refused(shop, "shop.Order/UpdateOrderLines", { id: o.id, lines: [] })).toEqual({ code: "invalid_argument", message: "lines: at least one line is required" });
    expect(await refused(shop, "shop.Order/UpdateOrderLines", { id: o.id, lines: [freeLine(), { quantity: 1 }] })).toEqual({ code: "invalid_argument", message: "lines[1].product_name: required" });
    expect(await refused(shop, "shop.Order/UpdateOrderLines", { id: o.id, lines: [{ variant_id: "1", quantity: 1 }] })).toEqual({ code: "invalid_argument", message: "lines[0].variant_id: variant 1 not found" });
    expect(await refused(shop, "shop.Order/UpdateOrderLines", { id: "1", lines: [freeLine()] })).toEqual({ code: "not_found", message: "order 1 not found" });
    await expectNoChange(shop, mark);
    const c = await confirmedOrder(shop);
    mark = await feedEnd(shop);
    expect(await refused(shop, "shop.Order/UpdateOrderLines", { id: c.id, lines: [freeLine({ quantity: 5 })] })).toEqual({
      code: "failed_precondition",
      message: `order ${c.id} is processing: lines can change only before it is confirmed`,
    });
    await expectNoChange(shop, mark);
    expect(await get(shop, "order", o.id)).toEqual(u2);
  });

  it("UpdateVariantAttributes replaces the attributes, records exactly them, and a no-op records nothing", async () => {
    const shop = await t.shop();
    const v = await variant(shop, { attributes: [{ name: "color", value: "red" }], code: "SKU-1", retail_price: "9" });
    let mark = await feedEnd(shop);

    const attrs = [{ name: "color", value: "blue" }, { name: "size", value: "M" }];
    const u = await call(shop, "shop.Variant/UpdateVariantAttributes", { id: v.id, attributes: attrs });
    expect(u).toEqual({ ...v, attributes: attrs, updated_at: u.updated_at });
    expect(later(u.updated_at, v.updated_at)).toBe(true);
    expect(await get(shop, "variant", v.id)).toEqual(u);
    // Only the variant changes: not its product, not its stock.
    mark = await expectOneUpdate(shop, mark, "variant", v.id, { attributes: attrs });

    expect(await call(shop, "shop.Variant/UpdateVariantAttributes", { id: v.id, attributes: attrs })).toEqual(u);
    await expectNoChange(shop, mark);

    // Order matters (it is a list); an empty list clears.
    const swapped = [attrs[1], attrs[0]];
    await call(shop, "shop.Variant/UpdateVariantAttributes", { id: v.id, attributes: swapped });
    mark = await expectOneUpdate(shop, mark, "variant", v.id, { attributes: swapped });
    expect((await call(shop, "shop.Variant/UpdateVariantAttributes", { id: v.id })).attributes).toEqual([]);
    mark = await expectOneUpdate(shop, mark, "variant", v.id, { attributes: [] });

    expect(await refused(shop, "shop.Variant/UpdateVariantAttributes", { id: v.id, attributes: [{ name: "a", value: "1" }, { name: "a", value: "2" }] })).toEqual({
      code: "invalid_argument",
      message: 'attributes[1].name: duplicate attribute "a"',
    });
    expect(await refused(shop, "shop.Variant/UpdateVariantAttributes", { id: v.id, attributes: [{ name: "", value: "1" }] })).toEqual({ code: "invalid_argument", message: "attributes[0].name: required" });
    expect(await refused(shop, "shop.Variant/UpdateVariantAttributes", { id: "1", attributes: [] })).toEqual({ code: "not_found", message: "variant 1 not found" });
    await expectNoChange(shop, mark);
  });

  it("UpdateProductImages replaces the image list, records exactly it (latest without the read-time variants), and a no-op records nothing", async () => {
    const shop = await t.shop();
    const p = await product(shop, { image_urls: ["https://img.example/a.jpg"] });
    const v = await variant(shop, { product_id: p.id });
    let mark = await feedEnd(shop);

    const images = ["https://img.example/b.jpg", "https://img.example/a.jpg"];
    const u = await call(shop, "shop.Product/UpdateProductImages", { id: p.id, image_urls: images });
    expect(u).toEqual({ ...p, image_urls: images, variants: [v], updated_at: u.updated_at });
    expect(later(u.updated_at, p.updated_at)).toBe(true);
    expect(await get(shop, "product", p.id)).toEqual(u);
    mark = await expectOneUpdate(shop, mark, "product", p.id, { image_urls: images });

    expect(await call(shop, "shop.Product/UpdateProductImages", { id: p.id, image_urls: images })).toEqual(u);
    await expectNoChange(shop, mark);
    expect((await call(shop, "shop.Product/UpdateProductImages", { id: p.id })).image_urls).toEqual([]);
    mark = await expectOneUpdate(shop, mark, "product", p.id, { image_urls: [] });

    expect(await refused(shop, "shop.Product/UpdateProductImages", { id: p.id, image_urls: ["https://ok.example/", "ftp://x/"] })).toEqual({
      code: "invalid_argument",
      message: "image_urls[1]: must be an http or https URL",
    });
    expect(await refused(shop, "shop.Product/UpdateProductImages", { id: p.id, image_urls: Array.from({ length: 21 }, (_, i) => `https://img.example/${i}`) })).toEqual({
      code: "invalid_argument",
      message: "image_urls: at most 20 urls, got 21",
    });
    expect(await refused(shop, "shop.Product/UpdateProductImages", { id: "1", image_urls: [] })).toEqual({ code: "not_found", message: "product 1 not found" });
    await expectNoChange(shop, mark);
  });

  it("GetFulfillment returns what CreateFulfillment did, and its create change; not another shop's", async () => {
    const shop = await t.shop();
    const other = await t.shop();
    const mark = await feedEnd(shop);
    const o = await confirmedOrder(shop);
    const f = await fulfillment(shop, { order_id: o.id, external_id: "F-1", shipping_code: "S1", cod_amount: "1000", shipping_fee: "30", shipping_note: "n" });
    expect(f).toMatchObject({ order_id: o.id, external_id: "F-1", carrier: "ghn", shipping_state: "created", cod_amount: "1000", shipping_fee: "30", cancel_reason: "", deleted: false });
    expect(f.created_at).toBe(f.updated_at);
    expect(await get(shop, "fulfillment", f.id)).toEqual(f);
    const { changes } = await changesAfter(shop, mark);
    const created = changes.find((c) => c.entity === "fulfillment");
    expect(created).toMatchObject({ change_type: "create", entity_id: f.id, latest: { fulfillment: f }, time: f.updated_at });
    // The order follows the new fulfillment.
    expect((await get(shop, "order", o.id)).fulfillment_shipping_status).toBe("created");

    expect(await refused(other, "shop.Fulfillment/GetFulfillment", { id: f.id })).toEqual({ code: "not_found", message: `fulfillment ${f.id} not found` });
    expect(await refused(shop, "shop.Fulfillment/GetFulfillment", { id: "1" })).toEqual({ code: "not_found", message: "fulfillment 1 not found" });
    expect(await refused(shop, "shop.Fulfillment/GetFulfillment", {})).toEqual({ code: "invalid_argument", message: "id: required" });
  });

  it("DeleteFulfillment refuses an unfinished one, deletes a finished one (tombstone and change), and a second delete removes nothing", async () => {
    const shop = await t.shop();
    const f = await fulfillment(shop);
    let mark = await feedEnd(shop);
    expect(await refused(shop, "shop.Fulfillment/DeleteFulfillment", { id: f.id })).toEqual({
      code: "failed_precondition",
      message: `fulfillment ${f.id} is created: cancel it before deleting it`,
    });
    expect(await refused(shop, "shop.Fulfillment/DeleteFulfillment", { id: "1" })).toEqual({ code: "not_found", message: "fulfillment 1 not found" });
    await expectNoChange(shop, mark);

    const cancelled = await call(shop, "shop.Fulfillment/CancelFulfillment", { id: f.id, cancel_reason: "out of stock" });
    mark = await feedEnd(shop);
    expect(await call(shop, "shop.Fulfillment/DeleteFulfillment", { id: f.id })).toEqual({ removed: 1 });
    const { changes, next } = await changesAfter(shop, mark);
    expect(changes.map((c) => `${c.change_type} ${c.entity} ${c.entity_id}`)).toEqual([`delete fulfillment ${f.id}`]);
    const tombstone = changes[0].latest.fulfillment;
    expect(tombstone).toEqual({ ...cancelled, deleted: true, updated_at: tombstone.updated_at });
    expect(later(tombstone.updated_at, cancelled.updated_at)).toBe(true);
    expect(changes[0].time).toBe(tombstone.updated_at);
    expect(changes[0]).not.toHaveProperty("changed"); // only updates carry `changed`
    const listed = await call(shop, "shop.Fulfillment/ListFulfillments", { filter: { id: [f.id] }, include_deleted: true });
    expect(listed.fulfillments).toEqual([tombstone]);
    expect((await call(shop, "shop.Fulfillment/ListFulfillments", { filter: { id: [f.id] } })).fulfillments).toEqual([]);

    expect(await refused(shop, "shop.Fulfillment/GetFulfillment", { id: f.id })).toEqual({ code: "not_found", message: `fulfillment ${f.id} not found` });
    expect(await call(shop, "shop.Fulfillment/DeleteFulfillment", { id: f.id })).toEqual({ removed: 0 });
    await expectNoChange(shop, next);
  });
});

interface UniqueCase {
  index: string;
  entity: EntityName;
  field: string;
  create: string;
  /** The rest of a valid create request (may create what it needs, e.g. a confirmed order). */
  body: (shop: TestShop) => Promise<object>;
  update?: string;
  remove: (shop: TestShop, id: string) => Promise<unknown>;
}

const UNIQUE: UniqueCase[] = [
  {
    index: "products_external_id", entity: "product", field: "external_id", create: "shop.Product/CreateProduct", update: "shop.Product/UpdateProduct",
    body: async () => ({ name: "P" }), remove: (s, id) => call(s, "shop.Product/DeleteProduct", { id }),
  },
  {
    index: "variants_external_id", entity: "variant", field: "external_id", create: "shop.Variant/CreateVariant", update: "shop.Variant/UpdateVariant",
    body: async (s) => ({ product_id: (await product(s)).id }), remove: (s, id) => call(s, "shop.Variant/DeleteVariant", { id }),
  },
  {
    index: "variants_code", entity: "variant", field: "code", create: "shop.Variant/CreateVariant", update: "shop.Variant/UpdateVariant",
    body: async (s) => ({ product_id: (await product(s)).id }), remove: (s, id) => call(s, "shop.Variant/DeleteVariant", { id }),
  },
  {
    index: "customers_external_id", entity: "customer", field: "external_id", create: "shop.Customer/CreateCustomer", update: "shop.Customer/UpdateCustomer",
    body: async () => ({ full_name: "C" }), remove: (s, id) => call(s, "shop.Customer/DeleteCustomer", { id }),
  },
  {
    index: "customers_code", entity: "customer", field: "code", create: "shop.Customer/CreateCustomer", update: "shop.Customer/UpdateCustomer",
    body: async () => ({ full_name: "C" }), remove: (s, id) => call(s, "shop.Customer/DeleteCustomer", { id }),
  },
  {
    index: "orders_external_id", entity: "order", field: "external_id", create: "shop.Order/CreateOrder", update: "shop.Order/UpdateOrder",
    body: async () => ({ lines: [freeLine()] }), remove: (s, id) => call(s, "shop.Order/DeleteOrder", { id }),
  },
  {
    // An order's code cannot be changed (UpdateOrder has no code).
    index: "orders_code", entity: "order", field: "code", create: "shop.Order/CreateOrder",
    body: async () => ({ lines: [freeLine()] }), remove: (s, id) => call(s, "shop.Order/DeleteOrder", { id }),
  },
  {
    index: "fulfillments_external_id", entity: "fulfillment", field: "external_id", create: "shop.Fulfillment/CreateFulfillment", update: "shop.Fulfillment/UpdateFulfillment",
    body: async (s) => ({ order_id: (await confirmedOrder(s)).id }), remove: removeFulfillment,
  },
];

describe("unique fields", () => {
  it("covers every unique index of the shop data tables", async () => {
    const { rows } = await t.app.pool.query<{ indexname: string }>(
      `SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexdef LIKE 'CREATE UNIQUE INDEX%' AND indexname NOT LIKE '%\\_pkey'
         AND tablename IN ('products', 'variants', 'customers', 'orders', 'fulfillments', 'inventory_levels') ORDER BY indexname`,
    );
    expect(rows.map((r) => r.indexname)).toEqual(UNIQUE.map((c) => c.index).sort());
  });

  for (const c of UNIQUE) {
    it(`${c.index}: a duplicate is already_exists naming ${c.field}, on create and update; free again after delete; per shop`, async () => {
      const a = await t.shop();
      const b = await t.shop();
      const value = `${c.field.toUpperCase()}-1`;
      const x = await call(a, c.create, { ...(await c.body(a)), [c.field]: value });
      expect(x[c.field]).toBe(value);
      const dup = { code: "already_exists", message: `${c.field}: already used by another ${c.entity} of this shop` };

      const body = await c.body(a);
      let mark = await feedEnd(a);
      expect(await refused(a, c.create, { ...body, [c.field]: value })).toEqual(dup);
      expect(await refused(a, c.create, { ...body, [c.field]: ` ${value} ` })).toEqual(dup); // trimmed first
      await expectNoChange(a, mark);

      const y = await call(a, c.create, { ...body, [c.field]: `${value}-other` });
      if (c.update) {
        mark = await feedEnd(a);
        expect(await refused(a, c.update, { id: y.id, [c.field]: value })).toEqual(dup);
        // Setting its own value is a no-op, not a conflict with itself.
        expect((await call(a, c.update, { id: x.id, [c.field]: value }))[c.field]).toBe(value);
        await expectNoChange(a, mark);
        expect((await get(a, c.entity, y.id))[c.field]).toBe(`${value}-other`);
      }

      // Another shop may use the same value.
      expect((await call(b, c.create, { ...(await c.body(b)), [c.field]: value }))[c.field]).toBe(value);

      // Deleted, the value is free again (the tombstone keeps it).
      await c.remove(a, x.id);
      const z = await call(a, c.create, { ...(await c.body(a)), [c.field]: value });
      expect(z[c.field]).toBe(value);
      expect(z.id).not.toBe(x.id);
      if (c.update) {
        await c.remove(a, z.id);
        expect((await call(a, c.update, { id: y.id, [c.field]: value }))[c.field]).toBe(value);
      }
    });
  }
});

describe("writes to a deleted entity", () => {
  /** Asserts each probe is refused as given, then that nothing was recorded. */
  async function probe(shop: TestShop, cases: Array<[string, object, { code: string; message: string }]>) {
    const mark = await feedEnd(shop);
    for (const [method, body, want] of cases) expect(await refused(shop, method, body), `${method} ${JSON.stringify(body)}`).toEqual(want);
    await expectNoChange(shop, mark);
  }

  it("customer: Get, Update and references are not_found; Delete again removes nothing", async () => {
    const shop = await t.shop();
    const c = await call(shop, "shop.Customer/CreateCustomer", { full_name: "Lan" });
    const o = await order(shop);
    expect(await call(shop, "shop.Customer/DeleteCustomer", { id: c.id })).toEqual({ removed: 1 });
    const gone = { code: "not_found", message: `customer ${c.id} not found` };
    await probe(shop, [
      ["shop.Customer/GetCustomer", { id: c.id }, gone],
      ["shop.Customer/UpdateCustomer", { id: c.id, full_name: "x" }, gone],
      ["shop.Customer/UpdateCustomer", { id: c.id }, gone],
      ["shop.Order/CreateOrder", { customer_id: c.id, lines: [freeLine()] }, { code: "not_found", message: `customer_id: customer ${c.id} not found` }],
      ["shop.Order/UpdateOrder", { id: o.id, customer_id: c.id }, { code: "not_found", message: `customer_id: customer ${c.id} not found` }],
      ["shop.Customer/DeleteCustomer", { id: "1" }, { code: "not_found", message: "customer 1 not found" }],
    ]);
    const mark = await feedEnd(shop);
    expect(await call(shop, "shop.Customer/DeleteCustomer", { id: c.id })).toEqual({ removed: 0 });
    await expectNoChange(shop, mark);
  });

  it("order: Get, Update, UpdateOrderLines, Confirm, Cancel and CreateFulfillment are not_found; Delete again removes nothing", async () => {
    const shop = await t.shop();
    const o = await order(shop);
    // A confirmed then cancelled order can be deleted too.
    const c = await confirmedOrder(shop);
    await call(shop, "shop.Order/CancelOrder", { id: c.id, cancel_reason: "x" });
    for (const id of [o.id, c.id]) expect(await call(shop, "shop.Order/DeleteOrder", { id })).toEqual({ removed: 1 });
    for (const id of [o.id, c.id]) {
      const gone = { code: "not_found", message: `order ${id} not found` };
      await probe(shop, [
        ["shop.Order/GetOrder", { id }, gone],
        ["shop.Order/UpdateOrder", { id, order_note: "x" }, gone],
        ["shop.Order/UpdateOrder", { id, total_fee: "5" }, gone],
        ["shop.Order/UpdateOrderLines", { id, lines: [freeLine({ quantity: 2 })] }, gone],
        ["shop.Order/ConfirmOrder", { id }, gone],
        ["shop.Order/CancelOrder", { id, cancel_reason: "x" }, gone],
        ["shop.Fulfillment/CreateFulfillment", { order_id: id }, { code: "not_found", message: `order_id: order ${id} not found` }],
      ]);
      const mark = await feedEnd(shop);
      expect(await call(shop, "shop.Order/DeleteOrder", { id })).toEqual({ removed: 0 });
      await expectNoChange(shop, mark);
    }
    await probe(shop, [["shop.Order/DeleteOrder", { id: "1" }, { code: "not_found", message: "order 1 not found" }]]);
  });

  it("fulfillment: Get, Update, UpdateShippingState and Cancel are not_found; Delete again removes nothing", async () => {
    const shop = await t.shop();
    const f = await fulfillment(shop);
    await removeFulfillment(shop, f.id);
    const gone = { code: "not_found", message: `fulfillment ${f.id} not found` };
    await probe(shop, [
      ["shop.Fulfillment/GetFulfillment", { id: f.id }, gone],
      ["shop.Fulfillment/UpdateFulfillment", { id: f.id, carrier: "x" }, gone],
      ["shop.Fulfillment/UpdateFulfillment", { id: f.id }, gone],
      ["shop.Fulfillment/UpdateShippingState", { id: f.id, shipping_state: "picking" }, gone],
      ["shop.Fulfillment/UpdateShippingState", { id: f.id, shipping_state: "cancelled" }, gone],
      ["shop.Fulfillment/CancelFulfillment", { id: f.id, cancel_reason: "x" }, gone],
      ["shop.Fulfillment/DeleteFulfillment", { id: "1" }, { code: "not_found", message: "fulfillment 1 not found" }],
    ]);
    const mark = await feedEnd(shop);
    expect(await call(shop, "shop.Fulfillment/DeleteFulfillment", { id: f.id })).toEqual({ removed: 0 });
    await expectNoChange(shop, mark);
  });

  it("variant and its inventory level: Get, Update, UpdateVariantAttributes, stock writes and order lines are refused; Delete again removes nothing", async () => {
    const shop = await t.shop();
    const v = await variant(shop, { retail_price: "10" });
    const o = await order(shop);
    await call(shop, "shop.Inventory/SetInventory", { counts: [{ variant_id: v.id, available_quantity: 5 }] });
    expect(await call(shop, "shop.Variant/DeleteVariant", { id: v.id })).toEqual({ removed: 1 });
    const gone = { code: "not_found", message: `variant ${v.id} not found` };
    await probe(shop, [
      ["shop.Variant/GetVariant", { id: v.id }, gone],
      ["shop.Variant/UpdateVariant", { id: v.id, name: "x" }, gone],
      ["shop.Variant/UpdateVariant", { id: v.id }, gone],
      ["shop.Variant/UpdateVariantAttributes", { id: v.id, attributes: [{ name: "a", value: "b" }] }, gone],
      ["shop.Inventory/GetInventoryLevel", { variant_id: v.id }, { code: "not_found", message: `inventory level ${v.id} not found` }],
      ["shop.Inventory/AdjustInventory", { adjustments: [{ variant_id: v.id, available_delta: 1 }] }, { code: "not_found", message: `adjustments[0].variant_id: inventory level ${v.id} not found` }],
      ["shop.Inventory/SetInventory", { counts: [{ variant_id: v.id, available_quantity: 1 }] }, { code: "not_found", message: `counts[0].variant_id: inventory level ${v.id} not found` }],
      ["shop.Order/CreateOrder", { lines: [{ variant_id: v.id, quantity: 1 }] }, { code: "invalid_argument", message: `lines[0].variant_id: variant ${v.id} not found` }],
      ["shop.Order/UpdateOrderLines", { id: o.id, lines: [freeLine(), { variant_id: v.id, quantity: 1 }] }, { code: "invalid_argument", message: `lines[1].variant_id: variant ${v.id} not found` }],
      ["shop.Variant/DeleteVariant", { id: "1" }, { code: "not_found", message: "variant 1 not found" }],
    ]);
    expect((await call(shop, "shop.Inventory/ListInventoryLevels", { filter: { variant_id: [v.id] } })).inventory_levels).toEqual([]);
    const mark = await feedEnd(shop);
    expect(await call(shop, "shop.Variant/DeleteVariant", { id: v.id })).toEqual({ removed: 0 });
    await expectNoChange(shop, mark);
  });

  it("product: Get, Update, UpdateProductImages, CreateVariant and free-form lines naming it are refused; Delete again removes nothing", async () => {
    const shop = await t.shop();
    const p = await product(shop);
    const v = await variant(shop, { product_id: p.id });
    expect(await call(shop, "shop.Product/DeleteProduct", { id: p.id })).toEqual({ removed: 1 });
    const gone = { code: "not_found", message: `product ${p.id} not found` };
    await probe(shop, [
      ["shop.Product/GetProduct", { id: p.id }, gone],
      ["shop.Product/UpdateProduct", { id: p.id, name: "x" }, gone],
      ["shop.Product/UpdateProduct", { id: p.id }, gone],
      ["shop.Product/UpdateProductImages", { id: p.id, image_urls: ["https://img.example/x.jpg"] }, gone],
      ["shop.Product/UpdateProductImages", { id: p.id }, gone],
      ["shop.Variant/CreateVariant", { product_id: p.id }, { code: "not_found", message: `product_id: product ${p.id} not found` }],
      ["shop.Variant/GetVariant", { id: v.id }, { code: "not_found", message: `variant ${v.id} not found` }],
      ["shop.Order/CreateOrder", { lines: [freeLine({ product_id: p.id })] }, { code: "invalid_argument", message: `lines[0].product_id: product ${p.id} not found` }],
      ["shop.Product/DeleteProduct", { id: "1" }, { code: "not_found", message: "product 1 not found" }],
    ]);
    const mark = await feedEnd(shop);
    expect(await call(shop, "shop.Product/DeleteProduct", { id: p.id })).toEqual({ removed: 0 });
    await expectNoChange(shop, mark);
  });
});

describe("deletes seen by pollers", () => {
  interface DeleteCase {
    name: string;
    /** Creates the entity (and what it needs); returns its id. */
    setup: (shop: TestShop) => Promise<string>;
    remove: (shop: TestShop, id: string) => Promise<unknown>;
    /** The entities whose delete changes are expected, in feed order (a variant's level shares its id). */
    deleted: Array<EntityName>;
  }
  const cases: DeleteCase[] = [
    {
      name: "customer",
      setup: async (s) => (await call(s, "shop.Customer/CreateCustomer", { full_name: "C" })).id,
      remove: (s, id) => call(s, "shop.Customer/DeleteCustomer", { id }),
      deleted: ["customer"],
    },
    {
      name: "fulfillment",
      setup: async (s) => {
        const f = await fulfillment(s);
        await call(s, "shop.Fulfillment/CancelFulfillment", { id: f.id, cancel_reason: "x" });
        return f.id;
      },
      remove: (s, id) => call(s, "shop.Fulfillment/DeleteFulfillment", { id }),
      deleted: ["fulfillment"],
    },
    { name: "order", setup: async (s) => (await order(s)).id, remove: (s, id) => call(s, "shop.Order/DeleteOrder", { id }), deleted: ["order"] },
    {
      name: "variant (with its inventory level)",
      setup: async (s) => (await variant(s)).id,
      remove: (s, id) => call(s, "shop.Variant/DeleteVariant", { id }),
      deleted: ["variant", "inventory_level"],
    },
  ];

  for (const c of cases) {
    it(`${c.name}: a List* poller holding its last cursor gets the tombstone, and GetChanges the delete`, async () => {
      const shop = await t.shop();
      const id = await c.setup(shop);
      const cursors = {} as Record<EntityName, string>;
      for (const entity of Object.keys(LISTS) as EntityName[]) cursors[entity] = (await pollList(shop, entity)).next;
      const mark = await feedEnd(shop);

      expect(await c.remove(shop, id)).toEqual({ removed: 1 });
      const { changes } = await changesAfter(shop, mark);
      expect(changes.map((x) => `${x.change_type} ${x.entity} ${x.entity_id}`)).toEqual(c.deleted.map((e) => `delete ${e} ${id}`));
      for (const x of changes) {
        expect(x).not.toHaveProperty("changed");
        expect(x.time).toBe(x.latest[x.entity].updated_at);
      }
      for (const entity of Object.keys(LISTS) as EntityName[]) {
        const change = changes.find((x) => x.entity === entity);
        const { items } = await pollList(shop, entity, cursors[entity]);
        expect(items.map((x) => stored(entity, x)), entity).toEqual(change ? [change.latest[entity]] : []);
        if (change) expect(items[0]).toMatchObject({ [LISTS[entity].key]: id, deleted: true });
      }
    });
  }

  it("product: its tombstone, its variants' and their levels' come to each poller, and GetChanges has all the deletes", async () => {
    const shop = await t.shop();
    const p = await product(shop);
    const v1 = await variant(shop, { product_id: p.id, name: "1" });
    const v2 = await variant(shop, { product_id: p.id, name: "2" });
    const other = await variant(shop);
    const cursors = {} as Record<EntityName, string>;
    for (const entity of Object.keys(LISTS) as EntityName[]) cursors[entity] = (await pollList(shop, entity)).next;
    const mark = await feedEnd(shop);

    expect(await call(shop, "shop.Product/DeleteProduct", { id: p.id })).toEqual({ removed: 1 });
    const { changes } = await changesAfter(shop, mark);
    expect(changes.map((x) => `${x.change_type} ${x.entity}`)).toEqual(["delete variant", "delete inventory_level", "delete variant", "delete inventory_level", "delete product"]);
    expect(changes.filter((x) => x.entity === "variant").map((x) => x.entity_id).sort()).toEqual([v1.id, v2.id].sort());
    for (const entity of Object.keys(LISTS) as EntityName[]) {
      const { items } = await pollList(shop, entity, cursors[entity]);
      expect(items.map((x) => stored(entity, x)), entity).toEqual(changes.filter((x) => x.entity === entity).map((x) => x.latest[entity]));
      for (const item of items) expect(item.deleted).toBe(true);
    }
    // The other product's variant is untouched.
    expect((await get(shop, "variant", other.id)).deleted).toBe(false);
  });
});

describe("paging limits", () => {
  it("every List* and GetChanges: 100 by default with a next, 1000 accepted, 1001 and -1 refused naming paging.limit", async () => {
    const shop = await t.shop();
    const N = 101;
    const p = await product(shop, { name: "many variants" });
    await times(N, (i) => call(shop, "shop.Variant/CreateVariant", { product_id: p.id, name: `V${i}` }));
    await times(N - 1, (i) => product(shop, { name: `P${i}` }));
    await times(N, (i) => call(shop, "shop.Customer/CreateCustomer", { full_name: `C${i}` }));
    // Each: order created, confirmed, fulfilled (the order follows the fulfillment): 4 changes.
    await times(N, async (i) => fulfillment(shop, { order_id: (await confirmedOrder(shop, { lines: [freeLine({ product_name: `L${i}` })] })).id }));
    await settled(shop);

    for (const [entity, { path, items, key }] of Object.entries(LISTS)) {
      for (const sort of ["", "updated_at"]) {
        const what = `${entity} sort "${sort}"`;
        const first = await call(shop, path, sort ? { paging: { sort } } : {});
        expect(first[items], what).toHaveLength(100);
        expect(first.paging, what).toMatchObject({ limit: 100, sort });
        expect(first.paging.next, what).toBeTruthy();
        const second = await call(shop, path, { paging: { after: first.paging.next } });
        expect(second[items], what).toHaveLength(1);
        const keys = new Set([...first[items], ...second[items]].map((x: any) => x[key]));
        expect(keys.size, what).toBe(N);

        const max = await call(shop, path, { paging: { sort, limit: 1000 } });
        expect(max[items], what).toHaveLength(N);
        expect(max.paging.limit, what).toBe(1000);
        for (const limit of [1001, -1]) {
          expect(await refused(shop, path, { paging: { sort, limit } }), `${what} limit ${limit}`).toEqual({ code: "invalid_argument", message: LIMIT_MESSAGE(limit) });
          expect(await refused(shop, path, { paging: { after: first.paging.next, limit } }), `${what} limit ${limit} with a cursor`).toEqual({ code: "invalid_argument", message: LIMIT_MESSAGE(limit) });
        }
      }
    }

    const total = 2 * N + N + N + 4 * N; // variants and levels, products, customers, orders' 4 each
    for (const path of ["shop.History/GetChanges", "shop.Webhook/GetChanges"]) {
      const first = await call(shop, path, {});
      expect(first.changes, path).toHaveLength(100);
      expect(first.paging.next).toBeTruthy();
      const rest = await call(shop, path, { paging: { after: first.paging.next, limit: 1000 } });
      expect(rest.changes, path).toHaveLength(total - 100);
      const ids = new Set([...first.changes, ...rest.changes].map((c: any) => c.id));
      expect(ids.size).toBe(total);
      expect((await call(shop, path, { paging: { limit: 1000 } })).changes, path).toHaveLength(total);
      for (const limit of [1001, -1]) {
        expect(await refused(shop, path, { paging: { limit } }), `${path} limit ${limit}`).toEqual({ code: "invalid_argument", message: LIMIT_MESSAGE(limit) });
        expect(await refused(shop, path, { paging: { after: first.paging.next, limit } }), `${path} limit ${limit} with a cursor`).toEqual({ code: "invalid_argument", message: LIMIT_MESSAGE(limit) });
      }
    }
  });
});

describe("order amounts and lines", () => {
  it("refuses baskets and totals over the money bound (and over 1e18) as invalid_argument naming lines or total_fee, and records nothing", async () => {
    const shop = await t.shop();
    const v = await variant(shop, { retail_price: MAX });
    const big = await order(shop, { lines: [freeLine({ retail_price: MAX })] });
    expect(big).toMatchObject({ basket_value: MAX, total_amount: MAX });
    // At the bound exactly, a discount makes room for a fee.
    expect(await order(shop, { lines: [freeLine({ retail_price: MAX })], total_discount: "5", total_fee: "5" })).toMatchObject({ basket_value: MAX, total_amount: MAX });
    const small = await order(shop);
    const mark = await feedEnd(shop);

    const basket = (value: bigint) => ({ code: "invalid_argument", message: `lines: basket_value (retail_price x quantity over the lines) would be ${value}, more than ${MAX}` });
    const total = (value: bigint) => ({ code: "invalid_argument", message: `total_fee: total_amount would be ${value}, more than ${MAX}` });
    const tooMuch = (field: string, value: string) => ({ code: "invalid_argument", message: `${field}: at most ${MAX}, got ${value}` });
    const max = BigInt(MAX);
    const cases: Array<[string, object, { code: string; message: string }]> = [
      // Over 1e18 (and far over the bound): 2e12 x 1,000,000.
      ["shop.Order/CreateOrder", { lines: [freeLine({ retail_price: "2000000000000", quantity: 1_000_000 })] }, basket(2n * 10n ** 18n)],
      ["shop.Order/CreateOrder", { lines: [freeLine({ retail_price: MAX, quantity: 1_000_000 })] }, basket(max * 1_000_000n)],
      ["shop.Order/CreateOrder", { lines: Array.from({ length: 200 }, () => freeLine({ retail_price: MAX, quantity: 1_000_000 })) }, basket(max * 200_000_000n)],
      // Just over the bound.
      ["shop.Order/CreateOrder", { lines: [freeLine({ retail_price: MAX, quantity: 2 })] }, basket(2n * max)],
      ["shop.Order/CreateOrder", { lines: [freeLine({ retail_price: String((max * 6n) / 10n) }), freeLine({ retail_price: String((max * 6n) / 10n) })] }, basket((max * 12n) / 10n)],
      ["shop.Order/CreateOrder", { lines: [{ variant_id: v.id, quantity: 2 }] }, basket(2n * max)],
      ["shop.Order/CreateOrder", { lines: [{ variant_id: v.id, quantity: 1 }, freeLine({ retail_price: "1" })] }, basket(max + 1n)],
      ["shop.Order/UpdateOrderLines", { id: small.id, lines: [freeLine({ retail_price: MAX, quantity: 3 })] }, basket(3n * max)],
      ["shop.Order/UpdateOrderLines", { id: small.id, lines: [freeLine({ retail_price: "2000000000000", quantity: 1_000_000 })] }, basket(2n * 10n ** 18n)],
      // The fee pushes total_amount over.
      ["shop.Order/CreateOrder", { lines: [freeLine({ retail_price: MAX })], total_fee: "1" }, total(max + 1n)],
      ["shop.Order/CreateOrder", { lines: [freeLine({ retail_price: MAX })], total_fee: MAX, total_discount: "1" }, total(2n * max - 1n)],
      ["shop.Order/UpdateOrder", { id: big.id, total_fee: "1" }, total(max + 1n)],
      ["shop.Order/UpdateOrder", { id: big.id, total_fee: "1", order_note: "also this" }, total(max + 1n)],
      // Single amounts over the bound name their own field.
      ["shop.Order/CreateOrder", { lines: [freeLine()], total_fee: String(max + 1n) }, tooMuch("total_fee", String(max + 1n))],
      ["shop.Order/CreateOrder", { lines: [freeLine({ retail_price: "1000000000000000000" })] }, tooMuch("lines[0].retail_price", "1000000000000000000")],
      ["shop.Order/CreateOrder", { lines: [freeLine({ retail_price: "9223372036854775807", quantity: 1_000_000 })] }, tooMuch("lines[0].retail_price", "9223372036854775807")],
      ["shop.Order/CreateOrder", { lines: [{ variant_id: v.id, quantity: 1, payment_price: String(max + 1n) }] }, tooMuch("lines[0].payment_price", String(max + 1n))],
    ];
    for (const [method, body, want] of cases) expect(await refused(shop, method, body), `${method} ${JSON.stringify(body)}`).toEqual(want);
    await expectNoChange(shop, mark);
    expect(await get(shop, "order", big.id)).toEqual(big);
    expect(await get(shop, "order", small.id)).toEqual(small);
  });

  it("a free-form line's product_id must be a live product of the shop: lines[i].product_id otherwise, recording nothing", async () => {
    const shop = await t.shop();
    const other = await t.shop();
    const own = await product(shop, { name: "Own" });
    const theirs = await product(other, { name: "Theirs" });
    const ok = await order(shop, { lines: [freeLine({ product_id: own.id, product_name: "Own, gift-wrapped" })] });
    expect(ok.lines).toEqual([{ variant_id: "0", product_id: own.id, product_name: "Own, gift-wrapped", quantity: 1, list_price: "0", retail_price: "1000", payment_price: "1000" }]);
    const mark = await feedEnd(shop);
    const otherMark = await feedEnd(other);

    const missing = (i: number, id: string) => ({ code: "invalid_argument", message: `lines[${i}].product_id: product ${id} not found` });
    const cases: Array<[string, object, { code: string; message: string }]> = [
      ["shop.Order/CreateOrder", { lines: [freeLine({ product_id: theirs.id })] }, missing(0, theirs.id)],
      ["shop.Order/CreateOrder", { lines: [freeLine({ product_id: "1" })] }, missing(0, "1")],
      ["shop.Order/CreateOrder", { lines: [freeLine({ product_id: own.id }), freeLine({ product_id: theirs.id })] }, missing(1, theirs.id)],
      ["shop.Order/UpdateOrderLines", { id: ok.id, lines: [freeLine({ product_id: theirs.id })] }, missing(0, theirs.id)],
      ["shop.Order/UpdateOrderLines", { id: ok.id, lines: [freeLine({ product_id: "1" })] }, missing(0, "1")],
    ];
    for (const [method, body, want] of cases) expect(await refused(shop, method, body), `${method} ${JSON.stringify(body)}`).toEqual(want);
    await expectNoChange(shop, mark);
    await expectNoChange(other, otherMark);
    expect(await get(shop, "order", ok.id)).toEqual(ok);
  });

  it('an order starts with fulfillment_shipping_status "default", in the response, Get, List and its change', async () => {
    const shop = await t.shop();
    const mark = await feedEnd(shop);
    const o = await order(shop);
    expect(o).toMatchObject({ status: "created", confirm_status: "pending", fulfillment_shipping_status: "default" });
    expect(await get(shop, "order", o.id)).toEqual(o);
    expect((await call(shop, "shop.Order/ListOrders", { filter: { id: [o.id] } })).orders).toEqual([o]);
    const { changes } = await changesAfter(shop, mark);
    expect(changes).toMatchObject([{ change_type: "create", entity: "order", entity_id: o.id, latest: { order: o } }]);
    // Confirming does not touch it, nor does cancelling an order that never had a fulfillment.
    expect((await call(shop, "shop.Order/ConfirmOrder", { id: o.id })).fulfillment_shipping_status).toBe("default");
    expect((await call(shop, "shop.Order/CancelOrder", { id: o.id, cancel_reason: "x" })).fulfillment_shipping_status).toBe("default");
  });
});

describe("API key names", () => {
  it('refuses a name with "\\u0000" or other control characters as invalid_argument naming name, creating no key', async () => {
    const shop = await t.shop();
    const before = (await call(shop, "shop.ApiKey/ListApiKeys", {})).api_keys;
    const mark = await feedEnd(shop);
    // Every answer at once, so a failure shows them all.
    const names = ["\u0000", "a\u0000b", "key\u0001", "a\u001fb", "a\tb", "a\nb", "a\rb", "a\u007fb"];
    const answers = [];
    for (const name of names) {
      const res = await shop.post("/v1/shop.ApiKey/CreateApiKey", { name });
      answers.push({ name, status: res.status, code: res.body.code, message: res.body.message });
    }
    expect(answers).toEqual(names.map((name) => ({ name, status: 400, code: "invalid_argument", message: "name: must not contain control characters" })));
    expect(await refused(shop, "shop.ApiKey/CreateApiKey", { name: "x".repeat(101) })).toEqual({ code: "invalid_argument", message: "name: at most 100 characters, got 101" });
    expect((await call(shop, "shop.ApiKey/ListApiKeys", {})).api_keys).toEqual(before);
    await expectNoChange(shop, mark);
    // A plain name is fine (and works as a key).
    const created = await call(shop, "shop.ApiKey/CreateApiKey", { name: "  rotation 2  " });
    expect(created.api_key.name).toBe("rotation 2");
  });
});
