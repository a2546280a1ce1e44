/**
 * SQL for entity rows and their change records. Table and column names come from the entity
 * definitions in src/entities (code, never client input); every value is a bind parameter.
 */
import type { EntityDef } from "../../entities/model.ts";
import { prepared, type Query } from "./query.ts";
import { CHANGES_CHANNEL } from "./watch.ts";

/** An entity row's columns, listed (prepared statements must not return `*`: see `prepared`). */
const rowColumns = (def: EntityDef, alias = "") => ["shop_id", ...def.columns, "feed_xid", "feed_seq"].map((c) => alias + c).join(", ");

export interface ChangeValues {
  entity: string;
  entityId: string;
  changeType: "create" | "update" | "delete";
  time: Date;
  latest: string;
  changed: string | null;
}

/** Entity locks, taken before a write transaction's first write (sorted: no lock-order deadlocks). */
export const lockEntities = (keys: bigint[]): Query => ({
  // unnest yields the keys in array order, so locks are taken in the order given.
  text: "SELECT count(pg_advisory_xact_lock(k)) AS locked FROM unnest($1::bigint[]) AS k",
  values: [keys.map(String)],
});

export const selectOne = (def: EntityDef, shopId: string, id: string): Query =>
  prepared({
    text: `SELECT ${rowColumns(def)} FROM ${def.table} WHERE shop_id = $1 AND ${def.key} = $2`,
    values: [shopId, id],
  });

/** Rows of `def` by (shop, key), for many lookups at once (group-read: src/store/write.ts). */
export const selectMany = (def: EntityDef, keys: Array<{ shopId: string; id: string }>): Query =>
  prepared({
    text: `SELECT ${rowColumns(def, "t.")} FROM ${def.table} t
             JOIN unnest($1::bigint[], $2::bigint[]) AS k(shop_id, id) ON t.shop_id = k.shop_id AND t.${def.key} = k.id`,
    values: [keys.map((k) => k.shopId), keys.map((k) => k.id)],
  });

/** Live rows of `def` whose `column` is a given id, for many (shop, id) pairs at once. */
export const selectLiveByMany = (def: EntityDef, column: string, keys: Array<{ shopId: string; id: string }>): Query =>
  prepared({
    text: `SELECT ${rowColumns(def, "t.")} FROM ${def.table} t
             JOIN unnest($1::bigint[], $2::bigint[]) AS k(shop_id, id) ON t.shop_id = k.shop_id AND t.${column} = k.id
            WHERE t.deleted_at IS NULL ORDER BY t.${def.key}`,
    values: [keys.map((k) => k.shopId), keys.map((k) => k.id)],
  });

const param = (def: EntityDef, column: string, value: unknown) => (def.jsonColumns.has(column) && value !== null ? JSON.stringify(value) : value);

/**
 * The row write `w` (which takes the next change id and the transaction's xid as its position)
 * followed by its change, built from the written row: one statement, so row and change can
 * only commit together. Values $1..$7 are the shop and the change.
 */
function withChange(def: EntityDef, rowWrite: string, prelude = "", notice = false): string {
  return `WITH ${prelude}w AS (${rowWrite} RETURNING *),
c AS (INSERT INTO changes (id, xid, shop_id, entity, entity_id, change_type, time, latest, changed)
      SELECT w.feed_seq, w.feed_xid, $1::bigint, $2::text, $3::bigint, $4::text, $5::timestamptz, $6::json, $7::json FROM w)${returnRows(def, notice)}`;
}

/**
 * The statement's end: the written rows, and with `notice`, a NOTIFY on CHANGES_CHANNEL carrying
 * the transaction's xid. PostgreSQL delivers it at commit, so an API-only instance tells delivery
 * instances of its commits with no statement or round trip of its own (delivery/commit-signal.ts).
 * The LEFT JOIN evaluates it once, and only when a row was written.
 */
