/**
 * Migrations a running fleet survives (docs/migrations.md): an index built CONCURRENTLY on a
 * 1,000,000-row changes table while writes and a GetChanges poller run through the real server,
 * against the same index built in a transaction; two migrators at once; a failed concurrent build
 * run again; lock_timeout. The load figures are printed (console.log) and copied into the doc.
 * MIGRATION_TEST_ROWS sets the table's size (default 1,000,000).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { loadMigrations, migrate, type Migration, NO_TRANSACTION_MARKER, parseMigration, splitStatements } from "../src/db/migrate.ts";
import { createPool, type Pool } from "../src/db/pool.ts";
import { createLogger } from "../src/logger.ts";
import { type TestShop, useApp } from "./support/app.ts";

// Its own cluster: a migration in a transaction, and a reader holding one, stall the horizon for every other file.
const t = useApp({}, {}, { cluster: "private" });
const ROWS = Number(process.env.MIGRATION_TEST_ROWS ?? 1_000_000);

/** The test's own connections (two "instances" for the parallel case), apart from the app's pool. */
const pools: (Pool | undefined)[] = [];
function db(i = 0): Pool {
  return (pools[i] ??= createPool(t.dbUrl, 4));
}
afterAll(async () => {
  for (const p of pools) await p?.end();
});

