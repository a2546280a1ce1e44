/**
 * pg-boss: scheduled maintenance (and, later, delivery jobs). It keeps its own small pool and
 * its own schema (`pgboss`) in the same database.
 */
import { PgBoss } from "pg-boss";
import type { AppContext } from "../context.ts";
import { pruneExpired } from "./prune.ts";

export const PRUNE_QUEUE = "prune-expired";

export async function startBoss(ctx: AppContext, url: string): Promise<PgBoss> {
  // LISTEN/NOTIFY wakes workers of notify queues within milliseconds (polling alone: 0.5 s).
  const boss = new PgBoss({ connectionString: url, max: 4, schema: "pgboss", useListenNotify: true });
  boss.on("error", (err: unknown) => ctx.log.error({ err }, "pg-boss error"));
  await boss.start();
  await boss.createQueue(PRUNE_QUEUE, { policy: "singleton", retryLimit: 3, expireInSeconds: 3600 });
  await boss.schedule(PRUNE_QUEUE, ctx.config.pruneCron);
  await boss.work(PRUNE_QUEUE, async () => {
    const result = await pruneExpired(ctx.pool, ctx.config.changeRetentionHours, ctx.config.deliveryHistoryDays);
    ctx.log.info(result, "pruned expired changes, tombstones and delivery history");
    return result;
  });
  return boss;
}
