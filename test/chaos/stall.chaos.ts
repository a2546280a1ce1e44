/**
 * Chaos 5: a long-running open transaction elsewhere in the database. The feed pauses (nothing
 * committed after the transaction began is served or delivered) but skips nothing, and the
 * service reports the stall in its log and in /metrics.
 */
import pg from "pg";
import { afterAll, expect, it } from "vitest";
import { createTestDatabase, dropTestDatabase } from "../support/db.ts";
import { rounds, sleep, World } from "./harness.ts";

const dbs: string[] = [];
afterAll(async () => {
  for (const d of dbs) await dropTestDatabase(d);
});

it.each(rounds())("round %i: an open transaction pauses the feed, is reported, and nothing is skipped", async () => {
  const db = await createTestDatabase();
  dbs.push(db);
  const world = new World(db, { SHOPHOOK_STALL_WARN_SECONDS: "2" });
  await world.start(1);
  world.startPoller();
  world.startWriters(3);
  await sleep(1000);
  const blocker = new pg.Client({ connectionString: db, application_name: "chaos-blocker" });
  await blocker.connect();
  await blocker.query("BEGIN");
  await blocker.query("SELECT pg_current_xact_id()");
  await sleep(1500);
  const deliveredAtBlock = world.receiver.requests.length;
  await sleep(10_000);
  // Writes kept being acknowledged, deliveries did not move (at most a batch that was under way).
  expect(world.receiver.requests.length - deliveredAtBlock).toBeLessThanOrEqual(3);
  const metrics = await (await fetch(`${world.services[0]!.url}/metrics`)).text();
  const stall = Number(/^shophook_feed_stall_seconds (\S+)/m.exec(metrics)?.[1]);
  expect(stall).toBeGreaterThanOrEqual(10);
  const warned = world.services[0]!.logs.find((l) => String(l.msg).startsWith("feed stalled"));
  expect(warned, "a 'feed stalled' log line").toBeDefined();
  expect(warned!.application).toBe("chaos-blocker");
  await blocker.query("COMMIT");
  await blocker.end();
  await sleep(1000);
  await world.stopWriters();
  const result = await world.verify();
  console.log(`stall: ${world.acknowledged} writes, stalled ${stall.toFixed(1)} s, then ${result.changes} changes delivered in order`);
  await world.stop();
});
