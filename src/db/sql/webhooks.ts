/** SQL for webhooks: their settings, and their delivery position, batch, state and lease. */
import { behindPrune } from "./changes.ts";
import { firstMatch, MATCHES } from "./matching.ts";
import { prepared, type Query } from "./query.ts";

export interface WebhookRow {
  id: string;
  shop_id: string;
  url: string;
  entities: string[];
  fields: string[];
  metadata: string;
  headers: Array<{ name: string; value: string }>;
  description: string;
  secret: string;
  active: boolean;
  created_at: Date;
  updated_at: Date;
  cursor_xid: string;
  cursor_seq: string;
  batch_id: string | null;
  batch_end_xid: string | null;
  batch_end_seq: string | null;
  state: "ok" | "retry" | "stop";
  attempts: number;
  failing_since: Date | null;
  next_attempt_at: Date | null;
  last_sent_at: Date | null;
  last_error: LastError | null;
  lease_owner: string | null;
  lease_until: Date | null;
  subscriptions: string[];
  topics: string[];
  format: "json" | "xml" | "thin";
  coalesce_changes: boolean;
  rate_limit: number;
  previous_secret: string | null;
  previous_secret_expires_at: Date | null;
  disabled_reason: string;
  last_success_at: Date | null;
  last_failure_at: Date | null;
  held_until: Date | null;
  settings_version: number;
  batch_version: number | null;
}

/** Every column of a webhook row (WebhookRow), listed for prepared statements (never `*`: see `prepared`). */
const WEBHOOK_COLUMNS = [
  "id", "shop_id", "url", "entities", "fields", "metadata", "headers", "description", "secret", "active", "created_at", "updated_at",
  "cursor_xid", "cursor_seq", "batch_id", "batch_end_xid", "batch_end_seq", "state", "attempts", "failing_since", "next_attempt_at",
  "last_sent_at", "last_error", "lease_owner", "lease_until", "subscriptions", "topics", "format", "coalesce_changes", "rate_limit",
  "previous_secret", "previous_secret_expires_at", "disabled_reason", "last_success_at", "last_failure_at", "held_until",
  "settings_version", "batch_version",
].map((c) => `w.${c}`).join(", ");

export interface LastError {
  error: string;
  resp_status: number;
  resp_body: string;
  retried: number;
  sent_at: string;
}

/** The settings a shop chooses for a webhook (CreateWebhook, UpdateWebhook). */
export interface WebhookSettings {
  url: string;
  entities: string[];
  topics: string[];
  subscriptions: string[];
  fields: string[];
  metadata: string;
  headers: Array<{ name: string; value: string }>;
  description: string;
  format: "json" | "xml" | "thin";
  coalesce_changes: boolean;
  rate_limit: number;
}

export interface NewWebhook extends WebhookSettings {
  id: string;
  secret: string;
  now: Date;
  /** Start after this position; undefined: at the current horizon (changes committed from now on). */
  after?: [string, string];
}

/** Serialises webhook creation per shop, so the per-shop cap holds under concurrent creates. */
export const lockShopWebhooks = (shopId: string): Query => ({
  text: "SELECT pg_advisory_xact_lock(hashtextextended('webhooks:' || $1::text, 0))",
  values: [shopId],
});

export const countWebhooks = (shopId: string): Query => ({
  text: "SELECT count(*)::int AS n FROM webhooks WHERE shop_id = $1",
  values: [shopId],
});

export const insertWebhook = (shopId: string, w: NewWebhook): Query => ({
  text: `INSERT INTO webhooks (id, shop_id, url, entities, topics, subscriptions, fields, metadata, headers, description, format, coalesce_changes, rate_limit,
                               secret, created_at, updated_at, cursor_xid, cursor_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15,
                 coalesce($16::xid8, pg_snapshot_xmin(pg_current_snapshot())), coalesce($17::bigint, 0))
         RETURNING *`,
  values: [
    w.id, shopId, w.url, w.entities, w.topics, w.subscriptions, w.fields, w.metadata, JSON.stringify(w.headers), w.description, w.format,
    w.coalesce_changes, w.rate_limit, w.secret, w.now, w.after?.[0] ?? null, w.after?.[1] ?? null,
  ],
});

