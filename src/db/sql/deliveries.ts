/** SQL for the delivery history: every attempt, what was sent and what came back. */
import { prepared, type Query } from "./query.ts";

export interface DeliveryRow {
  id: string;
  shop_id: string;
  webhook_id: string;
  callback_id: string;
  attempt: number;
  test: boolean;
  url: string;
  events: string[];
  change_count: number;
  from_xid: string | null;
  from_seq: string | null;
  end_xid: string | null;
  end_seq: string | null;
  request_headers: Record<string, string>;
  body_size: number;
  status: "success" | "failed";
  response_status: number;
  response_headers: Record<string, string>;
  response_body: string;
  error: string;
  duration_ms: number;
  created_at: Date;
}

const COLUMNS = [
  "id", "shop_id", "webhook_id", "callback_id", "attempt", "test", "url", "events", "change_count", "from_xid", "from_seq", "end_xid", "end_seq",
  "request_headers", "body_size", "status", "response_status", "response_headers", "response_body", "error", "duration_ms", "created_at",
] as const;
const TYPES = [
  "bigint", "bigint", "bigint", "bigint", "int", "boolean", "text", "text", "int", "xid8", "bigint", "xid8", "bigint",
  "jsonb", "int", "text", "int", "jsonb", "text", "text", "int", "timestamptz",
];

/** Inserts many attempts in one statement (arrays per column; events as a JSON array). */
export function insertDeliveries(rows: DeliveryRow[]): Query {
  const values = COLUMNS.map((c) =>
    rows.map((r) => (c === "request_headers" || c === "response_headers" || c === "events" ? JSON.stringify(r[c]) : r[c])),
  );
  const args = COLUMNS.map((c, i) => (c === "events" ? `$${i + 1}::text[]` : `$${i + 1}::${TYPES[i]}[]`));
  const select = COLUMNS.map((c) => (c === "events" ? "ARRAY(SELECT json_array_elements_text(x.events::json))" : `x.${c}`));
  return prepared({
    text: `INSERT INTO deliveries (${COLUMNS.join(", ")})
           SELECT ${select.join(", ")} FROM unnest(${args.join(", ")}) AS x(${COLUMNS.join(", ")})`,
    values,
  });
}

export interface DeliveryFilter {
  webhookId?: string;
  status?: string;
  /** An entity ("order") or an event ("order.created"). */
  event?: string;
  from?: Date;
  to?: Date;
}

/** A page of a shop's attempts, newest first, before `beforeId` (keyset on id). */
export function listDeliveries(shopId: string, f: DeliveryFilter, beforeId: string | undefined, limit: number): Query {
  const values: unknown[] = [shopId];
  const where = ["shop_id = $1"];
  const p = (v: unknown) => {
    values.push(v);
    return `$${values.length}`;
  };
  if (f.webhookId) where.push(`webhook_id = ${p(f.webhookId)}`);
  if (f.status) where.push(`status = ${p(f.status)}`);
  if (f.event) {
    if (f.event.includes(".")) where.push(`${p(f.event)} = ANY(events)`);
    else where.push(`EXISTS (SELECT 1 FROM unnest(events) e WHERE split_part(e, '.', 1) = ${p(f.event)})`);
  }
  if (f.from) where.push(`created_at >= ${p(f.from)}`);
  if (f.to) where.push(`created_at < ${p(f.to)}`);
  if (beforeId) where.push(`id < ${p(beforeId)}`);
  return { text: `SELECT * FROM deliveries WHERE ${where.join(" AND ")} ORDER BY id DESC LIMIT ${p(limit)}`, values };
}

export const getDelivery = (shopId: string, id: string): Query => ({
  text: "SELECT * FROM deliveries WHERE shop_id = $1 AND id = $2",
  values: [shopId, id],
});

export const clearDeliveries = (shopId: string, webhookId: string, before: Date | null, status: string | null): Query => ({
  text: `DELETE FROM deliveries WHERE shop_id = $1 AND webhook_id = $2
           AND ($3::timestamptz IS NULL OR created_at < $3) AND ($4::text IS NULL OR status = $4)`,
  values: [shopId, webhookId, before, status],
});

/** Totals and duration percentiles of a webhook's attempts (tests excluded) over [from, to]. */
export const stats = (shopId: string, webhookId: string, from: Date, to: Date): Query => ({
  text: `SELECT count(*)::int AS total, count(*) FILTER (WHERE status = 'success')::int AS success,
                coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms), 0)::int AS p50,
                coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms), 0)::int AS p95
           FROM deliveries WHERE shop_id = $1 AND webhook_id = $2 AND NOT test AND created_at >= $3 AND created_at <= $4`,
  values: [shopId, webhookId, from, to],
});

export const statsByDay = (shopId: string, webhookId: string, from: Date, to: Date): Query => ({
  text: `SELECT to_char(date_trunc('day', created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD') AS day, count(*)::int AS total,
                count(*) FILTER (WHERE status = 'success')::int AS success
           FROM deliveries WHERE shop_id = $1 AND webhook_id = $2 AND NOT test AND created_at >= $3 AND created_at <= $4
          GROUP BY 1 ORDER BY 1`,
  values: [shopId, webhookId, from, to],
});

/** Per webhook of the shop: attempts and successes since `since` (tests excluded), for health. */
export const recentOutcomes = (shopId: string, webhookIds: string[], since: Date): Query => ({
  text: `SELECT webhook_id, count(*)::int AS total, count(*) FILTER (WHERE status = 'success')::int AS success
           FROM deliveries WHERE shop_id = $1 AND webhook_id = ANY($2::bigint[]) AND NOT test AND created_at >= $3
          GROUP BY webhook_id`,
  values: [shopId, webhookIds, since],
});

/** Attempts past the history retention, a batch at a time. */
export const pruneDeliveries = (before: Date, batch: number): Query => ({
  text: "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE created_at < $1 LIMIT $2)",
  values: [before, batch],
});
