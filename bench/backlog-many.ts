/**
 * Many backlogged webhooks after an outage: WEBHOOKS webhooks (one shop each) with PER undelivered
 * changes each while the receiver is down; it comes back and everything drains. The service runs
 * as its own process (`shophook serve`); peak RSS and drain rate, three legs in one run, each on a
 * fresh database and a fresh process:
 *   - many, bounded: the default delivery byte budget (SHOPHOOK_DELIVERY_MEMORY_BYTES, 64 MiB);
 *   - many, unbounded: the budget set to 64 GiB (what delivery held before it had one);
 *   - one webhook with the same number of changes: the drain rate to match.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres WEBHOOKS=1000 PER=5000 npx node bench/backlog-many.ts
 */
import { spawn } from "node:child_process";
import path from "node:path";
import readline from "node:readline";
import { request } from "undici";
import { createApiKey, createShop } from "../src/auth/api-keys.ts";
import { createPool } from "../src/db/pool.ts";
import { startService } from "../test/support/process.ts";
import { benchDatabase, machine, peakRss, report, rssMiB, sleep, table } from "./support.ts";

const WEBHOOKS = Number(process.env.WEBHOOKS ?? 1000);
const PER = Number(process.env.PER ?? 1000);
const TOTAL = WEBHOOKS * PER;
const CHUNK = 50_000;

const receiverProc = spawn(process.execPath, [path.join(import.meta.dirname, "receiver.ts")], { stdio: ["ignore", "pipe", "inherit"] });
const port: number = await new Promise((resolve) => readline.createInterface({ input: receiverProc.stdout! }).once("line", (l) => resolve(JSON.parse(l).port)));
const receiver = async (what: string) => (await (await request(`http://127.0.0.1:${port}/${what}`)).body.json()) as { requests: number; refused: number; distinct: number };

interface Leg {
  name: string;
  webhooks: number;
  budget?: string;
}

async function run(leg: Leg) {
  const db = await benchDatabase();
  const service = await startService({
    DATABASE_URL: db.url,
    LOG_LEVEL: "info",
    SHOPHOOK_WEBHOOK_ALLOW_HTTP: "true",
    SHOPHOOK_WEBHOOK_ALLOW_PRIVATE: "127.0.0.1",
    SHOPHOOK_RETRY_BASE_SECONDS: "1",
    SHOPHOOK_RETRY_MAX_STEP_SECONDS: "2",
    ...(leg.budget ? { SHOPHOOK_DELIVERY_MEMORY_BYTES: leg.budget } : {}),
  });
  const pid = service.child.pid!;
  const pool = createPool(db.url, 4);
  try {
    await receiver("reset");
    await receiver("fail");
    const shops: string[] = [];
    for (let i = 0; i < leg.webhooks; i++) {
      const shop = await createShop(pool, `backlog ${i}`);
      const key = (await createApiKey(pool, shop.id)).key;
      const res = await request(`${service.url}/v1/shop.Webhook/CreateWebhook`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        body: JSON.stringify({ url: `http://127.0.0.1:${port}/hook`, entities: ["customer"] }),
      });
      if (res.statusCode !== 200) throw new Error(`CreateWebhook: ${await res.body.text()}`);
      await res.body.dump();
      shops.push(shop.id);
    }
    await sleep(2000);
    const idle = await rssMiB(pid);
    // The backlog: customer changes, TOTAL / webhooks per shop, in transactions of 50,000 (a bulk import).
    const per = TOTAL / leg.webhooks;
    const t0 = performance.now();
    const shopsPerChunk = Math.max(1, Math.floor(CHUNK / per));
    for (let s = 0; s < shops.length; s += shopsPerChunk) {
      for (let from = 0; from < per; from += CHUNK) {
        await pool.query(
          `INSERT INTO changes (id, shop_id, entity, entity_id, change_type, time, latest)
           SELECT nextval('changes_id_seq'), s.shop_id, 'customer', next_id(), 'create', now(),
                  json_build_object('id', g::text, 'external_id', '', 'code', 'CUS' || g, 'full_name', 'Customer ' || g, 'phone', '0900000000',
                    'email', 'c' || g || '@example.com', 'gender', '', 'birthday', '', 'note', repeat('n', 200), 'status', 'active',
                    'created_at', now(), 'updated_at', now(), 'deleted', false)
             FROM unnest($1::bigint[]) AS s(shop_id), generate_series($2::int, $3::int) g`,
          [shops.slice(s, s + shopsPerChunk), from, Math.min(per, from + CHUNK) - 1],
        );
      }
    }
    const loadSec = (performance.now() - t0) / 1000;
    await sleep(3000); // every webhook has failed at least once and waits for its retry
    const { peak, result: drained } = await peakRss(pid, async () => {
      const start = performance.now();
      await receiver("heal");
      for (;;) {
        const stats = await receiver("stats");
        if (stats.distinct >= TOTAL) return { stats, secs: (performance.now() - start) / 1000 };
        if (performance.now() - start > 30 * 60_000) throw new Error(`${leg.name}: ${stats.distinct} of ${TOTAL} delivered after 30 minutes`);
        await sleep(200);
      }
    });
    const { stats, secs } = drained;
    return { idle, peak, secs, rate: TOTAL / secs, requests: stats.requests, loadSec };
  } finally {
    service.child.kill("SIGTERM");
    await service.exited;
    await pool.end();
    await db.drop();
  }
}

const legs: Leg[] = [
  { name: `${WEBHOOKS} webhooks, default budget (64 MiB)`, webhooks: WEBHOOKS },
  { name: `${WEBHOOKS} webhooks, unbounded (64 GiB budget)`, webhooks: WEBHOOKS, budget: String(64 * 1024 ** 3) },
  { name: "1 webhook", webhooks: 1 },
];
// ONLY=0 runs the first leg alone (a quick look at the bounded figure).
const chosen = process.env.ONLY ? process.env.ONLY.split(",").map(Number) : legs.map((_, i) => i);
const results = [];
for (const [i, leg] of legs.entries()) if (chosen.includes(i)) results.push({ leg, ...(await run(leg)) });
receiverProc.kill("SIGTERM");

console.log(`\n# many backlogged webhooks: ${TOTAL.toLocaleString("en")} undelivered changes, receiver down then back (service process RSS)`);
console.log(`machine: ${machine()}`);
console.log(
  table(
    ["leg", "idle RSS MiB", "peak RSS draining MiB", "drain s", "changes/s", "requests", "backlog written in s"],
    results.map((r) => [r.leg.name, r.idle.toFixed(0), r.peak.toFixed(0), r.secs.toFixed(1), r.rate.toFixed(0), r.requests, r.loadSec.toFixed(1)]),
  ),
);
const [bounded, unbounded, single] = results;
if (unbounded && single)
await report({
  figure: `peak RSS draining ${WEBHOOKS} webhooks x ${PER} changes after an outage`,
  ours: `${bounded!.peak.toFixed(0)} MiB at ${bounded!.rate.toFixed(0)} changes/s`,
  limit: `unbounded: ${unbounded!.peak.toFixed(0)} MiB at ${unbounded!.rate.toFixed(0)} changes/s; 1 webhook: ${single!.rate.toFixed(0)} changes/s`,
  ratio: `drain rate ${(bounded!.rate / single!.rate).toFixed(2)}x one webhook's`,
  target: "peak RSS <= 300 MB, drain rate >= one webhook's",
  met: bounded!.peak * 1.048576 <= 300 && bounded!.rate >= single!.rate,
});
