import { create } from "@bufbuild/protobuf";
import { AttributeSchema, ShopVariantSchema } from "../../gen/shop/variant_pb.ts";
import { ts } from "../api/convert.ts";
import { type BaseRow, defineEntity } from "./model.ts";

export interface VariantRow extends BaseRow {
  id: string;
  product_id: string;
  external_id: string;
  code: string;
  name: string;
  attributes: Array<{ name: string; value: string }>;
  image_urls: string[];
  note: string;
  status: string;
  list_price: string;
  retail_price: string;
  cost_price: string;
}

export const variantEntity = defineEntity<VariantRow, typeof ShopVariantSchema>({
  name: "variant",
  table: "variants",
  key: "id",
  columns: ["id", "product_id", "external_id", "code", "name", "attributes", "image_urls", "note", "status", "list_price", "retail_price", "cost_price", "created_at", "updated_at", "deleted_at"],
  jsonColumns: new Set(["attributes"]),
  schema: ShopVariantSchema,
  toMessage: (r) =>
    create(ShopVariantSchema, {
      id: r.id,
      productId: r.product_id,
      externalId: r.external_id,
      code: r.code,
      name: r.name,
      attributes: r.attributes.map((a) => create(AttributeSchema, a)),
      imageUrls: r.image_urls,
      note: r.note,
      status: r.status,
      listPrice: BigInt(r.list_price),
      retailPrice: BigInt(r.retail_price),
      costPrice: BigInt(r.cost_price),
      createdAt: ts(r.created_at),
      updatedAt: ts(r.updated_at),
      deleted: r.deleted_at !== null,
    }),
});
