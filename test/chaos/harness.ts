/**
 * The chaos world: a database, service processes, writers that keep writing through whatever
 * is up, a receiver that records every request (and how many of one webhook were in flight at
 * once), a GetChanges poller, and the final check every scenario ends with (`World.verify`):
 *   - every webhook received every change of its entities at least once, and the first arrival
 *     of each change is in change-log order;
 *   - a change received again came only in a resend of the whole batch it first came in, under
 *     that batch's callback id (`webhook-id`); one callback id always carries the same changes;
 *   - never two requests of one webhook in flight at once;
 *   - the poller's copy equals the database, for every entity.
 */
import fs from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import type net from "node:net";
import { afterAll, afterEach, expect } from "vitest";
import { createApiKey, createShop } from "../../src/auth/api-keys.ts";
import { createPool, type Pool } from "../../src/db/pool.ts";
import { entities } from "../../src/entities/index.ts";
import type { EntityName } from "../../src/entities/model.ts";
import { entityJson } from "../../src/store/write.ts";
import { postJson } from "../support/app.ts";
import { createTestDatabase, dropTestDatabase } from "../support/db.ts";
import { type ServiceProcess, startService } from "../support/process.ts";

/** Worlds still running: a scenario that fails midway must not leave services behind. */
const live = new Set<World>();
afterEach(async () => {
  for (const w of [...live]) await w.stop();
});

/**
 * Databases for a scenario file (cloned from the migrated template): dropped after the file when
 * every test passed, kept for inspection (and named) when one failed.
 */
