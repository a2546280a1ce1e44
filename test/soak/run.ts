/**
 * The virtual-time soak (docs/soak.md). One app on a real PostgreSQL with a hand-moved clock;
 * shops, pollers and receivers drive it over the wire for simulated days. The clock moves one
 * tick at a time; within a tick the shops write, then the test runs the delivery sweep until no
 * webhook has anything due (so retries, backoff and the retry window follow the simulated clock),
 * and once per simulated day the retention prune runs as scheduled. At the end every copy is
 * compared with the database and every webhook's deliveries with the change log.
 */
import { afterAll, expect, it } from "vitest";
import { ApiKey } from "../../gen/shop/api_key_pb.ts";
import { Misc } from "../../gen/shop/misc_pb.ts";
import { Product } from "../../gen/shop/product_pb.ts";
import { Webhook } from "../../gen/shop/webhook_pb.ts";
import type { App } from "../../src/app.ts";
import { createApiKey, createShop } from "../../src/auth/api-keys.ts";
import { pruneExpired } from "../../src/jobs/prune.ts";
import { useApp } from "../support/app.ts";
import { ManualClock } from "../support/clock.ts";
import { RpcError, ShopApi } from "./api.ts";
import { checkDeliveries, checkLogAgainstDb, checkPollers, checkReceiverCopy, dbRows, describe as describeSettings, type Epoch, type HookUnderTest, matches } from "./checks.ts";
import { soakParams, type SoakParams } from "./params.ts";
import { ChangesPoller, ListPoller } from "./pollers.ts";
import { Rng } from "./random.ts";
import { figures } from "./report.ts";
import { type Endpoint, HookRecord, Receivers } from "./receivers.ts";
import { DAY, HOUR, HOURLY, isSilent, makePlan, mixOf, type Plan, type Settings, type ShopPlan, type WebhookPlan } from "./scenario.ts";
import { type Kind, ShopModel } from "./shop-model.ts";
import { type SweepCost, sweepCost } from "./sweep-cost.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Webhooks (of the shops $2, or all) with something deliverable now and nobody delivering: see Soak.drain. */
const PENDING = `SELECT w.id::text FROM webhooks w
  WHERE ($2::bigint[] IS NULL OR w.shop_id = ANY($2::bigint[])) AND w.active AND w.state <> 'stop'
    AND (w.lease_until IS NULL OR w.lease_until < now()) AND (w.held_until IS NULL OR w.held_until < now())
    AND CASE WHEN w.state = 'retry' THEN w.next_attempt_at <= $1
             ELSE w.batch_id IS NOT NULL OR EXISTS (
               SELECT 1 FROM changes c
                WHERE c.shop_id = w.shop_id AND (c.xid, c.id) > (w.cursor_xid, w.cursor_seq) AND c.xid < pg_snapshot_xmin(pg_current_snapshot())
                  AND ((c.entity || ':*') = ANY(w.subscriptions) OR (c.entity || ':' || c.change_type) = ANY(w.subscriptions))
                  AND (c.change_type <> 'update' OR cardinality(w.fields) = 0
                       OR EXISTS (SELECT 1 FROM json_object_keys(c.changed -> c.entity) k WHERE k = ANY(w.fields))))
        END
  LIMIT 20`;

