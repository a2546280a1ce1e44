/**
 * Chaos 2: restart PostgreSQL during a burst. A throwaway cluster on a spare port (the machine's
 * own server is never touched); the service must recover by itself, without a restart.
 */
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { expect, it } from "vitest";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "../../src/db/embedded.ts";
import { rounds, sleep, World } from "./harness.ts";

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

it.each(rounds())("round %i: PostgreSQL restarts twice during a burst; the service recovers by itself and loses nothing", async () => {
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
      await sleep(800 + Math.random() * 800);
      await pg.stop();
      await sleep(1000 + Math.random() * 1500); // down: writes fail, deliveries wait
      pg = await startEmbeddedPostgres(opts);
    }
    await sleep(1500);
    await world.stopWriters();
    const died = world.services.find((s) => s.child.exitCode !== null);
    if (died) console.log(`service died (${died.child.exitCode}):\n${died.stderr().slice(-3000)}\n${JSON.stringify(died.logs.filter((l) => Number(l.level) >= 50).slice(-5))}`);
    const result = await world.verify();
    console.log(`postgres restart: ${world.acknowledged} writes acknowledged, ${result.changes} changes delivered in ${result.requests} requests, ${result.resent} re-sent`);
    expect(world.services[0]!.child.exitCode).toBeNull(); // never restarted by hand, never died
    expect(world.acknowledged).toBeGreaterThan(50);
  } finally {
    await world.stop();
    await pg.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
