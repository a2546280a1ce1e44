/**
 * Memory with a large undelivered backlog. The service runs as its own process (`shophook serve`,
 * as in production) so its RSS is its own; the limit beside it, same run, is the same process idle.
 *   1. idle: service started, one webhook, no changes
 *   2. failing: BACKLOG (1M) changes pending while the receiver answers 503 (the webhook retries)
 *   3. draining: the receiver recovers and the whole backlog is delivered; peak RSS and rate
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx node bench/backlog.ts
 */
import { spawn } from "node:child_process";
import path from "node:path";
import readline from "node:readline";
import { request } from "undici";
import { createApiKey, createShop } from "../src/auth/api-keys.ts";
import { createPool } from "../src/db/pool.ts";
import { startService } from "../test/support/process.ts";
import { benchDatabase, machine, peakRss, report, rssMiB, sleep } from "./support.ts";

const BACKLOG = Number(process.env.BACKLOG ?? 1_000_000);
const CHUNK = 50_000;
const FAIL_SECONDS = Number(process.env.FAIL_SECONDS ?? 20);

const db = await benchDatabase();
const receiverProc = spawn(process.execPath, [path.join(import.meta.dirname, "receiver.ts")], { stdio: ["ignore", "pipe", "inherit"] });
const port: number = await new Promise((resolve) => readline.createInterface({ input: receiverProc.stdout! }).once("line", (l) => resolve(JSON.parse(l).port)));
const receiver = async (what: string) => (await (await request(`http://127.0.0.1:${port}/${what}`)).body.json()) as { requests: number; refused: number; distinct: number };

const service = await startService({
  DATABASE_URL: db.url,
  LOG_LEVEL: "info", // the "listening" line tells startService the port
  SHOPHOOK_WEBHOOK_ALLOW_HTTP: "true",
  SHOPHOOK_WEBHOOK_ALLOW_PRIVATE: "127.0.0.1",
  SHOPHOOK_RETRY_BASE_SECONDS: "1",
  SHOPHOOK_RETRY_MAX_STEP_SECONDS: "2",
  ...(process.env.SERVICE_NODE_OPTIONS ? { NODE_OPTIONS: process.env.SERVICE_NODE_OPTIONS } : {}),
});
const pid = service.child.pid!;
const pool = createPool(db.url, 4);
const shop = await createShop(pool, "backlog");
const key = (await createApiKey(pool, shop.id)).key;
const created = await request(`${service.url}/v1/shop.Webhook/CreateWebhook`, {
  method: "POST",
  headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
  body: JSON.stringify({ url: `http://127.0.0.1:${port}/hook`, entities: ["customer"] }),
});
if (created.statusCode !== 200) throw new Error(`CreateWebhook: ${await created.body.text()}`);
await created.body.dump();

await sleep(2000);
const idle = await rssMiB(pid);

// The backlog: customer changes written in transactions of 50,000, like a bulk import.
await receiver("fail");
const t0 = performance.now();
for (let done = 0; done < BACKLOG; done += CHUNK) {
  await pool.query(
    `INSERT INTO changes (id, shop_id, entity, entity_id, change_type, time, latest)
     SELECT nextval('changes_id_seq'), $1, 'customer', next_id(), 'create', now(),
            json_build_object('id', g::text, 'external_id', '', 'code', 'CUS' || g, 'full_name', 'Customer ' || g, 'phone', '0900000000',
              'email', 'c' || g || '@example.com', 'gender', '', 'birthday', '', 'note', repeat('n', 200), 'status', 'active',
              'created_at', now(), 'updated_at', now(), 'deleted', false)
       FROM generate_series($2::int, $2::int + $3::int - 1) g`,
    [shop.id, done, Math.min(CHUNK, BACKLOG - done)],
  );
}
const loadSec = (performance.now() - t0) / 1000;

const failing = await peakRss(pid, async () => {
  await sleep(FAIL_SECONDS * 1000);
  return receiver("stats");
});
const draining = await peakRss(pid, async () => {
  const start = performance.now();
  await receiver("heal");
  for (;;) {
    const s = await receiver("stats");
    if (s.distinct >= BACKLOG) return { ...s, secs: (performance.now() - start) / 1000 };
    await sleep(200);
  }
});
const after = await rssMiB(pid);
if (process.env.MEMDEBUG) console.log((await (await request(`${service.url}/metrics`)).body.text()).split("\n").filter((l) => /heap_size|external|rss|heap_space_size_used/.test(l) && !l.startsWith("#")).join("\n"));

console.log(`# memory with ${BACKLOG.toLocaleString("en")} undelivered changes (service process RSS)`);
console.log(`machine: ${machine()}; backlog written in ${loadSec.toFixed(1)} s`);
console.log(`idle ${idle.toFixed(0)} MiB; failing receiver for ${FAIL_SECONDS} s (${failing.result.refused} refused requests): peak ${failing.peak.toFixed(0)} MiB`);
console.log(`draining: peak ${draining.peak.toFixed(0)} MiB, ${draining.result.requests} requests, ${(BACKLOG / draining.result.secs).toFixed(0)} changes/s; after: ${after.toFixed(0)} MiB`);
const worst = Math.max(failing.peak, draining.peak);
await report({
  figure: `RSS with ${BACKLOG.toLocaleString("en")} undelivered changes (peak while failing, then draining)`,
  ours: `${failing.peak.toFixed(0)} MiB failing, ${draining.peak.toFixed(0)} MiB draining`,
  limit: `${idle.toFixed(0)} MiB idle`,
  ratio: `${(worst / idle).toFixed(2)}x idle`,
  target: "<= 250 MB",
  met: worst * 1.048576 <= 250,
  note: `drained at ${(BACKLOG / draining.result.secs).toFixed(0)} changes/s in ${draining.result.requests} requests`,
});

service.child.kill("SIGTERM");
await service.exited;
await pool.end();
receiverProc.kill("SIGTERM");
await db.drop();
