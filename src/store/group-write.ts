/**
 * Group commit for one-entity writes: calls made while a statement of the same kind and entity
 * is running wait for it, then go together as one multi-row statement (one round trip, one
 * commit, one xid). A lone call goes at once, so a quiet service adds no latency; under load each
 * commit carries many writes (measured: docs/performance.md). A batch that fails (a duplicate
 * external_id, a deadlock with another writer) is retried one row at a time, so each caller gets
 * its own answer and nobody else's error.
 *
 * The feed's argument holds unchanged (docs/change-feed.md): a batch is one transaction; creates
 * are new entities (no locks); guarded updates take all their locks, sorted, before any write.
 */
import type { Pool } from "../db/pool.ts";
import { type ChangeValues, type GuardedUpdate, insertManyWithChanges, insertWithChange, updateManyWithChanges, updateWithChange } from "../db/sql/entities.ts";
import type { BaseRow, EntityDef } from "../entities/model.ts";

/** Rows per statement at most. */
const MAX_BATCH = 100;

interface Pending<I, O> {
  input: I;
  resolve(o: O): void;
  reject(e: unknown): void;
}

/**
 * The queue and flush loop shared by both kinds: `many` writes a batch and answers per input
 * (undefined: not written), `one` writes a single input the plain way.
 */
abstract class GroupWrite<R extends BaseRow, I, O> {
  private queue: Pending<I, O>[] = [];
  private flushing = false;
  protected readonly pool: Pool;
  protected readonly def: EntityDef<R>;
  /** Turns a row's database error into the client's (already_exists...). */
  protected readonly mapError: (err: unknown) => unknown;
  /** Statements NOTIFY their commit (an API-only instance: sql/entities.ts `returnRows`). */
  protected readonly notice: boolean;

  constructor(pool: Pool, def: EntityDef<R>, mapError: (err: unknown) => unknown, notice: boolean) {
    this.pool = pool;
    this.def = def;
    this.mapError = mapError;
    this.notice = notice;
  }

  protected abstract many(inputs: I[]): Promise<O[]>;
  protected abstract one(input: I): Promise<O>;
  /** Inputs that may not share a statement (the same row twice) go to the next one. */
  protected sameRow(_a: I, _b: I): boolean {
    return false;
  }

  protected write(input: I): Promise<O> {
    return new Promise((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private take(): Pending<I, O>[] {
    const batch: Pending<I, O>[] = [];
    const rest: Pending<I, O>[] = [];
    for (const p of this.queue) {
      if (batch.length < MAX_BATCH && !batch.some((b) => this.sameRow(b.input, p.input))) batch.push(p);
      else rest.push(p);
    }
    this.queue = rest;
    return batch;
  }

  private async flush() {
    this.flushing = true;
    while (this.queue.length) {
      const batch = this.take();
      if (batch.length > 1) {
        try {
          const out = await this.many(batch.map((p) => p.input));
          batch.forEach((p, i) => p.resolve(out[i]!));
          continue;
        } catch {
          // One bad row fails the statement: each row again on its own, below.
        }
      }
      for (const p of batch) await this.one(p.input).then(p.resolve, p.reject);
    }
    this.flushing = false;
  }
}

interface Create {
  shopId: string;
  row: Record<string, unknown>;
  change: ChangeValues;
}

/** Creates of one entity. */
export class GroupInsert<R extends BaseRow> extends GroupWrite<R, Create, R> {
  insert(shopId: string, row: Record<string, unknown>, change: ChangeValues): Promise<R> {
    return this.write({ shopId, row, change });
  }

  protected async many(inputs: Create[]): Promise<R[]> {
    const { rows } = await this.pool.query<R>(insertManyWithChanges(this.def, inputs.map((c) => ({ row: c.row, latest: c.change.latest })), this.notice));
    const byKey = new Map(rows.map((r) => [rowKey(this.def, r), r]));
    return inputs.map((c) => {
      const r = byKey.get(`${c.shopId}:${String(c.row[this.def.key])}`);
      if (!r) throw new Error(`${this.def.name} ${String(c.row[this.def.key])}: not returned by the group insert`);
      return r;
    });
  }

  protected async one(c: Create): Promise<R> {
    try {
      return (await this.pool.query<R>(insertWithChange(this.def, c.shopId, c.row, c.change, this.notice))).rows[0]!;
    } catch (err) {
      throw this.mapError(err) ?? err;
    }
  }
}

interface Update extends GuardedUpdate {
  shopId: string;
  id: string;
  lockKey: bigint;
  /** The columns the patch sets, for the one-row statement. */
  set: Record<string, unknown>;
  change: ChangeValues;
}

/** Guarded updates (and deletes) of one entity; each resolves to the written row, or undefined when the row had moved. */
export class GroupUpdate<R extends BaseRow> extends GroupWrite<R, Update, R | undefined> {
  update(u: Update): Promise<R | undefined> {
    return this.write(u);
  }

  protected override sameRow(a: Update, b: Update): boolean {
    return a.id === b.id && a.shopId === b.shopId;
  }

  protected async many(inputs: Update[]): Promise<Array<R | undefined>> {
    const keys = [...new Set(inputs.map((u) => u.lockKey))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const { rows } = await this.pool.query<R>(updateManyWithChanges(this.def, inputs, keys, this.notice));
    const byKey = new Map(rows.map((r) => [rowKey(this.def, r), r]));
    return inputs.map((u) => byKey.get(`${u.shopId}:${u.id}`));
  }

  protected async one(u: Update): Promise<R | undefined> {
    try {
      return (await this.pool.query<R>(updateWithChange(this.def, u.shopId, u.id, u.set, u.change, { lockKey: u.lockKey, seq: u.oldSeq }, this.notice))).rows[0];
    } catch (err) {
      throw this.mapError(err) ?? err;
    }
  }
}

const rowKey = (def: EntityDef, r: BaseRow) => `${r.shop_id}:${(r as unknown as Record<string, string>)[def.key]}`;
