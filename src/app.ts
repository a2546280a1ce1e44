/**
 * The service: database, migrations, pg-boss, the delivery engine and the API server on one
 * port. `startApp` wires and starts it; `stop` shuts down in order: no new requests and the
 * in-flight ones finish, deliveries in flight finish, then pg-boss, then the database.
 */
import type { PgBoss } from "pg-boss";
import { authInterceptor, checkAuthorization } from "./api/auth.ts";
import { edgeInterceptor } from "./api/errors.ts";
import { Cursors } from "./api/paging.ts";
import { routes } from "./api/routes.ts";
import { type Clock, systemClock } from "./clock.ts";
import type { Config } from "./config.ts";
import type { AppContext } from "./context.ts";
import { dashboardRoute } from "./dashboard/route.ts";
import { openDatabase, type Database } from "./db/database.ts";
import { IdAllocator } from "./db/ids.ts";
import { loadMigrations, migrate, migrationsApplied } from "./db/migrate.ts";
import { cursorSecret } from "./db/sql/settings.ts";
import { USER_AGENT } from "./delivery/attempt.ts";
import { CommitSignal } from "./delivery/commit-signal.ts";
import { createWakeQueue, DeliveryEngine, scheduleWakes } from "./delivery/engine.ts";
import { History } from "./delivery/history.ts";
import { HttpSender } from "./delivery/http-sender.ts";
import { AddressPolicy } from "./delivery/ssrf.ts";
import { startBoss } from "./jobs/boss.ts";
import { createLogger, type Logger } from "./logger.ts";
import { createHttpHandler } from "./server/http-handler.ts";
import { createOnePortServer } from "./server/one-port.ts";
import { metricsRoute, plainRoutes } from "./server/plain-routes.ts";
import { Metrics } from "./metrics.ts";

export interface App extends AppContext {
  db: Database;
  metrics: Metrics;
  boss: PgBoss;
  /** Undefined when SHOPHOOK_DELIVERY_ENABLED=false. */
  delivery: DeliveryEngine | undefined;
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  port: number;
  stop(): Promise<void>;
}

export interface AppDeps {
  /** Retry-scheduling time; tests pass a clock they move by hand. */
  clock?: Clock;
}

export async function startApp(config: Config, log: Logger = createLogger(config.logLevel), deps: AppDeps = {}): Promise<App> {
  const db = await openDatabase(config, log);
  let boss: PgBoss | undefined;
  let delivery: DeliveryEngine | undefined;
  let sender: HttpSender | undefined;
  try {
    const applied = await migrate(db.directPool, { log });
    if (applied.length) log.info({ applied }, "migrations applied");
    const latest = Math.max(0, ...(await loadMigrations()).map((m) => m.version));
    const { rows: settings } = await db.pool.query<{ cursor_secret: string }>(cursorSecret());
    const ctx: AppContext = {
      config,
      pool: db.pool,
      readPool: db.readPool,
      log,
      cursors: new Cursors(settings[0]!.cursor_secret),
      ids: new IdAllocator(db.pool),
      clock: deps.clock ?? systemClock,
    };
    const policy = new AddressPolicy(config.webhookAllowPrivate, config.dnsServers);
    sender = new HttpSender(policy, { timeoutMs: config.deliveryTimeoutMs, userAgent: USER_AGENT });
    const history = new History(db.deliveryPool, ctx.ids, log);
    const metrics = new Metrics(db.pool);
    boss = await startBoss(ctx, db.url);
    await createWakeQueue(boss);
    // Peers learn of webhook changes here by NOTIFY (delivery/commit-signal.ts); of commits, by the commits' own NOTIFY.
    const signal = new CommitSignal(db.pool, (err) => log.warn({ error: err.message }, "notify failed; peers find it at their next poll"));
    if (config.deliveryEnabled) {
      const engine = await DeliveryEngine.start({ ...ctx, pool: db.deliveryPool }, boss, sender, history, metrics, db.url);
      delivery = engine;
      ctx.onCommit = (c) => engine.committed(c);
    } else ctx.notifyCommits = true;
    ctx.webhooksChanged = (shopId) => {
      delivery?.invalidate(shopId);
      signal.webhooksChanged(shopId);
    };

    // A lost wake-up only delays a webhook until the sweep: logged, never an RPC's failure.
    const queue = boss;
    const wake = (id: string) =>
      void scheduleWakes(queue, [id]).catch((err: unknown) => log.warn({ webhookId: id, error: (err as Error).message }, "wake-up failed; the sweep delivers"));
    const server = createOnePortServer(
      createHttpHandler({
        // A delivery-only instance serves probes and metrics, no RPCs.
        routes: config.apiEnabled ? routes(ctx, { validation: { allowHttp: config.webhookAllowHttp, policy }, sender, history, metrics, wake }) : () => undefined,
        interceptors: [edgeInterceptor(log, metrics), authInterceptor(db.pool)],
        authorize: async (header) => {
          const auth = await checkAuthorization(db.pool, header);
          return "error" in auth ? auth.error : undefined;
        },
        refused: (rpc, code) => metrics.rpcs.inc({ rpc, code }),
        extra: plainRoutes(config.apiEnabled ? [metricsRoute(metrics, config.metricsToken), dashboardRoute(log)] : [metricsRoute(metrics, config.metricsToken)]),
        bodyLimitBytes: config.bodyLimitBytes,
        log,
        ready: () => migrationsApplied(db.pool, latest),
      }),
      {
        limits: config.connections,
        tls: config.tls,
        onTls: (event, err) =>
          event === "reloaded" ? log.info({ cert: config.tls?.certFile }, "TLS certificate reloaded") : log.error({ cert: config.tls?.certFile, error: err?.message }, "TLS certificate reload failed; serving the previous one"),
      },
    );
    const address = await server.listen(config.port, config.host);
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    const url = `${config.tls ? "https" : "http"}://${host}:${address.port}`;
    log.info({ url, port: address.port }, "listening");

    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        log.info({ inFlight: server.inFlight(), deliveries: delivery?.deliverer.busy ?? 0 }, "shutting down");
        await server.close(config.shutdownTimeoutMs);
        await delivery?.stop(config.shutdownTimeoutMs);
        await signal.flush();
        await sender?.close();
        await boss?.stop({ graceful: true, timeout: config.shutdownTimeoutMs });
        await db.close();
        log.info("stopped");
      })());
    return { ...ctx, db, boss, delivery, metrics, url, port: address.port, stop };
  } catch (err) {
    await delivery?.stop(0).catch(() => undefined);
    await sender?.close();
    await boss?.stop({ graceful: false }).catch(() => undefined);
    await db.close().catch(() => undefined);
    throw err;
  }
}