const SETTINGS: ReadonlyArray<keyof WebhookSettings> = [
  "url", "entities", "topics", "subscriptions", "fields", "metadata", "headers", "description", "format", "coalesce_changes", "rate_limit",
];

/** Changes some settings of a shop's webhook (column names from SETTINGS, never from input). */
export function updateSettings(shopId: string, id: string, set: Partial<WebhookSettings>, now: Date): Query {
  const values: unknown[] = [shopId, id, now];
  const assignments = Object.entries(set).map(([col, v]) => {
    if (!SETTINGS.includes(col as keyof WebhookSettings)) throw new Error(`not a webhook setting: ${col}`);
    values.push(col === "headers" ? JSON.stringify(v) : v);
    return `${col} = $${values.length}`;
  });
  return {
    // A new settings_version: a batch cut under the old settings is cut again (see migration 0005).
    text: `UPDATE webhooks SET ${[...assignments, "updated_at = $3", "settings_version = settings_version + 1"].join(", ")} WHERE shop_id = $1 AND id = $2 RETURNING *`,
    values,
  };
}

/**
 * Pauses or resumes delivery. Resuming also ends a "stop" (and a 410's deactivation): the next
 * turn starts at the first undelivered change, its pending batch first; a webhook in "retry"
 * retries at once.
 */
export const setActive = (shopId: string, id: string, active: boolean, now: Date): Query => ({
  text: `UPDATE webhooks SET active = $3, updated_at = $4,
                state = CASE WHEN $3 AND state = 'stop' THEN 'ok' ELSE state END,
                attempts = CASE WHEN $3 AND state = 'stop' THEN 0 ELSE attempts END,
                failing_since = CASE WHEN $3 AND state = 'stop' THEN NULL ELSE failing_since END,
                next_attempt_at = CASE WHEN $3 AND state = 'retry' THEN $4 WHEN $3 THEN NULL ELSE next_attempt_at END,
                disabled_reason = CASE WHEN $3 THEN '' ELSE disabled_reason END
          WHERE shop_id = $1 AND id = $2 RETURNING *`,
  values: [shopId, id, active, now],
});

export const rotateSecret = (shopId: string, id: string, secret: string, previousExpiresAt: Date | null, now: Date): Query => ({
  text: `UPDATE webhooks SET previous_secret = CASE WHEN $4::timestamptz IS NULL THEN NULL ELSE secret END,
                previous_secret_expires_at = $4, secret = $3, updated_at = $5
          WHERE shop_id = $1 AND id = $2 RETURNING *`,
  values: [shopId, id, secret, previousExpiresAt, now],
});

/** Makes a pending retry due now (RetryDelivery of the pending batch). */
export const retryNow = (shopId: string, id: string, now: Date): Query => ({
  text: `UPDATE webhooks SET next_attempt_at = $3 WHERE shop_id = $1 AND id = $2 AND state = 'retry' RETURNING id`,
  values: [shopId, id, now],
});

/** Keeps deliverers off a webhook for a while (they end their turn and take no new one). */
export const hold = (shopId: string, id: string, seconds: number): Query => ({
  text: "UPDATE webhooks SET held_until = now() + make_interval(secs => $3) WHERE shop_id = $1 AND id = $2 RETURNING id",
  values: [shopId, id, seconds],
});

/** Ends an exclusive operation (api/exclusive.ts): its hold, and its lease if it still has it. */
export const releaseExclusive = (shopId: string, id: string, owner: string): Query => ({
  text: `UPDATE webhooks SET held_until = NULL,
                lease_until = CASE WHEN lease_owner = $3 THEN NULL ELSE lease_until END,
                lease_owner = CASE WHEN lease_owner = $3 THEN NULL ELSE lease_owner END
          WHERE shop_id = $1 AND id = $2`,
  values: [shopId, id, owner],
});

