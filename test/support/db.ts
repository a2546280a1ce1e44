/**
 * Each test file gets its own database, cloned from the migrated template (test/support/app.ts
 * drops it when every test of the file passed, and keeps it as evidence when one failed).
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { inject } from "vitest";
import { withDatabase } from "./urls.ts";

export async function createTestDatabase(): Promise<string> {
  const adminUrl = inject("adminUrl");
  const name = `shophook_t_${randomBytes(5).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${inject("templateDb")}`);
  } finally {
    await admin.end();
  }
  return withDatabase(adminUrl, name);
}

export async function dropTestDatabase(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  const admin = new pg.Client({ connectionString: inject("adminUrl") });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

/**
 * True once every change the shop has is below the feed horizon, so an empty page from here on
 * means "caught up". An empty page alone does not: a transaction open anywhere in the cluster
 * (another test's, a bench's) holds the horizon, and changes behind it are served when it ends.
 */
export async function feedSettled(pool: pg.Pool | { query: pg.Pool["query"] }, shopId: string): Promise<boolean> {
  const { rows } = await pool.query<{ settled: boolean }>(
    "SELECT pg_snapshot_xmin(pg_current_snapshot()) > coalesce(max(xid), '0'::xid8) AS settled FROM changes WHERE shop_id = $1",
    [shopId],
  );
  return rows[0]!.settled;
}
