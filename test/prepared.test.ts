/**
 * Hot queries are prepared statements (src/db/sql/query.ts). A prepared statement that returns
 * `*` breaks once a migration adds a column while the service runs ("cached plan must not change
 * result type"), which is what a rolling upgrade does to the instances still on the old version.
 * So: warm every prepared statement up, add a column to every table they read, and use them again.
 */
import { describe, expect, it } from "vitest";
import { Customer } from "../gen/shop/customer_pb.ts";
import { Product } from "../gen/shop/product_pb.ts";
import { Webhook } from "../gen/shop/webhook_pb.ts";
import { useApp } from "./support/app.ts";
import { startReceiver } from "./support/receiver.ts";

const t = useApp({ webhookAllowHttp: true, webhookAllowPrivate: ["127.0.0.1"] });

describe("prepared statements", () => {
  it("keep working after a migration adds columns to the tables they read", async () => {
    const shop = await t.shop();
    const r = await startReceiver();
    try {
      await shop.client(Webhook).createWebhook({ url: r.url, entities: ["customer"] });
      const use = async (round: number) => {
        // Past PostgreSQL's five custom plans, so generic plans are cached too.
        for (let i = 0; i < 7; i++) {
          const p = await shop.client(Product).createProduct({ name: `p${round}.${i}` });
          await shop.client(Product).updateProduct({ id: p.id, name: `q${round}.${i}` });
          await shop.client(Product).getProduct({ id: p.id });
          await shop.client(Product).listProducts({ paging: { sort: "updated_at", limit: 5 } });
          await shop.client(Customer).createCustomer({ fullName: `c${round}.${i}` });
          await shop.post("/v1/shop.History/GetChanges", { paging: { limit: 5 } });
        }
        await r.until(() => r.changeIds().length >= 7 * (round + 1));
      };
      await use(0);
      for (const table of ["products", "customers", "changes", "webhooks", "deliveries", "api_keys", "shops"]) {
        await t.app.pool.query(`ALTER TABLE ${table} ADD COLUMN added_later text`);
      }
      await use(1);
      expect(new Set(r.changeIds()).size).toBe(14);
    } finally {
      await r.close();
    }
  });
});
