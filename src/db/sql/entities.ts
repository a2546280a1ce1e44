/**
 * SQL for entity rows and their change records. Table and column names come from the entity
 * definitions in src/entities (code, never client input); every value is a bind parameter.
 */
import type { EntityDef } from "../../entities/model.ts";
import type { Query } from "./query.ts";

export interface ChangeValues {
  entity: string;
  entityId: string;
  changeType: "create" | "update" | "delete";
  time: Date;
  latest: string;
  changed: string | null;
}

/** Entity locks, taken before a write transaction's first write, plus the transaction's now(). */
export const lockEntities = (keys: bigint[]): Query => ({
  // unnest yields the keys in array order, so locks are taken in the (sorted) order given.
  text: "SELECT now() AS now, (SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k) AS locked",
  values: [keys.map(String)],
});

export const selectOne = (def: EntityDef, shopId: string, id: string): Query => ({
  text: `SELECT * FROM ${def.table} WHERE shop_id = $1 AND ${def.key} = $2`,
  values: [shopId, id],
});

const param = (def: EntityDef, column: string, value: unknown) => (def.jsonColumns.has(column) && value !== null ? JSON.stringify(value) : value);

/** The change insert every write shares; takes $1..$7. */
const CHANGE_CTE = `WITH c AS (
  INSERT INTO changes (id, shop_id, entity, entity_id, change_type, time, latest, changed)
  VALUES (nextval('changes_id_seq'), $1, $2, $3, $4, $5, $6, $7)
  RETURNING id, xid)`;

const changeValues = (shopId: string, c: ChangeValues): unknown[] => [shopId, c.entity, c.entityId, c.changeType, c.time, c.latest, c.changed];

/** Inserts the row and its change in one statement; the row takes the change's position. */
export function insertWithChange(def: EntityDef, shopId: string, row: Record<string, unknown>, change: ChangeValues): Query {
  const values = changeValues(shopId, change);
  const placeholders = def.columns.map((col) => {
    values.push(param(def, col, row[col]));
    return `$${values.length}`;
  });
  return {
    text: `${CHANGE_CTE}
INSERT INTO ${def.table} (shop_id, ${def.columns.join(", ")}, feed_xid, feed_seq)
VALUES ($1, ${placeholders.join(", ")}, (SELECT xid FROM c), (SELECT id FROM c))
RETURNING *`,
    values,
  };
}

/** Updates the given columns of one row and records its change in one statement. */
export function updateWithChange(def: EntityDef, shopId: string, id: string, set: Record<string, unknown>, change: ChangeValues): Query {
  const values = changeValues(shopId, change);
  values.push(id);
  const idParam = `$${values.length}`;
  const assignments = Object.entries(set).map(([col, v]) => {
    if (!def.columns.includes(col)) throw new Error(`unknown column ${def.table}.${col}`);
    values.push(param(def, col, v));
    return `${col} = $${values.length}`;
  });
  return {
    text: `${CHANGE_CTE}
UPDATE ${def.table} SET ${assignments.join(", ")}, feed_xid = c.xid, feed_seq = c.id FROM c
WHERE ${def.table}.shop_id = $1 AND ${def.table}.${def.key} = ${idParam}
RETURNING ${def.table}.*`,
    values,
  };
}

/** Live rows of `def` whose `column` is one of `ids` (e.g. a product's variants). */
export const selectLiveBy = (def: EntityDef, shopId: string, column: string, ids: string[]): Query => ({
  text: `SELECT * FROM ${def.table} WHERE shop_id = $1 AND ${column} = ANY($2::bigint[]) AND deleted_at IS NULL ORDER BY ${def.key}`,
  values: [shopId, ids],
});

/** Tombstones past the retention window (see jobs/prune.ts); in batches to keep locks short. */
export const pruneTombstones = (def: EntityDef, before: Date, batch: number): Query => ({
  text: `DELETE FROM ${def.table} WHERE (shop_id, ${def.key}) IN (
           SELECT shop_id, ${def.key} FROM ${def.table} WHERE deleted_at < $1 LIMIT $2)`,
  values: [before, batch],
});
