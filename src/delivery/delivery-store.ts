/**
 * The deliverer's reads and writes of webhook rows, each a group-commit Batcher: the turns of
 * many webhooks running at once share one query per step instead of one each.
 */
import { Batcher } from "../db/batcher.ts";
import type { Pool } from "../db/pool.ts";
import * as sql from "../db/sql/webhooks.ts";

export interface Next {
  horizon: string;
  /** The start position is behind pruned changes (see sql.nextChanges). */
  pruned: boolean;
  changes: sql.BatchChangeRow[];
}

export class DeliveryStore {
  readonly acquire: Batcher<string, sql.WebhookRow | undefined>;
  readonly next: Batcher<sql.NextChanges, Next>;
  readonly start: Batcher<sql.StartBatch, boolean>;
  readonly delivered: Batcher<sql.Delivered, sql.WebhookRow | undefined>;
  /** Resolves with whether deliverable changes arrived while the lease was held. */
  readonly release: Batcher<string, boolean>;

  constructor(pool: Pool, owner: string, leaseSeconds: number) {
    const byId = <R extends { id: string }>(rows: R[]) => new Map(rows.map((r) => [r.id, r]));
    this.acquire = new Batcher(async (ids) => {
      const rows = byId((await pool.query<sql.WebhookRow>(sql.acquireLeases(ids, owner, leaseSeconds))).rows);
      return ids.map((id) => rows.get(id));
    });
    this.next = new Batcher(async (reqs) => {
      const { rows } = await pool.query<sql.BatchChangeRow>(sql.nextChanges(reqs));
      const out: Next[] = reqs.map(() => ({ horizon: "0", pruned: false, changes: [] }));
      for (const r of rows) {
        const n = out[r.ord]!;
        n.horizon = r.horizon;
        n.pruned = r.pruned;
        if (r.id !== null) n.changes.push(r);
      }
      return out;
    });
    this.start = new Batcher(async (items) => {
      const done = new Set((await pool.query<{ id: string }>(sql.startBatches(items, owner))).rows.map((r) => r.id));
      return items.map((i) => done.has(i.id));
    });
    this.delivered = new Batcher(async (items) => {
      const rows = byId((await pool.query<sql.WebhookRow>(sql.batchesDelivered(items, owner, leaseSeconds))).rows);
      return items.map((i) => rows.get(i.id));
    });
    this.release = new Batcher(async (ids) => {
      const rows = byId((await pool.query<{ id: string; more: boolean }>(sql.releaseLeases(ids, owner))).rows);
      return ids.map((id) => rows.get(id)?.more ?? false);
    });
  }
}
