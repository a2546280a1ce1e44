/**
 * The delivery engine: how webhooks get their turns.
 *
 * - A committed write signals its shop, what it wrote (entity:change_type) and transaction id. Once every older
 *   transaction has finished (the change is below the feed's horizon), the shop's matching
 *   webhooks get a wake-up job.
 * - Wake-ups are pg-boss jobs on a notify queue (policy "short": at most one waiting wake-up per
 *   webhook, so bursts collapse). Any instance's worker may take them; it hands each webhook to
 *   its Deliverer and completes the jobs at once, so a slow endpoint never holds a batch of jobs.
 * - A failed batch schedules a delayed wake-up (startAfter = next attempt) under its own key.
 * - A sweep (every `sweepIntervalMs`) wakes webhooks with undelivered changes or a due retry that
 *   nobody is delivering: the safety net after crashes, and the path tests use with a hand-moved clock.
 *
 * Wake-ups are only hints: the webhook row (cursor, batch, lease) is the truth. See docs/delivery.md.
 */
import { randomUUID } from "node:crypto";
import os from "node:os";
import type { PgBoss } from "pg-boss";
import type { AppContext } from "../context.ts";
import * as sql from "../db/sql/webhooks.ts";
import type { Committed } from "../store/write.ts";
import { Deliverer } from "./deliverer.ts";
import { Heartbeat } from "./heartbeat.ts";
import { subscribes } from "./topics.ts";
import type { History } from "./history.ts";
import type { HttpSender } from "./http-sender.ts";
import type { Metrics } from "../metrics.ts";
import { oldestWriter } from "../db/sql/metrics.ts";
import { throttled } from "../logger.ts";

/** Whether a webhook subscribes to any of a shop's committed events (entity:change_type). */
const wants = (h: ShopHooks["hooks"][number], events: Set<string>) => [...events].some((e) => subscribes(h.subscriptions, e));

export const WAKE_QUEUE = "webhook-wake";
/** How long a shop's webhook list is cached (see `hooks`). */
const HOOKS_TTL_MS = 30_000;
const HORIZON = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon";
/** Waits before re-checking a change that is not yet below the horizon. */
const HORIZON_BACKOFF_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

interface ShopHooks {
  hooks: Array<{ id: string; subscriptions: string[] }>;
  at: number;
}

