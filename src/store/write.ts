/**
 * The one way entity data is written. Every row write carries its change record in the same
 * statement. Two shapes:
 * - `write()`: a transaction that takes the locks of every entity it will write before its
 *   first write, then reads and writes (multi-entity operations);
 * - `createOne()` / `updateOne()`: one entity in one statement (a read first for updates), the
 *   lock taken inside the statement before its write, compare-and-set on the row's position;
 *   concurrent calls are group-committed (store/group-write.ts).
 *
 * Why locks before the first write (docs/change-feed.md): the feed orders changes by the writing
 * transaction's id (xid), which PostgreSQL assigns at a transaction's first write. A writer that
 * holds an entity's lock before its first write gets an xid greater than that of any earlier
 * writer of that entity, so per entity, feed order is commit order.
 */
import { type JsonObject, toJson } from "@bufbuild/protobuf";
import type { DatabaseError } from "pg";
import { alreadyExists } from "../api/errors.ts";
import { type Pool, type Tx, inTx } from "../db/pool.ts";
import type { Clock } from "../clock.ts";
import { Batcher } from "../db/batcher.ts";
import { type ChangeValues, commitNotice, insertWithChange, lockEntities, selectMany, selectOne, updateWithChange } from "../db/sql/entities.ts";
import { type BaseRow, type EntityDef, type EntityName, lockKey } from "../entities/model.ts";
import { GroupInsert, GroupUpdate } from "./group-write.ts";

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

/** What a committed write tells the delivery engine: which shop, which entities, which transaction. */
export interface Committed {
  shopId: string;
  /** What was written, as `entity:change_type` (the form webhook subscriptions take). */
  events: string[];
  xid: string;
}

/** Where writes go, and who hears of their commits. */
export interface WriteContext {
  pool: Pool;
  onCommit?: (c: Committed) => void;
  /**
   * Writes NOTIFY their own commit (CHANGES_CHANNEL, the xid), delivered by PostgreSQL at commit:
   * how an instance that does not deliver wakes the ones that do, at no extra round trip.
   */
  notifyCommits?: boolean;
  /** The application's clock for write times (tests move it by hand); the system clock if absent. */
  clock?: Clock;
}

const nowOf = (ctx: WriteContext): Date => ctx.clock?.now() ?? new Date();

/**
 * Write time. The application's clock, but never at or before the time of the version being
 * replaced, so an entity's updated_at only moves forward even across instances whose clocks differ.
 */
function writeTime(now: Date, previous?: Date): Date {
  return previous && now.getTime() <= previous.getTime() ? new Date(previous.getTime() + 1) : now;
}

function changeValues<R extends BaseRow>(def: EntityDef<R>, row: R, changeType: ChangeValues["changeType"], latest: JsonObject, changed: JsonObject | null): ChangeValues {
  return {
    entity: def.name,
    entityId: keyOf(def, row),
    changeType,
    time: row.updated_at,
    latest: JSON.stringify(latest),
    changed: changed ? JSON.stringify({ [def.name]: changed }) : null,
  };
}

function prepareInsert<R extends BaseRow>(def: EntityDef<R>, shopId: string, data: Omit<R, keyof BaseRow>, now: Date) {
  const row = { ...data, shop_id: shopId, created_at: now, updated_at: now, deleted_at: null } as unknown as R;
  return { row: row as Record<string, unknown>, change: changeValues(def, row, "create", entityJson(def, row), null) };
}

/** The SET and change of an update, or undefined when the patch changes nothing. */
function prepareUpdate<R extends BaseRow>(def: EntityDef<R>, old: R, patch: Partial<R>, now: Date) {
  const at = writeTime(now, old.updated_at);
  const next = { ...old, ...patch, updated_at: at } as R;
  const latest = entityJson(def, next);
  const changed = changedFields(entityJson(def, old), latest);
  if (Object.keys(changed).length === 0) return undefined;
  return { set: { ...patch, updated_at: at } as Record<string, unknown>, change: changeValues(def, next, "update", latest, changed) };
}

function prepareRemove<R extends BaseRow>(def: EntityDef<R>, old: R, now: Date) {
  const at = writeTime(now, old.updated_at);
  const next = { ...old, updated_at: at, deleted_at: at } as R;
  return { set: { updated_at: at, deleted_at: at }, change: changeValues(def, next, "delete", entityJson(def, next), null) };
}

