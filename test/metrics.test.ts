/** Prometheus metrics over HTTP, and a stalled feed reported instead of hidden. */
import { afterAll, describe, expect, it } from "vitest";
import { Customer } from "../gen/shop/customer_pb.ts";
import { Misc } from "../gen/shop/misc_pb.ts";
import { Webhook } from "../gen/shop/webhook_pb.ts";
import { useApp } from "./support/app.ts";
import { type Receiver, startReceiver } from "./support/receiver.ts";

const t = useApp({ webhookAllowHttp: true, webhookAllowPrivate: ["127.0.0.1"], sweepIntervalMs: 100 });
let r: Receiver;
afterAll(async () => {
  await r?.close();
});

const scrape = async () => {
  const res = await fetch(`${t.app.url}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
};
const value = (text: string, line: RegExp) => Number(text.split("\n").find((l) => line.test(l))?.split(" ").at(-1) ?? NaN);

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
});
