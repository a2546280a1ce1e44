/**
 * Numbered plain-SQL migrations from migrations/NNNN_name.sql, applied at start in version
 * order, each in its own transaction together with its schema_migrations row. A file whose first
 * line is `-- shophook: no-transaction` runs outside a transaction, statement by statement (what
 * CREATE INDEX CONCURRENTLY needs), and is recorded once every statement has succeeded.
 *
 * One session-level advisory lock, held on one connection for the whole run, serialises
 * instances that start together: each migration is applied once. The rules that let old and new
 * instances run side by side while one migrates (and the measured cost): docs/migrations.md.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { PoolClient } from "pg";
import { projectRoot } from "../config.ts";
import type { Logger } from "../logger.ts";
import type { Pool } from "./pool.ts";

const migrationsDir = path.join(projectRoot, "migrations");
/** Arbitrary constant: the advisory lock that serialises migrators ("shopmig" in ASCII). */
const MIGRATION_LOCK = 0x73686f706d6967n.toString();
/** First line of a migration that must run outside a transaction. */
export const NO_TRANSACTION_MARKER = "-- shophook: no-transaction";
/** SQLSTATE lock_not_available: a statement gave up waiting after lock_timeout. */
const LOCK_NOT_AVAILABLE = "55P03";

export interface Migration {
  version: number;
  name: string;
  sql: string;
  /** false when the file starts with NO_TRANSACTION_MARKER: statement by statement, no transaction. */
  transaction: boolean;
}

export interface MigrateOptions {
  /** The migrations to apply; default: every file in migrations/ (loadMigrations). */
  migrations?: Migration[];
  /**
   * lock_timeout of each migration statement, in ms (default 5000). A DDL statement waiting for
   * its lock queues every later writer of the table behind it; past this it gives up instead.
   * Not applied to CONCURRENTLY statements: their waits queue no writer (see applyStatements).
   */
  lockTimeoutMs?: number;
  /** How many times a migration that met lock_timeout is tried in all (default 5). */
  lockAttempts?: number;
  /** Where waiting for another migrator (info) and a retry after lock_timeout (warn) are logged. */
  log?: Logger;
}

/** A migration that failed: the message names it; PostgreSQL's error is the cause, its SQLSTATE the code. */
export class MigrationError extends Error {
  readonly version: number;
  readonly code: string | undefined;
  constructor(m: Migration, cause: unknown) {
    super(`migration ${String(m.version).padStart(4, "0")}_${m.name} failed: ${(cause as Error).message}`, { cause });
    this.name = "MigrationError";
    this.version = m.version;
    this.code = (cause as { code?: string }).code;
  }
}

/** A migration from its file name (NNNN_name.sql) and text. */
export function parseMigration(file: string, sql: string): Migration {
  const m = /^(\d+)_(.+)\.sql$/.exec(file);
  if (!m) throw new Error(`migration file name must be NNNN_name.sql: ${file}`);
  const firstLine = sql.split("\n", 1)[0]!.trim();
  return { version: Number(m[1]), name: m[2]!, sql, transaction: firstLine !== NO_TRANSACTION_MARKER };
}

/** The migrations in `dir` (default: the project's migrations/), in version order. */
export async function loadMigrations(dir = migrationsDir): Promise<Migration[]> {
  const files = (await fs.readdir(dir)).filter((f) => f.endsWith(".sql")).sort();
  return Promise.all(files.map(async (file) => parseMigration(file, await fs.readFile(path.join(dir, file), "utf8"))));
}

