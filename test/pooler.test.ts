/**
 * Connection poolers: the API's queries go through a real PgBouncer in transaction mode
 * (SHOPHOOK_API_DATABASE_URL), with 2 server connections for a pool of 10; what needs a session
 * (LISTEN, leases and the heartbeat's backend, pg-boss, the migration lock) stays on DATABASE_URL.
 * DATABASE_URL itself pointed at the transaction pooler is refused at start, saying why.
 */
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { History } from "../gen/shop/change_pb.ts";
import { Product } from "../gen/shop/product_pb.ts";
import { Webhook } from "../gen/shop/webhook_pb.ts";
import { type App, startApp } from "../src/app.ts";
import { createApiKey, createShop } from "../src/auth/api-keys.ts";
import { createLogger } from "../src/logger.ts";
import { shopHandle, testConfig } from "./support/app.ts";
import { createTestDatabase, dropTestDatabase } from "./support/db.ts";
import { type Bouncer, PGBOUNCER, startPgBouncer } from "./support/pgbouncer.ts";
import { type Receiver, startReceiver } from "./support/receiver.ts";

const IN_CI = !["", "false", "0"].includes(process.env.CI ?? "");
const present = fs.existsSync(PGBOUNCER);
if (!present && !IN_CI) console.warn("pooler.test.ts skipped: no PgBouncer here. apt-get install -y pgbouncer (.ci/run does).");

describe.skipIf(!present && !IN_CI)("through PgBouncer in transaction mode", () => {
  let dbUrl: string;
  let bouncer: Bouncer;
  let app: App | undefined;
  let r: Receiver;
  const log = createLogger("silent");
  const config = { webhookAllowHttp: true, webhookAllowPrivate: ["127.0.0.1"], dbPoolSize: 10 };

  beforeAll(async () => {
    dbUrl = await createTestDatabase();
    bouncer = await startPgBouncer(dbUrl, { poolMode: "transaction", poolSize: 2 });
    r = await startReceiver();
  });
  afterAll(async () => {
    await app?.stop();
    await r?.close();
    await bouncer?.stop();
    if (dbUrl) await dropTestDatabase(dbUrl);
  });

  it("refuses DATABASE_URL through a transaction pooler, naming what to do", async () => {
    await expect(startApp(testConfig(bouncer.through(dbUrl), config), log)).rejects.toThrow(
      /^DATABASE_URL reaches PostgreSQL through a transaction-mode pooler .* SHOPHOOK_API_DATABASE_URL/,
    );
  });

  it("serves writes, pages and webhooks with the API's queries through the pooler", async () => {
    app = await startApp(testConfig(dbUrl, { ...config, apiDatabaseUrl: bouncer.through(dbUrl) }), log);
    const s = await createShop(app.pool, "pooled");
    const { key } = await createApiKey(app.pool, s.id, "test");
    const shop = shopHandle(app.url, s.id, s.name, key);
    await shop.client(Webhook).createWebhook({ url: r.url, entities: ["product"] });
    // 200 creates and updates, 20 at a time over 10 client connections and 2 server connections:
    // the prepared statements of the hot paths must not follow a session to another backend.
    const ids: string[] = [];
    for (let round = 0; round < 10; round++) {
      const made = await Promise.all(Array.from({ length: 20 }, (_, i) => shop.client(Product).createProduct({ name: `p${round}-${i}` })));
      ids.push(...made.map((p) => p.id));
      await Promise.all(made.map((p) => shop.client(Product).updateProduct({ id: p.id, note: "updated" })));
    }
    const listed: string[] = [];
    let after = "";
    for (;;) {
      const page = await shop.client(Product).listProducts({ paging: { sort: "updated_at", limit: 33, after } });
      listed.push(...page.products.map((p) => p.id));
      if (page.products.length < 33) break;
      after = page.paging!.next;
    }
    expect(new Set(listed)).toEqual(new Set(ids));
    const changes = await shop.client(History).getChanges({ paging: { limit: 1000 } });
    expect(changes.changes).toHaveLength(400);
    await r.until(() => r.requests.flatMap((x) => x.body.changes).length >= 400, 20_000);
    // The pooler really multiplexed: PostgreSQL saw at most 2 backends from it.
    const { rows } = await app.db.directPool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'shophook api (pooled)'",
    );
    expect(rows[0]!.n).toBeGreaterThan(0);
    expect(rows[0]!.n).toBeLessThanOrEqual(2);
  });
});
