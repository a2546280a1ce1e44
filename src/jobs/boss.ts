/**
 * pg-boss: scheduled maintenance (and, later, delivery jobs). It keeps its own small pool and
 * its own schema (`pgboss`) in the same database.
 */
import { PgBoss } from "pg-boss";
import type { AppContext } from "../context.ts";
import { SafeClient } from "../db/pool.ts";
import { throttled } from "../logger.ts";
import { pruneExpired } from "./prune.ts";

export const PRUNE_QUEUE = "prune-expired";

export async function startBoss(ctx: AppContext, url: string): Promise<PgBoss> {
  // LISTEN/NOTIFY wakes workers of notify queues within milliseconds (polling alone: 0.5 s).
  // SafeClient: pg-boss's pool must survive a database restart too (see db/pool.ts).
  const boss = new PgBoss({ connectionString: url, max: 4, schema: "pgboss", useListenNotify: true, Client: SafeClient } as ConstructorParameters<typeof PgBoss>[0]);
  // pg-boss reports every failed poll while the database is away: log each kind once a minute.
  const report = throttled(ctx.log);
  boss.on("error", (err: unknown) => {
    const e = err as { message?: string; code?: string };
    report("error", `${e.code ?? ""}:${(e.message ?? "").replace(/\(Queue:.*$/, "")}`, { error: e.message, code: e.code }, "pg-boss error");
  });
  await boss.start();
  await boss.createQueue(PRUNE_QUEUE, { policy: "singleton", retryLimit: 3, expireInSeconds: 3600 });
  await boss.schedule(PRUNE_QUEUE, ctx.config.pruneCron);
  await boss.work(PRUNE_QUEUE, async () => {
    const { changeRetentionHours: changes, webhookBacklogMaxHours: backlog, deliveryHistoryDays: historyDays } = ctx.config;
    const result = await pruneExpired(ctx.pool, { changes, backlog, historyDays }, ctx.clock.now());
    ctx.log.info(result, "pruned expired changes, tombstones and delivery history");
    return result;
  });
  return boss;
}
