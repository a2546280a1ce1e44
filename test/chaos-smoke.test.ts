/**
 * The chaos suite's smoke run inside `npm test` (the full suite: `npm run chaos`, docs/chaos.md):
 * two instances share a burst of writes with failing deliveries, one is SIGKILLed and restarted
 * midway, and the same final check runs (World.verify): every change received at least once in
 * per-webhook order, re-sent changes only as whole batches under their callback id, never two
 * requests of one webhook in flight, the GetChanges poller's copy equals the database.
 */
import { afterAll, expect, it } from "vitest";
import { World } from "./chaos/harness.ts";
import { createTestDatabase, dropTestDatabase } from "./support/db.ts";

let db: string | undefined;
afterAll(async () => {
  if (db) await dropTestDatabase(db);
});

it("two instances, a SIGKILL and failing receivers: nothing lost, order kept, no overlap", { timeout: 120_000 }, async () => {
  db = await createTestDatabase();
  const world = new World(db);
  await world.start(2);
  world.receiver.behave = () => (Math.random() < 0.05 ? { status: 500 } : { status: 200, delayMs: Math.random() * 30 });
  world.startPoller();
  world.startWriters(3);
  await world.deliveriesGo(2, "deliveries before the kill");
  world.services[0]!.child.kill("SIGKILL");
  await world.services[0]!.exited;
  await world.restart(0);
  await world.writesGo(20, "writes after the restart");
  await world.deliveriesGo(1, "deliveries after the restart");
  await world.stopWriters();
  const result = await world.verify();
  expect(world.acknowledged).toBeGreaterThan(20);
  expect(result.changes).toBeGreaterThan(20);
  await world.stop();
});