/** The first change at or after `since` that the webhook gets: where a recovery starts. */
export const firstChangeSince = (shopId: string, id: string, since: Date): Query => ({
  text: `SELECT c.xid::text AS xid, c.id FROM webhooks w JOIN changes c ON c.shop_id = w.shop_id
          WHERE w.shop_id = $1 AND w.id = $2 AND c.time >= $3 AND ${MATCHES}
          ORDER BY c.xid, c.id LIMIT 1`,
  values: [shopId, id, since],
});

/**
 * Sets the cursor (RecoverWebhook computes it), drops the pending batch and the failure streak
 * (and a stop for pruned changes), releases the hold and the lease we hold.
 */
export const recover = (shopId: string, id: string, owner: string, cursor: [string, string], now: Date): Query => ({
  text: `UPDATE webhooks SET cursor_xid = $4, cursor_seq = $5,
                batch_id = NULL, batch_end_xid = NULL, batch_end_seq = NULL, state = 'ok', attempts = 0, failing_since = NULL,
                next_attempt_at = NULL, held_until = NULL, lease_owner = NULL, lease_until = NULL, updated_at = $6,
                disabled_reason = CASE WHEN disabled_reason LIKE '${PRUNED_REASON}%' THEN '' ELSE disabled_reason END
          WHERE shop_id = $1 AND id = $2 AND lease_owner = $3 RETURNING *`,
  values: [shopId, id, owner, cursor[0], cursor[1], now],
});

/** How `disabled_reason` starts when a webhook stopped because changes it had not delivered were pruned. */
export const PRUNED_REASON = "changes pruned:";

/** The shop's prune mark of the change log, if any: [xid, seq]. */
export const changesPruneMark = (shopId: string): Query => ({
  text: "SELECT xid::text AS xid, seq::text AS seq FROM feed_pruned WHERE shop_id = $1 AND list = 'changes'",
  values: [shopId],
});

/** Whether the webhook's cursor is behind pruned changes (it cannot resume without a hole). */
export const behindPrunedChanges = (shopId: string, id: string): Query => ({
  text: `SELECT ${behindPrune("changes", "w.shop_id", "w.cursor_xid", "w.cursor_seq")} AS behind FROM webhooks w WHERE w.shop_id = $1 AND w.id = $2`,
  values: [shopId, id],
});

/** Stops a webhook whose undelivered changes were pruned: it must not skip them silently. */
export const stopPruned = (id: string, owner: string, reason: string, now: Date): Query => ({
  text: `UPDATE webhooks SET state = 'stop', disabled_reason = $3, next_attempt_at = NULL, last_failure_at = $4,
                last_error = jsonb_build_object('error', $3::text, 'resp_status', 0, 'resp_body', '', 'retried', attempts, 'sent_at', $4::timestamptz),
                lease_owner = NULL, lease_until = NULL
          WHERE id = $1 AND lease_owner = $2 RETURNING id`,
  values: [id, owner, reason, now],
});

export const listWebhooks = (shopId: string): Query => ({
  text: "SELECT * FROM webhooks WHERE shop_id = $1 ORDER BY id",
  values: [shopId],
});

export const getWebhook = (shopId: string, id: string): Query => ({
  text: "SELECT * FROM webhooks WHERE shop_id = $1 AND id = $2",
  values: [shopId, id],
});

export const deleteWebhook = (shopId: string, id: string): Query => ({
  text: "DELETE FROM webhooks WHERE shop_id = $1 AND id = $2 RETURNING id",
  values: [shopId, id],
});

/** A shop's webhooks that deliver (active, not stopped), with their subscriptions: who to wake after a write. */
export const webhooksOfShops = (shopIds: string[]): Query => ({
  text: `SELECT shop_id::text, id, subscriptions FROM webhooks WHERE shop_id = ANY($1::bigint[]) AND active AND state <> 'stop'`,
  values: [shopIds],
});

