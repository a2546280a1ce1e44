import { create } from "@bufbuild/protobuf";
import { ShopFulfillmentSchema } from "../../gen/shop/fulfillment_pb.ts";
import { ts } from "../api/convert.ts";
import { type BaseRow, defineEntity } from "./model.ts";

export interface FulfillmentRow extends BaseRow {
  id: string;
  order_id: string;
  external_id: string;
  carrier: string;
  shipping_code: string;
  shipping_state: string;
  cod_amount: string;
  shipping_fee: string;
  shipping_note: string;
  delivered_at: Date | null;
  cancelled_at: Date | null;
  cancel_reason: string;
}

export const fulfillmentEntity = defineEntity<FulfillmentRow, typeof ShopFulfillmentSchema>({
  name: "fulfillment",
  table: "fulfillments",
  key: "id",
  columns: [
    "id", "order_id", "external_id", "carrier", "shipping_code", "shipping_state", "cod_amount", "shipping_fee", "shipping_note",
    "created_at", "updated_at", "delivered_at", "cancelled_at", "cancel_reason", "deleted_at",
  ],
  jsonColumns: new Set(),
  schema: ShopFulfillmentSchema,
  toMessage: (r) =>
    create(ShopFulfillmentSchema, {
      id: r.id,
      orderId: r.order_id,
      externalId: r.external_id,
      carrier: r.carrier,
      shippingCode: r.shipping_code,
      shippingState: r.shipping_state,
      codAmount: BigInt(r.cod_amount),
      shippingFee: BigInt(r.shipping_fee),
      shippingNote: r.shipping_note,
      createdAt: ts(r.created_at),
      updatedAt: ts(r.updated_at),
      deliveredAt: ts(r.delivered_at),
      cancelledAt: ts(r.cancelled_at),
      cancelReason: r.cancel_reason,
      deleted: r.deleted_at !== null,
    }),
});
