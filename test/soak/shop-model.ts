/**
 * What a shop writes: a small model of its entities (ids, order and fulfillment states, stock)
 * so that every write is one the API accepts, over every entity kind and nearly every write RPC
 * (bodies as in test/entity-rpcs.test.ts). A write the model got wrong is refused with
 * failed_precondition; it is counted, the model re-reads the entity, and the run goes on. Any
 * other refusal fails the soak.
 */
import type { DescService } from "@bufbuild/protobuf";
import { Customer } from "../../gen/shop/customer_pb.ts";
import { Fulfillment } from "../../gen/shop/fulfillment_pb.ts";
import { Inventory } from "../../gen/shop/inventory_pb.ts";
import { Order } from "../../gen/shop/order_pb.ts";
import { Product } from "../../gen/shop/product_pb.ts";
import { Variant } from "../../gen/shop/variant_pb.ts";
import { RpcError, type ShopApi } from "./api.ts";
import type { Rng } from "./random.ts";

export type Kind = "product" | "variant" | "inventory_level" | "customer" | "order" | "fulfillment";
export const KINDS: readonly Kind[] = ["product", "variant", "inventory_level", "customer", "order", "fulfillment"];

/** What share of a shop's writes goes to each kind. */
export const MIXES = {
  /** A shop that sells: every kind. */
  full: { product: 8, variant: 8, inventory_level: 14, customer: 14, order: 38, fulfillment: 18 },
  /** A shop that only maintains its catalogue (orders, customers, fulfillments are rare or absent). */
  catalog: { product: 45, variant: 25, inventory_level: 30 },
  /** A catalogue shop once its first orders come in. */
  catalogSelling: { product: 40, variant: 20, inventory_level: 28, order: 12 },
} satisfies Record<string, Partial<Record<Kind, number>>>;

interface OrderState {
  status: string;
  /** variant id -> quantity, over the order's variant lines. */
  stock: Map<string, number>;
}

interface FulfillmentState {
  orderId: string;
  state: string;
}

/** The next shipping state a fulfillment moves to (the happy path, with a return now and then). */
const NEXT_STATE: Record<string, string[]> = {
  created: ["picking"],
  picking: ["delivering", "delivering", "holding"],
  holding: ["delivering"],
  delivering: ["delivered", "delivered", "delivered", "undeliverable"],
  undeliverable: ["returning", "delivering"],
  returning: ["returned"],
};
const FINAL = new Set(["delivered", "returned", "cancelled"]);

export class ShopModel {
  readonly products = new Map<string, Set<string>>();
  readonly variants = new Map<string, { product: string; available: number }>();
  readonly customers = new Set<string>();
  readonly orders = new Map<string, OrderState>();
  readonly fulfillments = new Map<string, FulfillmentState>();
  /** Writes by RPC name ("Order/ConfirmOrder"), and refusals the model did not foresee. */
  readonly counts = new Map<string, number>();
  refused = 0;
  private n = 0;
  private readonly api: ShopApi;
  private readonly rng: Rng;

  constructor(api: ShopApi, rng: Rng) {
    this.api = api;
    this.rng = rng;
  }

