/**
 * Group commit for creates: `createOne` calls made while an insert of the same entity is running
 * wait for it, then go together as one multi-row statement (one round trip, one commit, one
 * xid). A lone call goes at once, so there is no added latency when the service is quiet; under
 * load, each commit carries many creates (measured: docs/performance.md). A batch that fails
 * (a duplicate external_id, say) is retried one row at a time, so each caller gets its own
 * answer and nobody else's error.
 *
 * The feed's argument holds unchanged (docs/change-feed.md): a batch is one transaction, its
 * rows are new entities (no locks to take), and each change has its own id.
 */
import type { Pool } from "../db/pool.ts";
import { type ChangeValues, insertManyWithChanges, insertWithChange } from "../db/sql/entities.ts";
import type { BaseRow, EntityDef } from "../entities/model.ts";

/** Rows per statement at most. */
const MAX_BATCH = 100;

interface Pending<R> {
  shopId: string;
  row: Record<string, unknown>;
  change: ChangeValues;
  resolve(r: R): void;
  reject(e: unknown): void;
}

/** `run` maps a database error of one row to the client's error (already_exists...). */
export class GroupInsert<R extends BaseRow> {
  private queue: Pending<R>[] = [];
  private flushing = false;
  private readonly pool: Pool;
  private readonly def: EntityDef<R>;
  private readonly mapError: (err: unknown) => unknown;

  constructor(pool: Pool, def: EntityDef<R>, mapError: (err: unknown) => unknown) {
    this.pool = pool;
    this.def = def;
    this.mapError = mapError;
  }

  insert(shopId: string, row: Record<string, unknown>, change: ChangeValues): Promise<R> {
    return new Promise((resolve, reject) => {
      this.queue.push({ shopId, row, change, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush() {
    this.flushing = true;
    while (this.queue.length) {
      const batch = this.queue.splice(0, MAX_BATCH);
      if (batch.length === 1) await this.one(batch[0]!);
      else {
        try {
          const { rows } = await this.pool.query<R>(insertManyWithChanges(this.def, batch.map((p) => ({ row: p.row, latest: p.change.latest }))));
          const key = this.def.key as keyof R;
          const byKey = new Map(rows.map((r) => [`${r.shop_id}:${String(r[key])}`, r]));
          for (const p of batch) {
            const r = byKey.get(`${p.shopId}:${String(p.row[this.def.key])}`);
            if (r) p.resolve(r);
            else p.reject(new Error(`${this.def.name} ${String(p.row[this.def.key])}: not returned by the group insert`));
          }
        } catch {
          // One bad row fails the statement: each row again on its own, with its own answer.
          for (const p of batch) await this.one(p);
        }
      }
    }
    this.flushing = false;
  }

  private async one(p: Pending<R>) {
    try {
      p.resolve((await this.pool.query<R>(insertWithChange(this.def, p.shopId, p.row, p.change))).rows[0]!);
    } catch (err) {
      p.reject(this.mapError(err) ?? err);
    }
  }
}
