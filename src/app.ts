/**
 * The service: database, migrations, API server on one port. `buildApp` wires it, `start`
 * listens, `stop` shuts down in order (no new requests, in-flight ones finish, then the database).
 */
import type { Config } from "./config.ts";
import type { AppContext } from "./context.ts";
import { authInterceptor } from "./api/auth.ts";
import { edgeInterceptor } from "./api/errors.ts";
import { routes } from "./api/routes.ts";
import { openDatabase, type Database } from "./db/database.ts";
import { loadMigrations, migrate, migrationsApplied } from "./db/migrate.ts";
import { IdAllocator } from "./db/ids.ts";
import { cursorSecret } from "./db/sql/settings.ts";
import { startBoss } from "./jobs/boss.ts";
import { createLogger, type Logger } from "./logger.ts";
import type { PgBoss } from "pg-boss";
import { Cursors } from "./api/paging.ts";
import { createHttpHandler } from "./server/http-handler.ts";
import { createOnePortServer } from "./server/one-port.ts";

export interface App extends AppContext {
  db: Database;
  boss: PgBoss;
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  port: number;
  stop(): Promise<void>;
}

export async function startApp(config: Config, log: Logger = createLogger(config.logLevel)): Promise<App> {
  const db = await openDatabase(config, log);
  let boss: PgBoss | undefined;
  try {
    const applied = await migrate(db.pool);
    if (applied.length) log.info({ applied }, "migrations applied");
    const latest = Math.max(0, ...(await loadMigrations()).map((m) => m.version));
    const { rows: settings } = await db.pool.query<{ cursor_secret: string }>(cursorSecret());
    const ctx: AppContext = { config, pool: db.pool, log, cursors: new Cursors(settings[0]!.cursor_secret), ids: new IdAllocator(db.pool) };
    boss = await startBoss(ctx, db.url);

    const server = createOnePortServer(
      createHttpHandler({
        routes: routes(ctx),
        interceptors: [edgeInterceptor(log), authInterceptor(db.pool)],
        bodyLimitBytes: config.bodyLimitBytes,
        log,
        ready: () => migrationsApplied(db.pool, latest),
      }),
    );
    const address = await server.listen(config.port, config.host);
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    const url = `http://${host}:${address.port}`;
    log.info({ url, port: address.port }, "listening");

    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        log.info({ inFlight: server.inFlight() }, "shutting down");
        await server.close(config.shutdownTimeoutMs);
        await boss?.stop({ graceful: true, timeout: config.shutdownTimeoutMs });
        await db.close();
        log.info("stopped");
      })());
    return { ...ctx, db, boss, url, port: address.port, stop };
  } catch (err) {
    await boss?.stop({ graceful: false }).catch(() => undefined);
    await db.close().catch(() => undefined);
    throw err;
  }
}
