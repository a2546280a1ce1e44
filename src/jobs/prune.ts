/**
 * Retention: changes and tombstones older than the window, and delivery history older than its
 * own, are deleted, in batches so no lock is held long. Sync cursors older than the window are refused (api/paging.ts), so a client
 * never silently skips what was pruned.
 */
import type { Pool } from "../db/pool.ts";
import { pruneChanges } from "../db/sql/changes.ts";
import { pruneDeliveries } from "../db/sql/deliveries.ts";
import { pruneTombstones } from "../db/sql/entities.ts";
import { entities } from "../entities/index.ts";

const BATCH = 5_000;

export interface PruneResult {
  changes: number;
  tombstones: number;
  deliveries: number;
}

async function drain(pool: Pool, q: () => { text: string; values: unknown[] }): Promise<number> {
  let total = 0;
  for (;;) {
    const { rowCount } = await pool.query(q());
    total += rowCount ?? 0;
    if (!rowCount || rowCount < BATCH) return total;
  }
}

/** Changes and tombstones past `retentionHours`, delivery history past `historyDays`. */
export async function pruneExpired(pool: Pool, retentionHours: number, historyDays: number, now = new Date()): Promise<PruneResult> {
  const before = new Date(now.getTime() - retentionHours * 3_600_000);
  const changes = await drain(pool, () => pruneChanges(before, BATCH));
  let tombstones = 0;
  for (const def of Object.values(entities)) tombstones += await drain(pool, () => pruneTombstones(def, before, BATCH));
  const historyBefore = new Date(now.getTime() - historyDays * 86_400_000);
  const deliveries = await drain(pool, () => pruneDeliveries(historyBefore, BATCH));
  return { changes, tombstones, deliveries };
}
