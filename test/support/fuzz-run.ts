/**
 * Runs the hostile-input checks against a real service process: generated malformed requests
 * (count given), then cross-tenant probes. Used by the smoke test (npm test) and the chaos suite.
 */
import fs from "node:fs/promises";
import http2 from "node:http2";
import { expect } from "vitest";
import { createApiKey, createShop } from "../../src/auth/api-keys.ts";
import { createPool } from "../../src/db/pool.ts";
import { postJson } from "./app.ts";
import { fuzzCases, type Outcome, probes, sendGrpc, sendJson } from "./fuzz.ts";
import type { ServiceProcess } from "./process.ts";
import { startReceiver } from "./receiver.ts";

const TABLES = ["shops", "api_keys", "products", "variants", "inventory_levels", "customers", "orders", "fulfillments", "changes", "webhooks", "deliveries"];

async function counts(dbUrl: string): Promise<Record<string, number>> {
  const pool = createPool(dbUrl, 1);
  try {
    const out: Record<string, number> = {};
    for (const t of TABLES) out[t] = (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${t}`)).rows[0]!.n;
    return out;
  } finally {
    await pool.end();
  }
}

async function rssKb(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

export interface FuzzReport {
  sent: number;
  byResult: Record<string, number>;
  failures: Array<{ kind: string; path: string; result: string }>;
  rssBeforeKb: number;
  rssAfterKb: number;
  probes: number;
  leaks: string[];
}

export async function runFuzz(svc: ServiceProcess, dbUrl: string, count: number, seed: number): Promise<FuzzReport> {
  const pool = createPool(dbUrl, 2);
  const a = await createShop(pool, "victim");
  const aKey = (await createApiKey(pool, a.id)).key;
  const b = await createShop(pool, "attacker");
  const bKey = (await createApiKey(pool, b.id)).key;
  await pool.end();
  const call = (key: string, path: string, body: unknown) => postJson(`${svc.url}${path}`, body, { authorization: `Bearer ${key}` });

  // The victim's data, marked so a leak is easy to spot.
  const MARK = `SECRET-A-${seed}`;
  const receiver = await startReceiver();
  const p = (await call(aKey, "/v1/shop.Product/CreateProduct", { name: MARK })).body;
  const v = (await call(aKey, "/v1/shop.Variant/CreateVariant", { product_id: p.id, name: MARK })).body;
  await call(aKey, "/v1/shop.Inventory/SetInventory", { counts: [{ variant_id: v.id, available_quantity: 5 }] });
  const c = (await call(aKey, "/v1/shop.Customer/CreateCustomer", { full_name: MARK })).body;
  const o = (await call(aKey, "/v1/shop.Order/CreateOrder", { customer_id: c.id, order_note: MARK, lines: [{ variant_id: v.id, quantity: 1 }] })).body;
  await call(aKey, "/v1/shop.Order/ConfirmOrder", { id: o.id });
  const f = (await call(aKey, "/v1/shop.Fulfillment/CreateFulfillment", { order_id: o.id, shipping_note: MARK })).body;
  const wh = (await call(aKey, "/v1/shop.Webhook/CreateWebhook", { url: receiver.url, entities: ["customer"], description: MARK })).body;
  await call(aKey, "/v1/shop.Customer/UpdateCustomer", { id: c.id, note: MARK });
  await receiver.until((rs) => rs.length >= 1);
  await expect.poll(async () => (await call(aKey, "/v1/shop.Webhook/ListDeliveries", {})).body.deliveries.length).toBeGreaterThan(0);
  const delivery = (await call(aKey, "/v1/shop.Webhook/ListDeliveries", {})).body.deliveries[0];
  const cursors = [
    (await call(aKey, "/v1/shop.Product/ListProducts", { paging: { sort: "updated_at", limit: 1 } })).body.paging.next,
    (await call(aKey, "/v1/shop.Order/ListOrders", { paging: { limit: 1 } })).body.paging.next,
    (await call(aKey, "/v1/shop.History/GetChanges", { paging: { limit: 1 } })).body.paging.next,
    (await call(aKey, "/v1/shop.Webhook/ListDeliveries", { paging: { limit: 1 } })).body.paging.next,
  ];
  const ids = [p.id, v.id, c.id, o.id, f.id, wh.id, delivery.id, delivery.callback_id];
  const victim = async () => JSON.stringify((await call(aKey, "/v1/shop.History/GetChanges", { paging: { limit: 1000 } })).body.changes) + JSON.stringify((await call(aKey, "/v1/shop.Webhook/GetWebhooks", {})).body.webhooks.map((w: any) => [w.id, w.url, w.active, w.entities]));
  const victimBefore = await victim();

  // 1. Malformed requests: none may succeed, none may be the server's fault, none may crash it.
  const before = await counts(dbUrl);
  const rssBeforeKb = await rssKb(svc.child.pid!);
  const session = http2.connect(svc.url);
  session.on("error", () => undefined);
  const byResult: Record<string, number> = {};
  const failures: FuzzReport["failures"] = [];
  const queue = fuzzCases(count, bKey, seed, 64 * 1024);
  let sent = 0;
  let grpcSession = session;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let next = queue.next(); !next.done; next = queue.next()) {
        const c = next.value;
        if (grpcSession.closed || grpcSession.destroyed) {
          grpcSession = http2.connect(svc.url);
          grpcSession.on("error", () => undefined);
        }
        let outcome: Outcome;
        try {
          outcome = c.transport === "json" ? await sendJson(svc.url, c) : await sendGrpc(grpcSession, c);
        } catch (err) {
          outcome = { result: `error:${(err as Error).message}`, ok: false };
        }
        sent++;
        byResult[outcome.result] = (byResult[outcome.result] ?? 0) + 1;
        if (!outcome.ok && failures.length < 50) failures.push({ kind: c.kind, path: c.path, result: outcome.result });
      }
    }),
  );
  grpcSession.close();
  session.close();
  const rssAfterKb = await rssKb(svc.child.pid!);
  expect((await fetch(`${svc.url}/healthz`)).status).toBe(200);
  const after = await counts(dbUrl);
  // Deliveries of the victim's webhook may still be recorded; nothing else may change.
  expect({ ...after, deliveries: 0 }).toEqual({ ...before, deliveries: 0 });

  // 2. Cross-tenant probes: the attacker aims the victim's ids and cursors at every RPC.
  const leaks: string[] = [];
  const list = probes(ids, cursors);
  for (const probe of list) {
    const res = await call(bKey, probe.path, probe.body);
    const text = typeof res.body === "string" ? res.body : JSON.stringify(res.body);
    if (text.includes(MARK)) leaks.push(`${probe.path} ${JSON.stringify(probe.body).slice(0, 120)} -> ${res.status}`);
    if (res.status >= 500) leaks.push(`${probe.path} answered ${res.status}: ${text.slice(0, 120)}`);
  }
  expect(await victim()).toBe(victimBefore); // untouched
  await receiver.close();
  return { sent, byResult, failures, rssBeforeKb, rssAfterKb, probes: list.length, leaks };
}
