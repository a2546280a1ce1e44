/** SQL read at scrape time for the Prometheus gauges. */
import { firstMatch, matchingAfter } from "./matching.ts";
import type { Query } from "./query.ts";

/** Most undelivered changes counted per webhook at a scrape (keeps a scrape cheap on a huge backlog). */
export const BACKLOG_COUNT_CAP = 100_000;

/**
 * Per webhook state (and activity): webhooks, undelivered changes (those the webhook gets, by the
 * one rule of sql/matching.ts; capped per webhook), and the age of the oldest undelivered change.
 */
export const backlogByState = (): Query => ({
  text: `SELECT w.state, w.active, count(*)::int AS webhooks, coalesce(sum(b.pending), 0)::bigint AS pending,
                extract(epoch FROM now() - min(o.time)) AS oldest_seconds
           FROM webhooks w
           LEFT JOIN LATERAL (SELECT count(*) AS pending FROM (${matchingAfter("w.cursor_xid", "w.cursor_seq", "$1")}) x) b ON true
           LEFT JOIN LATERAL (${firstMatch("w.cursor_xid", "w.cursor_seq")}) o ON true
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
