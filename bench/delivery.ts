/**
 * Webhook delivery figures, each beside the machine's limit measured in the same run:
 *   A. commit -> receipt latency at 200 changes/s (1 webhook);
 *      limit: a plain INSERT commit followed by a bare POST to the same receiver, same pace
 *   B. changes delivered per second, 1 webhook, batched (a backlog of 50,000 changes);
 *      limit: bare POSTs of bodies of the same size, one at a time (a webhook's order allows no more)
 *   D. changes delivered per second across 1,000 webhooks, batched (100 changes each);
 *      limit: bare POSTs of bodies of the same size, 256 connections
 *   C. HTTP deliveries per second across 1,000 webhooks (one change per request);
 *      limit: bare POSTs of one-change bodies, 256 connections
 * The receiver runs in its own process (bench/receiver.ts). ONLY=A,B selects parts.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx node bench/delivery.ts
 */
import pg from "pg";
import { Pool as HttpPool } from "undici";
import type { App } from "../src/app.ts";
import { customerEntity } from "../src/entities/customer.ts";
import { createOne } from "../src/store/write.ts";
import { benchApp, benchDatabase, benchShop, createHook as createHookFor, machine, machineBusyMs, ms, ownCpuMs, pct, report, sleep, startReceiver, summarize, table, wallMicros } from "./support.ts";

const LATENCY_SECONDS = Number(process.env.LATENCY_SECONDS ?? 10);
const BACKLOG = Number(process.env.BACKLOG ?? 50_000);
const WEBHOOKS = Number(process.env.WEBHOOKS ?? 1000);
const PER_WEBHOOK = Number(process.env.PER_WEBHOOK ?? 20);
const PER_WEBHOOK_BATCHED = Number(process.env.PER_WEBHOOK_BATCHED ?? 100);

const db = await benchDatabase();
const receiver = await startReceiver();
const port = receiver.port;
const stats = (what = "stats") => receiver.get(what);
const reset = () => stats("reset");

async function waitFor(pred: (s: any) => boolean, timeoutMs = 600_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const s = await stats();
    if (pred(s)) return s;
    if (Date.now() > until) throw new Error(`timed out: ${JSON.stringify(s)}`);
    await sleep(20);
  }
}

// No sweep during a measurement: work starts only when the bench signals the commit.
const appConfig = { webhookAllowHttp: true, webhookAllowPrivate: ["127.0.0.1"], maxWebhooksPerShop: 10_000, dbPoolSize: 30, sweepIntervalMs: 600_000 };

const createHook = (app: App, shopId: string) => createHookFor(app, shopId, receiver.url());

/** `n` customer creates for a shop as one bulk transaction; returns its xid. */
async function bulkChanges(app: App, shopId: string, n: number): Promise<string> {
  const { rows } = await app.pool.query(
    `WITH ids AS (SELECT next_id() AS id, nextval('changes_id_seq') AS seq, g FROM generate_series(1, $2::int) g),
     c AS (INSERT INTO changes (id, shop_id, entity, entity_id, change_type, time, latest)
           SELECT seq, $1, 'customer', id, 'create', now(),
                  json_build_object('id', id::text, 'external_id', '', 'code', 'CUS' || g, 'full_name', 'Customer ' || g, 'phone', '0900000000',
                    'email', 'c' || g || '@example.com', 'gender', '', 'birthday', '', 'note', repeat('n', 200), 'status', 'active',
                    'created_at', now(), 'updated_at', now(), 'deleted', false)
           FROM ids RETURNING xid)
     SELECT max(xid)::text AS xid FROM c`,
    [shopId, n],
  );
  return rows[0].xid;
}

const results: Array<Array<string | number>> = [];
/** Run only some parts: ONLY=A,C */
const only = (part: string) => !process.env.ONLY || process.env.ONLY.split(",").includes(part);

/** A delivery body like ours with `n` customer changes (for the bare POST limits). */
function bareBody(n: number): string {
  const change = (i: number) =>
    JSON.stringify({
      id: String(1000 + i), time: new Date().toISOString(), change_type: "create", entity: "customer", entity_id: String(9000 + i),
      latest: { customer: { id: String(9000 + i), external_id: "", code: `CUS${i}`, full_name: `Customer ${i}`, phone: "0900000000", email: `c${i}@example.com`, gender: "", birthday: "", note: "n".repeat(200), status: "active", created_at: new Date().toISOString(), updated_at: new Date().toISOString(), deleted: false } },
    });
  return `{"id":"1","changes":[${Array.from({ length: n }, (_, i) => change(i)).join(",")}]}`;
}

