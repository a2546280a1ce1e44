/**
 * shop.Fulfillment: shipments of a confirmed order. Shipping states move stock (picking takes
 * the order's reserved stock to picked; delivered ships it; returned puts it back on sale) and
 * the order follows (fulfillment_shipping_status; delivered completes it, returned cancels it).
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { Fulfillment } from "../../gen/shop/fulfillment_pb.ts";
import type { AppContext } from "../context.ts";
import { selectOne } from "../db/sql/entities.ts";
import { fulfillmentEntity as F, type FulfillmentRow } from "../entities/fulfillment.ts";
import { orderEntity as O, type OrderRow } from "../entities/order.ts";
import { moveStock, stockLocks } from "../store/stock.ts";
import { updateOne, write, type Writer } from "../store/write.ts";
import { principal } from "./auth.ts";
import { failedPrecondition } from "./errors.ts";
import { live, readLive, removed, removeOne } from "./entity-rpc.ts";
import { activeFulfillments, FINAL_STATES } from "./orders.ts";
import { idsFilter, listPage, readerOf } from "./paging.ts";
import { ifSet, money, oneOf, patchOf, requireId, text } from "./validate.ts";

export const SHIPPING_STATES = ["created", "picking", "holding", "delivering", "delivered", "undeliverable", "returning", "returned", "cancelled"] as const;

const TRANSITIONS: Record<string, string[]> = {
  created: ["picking", "cancelled"],
  picking: ["holding", "delivering", "cancelled"],
  holding: ["delivering", "cancelled"],
  delivering: ["delivered", "undeliverable"],
  undeliverable: ["delivering", "returning"],
  returning: ["returned"],
  delivered: [],
  returned: [],
  cancelled: [],
};

type Bucket = "available_quantity" | "reserved_quantity" | "picked_quantity";
/** Stock move of a transition, [from bucket, to bucket] (null: stock leaves or arrives). */
function stockMove(from: string, to: string): [Bucket | null, Bucket | null] | undefined {
  if (from === "created" && to === "picking") return ["reserved_quantity", "picked_quantity"];
  if (to === "cancelled" && from !== "created") return ["picked_quantity", "reserved_quantity"];
  if (to === "delivered") return ["picked_quantity", null];
  if (to === "returned") return ["picked_quantity", "available_quantity"];
  return undefined;
}

/** Moves a fulfillment to `to` with its stock and order effects; the writer holds every lock. */
async function transition(w: Writer, f: FulfillmentRow, order: OrderRow, to: string, reason: string): Promise<FulfillmentRow> {
  const from = f.shipping_state;
  if (from === to) return f;
  if (!TRANSITIONS[from]!.includes(to)) {
    throw failedPrecondition(`shipping_state: fulfillment ${f.id} cannot go from "${from}" to "${to}" (allowed: ${TRANSITIONS[from]!.join(", ") || "none, it is final"})`);
  }
  const move = stockMove(from, to);
  if (move) await moveStock(w, order.lines, move[0], move[1]);
  const orderPatch: Partial<OrderRow> = { fulfillment_shipping_status: to };
  if (to === "delivered") orderPatch.status = "completed";
  if (to === "returned") Object.assign(orderPatch, { status: "cancelled", cancelled_at: w.now, cancel_reason: "fulfillment returned" });
  await w.update(O, order, orderPatch);
  return w.update(F, f, {
    shipping_state: to,
    ...(to === "delivered" ? { delivered_at: w.now } : {}),
    ...(to === "cancelled" ? { cancelled_at: w.now, cancel_reason: reason } : {}),
  });
}

/** Runs `fn` holding the fulfillment's, its order's and the order's stock locks. */
async function withFulfillment<T>(ctx: AppContext, shopId: string, id: string, fn: (w: Writer, f: FulfillmentRow, o: OrderRow) => Promise<T>): Promise<T> {
  const f0 = live((await ctx.pool.query<FulfillmentRow>(selectOne(F, shopId, id))).rows[0], F, id);
  const o0 = (await ctx.pool.query<OrderRow>(selectOne(O, shopId, f0.order_id))).rows[0];
  return write(ctx, shopId, [["fulfillment", id], ["order", f0.order_id], ...stockLocks(o0?.lines ?? [])], async (w) => {
    const f = live(await w.get(F, id), F, id);
    const o = (await w.get(O, f.order_id))!;
    await w.lock(stockLocks(o.lines));
    return fn(w, f, o);
  });
}

