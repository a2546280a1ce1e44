/**
 * Retention: changes and tombstones older than the window are deleted, in batches so no lock
 * is held long. Sync cursors older than the window are refused (api/paging.ts), so a client
 * never silently skips what was pruned.
 */
import type { Pool } from "../db/pool.ts";
import { pruneChanges } from "../db/sql/changes.ts";
import { pruneTombstones } from "../db/sql/entities.ts";
import { entities } from "../entities/index.ts";

const BATCH = 5_000;

export interface PruneResult {
  changes: number;
  tombstones: number;
}

async function drain(pool: Pool, q: () => { text: string; values: unknown[] }): Promise<number> {
  let total = 0;
  for (;;) {
    const { rowCount } = await pool.query(q());
    total += rowCount ?? 0;
    if (!rowCount || rowCount < BATCH) return total;
  }
}

export async function pruneExpired(pool: Pool, retentionHours: number, now = new Date()): Promise<PruneResult> {
  const before = new Date(now.getTime() - retentionHours * 3_600_000);
  const changes = await drain(pool, () => pruneChanges(before, BATCH));
  let tombstones = 0;
  for (const def of Object.values(entities)) tombstones += await drain(pool, () => pruneTombstones(def, before, BATCH));
  return { changes, tombstones };
}