/** Bare undici POSTs of `body` to the receiver for `seconds` over `connections`; requests/s. */
async function bareLoop(body: string, connections: number, seconds = 5): Promise<number> {
  const http = new HttpPool(`http://127.0.0.1:${port}`, { connections });
  let done = 0;
  const until = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < until) {
        const r = await http.request({ method: "POST", path: "/hook", headers: { "content-type": "application/json" }, body });
        await r.body.text();
        done++;
      }
    }),
  );
  const perSec = done / ((performance.now() - t0) / 1000);
  await http.close();
  return perSec;
}

// A. Latency at 200 changes/s.
if (only("A")) {
  const app = await benchApp(db.url, appConfig);
  const shop = await benchShop(app, "latency");
  await createHook(app, shop.id);
  await reset();
  const committed = new Map<string, number>();
  const n = LATENCY_SECONDS * 200;
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const due = start + i * 5;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const id = await app.ids.next();
    await createOne(app, shop.id, customerEntity, { id, external_id: "", code: `C${id}`, full_name: `c${i}`, phone: "", email: "", gender: "", birthday: "", note: "", status: "active" });
    committed.set(id, wallMicros());
  }
  await waitFor((s) => s.distinct >= n);
  const arrivals = (await stats("arrivals")) as Record<string, number>;
  const ours = summarize([...committed].map(([id, t]) => (arrivals[id]! - t) / 1000));
  await app.stop();

  // The limit: what a commit and one POST cost on this machine, at the same pace.
  const direct = new pg.Pool({ connectionString: db.url, max: 2 });
  await direct.query("CREATE TABLE IF NOT EXISTS bench_latency (id bigserial PRIMARY KEY, body text)");
  const http = new HttpPool(`http://127.0.0.1:${port}`, { connections: 1 });
  const body = bareBody(1);
  const limit: number[] = [];
  const start2 = performance.now();
  for (let i = 0; i < n; i++) {
    const wait = start2 + i * 5 - performance.now();
    if (wait > 0) await sleep(wait);
    const t = performance.now();
    await direct.query("INSERT INTO bench_latency (body) VALUES ($1)", ["n".repeat(200)]);
    const r = await http.request({ method: "POST", path: "/hook", headers: { "content-type": "application/json" }, body });
    await r.body.text();
    limit.push(performance.now() - t);
  }
  await http.close();
  await direct.end();
  const lim = summarize(limit);
  results.push(["commit -> receipt latency at 200 changes/s", `p50 ${ms(ours.p50)} ms, p99 ${ms(ours.p99)} ms`, `limit (INSERT commit + bare POST): p50 ${ms(lim.p50)} ms, p99 ${ms(lim.p99)} ms`, "target p99 <= 50 ms"]);
  await report({
    figure: "commit -> receipt latency at 200 changes/s (1 webhook)",
    ours: `p50 ${ms(ours.p50)} ms, p99 ${ms(ours.p99)} ms`,
    limit: `p50 ${ms(lim.p50)} ms, p99 ${ms(lim.p99)} ms (INSERT commit + bare POST)`,
    ratio: `p99 ${(ours.p99 / lim.p99).toFixed(1)}x`,
    target: "p99 <= 50 ms",
    met: ours.p99 <= 50,
    note: "ours includes the feed horizon wait and a wake-up through pg-boss/LISTEN",
  });
}

// B. One webhook, a backlog, batched.
if (only("B")) {
  const app = await benchApp(db.url, appConfig);
  const shop = await benchShop(app, "backlog");
  await createHook(app, shop.id);
  await reset();
  const xid = await bulkChanges(app, shop.id, BACKLOG);
  const t0 = performance.now();
  app.onCommit?.({ shopId: shop.id, events: ["customer:create"], xid });
  const s = await waitFor((x) => x.distinct >= BACKLOG);
  const ours = BACKLOG / ((performance.now() - t0) / 1000);
  await app.stop();
  const perRequest = BACKLOG / s.requests;
  const limit = (await bareLoop(bareBody(Math.round(perRequest)), 1)) * perRequest;
  results.push([`changes delivered/s, 1 webhook, backlog ${BACKLOG}`, ours.toFixed(0), `limit ${limit.toFixed(0)} (bare POSTs of ${Math.round(perRequest)} changes, one at a time)`, "target >= 10,000"]);
  await report({ figure: "changes delivered/s, 1 webhook (50,000-change backlog)", ours: ours.toFixed(0), limit: `${limit.toFixed(0)} (bare POSTs, same body size, one at a time)`, ratio: pct(ours, limit), target: ">= 10,000/s and >= 50%", met: ours >= 10_000 && ours / limit >= 0.5, note: `${s.requests} requests of ${perRequest.toFixed(0)} changes` });
}

