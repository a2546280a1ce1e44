/**
 * Delivery turns. A turn takes a webhook's lease (one sender per webhook across instances), then
 * sends its batches in change-log order, one request at a time, until nothing is pending, a batch
 * fails, or the turn's budget is spent. Turns of different webhooks run concurrently (up to
 * `deliveryConcurrency`), so a slow or dead endpoint holds only its own turn.
 *
 * Durability: the cursor moves only after a 2xx; a batch's callback id and range are stored
 * before its first attempt, so every retry, and a resend after a crash, carries the same id and
 * the same changes (at-least-once).
 */
import type { Clock } from "../clock.ts";
import type { Config } from "../config.ts";
import type { IdAllocator } from "../db/ids.ts";
import type { Pool } from "../db/pool.ts";
import { comparePositions } from "../db/position.ts";
import * as sql from "../db/sql/webhooks.ts";
import { type Logger, throttled } from "../logger.ts";
import type { Metrics } from "../metrics.ts";
import { sendAttempt } from "./attempt.ts";
import { fitting, render, views } from "./batch.ts";
import { ByteBudget, type Hold } from "./byte-budget.ts";
import { DeliveryStore } from "./delivery-store.ts";
import type { History } from "./history.ts";
import type { HttpSender, SendResult } from "./http-sender.ts";
import { afterFailure } from "./retry-schedule.ts";

export interface DelivererDeps {
  pool: Pool;
  log: Logger;
  clock: Clock;
  config: Config;
  sender: HttpSender;
  history: History;
  metrics?: Metrics;
  ids: IdAllocator;
  /** This instance's name in leases. */
  owner: string;
  /** Asks for a turn of `webhookId`, now or at `at` (durable: it survives this process). */
  schedule(webhookId: string, at?: Date): Promise<void>;
}

/** A batch: its callback id, the range it covers, and its changes (as stored). */
interface Batch {
  id: string;
  /** The webhook's settings_version it was cut under. */
  version: number;
  fromXid: string;
  fromSeq: string;
  endXid: string;
  endSeq: string;
  rows: sql.BatchChangeRow[];
}

/** Batches one turn sends before yielding its slot to other webhooks. */
const BATCHES_PER_TURN = 20;
/**
 * Bytes held per byte of changes read: the rows as read, the rendered body, and the request in
 * flight (measured: docs/delivery.md, "Memory").
 */
const HELD_PER_BYTE = 10;
/**
 * Under pressure a read is cut to what the budget has room for, down to this (a smaller batch,
 * never a stalled turn): many webhooks' single changes keep flowing while big backlogs drain.
 */
