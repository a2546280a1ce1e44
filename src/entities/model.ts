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
 * Advisory-lock key of one entity of a shop. Ids come from one id space (next_id()), and the shop
 * is mixed in, so one shop naming another's ids never waits on that shop's locks; an inventory
 * level shares its variant's id and takes the negative. Keys of different entities may collide
 * (64 bits): that only makes two writers wait for each other, never breaks the ordering.
 */
export function lockKey(shopId: string, entity: EntityName, id: string): bigint {
  const key = BigInt.asIntN(64, BigInt(id) ^ BigInt.asUintN(64, BigInt(shopId) * 0x9e3779b97f4a7c15n));
  return entity === "inventory_level" ? BigInt.asIntN(64, -key) : key;
}