/** `perWebhook` changes for each of `count` new shops with one webhook each; returns the time to deliver them all. */
async function manyWebhooks(count: number, perWebhook: number, batchMaxChanges: number) {
  const app = await benchApp(db.url, { ...appConfig, batchMaxChanges });
  const shops: string[] = [];
  for (let i = 0; i < count; i++) {
    const shop = await benchShop(app, `many ${i}`);
    shops.push(shop.id);
    await createHook(app, shop.id);
  }
  await reset();
  const xids: string[] = [];
  for (const s of shops) xids.push(await bulkChanges(app, s, perWebhook));
  const total = count * perWebhook;
  const t0 = performance.now();
  const m0 = machineBusyMs();
  const own0 = ownCpuMs();
  shops.forEach((s, i) => app.onCommit?.({ shopId: s, events: ["customer:create"], xid: xids[i]! }));
  const st = await waitFor((x) => x.distinct >= total);
  const secs = (performance.now() - t0) / 1000;
  const requests = st.requests as number;
  // CPU per request: the whole machine, and this process (the service; the receiver is another).
  const cpu = { machineUs: ((machineBusyMs() - m0) * 1000) / requests, serviceUs: ((ownCpuMs() - own0) * 1000) / requests };
  await app.stop();
  return { secs, requests, total, cpu };
}

// D. 1,000 webhooks, batched.
if (only("D")) {
  const r = await manyWebhooks(WEBHOOKS, PER_WEBHOOK_BATCHED, 1000);
  const ours = r.total / r.secs;
  const perRequest = r.total / r.requests;
  const limit = (await bareLoop(bareBody(Math.round(perRequest)), 256)) * perRequest;
  results.push([`changes delivered/s across ${WEBHOOKS} webhooks (${PER_WEBHOOK_BATCHED} each, batched)`, ours.toFixed(0), `limit ${limit.toFixed(0)} (bare POSTs of ${perRequest.toFixed(0)} changes, 256 connections)`, "target >= 10,000"]);
  await report({ figure: `changes delivered/s, ${WEBHOOKS.toLocaleString("en")} webhooks (${PER_WEBHOOK_BATCHED} changes each)`, ours: ours.toFixed(0), limit: `${limit.toFixed(0)} (bare POSTs, same body size, 256 connections)`, ratio: pct(ours, limit), target: ">= 10,000/s and >= 50%", met: ours >= 10_000 && ours / limit >= 0.5, note: `${r.requests} requests in ${r.secs.toFixed(1)} s; CPU per request: service ${r.cpu.serviceUs.toFixed(0)} µs, machine ${r.cpu.machineUs.toFixed(0)} µs` });
}

// C. 1,000 webhooks, one change per request.
if (only("C")) {
  const r = await manyWebhooks(WEBHOOKS, PER_WEBHOOK, 1);
  const ours = r.requests / r.secs;
  const limit = await bareLoop(bareBody(1), 256);
  results.push([`HTTP deliveries/s across ${WEBHOOKS} webhooks (1 change each)`, ours.toFixed(0), `limit ${limit.toFixed(0)} (bare undici POSTs, 256 connections)`, "target >= 3,000"]);
  await report({ figure: `HTTP deliveries/s, ${WEBHOOKS.toLocaleString("en")} webhooks, one change per request`, ours: ours.toFixed(0), limit: `${limit.toFixed(0)} (bare undici POST loop, 256 connections)`, ratio: pct(ours, limit), target: ">= 3,000/s and >= 50%", met: ours >= 3000 && ours / limit >= 0.5, note: `${r.requests} signed requests, each recorded in the delivery history; CPU per request: service ${r.cpu.serviceUs.toFixed(0)} µs, machine ${r.cpu.machineUs.toFixed(0)} µs` });
}

console.log(`# webhook delivery\nmachine: ${machine()}`);
console.log(table(["figure", "measured", "limit, same run", "target"], results));
receiver.stop();
await db.drop();