const NOTICE = `pg_notify('${CHANGES_CHANNEL}', pg_current_xact_id()::text)`;
const returnRows = (def: EntityDef, notice: boolean): string =>
  notice ? `,\nn AS (SELECT ${NOTICE} AS notified)\nSELECT ${rowColumns(def, "w.")} FROM w LEFT JOIN n ON true` : `\nSELECT ${rowColumns(def)} FROM w`;

/** The same notice, for a transaction of several statements (store/write.ts `write`), sent before its COMMIT. */
export const commitNotice = (): Query => ({ text: `SELECT ${NOTICE}`, values: [] });

const POSITION = "pg_current_xact_id(), nextval('changes_id_seq')";
const changeValues = (shopId: string, c: ChangeValues): unknown[] => [shopId, c.entity, c.entityId, c.changeType, c.time, c.latest, c.changed];

/** Inserts a row and its change in one statement. */
export function insertWithChange(def: EntityDef, shopId: string, row: Record<string, unknown>, change: ChangeValues, notice = false): Query {
  const values = changeValues(shopId, change);
  const placeholders = def.columns.map((col) => {
    values.push(param(def, col, row[col]));
    return `$${values.length}`;
  });
  return prepared({
    text: withChange(def, `INSERT INTO ${def.table} (shop_id, ${def.columns.join(", ")}, feed_xid, feed_seq)
  VALUES ($1, ${placeholders.join(", ")}, ${POSITION})`, "", notice),
    values,
  });
}

/**
 * Inserts several new rows of `def` (of any shops) and their create changes in one statement:
 * one transaction, one xid, a change id each (group commit: src/store/group-insert.ts). The rows
 * come as one JSON array, each object a row by column name plus `_latest`, the change's `latest`
 * as JSON text (json `->` hands it back byte for byte). Rows come back in any order.
 */
export function insertManyWithChanges(def: EntityDef, rows: Array<{ row: Record<string, unknown>; latest: string }>, notice = false): Query {
  const json = `[${rows.map(({ row, latest }) => `${JSON.stringify(row).slice(0, -1)},"_latest":${latest}}`).join(",")}]`;
  const cols = ["shop_id", ...def.columns].join(", ");
  return prepared({
    text: `WITH v AS (
  SELECT r.*, e.obj -> '_latest' AS _latest
    FROM json_array_elements($1::json) WITH ORDINALITY AS e(obj, ord), LATERAL json_populate_record(NULL::${def.table}, e.obj) r
   ORDER BY e.ord),
w AS (INSERT INTO ${def.table} (${cols}, feed_xid, feed_seq) SELECT ${cols}, ${POSITION} FROM v RETURNING *),
c AS (INSERT INTO changes (id, xid, shop_id, entity, entity_id, change_type, time, latest)
      SELECT w.feed_seq, w.feed_xid, w.shop_id, '${def.name}', w.${def.key}, 'create', w.updated_at, v._latest
        FROM w JOIN v ON v.shop_id = w.shop_id AND v.${def.key} = w.${def.key})${returnRows(def, notice)}`,
    values: [json],
  });
}

export interface GuardedUpdate {
  /** The whole row after the update (the read row with the patch applied). */
  row: Record<string, unknown>;
  /** feed_seq of the row as read: the update applies only if it has not moved since. */
  oldSeq: string;
  changeType: "update" | "delete";
  latest: string;
  changed: string | null;
}

/**
 * Guarded updates of several rows of `def` (at most one per row) and their changes in one
 * statement (group commit: src/store/group-write.ts): every lock is taken, in the order given
 * (sorted), before any row is written, so the feed's per-entity order holds as in
 * `updateWithChange`; a row that moved since it was read is not written (its caller reads again).
 */
