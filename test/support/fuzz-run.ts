/**
 * Runs the hostile-input checks against a real service process (used by the smoke test in npm
 * test and by the chaos suite):
 *   1. two shops, a victim with one of everything (and a webhook that has delivered) and an
 *      attacker; one valid call per RPC and transport, as the attacker: each RPC is routed and
 *      answers ok or not_found, never unimplemented, unauthenticated or internal;
 *   2. the round-robin of defective requests, in slices (memory measured after each), each with
 *      the exact refusal its kind must get; the database holds nothing from them (every table);
 *   3. cross-tenant probes: every id and cursor field of every RPC gets the victim's ids and
 *      cursors, and must answer exactly what the same request with an id or cursor that exists
 *      nowhere answers; the victim's whole state is unchanged at the end.
 */
import fs from "node:fs/promises";
import { expect } from "vitest";
import { createApiKey, createShop } from "../../src/auth/api-keys.ts";
import { createPool, type Pool } from "../../src/db/pool.ts";
import { postJson } from "./app.ts";
import {
  type BodySources,
  describeCase,
  type EntityKind,
  type FuzzCase,
  frame,
  fuzzCases,
  GrpcSessions,
  matches,
  type Outcome,
  RPCS,
  rng,
  type Rpc,
  send,
  sendGrpc,
  sendHttp,
  slotsOf,
  toProto,
  type Transport,
  TRANSPORTS,
  tripleKey,
  validJson,
} from "./fuzz.ts";
import type { ServiceProcess } from "./process.ts";
import { type Receiver, startReceiver } from "./receiver.ts";

// ---------------------------------------------------------------------------------------------
// Database state

/** Every table of the database (partitions counted through their parent), schema-qualified. */
async function tables(pool: Pool): Promise<string[]> {
  const { rows } = await pool.query<{ name: string }>(
    `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
      ORDER BY 1`,
  );
  return rows.map((r) => r.name);
}

/**
 * Row counts of every table. pg-boss's job table counts only jobs a request could cause: jobs of
 * scheduled queues and pg-boss's own (`__pgboss__*`) come from the clock.
 */