export function scenarioDatabases(): () => Promise<string> {
  const dbs: string[] = [];
  let failed = false;
  afterEach(({ task }) => {
    if (task.result?.state === "fail") failed = true;
  });
  afterAll(async () => {
    if (failed) console.error(`chaos databases kept for inspection: ${dbs.join(", ")}`);
    else for (const d of dbs) await dropTestDatabase(d);
  });
  return async () => {
    const db = await createTestDatabase();
    dbs.push(db);
    return db;
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The rounds of each scenario: `CHAOS_ROUNDS` (default 1). */
export const rounds = () => Array.from({ length: Number(process.env.CHAOS_ROUNDS ?? 1) }, (_, i) => i + 1);

/** Waits until `cond` holds (checked every `intervalMs`); fails naming `what` after `timeoutMs`. */
export async function until(what: string, cond: () => boolean | Promise<boolean>, { timeoutMs = 60_000, intervalMs = 50 } = {}): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** One request as the receiver saw it, whatever its outcome. */
export interface Attempt {
  webhookId: string;
  /** The `webhook-id` header (the batch's callback id). */
  callbackId: string;
  /** The body's `id`; undefined until (or if never) the body was read. */
  bodyId?: string;
  changeIds: string[];
  /** Date.now() when the request arrived, and when it ended (answered or abandoned). */
  start: number;
  end?: number;
  /** The status answered (0: none). */
  status: number;
  /** delivered: answered 2xx; failed: answered otherwise or reset; aborted: the sender went away first. */
  outcome: "pending" | "delivered" | "failed" | "aborted";
  /** The sender's TCP port and the receiver's, to tell which process sent it (`socketOwner`). */
  remotePort: number;
  localPort: number;
  /** The sending process's pid, when the world was tracing senders (`World.traceSenders`). */
  sender?: number;
}

/** How the receiver answers one request. */
export interface Reply {
  status?: number;
  delayMs?: number;
  headers?: Record<string, string>;
  /** hang: never answer; slow-body: 200 and a body that never ends; reset: close the connection. */
  fault?: "hang" | "slow-body" | "reset";
}

/** Two requests of one webhook were in flight at once. */
export interface Overlap {
  webhookId: string;
  at: number;
  attempts: Attempt[];
  /** The pid of the process that sent each of `attempts`, where it could be told. */
  senders: Array<number | undefined>;
}

/**
 * A receiver that answers by `behave`, records every request (`attempts`), and tracks
 * per-webhook concurrency. Listens on one or more ports (plain or TLS) with the same handler.
 */
export class ChaosReceiver {
  readonly attempts: Attempt[] = [];
  private readonly openOf = new Map<string, Set<Attempt>>();
  private readonly maxOf = new Map<string, number>();
  readonly overlaps: Overlap[] = [];
  /** Called on each overlap, to tell its senders apart while their connections are open. */
  onOverlap: (o: Overlap) => void = () => undefined;
  /** Called on each arrival while set (to find its sender). */
  onArrival: ((a: Attempt) => void) | undefined;
  behave: (webhookId: string, attempt: Attempt) => Reply = () => ({ status: 200, delayMs: Math.random() * 20 });
  private readonly servers: net.Server[] = [];
  url = "";

  async start(): Promise<this> {
    if (!this.url) this.url = await this.listen();
    return this;
  }

  /** One more listener with the same handler (a given port, or TLS); returns its URL. */
  async listen(opts: { port?: number; tls?: { key: string; cert: string } } = {}): Promise<string> {
    const server = opts.tls ? https.createServer(opts.tls, this.handle) : http.createServer(this.handle);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(opts.port ?? 0, "127.0.0.1", resolve);
    });
    this.servers.push(server);
    return `${opts.tls ? "https" : "http"}://127.0.0.1:${(server.address() as net.AddressInfo).port}/hook`;
  }

  private readonly handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const webhookId = String(req.headers["x-shophook-webhook-id"] ?? "?");
    const a: Attempt = {
      webhookId,
      callbackId: String(req.headers["webhook-id"] ?? ""),
      changeIds: [],
      start: Date.now(),
      status: 0,
      outcome: "pending",
      remotePort: req.socket.remotePort ?? 0,
      localPort: req.socket.localPort ?? 0,
    };
    this.attempts.push(a);
    this.onArrival?.(a);
    let open = this.openOf.get(webhookId);
    if (!open) this.openOf.set(webhookId, (open = new Set()));
    open.add(a);
    this.maxOf.set(webhookId, Math.max(this.maxOf.get(webhookId) ?? 0, open.size));
    if (open.size > 1) {
      const o: Overlap = { webhookId, at: a.start, attempts: [...open], senders: [] };
      this.overlaps.push(o);
      this.onOverlap(o);
    }
    const end = (outcome: Attempt["outcome"]) => {
      if (a.outcome !== "pending") return;
      a.outcome = outcome;
      a.end = Date.now();
      open.delete(a);
    };
    // The sender abandoned it (timed out, was killed) before an answer: no longer in flight.
    res.on("close", () => end("aborted"));
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString()) as { id: string; changes: Array<{ id: string }> };
        a.bodyId = String(body.id);
        a.changeIds = body.changes.map((c) => c.id);
      } catch {
        a.bodyId = "(not json)";
      }
      const r = this.behave(webhookId, a);
      const answer = () => {
        if (a.outcome !== "pending") return;
        if (r.fault === "hang") return;
        if (r.fault === "slow-body") {
          a.status = 200;
          res.writeHead(200, { "content-type": "text/plain" });
          res.write("o"); // then nothing: the body never ends
          return;
        }
        if (r.fault === "reset") {
          end("failed");
          req.socket.destroy();
          return;
        }
        const status = r.status ?? 200;
        a.status = status;
        end(status < 300 ? "delivered" : "failed");
        res.writeHead(status, r.headers).end(status < 300 ? "ok" : "no");
      };
      if (r.delayMs) setTimeout(answer, r.delayMs);
      else answer();
    });
  };

  /** Requests of a webhook in flight now. */
  inFlight(webhookId: string): number {
    return this.openOf.get(webhookId)?.size ?? 0;
  }

  /** The most requests of one webhook ever in flight at once (by webhook, and overall). */
  maxInFlightOf(webhookId: string): number {
    return this.maxOf.get(webhookId) ?? 0;
  }

  get maxInFlight(): number {
    return Math.max(0, ...this.maxOf.values());
  }

  /** Requests answered 2xx, in arrival order. */
  delivered(webhookId?: string): Attempt[] {
    return this.attempts.filter((a) => a.outcome === "delivered" && (webhookId === undefined || a.webhookId === webhookId));
  }

  /** Change ids a webhook received (2xx only), duplicates included, in arrival order. */
  received(webhookId: string): string[] {
    return this.delivered(webhookId).flatMap((a) => a.changeIds);
  }

  async close(): Promise<void> {
    await Promise.all(
      this.servers.map((s) => {
        (s as http.Server).closeAllConnections();
        return new Promise((resolve) => s.close(() => resolve(undefined)));
      }),
    );
  }
}

/**
 * Which of `pids` owns the 127.0.0.1 TCP connection from local port `port` to `peerPort` (Linux
 * /proc; undefined when it cannot be told, e.g. the connection is gone).
 */
