/** Opens the configured database: DATABASE_URL, or the embedded PostgreSQL when it is unset. */
import type { Config } from "../config.ts";
import type { Logger } from "../logger.ts";
import { startEmbeddedPostgres } from "./embedded.ts";
import { assertSessionConnection, createPool, type Pool } from "./pool.ts";

export interface Database {
  /** The direct URL (DATABASE_URL): sessions of their own (LISTEN, heartbeat, pg-boss). */
  url: string;
  /** Shop data, API keys, webhooks: every commit durable. Through the pooler, when one is set. */
  pool: Pool;
  /** Reads the API serves (List*, GetChanges, Get*): the replica when one is set, else `pool`. */
  readPool: Pool;
  /** Direct sessions: migrations (their advisory lock), the CLI. */
  directPool: Pool;
  /** Delivery bookkeeping (cursors, batches, leases): commits without waiting for the WAL flush. */
  deliveryPool: Pool;
  close(): Promise<void>;
}

export async function openDatabase(config: Config, log: Logger): Promise<Database> {
  let url = config.databaseUrl;
  let stopEmbedded = async () => {};
  if (!url) {
    const started = performance.now();
    const pg = await startEmbeddedPostgres({ dataDir: config.embeddedDataDir, port: config.embeddedPort });
    log.info({ dataDir: config.embeddedDataDir, port: config.embeddedPort, ms: Math.round(performance.now() - started) }, "embedded postgres up");
    url = pg.url;
    stopEmbedded = pg.stop;
  }
  try {
    await assertSessionConnection(url);
  } catch (err) {
    await stopEmbedded();
    throw err;
  }
  const directPool = createPool(url, config.apiDatabaseUrl ? 4 : config.dbPoolSize);
  const pool = config.apiDatabaseUrl ? createPool(config.apiDatabaseUrl, config.dbPoolSize, { pooler: true, name: "shophook api (pooled)" }) : directPool;
  const readPool = config.readDatabaseUrl ? createPool(config.readDatabaseUrl, config.dbPoolSize, { name: "shophook reads" }) : pool;
  const deliveryPool = createPool(url, config.deliveryPoolSize, { synchronousCommit: false, name: "shophook delivery" });
  const pools = [...new Set([directPool, pool, readPool, deliveryPool])];
  return {
    url,
    pool,
    readPool,
    directPool,
    deliveryPool,
    close: async () => {
      for (const p of pools) await p.end();
      await stopEmbedded();
    },
  };
}
