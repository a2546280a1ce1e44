/**
 * The delivery history: every attempt (and test request) is recorded, group-committed on the
 * delivery pool so recording costs no round trip of its own under load. Header values that may
 * carry credentials are redacted before they are stored.
 */
import type { IdAllocator } from "../db/ids.ts";
import { Batcher } from "../db/batcher.ts";
import type { Pool } from "../db/pool.ts";
import { type DeliveryRow, insertDeliveries } from "../db/sql/deliveries.ts";
import type { Logger } from "../logger.ts";

const SENSITIVE = /authorization|cookie|token|secret|key|password|passwd|auth|session|signature/i;
const SHOPHOOK_HEADERS = /^(webhook-id|webhook-timestamp|user-agent|content-type|x-shophook-)/i;

/** Header values as stored: ours as sent, the signature and anything credential-like redacted. */
export function redactHeaders(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(headers).map(([k, v]) => [k.toLowerCase(), SHOPHOOK_HEADERS.test(k) || !SENSITIVE.test(k) ? v : "[redacted]"]),
  );
}

export type Attempt = Omit<DeliveryRow, "id" | "request_headers"> & { request_headers: Record<string, string> };

export class History {
  private readonly batcher: Batcher<DeliveryRow, undefined>;
  private readonly ids: IdAllocator;
  private readonly log: Logger;

  constructor(pool: Pool, ids: IdAllocator, log: Logger) {
    this.ids = ids;
    this.log = log;
    this.batcher = new Batcher(async (rows) => {
      await pool.query(insertDeliveries(rows));
      return rows.map(() => undefined);
    });
  }

  /** Records an attempt; returns its id. A failure to record is logged, never thrown: delivery goes on. */
  async record(a: Attempt): Promise<string> {
    const id = await this.ids.next();
    await this.batcher.call({ ...a, id, request_headers: redactHeaders(a.request_headers) }).catch((err: unknown) => this.log.warn({ err, webhookId: a.webhook_id }, "could not record a delivery attempt"));
    return id;
  }
}