export async function socketOwner(port: number, peerPort: number, pids: number[]): Promise<number | undefined> {
  let inode: string | undefined;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const text = await fs.readFile(table, "utf8").catch(() => "");
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      if (parseInt(f[1]!.split(":").at(-1)!, 16) === port && parseInt(f[2]!.split(":").at(-1)!, 16) === peerPort) inode = f[9];
    }
  }
  if (!inode) return undefined;
  for (const pid of pids) {
    const fds = await fs.readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      if ((await fs.readlink(`/proc/${pid}/fd/${fd}`).catch(() => "")) === `socket:[${inode}]`) return pid;
    }
  }
  return undefined;
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

/** A webhook the world creates: its entities, and optionally its own URL (default: the receiver) and rate limit. */
export interface WebhookSpec {
  entities: EntityName[];
  url?: string;
  rateLimit?: number;
  /** For messages ("500", "tls"...); defaults to the entities. */
  name?: string;
}

/** The three groups of entities the default webhooks split between them. */
export const ENTITY_GROUPS: EntityName[][] = [["customer"], ["product", "variant"], ["order", "inventory_level", "fulfillment"]];
export const ALL_ENTITIES: EntityName[] = ENTITY_GROUPS.flat();

/** `n` webhooks cycling over the entity groups; every `rateLimitEvery`-th one limited to `rateLimit` requests/s. */
export function spreadWebhooks(n: number, opts: { rateLimitEvery?: number; rateLimit?: number } = {}): WebhookSpec[] {
  return Array.from({ length: n }, (_, i) => ({
    entities: ENTITY_GROUPS[i % ENTITY_GROUPS.length]!,
    rateLimit: opts.rateLimitEvery && i % opts.rateLimitEvery === 0 ? (opts.rateLimit ?? 2) : undefined,
    name: `#${i} ${ENTITY_GROUPS[i % ENTITY_GROUPS.length]!.join("+")}`,
  }));
}

export interface VerifyResult {
  /** Distinct changes delivered (over all webhooks), 2xx requests, and changes received again. */
  changes: number;
  requests: number;
  resent: number;
  /** Every request the receiver saw, failed ones included. */
  attempts: number;
}

export class World {
  services: ServiceProcess[] = [];
  pool!: Pool;
  shopId = "";
  key = "";
  webhooks: Array<{ id: string; entities: EntityName[]; name: string }> = [];
  receiver = new ChaosReceiver();
  private readonly env: Record<string, string>;
  readonly dbUrl: string;
  /** The GetChanges poller's copy: entity:id -> latest. */
  readonly copy = new Map<string, unknown>();
  /** When the poller was first served each change (change id -> Date.now()). */
  readonly served = new Map<string, number>();
  private polling = false;
  private stopped = false;
  private poller: Promise<void> | undefined;
  private writing = false;
  private writers: Promise<void>[] = [];
  acknowledged = 0;
  private variants: string[] = [];
  private customers: string[] = [];
  private products: string[] = [];
  /** Services the writers and the poller keep away from, and API calls running per service. */
  private readonly avoided = new Set<ServiceProcess>();
  private readonly calls = new Map<ServiceProcess, number>();
  private readonly frozen = new Set<ServiceProcess>();

  constructor(dbUrl: string, env: Record<string, string> = {}) {
    this.dbUrl = dbUrl;
    this.env = { ...CHAOS_ENV, DATABASE_URL: dbUrl, ...env };
  }

  /**
   * Starts `instances` services and creates the shop, its webhooks (default: one per entity
   * group), then (after `afterWebhooks`, e.g. to start watching them) some seed rows.
   */
  async start(instances = 1, opts: { webhooks?: WebhookSpec[]; afterWebhooks?: () => void } = {}): Promise<void> {
    live.add(this);
    await this.receiver.start();
    this.receiver.onOverlap = (o) => {
      const pids = this.pids();
      void Promise.all(o.attempts.map((a) => socketOwner(a.remotePort, a.localPort, pids))).then((s) => o.senders.push(...s));
    };
    for (let i = 0; i < instances; i++) this.services.push(await startService(this.env));
    this.pool = createPool(this.dbUrl, 3);
    const shop = await createShop(this.pool, "chaos");
    this.shopId = shop.id;
    this.key = (await createApiKey(this.pool, shop.id)).key;
    for (const spec of opts.webhooks ?? ENTITY_GROUPS.map((entities): WebhookSpec => ({ entities }))) {
      const res = await this.call("/v1/shop.Webhook/CreateWebhook", { url: spec.url ?? this.receiver.url, entities: spec.entities, rate_limit: spec.rateLimit ?? 0 });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      this.webhooks.push({ id: res.body.id, entities: spec.entities, name: spec.name ?? spec.entities.join("+") });
    }
    opts.afterWebhooks?.();
    for (let i = 0; i < 3; i++) {
      const p = (await this.call("/v1/shop.Product/CreateProduct", { name: `seed ${i}` })).body;
      const v = (await this.call("/v1/shop.Variant/CreateVariant", { product_id: p.id, retail_price: "10" })).body;
      await this.call("/v1/shop.Inventory/SetInventory", { counts: [{ variant_id: v.id, available_quantity: 1_000_000 }] });
      this.products.push(p.id);
      this.variants.push(v.id);
      this.customers.push((await this.call("/v1/shop.Customer/CreateCustomer", { full_name: `seed ${i}` })).body.id);
    }
  }

