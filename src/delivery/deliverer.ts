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
import * as sql from "../db/sql/webhooks.ts";
import type { Logger } from "../logger.ts";
import { version } from "../version.ts";
import { buildBody } from "./batch.ts";
import type { HttpSender, SendResult } from "./http-sender.ts";
import { afterFailure } from "./retry-schedule.ts";
import { signatureHeaders } from "./signing.ts";

export interface DelivererDeps {
  pool: Pool;
  log: Logger;
  clock: Clock;
  config: Config;
  sender: HttpSender;
  ids: IdAllocator;
  /** This instance's name in leases. */
  owner: string;
  /** Asks for a turn of `webhookId`, now or at `at` (durable: it survives this process). */
  schedule(webhookId: string, at?: Date): Promise<void>;
}

/** Batches one turn sends before yielding its slot to other webhooks. */
const BATCHES_PER_TURN = 20;
export const USER_AGENT = `shophook/${version} (+https://github.com/shophook/shophook)`;

export class Deliverer {
  private readonly deps: DelivererDeps;
  private readonly running = new Map<string, Promise<void>>();
  /** Woken while running: run again when the current turn ends. */
  private readonly again = new Set<string>();
  private readonly waiting: string[] = [];
  private readonly waitingSet = new Set<string>();
  private stopping = false;
  private readonly leaseSeconds: number;

  constructor(deps: DelivererDeps) {
    this.deps = deps;
    this.leaseSeconds = Math.ceil(deps.config.deliveryTimeoutMs / 1000) + 30;
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
        .catch((err: unknown) => this.deps.log.error({ err, webhookId: id }, "delivery turn failed"))
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
    const { pool, owner } = this.deps;
    let w = (await pool.query<sql.WebhookRow>(sql.acquireLease(id, owner, this.leaseSeconds))).rows[0];
    // Another sender holds it (and its release will see what woke us), or it is gone.
    if (!w) return;
    let released = false;
    try {
      for (let n = 0; n < BATCHES_PER_TURN && !this.stopping; n++) {
        if (!w.active || w.state === "stop") return;
        if (w.state === "retry" && w.next_attempt_at && w.next_attempt_at > this.deps.clock.now()) return;
        const next = await this.deliverOne(w);
        if (next === "failed") {
          released = true; // batchFailed released the lease
          return;
        }
        if (next === "idle") return;
        w = next;
      }
      // Budget spent with work left: queue behind the others.
      if (!this.stopping) this.again.add(id);
    } finally {
      if (!released) {
        const { rows } = await pool.query<{ more: boolean }>(sql.releaseLease(id, owner)).catch(() => ({ rows: [] as Array<{ more: boolean }> }));
        if (rows[0]?.more && !this.stopping) this.again.add(id);
      }
    }
  }

  /** Sends the webhook's next batch. Returns the updated row, "idle" with nothing to send, or "failed". */
  private async deliverOne(w: sql.WebhookRow): Promise<sql.WebhookRow | "idle" | "failed"> {
    const { pool, owner, config } = this.deps;
    const { rows } = await pool.query<sql.BatchChangeRow>(sql.batchChanges(w, config.batchMaxChanges));
    const horizon = rows[0]!.horizon;
    const changes = rows.filter((r) => r.id !== null);
    let batchId = w.batch_id;
    let count: number;
    let body: string;
    if (batchId === null) {
      if (!changes.length) {
        // Nothing matched below the horizon: move past what was read so later scans start there.
        if (BigInt(horizon) > BigInt(w.cursor_xid)) await pool.query(sql.skipTo(w.id, owner, horizon, "0"));
        return "idle";
      }
      batchId = await this.deps.ids.next();
      ({ body, count } = buildBody(batchId, changes, config.batchMaxBytes));
      // A short page that fits whole covers everything below the horizon: end the batch there.
      const whole = count === changes.length && changes.length < config.batchMaxChanges;
      const last = changes[count - 1]!;
      const [endXid, endSeq] = whole ? [horizon, "0"] : [last.xid, last.id!];
      await pool.query(sql.startBatch(w.id, owner, batchId, endXid, endSeq));
    } else {
      ({ body, count } = buildBody(batchId, changes, Number.MAX_SAFE_INTEGER));
    }
    const sent = changes.slice(0, count);
    let result: SendResult;
    if (sent.length === 0) {
      // The stored batch no longer matches anything (the webhook's entities changed): nothing to send.
      result = { ok: true, status: 0, error: "", body: "", headers: {}, durationMs: 0 };
    } else {
      const events = [...new Set(sent.map((c) => c.entity))].join(",");
      const headers = {
        ...Object.fromEntries(w.headers.map((h) => [h.name, h.value])),
        ...signatureHeaders([w.secret], batchId, Math.floor(Date.now() / 1000), body),
        "x-shophook-event": events,
        "x-shophook-webhook-id": w.id,
      };
      result = await this.deps.sender.post(w.url, headers, body);
    }
    const now = this.deps.clock.now();
    if (result.ok) {
      const row = (await pool.query<sql.WebhookRow>(sql.batchDelivered(w.id, owner, now, this.leaseSeconds))).rows[0];
      return row ?? "idle";
    }
    const failures = w.attempts + 1;
    const failingSince = w.failing_since ?? now;
    const next = afterFailure(failures, failingSince, now, config);
    await pool.query(
      sql.batchFailed(w.id, owner, {
        state: next.state,
        attempts: failures,
        failingSince,
        nextAttemptAt: next.state === "retry" ? next.at : null,
        sentAt: now,
        lastError: { error: result.error, resp_status: result.status, resp_body: result.body, retried: failures, sent_at: now.toISOString() },
      }),
    );
    this.deps.log.info({ webhookId: w.id, error: result.error, status: result.status, failures, state: next.state }, "delivery failed");
    if (next.state === "retry") await this.deps.schedule(w.id, next.at);
    return "failed";
  }
}