export function fulfillmentService(ctx: AppContext): ServiceImpl<typeof Fulfillment> {
  return {
    async createFulfillment(req, hc) {
      const shopId = principal(hc).shopId;
      const orderId = requireId("order_id", req.orderId);
      const data = {
        order_id: orderId,
        external_id: text("external_id", req.externalId, 100),
        carrier: text("carrier", req.carrier, 100),
        shipping_code: text("shipping_code", req.shippingCode, 100),
        shipping_state: "created",
        cod_amount: money("cod_amount", req.codAmount),
        shipping_fee: money("shipping_fee", req.shippingFee),
        shipping_note: text("shipping_note", req.shippingNote, 2000),
        delivered_at: null,
        cancelled_at: null,
        cancel_reason: "",
      };
      const id = await ctx.ids.next();
      const row = await write(ctx, shopId, [["order", orderId]], async (w) => {
        const order = live(await w.get(O, orderId), O, orderId, "order_id");
        if (order.status !== "processing") throw failedPrecondition(`order_id: order ${orderId} is ${order.status}; only a confirmed (processing) order can be fulfilled`);
        const active = await activeFulfillments(w, orderId);
        if (active.length) throw failedPrecondition(`order_id: order ${orderId} already has fulfillment ${active[0]!.id} in state ${active[0]!.shipping_state}`);
        const f = await w.insert(F, { id, ...data });
        await w.update(O, order, { fulfillment_shipping_status: "created" });
        return f;
      });
      return F.toMessage(row);
    },

    async getFulfillment(req, hc) {
      return F.toMessage(await readLive(ctx, F, principal(hc).shopId, requireId("id", req.id)));
    },

    async updateFulfillment(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const patch = patchOf<Partial<FulfillmentRow>>({
        external_id: ifSet(req.externalId, (v) => text("external_id", v, 100)),
        carrier: ifSet(req.carrier, (v) => text("carrier", v, 100)),
        shipping_code: ifSet(req.shippingCode, (v) => text("shipping_code", v, 100)),
        cod_amount: ifSet(req.codAmount, (v) => money("cod_amount", v)),
        shipping_fee: ifSet(req.shippingFee, (v) => money("shipping_fee", v)),
        shipping_note: ifSet(req.shippingNote, (v) => text("shipping_note", v, 2000)),
      });
      return F.toMessage(await updateOne(ctx, shopId, F, id, (old) => (live(old, F, id), patch)));
    },

    async updateShippingState(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const to = oneOf("shipping_state", req.shippingState, SHIPPING_STATES);
      if (to === "created") throw failedPrecondition(`shipping_state: a fulfillment cannot go back to "created"`);
      const row = await withFulfillment(ctx, shopId, id, (w, f, o) => transition(w, f, o, to, to === "cancelled" ? "cancelled by the shop" : ""));
      return F.toMessage(row);
    },

    async cancelFulfillment(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const reason = text("cancel_reason", req.cancelReason, 500, true);
      const row = await withFulfillment(ctx, shopId, id, (w, f, o) => transition(w, f, o, "cancelled", reason));
      return F.toMessage(row);
    },

    async deleteFulfillment(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const n = await removeOne(ctx, shopId, F, id, (old) => {
        if (!FINAL_STATES.includes(old.shipping_state)) throw failedPrecondition(`fulfillment ${id} is ${old.shipping_state}: cancel it before deleting it`);
      });
      return removed(n);
    },

    async listFulfillments(req, hc) {
      const shopId = principal(hc).shopId;
      const filters = [...idsFilter("id", "filter.id", req.filter?.id ?? []), ...idsFilter("order_id", "filter.order_id", req.filter?.orderId ?? [])];
      const { rows, paging } = await listPage(ctx, readerOf(ctx, hc), shopId, F, "fulfillments", req.paging, req.includeDeleted, filters);
      return { fulfillments: rows.map(F.toMessage), paging };
    },
  };
}
