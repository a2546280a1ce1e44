/**
 * Keyset-paged reads for List* and GetChanges. A page costs one index range scan whatever its
 * depth: no OFFSET, the cursor's key is the scan's start.
 *
 * "updated_at" order is the order of each row's last change, (feed_xid, feed_seq), and only rows
 * written by transactions below the snapshot's xmin are served: every transaction below it has
 * finished, so nothing can later appear behind a position already served (docs/change-feed.md).
 */
import type { EntityDef } from "../../entities/model.ts";
import { behindPrune } from "./changes.ts";
import { prepared, type Query } from "./query.ts";

export type Sort = "" | "updated_at";

export interface Filter {
  column: string;
  values: string[];
  type: "bigint" | "text";
}

export interface ListOptions {
  sort: Sort;
  /** Key to start after (forward) or before (backward): [id] or [xid, seq]. */
  key: string[] | undefined;
  backward: boolean;
  /**
   * The sync's baseline (cursor `b`): tombstones pruned wholly below it were deletes from before
   * the sync began, of rows it never saw (each row appears once, at its latest position), so
   * they do not expire the cursor.
   */
  base?: string;
  limit: number;
  includeDeleted: boolean;
  filters: Filter[];
}

/**
 * Rows come back with a `horizon` column (the snapshot's xmin), `held` (in updated_at order:
 * the shop has committed rows at or above the horizon, i.e. held back by a transaction still
 * open elsewhere) and `expired` (the cursor is behind pruned tombstones); a page with no rows is
 * one row of NULLs beside them.
 */
export function listRows(def: EntityDef, shopId: string, o: ListOptions): Query {
  const values: unknown[] = [shopId];
  const where = ["t.shop_id = $1"];
  const p = (v: unknown) => {
    values.push(v);
    return `$${values.length}`;
  };
  for (const f of o.filters) where.push(`t.${f.column} = ANY(${p(f.values)}::${f.type}[])`);
  const cmp = o.backward ? "<" : ">";
  const dir = o.backward ? "DESC" : "ASC";
  let order: string;
  let held = "false";
  let expired = "false";
  if (o.sort === "updated_at") {
    held = `EXISTS (SELECT 1 FROM ${def.table} x WHERE x.shop_id = $1 AND x.feed_xid >= h.horizon)`;
    where.push("t.feed_xid < h.horizon");
    if (o.key) {
      const [xid, seq] = [`${p(o.key[0])}::xid8`, `${p(o.key[1])}::bigint`];
      where.push(`(t.feed_xid, t.feed_seq) ${cmp} (${xid}, ${seq})`);
      if (!o.backward) expired = behindPrune(def.table, "$1", xid, seq, `${p(o.base ?? "0")}::xid8`);
    }
    order = `t.feed_xid ${dir}, t.feed_seq ${dir}`;
  } else {
    if (!o.includeDeleted) where.push("t.deleted_at IS NULL");
    if (o.key) where.push(`t.${def.key} ${cmp} ${p(o.key[0])}::bigint`);
    order = `t.${def.key} ${dir}`;
  }
  const columns = ["shop_id", ...def.columns, "feed_xid", "feed_seq"].map((c) => `t.${c}`).join(", ");
  const q: Query = {
    text: `WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon)
SELECT h.horizon::text AS horizon, ${held} AS held, ${expired} AS expired, r.* FROM h LEFT JOIN LATERAL (
  SELECT ${columns} FROM ${def.table} t WHERE ${where.join(" AND ")} ORDER BY ${order} LIMIT ${p(o.limit)}
) r ON true`,
    values,
  };
  // Unfiltered pages (what pollers send) are prepared: a few shapes per entity.
  return o.filters.length ? q : prepared(q);
}

export interface ChangeRow {
  horizon: string;
  held: boolean;
  expired: boolean;
  id: string | null;
  xid: string;
  entity: string;
  entity_id: string;
  change_type: "create" | "update" | "delete";
  time: Date;
  latest: string;
  changed: string | null;
}

/**
 * A page of the shop's change log after position (xid, id), commit-safe (below the horizon);
 * `fromCursor`: the position came from a client's cursor (check it against the prune mark; no
 * baseline here: a change log poller may hold earlier changes of an entity whose later ones were
 * pruned, so every prune behind the cursor counts).
 */
export function changesAfter(shopId: string, xid: string, id: string, entities: string[], limit: number, fromCursor: boolean): Query {
  const values: unknown[] = [shopId, xid, id, limit];
  let filter = "";
  if (entities.length) {
    values.push(entities);
    filter = "AND c.entity = ANY($5::text[])";
  }
  return prepared({
    text: `WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon)
SELECT h.horizon::text AS horizon, EXISTS (SELECT 1 FROM changes x WHERE x.shop_id = $1 AND x.xid >= h.horizon) AS held,
       ${fromCursor ? behindPrune("changes", "$1", "$2::xid8", "$3::bigint") : "false"} AS expired, r.* FROM h LEFT JOIN LATERAL (
  SELECT c.id, c.xid::text AS xid, c.entity, c.entity_id, c.change_type, c.time, c.latest::text AS latest, c.changed::text AS changed
    FROM changes c
   WHERE c.shop_id = $1 AND (c.xid, c.id) > ($2::xid8, $3::bigint) AND c.xid < h.horizon ${filter}
   ORDER BY c.xid, c.id LIMIT $4
) r ON true`,
    values,
  });
}
