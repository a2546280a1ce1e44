/**
 * shop.Order. Confirming reserves the lines' stock, cancelling releases it; an order with a
 * fulfillment past "created" must have that fulfillment cancelled first.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { Address } from "../../gen/shop/common_pb.ts";
import type { Order, OrderLine } from "../../gen/shop/order_pb.ts";
import type { AppContext } from "../context.ts";
import { selectLiveBy, selectOne } from "../db/sql/entities.ts";
import { customerEntity } from "../entities/customer.ts";
import { fulfillmentEntity as F, type FulfillmentRow } from "../entities/fulfillment.ts";
import { type AddressJson, orderEntity as O, type OrderLineJson, type OrderRow } from "../entities/order.ts";
import { productEntity, type ProductRow } from "../entities/product.ts";
import { variantEntity, type VariantRow } from "../entities/variant.ts";
import { moveStock, stockLocks } from "../store/stock.ts";
import { createOne, updateOne, write, type Writer } from "../store/write.ts";
import { principal } from "./auth.ts";
import { failedPrecondition, invalidArgument } from "./errors.ts";
import { live, readLive, removed, removeOne } from "./entity-rpc.ts";
import { idsFilter, listPage, valuesFilter , readerOf } from "./paging.ts";
import { ifSet, MONEY_MAX, money, optionalId, patchOf, quantity, requireId, text } from "./validate.ts";

export const ORDER_STATUSES = ["created", "processing", "completed", "cancelled"] as const;
/** Fulfillment states in which the order's stock sits in `picked`. */
export const PICKED_STATES = ["picking", "holding", "delivering", "undeliverable", "returning"];
export const FINAL_STATES = ["delivered", "returned", "cancelled"];

function address(field: string, a: Address | undefined): AddressJson | null {
  if (!a) return null;
  const t = (name: keyof Address & string, snake: string, max: number) => text(`${field}.${snake}`, a[name] as string, max);
  return {
    full_name: t("fullName", "full_name", 200),
    phone: t("phone", "phone", 30),
    email: t("email", "email", 320),
    address1: t("address1", "address1", 500),
    address2: t("address2", "address2", 500),
    ward: t("ward", "ward", 200),
    district: t("district", "district", 200),
    province: t("province", "province", 200),
    country: t("country", "country", 100),
    zip: t("zip", "zip", 20),
  };
}

/** Validates lines and fills product ids, names and prices from the shop's variants. */
async function lines(ctx: AppContext, shopId: string, input: OrderLine[]): Promise<OrderLineJson[]> {
  if (input.length < 1) throw invalidArgument("lines", "at least one line is required");
  if (input.length > 200) throw invalidArgument("lines", `at most 200 lines, got ${input.length}`);
  const ids = input.map((l, i) => optionalId(`lines[${i}].variant_id`, l.variantId));
  const wanted = [...new Set(ids.filter((id) => id !== "0"))];
  const { rows: variants } = await ctx.pool.query<VariantRow>(selectLiveBy(variantEntity, shopId, "id", wanted));
  // Free-form lines may name a product: it must be one of this shop's.
  const named = input.map((l, i) => (ids[i] === "0" ? optionalId(`lines[${i}].product_id`, l.productId) : "0"));
  const productIds = new Set([...variants.map((v) => v.product_id), ...named.filter((id) => id !== "0")]);
  const { rows: products } = await ctx.pool.query<ProductRow>(selectLiveBy(productEntity, shopId, "id", [...productIds]));
  return input.map((l, i) => {
    const f = (name: string) => `lines[${i}].${name}`;
    const qty = quantity(f("quantity"), l.quantity, 1);
    if (ids[i] === "0") {
      const retail = money(f("retail_price"), l.retailPrice);
      if (named[i] !== "0" && !products.some((p) => p.id === named[i])) throw invalidArgument(f("product_id"), `product ${named[i]} not found`);
      return {
        variant_id: "0",
        product_id: named[i]!,
        product_name: text(f("product_name"), l.productName, 500, true),
        quantity: qty,
        list_price: money(f("list_price"), l.listPrice),
        retail_price: retail,
        payment_price: l.paymentPrice ? money(f("payment_price"), l.paymentPrice) : retail,
      };
    }
    const v = variants.find((x) => x.id === ids[i]);
    if (!v) throw invalidArgument(f("variant_id"), `variant ${ids[i]} not found`);
    const p = products.find((x) => x.id === v.product_id);
    const retail = l.retailPrice ? money(f("retail_price"), l.retailPrice) : v.retail_price;
    return {
      variant_id: v.id,
      product_id: v.product_id,
      product_name: text(f("product_name"), l.productName, 500) || [p?.name, v.name].filter(Boolean).join(" - "),
      quantity: qty,
      list_price: l.listPrice ? money(f("list_price"), l.listPrice) : v.list_price,
      retail_price: retail,
      payment_price: l.paymentPrice ? money(f("payment_price"), l.paymentPrice) : retail,
    };
  });
}

