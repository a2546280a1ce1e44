/**
 * Retention: changes and tombstones older than the window, and delivery history older than its
 * own, are deleted, in batches so no lock is held long. Changes a webhook has not delivered yet
 * are kept longer (up to the backlog limit); webhooks are first moved past the changes they do
 * not get, so only changes some webhook would send are kept. Each prune records how far it deleted, per shop and
 * list (feed_pruned): a sync cursor or a webhook behind that mark is refused or stopped with a
 * reason, so nobody silently skips what was pruned (docs/change-feed.md).
 */
import type { Pool } from "../db/pool.ts";
import { pruneChanges, pruneTombstones } from "../db/sql/changes.ts";
import { pruneDeliveries } from "../db/sql/deliveries.ts";
import type { Query } from "../db/sql/query.ts";
import { advanceIdle } from "../db/sql/webhooks.ts";
import { entities } from "../entities/index.ts";

const BATCH = 5_000;

export interface PruneResult {
  /** Webhooks whose position moved past changes they do not get (`advanceIdle`), first. */
  advanced: number;
  changes: number;
  tombstones: number;
  deliveries: number;
}

export interface RetentionHours {
  /** Changes and tombstones older than this go. */
  changes: number;
  /** Undelivered changes of a webhook are kept up to this. */
  backlog: number;
  /** Delivery history, in days. */
  historyDays: number;
}

/** Runs `q` until a batch deletes less than BATCH rows; `count` reads a statement's deleted rows. */
async function drain(pool: Pool, q: () => Query, count: (r: { rowCount: number | null; rows: Array<{ n?: number }> }) => number): Promise<number> {
  let total = 0;
  for (;;) {
    const n = count(await pool.query(q()));
    total += n;
    if (n < BATCH) return total;
  }
}

const counted = (r: { rows: Array<{ n?: number }> }) => r.rows[0]?.n ?? 0;

export async function pruneExpired(pool: Pool, hours: RetentionHours, now = new Date()): Promise<PruneResult> {
  const ago = (h: number) => new Date(now.getTime() - h * 3_600_000);
  // Idle webhooks first move up to their next change (or the horizon): only changes a webhook
  // would send hold the log, so a webhook of a quiet entity neither pins it nor stops for it.
  const advanced = (await pool.query(advanceIdle(null))).rowCount ?? 0;
  const changes = await drain(pool, () => pruneChanges(ago(hours.changes), ago(Math.max(hours.backlog, hours.changes)), BATCH), counted);
  let tombstones = 0;
  for (const def of Object.values(entities)) tombstones += await drain(pool, () => pruneTombstones(def.table, def.key, ago(hours.changes), BATCH), counted);
  const deliveries = await drain(pool, () => pruneDeliveries(ago(hours.historyDays * 24), BATCH), (r) => r.rowCount ?? 0);
  return { advanced, changes, tombstones, deliveries };
}
