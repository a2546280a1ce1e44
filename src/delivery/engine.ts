/**
 * The delivery engine: how webhooks get their turns, in one process or across a fleet.
 *
 * - The change watcher (change-watcher.ts) reads every commit from the change log below the
 *   feed's horizon, whichever instance made it, and wakes the shop's webhooks that subscribe to
 *   what it wrote. A commit in this process triggers it at once; an API-only instance NOTIFYs
 *   (commit-signal.ts) and the listener here triggers it; a poll every `sweepIntervalMs` is the
 *   backstop. So a commit on any instance wakes delivery within milliseconds.
 * - Retries and RPC-requested wake-ups are pg-boss jobs on a notify queue (policy "short": at
 *   most one waiting wake-up per webhook). Any instance's worker may take them; it hands each
 *   webhook to its Deliverer and completes the jobs at once.
 * - The due sweep (every `sweepIntervalMs`) wakes what is due and has nobody delivering it: a
 *   retry whose time has come, a stored batch without a turn, a dead engine's lease. It reads
 *   partial indexes only, so idle webhooks cost nothing however many there are.
 * - The full sweep (at start, when the listener reconnects, every `fullSweepIntervalMs`) looks
 *   at every webhook: whatever a lost notification or a crash left undelivered.
 *
 * Wake-ups are only hints: the webhook row (cursor, batch, lease) is the truth. See docs/delivery.md.
 */
import { randomUUID } from "node:crypto";
import os from "node:os";
import type { PgBoss } from "pg-boss";
import type { AppContext } from "../context.ts";
import { Listener } from "../db/listener.ts";
import * as sql from "../db/sql/webhooks.ts";
import { CHANGES_CHANNEL, WEBHOOKS_CHANNEL } from "../db/sql/watch.ts";
import type { Committed } from "../store/write.ts";
import { ChangeWatcher } from "./change-watcher.ts";
import { Deliverer } from "./deliverer.ts";
import { Heartbeat } from "./heartbeat.ts";
import { subscribes } from "./topics.ts";
import type { History } from "./history.ts";
import type { HttpSender } from "./http-sender.ts";
import type { Metrics } from "../metrics.ts";
import { oldestWriter } from "../db/sql/metrics.ts";
import { throttled } from "../logger.ts";

export const WAKE_QUEUE = "webhook-wake";
/** How long a shop's webhook list is cached (see `hooks`). */
const HOOKS_TTL_MS = 30_000;
/** Webhooks read per page of the full sweep. */
const FULL_SWEEP_PAGE = 5_000;

interface ShopHooks {
  hooks: Array<{ id: string; subscriptions: string[] }>;
  at: number;
}

/** Creates the wake-up queue (idempotent): any instance may schedule, delivery instances work it. */
export async function createWakeQueue(boss: PgBoss): Promise<void> {
  await boss.createQueue(WAKE_QUEUE, { policy: "short", notify: true, retryLimit: 0, expireInSeconds: 60, deleteAfterSeconds: 3600 });
}

/** Durable wake-ups for webhooks, now or at `at`: whichever delivery instance is free takes them. */
export async function scheduleWakes(boss: PgBoss, ids: string[], at?: Date): Promise<void> {
  if (!ids.length) return;
  const jobs = ids.map((id) => (at ? { data: { webhookId: id }, singletonKey: `${id}:retry`, startAfter: at } : { data: { webhookId: id }, singletonKey: id }));
  await boss.insert(WAKE_QUEUE, jobs);
}

