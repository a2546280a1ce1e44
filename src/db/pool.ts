/** The PostgreSQL connection pool and the transaction helper every write goes through. */
import pg from "pg";

export type Pool = pg.Pool;
export type Tx = pg.PoolClient;

export function createPool(url: string, max: number): Pool {
  // int8 stays a string (pg's default): ids are int64 and must not lose precision.
  const pool = new pg.Pool({ connectionString: url, max, idleTimeoutMillis: 30_000, connectionTimeoutMillis: 10_000 });
  // An idle client's error (server restart, network cut) must not crash the process: the pool drops it.
  pool.on("error", () => undefined);
  return pool;
}

/** Runs `fn` in a transaction: COMMIT on success, ROLLBACK on any error (which is rethrown). */
export async function inTx<T>(pool: Pool, fn: (tx: Tx) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const result = await fn(client);
    await client.query("COMMIT");
    return result;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
