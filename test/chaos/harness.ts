/**
 * The chaos world: a database, service processes, writers that keep writing through whatever
 * is up, a receiver that records every request (and how many of one webhook were in flight at
 * once), a GetChanges poller, and the final check every scenario ends with:
 *   - every webhook received every change of its entities at least once, in change-log order;
 *   - never two requests of one webhook in flight at once;
 *   - the poller's copy equals the database, for every entity.
 */
import http from "node:http";
import type net from "node:net";
import { afterEach, expect } from "vitest";
import { createApiKey, createShop } from "../../src/auth/api-keys.ts";
import { createPool, type Pool } from "../../src/db/pool.ts";
import { entities } from "../../src/entities/index.ts";
import type { EntityName } from "../../src/entities/model.ts";
import { entityJson } from "../../src/store/write.ts";
import { postJson } from "../support/app.ts";
import { type ServiceProcess, startService } from "../support/process.ts";

/** Worlds still running: a scenario that fails midway must not leave services behind. */
const live = new Set<World>();
afterEach(async () => {
  for (const w of [...live]) await w.stop();
});

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const rounds = () => Array.from({ length: Number(process.env.CHAOS_ROUNDS ?? 1) }, (_, i) => i + 1);

export interface ChaosRequest {
  webhookId: string;
  callbackId: string;
  changeIds: string[];
  at: number;
}

