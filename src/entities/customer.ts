import { create } from "@bufbuild/protobuf";
import { ShopCustomerSchema } from "../../gen/shop/customer_pb.ts";
import { ts } from "../api/convert.ts";
import { type BaseRow, defineEntity } from "./model.ts";

export interface CustomerRow extends BaseRow {
  id: string;
  external_id: string;
  code: string;
  full_name: string;
  phone: string;
  email: string;
  gender: string;
  birthday: string;
  note: string;
  status: string;
}

export const customerEntity = defineEntity<CustomerRow, typeof ShopCustomerSchema>({
  name: "customer",
  table: "customers",
  key: "id",
  columns: ["id", "external_id", "code", "full_name", "phone", "email", "gender", "birthday", "note", "status", "created_at", "updated_at", "deleted_at"],
  jsonColumns: new Set(),
  schema: ShopCustomerSchema,
  toMessage: (r) =>
    create(ShopCustomerSchema, {
      id: r.id,
      externalId: r.external_id,
      code: r.code,
      fullName: r.full_name,
      phone: r.phone,
      email: r.email,
      gender: r.gender,
      birthday: r.birthday,
      note: r.note,
      status: r.status,
      createdAt: ts(r.created_at),
      updatedAt: ts(r.updated_at),
      deleted: r.deleted_at !== null,
    }),
});