async function runWrite<R extends BaseRow>(db: Pool | Tx, def: EntityDef<R>, q: { text: string; values: unknown[] }): Promise<R | undefined> {
  try {
    return (await db.query<R>(q)).rows[0];
  } catch (err) {
    throw uniqueViolation(def, err) ?? err;
  }
}

export class Writer {
  private wrote = false;
  /** What was written (`entity:change_type`) and the transaction id, for the commit signal. */
  readonly written = new Set<string>();
  xid: string | undefined;
  private readonly held = new Set<bigint>();
  private readonly tx: Tx;
  readonly shopId: string;
  /** Taken once the initial locks are held: every row and change written here carries it (or later). */
  readonly now: Date;

  constructor(tx: Tx, shopId: string, held: bigint[], now: Date) {
    this.tx = tx;
    this.shopId = shopId;
    this.now = now;
    for (const k of held) this.held.add(k);
  }

  /** Takes more entity locks; only before the first write (see the module comment). */
  async lock(locks: Locks): Promise<void> {
    if (this.wrote) throw new Error("entity locks must be taken before the transaction's first write");
    const keys = sortedKeys(this.shopId, locks).filter((k) => !this.held.has(k));
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
    const { row, change } = prepareInsert(def, this.shopId, data, this.now);
    return this.track(def, "create", (await runWrite(this.tx, def, insertWithChange(def, this.shopId, row, change)))!);
  }

  private track<R extends BaseRow>(def: EntityDef<R>, changeType: ChangeValues["changeType"], row: R): R {
    this.wrote = true;
    this.written.add(`${def.name}:${changeType}`);
    this.xid = row.feed_xid;
    return row;
  }

  /**
   * Applies `patch` to `old` (which must be locked). Returns `old` unchanged, writing nothing,
   * when the patch changes no field: a no-op update records no change.
   */
  async update<R extends BaseRow>(def: EntityDef<R>, old: R, patch: Partial<R>): Promise<R> {
    this.assertLocked(def, old);
    const u = prepareUpdate(def, old, patch, this.now);
    if (!u) return old;
    this.wrote = true;
    return this.track(def, "update", (await runWrite(this.tx, def, updateWithChange(def, this.shopId, keyOf(def, old), u.set, u.change)))!);
  }

  /** Deletes `old` (which must be locked): it stays as a tombstone with deleted_at set. */
  async remove<R extends BaseRow>(def: EntityDef<R>, old: R): Promise<R> {
    this.assertLocked(def, old);
    const u = prepareRemove(def, old, this.now);
    this.wrote = true;
    return this.track(def, "delete", (await runWrite(this.tx, def, updateWithChange(def, this.shopId, keyOf(def, old), u.set, u.change)))!);
  }

  private assertLocked(def: EntityDef, row: BaseRow) {
    if (!this.held.has(lockKey(this.shopId, def.name, keyOf(def, row)))) throw new Error(`${def.name} ${keyOf(def, row)} written without its lock`);
  }
}

function keyOf(def: EntityDef, row: object): string {
  return (row as Record<string, string>)[def.key]!;
}

function sortedKeys(shopId: string, locks: Locks): bigint[] {
  return [...new Set(locks.map(([e, id]) => lockKey(shopId, e, id)))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
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

const backoff = (attempt: number) => new Promise((r) => setTimeout(r, Math.random() * 10 * attempt));

/**
 * Runs `fn` in a write transaction for `shopId` holding `locks` from the start. Deadlocks
 * (possible when `fn` takes more locks after reading) are retried with jittered backoff.
 */
export async function write<T>(ctx: WriteContext, shopId: string, locks: Locks, fn: (w: Writer) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      let writer: Writer | undefined;
      const result = await inTx(ctx.pool, async (tx) => {
        const keys = sortedKeys(shopId, locks);
        if (keys.length) await tx.query(lockEntities(keys));
        writer = new Writer(tx, shopId, keys, nowOf(ctx));
        const out = await fn(writer);
        if (ctx.notifyCommits && writer.xid) await tx.query(commitNotice());
        return out;
      });
      if (writer?.xid) ctx.onCommit?.({ shopId, events: [...writer.written], xid: writer.xid });
      return result;
    } catch (err) {
      if (attempt < MAX_ATTEMPTS && RETRYABLE.has((err as DatabaseError)?.code ?? "")) {
        await backoff(attempt);
        continue;
      }
      throw err;
    }
  }
}

