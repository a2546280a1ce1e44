/**
 * Chaos 5: a long-running open transaction elsewhere in the database. The feed pauses (nothing
 * committed after the transaction began is served or delivered) but skips nothing, and the
 * service reports the stall in its log and in /metrics, and the metric falls back to about 0
 * once the transaction ends.
 */
import pg from "pg";
import { expect, it } from "vitest";
import { rounds, scenarioDatabases, until, World } from "./harness.ts";

const database = scenarioDatabases();

async function stallSeconds(world: World): Promise<number> {
  const metrics = await (await fetch(`${world.services[0]!.url}/metrics`)).text();
  return Number(/^shophook_feed_stall_seconds (\S+)/m.exec(metrics)?.[1]);
}

it.each(rounds())("round %i: an open transaction pauses the feed, is reported, and nothing is skipped", async () => {
  const db = await database();
  const world = new World(db, { SHOPHOOK_STALL_WARN_SECONDS: "2" });
  await world.start(1);
  world.startPoller();
  world.startWriters(3);
  await world.deliveriesGo(2, "deliveries before the stall");

  const blocker = new pg.Client({ connectionString: db, application_name: "chaos-blocker" });
  await blocker.connect();
  let stall = 0;
  let ackedDuringStall = 0;
  let blockerXid = 0n;
  let released = 0;
  try {
    await blocker.query("BEGIN");
    blockerXid = BigInt((await blocker.query<{ xid: string }>("SELECT pg_current_xact_id()::text AS xid")).rows[0]!.xid);
    const ackedAtBlock = world.acknowledged;
    // The stall lasts until the service has reported it both ways (the log check runs every 10 s).
    await until(
      "a 'feed stalled' log line and a stall metric of 10 s or more",
      async () => (stall = await stallSeconds(world)) >= 10 && world.services[0]!.logs.some((l) => String(l.msg).startsWith("feed stalled")),
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const warned = world.services[0]!.logs.find((l) => String(l.msg).startsWith("feed stalled"))!;
    expect(warned.application, "the log names the blocking transaction's application").toBe("chaos-blocker");
    ackedDuringStall = world.acknowledged - ackedAtBlock;
    expect(ackedDuringStall, "writes kept being acknowledged during the stall").toBeGreaterThan(10);
    released = Date.now();
    await blocker.query("COMMIT");
  } finally {
    // Also when a check failed: an open transaction would hold every database's feed in the cluster.
    await blocker.end();
  }
  // Back to about 0 once the transaction ended (the metric is cluster-wide: name a straggler).
  let after = NaN;
  await until("the stall metric to fall back below 1 s", async () => (after = await stallSeconds(world)) < 1, { timeoutMs: 30_000, intervalMs: 250 }).catch(async (err: unknown) => {
    const { rows } = await world.pool.query("SELECT datname, application_name, now() - xact_start AS age FROM pg_stat_activity WHERE backend_xid IS NOT NULL ORDER BY xact_start LIMIT 3");
    throw new Error(`${(err as Error).message} (last ${after} s; oldest writers now: ${JSON.stringify(rows)})`);
  });

  await world.deliveriesGo(2, "deliveries after the stall");
  await world.stopWriters();
  const result = await world.verify();

  // The feed paused: nothing committed after the blocker began (a later xid) was served or
  // delivered before the blocker ended.
  const { rows } = await world.pool.query<{ id: string }>("SELECT id FROM changes WHERE shop_id = $1 AND xid > $2::text::xid8", [world.shopId, blockerXid.toString()]);
  expect(rows.length, "changes committed during the stall").toBeGreaterThan(10);
  const early: string[] = [];
  for (const { id } of rows) {
    const servedAt = world.served.get(id);
    const deliveredAt = world.receiver.attempts.find((a) => a.changeIds.includes(id))?.start;
    if ((servedAt !== undefined && servedAt < released) || (deliveredAt !== undefined && deliveredAt < released)) early.push(id);
  }
  expect(early, "changes behind the open transaction served or delivered before it ended").toEqual([]);
  console.log(
    `stall: ${world.acknowledged} writes (${ackedDuringStall} during the stall), stalled ${stall.toFixed(1)} s, metric back to ${after.toFixed(2)} s after COMMIT; ${rows.length} changes held back, then ${result.changes} changes delivered in order in ${result.requests} requests`,
  );
  await world.stop();
});
