/**
 * Read replicas: List* and GetChanges served from a real streaming standby
 * (SHOPHOOK_READ_DATABASE_URL) stay gap-free under concurrent writers on the primary (the horizon
 * is taken on the standby), cursors move between primary and standby, and
 * `x-shophook-consistency: strong` reads one's own writes from the primary.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { History } from "../gen/shop/change_pb.ts";
import { Product } from "../gen/shop/product_pb.ts";
import { type App, startApp } from "../src/app.ts";
import { createApiKey, createShop } from "../src/auth/api-keys.ts";
import { createLogger } from "../src/logger.ts";
import { shopHandle, type TestShop, testConfig } from "./support/app.ts";
import { postgresBin, type ReplicaPair, startReplicaPair } from "./support/replica.ts";

const IN_CI = !["", "false", "0"].includes(process.env.CI ?? "");
const bin = postgresBin();
if (!bin && !IN_CI) console.warn("replica.test.ts skipped: no PostgreSQL binaries with pg_basebackup here. apt-get install -y postgresql (.ci/run does).");

describe.skipIf(!bin && !IN_CI)("reads from a streaming standby", () => {
  let pair: ReplicaPair;
  let app: App;
  let shop: TestShop;

  beforeAll(async () => {
    pair = await startReplicaPair(bin!);
    app = await startApp(testConfig(pair.primaryUrl, { readDatabaseUrl: pair.standbyUrl }), createLogger("silent"));
    const s = await createShop(app.pool, "replicated");
    const { key } = await createApiKey(app.pool, s.id, "test");
    shop = shopHandle(app.url, s.id, s.name, key);
  }, 60_000);
  afterAll(async () => {
    await app?.stop();
    await pair?.stop();
  });

  it("a poller on the standby ends with exactly the primary's rows and changes while writers run on the primary", async () => {
    const products = shop.client(Product);
    let writing = true;
    const writers = Array.from({ length: 4 }, async (_, w) => {
      const mine: string[] = [];
      for (let i = 0; writing; i++) {
        if (mine.length && i % 3 === 0) await products.updateProduct({ id: mine[i % mine.length]!, note: `n${i}` });
        else mine.push((await products.createProduct({ name: `w${w}-${i}` })).id);
      }
    });
    // The poller: ListProducts by updated_at and GetChanges, both from the standby, keeping their cursors.
    const copy = new Map<string, string>();
    const seen = new Set<string>();
    let listAfter = "";
    let changesAfter = "";
    const poll = async () => {
      for (;;) {
        const page = await products.listProducts({ paging: { sort: "updated_at", limit: 50, after: listAfter } });
        for (const p of page.products) copy.set(p.id, p.note);
        listAfter = page.paging!.next;
        const ch = await shop.client(History).getChanges({ paging: { limit: 100, after: changesAfter } });
        for (const c of ch.changes) seen.add(c.id);
        changesAfter = ch.paging!.next;
        if (page.products.length < 50 && ch.changes.length < 100) return;
      }
    };
    const until = Date.now() + 4_000;
    while (Date.now() < until) await poll();
    writing = false;
    await Promise.all(writers);
    await pair.caughtUp();
    await new Promise((r) => setTimeout(r, 200));
    await pair.caughtUp();
    await poll();
    const { rows } = await app.pool.query<{ id: string; note: string }>("SELECT id::text, note FROM products WHERE shop_id = $1", [shop.id]);
    expect(rows.length).toBeGreaterThan(50);
    expect(new Map(rows.map((r) => [r.id, r.note]))).toEqual(copy);
    const { rows: all } = await app.pool.query<{ id: string }>("SELECT id::text FROM changes WHERE shop_id = $1", [shop.id]);
    expect(new Set(all.map((r) => r.id))).toEqual(seen);
    // The pages were the standby's.
    const { rows: readers } = await app.readPool.query<{ n: number; recovery: boolean }>(
      "SELECT count(*)::int AS n, pg_is_in_recovery() AS recovery FROM pg_stat_activity WHERE application_name = 'shophook reads'",
    );
    expect(readers[0]).toMatchObject({ recovery: true });
    expect(readers[0]!.n).toBeGreaterThan(0);
  });

  it("moves a cursor between primary and standby; x-shophook-consistency: strong reads one's own write at once", async () => {
    const strong = { "x-shophook-consistency": "strong" };
    // To the end of the feed, on the primary.
    let first = await shop.post("/v1/shop.History/GetChanges", { paging: { limit: 1000 } }, strong);
    while (first.body.changes?.length === 1000) first = await shop.post("/v1/shop.History/GetChanges", { paging: { limit: 1000, after: first.body.paging.next } }, strong);
    const made = await shop.client(Product).createProduct({ name: "mine" });
    // From the primary, with the primary's cursor: the write is there at once.
    const mine = await shop.post("/v1/shop.History/GetChanges", { paging: { limit: 1000, after: first.body.paging.next } }, strong);
    expect(mine.body.changes.map((c: any) => c.entity_id)).toEqual([made.id]);
    // The primary's cursor on the standby: the same change, once replayed; then the standby's cursor back on the primary.
    await pair.caughtUp();
    const replica = await shop.post("/v1/shop.History/GetChanges", { paging: { limit: 1000, after: first.body.paging.next } });
    expect(replica.body.changes.map((c: any) => c.entity_id)).toEqual([made.id]);
    const back = await shop.post("/v1/shop.History/GetChanges", { paging: { limit: 1000, after: replica.body.paging.next } }, strong);
    expect(back.body.changes ?? []).toEqual([]);
    const list = await shop.post("/v1/shop.Product/ListProducts", { filter: { id: [made.id] }, paging: { sort: "updated_at", limit: 10 } }, strong);
    expect(list.body.products.map((p: any) => p.id)).toEqual([made.id]);
  });
});