/** Applies pending migrations; returns the versions it applied. */
export async function migrate(pool: Pool, opts: MigrateOptions = {}): Promise<number[]> {
  const migrations = inVersionOrder(opts.migrations ?? (await loadMigrations()));
  const settings = { lockTimeoutMs: opts.lockTimeoutMs ?? 5_000, lockAttempts: opts.lockAttempts ?? 5, log: opts.log };
  const client = await pool.connect();
  try {
    await lockMigrations(client, settings.log);
    try {
      await client.query("SELECT set_config('lock_timeout', $1, false)", [`${settings.lockTimeoutMs}ms`]);
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      const { rows } = await client.query<{ version: number }>("SELECT version FROM schema_migrations");
      const done = new Set(rows.map((r) => r.version));
      const applied: number[] = [];
      for (const m of migrations) {
        if (done.has(m.version)) continue;
        await withLockRetries(m, settings, () => (m.transaction ? applyInTransaction(client, m) : applyStatements(client, m, settings.lockTimeoutMs))).catch(
          (err: unknown) => {
            throw new MigrationError(m, err);
          },
        );
        applied.push(m.version);
      }
      return applied;
    } finally {
      // Ending the session below releases the lock anyway; this only frees it a moment sooner.
      await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => undefined);
    }
  } finally {
    // Destroyed, not returned to the pool: it carries session settings (lock_timeout).
    client.release(true);
  }
}

/** True when every known migration is applied (readiness). */
export async function migrationsApplied(pool: Pool, latest: number): Promise<boolean> {
  const { rows } = await pool.query<{ v: number | null }>("SELECT max(version) AS v FROM schema_migrations");
  return (rows[0]?.v ?? 0) >= latest;
}

function inVersionOrder(migrations: Migration[]): Migration[] {
  const sorted = [...migrations].sort((a, b) => a.version - b.version);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.version === sorted[i - 1]!.version) throw new Error(`two migrations with version ${sorted[i]!.version}`);
  }
  return sorted;
}

/**
 * Takes the session-level migration lock, polling pg_try_advisory_lock. Not the blocking
 * pg_advisory_lock: a statement blocked on it keeps its snapshot, CREATE INDEX CONCURRENTLY in
 * the lock holder waits for every older snapshot to end, and PostgreSQL breaks that cycle by
 * failing one of them (deadlock detected). Between polls the waiter holds no snapshot.
 */
async function lockMigrations(client: PoolClient, log: Logger | undefined): Promise<void> {
  for (let wait = 20; ; wait = Math.min(wait * 2, 500)) {
    const { rows } = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_lock($1) AS locked", [MIGRATION_LOCK]);
    if (rows[0]!.locked) return;
    if (wait === 20) log?.info("another instance is migrating the database; waiting for it");
    await sleep(wait / 2 + Math.random() * wait);
  }
}

async function applyInTransaction(client: PoolClient, m: Migration): Promise<void> {
  await client.query("BEGIN");
  try {
    await client.query(m.sql);
    await record(client, m);
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}

/**
 * A no-transaction migration: each statement on its own (autocommit), recorded after the last.
 * A rerun after a failure runs every statement again, so each must be idempotent (IF NOT EXISTS).
 * CREATE INDEX CONCURRENTLY that failed halfway leaves an INVALID index of its name, which
 * IF NOT EXISTS would then skip: so an invalid index of the name a CREATE INDEX CONCURRENTLY
 * statement gives is dropped (concurrently) before it runs. CONCURRENTLY statements run without
 * lock_timeout: their SHARE UPDATE EXCLUSIVE lock queues no row writer, and they wait for older
 * transactions to end, which lock_timeout would turn into a failed build.
 */
async function applyStatements(client: PoolClient, m: Migration, lockTimeoutMs: number): Promise<void> {
  for (const statement of splitStatements(m.sql)) {
    const concurrently = CONCURRENTLY.test(statement);
    await client.query("SELECT set_config('lock_timeout', $1, false)", [concurrently ? "0" : `${lockTimeoutMs}ms`]);
    const index = createdIndexName(statement);
    if (concurrently && index !== undefined) await dropInvalidIndex(client, index);
    await client.query(statement);
  }
  await client.query("SELECT set_config('lock_timeout', $1, false)", [`${lockTimeoutMs}ms`]);
  await record(client, m);
}

async function record(client: PoolClient, m: Migration): Promise<void> {
  await client.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
}

/** CREATE INDEX, DROP INDEX or REINDEX ... CONCURRENTLY. */
const CONCURRENTLY = /^\s*(?:CREATE\s+(?:UNIQUE\s+)?INDEX|DROP\s+INDEX|REINDEX\s+(?:\([^)]*\)\s*)?(?:INDEX|TABLE|SCHEMA|DATABASE|SYSTEM))\s+CONCURRENTLY\b/i;