/**
 * Moves webhooks' cursors past changes they do not get, to just before the first change they do
 * (or to the horizon): an idle webhook then never pins the change log, never stops for a prune of
 * changes it would not have sent, and its sweep and metrics read nothing behind it. Only webhooks
 * without a stored batch, whose settings did not change meanwhile, and never a cursor behind
 * pruned changes (that webhook stops, and must not jump the hole), and only where the shop wrote
 * after it (so idle webhooks of quiet shops are not rewritten at every prune). `ids` null: every webhook.
 * Positions only move forward, and never past a change the webhook gets (docs/delivery.md).
 */
export const advanceIdle = (ids: string[] | null): Query => ({
  text: `WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon),
  n AS (
    SELECT w.id, w.settings_version, coalesce(f.xid, h.horizon) AS xid, coalesce(f.id - 1, 0) AS seq
      FROM webhooks w CROSS JOIN h
      LEFT JOIN LATERAL (${firstMatch("w.cursor_xid", "w.cursor_seq", "h.horizon")}) f ON true
     WHERE w.batch_id IS NULL AND w.cursor_xid < h.horizon AND ($1::bigint[] IS NULL OR w.id = ANY($1::bigint[]))
       -- Only where the shop wrote something after the position (one probe): a webhook of a quiet
       -- shop pins nothing and is not rewritten, however far the horizon moved.
       AND EXISTS (SELECT 1 FROM changes c WHERE c.shop_id = w.shop_id AND (c.xid, c.id) > (w.cursor_xid, w.cursor_seq) AND c.xid < h.horizon)
       AND NOT ${behindPrune("changes", "w.shop_id", "w.cursor_xid", "w.cursor_seq")})
  UPDATE webhooks w SET cursor_xid = n.xid, cursor_seq = n.seq
    FROM n
   WHERE w.id = n.id AND w.batch_id IS NULL AND w.settings_version = n.settings_version
     AND (w.cursor_xid, w.cursor_seq) < (n.xid, n.seq)
  RETURNING w.id`,
  values: [ids],
});

// --- delivery --------------------------------------------------------------------------


/** A delivery lease's length: the longest request (the delivery timeout) plus 30 s. */
export const leaseSeconds = (deliveryTimeoutMs: number): number => Math.ceil(deliveryTimeoutMs / 1000) + 30;

/** Seconds without a heartbeat after which an engine whose session is gone counts as dead. */
export const DEAD_AFTER_SECONDS = 6;

/** Sent on the engine's own connection: its backend pid tells peers the engine is still there. */
export const heartbeat = (owner: string): Query => ({
  text: `INSERT INTO delivery_instances (owner, backend_pid) VALUES ($1, pg_backend_pid())
         ON CONFLICT (owner) DO UPDATE SET heartbeat_at = now(), backend_pid = pg_backend_pid()`,
  values: [owner],
});

export const forgetInstance = (owner: string): Query => ({ text: "DELETE FROM delivery_instances WHERE owner = $1", values: [owner] });

/** Engines that stopped heartbeating long ago (their leases are already free). */
export const pruneInstances = (): Query => ({ text: "DELETE FROM delivery_instances WHERE heartbeat_at < now() - interval '1 hour'", values: [] });

/**
 * A lease is free when unset, run out, ours, or held by an engine that is gone: one recorded in
 * delivery_instances with no heartbeat for DEAD_AFTER_SECONDS and whose heartbeat session ended
 * (a killed process's sessions end at once). An engine that is frozen (SIGSTOP, a long pause)
 * keeps its session: its leases are only taken over once they run out, and a live engine renews
 * a lease before it could run out mid-request, so two requests of one webhook are never in
 * flight at once (docs/delivery.md). An owner that is not an engine (RecoverWebhook, RetryDelivery,
 * TestWebhook: src/api/exclusive.ts) holds its lease until it releases it or the lease runs out.
 */
const LEASE_FREE = `(w.lease_until IS NULL OR w.lease_until < now() OR EXISTS (
  SELECT 1 FROM delivery_instances i WHERE i.owner = w.lease_owner
     AND i.heartbeat_at <= now() - make_interval(secs => ${DEAD_AFTER_SECONDS})
     AND NOT EXISTS (SELECT 1 FROM pg_stat_get_activity(i.backend_pid) a WHERE a.pid = i.backend_pid)))`;

