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

/**
 * A client for a transaction-mode pooler (PgBouncer): consecutive transactions may run on
 * different server sessions, so a named prepared statement made on one is unknown on the next.
 * Names are dropped: every statement is parsed as an unnamed one (what `prepared` saves is lost
 * there, correctness is not).
 */
export class PoolerClient extends SafeClient {
  override query(...args: unknown[]): never {
    const config = args[0] as { name?: string } | undefined;
    if (config && typeof config === "object" && config.name) args[0] = { ...config, name: undefined };
    return (super.query as (...a: unknown[]) => never)(...args);
  }
}

export interface PoolOptions {
  /** application_name of its sessions (pg_stat_activity says which pool a backend serves). */
  name?: string;
  /**
   * The URL is a transaction-mode pooler: no named prepared statements, no startup options (the
   * pooler refuses `options`; UTC is then the server's default or parsed as any offset).
   */
  pooler?: boolean;
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
    application_name: opts.name ?? "shophook",
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
    // UTC sessions: timestamps read back in the form parseTimestamptz expects.
    options: opts.pooler ? undefined : opts.synchronousCommit === false ? "-c TimeZone=UTC -c synchronous_commit=off" : "-c TimeZone=UTC",
    types,
    Client: opts.pooler ? PoolerClient : SafeClient,
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

/**
 * Throws when `url` reaches PostgreSQL through a transaction-mode pooler: a session there does not
 * keep its backend between statements (checked by holding one backend in a transaction on a
 * second connection and asking the first for its backend again). LISTEN, leases (judged by the
 * heartbeat's backend), pg-boss and the migration lock all need sessions that keep theirs.
 */
export async function assertSessionConnection(url: string): Promise<void> {
  const a = new SafeClient({ connectionString: url, connectionTimeoutMillis: 10_000 });
  const b = new SafeClient({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await a.connect();
  try {
    await b.connect();
    const pid = async (c: pg.Client) => (await c.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
    const first = await pid(a);
    await b.query("BEGIN");
    await pid(b); // holds a backend (under a pooler, likely the one `a` just gave back)
    const second = await pid(a);
    await b.query("ROLLBACK");
    if (first !== second) {
      throw new Error(
        "DATABASE_URL reaches PostgreSQL through a transaction-mode pooler (its sessions change backends between statements): " +
          "LISTEN, delivery leases, pg-boss and migrations need sessions of their own. Point DATABASE_URL at PostgreSQL " +
          "(or a session-mode pool) and the pooler at SHOPHOOK_API_DATABASE_URL (docs/scaling.md).",
      );
    }
  } finally {
    await b.end().catch(() => undefined);
    await a.end().catch(() => undefined);
  }
}