export function updateManyWithChanges(def: EntityDef, items: GuardedUpdate[], lockKeys: bigint[], notice = false): Query {
  const json = `[${items
    // No `_changed` key for a delete: `->` then gives SQL NULL (a JSON null would be stored as one).
    .map((u) => `${JSON.stringify(u.row).slice(0, -1)},"_old_seq":"${u.oldSeq}","_type":"${u.changeType}","_latest":${u.latest}${u.changed === null ? "" : `,"_changed":${u.changed}`}}`)
    .join(",")}]`;
  const set = def.columns.filter((c) => c !== def.key);
  return prepared({
    text: `WITH l AS MATERIALIZED (SELECT count(pg_advisory_xact_lock(k)) AS n FROM unnest($2::bigint[]) AS k),
v AS (
  SELECT r.*, (e.obj ->> '_old_seq')::bigint AS _old_seq, e.obj ->> '_type' AS _type, e.obj -> '_latest' AS _latest, e.obj -> '_changed' AS _changed
    FROM json_array_elements($1::json) AS e(obj), LATERAL json_populate_record(NULL::${def.table}, e.obj) r),
w AS (UPDATE ${def.table} t SET (${set.join(", ")}) = (${set.map((c) => `v.${c}`).join(", ")}), (feed_xid, feed_seq) = (${POSITION})
        FROM v WHERE t.shop_id = v.shop_id AND t.${def.key} = v.${def.key} AND t.feed_seq = v._old_seq AND EXISTS (SELECT FROM l)
      RETURNING t.*),
c AS (INSERT INTO changes (id, xid, shop_id, entity, entity_id, change_type, time, latest, changed)
      SELECT w.feed_seq, w.feed_xid, w.shop_id, '${def.name}', w.${def.key}, v._type, w.updated_at, v._latest, v._changed
        FROM w JOIN v ON v.shop_id = w.shop_id AND v.${def.key} = w.${def.key})${returnRows(def, notice)}`,
    values: [json, lockKeys.map(String)],
  });
}

/**
 * A write of a row read outside any lock: takes the entity's lock inside the statement, and
 * writes only if the row is still at the position it was read at (compare-and-set). The lock
 * (an InitPlan of the WHERE clause) is taken before the row write assigns the xid; if the row
 * moved meanwhile, nothing is written and the caller reads again.
 */
export interface Guard {
  lockKey: bigint;
  seq: string;
}

/** Updates the given columns of one row and records its change in one statement. */
export function updateWithChange(def: EntityDef, shopId: string, id: string, set: Record<string, unknown>, change: ChangeValues, guard?: Guard, notice = false): Query {
  const values = changeValues(shopId, change);
  const p = (v: unknown) => {
    values.push(v);
    return `$${values.length}`;
  };
  const assignments = Object.entries(set).map(([col, v]) => {
    if (!def.columns.includes(col)) throw new Error(`unknown column ${def.table}.${col}`);
    return `${col} = ${p(param(def, col, v))}`;
  });
  let where = `shop_id = $1 AND ${def.key} = ${p(id)}`;
  let prelude = "";
  if (guard) {
    prelude = `l AS MATERIALIZED (SELECT pg_advisory_xact_lock(${p(guard.lockKey.toString())}::bigint)),\n`;
    where += ` AND feed_seq = ${p(guard.seq)}::bigint AND EXISTS (SELECT FROM l)`;
  }
  // One statement shape per set of columns patched: few in practice, and `prepared` caps them.
  return prepared({
    text: withChange(def, `UPDATE ${def.table} SET ${assignments.join(", ")}, (feed_xid, feed_seq) = (${POSITION})
  WHERE ${where}`, prelude, notice),
    values,
  });
}

/** Live rows of `def` whose `column` is one of `ids` (e.g. a product's variants). */
export const selectLiveBy = (def: EntityDef, shopId: string, column: string, ids: string[]): Query => ({
  text: `SELECT * FROM ${def.table} WHERE shop_id = $1 AND ${column} = ANY($2::bigint[]) AND deleted_at IS NULL ORDER BY ${def.key}`,
  values: [shopId, ids],
});