/** A receiver that answers by `behave`, records every delivery, and tracks per-webhook concurrency. */
export class ChaosReceiver {
  readonly requests: ChaosRequest[] = [];
  private readonly inFlight = new Map<string, number>();
  maxInFlight = 0;
  behave: (webhookId: string) => { status: number; delayMs?: number } = () => ({ status: 200, delayMs: Math.random() * 20 });
  private server!: http.Server;
  url = "";

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const webhookId = String(req.headers["x-shophook-webhook-id"] ?? "?");
      const n = (this.inFlight.get(webhookId) ?? 0) + 1;
      this.inFlight.set(webhookId, n);
      this.maxInFlight = Math.max(this.maxInFlight, n);
      let open = true;
      const ended = () => {
        if (open) this.inFlight.set(webhookId, (this.inFlight.get(webhookId) ?? 1) - 1);
        open = false;
      };
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = JSON.parse(Buffer.concat(chunks).toString()) as { id: string; changes: Array<{ id: string }> };
        const b = this.behave(webhookId);
        const finish = () => {
          if (b.status < 300 && open) this.requests.push({ webhookId, callbackId: body.id, changeIds: body.changes.map((c) => c.id), at: Date.now() });
          ended();
          res.writeHead(b.status);
          res.end(b.status < 300 ? "ok" : "no");
        };
        if (b.delayMs) setTimeout(finish, b.delayMs);
        else finish();
      });
      // A request the sender abandoned (killed) no longer counts as in flight.
      req.on("aborted", ended);
      res.on("close", ended);
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}/hook`;
    return this;
  }

  /** Change ids received by a webhook (2xx only), duplicates included, in arrival order. */
  received(webhookId: string): string[] {
    return this.requests.filter((r) => r.webhookId === webhookId).flatMap((r) => r.changeIds);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

export const CHAOS_ENV = {
  SHOPHOOK_WEBHOOK_ALLOW_HTTP: "true",
  SHOPHOOK_WEBHOOK_ALLOW_PRIVATE: "127.0.0.1",
  SHOPHOOK_SWEEP_INTERVAL_MS: "200",
  SHOPHOOK_RETRY_BASE_SECONDS: "1",
  SHOPHOOK_RETRY_MAX_STEP_SECONDS: "2",
  SHOPHOOK_BATCH_MAX_CHANGES: "50",
  SHOPHOOK_DELIVERY_TIMEOUT_MS: "3000",
};

export class World {
  services: ServiceProcess[] = [];
  pool!: Pool;
  shopId = "";
  key = "";
  webhooks: Array<{ id: string; entities: EntityName[] }> = [];
  receiver = new ChaosReceiver();
  private readonly env: Record<string, string>;
  readonly dbUrl: string;
  /** The GetChanges poller's copy: entity:id -> latest. */
  readonly copy = new Map<string, unknown>();
  private polling = false;
  private poller: Promise<void> | undefined;
  private writing = false;
  private writers: Promise<void>[] = [];
  acknowledged = 0;
  private variants: string[] = [];
  private customers: string[] = [];
  private products: string[] = [];

  constructor(dbUrl: string, env: Record<string, string> = {}) {
    this.dbUrl = dbUrl;
    this.env = { ...CHAOS_ENV, DATABASE_URL: dbUrl, ...env };
  }

  async start(instances = 1): Promise<void> {
    live.add(this);
    await this.receiver.start();
    for (let i = 0; i < instances; i++) this.services.push(await startService(this.env));
    this.pool = createPool(this.dbUrl, 3);
    const shop = await createShop(this.pool, "chaos");
    this.shopId = shop.id;
    this.key = (await createApiKey(this.pool, shop.id)).key;
    for (const entitiesOf of [["customer"], ["product", "variant"], ["order", "inventory_level", "fulfillment"]] as EntityName[][]) {
      const res = await this.call("/v1/shop.Webhook/CreateWebhook", { url: this.receiver.url, entities: entitiesOf });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      this.webhooks.push({ id: res.body.id, entities: entitiesOf });
    }
    for (let i = 0; i < 3; i++) {
      const p = (await this.call("/v1/shop.Product/CreateProduct", { name: `seed ${i}` })).body;
      const v = (await this.call("/v1/shop.Variant/CreateVariant", { product_id: p.id, retail_price: "10" })).body;
      await this.call("/v1/shop.Inventory/SetInventory", { counts: [{ variant_id: v.id, available_quantity: 1_000_000 }] });
      this.products.push(p.id);
      this.variants.push(v.id);
      this.customers.push((await this.call("/v1/shop.Customer/CreateCustomer", { full_name: `seed ${i}` })).body.id);
    }
  }

  /** A live service (any of them; writers spread their load). */
  url(): string {
    const live = this.services.filter((s) => s.child.exitCode === null && s.child.signalCode === null);
    return (live[Math.floor(Math.random() * live.length)] ?? this.services[0]!).url;
  }

  async call(path: string, body: unknown) {
    return postJson(`${this.url()}${path}`, body, { authorization: `Bearer ${this.key}` });
  }

  private async writer() {
    const pick = <T>(xs: T[]) => xs[Math.floor(Math.random() * xs.length)]!;
    const ops: Array<() => Promise<{ status: number; body: any }>> = [
      async () => {
        const r = await this.call("/v1/shop.Customer/CreateCustomer", { full_name: "c" });
        if (r.status === 200) this.customers.push(r.body.id);
        return r;
      },
      () => this.call("/v1/shop.Customer/UpdateCustomer", { id: pick(this.customers.slice(0, 3)), note: `n${Math.random()}` }),
      () => this.call("/v1/shop.Customer/UpdateCustomer", { id: pick(this.customers), phone: `09${Math.floor(Math.random() * 1e8)}` }),
      () => this.call("/v1/shop.Product/UpdateProduct", { id: pick(this.products), note: `n${Math.random()}` }),
      () => this.call("/v1/shop.Variant/UpdateVariant", { id: pick(this.variants), note: `n${Math.random()}` }),
      async () => {
        const o = await this.call("/v1/shop.Order/CreateOrder", { lines: [{ variant_id: pick(this.variants), quantity: 1 }] });
        if (o.status === 200) await this.call("/v1/shop.Order/ConfirmOrder", { id: o.body.id }).catch(() => undefined);
        return o;
      },
    ];
    while (this.writing) {
      const res = await pick(ops)().catch(() => undefined);
      if (res?.status === 200) this.acknowledged++;
      else await sleep(20); // the service is down or restarting: try again shortly
    }
  }

  startWriters(n: number) {
    this.writing = true;
    this.writers = Array.from({ length: n }, () => this.writer());
  }

  async stopWriters() {
    this.writing = false;
    await Promise.all(this.writers);
  }

  /** Polls GetChanges continuously through whatever service is up. */
  startPoller() {
    this.polling = true;
    this.poller = (async () => {
      let after: string | undefined;
      let seen = 0;
      while (this.polling) {
        const res = await this.call("/v1/shop.History/GetChanges", { paging: { after, limit: 500 } }).catch(() => undefined);
        if (res?.status !== 200) {
          await sleep(50);
          continue;
        }
        after = res.body.paging.next;
        seen += res.body.changes.length;
        for (const c of res.body.changes) this.copy.set(`${c.entity}:${c.entity_id}`, c.latest[c.entity]);
        if (!res.body.changes.length) await sleep(20);
      }
      // Drain to the end. An empty page is not the end: a change committed behind a transaction
      // still open anywhere in the cluster (the horizon) is served once that transaction ends.
      const { rows } = await this.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM changes WHERE shop_id = $1", [this.shopId]);
      const until = Date.now() + 30_000;
      while (seen < rows[0]!.n && Date.now() < until) {
        const res = await this.call("/v1/shop.History/GetChanges", { paging: { after, limit: 500 } });
        after = res.body.paging.next;
        seen += res.body.changes.length;
        for (const c of res.body.changes) this.copy.set(`${c.entity}:${c.entity_id}`, c.latest[c.entity]);
        if (!res.body.changes.length) await sleep(20);
      }
    })();
  }

  async restart(i: number): Promise<void> {
    this.services[i] = await startService(this.env);
  }

  /** The final checks (module comment). Waits for deliveries to catch up first. */
  async verify(timeoutMs = 120_000): Promise<{ changes: number; requests: number; resent: number }> {
    this.polling = false;
    await this.poller;
    const expected = new Map<string, string[]>();
    for (const w of this.webhooks) {
      const { rows } = await this.pool.query<{ id: string }>("SELECT id FROM changes WHERE shop_id = $1 AND entity = ANY($2::text[]) ORDER BY xid, id", [this.shopId, w.entities]);
      expected.set(w.id, rows.map((r) => r.id));
    }
    const until = Date.now() + timeoutMs;
    for (const w of this.webhooks) {
      while (new Set(this.receiver.received(w.id)).size < expected.get(w.id)!.length) {
        if (Date.now() > until) throw new Error(`webhook ${w.id} (${w.entities}) got ${new Set(this.receiver.received(w.id)).size} of ${expected.get(w.id)!.length} changes`);
        await sleep(100);
      }
    }
    let resent = 0;
    let changes = 0;
    for (const w of this.webhooks) {
      const got = this.receiver.received(w.id);
      const first: string[] = [];
      const seen = new Set<string>();
      for (const id of got) {
        if (seen.has(id)) continue;
        seen.add(id);
        first.push(id);
      }
      expect(first, `order of webhook ${w.id} (${w.entities})`).toEqual(expected.get(w.id));
      resent += got.length - first.length;
      changes += first.length;
    }
    expect(this.receiver.maxInFlight, "requests of one webhook in flight at once").toBe(1);
    for (const [name, def] of Object.entries(entities)) {
      const { rows } = await this.pool.query(`SELECT * FROM ${def.table} WHERE shop_id = $1`, [this.shopId]);
      const db = Object.fromEntries(rows.map((r) => [String(r[def.key]), entityJson(def, r)]));
      const copy = Object.fromEntries([...this.copy].filter(([k]) => k.startsWith(`${name}:`)).map(([k, v]) => [k.slice(name.length + 1), v]));
      expect(copy, `poller's copy of ${name}`).toEqual(db);
    }
    return { changes, requests: this.receiver.requests.length, resent };
  }

  async stop(): Promise<void> {
    if (!live.delete(this)) return;
    this.writing = false;
    this.polling = false;
    for (const s of this.services) if (s.child.exitCode === null) s.child.kill("SIGTERM");
    await Promise.all(this.services.map((s) => s.exited));
    await this.pool?.end();
    await this.receiver.close();
  }
}