/**
 * One group writer (or reader) per pool, entity table and kind, made on first use: the group
 * commits of store/group-write.ts and the group reads below.
 */
const groups = new WeakMap<Pool, Map<string, unknown>>();

function grouped<T>(pool: Pool, key: string, make: () => T): T {
  let byKey = groups.get(pool);
  if (!byKey) groups.set(pool, (byKey = new Map()));
  if (!byKey.has(key)) byKey.set(key, make());
  return byKey.get(key) as T;
}

/** One row of `def` by id, outside any transaction (read with the lookups that arrive meanwhile). */
export function readOne<R extends BaseRow>(pool: Pool, def: EntityDef<R>, shopId: string, id: string): Promise<R | undefined> {
  const reads = grouped(pool, `read:${def.table}`, () =>
    new Batcher<{ shopId: string; id: string }, BaseRow | undefined>(async (keys) => {
      const { rows } = await pool.query<BaseRow>(selectMany(def, keys));
      const byKey = new Map(rows.map((r) => [`${r.shop_id}:${(r as unknown as Record<string, string>)[def.key]}`, r]));
      return keys.map((k) => byKey.get(`${k.shopId}:${k.id}`));
    }),
  );
  return reads.call({ shopId, id }) as Promise<R | undefined>;
}

const groupInsert = <R extends BaseRow>(ctx: WriteContext, def: EntityDef<R>) =>
  grouped(ctx.pool, `insert:${def.table}:${!!ctx.notifyCommits}`, () => new GroupInsert(ctx.pool, def, (err) => uniqueViolation(def, err), !!ctx.notifyCommits));

const groupUpdate = <R extends BaseRow>(ctx: WriteContext, def: EntityDef<R>) =>
  grouped(ctx.pool, `update:${def.table}:${!!ctx.notifyCommits}`, () => new GroupUpdate(ctx.pool, def, (err) => uniqueViolation(def, err), !!ctx.notifyCommits));

/**
 * Creates one entity with its change: no lock (its id is new), group-committed with the
 * creates of the same entity that arrive meanwhile (store/group-write.ts).
 */
export async function createOne<R extends BaseRow>(ctx: WriteContext, shopId: string, def: EntityDef<R>, data: Omit<R, keyof BaseRow>): Promise<R> {
  const { row, change } = prepareInsert(def, shopId, data, nowOf(ctx));
  const created = await groupInsert(ctx, def).insert(shopId, row, change);
  ctx.onCommit?.({ shopId, events: [`${def.name}:create`], xid: created.feed_xid });
  return created;
}

/** What `updateOne`'s callback returns to delete the entity instead of patching it. */
export const REMOVE = Symbol("remove");

/**
 * Updates (or removes) one entity with one read and one guarded statement: the entity's lock is
 * taken inside the statement and the write applies only if the row has not moved since the
 * read; otherwise it reads again. `compute` validates against the current row and returns the
 * patch; `undefined` from it means "nothing to do" and returns the row as is.
 */
export async function updateOne<R extends BaseRow>(
  ctx: WriteContext,
  shopId: string,
  def: EntityDef<R>,
  id: string,
  compute: (old: R | undefined) => Partial<R> | typeof REMOVE | undefined,
): Promise<R> {
  for (let attempt = 1; ; attempt++) {
    const old = await readOne(ctx.pool, def, shopId, id);
    const patch = compute(old);
    if (patch === undefined || !old) return old as R;
    const u = patch === REMOVE ? prepareRemove(def, old, nowOf(ctx)) : prepareUpdate(def, old, patch, nowOf(ctx));
    if (!u) return old;
    // Group-committed with the updates of other rows of this entity that arrive meanwhile.
    const row = await groupUpdate(ctx, def).update({
      shopId,
      id,
      lockKey: lockKey(shopId, def.name, id),
      oldSeq: old.feed_seq,
      row: { ...old, ...u.set } as Record<string, unknown>,
      set: u.set,
      change: u.change,
      changeType: u.change.changeType as "update" | "delete",
      latest: u.change.latest,
      changed: u.change.changed,
    });
    if (row) {
      ctx.onCommit?.({ shopId, events: [`${def.name}:${u.change.changeType}`], xid: row.feed_xid });
      return row;
    }
    if (attempt >= 50) throw new Error(`${def.name} ${id}: gave up after ${attempt} concurrent-update retries`);
    await backoff(Math.min(attempt, 5));
  }
}