/**
 * Takes (or renews) the leases of these webhooks for `owner`; webhooks another live owner holds
 * are left out, and so are held webhooks, unless `overrideHold` (the operation that held them).
 */
export const acquireLeases = (ids: string[], owner: string, ttlSeconds: number, overrideHold = false): Query =>
  prepared({
    text: `UPDATE webhooks w SET lease_owner = $2, lease_until = now() + make_interval(secs => $3)
            WHERE w.id = ANY($1::bigint[]) AND (w.lease_owner = $2 OR ${LEASE_FREE})
              AND ($4 OR w.held_until IS NULL OR w.held_until < now())
            RETURNING ${WEBHOOK_COLUMNS}`,
    values: [ids, owner, ttlSeconds, overrideHold],
  });

/**
 * Releases leases and says, per webhook, whether deliverable changes arrived meanwhile: a wake-up
 * that found the lease taken just before this release is then not lost.
 */
export const releaseLeases = (ids: string[], owner: string): Query => prepared({
  text: `UPDATE webhooks w SET lease_owner = NULL, lease_until = NULL WHERE w.id = ANY($1::bigint[]) AND w.lease_owner = $2
         RETURNING w.id, w.state = 'ok' AND w.active AND EXISTS (${firstMatch("w.cursor_xid", "w.cursor_seq", "pg_snapshot_xmin(pg_current_snapshot())")}) AS more`,
  values: [ids, owner],
});

export interface BatchChangeRow {
  ord: number;
  horizon: string;
  /** The request's start position is behind changes the retention pruned: reading on would skip them. */
  pruned: boolean;
  id: string | null;
  xid: string;
  entity: string;
  entity_id: string;
  change_type: string;
  time: Date;
  latest: string;
  changed: string | null;
  /** Bytes of latest and changed as text: what the byte cap counts. */
  bytes: number;
}

export interface NextChanges {
  webhookId: string;
  shopId: string;
  /** Read after this position... */
  fromXid: string;
  fromSeq: string;
  /** ...and, for a batch already fixed, up to its end. */
  endXid: string | null;
  endSeq: string | null;
  limit: number;
  /**
   * Stop once this many bytes (latest + changed) are read, the change that passes it included
   * (so at least one); null: no cap (a stored batch is re-read whole). Rows past the cap never
   * leave PostgreSQL.
   */
  maxBytes: number | null;
}

/**
 * For several webhooks at once, the changes after a position (up to an end, for a stored batch),
 * of the webhook's entities, below the horizon (docs/change-feed.md). Every request answers at
 * least one row, `ord` giving its index, with the horizon and `pruned`; `id` is null when nothing matched.
 */
export function nextChanges(reqs: NextChanges[]): Query {
  const col = <K extends keyof NextChanges>(k: K) => reqs.map((r) => r[k]);
  return prepared({
    text: `WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon),
req AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::xid8[], $4::bigint[], $5::xid8[], $6::bigint[], $7::int[], $8::bigint[])
               WITH ORDINALITY AS r(webhook_id, shop_id, from_xid, from_seq, end_xid, end_seq, lim, max_bytes, ord))
SELECT req.ord::int - 1 AS ord, h.horizon::text AS horizon, ${behindPrune("changes", "req.shop_id", "req.from_xid", "req.from_seq")} AS pruned,
       c.id, c.xid, c.entity, c.entity_id, c.change_type, c.time, c.latest, c.changed, c.bytes
  FROM req CROSS JOIN h LEFT JOIN webhooks w ON w.id = req.webhook_id
  LEFT JOIN LATERAL (
    SELECT * FROM (
      SELECT p.*, sum(p.bytes) OVER (ORDER BY p.xid8, p.id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS bytes_before
        FROM (SELECT c.id, c.xid::text AS xid, c.xid AS xid8, c.entity, c.entity_id, c.change_type, c.time, c.latest::text AS latest, c.changed::text AS changed,
                     octet_length(c.latest::text) + coalesce(octet_length(c.changed::text), 0) AS bytes
                FROM changes c
               WHERE c.shop_id = req.shop_id AND (c.xid, c.id) > (req.from_xid, req.from_seq) AND c.xid < h.horizon
                 AND ${MATCHES} AND (req.end_xid IS NULL OR (c.xid, c.id) <= (req.end_xid, req.end_seq))
               ORDER BY c.xid, c.id LIMIT req.lim) p) q
     WHERE req.max_bytes IS NULL OR coalesce(q.bytes_before, 0) < req.max_bytes
  ) c ON true
 ORDER BY req.ord, c.xid8, c.id`,
    values: [col("webhookId"), col("shopId"), col("fromXid"), col("fromSeq"), col("endXid"), col("endSeq"), col("limit"), col("maxBytes")],
  });
}

