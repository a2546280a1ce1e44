/** Opens the configured database: DATABASE_URL, or the embedded PostgreSQL when it is unset. */
import type { Config } from "../config.ts";
import type { Logger } from "../logger.ts";
import { startEmbeddedPostgres } from "./embedded.ts";
import { createPool, type Pool } from "./pool.ts";

export interface Database {
  url: string;
  /** Shop data, API keys, webhooks: every commit durable. */
  pool: Pool;
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
  const pool = createPool(url, config.dbPoolSize);
  const deliveryPool = createPool(url, config.deliveryPoolSize, { synchronousCommit: false });
  return {
    url,
    pool,
    deliveryPool,
    close: async () => {
      await pool.end();
      await deliveryPool.end();
      await stopEmbedded();
    },
  };
}
