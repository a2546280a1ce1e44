/** The package entry `shophook/client`, used as a consumer would: the example script, run by Node. */
import { spawn } from "node:child_process";
import path from "node:path";
import { expect, it } from "vitest";
import { Order } from "../gen/shop/order_pb.ts";
import { Product } from "../gen/shop/product_pb.ts";
import { Variant } from "../gen/shop/variant_pb.ts";
import { Inventory } from "../gen/shop/inventory_pb.ts";
import { Webhook } from "../gen/shop/webhook_pb.ts";
import { projectRoot } from "../src/config.ts";
import { useApp } from "./support/app.ts";

const t = useApp({ webhookAllowHttp: true, webhookAllowPrivate: ["127.0.0.1"] });

function run(script: string, env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(projectRoot, script)], { cwd: projectRoot, env: { PATH: process.env.PATH ?? "", ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

it("the documented example creates a webhook and pages through ListOrders with shophook/client", async () => {
  const shop = await t.shop();
  const p = await shop.client(Product).createProduct({ name: "Tea" });
  const v = await shop.client(Variant).createVariant({ productId: p.id, retailPrice: 50n });
  await shop.client(Inventory).setInventory({ counts: [{ variantId: v.id, availableQuantity: 100 }] });
  const made = [];
  for (let i = 0; i < 5; i++) made.push(await shop.client(Order).createOrder({ lines: [{ variantId: v.id, quantity: 1 }] }));
  const res = await run("examples/typescript/sync-orders.ts", { SHOPHOOK_URL: t.app.url, SHOPHOOK_KEY: shop.key, WEBHOOK_URL: "http://127.0.0.1:9/hook", PAGE_SIZE: "2" });
  expect(res.code, res.stderr).toBe(0);
  const lines = res.stdout.trim().split("\n").map((l) => JSON.parse(l));
  expect(lines[0].secret_prefix).toBe("whsec_");
  expect((await shop.client(Webhook).getWebhooks({})).webhooks.map((w) => w.id)).toEqual([lines[0].webhook]);
  expect(lines.filter((l) => l.order).map((l) => l.order)).toEqual(made.map((o) => o.id));
  expect(lines.at(-1)).toMatchObject({ orders: 5 });
  expect(lines.find((l) => l.order).total).toBe("50");
});