/** The index a CREATE [UNIQUE] INDEX [CONCURRENTLY] [IF NOT EXISTS] statement names, as written. */
function createdIndexName(statement: string): string | undefined {
  const m = /^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?("(?:[^"]|"")+"|[A-Za-z_][\w$]*)\s+ON\b/i.exec(statement);
  return m?.[1];
}

async function dropInvalidIndex(client: PoolClient, name: string): Promise<void> {
  // The name goes in as a value; PostgreSQL quotes it back (regclass output) for the DROP.
  const { rows } = await client.query<{ drop: string }>(
    "SELECT format('DROP INDEX CONCURRENTLY IF EXISTS %s', indexrelid::regclass) AS drop FROM pg_index WHERE indexrelid = to_regclass($1) AND NOT indisvalid",
    [name],
  );
  if (rows[0]) await client.query(rows[0].drop);
}

/** Runs `apply` again, after a pause, while it fails on lock_timeout (the attempt rolled back). */
async function withLockRetries(m: Migration, s: { lockAttempts: number; log: Logger | undefined }, apply: () => Promise<void>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await apply();
    } catch (err) {
      if ((err as { code?: string }).code !== LOCK_NOT_AVAILABLE || attempt >= s.lockAttempts) throw err;
      s.log?.warn({ version: m.version, name: m.name, attempt, of: s.lockAttempts }, "migration gave up waiting for a lock (lock_timeout); trying again");
      // The pause lets the writers that queued behind the waiting DDL through.
      await sleep(250 * attempt);
    }
  }
}

/**
 * Splits SQL text into statements at top-level semicolons, leaving out comments; quoted strings,
 * quoted identifiers and dollar-quoted bodies are kept whole.
 */
export function splitStatements(sql: string): string[] {
  const statements: string[] = [];
  let current = "";
  let i = 0;
  const skipTo = (end: number) => {
    current += sql.slice(i, end);
    i = end;
  };
  while (i < sql.length) {
    const c = sql[i]!;
    if (sql.startsWith("--", i)) {
      const end = sql.indexOf("\n", i);
      i = end < 0 ? sql.length : end;
    } else if (sql.startsWith("/*", i)) {
      let depth = 0;
      do {
        const step = sql.startsWith("/*", i) ? 1 : sql.startsWith("*/", i) ? -1 : 0;
        depth += step;
        i += step ? 2 : 1;
      } while (depth > 0 && i < sql.length);
      current += " ";
    } else if (c === "'" || c === '"') {
      // A doubled quote inside is part of the text; E'' strings may also escape it with a backslash.
      const escapes = c === "'" && /[eE]$/.test(current) && !/[\w$][eE]$/.test(current);
      let j = i + 1;
      while (j < sql.length && !(sql[j] === c && sql[j + 1] !== c)) j += sql[j] === c || (escapes && sql[j] === "\\") ? 2 : 1;
      skipTo(Math.min(j + 1, sql.length));
    } else if (c === "$" && !/[\w$]$/.test(current)) {
      const tag = /^\$(?:[A-Za-z_]\w*)?\$/.exec(sql.slice(i, i + 64))?.[0];
      if (tag) {
        const end = sql.indexOf(tag, i + tag.length);
        skipTo(end < 0 ? sql.length : end + tag.length);
      } else skipTo(i + 1);
    } else if (c === ";") {
      if (current.trim()) statements.push(current.trim());
      current = "";
      i++;
    } else skipTo(i + 1);
  }
  if (current.trim()) statements.push(current.trim());
  return statements;
}