/** Runs `fn` over `items`, `concurrency` at a time. */
async function each<T>(items: T[], concurrency: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

export interface StopEvent {
  at: number;
  reason: string;
  pruned: boolean;
  legit: boolean;
  /** How long the receiver had failed every request when the stop was seen. */
  streakHours: number;
  recovery?: string;
}

export interface SoakHook {
  plan: WebhookPlan;
  shop: SoakShop;
  id: string;
  rec: HookRecord;
  endpoint: Endpoint;
  epochs: Epoch[];
  stops: StopEvent[];
  /** A stop seen and not yet recovered (waiting for the receiver to come back). */
  open: StopEvent | undefined;
  holes: Array<{ boundary: number; since: number }>;
  /** Time of the last recovery: a failure streak is counted from here. */
  recoveredAt: number;
  recoveries: number;
}

export interface SoakShop {
  plan: ShopPlan;
  label: string;
  id: string;
  api: ShopApi;
  model: ShopModel;
  changes: ChangesPoller;
  lists: ListPoller;
  hooks: SoakHook[];
  writes: number;
  nextChangesPoll: number;
  nextListsPoll: number;
}

export interface DayFigures {
  day: number;
  writes: number;
  changesInLog: number;
  /** Changes older than the retention kept after the prune (held for webhooks). */
  keptPastRetention: number;
  oldestHours: number;
  pruned: number;
  sweep: SweepCost;
  deliveries: number;
  stops: number;
  /** Wall-clock seconds since the run started. */
  wall: number;
}

interface Event {
  at: number;
  run: (now: number) => Promise<void>;
}

export class Soak {
  readonly p: SoakParams;
  readonly plan: Plan;
  private readonly app: App;
  private readonly clock: ManualClock;
  private readonly start: number;
  private readonly receivers: Receivers;
  readonly shops: SoakShop[] = [];
  readonly hooksById = new Map<string, SoakHook>();
  private readonly events: Event[] = [];
  private readonly tickMs: number;
  private dayWrites = new Map<number, Array<[SoakShop, number]>>();
  readonly days: DayFigures[] = [];
  /** Problems seen while running, by check. */
  readonly found = {
    changeLog: [] as string[],
    stops: [] as string[],
    operations: [] as string[],
    sweep: [] as string[],
  };
  writes = 0;
  keyRotations = 0;
  secretRotations = 0;
  pauses = 0;
  updates = 0;
  lateWebhooks = 0;
  burst: { writes: number; before: SweepCost; after: SweepCost; shops: number } | undefined;
  private webhookCount = 0;
  private startedAt = Date.now();
  /** Recoveries after a stop past the retry window: SetActive and RecoverWebhook in turn. */
  private recoveries = 0;
  readonly updateKinds: string[] = [];
  /** Wall-clock ms per phase of the run (printed with the figures). */
  readonly phases = new Map<string, number>();
  /** Shops written to or operated on since the last drain. */
  private readonly touched = new Set<string>();

  constructor(app: App, clock: ManualClock, p: SoakParams) {
    this.app = app;
    this.clock = clock;
    this.p = p;
    this.start = clock.now().getTime();
    this.plan = makePlan(p);
    this.tickMs = p.tickMinutes * 60_000;
    this.receivers = new Receivers(clock, app.config.deliveryTimeoutMs);
  }

  private async timed<T>(phase: string, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.phases.set(phase, (this.phases.get(phase) ?? 0) + performance.now() - t0);
    }
  }

  private now() {
    return this.clock.now().getTime();
  }

  private rel(t: number) {
    const h = (t - this.start) / HOUR;
    return `day ${Math.floor(h / 24)} ${String(Math.floor(h % 24)).padStart(2, "0")}:${String(Math.floor((h % 1) * 60)).padStart(2, "0")}`;
  }

  /** Closes the receivers' server (the app is useApp's to stop). */
  async close(): Promise<void> {
    await this.receivers.close();
  }

  // --- setup -------------------------------------------------------------------------------

  async setUp(): Promise<void> {
    await this.receivers.start();
    for (const sp of this.plan.shops) {
      const shop = await createShop(this.app.pool, `soak ${sp.profile} ${sp.i}`);
      const { key, row } = await createApiKey(this.app.pool, shop.id, "initial");
      const api = new ShopApi(this.app.url, shop.id, key, row.id, sp.protocol);
      const rng = new Rng(this.p.seed).fork(50_000 + sp.i);
      const s: SoakShop = {
        plan: sp,
        label: `shop ${sp.i} (${sp.profile}, ${shop.id})`,
        id: shop.id,
        api,
        model: new ShopModel(api, rng),
        changes: new ChangesPoller(api, sp.protocol),
        lists: new ListPoller(api, sp.protocol, sp.listPage),
        hooks: [],
        writes: 0,
        nextChangesPoll: this.start + sp.pollChangesEvery,
        nextListsPoll: this.start + sp.pollListsEvery,
      };
      this.shops.push(s);
      for (const wp of sp.webhooks) {
        if (wp.createAt === 0) await this.createWebhook(s, wp, this.start, undefined);
        else this.events.push({ at: this.start + wp.createAt, run: (now) => this.createLate(s, wp, now) });
      }
      if (sp.keyRotationAt !== undefined) this.events.push({ at: this.start + sp.keyRotationAt, run: () => this.rotateKey(s) });
    }
    this.events.sort((a, b) => a.at - b.at);
  }

  private async createWebhook(s: SoakShop, wp: WebhookPlan, now: number, after: string | undefined): Promise<SoakHook> {
    const outages = wp.outages.map((o) => ({ ...o, start: this.start + o.start, end: this.start + o.end }));
    const endpoint = this.receivers.endpoint(outages, wp.flaky, new Rng(this.p.seed).fork(70_000 + this.webhookCount++));
    const body: Record<string, unknown> = { url: endpoint.url, entities: wp.settings.entities, topics: wp.settings.topics, fields: wp.settings.fields, description: wp.name };
    if (wp.settings.format !== "json") body.format = wp.settings.format;
    if (after) body.after = after;
    const res = await s.api.call(Webhook, "CreateWebhook", body as any);
    const rec = new HookRecord(res.id, res.secret);
    rec.format = wp.settings.format;
    this.receivers.hooks.set(res.id, rec);
    const h: SoakHook = {
      plan: wp,
      shop: s,
      id: res.id,
      rec,
      endpoint,
      epochs: [{ from: s.changes.log.length, settings: structuredClone(wp.settings) }],
      stops: [],
      open: undefined,
      holes: [],
      recoveredAt: now,
      recoveries: 0,
    };
    s.hooks.push(h);
    this.hooksById.set(h.id, h);
    for (const r of wp.rotations) this.events.push({ at: this.start + r.at, run: (t) => this.rotateSecret(h, r.graceSeconds, r.switchAt - r.at, t) });
    for (const x of wp.pauses) {
      this.events.push({ at: this.start + x.at, run: () => this.setActive(h, false) });
      this.events.push({ at: this.start + x.until, run: () => this.setActive(h, true) });
    }
    if (wp.update) {
      const u = wp.update;
      this.events.push({ at: this.start + u.at, run: (t) => this.updateWebhook(h, u.what, u.settings, t) });
    }
    this.events.sort((a, b) => a.at - b.at);
    return h;
  }

  // --- operations ----------------------------------------------------------------------------

  /** Hands over from polling: the GetChanges cursor, caught up, becomes the webhook's start. */
  private async createLate(s: SoakShop, wp: WebhookPlan, now: number) {
    await s.changes.poll(now);
    await this.createWebhook(s, wp, now, s.changes.cursor);
    this.lateWebhooks++;
  }

  private async rotateKey(s: SoakShop) {
    const res = await s.api.call(ApiKey, "CreateApiKey", { name: `rotated ${this.rel(this.now())}` });
    const old = { key: s.api.key, id: s.api.keyId };
    s.api.key = res.key;
    s.api.keyId = res.api_key.id;
    await s.api.call(ApiKey, "RevokeApiKey", { id: old.id });
    const stale = new ShopApi(this.app.url, s.id, old.key, old.id, s.plan.protocol);
    const code = await stale.call(Misc, "CurrentAccount", {}).then(
      () => "ok",
      (e: unknown) => (e instanceof RpcError ? e.code : String(e)),
    );
    if (code !== "unauthenticated") this.found.operations.push(`${s.label}: the revoked API key still answers ${code}`);
    this.keyRotations++;
  }

  private async rotateSecret(h: SoakHook, graceSeconds: number, switchAfter: number, now: number) {
    const res = await h.shop.api.call(Webhook, "RotateSecret", { id: h.id, grace_seconds: graceSeconds });
    h.rec.rotated(res.secret, now, now + graceSeconds * 1000, graceSeconds ? now + switchAfter : now);
    this.secretRotations++;
  }

  private async setActive(h: SoakHook, active: boolean) {
    try {
      await h.shop.api.call(Webhook, "SetActive", { id: h.id, active });
      if (active) h.recoveredAt = this.now();
      else this.pauses++;
    } catch (err) {
      // Resuming a webhook whose undelivered changes were pruned is refused (documented); the operator recovers it.
      if (!(err instanceof RpcError && err.code === "failed_precondition" && active)) throw err;
      this.found.operations.push(`webhook ${h.plan.name} (${h.id}, ${h.shop.label}): SetActive(true) after a pause refused at ${this.rel(this.now())}: ${err.message}`);
    }
  }

  private async updateWebhook(h: SoakHook, what: string, settings: Settings, now: number) {
    await h.shop.changes.poll(now); // the boundary: changes before this call were committed under the old settings
    if (what === "url") {
      h.endpoint = this.receivers.endpoint([], 0, new Rng(this.p.seed).fork(90_000 + this.updates));
      await h.shop.api.call(Webhook, "UpdateWebhook", { id: h.id, url: h.endpoint.url, update_mask: "url" });
    } else {
      await h.shop.api.call(Webhook, "UpdateWebhook", { id: h.id, entities: settings.entities, topics: settings.topics, fields: settings.fields, update_mask: "entities,topics,fields" });
    }
    h.epochs.push({ from: h.shop.changes.log.length, settings: structuredClone(settings) });
    this.updates++;
    this.updateKinds.push(what);
  }

  /** How long the webhook's receiver has failed every request (since its last success or recovery), ms. */
  private failingFor(h: SoakHook): { ms: number; since: number } {
    let first: number | undefined;
    let last = 0;
    for (let i = h.rec.attempts.length - 1; i >= 0; i--) {
      const a = h.rec.attempts[i]!;
      if (a.ok || a.t < h.recoveredAt) break;
      first = a.t;
      last ||= a.t;
    }
    return first === undefined ? { ms: 0, since: this.now() } : { ms: last - first, since: first };
  }

  /**
   * The operator: watches for stopped webhooks (as an alert on shophook_webhooks{state="stop"}
   * would), reads each through the API, and brings it back once its receiver is up: SetActive
   * and RecoverWebhook in turn. A webhook stopped because its undelivered changes were pruned can
   * only be recovered (SetActive must refuse it).
   */
  private async operate(now: number): Promise<boolean> {
    const { rows } = await this.app.pool.query<{ id: string }>("SELECT id::text FROM webhooks WHERE state = 'stop'");
    for (const { id } of rows) {
      const h = this.hooksById.get(id);
      if (!h) continue;
      if (!h.open) {
        const w = await h.shop.api.call(Webhook, "GetWebhook", { id });
        const reason = String(w.disabled_reason || w.states?.last_error?.error || "");
        const pruned = reason.startsWith("changes pruned");
        const failing = this.failingFor(h);
        const legit = !pruned && failing.ms >= this.p.retryWindowHours * HOUR;
        h.open = { at: now, reason, pruned, legit, streakHours: Math.round((failing.ms / HOUR) * 10) / 10 };
        h.stops.push(h.open);
        if (!legit) {
          const outage = h.endpoint.outages.find((o) => o.start <= now && o.start >= h.recoveredAt);
          this.found.stops.push(
            `webhook ${h.plan.name} (${id}, ${h.shop.label}, ${describeSettings(h.epochs.at(-1)!.settings)}) stopped by ${this.rel(now)}: "${reason.slice(0, 160)}"; ` +
              `its receiver had failed for ${h.open.streakHours} h (retry window ${this.p.retryWindowHours} h)` +
              (outage ? `, down since ${this.rel(outage.start)} for ${Math.round((outage.end - outage.start) / HOUR)} h` : ", and was never down that long"),
          );
        }
      }
      const stop = h.open!;
      if (stop.pruned) {
        const code = await h.shop.api.call(Webhook, "SetActive", { id, active: true }).then(
          () => "ok",
          (e: unknown) => (e instanceof RpcError ? e.code : String(e)),
        );
        if (code !== "failed_precondition") this.found.operations.push(`webhook ${h.plan.name} (${id}): SetActive(true) after a stop for pruned changes answered ${code}, not failed_precondition`);
        await this.recover(h, now - this.p.retentionHours * HOUR + 10 * 60_000, true);
        stop.recovery = "RecoverWebhook (SetActive refused)";
      } else {
        if (this.receivers.outageAt(h.endpoint, now)) continue; // wait for the receiver
        if (this.recoveries++ % 2 === 0) {
          h.rec.expectCallback = h.rec.lastFailedCallback();
          await h.shop.api.call(Webhook, "SetActive", { id, active: true });
          stop.recovery = "SetActive";
          h.recoveredAt = now;
        } else {
          await this.recover(h, Math.max(now - this.p.retentionHours * HOUR + 10 * 60_000, this.failingFor(h).since - HOUR), false);
          stop.recovery = "RecoverWebhook";
        }
      }
      h.recoveries++;
      h.open = undefined;
    }
    return rows.length > 0;
  }

  private async recover(h: SoakHook, since: number, hole: boolean) {
    await h.shop.changes.poll(this.now());
    await h.shop.api.call(Webhook, "RecoverWebhook", { id: h.id, since: new Date(since).toISOString() });
    if (hole) h.holes.push({ boundary: h.shop.changes.log.length, since });
    h.recoveredAt = this.now();
  }

  // --- time ----------------------------------------------------------------------------------

  /** Waits until every transaction that started before now has ended: our writes are all below the feed horizon. */
  private async settle() {
    const { rows } = await this.app.pool.query<{ x: string }>("SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x");
    const deadline = Date.now() + 60_000;
    for (;;) {
      const r = await this.app.pool.query<{ ok: boolean }>("SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::xid8 AS ok", [rows[0]!.x]);
      if (r.rows[0]!.ok) return;
      if (Date.now() > deadline) throw new Error("the feed horizon did not pass our writes within 60 s (a transaction open elsewhere in the cluster?)");
      await sleep(2);
    }
  }

  /**
   * Runs the sweep until no turn is running, the sweep finds nothing, and no webhook of the shops
   * touched since the last drain has deliverable changes (the test's own reading of the database,
   * so that a wake-up path other than the sweep is waited for too). Deliverable: active, not
   * stopped, nobody delivering, and a due retry, a stored batch, or a change after its cursor,
   * below the feed horizon, that it subscribes to (docs/webhook-operations.md).
   */
  private async drain(shops: Iterable<string> | "all" = this.touched) {
    const engine = this.app.delivery!;
    const ids = shops === "all" ? null : [...shops];
    let waitingSince = 0;
    for (;;) {
      while (engine.deliverer.busy > 0) await sleep(1);
      const n = await engine.sweep();
      if (n > 0 || engine.deliverer.busy > 0) continue;
      const pending = await this.app.pool.query<{ id: string }>(PENDING, [this.clock.now(), ids]);
      if (!pending.rows.length && engine.deliverer.busy === 0) break;
      if (!pending.rows.length) continue;
      waitingSince ||= Date.now();
      if (Date.now() - waitingSince > 30_000) {
        throw new Error(`${this.rel(this.now())}: webhooks ${pending.rows.map((r) => r.id).join(", ")} have deliverable changes and got no turn for 30 s`);
      }
      await sleep(2);
    }
    this.touched.clear();
  }

  /** Assigns the day's writes to ticks: per shop a Poisson count around its rate (less at weekends), spread over the hours. */
  private planDay(day: number) {
    const ticksPerDay = DAY / this.tickMs;
    const hourTotal = HOURLY.reduce((a, b) => a + b, 0);
    this.dayWrites = new Map();
    for (const s of this.shops) {
      const r = new Rng(this.p.seed).fork(1_000_000 + day * 1000 + s.plan.i);
      const weekend = day % 7 >= 5 ? 0.6 : 1;
      const n = r.poisson(s.plan.rate * weekend);
      for (let k = 0; k < n; k++) {
        let x = r.next() * hourTotal;
        let hour = 0;
        while ((x -= HOURLY[hour]!) > 0 && hour < 23) hour++;
        const tick = Math.floor(((hour + r.next()) / 24) * ticksPerDay);
        const list = this.dayWrites.get(tick) ?? [];
        const same = list.find(([x2]) => x2 === s);
        if (same) same[1]++;
        else list.push([s, 1]);
        this.dayWrites.set(tick, list);
      }
    }
  }

  private async write(s: SoakShop, kinds: Kind[]) {
    this.touched.add(s.id);
    for (const k of kinds) {
      await s.model.write(k).catch((err: unknown) => {
        throw new Error(`${s.label} at ${this.rel(this.now())}: a ${k} write failed: ${(err as Error).message}`, { cause: err });
      });
      s.writes++;
      this.writes++;
    }
  }

  /** The writes planned for this tick; returns whether there were any. */
  private async writesAt(tickInDay: number, now: number): Promise<boolean> {
    const list = (this.dayWrites.get(tickInDay) ?? []).filter(([s]) => !isSilent(s.plan, now - this.start));
    await each(list, 8, async ([s, n]) => {
      const r = new Rng(this.p.seed).fork(2_000_000 + Math.floor((now - this.start) / this.tickMs) * 1000 + s.plan.i);
      const mix = mixOf(s.plan, now - this.start);
      await this.write(s, Array.from({ length: n }, () => r.weighted(mix)));
    });
    return list.length > 0;
  }

  private async seed() {
    await each(this.shops, 8, async (s) => {
      const big = s.plan.profile === "busy" || s.plan.profile === "regular" || s.plan.profile === "catalog";
      const kinds: Kind[] = big ? ["product", "product", "variant", "variant", "variant", "inventory_level", "inventory_level"] : ["product", "variant", "inventory_level"];
      if (s.plan.profile !== "catalog") kinds.push(...(big ? (["customer", "customer", "customer"] as Kind[]) : (["customer"] as Kind[])));
      await this.write(s, kinds);
    });
  }

  private async pollDue(now: number, all = false) {
    await each(this.shops, 8, (s) =>
      this.pollShop(s, now, all).catch((err: unknown) => {
        throw new Error(`${s.label} at ${this.rel(now)}: a poll failed: ${(err as Error).message}`, { cause: err });
      }),
    );
  }

  private async pollShop(s: SoakShop, now: number, all: boolean) {
    if (all || s.nextChangesPoll <= now) {
      await s.changes.poll(now);
      s.nextChangesPoll = now + s.plan.pollChangesEvery;
    }
    if (all || s.nextListsPoll <= now) {
      await s.lists.poll(now);
      s.nextListsPoll = now + s.plan.pollListsEvery;
    }
  }

  /** Once a simulated day, at midnight, everything idle: the sweep's cost, the prune, the change log's size. */
  private async daily(day: number, now: number) {
    const sweep = await sweepCost(this.app);
    const config = this.app.config;
    const pruned = await pruneExpired(this.app.pool, { changes: config.changeRetentionHours, backlog: config.webhookBacklogMaxHours, historyDays: config.deliveryHistoryDays }, this.clock.now());
    const retention = new Date(now - this.p.retentionHours * HOUR);
    const { rows: total } = await this.app.pool.query<{ n: number; oldest: Date | null }>("SELECT count(*)::int AS n, min(time) AS oldest FROM changes");
    const { rows: kept } = await this.app.pool.query<{ shop_id: string; n: number; oldest: Date }>(
      "SELECT shop_id::text, count(*)::int AS n, min(time) AS oldest FROM changes WHERE time < $1 GROUP BY shop_id",
      [retention],
    );
    const oldest = total[0]!.oldest?.getTime() ?? now;
    if (now - oldest > this.p.backlogHours * HOUR) this.found.changeLog.push(`${this.rel(now)}: a change ${Math.round((now - oldest) / HOUR)} h old survived the prune (backlog limit ${this.p.backlogHours} h)`);
    for (const k of kept) await this.checkPinned(k.shop_id, k.n, k.oldest.getTime(), now);
    if (sweep.jitMs > 0 && !this.days.some((d) => d.sweep.jitMs > 0)) {
      this.found.sweep.push(
        `${this.rel(now)}: the sweep's plan is JIT-compiled on every pass from now on (estimated cost ${sweep.planCost} > jit_above_cost): an idle pass took ${sweep.ms} ms, ${sweep.jitMs} ms of it compiling, to read ${sweep.rows} rows`,
      );
    }
    const sweepBound = 4 * this.hooksById.size + 250;
    if (sweep.rows > sweepBound) {
      this.found.sweep.push(`${this.rel(now)}: an idle sweep pass read ${sweep.rows} rows (${sweep.changesRows} of them changes; ${sweep.buffers} buffers) with ${this.hooksById.size} webhooks: more than ${sweepBound} = 4 per webhook + 250`);
    }
    this.days.push({
      day,
      writes: this.writes,
      changesInLog: total[0]!.n,
      keptPastRetention: kept.reduce((a, k) => a + k.n, 0),
      oldestHours: Math.round((now - oldest) / HOUR),
      pruned: pruned.changes,
      sweep,
      deliveries: [...this.hooksById.values()].reduce((a, h) => a + h.rec.requests, 0),
      stops: [...this.hooksById.values()].reduce((a, h) => a + h.stops.length, 0),
      wall: Math.round((Date.now() - this.startedAt) / 1000),
    });
  }

  /**
   * Changes older than the retention may stay only for a webhook that has not delivered them yet
   * (paused, retrying, stopped, batch pending). When every webhook of the shop is active, `ok`,
   * with no batch, and the sweep has just found nothing to do, none has anything undelivered:
   * whatever it keeps past the retention is pinned by an idle webhook.
   */
  private async checkPinned(shopId: string, n: number, oldest: number, now: number) {
    const { rows } = await this.app.pool.query<{ id: string; active: boolean; state: string; pending: boolean; subscriptions: string[]; after: number; first: Date | null }>(
      `SELECT w.id::text, w.active, w.state, w.batch_id IS NOT NULL AS pending, w.subscriptions,
              (SELECT count(*)::int FROM changes c WHERE c.shop_id = w.shop_id AND (c.xid, c.id) > (w.cursor_xid, w.cursor_seq)) AS after,
              (SELECT min(c.time) FROM changes c WHERE c.shop_id = w.shop_id AND (c.xid, c.id) > (w.cursor_xid, w.cursor_seq)) AS first
         FROM webhooks w WHERE w.shop_id = $1 ORDER BY w.id`,
      [shopId],
    );
    const s = this.shops.find((x) => x.id === shopId)!;
    if (!rows.length) {
      this.found.changeLog.push(`${this.rel(now)}: ${s.label} keeps ${n} changes older than the ${this.p.retentionHours} h retention (oldest ${Math.round((now - oldest) / HOUR)} h) and has no webhook`);
      return;
    }
    if (rows.some((w) => !w.active || w.state !== "ok" || w.pending)) return;
    const idle = rows.filter((w) => w.after > 0);
    this.found.changeLog.push(
      `${this.rel(now)}: ${s.label} keeps ${n} changes older than the ${this.p.retentionHours} h retention (oldest ${Math.round((now - oldest) / HOUR)} h) although none of its webhooks has anything undelivered (all active, ok, no batch; sweep idle); ` +
        idle.map((w) => `webhook ${this.hooksById.get(w.id)?.plan.name ?? "?"} (${w.id}, ${w.subscriptions.join(",")}) has ${w.after} changes after its cursor, none it subscribes to, the oldest ${w.first ? Math.round((now - w.first.getTime()) / HOUR) : "?"} h old`).join("; "),
    );
  }

  // --- the run -------------------------------------------------------------------------------

  async run(log: (s: string) => void): Promise<void> {
    const ticksPerDay = DAY / this.tickMs;
    const ticks = this.p.days * ticksPerDay;
    const operatorEvery = Math.max(1, Math.round((6 * HOUR) / this.tickMs));
    const started = (this.startedAt = Date.now());
    await this.setUp();
    this.planDay(0);
    await this.seed();
    await this.settle();
    await this.drain("all");
    for (let tick = 1; tick <= ticks; tick++) {
      this.clock.advance(this.tickMs);
      const now = this.now();
      const day = Math.floor(tick / ticksPerDay);
      if (tick % ticksPerDay === 0) {
        await this.timed("daily prune and checks", () => this.daily(day, now));
        if (day % Math.max(1, Math.round(this.p.days / 10)) === 0) log(`${this.p.name} soak: day ${day}/${this.p.days}, ${this.writes} writes, ${Math.round((Date.now() - started) / 1000)} s`);
        if (tick === ticks) break;
        this.planDay(day);
      }
      // Operations change webhooks of any shop: then every webhook is checked for pending work.
      let operated = false;
      while (this.events.length && this.events[0]!.at <= now) {
        await this.timed("operations", () => this.events.shift()!.run(now));
        operated = true;
      }
      if (tick % operatorEvery === 0) operated = (await this.timed("operations", () => this.operate(now))) || operated;
      await this.timed("polls", () => this.pollDue(now));
      const wrote = await this.timed("writes", () => this.writesAt(tick % ticksPerDay, now));
      if (wrote) await this.timed("settle", () => this.settle());
      await this.timed("deliveries", () => this.drain(operated ? "all" : this.touched));
    }
    await this.operate(this.now());
    await this.settle();
    await this.drain("all");
    await this.burstExperiment();
    await this.finish();
    await this.pollDue(this.now(), true);
  }

  /**
   * After the last day: the clock moves on in 15-minute steps (no writes, no prunes) until every
   * webhook has delivered everything (a flaky receiver's last retry may still be pending), at most
   * two simulated days. What is still behind then is reported by the final-state check.
   */
  private async finish() {
    for (let i = 0; i < 192; i++) {
      await this.operate(this.now());
      const { rows } = await this.app.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM webhooks WHERE NOT active OR state <> 'ok' OR batch_id IS NOT NULL");
      if (!rows[0]!.n) return;
      this.clock.advance(15 * 60_000);
      await this.settle();
      await this.drain("all");
    }
  }

  /**
   * Unrelated writes and the sweep: product updates in shops none of whose webhooks take product
   * changes; the sweep's cost per pass, idle, before and after.
   */
  private async burstExperiment() {
    const shops = this.shops.filter((s) => s.hooks.length && s.model.products.size && s.hooks.every((h) => !matches(h.epochs.at(-1)!.settings, { entity: "product", change_type: "update", changed: { product: { note: 1 } } } as any)));
    if (!shops.length) return;
    const before = await sweepCost(this.app);
    const per = Math.ceil(this.p.burst / shops.length);
    await each(shops, 8, async (s) => {
      const ids = [...s.model.products.keys()];
      for (let k = 0; k < per; k++) await s.api.call(Product, "UpdateProduct", { id: ids[k % ids.length]!, note: `burst ${k}` });
      s.writes += per;
      this.writes += per;
    });
    await this.settle();
    await this.drain("all");
    const after = await sweepCost(this.app);
    this.burst = { writes: per * shops.length, before, after, shops: shops.length };
    const grew = after.changesRows - before.changesRows;
    if (grew > Math.max(50, 0.02 * per * shops.length)) {
      this.found.sweep.push(
        `${per * shops.length} product updates in ${shops.length} shops whose webhooks take no product changes made an idle sweep pass read ${grew} more rows of changes (${before.changesRows} -> ${after.changesRows}; buffers ${before.buffers} -> ${after.buffers}; ${before.ms} -> ${after.ms} ms)`,
      );
    }
  }

  // --- checks ----------------------------------------------------------------------------------

  async verify(): Promise<Record<string, string[]>> {
    const out = {
      pollers: [] as string[],
      deliveries: [] as string[],
      receiverCopies: [] as string[],
      receiverProtocol: [...this.receivers.problems],
      stops: [...this.found.stops],
      finalState: [] as string[],
      changeLog: this.found.changeLog,
      sweepCost: this.found.sweep,
      operations: this.found.operations,
    };
    const { rows: hooks } = await this.app.pool.query<{ id: string; active: boolean; state: string; pending: boolean; disabled_reason: string }>(
      "SELECT id::text, active, state, batch_id IS NOT NULL AS pending, disabled_reason FROM webhooks",
    );
    const stateOf = new Map(hooks.map((w) => [w.id, w]));
    for (const s of this.shops) {
      const db = await dbRows(this.app.pool, s.id);
      checkPollers(s.label, s.changes, s.lists, db, out.pollers);
      await checkLogAgainstDb(this.app.pool, s.label, s.id, s.changes, out.pollers);
      for (const h of s.hooks) {
        const w = stateOf.get(h.id)!;
        if (!w.active || w.state !== "ok" || w.pending) {
          out.finalState.push(`webhook ${h.plan.name} (${h.id}, ${s.label}) is not caught up at the end: active ${w.active}, state ${w.state}, batch pending ${w.pending}${w.disabled_reason ? `, "${w.disabled_reason.slice(0, 120)}"` : ""}`);
        }
        const u: HookUnderTest = { name: h.plan.name, id: h.id, shopLabel: s.label, shopId: s.id, rec: h.rec, epochs: h.epochs, holes: h.holes, state: w.state };
        checkDeliveries(u, s.changes, out.deliveries);
        checkReceiverCopy(u, s.changes, db, out.receiverCopies);
        for (const p of h.rec.problems) out.receiverProtocol.push(`webhook ${h.plan.name} (${h.id}, ${s.label}): ${p}`);
      }
    }
    // Receivers down past the retry window whose webhook kept failing that long must have stopped.
    for (const h of this.hooksById.values()) {
      for (const o of h.endpoint.outages.filter((x) => x.kind === "long")) {
        const fails = h.rec.attempts.filter((a) => a.t >= o.start && a.t < o.end && !a.ok);
        if (!fails.length) continue;
        const f = fails[0]!.t;
        if (o.end - f > (this.p.retryWindowHours + 4) * HOUR + this.tickMs && !h.stops.some((x) => x.legit && x.at >= f)) {
          out.stops.push(`webhook ${h.plan.name} (${h.id}): its receiver failed from ${this.rel(f)} until ${this.rel(o.end)}, past the ${this.p.retryWindowHours} h retry window, yet it never stopped`);
        }
      }
    }
    return out;
  }


}

