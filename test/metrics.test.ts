/**
 * Prometheus metrics over HTTP: RPCs and deliveries counted, attempt latencies, the backlog per
 * webhook state through a failure and its recovery, and the feed's lag (a stall) reported
 * instead of hidden.
 */
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { Customer } from "../gen/shop/customer_pb.ts";
import { Misc } from "../gen/shop/misc_pb.ts";
import { Product } from "../gen/shop/product_pb.ts";
import { Webhook } from "../gen/shop/webhook_pb.ts";
import { useApp } from "./support/app.ts";
import { type Receiver, startReceiver } from "./support/receiver.ts";

// Its own cluster: the feed-lag test holds a writing transaction open, which would stall every other file.
const t = useApp({ webhookAllowHttp: true, webhookAllowPrivate: ["127.0.0.1"], sweepIntervalMs: 100 }, {}, { cluster: "private" });
let r: Receiver;
const receivers: Receiver[] = [];
let holder: pg.Client | undefined;
afterAll(async () => {
  await holder?.end();
  await r?.close();
  for (const x of receivers) await x.close();
});

const scrape = async () => {
  const res = await fetch(`${t.app.url}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
};
const value = (text: string, line: RegExp) => Number(text.split("\n").find((l) => line.test(l))?.split(" ").at(-1) ?? NaN);
/** One sample's value, by its exact name and labels (in the order prom-client prints them); NaN when absent. */
const sample = (text: string, name: string, labels: Record<string, string> = {}) => {
  const l = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(",");
  const prefix = l ? `${name}{${l}} ` : `${name} `;
  return Number(text.split("\n").find((x) => x.startsWith(prefix))?.slice(prefix.length) ?? NaN);
};
/** A counter's value, 0 before its first increment (prom-client prints labelled series only once used). */
const count = (text: string, name: string, labels: Record<string, string>) => sample(text, name, labels) || 0;

describe("/metrics", () => {
  it("counts RPCs and deliveries, and reports webhooks and undelivered changes by state", async () => {
    const shop = await t.shop();
    r = await startReceiver();
    await shop.client(Misc).versionInfo({});
    await shop.client(Webhook).createWebhook({ url: r.url, entities: ["customer"] });
    await shop.client(Customer).createCustomer({ fullName: "x" });
    await r.until((rs) => rs.length >= 1);
    await expect.poll(async () => value(await scrape(), /^shophook_deliveries_total\{result="success",status_class="2xx"\}/)).toBeGreaterThanOrEqual(1);
    const text = await scrape();
    expect(value(text, /^shophook_rpc_requests_total\{rpc="shop.Misc\/VersionInfo",code="ok"\}/)).toBe(1);
    expect(text).toMatch(/^shophook_delivery_attempt_seconds_bucket\{le="0.005",result="success"\}/m);
    expect(value(text, /^shophook_webhooks\{state="ok",active="true"\}/)).toBe(1);
    expect(value(text, /^shophook_undelivered_changes\{state="ok",active="true"\}/)).toBe(0);
    expect(text).toMatch(/^shophook_feed_stall_seconds \d/m);
    expect(text).toMatch(/^shophook_process_resident_memory_bytes \d/m);
  });

  it("a failing receiver: failed 5xx attempts and their latencies counted, the backlog in retry with its age, back to 0 after recovery", { timeout: 60_000 }, async () => {
    const shop = await t.shop();
    const answered: number[] = [];
    const answer = (status: number) => () => (answered.push(status), { status, body: status === 200 ? "ok" : "receiver down" });
    const failing = await startReceiver(answer(500));
    receivers.push(failing);
    const FAILED = { result: "failed", status_class: "5xx" };
    const SUCCESS = { result: "success", status_class: "2xx" };
    const before = await scrape();
    const wh = await shop.client(Webhook).createWebhook({ url: failing.url, entities: ["product"] });
    await shop.client(Product).createProduct({ name: "one" });
    await shop.client(Product).createProduct({ name: "two" });
    await failing.until((rs) => rs.length >= 1);
    await expect.poll(async () => (await shop.client(Webhook).getWebhook({ id: wh.id })).states?.state, { timeout: 15_000 }).toBe("retry");

    // The retry is due in about 30 s: no other attempt happens while we look.
    const attempts = failing.requests.length;
    expect(attempts).toBe(1);
    const retrying = await scrape();
    expect(count(retrying, "shophook_deliveries_total", FAILED) - count(before, "shophook_deliveries_total", FAILED)).toBe(attempts);
    const failedCount = (text: string) => count(text, "shophook_delivery_attempt_seconds_count", { result: "failed" });
    expect(failedCount(retrying) - failedCount(before)).toBe(attempts);
    expect(count(retrying, "shophook_delivery_attempt_seconds_bucket", { le: "+Inf", result: "failed" })).toBe(failedCount(retrying));
    expect(sample(retrying, "shophook_delivery_attempt_seconds_sum", { result: "failed" })).toBeGreaterThan(0);
    expect(sample(retrying, "shophook_webhooks", { state: "retry", active: "true" })).toBe(1);

    // The backlog of the webhook in retry: both changes (the failed batch holds them), and the
    // age of the older one, which grows while it stays undelivered.
    const retryLabels = { state: "retry", active: "true" };
    expect(sample(retrying, "shophook_undelivered_changes", retryLabels)).toBe(2);
    await expect.poll(async () => sample(await scrape(), "shophook_oldest_undelivered_change_seconds", retryLabels), { timeout: 10_000 }).toBeGreaterThan(0);
    const age1 = sample(await scrape(), "shophook_oldest_undelivered_change_seconds", retryLabels);
    await expect.poll(async () => sample(await scrape(), "shophook_oldest_undelivered_change_seconds", retryLabels), { timeout: 10_000 }).toBeGreaterThan(age1);

    // Recovery: the receiver answers again and the failed batch is retried now.
    failing.behave(answer(200));
    await expect.poll(async () => (await shop.client(Webhook).listDeliveries({ filter: { webhookId: wh.id, status: "failed" } })).deliveries.length, { timeout: 10_000 }).toBe(1);
    const [failedDelivery] = (await shop.client(Webhook).listDeliveries({ filter: { webhookId: wh.id, status: "failed" } })).deliveries;
    expect((await shop.client(Webhook).retryDelivery({ id: failedDelivery!.id })).queued).toBe(true);
    await expect.poll(async () => (await shop.client(Webhook).getWebhook({ id: wh.id })).states?.state, { timeout: 15_000 }).toBe("ok");
    const ok = { state: "ok", active: "true" };
    await expect.poll(async () => sample(await scrape(), "shophook_undelivered_changes", ok), { timeout: 10_000 }).toBe(0);
    const recovered = await scrape();
    expect(sample(recovered, "shophook_oldest_undelivered_change_seconds", ok)).toBe(0);
    // No webhook is in retry any more: its series are gone, not left at their last value.
    expect(sample(recovered, "shophook_webhooks", retryLabels)).toBeNaN();
    expect(sample(recovered, "shophook_undelivered_changes", retryLabels)).toBeNaN();
    expect(sample(recovered, "shophook_oldest_undelivered_change_seconds", retryLabels)).toBeNaN();
    expect(sample(recovered, "shophook_webhooks", ok)).toBe(2);
    // The failed batch again, then (when the first batch held only the first change) the second:
    // every attempt is counted once, with its latency, by what the receiver answered.
    expect(answered.slice(0, 2)).toEqual([500, 200]);
    expect(answered.length).toBe(failing.requests.length);
    const answeredWith = (status: number) => answered.filter((x) => x === status).length;
    expect(count(recovered, "shophook_deliveries_total", FAILED) - count(before, "shophook_deliveries_total", FAILED)).toBe(answeredWith(500));
    expect(count(recovered, "shophook_deliveries_total", SUCCESS) - count(before, "shophook_deliveries_total", SUCCESS)).toBe(answeredWith(200));
    expect(failedCount(recovered) - failedCount(before)).toBe(answeredWith(500));
    const successCount = (text: string) => count(text, "shophook_delivery_attempt_seconds_count", { result: "success" });
    expect(successCount(recovered) - successCount(before)).toBe(answeredWith(200));
  });

  it("feed lag: a stalled feed shows in feed_stall_seconds, and what waits behind it in the backlog's age", { timeout: 60_000 }, async () => {
    const shop = await t.shop();
    const receiver = await startReceiver();
    receivers.push(receiver);
    await shop.client(Webhook).createWebhook({ url: receiver.url, entities: ["customer"] });
    const ok = { state: "ok", active: "true" };

    // A transaction that has written (it has an xid) and stays open holds the feed's horizon
    // (docs/change-feed.md): changes committed after it started are neither served nor delivered
    // until it ends. Kept short: the horizon is the whole cluster's.
    holder = new pg.Client({ connectionString: t.dbUrl });
    await holder.connect();
    await holder.query("BEGIN");
    await holder.query("SELECT pg_current_xact_id()");
    try {
      const c = await shop.client(Customer).createCustomer({ fullName: "held back" });
      await expect.poll(async () => {
        const text = await scrape();
        return { stalled: sample(text, "shophook_feed_stall_seconds") > 0, pending: sample(text, "shophook_undelivered_changes", ok), aged: sample(text, "shophook_oldest_undelivered_change_seconds", ok) > 0 };
      }, { timeout: 10_000 }).toEqual({ stalled: true, pending: 1, aged: true });
      expect(receiver.changeIds()).toEqual([]);
      await holder.query("ROLLBACK");
      await receiver.until((rs) => rs.some((x) => x.body?.changes?.some((ch: { entity_id: string }) => ch.entity_id === c.id)));
    } finally {
      await holder.end();
      holder = undefined;
    }
    await expect.poll(async () => sample(await scrape(), "shophook_undelivered_changes", ok), { timeout: 10_000 }).toBe(0);
  });
});
