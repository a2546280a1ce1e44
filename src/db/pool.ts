/** The PostgreSQL connection pool and the transaction helper every write goes through. */
import pg from "pg";

export type Pool = pg.Pool;
export type Tx = pg.PoolClient;

const TIMESTAMPTZ_OID = 1184;
const defaultTimestamptz = pg.types.getTypeParser(TIMESTAMPTZ_OID);

/**
 * timestamptz in our sessions' UTC: "YYYY-MM-DD HH:MM:SS[.ffffff]+00". pg's general parser was
 * the largest single cost of reading a page (a regexp per value); this fast path hands the
 * ISO form to Date. Anything else (infinity, BC dates) goes to pg's parser.
 */
function parseTimestamptz(s: string): Date {
  if (s.length >= 22 && s[10] === " " && s.endsWith("+00")) return new Date(`${s.slice(0, 10)}T${s.slice(11, -3)}Z`);
  return defaultTimestamptz(s) as Date;
}

const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === TIMESTAMPTZ_OID && format !== "binary" ? parseTimestamptz : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/**
 * A pg Client that always has an 'error' listener. pg-pool listens on idle clients only: when the
 * server goes away (restart, terminated backend) while a client is checked out between queries,
 * pg emits 'error' on it, and with no listener Node kills the process. The query in flight still
 * gets its error, and pg-pool drops the broken client on release; this only keeps the process up.
 * Also handed to pg-boss's own pool (its config reaches pg.Pool as is).
 */
export class SafeClient extends pg.Client {
  constructor(config?: string | pg.ClientConfig) {
    super(config);
    this.on("error", () => undefined);
  }
}

export interface PoolOptions {
  /**
   * false: commits do not wait for the WAL flush (synchronous_commit=off). Only for writes whose
   * loss in a PostgreSQL crash is harmless: delivery bookkeeping (a lost cursor move means a batch
   * is sent again, which at-least-once allows). Never for shop data.
   */
  synchronousCommit?: boolean;
}

export function createPool(url: string, max: number, opts: PoolOptions = {}): Pool {
  // int8 stays a string (pg's default): ids are int64 and must not lose precision.
  const pool = new pg.Pool({
    connectionString: url,
    max,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
    // UTC sessions: timestamps read back in the form parseTimestamptz expects.
    options: opts.synchronousCommit === false ? "-c TimeZone=UTC -c synchronous_commit=off" : "-c TimeZone=UTC",
    types,
    Client: SafeClient,
  });
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
