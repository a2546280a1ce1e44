/**
 * What the generic write path, the change log and the List* RPCs need to know about an entity:
 * its table, its columns, and how a row becomes the API message (which is also the change's
 * `latest`). Table and column names here are code, never client input.
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";

export const ENTITY_NAMES = ["product", "variant", "order", "fulfillment", "customer", "inventory_level"] as const;
export type EntityName = (typeof ENTITY_NAMES)[number];

/** Columns every entity table has besides its own. */
export interface BaseRow {
  shop_id: string;
  created_at: Date;
  updated_at: Date;
  deleted_at: Date | null;
  feed_xid: string;
  feed_seq: string;
}

export interface EntityDef<Row extends BaseRow = any, Schema extends DescMessage = DescMessage> {
  name: EntityName;
  table: string;
  /** Primary key column besides shop_id. */
  key: string;
  /** Columns written on insert (shop_id and feed_* are added by the SQL builder). */
  columns: readonly (keyof Row & string)[];
  /** Columns holding objects or arrays of objects, sent as JSON text. */
  jsonColumns: ReadonlySet<string>;
  schema: Schema;
  toMessage(row: Row): MessageShape<Schema>;
}

export function defineEntity<Row extends BaseRow, Schema extends DescMessage>(def: EntityDef<Row, Schema>): EntityDef<Row, Schema> {
  return def;
}

/**
 * Advisory-lock key of one entity. Ids come from one id space (next_id()), so an id alone is
 * unique across tables; an inventory level shares its variant's id and takes the negative.
 */
export function lockKey(entity: EntityName, id: string): bigint {
  return entity === "inventory_level" ? -BigInt(id) : BigInt(id);
}
