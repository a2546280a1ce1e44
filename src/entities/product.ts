import { create } from "@bufbuild/protobuf";
import { ShopProductSchema } from "../../gen/shop/product_pb.ts";
import { ts } from "../api/convert.ts";
import { type BaseRow, defineEntity } from "./model.ts";

export interface ProductRow extends BaseRow {
  id: string;
  external_id: string;
  external_code: string;
  name: string;
  description: string;
  short_desc: string;
  image_urls: string[];
  note: string;
  status: string;
  list_price: string;
  retail_price: string;
}

export const productEntity = defineEntity<ProductRow, typeof ShopProductSchema>({
  name: "product",
  table: "products",
  key: "id",
  columns: ["id", "external_id", "external_code", "name", "description", "short_desc", "image_urls", "note", "status", "list_price", "retail_price", "created_at", "updated_at", "deleted_at"],
  jsonColumns: new Set(),
  schema: ShopProductSchema,
  toMessage: (r) =>
    create(ShopProductSchema, {
      id: r.id,
      externalId: r.external_id,
      externalCode: r.external_code,
      name: r.name,
      description: r.description,
      shortDesc: r.short_desc,
      imageUrls: r.image_urls,
      note: r.note,
      status: r.status,
      listPrice: BigInt(r.list_price),
      retailPrice: BigInt(r.retail_price),
      createdAt: ts(r.created_at),
      updatedAt: ts(r.updated_at),
      deleted: r.deleted_at !== null,
    }),
});