async function until(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function indexValid(name: string): Promise<boolean | undefined> {
  const { rows } = await db().query<{ valid: boolean }>("SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass($1)", [name]);
  return rows[0]?.valid;
}

interface LoadFigures {
  /** How long the migration took. */
  migrationMs: number;
  /** Writes acknowledged (HTTP 200) and failed, over the whole run. */
  writes: number;
  failed: number;
  /** Longest time between two consecutive acknowledged writes. */
  maxAckGapMs: number;
  /** Longest request time of one write. */
  maxWriteMs: number;
  /** Longest time from a write's acknowledgement to its change in the poller's GetChanges page. */
  maxFeedLagMs: number;
  /** Longest time from a write's request to its change in the poller's page. */
  maxSentToFeedMs: number;
  /** Longest time pg_snapshot_xmin(pg_current_snapshot()) (the feed horizon) stayed at one value. */
  maxHorizonStillMs: number;
}

/**
 * Runs `migration` while two writers create products through the API, a poller pages
 * GetChanges and a sampler reads the feed horizon, all continuously from before it starts to
 * after it ends.
 */
async function underLoad(shop: TestShop, migration: () => Promise<unknown>): Promise<LoadFigures> {
  let running = true;
  const acks: { sent: number; acked: number; id: string }[] = [];
  let failed = 0;
  const writer = async (w: number) => {
    for (let i = 0; running; i++) {
      const sent = performance.now();
      const res = await shop.post("/v1/shop.Product/CreateProduct", { name: `w${w}.${i}` }).catch(() => undefined);
      if (res?.status === 200) acks.push({ sent, acked: performance.now(), id: res.body.id as string });
      else failed++;
    }
  };
  const seen = new Map<string, number>();
  const poller = async () => {
    let after: string | undefined;
    // Runs on until the writers have stopped and it has seen every write they had acknowledged.
    const deadline = () => writersDone !== undefined && performance.now() - writersDone > 10_000;
    while (writersDone === undefined || (!acks.every((a) => seen.has(a.id)) && !deadline())) {
      const res = await shop.post("/v1/shop.History/GetChanges", { paging: { after, limit: 1000 } });
      if (res.status !== 200) throw new Error(`GetChanges: ${res.status} ${JSON.stringify(res.body)}`);
      const now = performance.now();
      for (const c of res.body.changes as { entity_id: string }[]) if (!seen.has(c.entity_id)) seen.set(c.entity_id, now);
      after = res.body.paging.next;
      if (!res.body.changes.length) await sleep(5); // caught up: a poll interval, not a wait for anything
    }
  };
  let maxHorizonStillMs = 0;
  const sampler = async () => {
    let last = "";
    let since = performance.now();
    while (running) {
      const { rows } = await db().query<{ h: string }>("SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS h");
      const now = performance.now();
      if (rows[0]!.h !== last) {
        last = rows[0]!.h;
        since = now;
      }
      maxHorizonStillMs = Math.max(maxHorizonStillMs, now - since);
      await sleep(5);
    }
  };
  let writersDone: number | undefined;
  const writers = Promise.all([writer(1), writer(2)]);
  const loops = Promise.all([writers.then(() => (writersDone = performance.now())), poller(), sampler()]);
  let migrationMs = 0;
  try {
    await until("writes before the migration", () => acks.length >= 50);
    const started = performance.now();
    await migration();
    migrationMs = performance.now() - started;
    const after = acks.length;
    await until("writes after the migration", () => acks.length >= after + 50);
  } finally {
    running = false;
    await loops;
  }
  const acked = acks.map((a) => a.acked).sort((a, b) => a - b);
  const gaps = acked.slice(1).map((x, i) => x - acked[i]!);
  const missing = acks.filter((a) => !seen.has(a.id));
  expect(missing, "every acknowledged write appears in GetChanges").toEqual([]);
  const r = (x: number) => Math.round(x);
  return {
    migrationMs: r(migrationMs),
    writes: acks.length,
    failed,
    maxAckGapMs: r(Math.max(...gaps)),
    maxWriteMs: r(Math.max(...acks.map((a) => a.acked - a.sent))),
    maxFeedLagMs: r(Math.max(...acks.map((a) => Math.max(0, seen.get(a.id)! - a.acked)))),
    maxSentToFeedMs: r(Math.max(...acks.map((a) => seen.get(a.id)! - a.sent))),
    maxHorizonStillMs: r(maxHorizonStillMs),
  };
}

describe("an index on a big table while the service runs", () => {
  it(`CONCURRENTLY (migration 0006 on ${ROWS.toLocaleString("en")} changes): every write acknowledged, the feed never stalls; in a transaction it stalls`, async () => {
    const bulk = await t.shop("bulk");
    const shop = await t.shop("writer");
    // This database as before the upgrade that brings 0006.
    await db().query("DROP INDEX changes_shop_entity_position");
    await db().query("DELETE FROM schema_migrations WHERE version = 6");

    const filling = performance.now();
    const entities = ["product", "variant", "inventory_level", "customer", "order", "fulfillment"];
    // In batches of tens of milliseconds each: one transaction over all of it would hold the
    // horizon of every feed in the cluster (other test files' too) for seconds.
    const BATCH = 20_000;
    for (let from = 1; from <= ROWS; from += BATCH) {
      await db().query(
        `INSERT INTO changes (id, shop_id, entity, entity_id, change_type, time, latest)
         SELECT nextval('changes_id_seq'), $1, ($2::text[])[1 + g % 6], g, 'create', now(), '{"product": {"name": "bulk"}}'
         FROM generate_series($3::int, $4::int) g`,
        [bulk.id, entities, from, Math.min(from + BATCH - 1, ROWS)],
      );
    }
    const fillMs = Math.round(performance.now() - filling);

    let applied: number[] = [];
    const concurrent = await underLoad(shop, async () => (applied = await migrate(db())));
    expect(applied).toEqual([6]);
    expect(await indexValid("changes_shop_entity_position")).toBe(true);

    // Holds an xid for the whole build: every feed in the cluster waits meanwhile, other test
    // files' included when they run in parallel (CI's two cores run files one at a time).
    const inTransaction = parseMigration("9001_changes_entity_position_locked.sql", "CREATE INDEX changes_entity_position_locked ON changes (shop_id, entity, xid, id);");
    const migrations = [...(await loadMigrations()), inTransaction];
    const locked = await underLoad(shop, async () => (applied = await migrate(db(), { migrations })));
    expect(applied).toEqual([9001]);

    console.log(`migrations under load: ${ROWS} rows filled in ${fillMs} ms`);
    console.table({ "CONCURRENTLY, no transaction (0006)": concurrent, "in a transaction (9001)": locked });

    expect(concurrent.failed).toBe(0);
    expect(concurrent.maxAckGapMs).toBeLessThan(500);
    expect(concurrent.maxFeedLagMs).toBeLessThan(1000);
    expect(concurrent.maxSentToFeedMs).toBeLessThan(1000);
    // The transaction's index build holds the table's SHARE lock (writes wait) and an xid (the horizon waits).
    expect(locked.failed).toBe(0);
    expect(locked.maxSentToFeedMs).toBeGreaterThan(concurrent.maxSentToFeedMs);
    expect(locked.maxHorizonStillMs).toBeGreaterThan(concurrent.maxHorizonStillMs);
  }, 120_000);
});

describe("the runner", () => {
  it("two instances migrating at once apply each migration once, a CONCURRENTLY build among them", async () => {
    const extra = [
      parseMigration(
        "9101_par_table.sql",
        "CREATE TABLE mig_par (k int); CREATE TABLE mig_par_runs (version int); INSERT INTO mig_par SELECT generate_series(1, 200000); INSERT INTO mig_par_runs VALUES (9101);",
      ),
      // Counts its runs: a no-transaction file is not atomic, so this shows it ran once.
      parseMigration("9102_par_index.sql", `${NO_TRANSACTION_MARKER}\nINSERT INTO mig_par_runs VALUES (9102);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS mig_par_k ON mig_par (k);`),
      parseMigration("9103_par_column.sql", "ALTER TABLE mig_par ADD COLUMN note text; INSERT INTO mig_par_runs VALUES (9103);"),
    ];
    const migrations: Migration[] = [...(await loadMigrations()), ...extra];
    const results = await Promise.all([migrate(db(0), { migrations }), migrate(db(1), { migrations })]);
    // One applies all three; the other polls for the lock meanwhile (a blocking pg_advisory_lock
    // would deadlock with the CONCURRENTLY build) and finds nothing left to do.
    expect(results.map((r) => r.join()).sort()).toEqual(["", "9101,9102,9103"]);
    const { rows } = await db().query<{ version: number; n: number }>("SELECT version, count(*)::int AS n FROM mig_par_runs GROUP BY version ORDER BY version");
    expect(rows).toEqual([9101, 9102, 9103].map((version) => ({ version, n: 1 })));
    expect(await indexValid("mig_par_k")).toBe(true);
  });

  it("a CREATE INDEX CONCURRENTLY that failed halfway (an INVALID index left) succeeds when run again", async () => {
    await db().query("CREATE TABLE mig_dups (id int PRIMARY KEY, k int)");
    await db().query("INSERT INTO mig_dups SELECT g, g FROM generate_series(1, 10000) g");
    await db().query("INSERT INTO mig_dups VALUES (10001, 7)");
    const m = parseMigration("9201_unique_k.sql", `${NO_TRANSACTION_MARKER}\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS mig_dups_k ON mig_dups (k);`);

    await expect(migrate(db(), { migrations: [m] })).rejects.toMatchObject({ code: "23505", message: expect.stringMatching(/^migration 9201_unique_k failed: /) });
    expect(await indexValid("mig_dups_k")).toBe(false); // what IF NOT EXISTS alone would then skip
    expect((await db().query("SELECT 1 FROM schema_migrations WHERE version = 9201")).rowCount).toBe(0);

    await db().query("DELETE FROM mig_dups WHERE id = 10001");
    expect(await migrate(db(), { migrations: [m] })).toEqual([9201]);
    expect(await indexValid("mig_dups_k")).toBe(true);

    // Built, then the process died before recording it: the rerun keeps the valid index.
    const n = parseMigration("9202_k_id.sql", `${NO_TRANSACTION_MARKER}\nCREATE INDEX CONCURRENTLY IF NOT EXISTS mig_dups_k_id ON mig_dups (k, id);`);
    await db().query("CREATE INDEX mig_dups_k_id ON mig_dups (k, id)");
    const before = await db().query("SELECT to_regclass('mig_dups_k_id')::oid AS oid");
    expect(await migrate(db(), { migrations: [n] })).toEqual([9202]);
    expect((await db().query("SELECT to_regclass('mig_dups_k_id')::oid AS oid")).rows).toEqual(before.rows);
  });

  it("a migration waiting for a lock gives up after lock_timeout, lets the writers queued behind it through, and tries again", async () => {
    await db().query("CREATE TABLE mig_locked (k int)");
    const warnings: { msg: string; attempt: number }[] = [];
    const log = createLogger("warn", { write: (line: string) => void warnings.push(JSON.parse(line)) });
    const m = parseMigration("9301_locked_column.sql", "ALTER TABLE mig_locked ADD COLUMN note text;");
    const reader = await db(1).connect();
    try {
      // A long read: ACCESS SHARE on the table until it commits; the ALTER needs ACCESS EXCLUSIVE.
      await reader.query("BEGIN");
      await reader.query("SELECT count(*) FROM mig_locked");
      await expect(migrate(db(), { migrations: [m], lockTimeoutMs: 100, lockAttempts: 2 })).rejects.toMatchObject({ code: "55P03" });

      const migrating = migrate(db(), { migrations: [m], lockTimeoutMs: 200, lockAttempts: 50, log });
      await until("the ALTER waiting", async () => {
        const { rowCount } = await db().query("SELECT 1 FROM pg_locks WHERE relation = 'mig_locked'::regclass AND mode = 'AccessExclusiveLock' AND NOT granted");
        return rowCount! > 0;
      });
      // Queued behind the waiting ALTER, this write gets through when it gives up, though the reader still reads.
      const queued = performance.now();
      await db().query("INSERT INTO mig_locked VALUES (1)");
      console.log(`a write queued behind a migration waiting for its lock (lock_timeout 200 ms) waited ${Math.round(performance.now() - queued)} ms`);
      await until("the retry logged", () => warnings.length > 0);
      expect(warnings[0]).toMatchObject({ msg: expect.stringContaining("lock_timeout"), attempt: 1 });
      await reader.query("COMMIT");
      expect(await migrating).toEqual([9301]);
    } finally {
      reader.release();
    }
    expect((await db().query("SELECT note FROM mig_locked")).rows).toEqual([{ note: null }]);
  });

  it("splits a no-transaction file into statements at top-level semicolons only", () => {
    const sql = `-- shophook: no-transaction
      -- a comment; with a semicolon
      CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x); /* block; /* nested; */ */
      SELECT 'it''s; fine', E'\\'; still', "odd;""name" FROM t;
      CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;`;
    expect(splitStatements(sql)).toEqual([
      "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x)",
      `SELECT 'it''s; fine', E'\\'; still', "odd;""name" FROM t`,
      "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$",
    ]);
    expect(parseMigration("0007_x.sql", sql).transaction).toBe(false);
    expect(parseMigration("0007_x.sql", "CREATE TABLE x ();").transaction).toBe(true);
  });
});
