/**
 * Chaos 4: two and three service instances on one database. Work is shared, per-webhook order
 * holds, and no webhook ever has two requests in flight (one of the instances is killed midway:
 * the others take its webhooks over once its heartbeat stops).
 */
import { afterAll, expect, it } from "vitest";
import { createTestDatabase, dropTestDatabase } from "../support/db.ts";
import { rounds, sleep, World } from "./harness.ts";

const dbs: string[] = [];
afterAll(async () => {
  for (const d of dbs) await dropTestDatabase(d);
});

async function deliveredBy(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith("shophook_deliveries_total{"))
    .reduce((n, l) => n + Number(l.split(" ").at(-1)), 0);
}

for (const instances of [2, 3]) {
  it.each(rounds())(`round %i: ${instances} instances share the work, keep order, never overlap`, async () => {
    const db = await createTestDatabase();
    dbs.push(db);
    const world = new World(db);
    await world.start(instances);
    // Slow receivers keep requests in flight long enough for overlaps to show if they could happen.
    world.receiver.behave = () => ({ status: 200, delayMs: 5 + Math.random() * 60 });
    world.startPoller();
    world.startWriters(6);
    await sleep(3000);
    const counts = await Promise.all(world.services.map((s) => deliveredBy(s.url)));
    world.services[0]!.child.kill("SIGKILL");
    await sleep(3000);
    await world.stopWriters();
    const result = await world.verify();
    console.log(`${instances} instances: deliveries per instance before the kill ${JSON.stringify(counts)}; ${result.changes} changes in ${result.requests} requests, ${result.resent} re-sent`);
    expect(counts.filter((n) => n > 0).length, "instances that delivered").toBeGreaterThanOrEqual(2);
    await world.stop();
  });
}
