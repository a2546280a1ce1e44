/**
 * At-least-once across crashes: the service is SIGKILLed several times during a burst of writes
 * and deliveries and restarted; in the end the receiver has every change, in change-log order,
 * and the only repeats are whole batches resent under their callback id.
 */
import { afterAll, expect, it } from "vitest";
import { createApiKey, createShop } from "../src/auth/api-keys.ts";
import { createPool } from "../src/db/pool.ts";
import { postJson } from "./support/app.ts";
import { createTestDatabase, dropTestDatabase } from "./support/db.ts";
import { type ServiceProcess, startService } from "./support/process.ts";
import { startReceiver } from "./support/receiver.ts";

let dbUrl: string | undefined;
afterAll(async () => {
  if (dbUrl) await dropTestDatabase(dbUrl);
});

it("SIGKILL during a burst, restart, repeat: every change arrives at least once, in order", async () => {
  dbUrl = await createTestDatabase();
  const env = {
    DATABASE_URL: dbUrl,
    SHOPHOOK_WEBHOOK_ALLOW_HTTP: "true",
    SHOPHOOK_WEBHOOK_ALLOW_PRIVATE: "127.0.0.1",
    SHOPHOOK_SWEEP_INTERVAL_MS: "200",
    SHOPHOOK_BATCH_MAX_CHANGES: "50",
  };
  const pool = createPool(dbUrl, 2);
  const shop = await createShop(pool, "crash");
  const { key } = await createApiKey(pool, shop.id);
  await pool.end();
  // Slow enough that batches are in flight when the kill lands.
  const receiver = await startReceiver(() => ({ status: 200, body: "ok", delayMs: Math.random() * 30 }));

  let svc: ServiceProcess = await startService(env);
  const call = (path: string, body: unknown) => postJson(`${svc.url}${path}`, body, { authorization: `Bearer ${key}` });
  const wh = await call("/v1/shop.Webhook/CreateWebhook", { url: receiver.url, entities: ["customer"] });
  expect(wh.status).toBe(200);

  let writing = true;
  let acknowledged = 0;
  const writer = async () => {
    while (writing) {
      // Refused or cut off while the service is down: try again.
      const res = await call("/v1/shop.Customer/CreateCustomer", { full_name: `c${acknowledged}` }).catch(() => undefined);
      if (res?.status === 200) acknowledged++;
      else await new Promise((r) => setTimeout(r, 20));
    }
  };
  const writers = Array.from({ length: 4 }, writer);
  for (let kill = 0; kill < 3; kill++) {
    await new Promise((r) => setTimeout(r, 400 + Math.random() * 600));
    svc.child.kill("SIGKILL");
    await svc.exited;
    svc = await startService(env);
  }
  await new Promise((r) => setTimeout(r, 300));
  writing = false;
  await Promise.all(writers);
  expect(acknowledged).toBeGreaterThan(50);

  // Everything in the change log reaches the receiver.
  const feed: string[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await call("/v1/shop.History/GetChanges", { paging: { after, limit: 1000 } });
    after = page.body.paging.next;
    if (!page.body.changes.length) break;
    feed.push(...page.body.changes.map((c: any) => c.id));
  }
  expect(feed.length).toBeGreaterThanOrEqual(acknowledged);
  await receiver.until(() => new Set(receiver.changeIds()).size >= feed.length, 30_000);

  const firstSeen: string[] = [];
  const seen = new Set<string>();
  for (const id of receiver.changeIds()) {
    if (seen.has(id)) continue;
    seen.add(id);
    firstSeen.push(id);
  }
  expect(firstSeen).toEqual(feed);
  // Repeats are whole batches resent with the same callback id and the same body.
  const byCallback = new Map<string, string>();
  let resent = 0;
  for (const r of receiver.requests) {
    const prev = byCallback.get(r.body.id);
    if (prev !== undefined) {
      expect(r.raw).toBe(prev);
      resent++;
    }
    byCallback.set(r.body.id, r.raw);
  }
  const total = receiver.changeIds().length;
  const batchRepeats = receiver.requests.filter((r, i) => receiver.requests.findIndex((x) => x.body.id === r.body.id) !== i).reduce((n, r) => n + r.body.changes.length, 0);
  expect(total - feed.length).toBe(batchRepeats);
  console.log(`crash test: ${feed.length} changes, ${receiver.requests.length} requests, ${resent} batches resent after kills`);

  svc.child.kill("SIGTERM");
  expect(await svc.exited).toBe(0);
  await receiver.close();
}, 120_000);