export interface StartBatch {
  id: string;
  batchId: string;
  endXid: string;
  endSeq: string;
  /** The settings_version the batch was cut under. */
  version: number;
}

/** Fixes new batches (callback id and end) before their first attempt. */
export function startBatches(items: StartBatch[], owner: string): Query {
  return prepared({
    text: `UPDATE webhooks w SET batch_id = v.batch_id, batch_end_xid = v.end_xid, batch_end_seq = v.end_seq, batch_version = v.version
             FROM unnest($1::bigint[], $2::bigint[], $3::xid8[], $4::bigint[], $5::int[]) AS v(id, batch_id, end_xid, end_seq, version)
            WHERE w.id = v.id AND w.lease_owner = $6
            RETURNING w.id`,
    values: [items.map((i) => i.id), items.map((i) => i.batchId), items.map((i) => i.endXid), items.map((i) => i.endSeq), items.map((i) => i.version), owner],
  });
}

/** Drops a stored batch cut under older settings (it is cut again from the cursor). */
export const dropStaleBatch = (id: string, owner: string): Query => ({
  text: `UPDATE webhooks SET batch_id = NULL, batch_end_xid = NULL, batch_end_seq = NULL, batch_version = NULL
          WHERE id = $1 AND lease_owner = $2 AND batch_version IS DISTINCT FROM settings_version RETURNING id`,
  values: [id, owner],
});

/** Moves the cursor past changes that did not match the webhook (nothing to send). */
export const skipTo = (id: string, owner: string, xid: string, seq: string): Query => ({
  text: `UPDATE webhooks SET cursor_xid = $3, cursor_seq = $4
          WHERE id = $1 AND lease_owner = $2 AND batch_id IS NULL AND (cursor_xid, cursor_seq) < ($3::xid8, $4::bigint)
          RETURNING id`,
  values: [id, owner, xid, seq],
});

export interface Delivered {
  id: string;
  sentAt: Date;
  /** The next batch, fixed in the same statement, and the settings_version it was cut under. */
  next?: { id: string; endXid: string; endSeq: string; version: number };
  /** Move the cursor further than the batch's end (past changes that do not match). */
  skip?: [string, string];
}

/**
 * Batches were accepted: cursors move to their ends (or further, `skip`), failure streaks end,
 * leases are renewed, and next batches, where there are, are fixed in the same statement.
 */
