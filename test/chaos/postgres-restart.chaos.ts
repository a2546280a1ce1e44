/**
 * Chaos 2: restart PostgreSQL during a burst. A throwaway cluster on a spare port (the machine's
 * own server is never touched); the service must recover by itself, without a restart. The
 * sweep and in-process wake-ups would hide a dead pg-boss worker, so after the restarts the
 * test proves pg-boss still works: a wake-up job inserted after the last restart, and the
 * delayed wake-up of a failed delivery's retry, are both fetched and completed.
 */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect, it } from "vitest";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "../../src/db/embedded.ts";
import { WAKE_QUEUE } from "../../src/delivery/engine.ts";
import { rounds, sleep, until, World } from "./harness.ts";
import { freePort } from "../support/urls.ts";


/** The newest wake-up job under `key` created at or after `since` (database time), if any. */
async function job(world: World, key: string, since: Date): Promise<{ state: string; start_after: Date; completed_on: Date | null } | undefined> {
  const { rows } = await world.pool.query<{ state: string; start_after: Date; completed_on: Date | null }>(
    "SELECT state::text, start_after, completed_on FROM pgboss.job WHERE name = $1 AND singleton_key = $2 AND created_on >= $3 ORDER BY created_on DESC LIMIT 1",
    [WAKE_QUEUE, key, since],
  );
  return rows[0];
}

async function dbNow(world: World): Promise<Date> {
  return (await world.pool.query<{ now: Date }>("SELECT now()")).rows[0]!.now;
}

it.each(rounds())("round %i: PostgreSQL restarts twice during a burst; the service and its pg-boss worker recover by themselves and lose nothing", async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "shophook-chaos-pg-"));
  await fs.chmod(dir, 0o755);
  const opts = { dataDir: path.join(dir, "data"), port: await freePort(), settings: { max_connections: "200" } };
  let pg: EmbeddedPostgres = await startEmbeddedPostgres(opts);
  const world = new World(pg.url);
  try {
    await world.start(1);
    world.startPoller();
    world.startWriters(4);
    for (let restart = 0; restart < 2; restart++) {
      await world.writesGo(30, `writes before restart ${restart + 1}`);
      await sleep(Math.random() * 800); // a random moment of the burst
      await pg.stop();
      await sleep(1000 + Math.random() * 1500); // down: writes fail, deliveries wait
      pg = await startEmbeddedPostgres(opts);
    }
    await world.writesGo(30, "writes acknowledged after the last restart");
    await world.deliveriesGo(1, "deliveries to every webhook after the last restart");

    // pg-boss after the restarts. A settings change wakes its webhook through a job
    // (UpdateWebhook -> schedule -> pg-boss insert): the worker must fetch and complete it.
    const probe = world.webhooks[0]!;
    const since = await dbNow(world);
    const res = await world.call("/v1/shop.Webhook/UpdateWebhook", { id: probe.id, description: "probe after the restarts" });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    await until("the wake-up job inserted after the restarts to be completed", async () => (await job(world, probe.id, since))?.state === "completed", { timeoutMs: 30_000, intervalMs: 100 });

    // A failed attempt's retry is a delayed job (startAfter = next attempt): it must fire too.
    const failing = world.webhooks[1]!;
    let failOnce = true;
    const behave = world.receiver.behave;
    world.receiver.behave = (id, a) => {
      if (id === failing.id && failOnce) {
        failOnce = false;
        return { status: 500 };
      }
      return behave(id, a);
    };
    const beforeFail = await dbNow(world);
    await until("a failed attempt after the restarts", () => !failOnce, { timeoutMs: 30_000 });
    await until("its delayed retry job to be completed by the worker", async () => (await job(world, `${failing.id}:retry`, beforeFail))?.state === "completed", { timeoutMs: 30_000, intervalMs: 100 });
    const retry = (await job(world, `${failing.id}:retry`, beforeFail))!;
    expect(retry.completed_on!.getTime(), "the retry job ran when due, not before").toBeGreaterThanOrEqual(retry.start_after.getTime());

    await world.stopWriters();
    const died = world.services.find((s) => s.child.exitCode !== null);
    if (died) console.log(`service died (${died.child.exitCode}):\n${died.stderr().slice(-3000)}\n${JSON.stringify(died.logs.filter((l) => Number(l.level) >= 50).slice(-5))}`);
    const result = await world.verify();
    console.log(`postgres restart: ${world.acknowledged} writes acknowledged, ${result.changes} changes delivered in ${result.requests} requests (${result.attempts} attempts), ${result.resent} re-sent; pg-boss wake-up and retry jobs completed after the restarts`);
    expect(world.services[0]!.child.exitCode).toBeNull(); // never restarted by hand, never died
    expect(world.acknowledged).toBeGreaterThan(50);
  } finally {
    await world.stop();
    await pg.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
