/** SQL for the change log's upkeep: retention pruning and its watermarks (feed_pruned). */
import type { Query } from "./query.ts";

/**
 * Records, per shop, the highest position a prune deleted from `list` ('changes' or an entity
 * table), from the CTE `gone (shop_id, xid, seq)`; answers the count deleted as `n`.
 */
const markPruned = (list: string) => `marks AS (
    SELECT DISTINCT ON (shop_id) shop_id, xid, seq FROM gone ORDER BY shop_id, xid DESC, seq DESC),
  marked AS (
    INSERT INTO feed_pruned AS p (shop_id, list, xid, seq) SELECT shop_id, '${list}', xid, seq FROM marks
    ON CONFLICT (shop_id, list) DO UPDATE SET xid = excluded.xid, seq = excluded.seq, pruned_at = now()
     WHERE (p.xid, p.seq) < (excluded.xid, excluded.seq))
SELECT count(*)::int AS n FROM gone`;

/**
 * Changes older than `before`, a batch at a time (BRIN on time finds them), except those a
 * webhook of the shop has not delivered yet, which are kept until `backlogBefore` (a webhook
 * paused or stopped for longer than the retention must not resume with a hole).
 */
export const pruneChanges = (before: Date, backlogBefore: Date, batch: number): Query => ({
  text: `WITH holds AS (
    SELECT DISTINCT ON (shop_id) shop_id, cursor_xid, cursor_seq FROM webhooks ORDER BY shop_id, cursor_xid, cursor_seq),
  gone AS (
    DELETE FROM changes WHERE id IN (
      SELECT c.id FROM changes c LEFT JOIN holds h ON h.shop_id = c.shop_id
       WHERE c.time < $1 AND (c.time < $2 OR h.shop_id IS NULL OR (c.xid, c.id) <= (h.cursor_xid, h.cursor_seq))
       LIMIT $3)
    RETURNING shop_id, xid, id AS seq),
  ${markPruned("changes")}`,
  values: [before, backlogBefore, batch],
});

/** Tombstones of `table` deleted before `before`, a batch at a time (table and key are code, not input). */
export const pruneTombstones = (table: string, key: string, before: Date, batch: number): Query => ({
  text: `WITH gone AS (
    DELETE FROM ${table} WHERE (shop_id, ${key}) IN (SELECT shop_id, ${key} FROM ${table} WHERE deleted_at < $1 LIMIT $2)
    RETURNING shop_id, feed_xid AS xid, feed_seq AS seq),
  ${markPruned(table)}`,
  values: [before, batch],
});

/**
 * Whether position (xid, seq) of `list` is behind what a prune deleted for the shop: a reader
 * there may have missed rows. With `baseSql` (a sync's baseline xid), only a prune that reached
 * at or above it counts: rows below it were pruned away before that sync began, and a sync that
 * began later would not have seen them either. A scalar subquery, for the page queries (same
 * snapshot as the rows).
 */
export const behindPrune = (list: string, shopParam: string, xidSql: string, seqSql: string, baseSql?: string) =>
  `EXISTS (SELECT 1 FROM feed_pruned p WHERE p.shop_id = ${shopParam} AND p.list = '${list}' AND (p.xid, p.seq) > (${xidSql}, ${seqSql})${baseSql ? ` AND p.xid >= ${baseSql}` : ""})`;

/** The earliest time a recovery or a sync can start from: the oldest change kept for the shop. */
export const oldestChange = (shopId: string): Query => ({
  text: "SELECT min(time) AS time FROM changes WHERE shop_id = $1",
  values: [shopId],
});