export function batchesDelivered(items: Delivered[], owner: string, ttlSeconds: number): Query {
  return prepared({
    text: `UPDATE webhooks w SET cursor_xid = coalesce(v.skip_xid, w.batch_end_xid), cursor_seq = coalesce(v.skip_seq, w.batch_end_seq),
                  batch_id = v.next_id, batch_end_xid = v.next_end_xid, batch_end_seq = v.next_end_seq, batch_version = v.next_version,
                  state = 'ok', attempts = 0, failing_since = NULL, next_attempt_at = NULL, last_sent_at = v.sent_at,
                  last_success_at = v.sent_at, lease_until = now() + make_interval(secs => $9)
             FROM unnest($1::bigint[], $2::timestamptz[], $3::xid8[], $4::bigint[], $5::bigint[], $6::xid8[], $7::bigint[], $10::int[])
                  AS v(id, sent_at, skip_xid, skip_seq, next_id, next_end_xid, next_end_seq, next_version)
            WHERE w.id = v.id AND w.lease_owner = $8 AND w.batch_id IS NOT NULL
            RETURNING ${WEBHOOK_COLUMNS}`,
    values: [
      items.map((i) => i.id),
      items.map((i) => i.sentAt),
      items.map((i) => i.skip?.[0] ?? null),
      items.map((i) => i.skip?.[1] ?? null),
      items.map((i) => i.next?.id ?? null),
      items.map((i) => i.next?.endXid ?? null),
      items.map((i) => i.next?.endSeq ?? null),
      owner,
      ttlSeconds,
      items.map((i) => i.next?.version ?? null),
    ],
  });
}

/** A batch attempt failed: record it and when to try again (or stop); the lease is released. */
export const batchFailed = (
  id: string,
  owner: string,
  f: { state: "retry" | "stop"; attempts: number; failingSince: Date; nextAttemptAt: Date | null; sentAt: Date; lastError: LastError; disabledReason?: string },
): Query => ({
  text: `UPDATE webhooks SET state = $3, attempts = $4, failing_since = $5, next_attempt_at = $6, last_sent_at = $7, last_error = $8,
                last_failure_at = $7, lease_owner = NULL, lease_until = NULL,
                active = active AND $9::text IS NULL, disabled_reason = coalesce($9, disabled_reason)
          WHERE id = $1 AND lease_owner = $2
          RETURNING *`,
  values: [id, owner, f.state, f.attempts, f.failingSince, f.nextAttemptAt, f.sentAt, JSON.stringify(f.lastError), f.disabledReason ?? null],
});

/** A webhook that may get a turn now: delivering, nobody holds its lease, not held. */
const SWEEPABLE = `w.active AND w.state <> 'stop' AND ${LEASE_FREE} AND (w.held_until IS NULL OR w.held_until < now())`;

/**
 * Webhooks with something due and nobody delivering: a retry whose time has come, a stored batch
 * with no turn (its sender ended or died), a lease left by an engine that is gone. Each from its
 * own partial index (migration 0007): idle webhooks are never read, however many there are.
 * Changes committed since are the change watcher's (delivery/change-watcher.ts).
 */
export const dueSweep = (now: Date, limit: number): Query =>
  prepared({
    text: `SELECT w.id FROM webhooks w
            WHERE w.id IN (SELECT id FROM webhooks WHERE state = 'retry' AND next_attempt_at <= $1
                           UNION ALL SELECT id FROM webhooks WHERE batch_id IS NOT NULL AND state = 'ok'
                           UNION ALL SELECT id FROM webhooks WHERE lease_owner IS NOT NULL)
              AND (w.state <> 'retry' OR w.next_attempt_at <= $1) AND ${SWEEPABLE}
            LIMIT $2`,
    values: [now, limit],
  });

/**
 * Every webhook that needs a turn and nobody is delivering: a due retry, or (state ok) changes
 * after the cursor that it gets. Reads every webhook (an index probe per subscribed entity): run
 * at start, when the listener reconnects (notifications may have been lost), and every
 * SHOPHOOK_FULL_SWEEP_INTERVAL_MS as the last safety net; a page at a time, in id order.
 */
export const fullSweep = (now: Date, afterId: string, limit: number): Query => ({
  text: `SELECT w.id FROM webhooks w
          WHERE w.id > $3 AND ${SWEEPABLE}
            AND CASE WHEN w.state = 'retry' THEN w.next_attempt_at <= $1
                     ELSE w.batch_id IS NOT NULL OR EXISTS (${firstMatch("w.cursor_xid", "w.cursor_seq", "pg_snapshot_xmin(pg_current_snapshot())")})
                END
          ORDER BY w.id LIMIT $2`,
  values: [now, limit, afterId],
});
