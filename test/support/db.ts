/**
 * Each test file gets its own database, cloned from the migrated template (test/support/app.ts
 * drops it when every test of the file passed, and keeps it as evidence when one failed).
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { inject } from "vitest";
import { startEmbeddedPostgres } from "../../src/db/embedded.ts";
import { migrate } from "../../src/db/migrate.ts";
import { createPool } from "../../src/db/pool.ts";
import { freePort, withDatabase } from "./urls.ts";

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

/**
 * A PostgreSQL cluster of this file's own (embedded, in a temp dir), with a migrated database.
 * For tests that hold a writing transaction open on purpose (a stalled feed): the horizon is
 * cluster-wide, so on the shared cluster they would hold back every other file's reads, and
 * those of any other suite running against the same server.
 */
export async function createPrivateDatabase(): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "shophook-private-pg-"));
  await fs.chmod(dir, 0o755);
  const server = await startEmbeddedPostgres({ dataDir: path.join(dir, "data"), port: await freePort(), settings: { fsync: "off", max_connections: "100" } });
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  await admin.query("CREATE DATABASE shophook");
  await admin.end();
  const url = withDatabase(server.url, "shophook");
  const pool = createPool(url, 2);
  await migrate(pool);
  await pool.end();
  return {
    url,
    stop: async () => {
      await server.stop();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