/** basket_value and total_amount from lines, discount and fee. */
function totals(ls: OrderLineJson[], discount: string, fee: string) {
  const basket = ls.reduce((s, l) => s + BigInt(l.retail_price) * BigInt(l.quantity), 0n);
  if (basket > MONEY_MAX) throw invalidArgument("lines", `basket_value (retail_price x quantity over the lines) would be ${basket}, more than ${MONEY_MAX}`);
  const total = basket - BigInt(discount) + BigInt(fee);
  if (total > MONEY_MAX) throw invalidArgument("total_fee", `total_amount would be ${total}, more than ${MONEY_MAX}`);
  if (total < 0n) throw invalidArgument("total_discount", `${discount} is more than basket_value + total_fee (${basket + BigInt(fee)})`);
  return { basket_value: basket.toString(), total_amount: total.toString() };
}

async function customerRef(ctx: AppContext, shopId: string, id: string): Promise<string> {
  const cid = optionalId("customer_id", id);
  if (cid !== "0") await readLive(ctx, customerEntity, shopId, cid, "customer_id");
  return cid;
}

/** Runs `fn` holding the order's lock and its lines' stock locks; the order is re-read under them. */
async function withOrder<T>(ctx: AppContext, shopId: string, id: string, fn: (w: Writer, order: OrderRow) => Promise<T>): Promise<T> {
  const guess = (await ctx.pool.query<OrderRow>(selectOne(O, shopId, id))).rows[0];
  return write(ctx, shopId, [["order", id], ...stockLocks(guess?.lines ?? [])], async (w) => {
    const order = live(await w.get(O, id), O, id);
    await w.lock(stockLocks(order.lines)); // lines changed since the guess: lock the rest
    return fn(w, order);
  });
}

/** The order's fulfillments that are not finished. */
export async function activeFulfillments(w: Writer, orderId: string): Promise<FulfillmentRow[]> {
  const rows = await w.query<FulfillmentRow>(selectLiveBy(F, w.shopId, "order_id", [orderId]));
  return rows.filter((f) => !FINAL_STATES.includes(f.shipping_state));
}

