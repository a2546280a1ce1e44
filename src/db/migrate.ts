/**
 * Numbered plain-SQL migrations from migrations/NNNN_name.sql, applied at start in one
 * transaction under an advisory lock, so two instances starting together apply them once.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { projectRoot } from "../config.ts";
import type { Pool } from "./pool.ts";
import { inTx } from "./pool.ts";

const migrationsDir = path.join(projectRoot, "migrations");
/** Arbitrary constant: the advisory lock that serialises migrators ("shopmig" in ASCII). */
const MIGRATION_LOCK = 0x73686f706d6967n;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export async function loadMigrations(): Promise<Migration[]> {
  const files = (await fs.readdir(migrationsDir)).filter((f) => f.endsWith(".sql")).sort();
  return Promise.all(
    files.map(async (file) => {
      const m = /^(\d+)_(.+)\.sql$/.exec(file);
      if (!m) throw new Error(`migration file name must be NNNN_name.sql: ${file}`);
      return { version: Number(m[1]), name: m[2]!, sql: await fs.readFile(path.join(migrationsDir, file), "utf8") };
    }),
  );
}

/** Applies pending migrations; returns the versions it applied. */
export async function migrate(pool: Pool): Promise<number[]> {
  const migrations = await loadMigrations();
  return inTx(pool, async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK.toString()]);
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await tx.query<{ version: number }>("SELECT version FROM schema_migrations");
    const done = new Set(rows.map((r) => r.version));
    const applied: number[] = [];
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      await tx.query(m.sql);
      await tx.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
      applied.push(m.version);
    }
    return applied;
  });
}

/** True when every known migration is applied (readiness). */
export async function migrationsApplied(pool: Pool, latest: number): Promise<boolean> {
  const { rows } = await pool.query<{ v: number | null }>("SELECT max(version) AS v FROM schema_migrations");
  return (rows[0]?.v ?? 0) >= latest;
}