const MIN_READ_BYTES = 256 * 1024;
/** What a webhook whose last read was small (live traffic) reserves: a few of those again. */
const SMALL_READ_BYTES = 16 * 1024;
const heldFor = (rows: sql.BatchChangeRow[]) => HELD_PER_BYTE * rows.reduce((n, r) => n + r.bytes, 0);
/** Seconds a 429's Retry-After asks for (delta-seconds or an HTTP date), or undefined. */
export function retryAfterSeconds(value: string | undefined, now: Date): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now.getTime()) / 1000));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Deliverer {
  private readonly deps: DelivererDeps;
  private readonly running = new Map<string, Promise<void>>();
  /** Woken while running: run again when the current turn ends. */
  private readonly again = new Set<string>();
  private readonly waiting: string[] = [];
  private readonly waitingSet = new Set<string>();
  /** When each rate-limited webhook last sent (this process). */
  private readonly lastSend = new Map<string, number>();
  private stopping = false;
  private readonly store: DeliveryStore;
  private readonly report: ReturnType<typeof throttled>;
  /** How long after taking or renewing a lease a request may still start (it then ends before the lease does). */
  private readonly sendWithinMs: number;
  /** Bytes of changes held by all turns (SHOPHOOK_DELIVERY_MEMORY_BYTES). */
  readonly budget: ByteBudget;
  /** What one full read may return, held: reserved before a read when the budget has room. */
  private readonly readHold: number;
  /** When it has not: a smaller read (a smaller batch) that waits for this much. */
  private readonly minHold: number;
  /** Bytes of each webhook's last read (Infinity: the cap cut it, a backlog): what its next read reserves. */
  private readonly lastRead = new Map<string, number>();

  constructor(deps: DelivererDeps) {
    this.deps = deps;
    this.report = throttled(deps.log);
    // A lease outlives the longest request by 30 s; a dead holder's is taken over sooner (heartbeat + session).
    const leaseSeconds = sql.leaseSeconds(deps.config.deliveryTimeoutMs);
    this.store = new DeliveryStore(deps.pool, deps.owner, leaseSeconds);
    this.sendWithinMs = leaseSeconds * 1000 - deps.config.deliveryTimeoutMs - 5_000;
    this.budget = new ByteBudget(deps.config.deliveryMemoryBytes, (used) => deps.metrics?.deliveryBytes.set(used));
    this.readHold = HELD_PER_BYTE * deps.config.batchMaxBytes;
    this.minHold = Math.min(this.readHold, HELD_PER_BYTE * MIN_READ_BYTES);
  }

  /** Requests a turn for a webhook; cheap and idempotent. */
  wake(id: string): void {
    if (this.stopping) return;
    if (this.running.has(id)) {
      this.again.add(id);
      return;
    }
    if (this.waitingSet.has(id)) return;
    this.waitingSet.add(id);
    this.waiting.push(id);
    this.pump();
  }

  /** Turns running now (for metrics and tests). */
  get busy(): number {
    return this.running.size;
  }

  private pump() {
    while (!this.stopping && this.running.size < this.deps.config.deliveryConcurrency && this.waiting.length) {
      const id = this.waiting.shift()!;
      this.waitingSet.delete(id);
      const turn = this.turn(id)
        .catch((err: unknown) => {
          this.report("error", `turn:${(err as Error).message}`, { error: (err as Error).message, webhookId: id }, "delivery turn failed; retried in a second");
          // Durable: whichever instance is free takes it (a lost one is the full sweep's).
          this.deps.schedule(id, new Date(Date.now() + 1000)).catch(() => undefined);
        })
        .finally(() => {
          this.running.delete(id);
          if (this.again.delete(id)) this.wake(id);
          this.pump();
        });
      this.running.set(id, turn);
    }
  }

  /** Stops taking turns and waits (up to `timeoutMs`) for running ones to end. */
  async stop(timeoutMs: number): Promise<void> {
    this.stopping = true;
    this.waiting.length = 0;
    this.waitingSet.clear();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.running.values()]), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }

  private async turn(id: string): Promise<void> {
    // When the lease was last taken or renewed, on our clock: before the statement was sent, so
    // never later than the database's now() that set lease_until.
    let leasedAt = performance.now();
    const leased = await this.store.acquire.call(id);
    // Another sender holds it (and its release will see what woke us), or it is held, or gone.
    if (!leased) return;
    let w: sql.WebhookRow = leased;
    let released = false;
    /**
     * Fencing: a request starts only while our lease is sure to outlast it. After a pause of
     * this process (a stall, SIGSTOP) the lease is renewed first; if a peer took it over
     * meanwhile, or moved the batch on, this turn ends without sending.
     */
    const fenced = async (batch: Batch): Promise<boolean> => {
      if (performance.now() - leasedAt < this.sendWithinMs) return true;
      const at = performance.now();
      const row = await this.store.acquire.call(id);
      if (!row || row.batch_id !== batch.id) return false;
      leasedAt = at;
      w = row;
      return true;
    };
    // Bytes of the batch in hand, and of the next one read ahead (released whatever happens).
    let hold: Hold | undefined;
    let aheadHold: Hold | undefined;
    try {
      if (!w.active || w.state === "stop") return;
      if (w.state === "retry" && w.next_attempt_at && w.next_attempt_at > this.deps.clock.now()) return;
      let batch: Batch;
      hold = await this.reserveRead(id);
      // A stored batch is re-sent exactly, unless the webhook's settings changed since it was cut:
      // then it is cut again from the cursor (new id), so nothing its old filters left out is lost.
      if (w.batch_id !== null && w.batch_version === w.settings_version) {
        const stored = await this.pending(w);
        if (!stored) return void (released = await this.stopPruned(w));
        batch = stored;
      } else {
        if (w.batch_id !== null && !(await this.deps.pool.query(sql.dropStaleBatch(w.id, this.deps.owner))).rowCount) return;
        const first = await this.cut(w, w.cursor_xid, w.cursor_seq, hold.bytes / HELD_PER_BYTE);
        if (first.pruned) return void (released = await this.stopPruned(w));
        if (first.skip) await this.deps.pool.query(sql.skipTo(w.id, this.deps.owner, first.skip[0], first.skip[1]));
        if (!first.batch) return;
        batch = first.batch;
        // Stored before the first attempt, or not sent at all (the lease was lost meanwhile).
        if (!(await this.store.start.call({ id: w.id, batchId: batch.id, endXid: batch.endXid, endSeq: batch.endSeq, version: batch.version }))) return;
      }
      hold.resize(heldFor(batch.rows));
      for (let n = 1; ; n++) {
        // The next batch is read while this one is in flight (it is used only after a 2xx), and
        // fixed in the statement that records this one; only if the budget has room for it now.
        aheadHold = n < BATCHES_PER_TURN && !this.stopping ? this.tryReserveRead(id) : undefined;
        const ahead = aheadHold ? this.cut(w, batch.endXid, batch.endSeq, aheadHold.bytes / HELD_PER_BYTE) : undefined;
        ahead?.catch(() => undefined); // awaited below, or dropped with a failed batch
        const result = await this.send(w, batch, fenced);
        if (!result) return; // fenced off: another sender has the webhook now
        if (!result.ok) {
          await this.failed(w, result);
          released = true; // batchFailed released the lease
          return;
        }
        const next: { batch?: Batch; skip?: [string, string] } = (await ahead) ?? {};
        const renewing = performance.now();
        const row = await this.store.delivered.call({ id: w.id, sentAt: this.deps.clock.now(), next: next.batch, skip: next.skip });
        if (!row) return; // lease lost (deleted, recovered, or taken over after a stall): stop quietly
        leasedAt = renewing;
        w = row;
        const held = w.held_until !== null && w.held_until > new Date();
        if (!next.batch || !w.active || held) {
          // Budget (of batches, or of bytes) spent with work maybe left: queue behind the others (release checks too).
          if (!aheadHold && !this.stopping) this.again.add(id);
          return;
        }
        // next.batch was read, so aheadHold was granted: it now holds the batch in hand.
        hold!.release();
        hold = aheadHold!;
        aheadHold = undefined;
        batch = next.batch;
        hold.resize(heldFor(batch.rows));
      }
    } finally {
      hold?.release();
      aheadHold?.release();
      if (!released) {
        const more = await this.store.release.call(id).catch(() => false);
        if (more && !this.stopping) this.again.add(id);
      }
    }
  }

  /**
   * Reads what follows position (xid, seq) for the webhook and cuts the next batch (by count and
   * bytes). Says how far the cursor may skip past changes the webhook does not get: to just
   * before the batch's first change, or, with nothing to send, to the horizon; the batch's range
   * starts there, so a stored batch never pins the change log behind its first change.
   */
  /**
   * What a read of this webhook reserves: a full body's worth when its last read was cut by the
   * cap (a backlog), else a little more than last time (live traffic, or a first read: thousands
   * of single changes must not queue behind full-size reservations).
   */
  private wantHold(id: string): number {
    const last = this.lastRead.get(id) ?? 0; // unknown: small first (a backlog shows itself: the cap cuts it)
    if (last === Infinity) return this.readHold;
    return Math.min(this.readHold, HELD_PER_BYTE * Math.max(SMALL_READ_BYTES, 2 * last));
  }

  /** Reserves for a read: what the webhook wants if there is room now, else waits for a smaller read. */
  private async reserveRead(id: string): Promise<Hold> {
    const want = this.wantHold(id);
    return this.budget.tryReserve(want) ?? this.budget.reserve(Math.min(want, this.minHold));
  }

  /** The same without waiting (the read-ahead): undefined when there is no room now. */
  private tryReserveRead(id: string): Hold | undefined {
    const want = this.wantHold(id);
    return this.budget.tryReserve(want) ?? this.budget.tryReserve(Math.min(want, this.minHold));
  }

  private async cut(w: sql.WebhookRow, xid: string, seq: string, readBytes: number): Promise<{ batch?: Batch; skip?: [string, string]; pruned?: true }> {
    const { config } = this.deps;
    // Read no more than one request body's worth, or what the byte budget had room for: the cap
    // stops the read in PostgreSQL, and the batch is cut to fit it.
    const maxBytes = Math.max(1024, Math.min(config.batchMaxBytes, Math.floor(readBytes)));
    const { horizon, pruned, changes } = await this.store.next.call({ webhookId: w.id, shopId: w.shop_id, fromXid: xid, fromSeq: seq, endXid: null, endSeq: null, limit: config.batchMaxChanges, maxBytes });
    if (pruned) return { pruned };
    if (!changes.length) return BigInt(horizon) > BigInt(xid) ? { skip: [horizon, "0"] } : {};
    const id = await this.deps.ids.next();
    const count = fitting(id, changes, maxBytes, w.format, w.shop_id);
    // A short page that fits whole covers everything below the horizon: end the batch there. A
    // page the byte cap may have cut (its bytes reach the cap) is not short.
    const bytes = changes.reduce((n, c) => n + c.bytes, 0);
    const capped = bytes >= maxBytes;
    if (this.lastRead.size >= 100_000) this.lastRead.clear();
    this.lastRead.set(w.id, capped ? Infinity : bytes); // a read the count limit cut is as big again next time, no bigger
    const whole = count === changes.length && changes.length < config.batchMaxChanges && !capped;
    const last = changes[count - 1]!;
    const [endXid, endSeq] = whole ? [horizon, "0"] : [last.xid, last.id!];
    const first = changes[0]!;
    const before: [string, string] = [first.xid, (BigInt(first.id!) - 1n).toString()];
    const skip = comparePositions(before, [xid, seq]) > 0 ? before : undefined;
    const [fromXid, fromSeq] = skip ?? [xid, seq];
    return { skip, batch: { id, version: w.settings_version, fromXid, fromSeq, endXid, endSeq, rows: changes.slice(0, count) } };
  }

  /** The stored batch of a webhook, re-read exactly (same id, same range); undefined when it was pruned. */
  private async pending(w: sql.WebhookRow): Promise<Batch | undefined> {
    const { changes, pruned } = await this.store.next.call({
      webhookId: w.id,
      shopId: w.shop_id,
      fromXid: w.cursor_xid,
      fromSeq: w.cursor_seq,
      endXid: w.batch_end_xid,
      endSeq: w.batch_end_seq,
      limit: this.deps.config.batchMaxChanges,
      maxBytes: null, // re-read whole: it was cut to fit a body
    });
    if (pruned) return undefined;
    return { id: w.batch_id!, version: w.batch_version!, fromXid: w.cursor_xid, fromSeq: w.cursor_seq, endXid: w.batch_end_xid!, endSeq: w.batch_end_seq!, rows: changes };
  }

  /**
   * Waits out the webhook's rate limit (requests per second), if it has one: after this
   * process's last request to it, and after the last one any instance recorded (last_sent_at).
   */
  private async pace(w: sql.WebhookRow) {
    if (!w.rate_limit) return;
    const interval = 1000 / w.rate_limit;
    const now = performance.now();
    const recorded = w.last_sent_at ? now - (Date.now() - w.last_sent_at.getTime()) : -Infinity;
    const wait = Math.min(interval, Math.max(this.lastSend.get(w.id) ?? -Infinity, recorded) + interval - now);
    if (wait > 0) await sleep(wait);
    this.lastSend.set(w.id, performance.now());
  }

  /** Sends a batch; undefined when `fenced` refused (the lease may have passed to another sender). */
  private async send(w: sql.WebhookRow, batch: Batch, fenced: (b: Batch) => Promise<boolean>): Promise<SendResult | undefined> {
    const changes = views(batch.rows, { fields: w.fields, coalesce: w.coalesce_changes });
    // A stored batch can match nothing any more (the webhook's subscriptions changed): nothing to send.
    if (!changes.length) return { ok: true, status: 0, error: "", body: "", headers: {}, durationMs: 0 };
    const { body, contentType, events } = render(batch.id, changes, { format: w.format, fields: w.fields, coalesce: w.coalesce_changes, shopId: w.shop_id });
    await this.pace(w);
    if (!(await fenced(batch))) return undefined;
    const { result } = await sendAttempt(this.deps, w, {
      callbackId: batch.id,
      body,
      contentType,
      events,
      entities: [...new Set(changes.map((c) => c.entity))],
      changeCount: changes.length,
      attempt: w.batch_id === batch.id ? w.attempts + 1 : 1,
      test: false,
      range: [batch.fromXid, batch.fromSeq, batch.endXid, batch.endSeq],
    });
    return result;
  }

  /**
   * Stops a webhook whose undelivered changes the retention pruned (kept past the change
   * retention up to SHOPHOOK_WEBHOOK_BACKLOG_MAX_HOURS): delivering on would skip them silently.
   * Returns true (the statement released the lease).
   */
  private async stopPruned(w: sql.WebhookRow): Promise<boolean> {
    const reason = `${sql.PRUNED_REASON} changes this webhook had not delivered were older than ${this.deps.config.webhookBacklogMaxHours}h and were deleted; RecoverWebhook resumes it from a time within the retention`;
    await this.deps.pool.query(sql.stopPruned(w.id, this.deps.owner, reason, this.deps.clock.now()));
    this.deps.log.warn({ webhookId: w.id }, "webhook stopped: undelivered changes were pruned");
    return true;
  }

  /**
   * Records a failed attempt: retry at the next step of the schedule (or when a 429's
   * Retry-After says, bounded), stop after the window, or, on 410 Gone, deactivate the webhook.
   */
  private async failed(w: sql.WebhookRow, result: SendResult): Promise<void> {
    const { config, clock } = this.deps;
    const now = clock.now();
    const failures = w.attempts + 1;
    const failingSince = w.failing_since ?? now;
    let next = afterFailure(failures, failingSince, now, config);
    let disabledReason: string | undefined;
    if (result.status === 410) {
      next = { state: "stop" };
      disabledReason = `the receiver answered 410 Gone at ${now.toISOString()}: delivery is paused; SetActive resumes it from the first undelivered change`;
    } else if (result.status === 429 && next.state === "retry") {
      const asked = retryAfterSeconds(result.headers["retry-after"], now);
      if (asked !== undefined) next = { state: "retry", at: new Date(now.getTime() + Math.min(Math.max(asked, 1), config.retryAfterMaxSeconds) * 1000) };
    }
    await this.deps.pool.query(
      sql.batchFailed(w.id, this.deps.owner, {
        state: next.state,
        attempts: failures,
        failingSince,
        nextAttemptAt: next.state === "retry" ? next.at : null,
        sentAt: now,
        lastError: { error: result.error, resp_status: result.status, resp_body: result.body, retried: failures, sent_at: now.toISOString() },
        disabledReason,
      }),
    );
    this.deps.log.info({ webhookId: w.id, error: result.error, status: result.status, failures, state: next.state }, "delivery failed");
    if (next.state === "retry") await this.deps.schedule(w.id, next.at);
  }
}
