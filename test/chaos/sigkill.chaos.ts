/** Chaos 1: SIGKILL the service at random moments during a burst of writes and deliveries, restart, repeat. */
import { expect, it } from "vitest";
import { rounds, scenarioDatabases, sleep, World } from "./harness.ts";

const database = scenarioDatabases();

it.each(rounds())("round %i: every change delivered at least once, in order, after repeated SIGKILLs", async () => {
  const db = await database();
  const world = new World(db);
  await world.start(1);
  // 5% of deliveries fail, so retries are in flight too when the kill lands.
  world.receiver.behave = () => (Math.random() < 0.05 ? { status: 500 } : { status: 200, delayMs: Math.random() * 40 });
  world.startPoller();
  world.startWriters(4);
  for (let kill = 0; kill < 5; kill++) {
    await sleep(300 + Math.random() * 900); // a random moment of the burst
    world.services[0]!.child.kill("SIGKILL");
    await world.services[0]!.exited;
    await world.restart(0);
  }
  // The last restart takes writes and delivers again before the writers stop.
  await world.writesGo(20, "writes acknowledged after the last restart");
  await world.deliveriesGo(1, "deliveries to every webhook after the last restart");
  await world.stopWriters();
  const result = await world.verify();
  console.log(`sigkill: ${world.acknowledged} writes acknowledged, ${result.changes} changes delivered in ${result.requests} requests (${result.attempts} attempts), ${result.resent} re-sent`);
  expect(world.acknowledged).toBeGreaterThan(100);
  await world.stop();
});
