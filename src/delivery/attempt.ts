/**
 * One delivery request, whichever path sends it (the stream, a test, a manual retry): the
 * headers (custom ones, Standard Webhooks signatures, ours), the POST, its metric, and its row in
 * the delivery history.
 */
import type { Clock } from "../clock.ts";
import type { DeliveryRow } from "../db/sql/deliveries.ts";
import type { WebhookRow } from "../db/sql/webhooks.ts";
import type { Metrics } from "../metrics.ts";
import { version } from "../version.ts";
import type { History } from "./history.ts";
import type { HttpSender, SendResult } from "./http-sender.ts";
import { signatureHeaders } from "./signing.ts";

export const USER_AGENT = `shophook/${version} (+https://github.com/shophook/shophook)`;

/** The secrets that sign now: the current one, and the previous one during its rotation grace. */
export function signingSecrets(w: WebhookRow, now: Date): string[] {
  return w.previous_secret && w.previous_secret_expires_at && w.previous_secret_expires_at > now ? [w.secret, w.previous_secret] : [w.secret];
}

/** Counts an attempt in the delivery metrics. */
export function observeAttempt(metrics: Metrics | undefined, r: SendResult) {
  if (!metrics) return;
  const result = r.ok ? "success" : "failed";
  metrics.deliveries.inc({ result, status_class: r.status ? `${Math.floor(r.status / 100)}xx` : "none" });
  metrics.deliveryDuration.observe({ result }, r.durationMs / 1000);
}

export interface AttemptDeps {
  sender: HttpSender;
  history: History;
  metrics?: Metrics;
  clock: Clock;
}

export interface Request {
  callbackId: string;
  body: string;
  contentType: string;
  /** Event names in the body ("order.created"). */
  events: string[];
  /** Entities in the body, for the X-Shophook-Event header. */
  entities: string[];
  changeCount: number;
  attempt: number;
  /** A test request: marked in a header, not counted in the delivery metrics. */
  test: boolean;
  /** The change-log range the body covers: from (xid, seq), end (xid, seq). */
  range: [string, string, string, string] | undefined;
}

/** Signs and sends `req` to the webhook and records the attempt; returns the result and the history row. */
export async function sendAttempt(deps: AttemptDeps, w: WebhookRow, req: Request): Promise<{ result: SendResult; row: DeliveryRow }> {
  const headers: Record<string, string> = {
    ...Object.fromEntries(w.headers.map((h) => [h.name, h.value])),
    ...signatureHeaders(signingSecrets(w, deps.clock.now()), req.callbackId, Math.floor(Date.now() / 1000), req.body),
    "content-type": req.contentType,
    "x-shophook-event": req.entities.join(","),
    "x-shophook-webhook-id": w.id,
    ...(req.test ? { "x-shophook-test": "true" } : {}),
  };
  const result = await deps.sender.post(w.url, headers, req.body);
  if (!req.test) observeAttempt(deps.metrics, result);
  const row: DeliveryRow = {
    id: "",
    shop_id: w.shop_id,
    webhook_id: w.id,
    callback_id: req.callbackId,
    attempt: req.attempt,
    test: req.test,
    url: w.url,
    events: req.events,
    change_count: req.changeCount,
    from_xid: req.range?.[0] ?? null,
    from_seq: req.range?.[1] ?? null,
    end_xid: req.range?.[2] ?? null,
    end_seq: req.range?.[3] ?? null,
    request_headers: { ...headers, "user-agent": USER_AGENT },
    body_size: Buffer.byteLength(req.body),
    status: result.ok ? "success" : "failed",
    response_status: result.status,
    response_headers: result.headers,
    response_body: result.body,
    error: result.error,
    duration_ms: result.durationMs,
    created_at: deps.clock.now(),
  };
  row.id = await deps.history.record(row);
  return { result, row };
}