  /** The pids of the service processes started so far. */
  pids(): number[] {
    return this.services.map((s) => s.child.pid!).filter(Boolean);
  }

  private usable(s: ServiceProcess): boolean {
    return s.child.exitCode === null && s.child.signalCode === null && !this.avoided.has(s) && !this.frozen.has(s);
  }

  /** A live service (any of them; writers spread their load). */
  private pick(): ServiceProcess {
    const up = this.services.filter((s) => this.usable(s));
    return up[Math.floor(Math.random() * up.length)] ?? this.services[0]!;
  }

  url(): string {
    return this.pick().url;
  }

  async call(path: string, body: unknown) {
    const s = this.pick();
    this.calls.set(s, (this.calls.get(s) ?? 0) + 1);
    try {
      return await postJson(`${s.url}${path}`, body, { authorization: `Bearer ${this.key}` });
    } finally {
      this.calls.set(s, this.calls.get(s)! - 1);
    }
  }

  /** Sends no more API calls to service `i` and waits until none of ours is running in it (so it holds no transaction of ours). */
  async drain(i: number): Promise<void> {
    const s = this.services[i]!;
    this.avoided.add(s);
    await until(`API calls to service ${i} to finish`, () => (this.calls.get(s) ?? 0) === 0, { timeoutMs: 30_000, intervalMs: 5 });
  }

  /** Lets API calls go to service `i` again. */
  readmit(i: number): void {
    this.avoided.delete(this.services[i]!);
  }

  /** SIGSTOP: the process is frozen (a long GC pause, a stalled VM), its connections stay open. */
  freeze(i: number): void {
    const s = this.services[i]!;
    this.frozen.add(s);
    s.child.kill("SIGSTOP");
  }

  thaw(i: number): void {
    const s = this.services[i]!;
    s.child.kill("SIGCONT");
    this.frozen.delete(s);
  }

  /** While on, every request's sender pid is looked up on arrival (`Attempt.sender`; costs a /proc scan per request). */
  traceSenders(on: boolean): void {
    this.receiver.onArrival = on
      ? (a) => {
          void socketOwner(a.remotePort, a.localPort, this.pids()).then((pid) => (a.sender = pid));
        }
      : undefined;
  }

  /** 2xx deliveries service `i` counted (its /metrics). */
  async deliveredBy(i: number): Promise<number> {
    const text = await (await fetch(`${this.services[i]!.url}/metrics`)).text();
    return text
      .split("\n")
      .filter((l) => l.startsWith("shophook_deliveries_total{") && l.includes('result="success"'))
      .reduce((n, l) => n + Number(l.split(" ").at(-1)), 0);
  }