export class DeliveryEngine {
  readonly deliverer: Deliverer;
  private readonly ctx: AppContext;
  private readonly boss: PgBoss;
  private pending = new Map<string, { events: Set<string>; xid: bigint }>();
  private flushing: Promise<void> | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private backoff = 0;
  private readonly hooksByShop = new Map<string, ShopHooks>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly heartbeat: Heartbeat;
  private stallTimer: NodeJS.Timeout | undefined;
  private stallWarnedAt = 0;
  private stopped = false;
  /** Recurring failures (a database that is away) are logged once a minute. */
  readonly report: ReturnType<typeof throttled>;
  /** This engine's name in leases and in delivery_instances. */
  readonly owner = `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;

  private constructor(ctx: AppContext, boss: PgBoss, sender: HttpSender, history: History, metrics: Metrics | undefined, databaseUrl: string) {
    this.ctx = ctx;
    this.heartbeat = new Heartbeat(databaseUrl, this.owner);
    this.report = throttled(ctx.log);
    this.boss = boss;
    this.deliverer = new Deliverer({
      pool: ctx.pool,
      log: ctx.log,
      clock: ctx.clock,
      config: ctx.config,
      sender,
      history,
      metrics,
      ids: ctx.ids,
      owner: this.owner,
      schedule: (id, at) => this.schedule([id], at),
    });
  }

  /** `databaseUrl`: for the heartbeat's own connection. */
  static async start(ctx: AppContext, boss: PgBoss, sender: HttpSender, history: History, metrics: Metrics | undefined, databaseUrl: string): Promise<DeliveryEngine> {
    const engine = new DeliveryEngine(ctx, boss, sender, history, metrics, databaseUrl);
    // Alive from now on: our leases hold while we heartbeat (every 2 s) or our session lives.
    await engine.heartbeat.beat();
    await ctx.pool.query(sql.pruneInstances());
    engine.heartbeat.start(2_000, (err) => engine.report("warn", "heartbeat", { error: err.message }, "heartbeat failed"));
    await boss.createQueue(WAKE_QUEUE, { policy: "short", notify: true, retryLimit: 0, expireInSeconds: 60, deleteAfterSeconds: 3600 });
    await boss.work<{ webhookId: string }>(
      WAKE_QUEUE,
      { batchSize: 100, localConcurrency: 2, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5, notifyPollingIntervalSeconds: 0.5 },
      async (jobs) => {
        for (const job of jobs) engine.deliverer.wake(job.data.webhookId);
      },
    );
    engine.sweepTimer = setInterval(() => void engine.sweep().catch((err: unknown) => engine.report("warn", "sweep", { error: (err as Error).message }, "sweep failed")), ctx.config.sweepIntervalMs);
    engine.sweepTimer.unref();
    engine.stallTimer = setInterval(() => void engine.checkStall().catch(() => undefined), 10_000);
    engine.stallTimer.unref();
    void engine.sweep().catch(() => undefined);
    return engine;
  }

  /** Durable wake-ups for webhooks, now or at `at`. */
  async schedule(ids: string[], at?: Date): Promise<void> {
    if (!ids.length || this.stopped) return;
    const jobs = ids.map((id) => (at ? { data: { webhookId: id }, singletonKey: `${id}:retry`, startAfter: at } : { data: { webhookId: id }, singletonKey: id }));
    await this.boss.insert(WAKE_QUEUE, jobs);
  }

  /** Forgets cached subscriptions of a shop (its webhooks changed). */
  invalidate(shopId: string): void {
    this.hooksByShop.delete(shopId);
  }

  /** A write committed: its webhooks get a wake-up once it is below the horizon. */
  committed(c: Committed): void {
    const p = this.pending.get(c.shopId);
    const xid = BigInt(c.xid);
    if (p) {
      for (const e of c.events) p.events.add(e);
      if (xid > p.xid) p.xid = xid;
    } else this.pending.set(c.shopId, { events: new Set(c.events), xid });
    if (!this.flushing && !this.flushTimer) this.flushTimer = setTimeout(() => this.flush(), 0);
  }

  private flush() {
    this.flushTimer = undefined;
    this.flushing = this.flushOnce()
      .catch((err: unknown) => this.report("warn", "dispatch", { error: (err as Error).message }, "wake-up dispatch failed; the sweep will catch up"))
      .finally(() => {
        this.flushing = undefined;
        if (this.pending.size && !this.stopped) {
          this.flushTimer = setTimeout(() => this.flush(), HORIZON_BACKOFF_MS[Math.min(this.backoff++, HORIZON_BACKOFF_MS.length - 1)]);
        }
      });
  }

  private async flushOnce() {
    const batch = this.pending;
    this.pending = new Map();
    // Shops without a matching webhook need nothing (the common case on a busy shop without hooks).
    const hooks = await this.hooks([...batch.keys()]);
    for (const [shopId, p] of batch) {
      if (!hooks.get(shopId)!.some((h) => wants(h, p.events))) batch.delete(shopId);
    }
    if (!batch.size) return;
    const horizon = BigInt((await this.ctx.pool.query<{ horizon: string }>(HORIZON)).rows[0]!.horizon);
    const ids: string[] = [];
    let waiting = false;
    for (const [shopId, p] of batch) {
      if (p.xid >= horizon) {
        // An older transaction is still open: wait until this change is deliverable.
        const again = this.pending.get(shopId);
        if (again) {
          for (const e of p.events) again.events.add(e);
          if (p.xid > again.xid) again.xid = p.xid;
        } else this.pending.set(shopId, p);
        waiting = true;
        continue;
      }
      for (const h of hooks.get(shopId)!) if (wants(h, p.events)) ids.push(h.id);
    }
    if (!waiting) this.backoff = 0;
    // Woken here, in the process that saw the commit: no round trip through a job. Durability
    // needs no job either: a crash before delivery leaves the changes past the cursor, and the
    // sweep (or a peer's, once our leases die) finds them.
    for (const id of ids) this.deliverer.wake(id);
  }

  /**
   * Each shop's active webhooks, from a cache, one query for the misses. This process invalidates
   * it when it changes a shop's webhooks; another instance's change shows after HOOKS_TTL_MS, and
   * until then the sweep (every second) delivers to a webhook this cache does not know yet.
   */
  private async hooks(shopIds: string[]): Promise<Map<string, ShopHooks["hooks"]>> {
    const now = Date.now();
    const out = new Map<string, ShopHooks["hooks"]>();
    const missing: string[] = [];
    for (const shopId of shopIds) {
      const cached = this.hooksByShop.get(shopId);
      if (cached && now - cached.at < HOOKS_TTL_MS) out.set(shopId, cached.hooks);
      else missing.push(shopId);
    }
    if (missing.length) {
      const { rows } = await this.ctx.pool.query<{ shop_id: string; id: string; subscriptions: string[] }>(sql.webhooksOfShops(missing));
      for (const shopId of missing) out.set(shopId, []);
      for (const r of rows) out.get(r.shop_id)!.push({ id: r.id, subscriptions: r.subscriptions });
      for (const shopId of missing) this.hooksByShop.set(shopId, { hooks: out.get(shopId)!, at: now });
    }
    return out;
  }

  /** Wakes every webhook that has work nobody is doing; returns how many. */
  async sweep(): Promise<number> {
    if (this.stopped) return 0;
    const now = Date.now();
    for (const [shopId, c] of this.hooksByShop) if (now - c.at >= HOOKS_TTL_MS) this.hooksByShop.delete(shopId);
    const { rows } = await this.ctx.pool.query<{ id: string }>(sql.sweep(this.ctx.clock.now(), 10_000));
    for (const r of rows) this.deliverer.wake(r.id);
    return rows.length;
  }

  /**
   * Reports a stalled feed: a transaction that has written and stays open holds the horizon, so
   * nothing committed after it started is delivered (or served) until it ends. Nothing is skipped;
   * this says why deliveries pause. Logged at most once a minute; also the shophook_feed_stall_seconds metric.
   */
  async checkStall(): Promise<number> {
    const { rows } = await this.ctx.pool.query<{ pid: number; datname: string | null; application_name: string; seconds: number }>(oldestWriter());
    const w = rows[0];
    const seconds = Number(w?.seconds ?? 0);
    if (w && seconds >= this.ctx.config.stallWarnSeconds && Date.now() - this.stallWarnedAt > 60_000) {
      this.stallWarnedAt = Date.now();
      this.ctx.log.warn(
        { stallSeconds: Math.round(seconds), pid: w.pid, database: w.datname, application: w.application_name },
        "feed stalled: a transaction open for a long time holds the change feed back; changes wait (none are skipped) until it ends",
      );
    }
    return seconds;
  }

  async stop(timeoutMs: number): Promise<void> {
    this.stopped = true;
    clearInterval(this.sweepTimer);
    clearInterval(this.stallTimer);
    clearTimeout(this.flushTimer);
    await this.flushing;
    await this.boss.offWork(WAKE_QUEUE).catch(() => undefined);
    await this.deliverer.stop(timeoutMs);
    await this.heartbeat.stop();
    await this.ctx.pool.query(sql.forgetInstance(this.owner)).catch(() => undefined);
  }
}
