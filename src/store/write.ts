/**
 * The one way entity data is written: a transaction that takes its entity locks first, then
 * writes rows, each together with its change record (same statement, same transaction).
 *
 * Why locks first (docs/change-feed.md): the feed orders changes by the writing transaction's
 * id (xid), which PostgreSQL assigns at a transaction's first write. A writer that holds the
 * advisory locks of every entity it will touch before its first write gets an xid greater than
 * that of any earlier writer of those entities, so per entity, feed order is commit order.
 */
import { type JsonObject, toJson } from "@bufbuild/protobuf";
import type { DatabaseError } from "pg";
import { alreadyExists } from "../api/errors.ts";
import { type Pool, type Tx, inTx } from "../db/pool.ts";
import { type ChangeValues, insertWithChange, lockEntities, selectOne, updateWithChange } from "../db/sql/entities.ts";
import { type BaseRow, type EntityDef, type EntityName, lockKey } from "../entities/model.ts";

/** The options of the API's JSON, so `latest` in the change log is exactly what the API returns. */
export const API_JSON = { useProtoFieldName: true, alwaysEmitImplicit: true } as const;

/** Message fields that are read-time views, not part of the entity's own data (never in changes). */
const READ_TIME_FIELDS: Partial<Record<EntityName, string[]>> = { product: ["variants"] };

export function entityJson<R extends BaseRow>(def: EntityDef<R>, row: R): JsonObject {
  const json = toJson(def.schema, def.toMessage(row), API_JSON) as JsonObject;
  for (const f of READ_TIME_FIELDS[def.name] ?? []) delete json[f];
  return json;
}

/** Top-level fields whose value differs, `updated_at` aside (it changes on every write). */
export function changedFields(before: JsonObject, after: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(after)) {
    if (k === "updated_at") continue;
    if (JSON.stringify(v) !== JSON.stringify(before[k])) out[k] = v!;
  }
  return out;
}

type Locks = Array<[EntityName, string]>;

export class Writer {
  private wrote = false;
  private readonly held = new Set<bigint>();
  private readonly tx: Tx;
  readonly shopId: string;
  /** The transaction's now(): every row and change written here carries it. */
  readonly now: Date;

  constructor(tx: Tx, shopId: string, now: Date, held: bigint[]) {
    this.tx = tx;
    this.shopId = shopId;
    this.now = now;
    for (const k of held) this.held.add(k);
  }

  /** Takes more entity locks; only before the first write (see the module comment). */
  async lock(locks: Locks): Promise<void> {
    if (this.wrote) throw new Error("entity locks must be taken before the transaction's first write");
    const keys = sortedKeys(locks).filter((k) => !this.held.has(k));
    if (!keys.length) return;
    await this.tx.query(lockEntities(keys));
    for (const k of keys) this.held.add(k);
  }

  /** The current row (deleted or not), read after the locks so it is the latest committed. */
  async get<R extends BaseRow>(def: EntityDef<R>, id: string): Promise<R | undefined> {
    const { rows } = await this.tx.query<R>(selectOne(def, this.shopId, id));
    return rows[0];
  }

  async query<R extends object>(q: { text: string; values: unknown[] }): Promise<R[]> {
    return (await this.tx.query<R>(q)).rows;
  }

  async insert<R extends BaseRow>(def: EntityDef<R>, data: Omit<R, keyof BaseRow>): Promise<R> {
    const row = { ...data, shop_id: this.shopId, created_at: this.now, updated_at: this.now, deleted_at: null } as unknown as R;
    const latest = entityJson(def, row);
    return this.write(def, insertWithChange(def, this.shopId, row as Record<string, unknown>, this.change(def, row, "create", latest, null)));
  }

  /**
   * Applies `patch` to `old` (which must be locked). Returns `old` unchanged, writing nothing,
   * when the patch changes no field: a no-op update records no change.
   */
  async update<R extends BaseRow>(def: EntityDef<R>, old: R, patch: Partial<R>): Promise<R> {
    this.assertLocked(def, old);
    const next = { ...old, ...patch, updated_at: this.now } as R;
    const before = entityJson(def, old);
    const latest = entityJson(def, next);
    const changed = changedFields(before, latest);
    if (Object.keys(changed).length === 0) return old;
    const set = { ...patch, updated_at: this.now } as Record<string, unknown>;
    return this.write(def, updateWithChange(def, this.shopId, keyOf(def, old), set, this.change(def, next, "update", latest, changed)));
  }

  /** Deletes `old` (which must be locked): it stays as a tombstone with deleted_at set. */
  async remove<R extends BaseRow>(def: EntityDef<R>, old: R): Promise<R> {
    this.assertLocked(def, old);
    const next = { ...old, updated_at: this.now, deleted_at: this.now } as R;
    const set = { updated_at: this.now, deleted_at: this.now };
    return this.write(def, updateWithChange(def, this.shopId, keyOf(def, old), set, this.change(def, next, "delete", entityJson(def, next), null)));
  }

  private change<R extends BaseRow>(def: EntityDef<R>, row: R, changeType: ChangeValues["changeType"], latest: JsonObject, changed: JsonObject | null): ChangeValues {
    return {
      entity: def.name,
      entityId: keyOf(def, row),
      changeType,
      time: this.now,
      latest: JSON.stringify(latest),
      changed: changed ? JSON.stringify({ [def.name]: changed }) : null,
    };
  }

  private async write<R extends BaseRow>(def: EntityDef<R>, q: { text: string; values: unknown[] }): Promise<R> {
    this.wrote = true;
    try {
      return (await this.tx.query<R>(q)).rows[0]!;
    } catch (err) {
      throw uniqueViolation(def, err) ?? err;
    }
  }

  private assertLocked(def: EntityDef, row: BaseRow) {
    if (!this.held.has(lockKey(def.name, keyOf(def, row)))) throw new Error(`${def.name} ${keyOf(def, row)} written without its lock`);
  }
}

function keyOf(def: EntityDef, row: object): string {
  return (row as Record<string, string>)[def.key]!;
}

function sortedKeys(locks: Locks): bigint[] {
  return [...new Set(locks.map(([e, id]) => lockKey(e, id)))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** A duplicate unique value becomes already_exists naming the field (index `<table>_<field>`). */
function uniqueViolation(def: EntityDef, err: unknown) {
  const e = err as DatabaseError;
  if (e?.code !== "23505" || !e.constraint?.startsWith(def.table + "_")) return undefined;
  const field = e.constraint.slice(def.table.length + 1);
  return alreadyExists(field, `already used by another ${def.name} of this shop`);
}

const RETRYABLE = new Set(["40P01" /* deadlock */, "40001" /* serialization failure */]);
const MAX_ATTEMPTS = 5;

/**
 * Runs `fn` in a write transaction for `shopId` holding `locks` from the start. Deadlocks
 * (possible when `fn` takes more locks after reading) are retried with jittered backoff.
 */
export async function write<T>(pool: Pool, shopId: string, locks: Locks, fn: (w: Writer) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await inTx(pool, async (tx) => {
        const keys = sortedKeys(locks);
        const { rows } = await tx.query<{ now: Date }>(lockEntities(keys));
        return fn(new Writer(tx, shopId, rows[0]!.now, keys));
      });
    } catch (err) {
      if (attempt < MAX_ATTEMPTS && RETRYABLE.has((err as DatabaseError)?.code ?? "")) {
        await new Promise((r) => setTimeout(r, Math.random() * 10 * attempt));
        continue;
      }
      throw err;
    }
  }
}