export function orderService(ctx: AppContext): ServiceImpl<typeof Order> {
  return {
    async createOrder(req, hc) {
      const shopId = principal(hc).shopId;
      const ls = await lines(ctx, shopId, req.lines);
      const discount = money("total_discount", req.totalDiscount);
      const fee = money("total_fee", req.totalFee);
      const id = await ctx.ids.next();
      const data = {
        id,
        code: text("code", req.code, 50) || `SO${BigInt(id).toString(36).toUpperCase()}`,
        external_id: text("external_id", req.externalId, 100),
        customer_id: await customerRef(ctx, shopId, req.customerId),
        customer_address: address("customer_address", req.customerAddress),
        shipping_address: address("shipping_address", req.shippingAddress),
        lines: ls,
        status: "created",
        confirm_status: "pending",
        fulfillment_shipping_status: "default",
        ...totals(ls, discount, fee),
        total_discount: discount,
        total_fee: fee,
        order_note: text("order_note", req.orderNote, 2000),
        confirmed_at: null,
        cancelled_at: null,
        cancel_reason: "",
      };
      return O.toMessage(await createOne(ctx, shopId, O, data));
    },

    async getOrder(req, hc) {
      return O.toMessage(await readLive(ctx, O, principal(hc).shopId, requireId("id", req.id)));
    },

    async updateOrder(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const patch = patchOf<Partial<OrderRow>>({
        external_id: ifSet(req.externalId, (v) => text("external_id", v, 100)),
        customer_id: req.customerId === undefined ? undefined : await customerRef(ctx, shopId, req.customerId),
        customer_address: req.customerAddress ? address("customer_address", req.customerAddress) : undefined,
        shipping_address: req.shippingAddress ? address("shipping_address", req.shippingAddress) : undefined,
        total_discount: ifSet(req.totalDiscount, (v) => money("total_discount", v)),
        total_fee: ifSet(req.totalFee, (v) => money("total_fee", v)),
        order_note: ifSet(req.orderNote, (v) => text("order_note", v, 2000)),
      });
      const row = await updateOne(ctx, shopId, O, id, (row) => {
        const old = live(row, O, id);
        if ((patch.total_discount ?? patch.total_fee) === undefined) return patch;
        if (old.status !== "created") throw failedPrecondition(`order ${id} is ${old.status}: amounts can change only before it is confirmed`);
        return { ...patch, ...totals(old.lines, patch.total_discount ?? old.total_discount, patch.total_fee ?? old.total_fee) };
      });
      return O.toMessage(row);
    },

    async updateOrderLines(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const ls = await lines(ctx, shopId, req.lines);
      const row = await updateOne(ctx, shopId, O, id, (row) => {
        const old = live(row, O, id);
        if (old.status !== "created") throw failedPrecondition(`order ${id} is ${old.status}: lines can change only before it is confirmed`);
        return { lines: ls, ...totals(ls, old.total_discount, old.total_fee) };
      });
      return O.toMessage(row);
    },

    async confirmOrder(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const row = await withOrder(ctx, shopId, id, async (w, order) => {
        if (order.status !== "created") throw failedPrecondition(`order ${id} is ${order.status}: only a created order can be confirmed`);
        await moveStock(w, order.lines, "available_quantity", "reserved_quantity");
        return w.update(O, order, { status: "processing", confirm_status: "confirmed", confirmed_at: w.now });
      });
      return O.toMessage(row);
    },

    async cancelOrder(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const reason = text("cancel_reason", req.cancelReason, 500, true);
      const row = await withOrder(ctx, shopId, id, async (w, order) => {
        if (order.status === "cancelled" || order.status === "completed") throw failedPrecondition(`order ${id} is ${order.status} and cannot be cancelled`);
        if (order.status === "processing") {
          const active = await activeFulfillments(w, id);
          const shipping = active.find((f) => f.shipping_state !== "created");
          if (shipping) throw failedPrecondition(`order ${id} has fulfillment ${shipping.id} in state ${shipping.shipping_state}: cancel that fulfillment first`);
          await w.lock(active.map((f) => ["fulfillment", f.id] as ["fulfillment", string]));
          for (const f of active) {
            const fresh = live(await w.get(F, f.id), F, f.id);
            await w.update(F, fresh, { shipping_state: "cancelled", cancelled_at: w.now, cancel_reason: reason });
          }
          await moveStock(w, order.lines, "reserved_quantity", "available_quantity");
        }
        return w.update(O, order, {
          status: "cancelled",
          confirm_status: "cancelled",
          cancelled_at: w.now,
          cancel_reason: reason,
          ...(order.fulfillment_shipping_status === "created" ? { fulfillment_shipping_status: "cancelled" } : {}),
        });
      });
      return O.toMessage(row);
    },

    async deleteOrder(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const n = await removeOne(ctx, shopId, O, id, (old) => {
        if (old.status === "processing") throw failedPrecondition(`order ${id} is processing: cancel it before deleting it`);
      });
      return removed(n);
    },

    async listOrders(req, hc) {
      const shopId = principal(hc).shopId;
      const filters = [
        ...idsFilter("id", "filter.id", req.filter?.id ?? []),
        ...idsFilter("customer_id", "filter.customer_id", req.filter?.customerId ?? []),
        ...valuesFilter("status", "filter.status", req.filter?.status ?? [], ORDER_STATUSES),
      ];
      const { rows, paging } = await listPage(ctx, readerOf(ctx, hc), shopId, O, "orders", req.paging, req.includeDeleted, filters);
      return { orders: rows.map(O.toMessage), paging };
    },
  };
}
