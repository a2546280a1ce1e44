import { create } from "@bufbuild/protobuf";
import { AddressSchema } from "../../gen/shop/common_pb.ts";
import { OrderLineSchema, ShopOrderSchema } from "../../gen/shop/order_pb.ts";
import { ts } from "../api/convert.ts";
import { type BaseRow, defineEntity } from "./model.ts";

/** An address as stored (jsonb): the API's snake_case fields. */
export interface AddressJson {
  full_name: string;
  phone: string;
  email: string;
  address1: string;
  address2: string;
  ward: string;
  district: string;
  province: string;
  country: string;
  zip: string;
}

/** An order line as stored (jsonb); ids and money as strings (int64). */
export interface OrderLineJson {
  variant_id: string;
  product_id: string;
  product_name: string;
  quantity: number;
  list_price: string;
  retail_price: string;
  payment_price: string;
}

export interface OrderRow extends BaseRow {
  id: string;
  code: string;
  external_id: string;
  customer_id: string;
  customer_address: AddressJson | null;
  shipping_address: AddressJson | null;
  lines: OrderLineJson[];
  status: string;
  confirm_status: string;
  fulfillment_shipping_status: string;
  basket_value: string;
  total_discount: string;
  total_fee: string;
  total_amount: string;
  order_note: string;
  confirmed_at: Date | null;
  cancelled_at: Date | null;
  cancel_reason: string;
}

const address = (a: AddressJson | null) =>
  a
    ? create(AddressSchema, {
        fullName: a.full_name,
        phone: a.phone,
        email: a.email,
        address1: a.address1,
        address2: a.address2,
        ward: a.ward,
        district: a.district,
        province: a.province,
        country: a.country,
        zip: a.zip,
      })
    : undefined;

export const orderEntity = defineEntity<OrderRow, typeof ShopOrderSchema>({
  name: "order",
  table: "orders",
  key: "id",
  columns: [
    "id", "code", "external_id", "customer_id", "customer_address", "shipping_address", "lines", "status", "confirm_status",
    "fulfillment_shipping_status", "basket_value", "total_discount", "total_fee", "total_amount", "order_note",
    "created_at", "updated_at", "confirmed_at", "cancelled_at", "cancel_reason", "deleted_at",
  ],
  jsonColumns: new Set(["customer_address", "shipping_address", "lines"]),
  schema: ShopOrderSchema,
  toMessage: (r) =>
    create(ShopOrderSchema, {
      id: r.id,
      code: r.code,
      externalId: r.external_id,
      customerId: r.customer_id,
      customerAddress: address(r.customer_address),
      shippingAddress: address(r.shipping_address),
      lines: r.lines.map((l) =>
        create(OrderLineSchema, {
          variantId: l.variant_id,
          productId: l.product_id,
          productName: l.product_name,
          quantity: l.quantity,
          listPrice: BigInt(l.list_price),
          retailPrice: BigInt(l.retail_price),
          paymentPrice: BigInt(l.payment_price),
        }),
      ),
      status: r.status,
      confirmStatus: r.confirm_status,
      fulfillmentShippingStatus: r.fulfillment_shipping_status,
      basketValue: BigInt(r.basket_value),
      totalDiscount: BigInt(r.total_discount),
      totalFee: BigInt(r.total_fee),
      totalAmount: BigInt(r.total_amount),
      orderNote: r.order_note,
      createdAt: ts(r.created_at),
      updatedAt: ts(r.updated_at),
      confirmedAt: ts(r.confirmed_at),
      cancelledAt: ts(r.cancelled_at),
      cancelReason: r.cancel_reason,
      deleted: r.deleted_at !== null,
    }),
});
