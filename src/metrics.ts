/**
 * Prometheus metrics (prom-client), one registry per app. Counters and histograms are updated
 * where things happen (RPCs, delivery attempts); gauges about the backlog and the feed are read
 * from the database at scrape time. Feed lag is two of them: shophook_feed_stall_seconds (how
 * far the feed's horizon trails commits) and shophook_oldest_undelivered_change_seconds (how far
 * each webhook state trails writes).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Pool } from "./db/pool.ts";
import { backlogByState, oldestWriter } from "./db/sql/metrics.ts";

export class Metrics {
  readonly registry = new Registry();
  readonly rpcs: Counter<"rpc" | "code">;
  readonly rpcDuration: Histogram<"rpc">;
  readonly deliveries: Counter<"result" | "status_class">;
  readonly deliveryDuration: Histogram<"result">;
  readonly deliveryBytes: Gauge;

  constructor(pool: Pool) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "shophook_" });
    this.rpcs = new Counter({ name: "shophook_rpc_requests_total", help: "RPCs served, by method and result code.", labelNames: ["rpc", "code"], registers });
    this.rpcDuration = new Histogram({
      name: "shophook_rpc_duration_seconds",
      help: "RPC handling time.",
      labelNames: ["rpc"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.deliveries = new Counter({
      name: "shophook_deliveries_total",
      help: "Webhook delivery attempts, by result (success, failed) and HTTP status class (2xx..5xx, or none when no response came).",
      labelNames: ["result", "status_class"],
      registers,
    });
    this.deliveryDuration = new Histogram({
      name: "shophook_delivery_attempt_seconds",
      help: "Duration of webhook delivery attempts (request sent to response read).",
      labelNames: ["result"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.deliveryBytes = new Gauge({
      name: "shophook_delivery_held_bytes",
      help: "Bytes of changes this instance's deliveries hold (read, rendered, in flight), against SHOPHOOK_DELIVERY_MEMORY_BYTES.",
      registers,
    });
    // The three backlog gauges are read in one query, by whichever of them is collected first.
    let reading: Promise<void> | undefined;
    const collect = () =>
      (reading ??= (async () => {
        const { rows } = await pool.query<{ state: string; active: boolean; webhooks: number; pending: string; oldest_seconds: number | null }>(backlogByState());
        for (const g of [webhooks, pending, oldest]) g.reset();
        for (const r of rows) {
          const labels = { state: r.state, active: String(r.active) };
          webhooks.set(labels, r.webhooks);
          pending.set(labels, Number(r.pending));
          // Clamped: a change stamped by an application clock ahead of the database's is not "from the future".
          oldest.set(labels, Math.max(0, Number(r.oldest_seconds ?? 0)));
        }
      })().finally(() => setTimeout(() => (reading = undefined), 0)));
    const labelNames = ["state", "active"] as const;
    const webhooks = new Gauge({ name: "shophook_webhooks", help: "Webhooks by delivery state and activity.", labelNames, registers, collect });
    const pending = new Gauge({ name: "shophook_undelivered_changes", help: "Changes not yet delivered, by webhook state (counted up to 100,000 per webhook).", labelNames, registers, collect });
    const oldest = new Gauge({
      name: "shophook_oldest_undelivered_change_seconds",
      help: "Age of the oldest committed change not yet delivered, by webhook state: how far webhooks trail writes (changes a stalled feed holds back included).",
      labelNames,
      registers,
      collect,
    });
    // Feed lag for pollers: a change is served once every transaction that started before it has
    // ended (docs/change-feed.md), so the oldest open writer bounds the lag, and equals it while
    // writes keep coming. Measuring the lag itself would scan every shop's recent changes at each
    // scrape; this is one row of pg_stat_activity.
    new Gauge({
      name: "shophook_feed_stall_seconds",
      help: "Age of the oldest open transaction that has written (cluster-wide): List*, GetChanges and webhooks serve nothing committed after it started until it ends, so this bounds the feed lag (0: none open).",
      registers,
      async collect() {
        const { rows } = await pool.query<{ seconds: number }>(oldestWriter());
        // Clamped: a transaction that began after this statement's now() reads as slightly negative.
        this.set(Math.max(0, Number(rows[0]?.seconds ?? 0)));
      },
    });
  }
}