/** The next UTC midnight: simulated days start there, and the simulated clock never runs behind the real one. */
function nextMidnight(): number {
  return Math.ceil(Date.now() / DAY) * DAY;
}

/** Defines the soak as one test: the app (with its own database), the run, the figures, the checks. */
export function defineSoak(kind: "short" | "full") {
  const p = soakParams(kind);
  const clock = new ManualClock(nextMidnight());
  const t = useApp(
    {
      webhookAllowHttp: true,
      webhookAllowPrivate: ["127.0.0.1"],
      deliveryTimeoutMs: 250,
      // The test runs the sweep itself, after each tick; the timer only adds a pass now and then.
      sweepIntervalMs: 3_600_000,
      // The scheduled prune is the test's, once per simulated day (never the cron's).
      pruneCron: "0 0 1 1 *",
      changeRetentionHours: p.retentionHours,
      webhookBacklogMaxHours: p.backlogHours,
      retryWindowHours: p.retryWindowHours,
      deliveryHistoryDays: p.historyDays,
      dbPoolSize: 16,
    },
    { clock },
  );
  let soak: Soak | undefined;
  afterAll(async () => {
    await soak?.close();
  });
  it(`${kind} soak: ${p.days} simulated days, ${p.shops} shops; every copy equals the database, no webhook stopped or pinning the log, sweep cost flat`, { timeout: p.timeoutMs }, async () => {
    const run = (soak = new Soak(t.app, clock, p));
    const started = Date.now();
    try {
      await run.run((s) => console.log(s));
    } finally {
      console.log(`${figures(run)}\n\nwall time ${Math.round((Date.now() - started) / 1000)} s`);
    }
    const result = await run.verify();
    const shown = (xs: string[]) => (xs.length > 40 ? [...xs.slice(0, 40), `... and ${xs.length - 40} more`] : xs);
    for (const [check, problems] of Object.entries(result)) {
      if (problems.length) console.log(`\n${check}: ${problems.length} problems\n  ${shown(problems).join("\n  ")}`);
    }
    // Every check is reported; the assertion messages carry the first few problems of each (all are printed above).
    for (const [check, problems] of Object.entries(result)) {
      expect.soft(problems.length ? [`${problems.length} problems, e.g.:`, ...problems.slice(0, 5)] : [], check).toEqual([]);
    }
  });
}