  /** Webhooks whose lease service `i` holds now (lease owners are `host:pid:...`). */
  async leasesOf(i: number): Promise<string[]> {
    const { rows } = await this.pool.query<{ id: string }>("SELECT id::text FROM webhooks WHERE shop_id = $1 AND split_part(lease_owner, ':', 2) = $2 ORDER BY id", [
      this.shopId,
      String(this.services[i]!.child.pid),
    ]);
    return rows.map((r) => r.id);
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

  /** Waits until `n` more writes have been acknowledged (the service takes writes). */
  async writesGo(n: number, what = `${n} more writes acknowledged`, timeoutMs = 60_000): Promise<void> {
    const target = this.acknowledged + n;
    await until(what, () => this.acknowledged >= target, { timeoutMs });
  }

  /** Waits until every webhook has had `n` more requests answered 2xx (deliveries flow). */
  async deliveriesGo(n = 1, what = `${n} more deliveries of every webhook`, timeoutMs = 60_000): Promise<void> {
    const base = new Map(this.webhooks.map((w) => [w.id, this.receiver.delivered(w.id).length]));
    await until(what, () => this.webhooks.every((w) => this.receiver.delivered(w.id).length >= base.get(w.id)! + n), { timeoutMs });
  }

  private take(changes: Array<{ id: string; entity: string; entity_id: string; latest: Record<string, unknown> }>) {
    const now = Date.now();
    for (const c of changes) {
      this.copy.set(`${c.entity}:${c.entity_id}`, c.latest[c.entity]);
      if (!this.served.has(c.id)) this.served.set(c.id, now);
    }
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
        this.take(res.body.changes);
        if (!res.body.changes.length) await sleep(20);
      }
      // Drain to the end. An empty page is not the end: a change committed behind a transaction
      // still open anywhere in the cluster (the horizon) is served once that transaction ends.
      const { rows } = await this.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM changes WHERE shop_id = $1", [this.shopId]);
      const total = rows[0]!.n;
      const deadline = Date.now() + 60_000;
      while (seen < total && !this.stopped) {
        if (Date.now() > deadline) throw new Error(`the poller was served ${seen} of ${total} changes`);
        const res = await this.call("/v1/shop.History/GetChanges", { paging: { after, limit: 500 } }).catch(() => undefined);
        if (res?.status !== 200) {
          await sleep(50);
          continue;
        }
        after = res.body.paging.next;
        seen += res.body.changes.length;
        this.take(res.body.changes);
        if (!res.body.changes.length) await sleep(20);
      }
    })();
  }

  async restart(i: number): Promise<void> {
    this.services[i] = await startService(this.env);
  }

  /** Each webhook's changes, in change-log order. */
  async expected(): Promise<Map<string, string[]>> {
    const expected = new Map<string, string[]>();
    for (const w of this.webhooks) {
      const { rows } = await this.pool.query<{ id: string }>("SELECT id FROM changes WHERE shop_id = $1 AND entity = ANY($2::text[]) ORDER BY xid, id", [this.shopId, w.entities]);
      expected.set(w.id, rows.map((r) => r.id));
    }
    return expected;
  }

  /** A webhook's delivery state, its last requests and the services' recent warnings, for a failure message. */
  async describeWebhook(id: string): Promise<string> {
    const { rows } = await this.pool
      .query(
        `SELECT state, active, cursor_xid::text, cursor_seq, batch_id, attempts, next_attempt_at, lease_owner, lease_until, now() AS db_now, held_until, rate_limit, last_sent_at, last_error, disabled_reason
           FROM webhooks WHERE id = $1`,
        [id],
      )
      .catch((err: unknown) => ({ rows: [{ error: (err as Error).message }] }));
    const last = this.receiver.attempts.filter((a) => a.webhookId === id).slice(-3);
    const warnings = this.services.flatMap((s, i) => s.logs.filter((l) => Number(l.level) >= 40).slice(-5).map((l) => `service ${i} (pid ${s.child.pid}): ${JSON.stringify(l)}`));
    return [
      `row: ${JSON.stringify(rows[0])}`,
      `last requests: ${JSON.stringify(last.map((a) => ({ callback: a.callbackId, changes: a.changeIds.length, at: new Date(a.start).toISOString(), outcome: a.outcome, status: a.status })))}`,
      `now: ${new Date().toISOString()}; services: ${this.services.map((s) => `pid ${s.child.pid} ${s.child.exitCode ?? s.child.signalCode ?? "up"}`).join(", ")}`,
      ...warnings,
    ].join("\n");
  }

  /** Overlaps in words, for a failure message. */
  describeOverlaps(): string {
    const name = (id: string) => this.webhooks.find((w) => w.id === id)?.name ?? id;
    return this.receiver.overlaps
      .map((o) => {
        const reqs = o.attempts.map((a, k) => {
          const before = this.receiver.attempts.find((b) => b !== a && b.callbackId === a.callbackId && b.start < a.start && b.outcome === "delivered");
          return `callback ${a.callbackId} (${a.changeIds.length} changes, from pid ${o.senders[k] ?? "?"}, arrived ${new Date(a.start).toISOString()}, ${a.outcome}${before ? `, a resend: first delivered ${new Date(before.start).toISOString()}` : ""})`;
        });
        return `webhook ${name(o.webhookId)}: ${reqs.join(" while ")}`;
      })
      .join("\n");
  }

  /** The final checks (module comment). Waits for deliveries to catch up first. */
  async verify(timeoutMs = 120_000): Promise<VerifyResult> {
    this.polling = false;
    await this.poller;
    const expected = await this.expected();
    const deadline = Date.now() + timeoutMs;
    for (const w of this.webhooks) {
      while (new Set(this.receiver.received(w.id)).size < expected.get(w.id)!.length) {
        if (Date.now() > deadline) throw new Error(`webhook ${w.name} got ${new Set(this.receiver.received(w.id)).size} of ${expected.get(w.id)!.length} changes\n${await this.describeWebhook(w.id)}`);
        await sleep(100);
      }
    }
    let resent = 0;
    let changes = 0;
    for (const w of this.webhooks) {
      // 1. Every change, first arrivals in change-log order.
      const got = this.receiver.received(w.id);
      const first = [...new Set(got)];
      const want = expected.get(w.id)!;
      const at = first.findIndex((id, k) => id !== want[k]);
      if (at >= 0 || first.length !== want.length) {
        throw new Error(`webhook ${w.name}: first arrivals out of change-log order at ${at}: got ${first.slice(Math.max(0, at - 2), at + 3)}, want ${want.slice(Math.max(0, at - 2), at + 3)} (${first.length} vs ${want.length})`);
      }
      resent += got.length - first.length;
      changes += first.length;

      // 2. Duplicates only as whole batches resent under their callback id.
      const problems: string[] = [];
      const batches = new Map<string, string>();
      for (const a of this.receiver.attempts.filter((x) => x.webhookId === w.id && x.bodyId !== undefined)) {
        if (a.bodyId !== a.callbackId) problems.push(`body id ${a.bodyId} under webhook-id ${a.callbackId}`);
        const key = a.changeIds.join(",");
        const known = batches.get(a.callbackId);
        if (known === undefined) batches.set(a.callbackId, key);
        else if (known !== key) problems.push(`callback ${a.callbackId} sent with different changes (${known.split(",").length} then ${a.changeIds.length})`);
      }
      const firstUnder = new Map<string, string>();
      for (const a of this.receiver.delivered(w.id)) {
        const again = a.changeIds.filter((id) => firstUnder.has(id));
        const elsewhere = again.filter((id) => firstUnder.get(id) !== a.callbackId);
        if (elsewhere.length) problems.push(`${elsewhere.length} changes first delivered under callback ${firstUnder.get(elsewhere[0]!)} came again under callback ${a.callbackId} (e.g. change ${elsewhere[0]})`);
        for (const id of a.changeIds) if (!firstUnder.has(id)) firstUnder.set(id, a.callbackId);
      }
      expect(problems, `webhook ${w.name}: re-sent changes come only as whole batches under their callback id`).toEqual([]);
    }
    // 3. One request in flight per webhook.
    expect(this.receiver.overlaps.length, `requests of one webhook in flight at once:\n${this.describeOverlaps()}`).toBe(0);
    expect(this.receiver.maxInFlight, "requests of one webhook in flight at once").toBe(1);
    // 4. The poller's copy equals the database.
    for (const [name, def] of Object.entries(entities)) {
      const { rows } = await this.pool.query(`SELECT * FROM ${def.table} WHERE shop_id = $1`, [this.shopId]);
      const db = Object.fromEntries(rows.map((r) => [String(r[def.key]), entityJson(def, r)]));
      const copy = Object.fromEntries([...this.copy].filter(([k]) => k.startsWith(`${name}:`)).map(([k, v]) => [k.slice(name.length + 1), v]));
      expect(copy, `poller's copy of ${name}`).toEqual(db);
    }
    return { changes, requests: this.receiver.delivered().length, resent, attempts: this.receiver.attempts.length };
  }

  async stop(): Promise<void> {
    if (!live.delete(this)) return;
    this.stopped = true;
    this.writing = false;
    this.polling = false;
    for (const s of this.services) {
      if (s.child.exitCode !== null || s.child.signalCode !== null) continue;
      s.child.kill("SIGCONT"); // a frozen one could not handle SIGTERM
      s.child.kill("SIGTERM");
    }
    const killer = setTimeout(() => {
      for (const s of this.services) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill("SIGKILL");
    }, 30_000);
    await Promise.all(this.services.map((s) => s.exited));
    clearTimeout(killer);
    await Promise.all(this.writers);
    await this.poller?.catch(() => undefined);
    await this.pool?.end();
    await this.receiver.close();
  }
}