  private async call(service: DescService, method: string, body: Record<string, any>): Promise<any> {
    const key = `${service.name}/${method}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    return this.api.call(service, method, body);
  }

  private label(prefix: string): string {
    return `${prefix}-${++this.n}-${this.rng.int(0, 9999)}`;
  }

  private price(): string {
    return String(this.rng.int(1, 500) * 1000);
  }

  /** One write of `kind` (or of what it needs first: a variant needs a product...). Returns false when the API refused it. */
  async write(kind: Kind): Promise<boolean> {
    try {
      await this.writeKind(kind);
      return true;
    } catch (err) {
      if (err instanceof RpcError && err.code === "failed_precondition") {
        this.refused++;
        return false;
      }
      throw err;
    }
  }

  private live<T>(m: Map<string, T> | Set<string>): string[] {
    return [...m.keys()];
  }

  private async writeKind(kind: Kind): Promise<void> {
    const r = this.rng;
    switch (kind) {
      case "product": {
        const ids = this.live(this.products);
        const op = ids.length ? r.weighted({ create: 30, update: 40, images: 15, delete: ids.length > 3 ? 10 : 0 }) : "create";
        if (op === "create") {
          await this.createProduct();
          return;
        }
        const id = r.pick(ids);
        if (op === "update") {
          const body: Record<string, any> = { id };
          for (const f of r.shuffle(["name", "note", "retail_price", "list_price"]).slice(0, r.int(1, 2))) {
            body[f] = f.endsWith("price") ? this.price() : this.label(f);
          }
          await this.call(Product, "UpdateProduct", body);
        } else if (op === "images") {
          await this.call(Product, "UpdateProductImages", { id, image_urls: [`https://img.example.com/${this.label("i")}.jpg`] });
        } else {
          await this.call(Product, "DeleteProduct", { id });
          for (const v of this.products.get(id)!) this.variants.delete(v);
          this.products.delete(id);
        }
        return;
      }
      case "variant": {
        const ids = this.live(this.variants);
        const op = ids.length ? r.weighted({ create: 35, update: 35, attributes: 18, delete: ids.length > 4 ? 8 : 0 }) : "create";
        if (op === "create") return this.createVariant();
        const id = r.pick(ids);
        if (op === "update") {
          const f = r.pick(["name", "retail_price", "cost_price", "note"]);
          await this.call(Variant, "UpdateVariant", { id, [f]: f.endsWith("price") ? this.price() : this.label(f) });
        } else if (op === "attributes") {
          await this.call(Variant, "UpdateVariantAttributes", { id, attributes: [{ name: "size", value: r.pick(["S", "M", "L", "XL"]) }, { name: "lot", value: this.label("lot") }] });
        } else {
          await this.call(Variant, "DeleteVariant", { id });
          this.products.get(this.variants.get(id)!.product)?.delete(id);
          this.variants.delete(id);
        }
        return;
      }
      case "inventory_level": {
        const ids = this.live(this.variants);
        if (!ids.length) return this.createVariant();
        const id = r.pick(ids);
        const v = this.variants.get(id)!;
        if (r.chance(0.5)) {
          const qty = r.int(20, 500);
          await this.call(Inventory, "SetInventory", { counts: [{ variant_id: id, available_quantity: qty }] });
          v.available = qty;
        } else {
          const delta = r.int(-Math.min(10, v.available), 50) || 1;
          const res = await this.call(Inventory, "AdjustInventory", { adjustments: [{ variant_id: id, available_delta: delta }] });
          v.available = res.inventory_levels[0].available_quantity;
        }
        return;
      }
      case "customer": {
        const ids = this.live(this.customers);
        const op = ids.length ? r.weighted({ create: 40, update: 50, delete: ids.length > 3 ? 8 : 0 }) : "create";
        if (op === "create") {
          const c = await this.call(Customer, "CreateCustomer", { full_name: this.label("Customer"), phone: `09${r.int(10000000, 99999999)}`, email: `${this.label("c")}@example.com` });
          this.customers.add(c.id);
        } else if (op === "update") {
          const f = r.pick(["full_name", "note", "phone", "status"]);
          const value = f === "phone" ? `09${r.int(10000000, 99999999)}` : f === "status" ? r.pick(["active", "inactive"]) : this.label(f);
          await this.call(Customer, "UpdateCustomer", { id: r.pick(ids), [f]: value });
        } else {
          const id = r.pick(ids);
          await this.call(Customer, "DeleteCustomer", { id });
          this.customers.delete(id);
        }
        return;
      }
      case "order":
        return this.orderWrite();
      case "fulfillment":
        return this.fulfillmentWrite();
    }
  }

  async createProduct(): Promise<string> {
    const p = await this.call(Product, "CreateProduct", { name: this.label("Product"), retail_price: this.price(), list_price: this.price(), note: this.label("n") });
    this.products.set(p.id, new Set());
    return p.id;
  }

  async createVariant(): Promise<void> {
    const products = this.live(this.products);
    const productId = products.length && this.rng.chance(0.8) ? this.rng.pick(products) : await this.createProduct();
    const v = await this.call(Variant, "CreateVariant", { product_id: productId, name: this.label("Variant"), retail_price: this.price(), list_price: this.price() });
    this.products.get(productId)!.add(v.id);
    this.variants.set(v.id, { product: productId, available: 0 });
  }

  private ordersIn(...statuses: string[]): string[] {
    return [...this.orders].filter(([, o]) => statuses.includes(o.status)).map(([id]) => id);
  }

  private lines(): { body: any[]; stock: Map<string, number> } {
    const r = this.rng;
    const stocked = [...this.variants].filter(([, v]) => v.available >= 3).map(([id]) => id);
    const stock = new Map<string, number>();
    if (stocked.length && r.chance(0.7)) {
      const body = r.shuffle([...stocked]).slice(0, r.int(1, 2)).map((id) => {
        const quantity = r.int(1, 2);
        stock.set(id, quantity);
        return { variant_id: id, quantity };
      });
      return { body, stock };
    }
    return { body: [{ product_name: this.label("Gift"), quantity: r.int(1, 3), retail_price: this.price() }], stock };
  }

  private async orderWrite(): Promise<void> {
    const r = this.rng;
    const created = this.ordersIn("created");
    const shipping = this.shippingOrders();
    const cancellable = [...this.orders].filter(([id, o]) => o.status === "created" || (o.status === "processing" && !shipping.has(id))).map(([id]) => id);
    const deletable = this.ordersIn("created", "cancelled", "completed");
    const op = r.weighted({
      create: 30,
      note: this.orders.size ? 14 : 0,
      lines: created.length ? 5 : 0,
      confirm: created.length ? 26 : 0,
      cancel: cancellable.length ? 6 : 0,
      delete: deletable.length > 2 ? 5 : 0,
    });
    if (op === "create") {
      const { body, stock } = this.lines();
      const customers = this.live(this.customers);
      const req: Record<string, any> = { lines: body, total_fee: String(r.int(0, 30) * 1000), order_note: this.label("note") };
      if (customers.length && r.chance(0.6)) req.customer_id = r.pick(customers);
      const o = await this.call(Order, "CreateOrder", req);
      this.orders.set(o.id, { status: o.status, stock });
      return;
    }
    if (op === "note") {
      const id = r.pick(this.live(this.orders));
      await this.call(Order, "UpdateOrder", { id, order_note: this.label("note") });
      return;
    }
    if (op === "lines") {
      const id = r.pick(created);
      const { body, stock } = this.lines();
      await this.call(Order, "UpdateOrderLines", { id, lines: body });
      this.orders.get(id)!.stock = stock;
      return;
    }
    if (op === "confirm") {
      const id = r.pick(created);
      const o = this.orders.get(id)!;
      const ok = [...o.stock].every(([v, q]) => !this.variants.has(v) || this.variants.get(v)!.available >= q);
      if (!ok) {
        // Restock first, as a shop would.
        for (const [v, q] of o.stock) {
          const level = this.variants.get(v);
          if (level && level.available < q) {
            await this.call(Inventory, "SetInventory", { counts: [{ variant_id: v, available_quantity: q + 100 }] });
            level.available = q + 100;
          }
        }
        return;
      }
      await this.refreshing(id, async () => {
        const res = await this.call(Order, "ConfirmOrder", { id });
        o.status = res.status;
        for (const [v, q] of o.stock) {
          const level = this.variants.get(v);
          if (level) level.available -= q;
        }
      });
      return;
    }
    if (op === "cancel") {
      const id = r.pick(cancellable);
      const o = this.orders.get(id)!;
      const wasProcessing = o.status === "processing";
      await this.refreshing(id, async () => {
        const res = await this.call(Order, "CancelOrder", { id, cancel_reason: this.label("reason") });
        o.status = res.status;
        for (const [fid, f] of this.fulfillments) if (f.orderId === id && !FINAL.has(f.state)) this.fulfillments.get(fid)!.state = "cancelled";
        if (wasProcessing) {
          for (const [v, q] of o.stock) {
            const level = this.variants.get(v);
            if (level) level.available += q;
          }
        }
      });
      return;
    }
    const id = r.pick(deletable);
    await this.call(Order, "DeleteOrder", { id });
    this.orders.delete(id);
  }

  /** Orders with a fulfillment that has left "created" and is not finished (they cannot be cancelled). */
  private shippingOrders(): Set<string> {
    return new Set([...this.fulfillments.values()].filter((f) => !FINAL.has(f.state) && f.state !== "created").map((f) => f.orderId));
  }

  /** Runs a write on an order; if the API refuses it, re-reads the order's status and refuses on. */
  private async refreshing(orderId: string, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (err instanceof RpcError && err.code === "failed_precondition") {
        const o = await this.api.call(Order, "GetOrder", { id: orderId });
        this.orders.get(orderId)!.status = o.status;
      }
      throw err;
    }
  }

  private async fulfillmentWrite(): Promise<void> {
    const r = this.rng;
    const open = [...this.fulfillments].filter(([, f]) => !FINAL.has(f.state)).map(([id]) => id);
    const finished = [...this.fulfillments].filter(([, f]) => FINAL.has(f.state)).map(([id]) => id);
    const busy = new Set([...this.fulfillments.values()].filter((f) => !FINAL.has(f.state)).map((f) => f.orderId));
    const fulfillable = this.ordersIn("processing").filter((id) => !busy.has(id));
    const weights = {
      create: fulfillable.length ? 30 : 0,
      advance: open.length ? 45 : 0,
      update: this.fulfillments.size ? 10 : 0,
      cancel: open.filter((id) => ["created", "picking", "holding"].includes(this.fulfillments.get(id)!.state)).length ? 5 : 0,
      delete: finished.length > 2 ? 6 : 0,
    };
    // Nothing to fulfil yet: the shop takes an order instead.
    if (!Object.values(weights).some((w) => w > 0)) return this.orderWrite();
    const op = r.weighted(weights);
    if (op === "create") {
      const orderId = r.pick(fulfillable);
      const f = await this.call(Fulfillment, "CreateFulfillment", { order_id: orderId, carrier: r.pick(["ghn", "ghtk", "vtp"]), shipping_code: this.label("SC"), cod_amount: this.price() });
      this.fulfillments.set(f.id, { orderId, state: f.shipping_state });
      return;
    }
    if (op === "advance") {
      const id = r.pick(open);
      const f = this.fulfillments.get(id)!;
      const to = r.pick(NEXT_STATE[f.state] ?? ["delivered"]);
      const res = await this.call(Fulfillment, "UpdateShippingState", { id, shipping_state: to });
      f.state = res.shipping_state;
      const o = this.orders.get(f.orderId);
      if (o && to === "delivered") o.status = "completed";
      if (o && to === "returned") {
        o.status = "cancelled";
        for (const [v, q] of o.stock) {
          const level = this.variants.get(v);
          if (level) level.available += q;
        }
      }
      return;
    }
    if (op === "update") {
      const id = r.pick(this.live(this.fulfillments));
      await this.call(Fulfillment, "UpdateFulfillment", { id, carrier: r.pick(["ghn", "ghtk", "vtp", "jt"]), shipping_note: this.label("note") });
      return;
    }
    if (op === "cancel") {
      const id = r.pick(open.filter((x) => ["created", "picking", "holding"].includes(this.fulfillments.get(x)!.state)));
      const res = await this.call(Fulfillment, "CancelFulfillment", { id, cancel_reason: this.label("reason") });
      this.fulfillments.get(id)!.state = res.shipping_state;
      return;
    }
    const id = r.pick(finished);
    await this.call(Fulfillment, "DeleteFulfillment", { id });
    this.fulfillments.delete(id);
  }
}