export class DeliveryEngine {
  readonly deliverer: Deliverer;
  private readonly ctx: AppContext;
  private readonly boss: PgBoss;
  private readonly watcher: ChangeWatcher;
  private readonly listener: Listener;
  private readonly hooksByShop = new Map<string, ShopHooks>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private fullSweepTimer: NodeJS.Timeout | undefined;
  private fullSweeping: Promise<number> | undefined;
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
    this.watcher = new ChangeWatcher(ctx.pool, (byShop) => this.dispatch(byShop), (err) => this.report("warn", "watch", { error: err.message }, "change watcher failed; it reads again at the next poll"));
    this.listener = new Listener({
      url: databaseUrl,
      channels: [CHANGES_CHANNEL, WEBHOOKS_CHANNEL],
      onNotify: (channel, payload) => {
        if (channel === WEBHOOKS_CHANNEL) return this.invalidate(payload);
        this.watcher.trigger(/^\d+$/.test(payload) ? BigInt(payload) : undefined);
      },
      // Notifications may have been lost while disconnected: forget cached subscriptions, look at everything.
      onConnect: () => {
        this.hooksByShop.clear();
        void this.fullSweep().catch((err: unknown) => this.report("warn", "sweep", { error: (err as Error).message }, "full sweep failed"));
      },
      onError: (err) => this.report("warn", "listen", { error: err.message }, "listener connection failed; retrying"),
    });
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
    await createWakeQueue(boss);
    await boss.work<{ webhookId: string }>(
      WAKE_QUEUE,
      { batchSize: 100, localConcurrency: 2, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5, notifyPollingIntervalSeconds: 0.5 },
      async (jobs) => {
        for (const job of jobs) engine.deliverer.wake(job.data.webhookId);
      },
    );
    const { sweepIntervalMs, fullSweepIntervalMs } = ctx.config;
    // The watcher starts at the horizon; the listener's first connect runs the full sweep for what is older.
    await engine.watcher.start(sweepIntervalMs);
    await engine.listener.start();
    const failed = (what: string) => (err: unknown) => engine.report("warn", what, { error: (err as Error).message }, `${what} failed`);
    engine.sweepTimer = setInterval(() => void engine.sweep().catch(failed("sweep")), sweepIntervalMs);
    engine.sweepTimer.unref();
    engine.fullSweepTimer = setInterval(() => void engine.fullSweep().catch(failed("full sweep")), fullSweepIntervalMs);
    engine.fullSweepTimer.unref();
    engine.stallTimer = setInterval(() => void engine.checkStall().catch(() => undefined), 10_000);
    engine.stallTimer.unref();
    return engine;
  }

  /** Durable wake-ups for webhooks, now or at `at`. */
  async schedule(ids: string[], at?: Date): Promise<void> {
    if (this.stopped) return;
    await scheduleWakes(this.boss, ids, at);
  }

  /** Forgets cached subscriptions of a shop (its webhooks changed). */
  invalidate(shopId: string): void {
    this.hooksByShop.delete(shopId);
  }

  /** A write committed in this process: the watcher reads it (once it is below the horizon). */
  committed(c: Committed): void {
    this.watcher.trigger(BigInt(c.xid));
  }

  /** The watcher read commits: wake each shop's webhooks that subscribe to what was written. */
  private async dispatch(byShop: Map<string, string[]>): Promise<void> {
    const hooks = await this.hooks([...byShop.keys()]);
    for (const [shopId, events] of byShop) {
      for (const h of hooks.get(shopId)!) if (events.some((e) => subscribes(h.subscriptions, e))) this.deliverer.wake(h.id);
    }
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

  /** Wakes webhooks with something due (a retry, an orphaned batch or lease) and reads new commits; returns how many were woken. */
  async sweep(): Promise<number> {
    if (this.stopped) return 0;
    const now = Date.now();
    for (const [shopId, c] of this.hooksByShop) if (now - c.at >= HOOKS_TTL_MS) this.hooksByShop.delete(shopId);
    // New commits first (a caller that drives delivery by sweeping sees their turns start).
    this.watcher.trigger();
    await this.watcher.idle();
    const { rows } = await this.ctx.pool.query<{ id: string }>(sql.dueSweep(this.ctx.clock.now(), 10_000));
    for (const r of rows) this.deliverer.wake(r.id);
    return rows.length;
  }

  /** Wakes every webhook that has undelivered changes or a due retry and nobody delivering; returns how many. */
  fullSweep(): Promise<number> {
    return (this.fullSweeping ??= this.fullSweepOnce().finally(() => (this.fullSweeping = undefined)));
  }

  private async fullSweepOnce(): Promise<number> {
    let after = "0";
    let woken = 0;
    for (;;) {
      if (this.stopped) return woken;
      const { rows } = await this.ctx.pool.query<{ id: string }>(sql.fullSweep(this.ctx.clock.now(), after, FULL_SWEEP_PAGE));
      for (const r of rows) this.deliverer.wake(r.id);
      woken += rows.length;
      if (rows.length < FULL_SWEEP_PAGE) return woken;
      after = rows.at(-1)!.id;
    }
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
    clearInterval(this.fullSweepTimer);
    clearInterval(this.stallTimer);
    await this.listener.stop();
    await this.watcher.stop();
    await this.fullSweeping?.catch(() => undefined);
    await this.boss.offWork(WAKE_QUEUE).catch(() => undefined);
    await this.deliverer.stop(timeoutMs);
    await this.heartbeat.stop();
    await this.ctx.pool.query(sql.forgetInstance(this.owner)).catch(() => undefined);
  }
}
