/** SQL read at scrape time for the Prometheus gauges. */
import type { Query } from "./query.ts";

/** Most undelivered changes counted per webhook at a scrape (keeps a scrape cheap on a huge backlog). */
export const BACKLOG_COUNT_CAP = 100_000;

/**
 * Per webhook state (and activity): webhooks, undelivered changes (capped per webhook), and the
 * age of the oldest undelivered change.
 */
export const backlogByState = (): Query => ({
  text: `SELECT w.state, w.active, count(*)::int AS webhooks, coalesce(sum(b.pending), 0)::bigint AS pending,
                extract(epoch FROM now() - min(o.time)) AS oldest_seconds
           FROM webhooks w
           LEFT JOIN LATERAL (
             SELECT count(*) AS pending FROM (
               SELECT 1 FROM changes c
                WHERE c.shop_id = w.shop_id AND (c.xid, c.id) > (w.cursor_xid, w.cursor_seq)
                  AND ((c.entity || ':*') = ANY(w.subscriptions) OR (c.entity || ':' || c.change_type) = ANY(w.subscriptions))
                LIMIT $1) x) b ON true
           LEFT JOIN LATERAL (
             SELECT c.time FROM changes c
              WHERE c.shop_id = w.shop_id AND (c.xid, c.id) > (w.cursor_xid, w.cursor_seq)
                AND ((c.entity || ':*') = ANY(w.subscriptions) OR (c.entity || ':' || c.change_type) = ANY(w.subscriptions))
              ORDER BY c.xid, c.id LIMIT 1) o ON true
          GROUP BY w.state, w.active`,
  values: [BACKLOG_COUNT_CAP],
});

/**
 * The oldest open transaction that has written (it holds the feed's horizon back: changes
 * committed after it started wait until it ends). Needs a role that sees other sessions
 * (superuser or pg_monitor); otherwise reports nothing.
 */
export const oldestWriter = (): Query => ({
  text: `SELECT pid, datname, application_name, extract(epoch FROM now() - xact_start) AS seconds
           FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND xact_start IS NOT NULL
          ORDER BY xact_start LIMIT 1`,
  values: [],
});