export async function counts(pool: Pool): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of await tables(pool)) {
    const where = t === "pgboss.job" ? " WHERE name NOT LIKE '\\_\\_pgboss\\_\\_%' AND name NOT IN (SELECT name FROM pgboss.schedule)" : "";
    out[t] = (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${t}${where}`)).rows[0]!.n;
  }
  return out;
}

/**
 * Every row, every column, of every table that has a shop_id, for one shop, plus its shops row:
 * entities, changes, api keys, webhooks (secret, cursor, state, lease), deliveries, stock.
 */
async function shopState(pool: Pool, shopId: string): Promise<Record<string, string[]>> {
  const { rows: withShop } = await pool.query<{ name: string }>(
    `SELECT quote_ident(c.table_schema) || '.' || quote_ident(c.table_name) AS name
       FROM information_schema.columns c JOIN information_schema.tables t USING (table_schema, table_name)
      WHERE c.column_name = 'shop_id' AND t.table_type = 'BASE TABLE' AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
      ORDER BY 1`,
  );
  // As text: int64 ids stay exact.
  const out: Record<string, string[]> = {};
  out.shops = (await pool.query<{ row: string }>("SELECT to_jsonb(s)::text AS row FROM shops s WHERE id = $1", [shopId])).rows.map((r) => r.row);
  for (const { name } of withShop) {
    const { rows } = await pool.query<{ row: string }>(`SELECT to_jsonb(t)::text AS row FROM ${name} t WHERE shop_id = $1 ORDER BY 1`, [shopId]);
    out[name] = rows.map((r) => r.row);
  }
  return out;
}

/** Tables whose rows differ, with the rows only one side has. */
function stateDiff(a: Record<string, string[]>, b: Record<string, string[]>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].flatMap((t) => {
    const [before, after] = [a[t] ?? [], b[t] ?? []];
    const gone = before.filter((r) => !after.includes(r));
    const added = after.filter((r) => !before.includes(r));
    return gone.length || added.length ? [`${t}: ${gone.length} rows gone ${gone.slice(0, 2).join(" ").slice(0, 600)}; ${added.length} rows new ${added.slice(0, 2).join(" ").slice(0, 600)}`] : [];
  });
}

function countDiff(a: Record<string, number>, b: Record<string, number>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((t) => a[t] !== b[t]).map((t) => `${t}: ${a[t]} -> ${b[t]}`);
}

// ---------------------------------------------------------------------------------------------
// Memory

export interface Memory {
  rssKb: number;
  /** After a full GC, when the service exposes its inspector. */
  heapUsedKb?: number;
  externalKb?: number;
  gc: boolean;
}
export type MeasureMemory = () => Promise<Memory>;

async function rssKb(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

/** RSS from /proc, no GC. */
export const procMemory = (svc: ServiceProcess): MeasureMemory => async () => ({ rssKb: await rssKb(svc.child.pid!), gc: false });

/**
 * Memory after a full GC, through the inspector of a service started with
 * NODE_OPTIONS=--inspect=127.0.0.1:0 (it prints its address on stderr): HeapProfiler.collectGarbage,
 * then process.memoryUsage() and RSS. Each call answers only once the GC is done.
 */
export async function inspectorMemory(svc: ServiceProcess): Promise<{ measure: MeasureMemory; close(): void }> {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(svc.stderr())?.[1];
  if (!url) throw new Error(`the service has no inspector (start it with NODE_OPTIONS=--inspect=127.0.0.1:0): ${svc.stderr().slice(0, 300)}`);
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve(), { once: true });
    ws.addEventListener("error", () => reject(new Error(`inspector: cannot connect to ${url}`)), { once: true });
  });
  let next = 0;
  const pending = new Map<number, (result: unknown) => void>();
  ws.addEventListener("message", (ev) => {
    const msg = JSON.parse(String(ev.data)) as { id?: number; result?: unknown };
    if (msg.id !== undefined) pending.get(msg.id)?.(msg.result);
  });
  const call = (method: string, params: unknown = {}) =>
    new Promise<any>((resolve) => {
      const id = ++next;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  return {
    async measure() {
      await call("HeapProfiler.collectGarbage");
      const r = await call("Runtime.evaluate", { expression: "JSON.stringify(process.memoryUsage())", returnByValue: true });
      const m = JSON.parse(r.result.value as string) as NodeJS.MemoryUsage;
      return { rssKb: Math.round(m.rss / 1024), heapUsedKb: Math.round(m.heapUsed / 1024), externalKb: Math.round(m.external / 1024), gc: true };
    },
    close: () => ws.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// The two shops

const randomId = (r: ReturnType<typeof rng>) => String(1_000_000_000_000 + r.int(1_000_000_000));

interface Shop {
  id: string;
  key: string;
  call(path: string, body: unknown): Promise<{ status: number; body: any }>;
}

async function shop(pool: Pool, svc: ServiceProcess, name: string): Promise<Shop> {
  const s = await createShop(pool, name);
  const { key } = await createApiKey(pool, s.id, "fuzz");
  return { id: s.id, key, call: (path, body) => postJson(`${svc.url}/v1${path}`, body, { authorization: `Bearer ${key}` }) };
}

async function ok(shopCall: Promise<{ status: number; body: any }>, what: string): Promise<any> {
  const res = await shopCall;
  if (res.status !== 200) throw new Error(`${what}: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
  return res.body;
}

/** One of everything, marked: a product, variant, stock, customer, confirmed order, fulfillment, webhook with a delivery. */
async function victimData(v: Shop, receiver: Receiver, mark: string): Promise<Record<EntityKind, string[]>> {
  const p = await ok(v.call("/shop.Product/CreateProduct", { name: mark }), "victim product");
  const va = await ok(v.call("/shop.Variant/CreateVariant", { product_id: p.id, name: mark }), "victim variant");
  await ok(v.call("/shop.Inventory/SetInventory", { counts: [{ variant_id: va.id, available_quantity: 5 }] }), "victim stock");
  const c = await ok(v.call("/shop.Customer/CreateCustomer", { full_name: mark }), "victim customer");
  const o = await ok(v.call("/shop.Order/CreateOrder", { customer_id: c.id, order_note: mark, lines: [{ variant_id: va.id, quantity: 1 }] }), "victim order");
  await ok(v.call("/shop.Order/ConfirmOrder", { id: o.id }), "victim confirm");
  const o2 = await ok(v.call("/shop.Order/CreateOrder", { customer_id: c.id, order_note: mark, lines: [{ variant_id: va.id, quantity: 1 }] }), "victim draft order");
  const f = await ok(v.call("/shop.Fulfillment/CreateFulfillment", { order_id: o.id, shipping_note: mark }), "victim fulfillment");
  const wh = await ok(v.call("/shop.Webhook/CreateWebhook", { url: receiver.url, entities: ["customer"], description: mark }), "victim webhook");
  const keys = await ok(v.call("/shop.ApiKey/ListApiKeys", {}), "victim keys");
  // The last write: the webhook delivers it, so the victim has a delivery too.
  await ok(v.call("/shop.Customer/UpdateCustomer", { id: c.id, note: mark }), "victim update");
  await receiver.until((rs) => rs.length >= 1);
  await expect.poll(async () => (await v.call("/shop.Webhook/ListDeliveries", {})).body.deliveries?.length ?? 0, { timeout: 15_000 }).toBeGreaterThan(0);
  const d = (await ok(v.call("/shop.Webhook/ListDeliveries", {}), "victim deliveries")).deliveries[0];
  return {
    product: [p.id],
    variant: [va.id],
    customer: [c.id],
    order: [o.id, o2.id],
    fulfillment: [f.id],
    webhook: [wh.id],
    delivery: [d.id, d.callback_id],
    api_key: keys.api_keys.map((k: { id: string }) => k.id),
  };
}

/** The attacker's own entities: fill the id fields a probe does not aim at the victim. */
async function attackerData(a: Shop, receiver: Receiver): Promise<Record<EntityKind, string>> {
  const p = await ok(a.call("/shop.Product/CreateProduct", { name: "attacker" }), "attacker product");
  const va = await ok(a.call("/shop.Variant/CreateVariant", { product_id: p.id, name: "attacker" }), "attacker variant");
  await ok(a.call("/shop.Inventory/SetInventory", { counts: [{ variant_id: va.id, available_quantity: 100 }] }), "attacker stock");
  const c = await ok(a.call("/shop.Customer/CreateCustomer", { full_name: "attacker" }), "attacker customer");
  const o = await ok(a.call("/shop.Order/CreateOrder", { customer_id: c.id, lines: [{ variant_id: va.id, quantity: 1 }] }), "attacker order");
  const wh = await ok(a.call("/shop.Webhook/CreateWebhook", { url: receiver.url, entities: ["fulfillment"] }), "attacker webhook");
  const keys = await ok(a.call("/shop.ApiKey/ListApiKeys", {}), "attacker keys");
  return { product: p.id, variant: va.id, customer: c.id, order: o.id, fulfillment: "1", webhook: wh.id, delivery: "1", api_key: keys.api_keys[0].id };
}

/** RPCs with a paging cursor, and the body that pages them. */
const PAGED = RPCS.filter((r) => slotsOf(r).cursors.some((s) => s.startsWith("paging.")));

/**
 * Every cursor `s` can get: next and prev of the first page of every paged RPC, in each sort,
 * with and without the RPC's other filters (GetChanges' cursors name their entities).
 */
async function cursorsOf(s: Shop): Promise<Array<{ rpc: string; cursor: string }>> {
  const out: Array<{ rpc: string; cursor: string }> = [];
  for (const rpc of PAGED) {
    const sorts = rpc.method.input.fields.find((f) => f.name === "paging")!.message!.fields.some((f) => f.name === "sort") ? ["", "updated_at"] : [""];
    const { filter: _ids, paging: _paging, ...rest } = validJson(rpc, { id: () => "1", cursor: () => undefined, receiverUrl: "" });
    for (const others of [rest, {}]) {
      for (const sort of sorts) {
        const res = await s.call(rpc.path, { ...others, paging: { limit: 1, ...(sort ? { sort } : {}) } });
        if (res.status !== 200) throw new Error(`${rpc.path} paging: ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
        for (const c of [res.body.paging?.next, res.body.paging?.prev]) if (c && !out.some((o) => o.cursor === c)) out.push({ rpc: rpc.path, cursor: c });
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Running

export interface FuzzOptions {
  seed: number;
  /** Slices of the round-robin; memory is measured after each. */
  slices: number;
  perSlice: number;
  bodyLimit: number;
  measure?: MeasureMemory;
}

export interface Failure {
  index: number;
  rpc: string;
  transport: string;
  kind: string;
  detail?: string;
  expected: string;
  got: string;
  repro: string;
}

export interface FuzzReport {
  seed: number;
  /** Valid calls per RPC and transport, by result, and those that answered anything but ok / not_found. */
  controls: Record<string, number>;
  controlFailures: string[];
  sent: number;
  byResult: Record<string, number>;
  byKind: Record<string, Record<string, number>>;
  /** Requests per (RPC, transport, kind). */
  coverage: Record<string, number>;
  failures: Failure[];
  memoryBefore: Memory;
  slices: Array<{ sent: number; ms: number; memory: Memory }>;
  /** Tables whose row count the defective requests or the probes changed. */
  dbChanges: string[];
  tablesCounted: number;
  probes: number;
  probeResults: Record<string, number>;
  leaks: string[];
  /** Tables in which the victim's rows changed. */
  victimChanges: string[];
}

const label = (o: Outcome) => (o.code ? `${o.result} ${o.code}` : o.result);

export async function runFuzz(svc: ServiceProcess, dbUrl: string, opts: FuzzOptions): Promise<FuzzReport> {
  const pool = createPool(dbUrl, 2);
  const receiver = await startReceiver();
  const sessions = new GrpcSessions(svc.url);
  try {
    const r = rng(opts.seed);
    const victim = await shop(pool, svc, "victim");
    const attacker = await shop(pool, svc, "attacker");
    const mark = `SECRET-A-${opts.seed}`;
    const victimIds = await victimData(victim, receiver, mark);
    const own = await attackerData(attacker, receiver);
    const spare = await ok(attacker.call("/shop.ApiKey/CreateApiKey", { name: "revoked" }), "spare key");
    await ok(attacker.call("/shop.ApiKey/RevokeApiKey", { id: spare.api_key.id }), "revoke spare key");
    const badKeys = [`Bearer shk_${"A".repeat(43)}`, "Basic abc", "Bearer", `Bearer ${attacker.key.slice(0, -3)}xyz`, `bearer ${attacker.key} extra`, `Bearer ${spare.key}`, `Token ${attacker.key}`, attacker.key];

    // 1. One valid call per RPC and transport.
    // Ids that exist nowhere, but for what an order is made of (a sensible order names the shop's
    // own customer and variants; an unknown one is invalid_argument by design).
    const random: BodySources = { id: (kind, slot) => (slot.startsWith("lines.") || slot === "customer_id" ? own[kind] : randomId(r)), cursor: () => undefined, receiverUrl: receiver.url };
    const controls: Record<string, number> = {};
    const controlFailures: string[] = [];
    const calls = RPCS.flatMap((rpc) => TRANSPORTS.map((transport) => ({ rpc, transport })));
    await inParallel(
      calls.map(({ rpc, transport }) => async () => {
        const body = validJson(rpc, random);
        const o = await sendValid(svc, sessions, attacker.key, rpc, transport, body);
        controls[label(o)] = (controls[label(o)] ?? 0) + 1;
        const fine = transport === "json" || transport === "binary" ? o.result === "http:200" || (o.result === "http:404" && o.code === "not_found") : o.result === "grpc:0" || o.result === "grpc:5";
        if (!fine) controlFailures.push(`${transport} ${rpc.path} ${JSON.stringify(body)} -> ${label(o)} ${o.message ?? ""}`);
      }),
      8,
    );

    // The victim's cursors, the attacker's own; then the state everything is compared with.
    const victimCursors = await cursorsOf(victim);
    const ownCursors = await cursorsOf(attacker);
    await settled(pool, victim.id);
    const before = await counts(pool);
    const victimBefore = await shopState(pool, victim.id);

    // 2. Defective requests, in slices.
    const measure = opts.measure ?? procMemory(svc);
    const memoryBefore = await measure();
    const byResult: Record<string, number> = {};
    const byKind: Record<string, Record<string, number>> = {};
    const coverage: Record<string, number> = {};
    const failures: Failure[] = [];
    const slices: FuzzReport["slices"] = [];
    let sent = 0;
    const sources: BodySources = { id: (kind) => own[kind], cursor: () => undefined, receiverUrl: receiver.url };
    for (let slice = 0; slice < opts.slices; slice++) {
      const t0 = Date.now();
      const queue = fuzzCases({ key: attacker.key, badKeys, seed: opts.seed, bodyLimit: opts.bodyLimit, sources }, slice * opts.perSlice, opts.perSlice);
      let inSlice = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          for (let next = queue.next(); !next.done; next = queue.next()) {
            const c = next.value;
            const o = await send(svc.url, sessions, c);
            sent++;
            inSlice++;
            byResult[o.result] = (byResult[o.result] ?? 0) + 1;
            const k = `${c.transport} ${c.kind}`;
            (byKind[k] ??= {})[label(o)] = (byKind[k]![label(o)] ?? 0) + 1;
            coverage[tripleKey(c.rpc, c.transport, c.kind)] = (coverage[tripleKey(c.rpc, c.transport, c.kind)] ?? 0) + 1;
            if (!matches(o, c.expect) && failures.length < 50) failures.push(failure(c, o));
          }
        }),
      );
      slices.push({ sent: inSlice, ms: Date.now() - t0, memory: await measure() });
    }
    expect((await fetch(`${svc.url}/healthz`)).status).toBe(200);
    const afterFuzz = await counts(pool);
    const dbChanges = countDiff(before, afterFuzz).map((d) => `fuzz: ${d}`);

    // 3. Cross-tenant probes.
    const probe = await probeAll(svc, sessions, attacker, own, victimIds, victimCursors, ownCursors, receiver.url, r, mark);
    dbChanges.push(...countDiff(afterFuzz, await counts(pool)).map((d) => `probes: ${d}`));
    const victimChanges = stateDiff(victimBefore, await shopState(pool, victim.id));
    return { seed: opts.seed, controls, controlFailures, sent, byResult, byKind, coverage, failures, memoryBefore, slices, dbChanges, tablesCounted: Object.keys(before).length, ...probe, victimChanges };
  } finally {
    sessions.close();
    await receiver.close();
    await pool.end();
  }
}

/** A well-formed call: Connect JSON or binary at eTop's path, gRPC or gRPC-Web. */
function sendValid(svc: ServiceProcess, sessions: GrpcSessions, key: string, rpc: Rpc, transport: Transport, body: Record<string, unknown>): Promise<Outcome> {
  const authorization = `Bearer ${key}`;
  const post = (path: string, type: string, bytes: Buffer) => sendHttp(svc.url, { method: "POST", path, headers: { "content-type": type, authorization }, body: bytes });
  switch (transport) {
    case "json":
      return post(`/v1${rpc.path}`, "application/json", Buffer.from(JSON.stringify(body)));
    case "binary":
      return post(`/v1${rpc.path}`, "application/proto", toProto(rpc, body));
    case "grpcweb":
      return post(rpc.path, "application/grpc-web+proto", frame(toProto(rpc, body)));
    case "grpc":
      return sendGrpc(sessions.get(), { path: rpc.path, headers: { "content-type": "application/grpc", te: "trailers", authorization }, body: frame(toProto(rpc, body)) });
  }
}

function failure(c: FuzzCase, o: Outcome): Failure {
  return { index: c.index, rpc: c.rpc, transport: c.transport, kind: c.kind, detail: c.detail, expected: label({ ...c.expect }), got: `${label(o)} ${o.message ?? ""}`.trim(), repro: describeCase(c) };
}

/** The victim's webhook has delivered its last change, and nothing of the victim's is in flight. */
async function settled(pool: Pool, shopId: string) {
  await expect
    .poll(async () => {
      const { rows } = await pool.query<{ done: boolean }>(
        `SELECT bool_and(w.batch_id IS NULL AND (w.cursor_xid, w.cursor_seq) >= (last.xid, last.id)) AS done
           FROM webhooks w, LATERAL (SELECT xid, id FROM changes WHERE shop_id = w.shop_id ORDER BY xid DESC, id DESC LIMIT 1) last
          WHERE w.shop_id = $1`,
        [shopId],
      );
      return rows[0]?.done ?? false;
    }, { timeout: 15_000 })
    .toBe(true);
}

/** An answer with what may legitimately differ between two requests (cursors' issue times) left out. */
function comparable(o: Outcome, replace: string, by: string): string {
  const strip = (v: unknown): unknown => (Array.isArray(v) ? v.map(strip) : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).filter(([k]) => k !== "paging").map(([k, x]) => [k, strip(x)])) : v);
  return JSON.stringify({ result: o.result, code: o.code, message: o.message, body: o.result === "http:200" ? strip(o.body) : undefined }).split(replace).join(by);
}

async function probeAll(
  svc: ServiceProcess,
  sessions: GrpcSessions,
  attacker: Shop,
  own: Record<EntityKind, string>,
  victimIds: Record<EntityKind, string[]>,
  victimCursors: Array<{ rpc: string; cursor: string }>,
  ownCursors: Array<{ rpc: string; cursor: string }>,
  receiverUrl: string,
  r: ReturnType<typeof rng>,
  mark: string,
): Promise<{ probes: number; probeResults: Record<string, number>; leaks: string[] }> {
  const leaks: string[] = [];
  const probeResults: Record<string, number> = {};
  let probes = 0;
  const post = (rpc: Rpc, body: Record<string, unknown>) => sendValid(svc, sessions, attacker.key, rpc, "json", body);
  const allVictimIds = Object.values(victimIds).flat();
  const check = (rpc: Rpc, what: string, body: unknown, o: Outcome, control: Outcome, replace: string, by: string, strict: boolean) => {
    probes++;
    probeResults[`${label(o)} (control ${label(control)})`] = (probeResults[`${label(o)} (control ${label(control)})`] ?? 0) + 1;
    const text = JSON.stringify(o.body ?? "") + (o.message ?? "");
    const same = strict ? comparable(o, replace, by) === comparable(control, by, by) : o.result === control.result && o.code === control.code;
    if (!same || text.includes(mark) || allVictimIds.some((id) => text.includes(id) && id !== replace) || /^http:5|^grpc:(2|13|14)$/.test(o.result))
      leaks.push(`${rpc.path} ${what}: ${JSON.stringify(body).slice(0, 200)} -> ${label(o)} ${o.message ?? ""} ${text.slice(0, 200)}; control -> ${label(control)} ${control.message ?? ""}`);
  };
  // One task per (RPC, field): its control, then the victim's ids or cursors in that field.
  const tasks: Array<() => Promise<void>> = [];
  for (const rpc of RPCS) {
    const { ids, cursors } = slotsOf(rpc);
    for (const { slot } of ids) {
      tasks.push(async () => {
        const nowhere = randomId(r);
        const body = (id: string) => validJson(rpc, { id: (kind, s) => (s === slot ? id : own[kind]), cursor: () => undefined, receiverUrl });
        const control = await post(rpc, body(nowhere));
        for (const id of allVictimIds) check(rpc, slot, body(id), await post(rpc, body(id)), control, id, nowhere, true);
      });
    }
    for (const slot of cursors) {
      tasks.push(async () => {
        const body = (cursor: string) => validJson(rpc, { id: () => randomId(r), cursor: (s) => (s === slot ? cursor : undefined), receiverUrl });
        const forged = `${Buffer.from(JSON.stringify({ v: 1, l: "x", s: "1", o: "", k: ["1"], t: Date.now() })).toString("base64url")}.${Buffer.from(String(r.next())).toString("base64url")}`;
        const control = await post(rpc, body(forged));
        // The attacker's own cursor of this list works: the field is read, so a refusal of the
        // victim's is about whose it is.
        const mine = slot === "paging.after" ? ownCursors.find((c) => c.rpc === rpc.path) : undefined;
        if (mine) {
          const o = await post(rpc, body(mine.cursor));
          if (o.result !== "http:200") leaks.push(`${rpc.path} ${slot}: the attacker's own cursor is refused (${label(o)} ${o.message ?? ""}): the probe would prove nothing`);
        }
        for (const { cursor } of victimCursors) check(rpc, slot, body(cursor), await post(rpc, body(cursor)), control, cursor, forged, false);
      });
    }
  }
  await inParallel(tasks, 8);
  return { probes, probeResults, leaks };
}

/** Runs `tasks`, `n` at a time. */
async function inParallel(tasks: Array<() => Promise<void>>, n: number) {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < tasks.length) await tasks[next++]!();
  }));
}


