/** Webhook RPCs with the production defaults (https only, no private targets): validation, SSRF, caps, tenancy. */
import { describe, expect, it } from "vitest";
import { Webhook } from "../gen/shop/webhook_pb.ts";
import { HttpSender } from "../src/delivery/http-sender.ts";
import { AddressPolicy } from "../src/delivery/ssrf.ts";
import { useApp } from "./support/app.ts";
import { startFakeDns } from "./support/dns.ts";
import { startReceiver } from "./support/receiver.ts";

const t = useApp({ maxWebhooksPerShop: 3 });
const PUBLIC = "https://93.184.216.34/hook";

describe("CreateWebhook", () => {
  it("answers eTop's shape over curl-style JSON, with the secret only at creation", async () => {
    const shop = await t.shop();
    const res = await shop.post("/v1/shop.Webhook/CreateWebhook", { url: PUBLIC, entities: ["order", "fulfillment"], fields: [], metadata: "" });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      url: PUBLIC,
      entities: ["order", "fulfillment"],
      fields: [],
      metadata: "",
      active: true,
      states: { state: "ok" },
    });
    expect(res.body.id).toMatch(/^\d+$/);
    expect(res.body.secret).toMatch(/^whsec_[A-Za-z0-9+/=]{32}$/);
    const list = await shop.post("/v1/shop.Webhook/GetWebhooks", {});
    expect(list.body.webhooks).toHaveLength(1);
    expect(list.body.webhooks[0].secret).toBe("");
    const one = await shop.post("/v1/shop.Webhook/GetWebhook", { id: res.body.id });
    expect(one.body.secret).toBe("");
  });

  it("refuses bad input with invalid_argument naming the field, and creates nothing", async () => {
    const shop = await t.shop();
    const bad: Array<[unknown, RegExp]> = [
      [{ url: "", entities: ["order"] }, /^url: required/],
      [{ url: "not a url", entities: ["order"] }, /^url: not an absolute URL/],
      [{ url: "ftp://93.184.216.34/", entities: ["order"] }, /^url: must be an https URL/],
      [{ url: "http://93.184.216.34/", entities: ["order"] }, /^url: must be an https URL/],
      [{ url: "https://user:pw@93.184.216.34/", entities: ["order"] }, /^url: must not carry credentials/],
      [{ url: PUBLIC, entities: [] }, /^entities: at least one entity \(or topic\) is required/],
      [{ url: PUBLIC, entities: ["orders"] }, /^entities: unknown entity "orders"/],
      [{ url: PUBLIC, entities: ["order", "order"] }, /^entities: duplicate entity "order"/],
      [{ url: PUBLIC, entities: ["order"], fields: ["nope"] }, /^fields: "nope" is not a field of order/],
      [{ url: PUBLIC, entities: ["order"], topics: ["order.shipped"] }, /^topics\[0\]: unknown action/],
      [{ url: PUBLIC, topics: ["orderz.created"] }, /^topics\[0\]: unknown entity/],
      [{ url: PUBLIC, entities: ["order"], format: "csv" }, /^format: must be one of json, xml, thin/],
      [{ url: PUBLIC, entities: ["order"], rate_limit: -1 }, /^rate_limit: /],
      [{ url: PUBLIC, entities: ["order"], metadata: "x".repeat(4097) }, /^metadata: at most 4096 bytes/],
      [{ url: PUBLIC, entities: ["order"], headers: [{ name: "Bad Name", value: "x" }] }, /^headers\[0\]\.name: not a valid header name/],
      [{ url: PUBLIC, entities: ["order"], headers: [{ name: "Content-Type", value: "x" }] }, /^headers\[0\]\.name: "Content-Type" is reserved/],
      [{ url: PUBLIC, entities: ["order"], headers: [{ name: "Webhook-Signature", value: "x" }] }, /is reserved/],
      [{ url: PUBLIC, entities: ["order"], headers: [{ name: "X-A", value: "a\r\nB: c" }] }, /^headers\[0\]\.value: /],
      [{ url: PUBLIC, entities: ["order"], after: "nope" }, /^after: invalid cursor/],
    ];
    for (const [req, msg] of bad) {
      const res = await shop.post("/v1/shop.Webhook/CreateWebhook", req);
      expect(res.status, JSON.stringify(req).slice(0, 100)).toBe(400);
      expect(res.body.code).toBe("invalid_argument");
      expect(res.body.message).toMatch(msg);
    }
    expect((await shop.post("/v1/shop.Webhook/GetWebhooks", {})).body.webhooks).toEqual([]);
  });

  it("refuses loopback, private, link-local, metadata and IPv6-mapped targets", async () => {
    const shop = await t.shop();
    const targets = [
      "https://127.0.0.1/",
      "https://localhost/",
      "https://2130706433/", // 127.0.0.1 in decimal
      "https://10.1.2.3/",
      "https://172.16.0.1/",
      "https://192.168.1.1/",
      "https://169.254.169.254/latest/meta-data/",
      "https://100.64.0.1/",
      "https://0.0.0.0/",
      "https://224.0.0.1/",
      "https://[::1]/",
      "https://[::ffff:127.0.0.1]/",
      "https://[::ffff:a9fe:a9fe]/",
      "https://[fd00::1]/",
      "https://[fe80::1]/",
      "https://[::127.0.0.1]/", // IPv4-compatible
      "https://[::ffff:0:a00:1]/", // IPv4-translated 10.0.0.1
      "https://[64:ff9b::a9fe:a9fe]/", // NAT64 of the metadata address
      "https://[64:ff9b:1::a00:1]/", // local-use NAT64
      "https://[2002:a9fe:a9fe::1]/", // 6to4 of the metadata address
      "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", // Teredo, client 127.0.0.1
    ];
    for (const url of targets) {
      const res = await shop.post("/v1/shop.Webhook/CreateWebhook", { url, entities: ["order"] });
      expect(res.status, url).toBe(400);
      expect(res.body.message, url).toMatch(/^url: not an allowed destination: /);
    }
  });

  it("refuses a private address at connect time too, so DNS that changes cannot reach inside", async () => {
    const r = await startReceiver();
    try {
      const strict = new HttpSender(new AddressPolicy([]), { timeoutMs: 2000, userAgent: "test" });
      const viaName = await strict.post(`http://localhost:${r.port}/`, {}, "{}");
      expect(viaName.ok).toBe(false);
      expect(viaName.error).toMatch(/refused: localhost resolves to/);
      const viaIp = await strict.post(`http://127.0.0.1:${r.port}/`, {}, "{}");
      expect(viaIp.error).toMatch(/^refused: 127\.0\.0\.1 is not a public address/);
      expect(r.requests).toHaveLength(0);
      const allowed = new HttpSender(new AddressPolicy(["127.0.0.1"]), { timeoutMs: 2000, userAgent: "test" });
      expect((await allowed.post(`http://localhost:${r.port}/`, {}, "{}")).ok).toBe(true);
      await strict.close();
      await allowed.close();
    } finally {
      await r.close();
    }
  });

  it("resolves webhook hosts with a timeout, off the thread pool: a DNS server that hangs fails only its own webhooks", async () => {
    const r = await startReceiver();
    const dns = await startFakeDns({ "inside.test": "127.0.0.1" }, ["hang.test"]);
    try {
      const strict = new HttpSender(new AddressPolicy([], [dns.server]), { timeoutMs: 10_000, userAgent: "test" });
      expect((await strict.post(`http://inside.test:${r.port}/`, {}, "{}")).error).toMatch(/^refused: inside.test resolves to 127\.0\.0\.1 is not a public address/);
      const allowed = new HttpSender(new AddressPolicy(["127.0.0.1"], [dns.server]), { timeoutMs: 10_000, userAgent: "test" });
      // Eight lookups that hang (twice libuv's thread pool) while another webhook's request goes through.
      const started = performance.now();
      const hung = Promise.all(Array.from({ length: 8 }, (_, i) => allowed.post(`http://hang.test:${r.port}/${i}`, {}, "{}")));
      const ok = await allowed.post(`http://inside.test:${r.port}/`, {}, "{}");
      expect(ok.ok).toBe(true);
      expect(performance.now() - started).toBeLessThan(1500);
      const failed = await hung;
      for (const f of failed) expect(f).toMatchObject({ ok: false, status: 0, error: expect.stringMatching(/DNS lookup of hang.test failed \(ETIMEOUT/) });
      expect(performance.now() - started).toBeLessThan(8000);
      expect(r.requests.map((x) => x.path)).toEqual(["/"]);
      await strict.close();
      await allowed.close();
    } finally {
      await r.close();
      await dns.close();
    }
  });

  it("caps webhooks per shop with failed_precondition", async () => {
    const shop = await t.shop();
    for (let i = 0; i < 3; i++) await shop.client(Webhook).createWebhook({ url: PUBLIC, entities: ["order"] });
    const res = await shop.post("/v1/shop.Webhook/CreateWebhook", { url: PUBLIC, entities: ["order"] });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("failed_precondition");
    expect(res.body.message).toBe("a shop may have at most 3 webhooks; delete one first");
  });

  it("never shows or deletes another shop's webhook", async () => {
    const a = await t.shop();
    const b = await t.shop();
    const wh = await a.client(Webhook).createWebhook({ url: PUBLIC, entities: ["order"] });
    for (const path of ["GetWebhook", "DeleteWebhook"]) {
      const res = await b.post(`/v1/shop.Webhook/${path}`, { id: wh.id });
      expect(res.status).toBe(404);
      expect(res.body.code).toBe("not_found");
    }
    expect((await b.post("/v1/shop.Webhook/GetWebhooks", {})).body.webhooks).toEqual([]);
    expect((await a.post("/v1/shop.Webhook/GetWebhooks", {})).body.webhooks.map((w: any) => w.id)).toEqual([wh.id]);
  });
});
