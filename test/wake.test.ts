/**
 * A commit wakes its webhooks directly: with the safety-net sweep out of the way (10 minutes),
 * a write is delivered at once, to webhooks subscribed by entity and by topic alike.
 */
import { afterAll, expect, it } from "vitest";
import { Customer } from "../gen/shop/customer_pb.ts";
import { Webhook } from "../gen/shop/webhook_pb.ts";
import { useApp } from "./support/app.ts";
import { type Receiver, startReceiver } from "./support/receiver.ts";

const t = useApp({ webhookAllowHttp: true, webhookAllowPrivate: ["127.0.0.1"], sweepIntervalMs: 600_000 });
const receivers: Receiver[] = [];
afterAll(async () => {
  for (const r of receivers) await r.close();
});

it("delivers a write at once to entity and topic subscribers, without the sweep", async () => {
  const shop = await t.shop();
  const byEntity = await startReceiver();
  const byTopic = await startReceiver();
  receivers.push(byEntity, byTopic);
  await shop.client(Webhook).createWebhook({ url: byEntity.url, entities: ["customer"] });
  await shop.client(Webhook).createWebhook({ url: byTopic.url, topics: ["customer.created"] });
  const started = performance.now();
  const c = await shop.client(Customer).createCustomer({ fullName: "woken" });
  await Promise.all([byEntity, byTopic].map((r) => r.until(() => r.requests.length >= 1)));
  // Well under the sweep's 10 minutes; in practice a few milliseconds.
  expect(performance.now() - started).toBeLessThan(5_000);
  for (const r of [byEntity, byTopic]) expect(r.requests[0]!.body.changes.map((x: any) => x.entity_id)).toEqual([c.id]);
});
