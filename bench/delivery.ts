/**
 * Webhook delivery figures, each beside the machine's limit measured in the same run:
 *   A. commit -> receipt latency at 200 changes/s (1 webhook)
 *   B. changes delivered per second, 1 webhook, batched (a backlog of 50,000 changes)
 *   C. HTTP deliveries per second across 1,000 webhooks (one change per request)
 *   limits: a bare undici POST loop to the same receiver; plain single-row INSERT commits/s
 * The receiver runs in its own process (bench/receiver.ts).
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node bench/delivery.ts
 */
import { spawn } from "node:child_process";
import path from "node:path";
import readline from "node:readline";
import pg from "pg";
import { Pool as HttpPool, request } from "undici";
import type { App } from "../src/app.ts";
import { customerEntity } from "../src/entities/customer.ts";
import { createOne } from "../src/store/write.ts";
import { benchApp, benchDatabase, benchShop, machine, ms, summarize, table } from "./support.ts";

const LATENCY_SECONDS = Number(process.env.LATENCY_SECONDS ?? 10);
const BACKLOG = Number(process.env.BACKLOG ?? 50_000);
const WEBHOOKS = Number(process.env.WEBHOOKS ?? 1000);
const PER_WEBHOOK = Number(process.env.PER_WEBHOOK ?? 20);

const db = await benchDatabase();
const receiverProc = spawn(process.execPath, [path.join(import.meta.dirname, "receiver.ts")], { stdio: ["ignore", "pipe", "inherit"] });
const port: number = await new Promise((resolve) => readline.createInterface({ input: receiverProc.stdout! }).once("line", (l) => resolve(JSON.parse(l).port)));
const receiverUrl = `http://127.0.0.1:${port}/hook`;
const stats = async (what = "stats") => (await (await request(`http://127.0.0.1:${port}/${what}`)).body.json()) as any;
const reset = () => stats("reset");
const wallMicros = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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

async function createHook(app: App, shopId: string) {
  const { rows } = await app.pool.query(
    `INSERT INTO webhooks (id, shop_id, url, entities, secret, created_at, updated_at, cursor_xid, cursor_seq)
     VALUES (next_id(), $1, $2, '{customer}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', now(), now(), pg_snapshot_xmin(pg_current_snapshot()), 0) RETURNING id`,
    [shopId, receiverUrl],
  );
  app.webhooksChanged?.(shopId);
  return rows[0].id as string;
}

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
  const lat = [...committed].map(([id, t]) => (arrivals[id]! - t) / 1000);
  const s = summarize(lat);
  results.push(["commit -> receipt latency at 200 changes/s", `p50 ${ms(s.p50)} ms, p99 ${ms(s.p99)} ms`, "target p99 <= 50 ms", ""]);
  await app.stop();
}

// B. One webhook, a backlog, batched.
if (only("B")) {
  const app = await benchApp(db.url, appConfig);
  const shop = await benchShop(app, "backlog");
  await createHook(app, shop.id);
  await reset();
  const xid = await bulkChanges(app, shop.id, BACKLOG);
  const t0 = performance.now();
  app.onCommit?.({ shopId: shop.id, entities: ["customer"], xid });
  const s = await waitFor((x) => x.distinct >= BACKLOG);
  const secs = (performance.now() - t0) / 1000;
  results.push([`changes delivered/s, 1 webhook, backlog ${BACKLOG}`, (BACKLOG / secs).toFixed(0), "target >= 10,000", `${s.requests} requests`]);
  await app.stop();
}

// C. 1,000 webhooks, one change per request.
let deliveriesPerSec = 0;
if (only("C")) {
  const app = await benchApp(db.url, { ...appConfig, batchMaxChanges: 1 });
  const shops: string[] = [];
  for (let i = 0; i < WEBHOOKS; i++) {
    const shop = await benchShop(app, `many ${i}`);
    shops.push(shop.id);
    await createHook(app, shop.id);
  }
  await reset();
  const xids: string[] = [];
  for (const s of shops) xids.push(await bulkChanges(app, s, PER_WEBHOOK));
  const total = WEBHOOKS * PER_WEBHOOK;
  const t0 = performance.now();
  shops.forEach((s, i) => app.onCommit?.({ shopId: s, entities: ["customer"], xid: xids[i]! }));
  const st = await waitFor((x) => x.distinct >= total);
  const secs = (performance.now() - t0) / 1000;
  deliveriesPerSec = st.requests / secs;
  results.push([`HTTP deliveries/s across ${WEBHOOKS} webhooks (1 change each)`, deliveriesPerSec.toFixed(0), "target >= 3,000", `${st.requests} requests in ${secs.toFixed(1)} s`]);
  await app.stop();
}

// Limits, same run: a bare undici POST loop to the same receiver, and plain INSERT commits/s.
if (only("L")) {
  await reset();
  const body = JSON.stringify({ id: "1", changes: [{ id: "1", entity: "customer", entity_id: "1", latest: { customer: { note: "n".repeat(200) } } }] });
  const http = new HttpPool(`http://127.0.0.1:${port}`, { connections: 256 });
  let done = 0;
  const until = performance.now() + 5_000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 256 }, async () => {
      while (performance.now() < until) {
        const r = await http.request({ method: "POST", path: "/hook", headers: { "content-type": "application/json" }, body });
        await r.body.text();
        done++;
      }
    }),
  );
  const bare = done / ((performance.now() - t0) / 1000);
  await http.close();
  results.push(["limit: bare undici POST loop, 256 connections", bare.toFixed(0), `ours ${(deliveriesPerSec / bare * 100).toFixed(0)}% of it`, ""]);

  const direct = new pg.Pool({ connectionString: db.url, max: 32 });
  await direct.query("CREATE TABLE IF NOT EXISTS bench_plain (id bigserial PRIMARY KEY, body text)");
  let inserts = 0;
  const end = performance.now() + 5_000;
  const t1 = performance.now();
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (performance.now() < end) {
        await direct.query("INSERT INTO bench_plain (body) VALUES ($1)", ["n".repeat(200)]);
        inserts++;
      }
    }),
  );
  results.push(["limit: plain single-row INSERT commits/s, 32 connections", (inserts / ((performance.now() - t1) / 1000)).toFixed(0), "", ""]);
  await direct.end();
}

console.log(`# webhook delivery\nmachine: ${machine()}`);
console.log(table(["figure", "measured", "target / ratio", "notes"], results));
receiverProc.kill("SIGTERM");
await db.drop();
