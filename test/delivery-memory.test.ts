/**
 * Delivery's byte budget (SHOPHOOK_DELIVERY_MEMORY_BYTES) and byte-capped reads: many webhooks
 * with a backlog of large changes drain completely and in order, every body within the byte
 * limit, while the bytes held by all turns never pass the budget; the read itself stops at the
 * cap in PostgreSQL.
 */
import { describe, expect, it } from "vitest";
import { Webhook } from "../gen/shop/webhook_pb.ts";
import { ByteBudget } from "../src/delivery/byte-budget.ts";
import * as sql from "../src/db/sql/webhooks.ts";
import { useApp } from "./support/app.ts";
import { useReceivers } from "./support/receiver.ts";

const BATCH_BYTES = 16 * 1024;
const BUDGET = 1024 * 1024;
const t = useApp({ webhookAllowHttp: true, webhookAllowPrivate: ["127.0.0.1"], sweepIntervalMs: 200, batchMaxBytes: BATCH_BYTES, deliveryMemoryBytes: BUDGET });
const receiver = useReceivers();

describe("delivery memory", () => {
  it("30 backlogged webhooks of 4 KB changes drain whole and in order, bodies within the limit, held bytes within the budget", async () => {
    const WEBHOOKS = 30;
    const PRODUCTS = 40;
    const hooks: Array<{ shop: Awaited<ReturnType<typeof t.shop>>; id: string; r: Awaited<ReturnType<typeof receiver>> }> = [];
    for (let i = 0; i < WEBHOOKS; i++) {
      const shop = await t.shop();
      // Slow receivers keep many turns in flight at once.
      const r = await receiver(() => ({ delayMs: 20 }));
      const wh = await shop.client(Webhook).createWebhook({ url: r.url, entities: ["product"] });
      await shop.client(Webhook).setActive({ id: wh.id, active: false });
      hooks.push({ shop, id: wh.id, r });
    }
    const written = new Map<string, string[]>();
    for (const h of hooks) {
      const ids: string[] = [];
      for (let p = 0; p < PRODUCTS; p++) ids.push((await h.shop.post("/v1/shop.Product/CreateProduct", { name: `p${p}`, description: "d".repeat(4000) })).body.id);
      written.set(h.id, ids);
    }
    const budget = t.app.delivery!.deliverer.budget;
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, budget.held)), 1);
    try {
      for (const h of hooks) await h.shop.client(Webhook).setActive({ id: h.id, active: true });
      for (const h of hooks) await h.r.until((rs) => rs.reduce((n, x) => n + x.body.changes.length, 0) >= PRODUCTS, 30_000);
    } finally {
      clearInterval(sampler);
    }
    for (const h of hooks) {
      const got = h.r.requests.flatMap((x) => x.body.changes.map((c: any) => c.entity_id));
      expect(got, `webhook ${h.id}`).toEqual(written.get(h.id));
      // Cut by bytes: 4 KB changes, 16 KiB bodies: several requests, none over the limit.
      expect(h.r.requests.length).toBeGreaterThanOrEqual(PRODUCTS / 4);
      for (const x of h.r.requests) expect(Buffer.byteLength(x.raw)).toBeLessThanOrEqual(BATCH_BYTES);
    }
    expect(peak, "bytes held at the peak").toBeLessThanOrEqual(BUDGET);
    expect(peak, "the budget was used").toBeGreaterThan(0);
    // Everything is given back once the turns end.
    await expect.poll(() => budget.held, { timeout: 5_000 }).toBe(0);
  });

  it("the read stops at the byte cap in PostgreSQL (at least one change, the one that passes the cap included)", async () => {
    const shop = await t.shop();
    const r = await receiver();
    const wh = await shop.client(Webhook).createWebhook({ url: r.url, entities: ["product"] });
    await shop.client(Webhook).setActive({ id: wh.id, active: false });
    for (let p = 0; p < 10; p++) await shop.post("/v1/shop.Product/CreateProduct", { name: `p${p}`, description: "d".repeat(1000) });
    const read = async (maxBytes: number | null) =>
      (await t.app.pool.query<sql.BatchChangeRow>(sql.nextChanges([{ webhookId: wh.id, shopId: shop.id, fromXid: "0", fromSeq: "0", endXid: null, endSeq: null, limit: 1000, maxBytes }]))).rows;
    const all = await read(null);
    expect(all).toHaveLength(10);
    const one = all[0]!.bytes;
    expect(one).toBeGreaterThan(1000);
    expect(await read(1)).toHaveLength(1);
    expect(await read(one)).toHaveLength(1);
    expect(await read(one + 1)).toHaveLength(2);
    expect(await read(3 * one + 1)).toHaveLength(4);
  });
});

describe("ByteBudget", () => {
  it("grants in order, waits when spent, frees on shrink and release, never deadlocks a read-ahead", async () => {
    const b = new ByteBudget(100);
    const a = await b.reserve(60);
    expect(b.tryReserve(50)).toBeUndefined();
    let second: { release(): void } | undefined;
    const waiting = b.reserve(50).then((h) => (second = h));
    await new Promise((r) => setTimeout(r, 5));
    expect(second).toBeUndefined();
    // Nobody jumps the queue, even with room for it.
    expect(b.tryReserve(10)).toBeUndefined();
    // Shrinking to what was read frees room: the waiter gets it.
    a.resize(40);
    await waiting;
    expect(b.held).toBe(90);
    // A reservation only shrinks.
    a.resize(80);
    expect(b.held).toBe(90);
    a.release();
    a.release();
    second!.release();
    expect(b.held).toBe(0);
    // More than the whole budget is clamped to it.
    const big = await b.reserve(1_000);
    expect(b.held).toBe(100);
    big.release();
  });
});
