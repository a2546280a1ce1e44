/** Webhook delivery through the real server, a real Postgres and a real local HTTP receiver. */
import { Webhook as StandardWebhook } from "standardwebhooks";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { Customer } from "../gen/shop/customer_pb.ts";
import { Product } from "../gen/shop/product_pb.ts";
import { Webhook } from "../gen/shop/webhook_pb.ts";
import { type TestShop, useApp } from "./support/app.ts";
import { ManualClock } from "./support/clock.ts";
import { useReceivers } from "./support/receiver.ts";

const clock = new ManualClock();
const t = useApp(
  { webhookAllowHttp: true, webhookAllowPrivate: ["127.0.0.1"], deliveryTimeoutMs: 1500, sweepIntervalMs: 200, retryBaseSeconds: 30, retryWindowHours: 72 },
  { clock },
);
const receiver = useReceivers();

async function hook(shop: TestShop, url: string, entities = ["product", "customer", "order"]) {
  return shop.client(Webhook).createWebhook({ url, entities });
}

describe("delivery", () => {
  it("delivers a change written over the API, signed (verified by the standardwebhooks library), in eTop's shape", async () => {
    const shop = await t.shop();
    const r = await receiver();
    const wh = await hook(shop, r.url);
    expect(wh.secret).toMatch(/^whsec_/);
    expect(wh.states?.state).toBe("ok");
    const created = await shop.post("/v1/shop.Product/CreateProduct", { name: "Signed" });
    await r.until((rs) => rs.length >= 1);
    const req = r.requests[0]!;
    const verified = new StandardWebhook(wh.secret).verify(req.raw, {
      "webhook-id": req.headers["webhook-id"] as string,
      "webhook-timestamp": req.headers["webhook-timestamp"] as string,
      "webhook-signature": req.headers["webhook-signature"] as string,
    }) as any;
    expect(verified.id).toBe(req.headers["webhook-id"]);
    expect(req.headers["content-type"]).toBe("application/json");
    expect(req.headers["user-agent"]).toMatch(/^shophook\//);
    expect(req.headers["x-shophook-event"]).toBe("product");
    expect(req.body.changes).toHaveLength(1);
    const c = req.body.changes[0];
    expect(c).toMatchObject({ change_type: "create", entity: "product", entity_id: created.body.id });
    const { variants: _v, ...product } = created.body;
    expect(c.latest).toEqual({ product });
    expect(c.time).toBe(created.body.updated_at);
    // the same change as GetChanges serves
    const feed = await shop.post("/v1/shop.History/GetChanges", {});
    expect(feed.body.changes[0]).toEqual(c);
    // a tampered body does not verify
    expect(() =>
      new StandardWebhook(wh.secret).verify(req.raw.replace("Signed", "Forged"), {
        "webhook-id": req.headers["webhook-id"] as string,
        "webhook-timestamp": req.headers["webhook-timestamp"] as string,
        "webhook-signature": req.headers["webhook-signature"] as string,
      }),
    ).toThrow();
    await expect.poll(async () => (await shop.client(Webhook).getWebhook({ id: wh.id })).states?.lastSentAt).toBeDefined();
  });

  it("only delivers the webhook's entities, only changes after its creation, and only its shop's", async () => {
    const shop = await t.shop();
    const other = await t.shop();
    await shop.client(Product).createProduct({ name: "before" });
    const r = await receiver();
    await hook(shop, r.url, ["customer"]);
    await shop.client(Product).createProduct({ name: "not subscribed" });
    await other.client(Customer).createCustomer({ fullName: "another shop" });
    const c = await shop.client(Customer).createCustomer({ fullName: "mine" });
    await r.until((rs) => rs.some((x) => x.body.changes.some((ch: any) => ch.entity_id === c.id)));
    expect(r.requests.flatMap((x) => x.body.changes.map((ch: any) => ch.entity))).toEqual(["customer"]);
  });

  it("batches a burst of thousands of changes, in change-log order, at most 1000 per request", async () => {
    const shop = await t.shop();
    const r = await receiver();
    await hook(shop, r.url, ["customer"]);
    const c = shop.client(Customer);
    const customers = await Promise.all(Array.from({ length: 50 }, (_, i) => c.createCustomer({ fullName: `c${i}` })));
    const N = 2500;
    for (let i = 0; i < N; i += 50) await Promise.all(customers.map((x, j) => c.updateCustomer({ id: x.id, note: `n${i + j}` })));
    const total = N + customers.length;
    await r.until(() => new Set(r.changeIds()).size >= total, 30_000);
    const sizes = r.requests.map((x) => x.body.changes.length);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(1000);
    expect(r.requests.length).toBeLessThan(total); // batched
    // Order: exactly the change log's order (GetChanges), each change once.
    const feed: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await shop.post("/v1/shop.History/GetChanges", { paging: { after, limit: 1000 } });
      after = page.body.paging.next;
      if (!page.body.changes.length) break;
      feed.push(...page.body.changes.map((x: any) => x.id));
    }
    expect(r.changeIds()).toEqual(feed);
    // The receiver's copy ends at the database's state.
    const copy = new Map<string, unknown>();
    for (const req of r.requests) for (const ch of req.body.changes) copy.set(ch.entity_id, ch.latest.customer);
    for (const x of customers) expect(copy.get(x.id)).toEqual((await shop.post("/v1/shop.Customer/GetCustomer", { id: x.id })).body);
  });

  it("keeps webhooks apart: an endpoint that hangs does not delay another", async () => {
    const shop = await t.shop();
    const slow = await receiver(() => "hang");
    const fast = await receiver();
    const slowHook = await hook(shop, slow.url, ["product"]);
    await hook(shop, fast.url, ["product"]);
    for (let i = 0; i < 5; i++) await shop.client(Product).createProduct({ name: `p${i}` });
    await fast.until(() => fast.changeIds().length >= 5, 5_000);
    await slow.until((rs) => rs.length >= 1, 5_000);
    // Everything reached the fast receiver while the hanging request was still open: its first
    // attempt has not even timed out (1.5 s) yet.
    expect(slow.requests.length).toBe(1);
    expect((await shop.client(Webhook).getWebhook({ id: slowHook.id })).states?.lastError).toBeUndefined();
  });

  it("goes to retry with last_error, recovers to ok, and resends the same batch under the same callback id", async () => {
    const shop = await t.shop();
    const r = await receiver(() => ({ status: 500, body: "database down" }));
    const wh = await hook(shop, r.url, ["product"]);
    await shop.client(Product).createProduct({ name: "x" });
    await r.until((rs) => rs.length >= 1);
    const state = async () => (await shop.client(Webhook).getWebhook({ id: wh.id })).states!;
    await expect.poll(async () => (await state()).state).toBe("retry");
    const s1 = await state();
    expect(s1.lastError).toMatchObject({ error: "unexpected status: 500", respStatus: 500, respBody: "database down", retried: 1 });
    const delay = timestampMs(s1.nextAttemptAt!) - clock.now().getTime();
    expect(delay).toBeGreaterThanOrEqual(22_000); // 30 s ± 25%
    expect(delay).toBeLessThanOrEqual(38_000);

    // Not before it is due, even when woken.
    await shop.client(Product).createProduct({ name: "y" });
    await new Promise((res) => setTimeout(res, 500));
    expect(r.requests).toHaveLength(1);

    clock.advance(40_000);
    await r.until((rs) => rs.length >= 2);
    await expect.poll(async () => (await state()).lastError?.retried).toBe(2);
    const s2 = await state();
    expect(timestampMs(s2.nextAttemptAt!) - clock.now().getTime()).toBeGreaterThanOrEqual(45_000); // 60 s ± 25%

    r.behave(() => ({ status: 200, body: "ok" }));
    clock.advance(80_000);
    await r.until((rs) => rs.length >= 4); // the failed batch again, then the newer change
    await expect.poll(async () => (await state()).state).toBe("ok");
    const ids = r.requests.map((x) => x.body.id);
    expect(ids[0]).toBe(ids[1]);
    expect(ids[1]).toBe(ids[2]);
    expect(r.requests[2]!.raw).toBe(r.requests[0]!.raw); // same changes
    expect(ids[3]).not.toBe(ids[0]);
    expect(r.requests[3]!.body.changes.map((c: any) => c.latest.product.name)).toEqual(["y"]);
  });

  it("stops after failing for the retry window, and delivers nothing more", async () => {
    const shop = await t.shop();
    const r = await receiver(() => "reset");
    const wh = await hook(shop, r.url, ["product"]);
    await shop.client(Product).createProduct({ name: "x" });
    const state = async () => (await shop.client(Webhook).getWebhook({ id: wh.id })).states!;
    for (let i = 0; i < 100 && (await state()).state !== "stop"; i++) {
      await r.until((rs) => rs.length >= i + 1);
      await expect.poll(async () => (await state()).lastError?.retried ?? 0).toBeGreaterThanOrEqual(i + 1);
      clock.advance(5 * 3600_000);
    }
    const s = await state();
    expect(s.state).toBe("stop");
    expect(s.lastError?.error).toBe("connection reset");
    const sent = r.requests.length;
    await shop.client(Product).createProduct({ name: "after stop" });
    clock.advance(24 * 3600_000);
    await new Promise((res) => setTimeout(res, 600));
    expect(r.requests.length).toBe(sent);
  });

  it("stops delivering when the webhook is deleted", async () => {
    const shop = await t.shop();
    const r = await receiver();
    const wh = await hook(shop, r.url, ["product"]);
    const keep = await hook(shop, (await receiver()).url, ["product"]);
    await shop.client(Product).createProduct({ name: "1" });
    await r.until((rs) => rs.length >= 1);
    const res = await shop.post("/v1/shop.Webhook/DeleteWebhook", { id: wh.id });
    expect(res.body.webhooks.map((w: any) => w.id)).toEqual([keep.id]);
    await shop.client(Product).createProduct({ name: "2" });
    await new Promise((res) => setTimeout(res, 500));
    expect(r.requests).toHaveLength(1);
  });

  it("records failures of every kind: timeout, refused, redirect", async () => {
    const shop = await t.shop();
    const cases: Array<[string, string]> = [];
    const hang = await receiver(() => "hang");
    cases.push([hang.url, "timeout after 1500 ms"]);
    cases.push(["http://127.0.0.1:1/hook", "connection refused"]);
    const redirect = await receiver(() => ({ status: 302, headers: { location: "http://127.0.0.1:1/" } }));
    cases.push([redirect.url, "unexpected status: 302"]);
    const hooks: Array<{ id: string }> = [];
    for (const [url] of cases) hooks.push(await hook(shop, url, ["product"]));
    await shop.client(Product).createProduct({ name: "x" });
    for (const [i, [, error]] of cases.entries()) {
      await expect.poll(async () => (await shop.client(Webhook).getWebhook({ id: hooks[i]!.id })).states?.lastError?.error, { timeout: 5_000 }).toBe(error);
    }
  });
});
