/** SQL for the change watcher (delivery/change-watcher.ts): the whole log in commit-safe order. */
import { prepared, type Query } from "./query.ts";

export interface WatchedRow {
  horizon: string;
  /** Null when nothing new is below the horizon. */
  shop_id: string | null;
  events: string[] | null;
  /** The last position read for the shop (the page's last row overall is the max of these). */
  xid: string | null;
  seq: string | null;
  rows: number;
}

/**
 * What was committed after (xid, seq) and is below the horizon, every shop at once (index
 * changes_position), up to `limit` changes, grouped per shop as `entity:change_type` events.
 * The horizon comes with it: below it nothing can still appear (docs/change-feed.md).
 */
export const changesAfter = (xid: string, seq: string, limit: number): Query =>
  prepared({
    text: `WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon),
  page AS (SELECT c.shop_id, c.entity, c.change_type, c.xid, c.id FROM changes c, h
            WHERE (c.xid, c.id) > ($1::xid8, $2::bigint) AND c.xid < h.horizon
            ORDER BY c.xid, c.id LIMIT $3)
SELECT h.horizon::text AS horizon, p.shop_id::text, p.events, p.xid::text, p.seq::text, coalesce(p.rows, 0)::int AS rows
  FROM h LEFT JOIN (
    SELECT shop_id, array_agg(DISTINCT entity || ':' || change_type) AS events, max(xid) AS xid,
           (array_agg(id ORDER BY xid DESC, id DESC))[1] AS seq, count(*) AS rows
      FROM page GROUP BY shop_id) p ON true`,
    values: [xid, seq, limit],
  });

/** The current horizon: where a watcher that starts now begins (what is older, a full sweep finds). */
export const horizon = (): Query => ({ text: "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon", values: [] });

/** Wakes delivery instances elsewhere: a commit here (payload: its xid), or a shop's webhooks changed. */
export const CHANGES_CHANNEL = "shophook_changes";
export const WEBHOOKS_CHANNEL = "shophook_webhooks";
export const notify = (channel: string, payload: string): Query => ({ text: "SELECT pg_notify($1, $2)", values: [channel, payload] });
