/**
 * The dashboard (docs/dashboard.md): its files over plain HTTP, and end to end in headless
 * Chromium: a failing webhook shows red, Retry turns it green. Screenshots go to .artifacts/.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import http from "node:http";
import { fileURLToPath } from "node:url";
import { type Browser, chromium } from "playwright-core";
import { afterAll, describe, expect, it } from "vitest";
import { Customer } from "../gen/shop/customer_pb.ts";
import { Webhook } from "../gen/shop/webhook_pb.ts";
import { useApp } from "./support/app.ts";
import { type Receiver, startReceiver } from "./support/receiver.ts";

const CHROMIUM = "/usr/bin/chromium";
const HAS_CHROMIUM = existsSync(CHROMIUM);
/** On a bare laptop a missing Chromium skips the browser test; in CI (CI set, and not to false or 0) it fails it. */
const IN_CI = !["", "false", "0"].includes(process.env.CI ?? "");
const ARTIFACTS = fileURLToPath(new URL("../.artifacts/", import.meta.url));
if (!HAS_CHROMIUM && !IN_CI) console.warn(`dashboard: ${CHROMIUM} not found, skipping the browser test; install it with: apt-get install -y chromium`);

const t = useApp({ webhookAllowHttp: true, webhookAllowPrivate: ["127.0.0.1"], sweepIntervalMs: 200 });
let receiver: Receiver | undefined;
let browser: Browser | undefined;
afterAll(async () => {
  await browser?.close();
  await receiver?.close();
});

/** A request with the path sent exactly as written (fetch would resolve `..` first). */
function raw(path: string, method = "GET", headers: Record<string, string> = {}) {
  const { hostname, port } = new URL(t.app.url);
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = http.request({ host: hostname, port, path, method, headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("files", () => {
  it("serves the page with a strict CSP, and the allow-listed modules its import map names", async () => {
    const page = await raw("/dashboard");
    expect(page.status).toBe(200);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(page.headers["cache-control"]).toBe("no-cache");
    expect(page.headers["x-content-type-options"]).toBe("nosniff");
    const csp = page.headers["content-security-policy"]!;
    expect(csp).toMatch(/^default-src 'none'; script-src 'self' 'sha256-[A-Za-z0-9+/]+=*'; style-src 'self'; img-src 'self'; connect-src 'self';/);
    expect(csp).toContain("frame-ancestors 'none'");
    expect(page.body).toContain('<script type="module" src="/dashboard/app.js"></script>');

    // The import map is the only inline script, and the CSP allows exactly it.
    const importMap = /<script type="importmap">(.*?)<\/script>/.exec(page.body)![1]!;
    expect(csp).toContain(`'sha256-${createHash("sha256").update(importMap).digest("base64")}'`);
    const { imports } = JSON.parse(importMap) as { imports: Record<string, string> };
    expect(Object.keys(imports).sort()).toEqual(["htm", "htm/preact", "preact", "preact/hooks"]);
    for (const url of Object.values(imports)) {
      const m = await raw(url);
      expect(m.status, url).toBe(200);
      expect(m.headers["content-type"]).toBe("text/javascript; charset=utf-8");
      expect(m.headers["cache-control"]).toBe("public, max-age=31536000, immutable");
      expect(m.body).toMatch(/\bexport\b/);
    }

    const app = await raw("/dashboard/app.js");
    expect(app.status).toBe(200);
    expect(app.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect((await raw("/dashboard/app.js", "GET", { "if-none-match": app.headers.etag! })).status).toBe(304);
    expect((await raw("/dashboard/style.css")).headers["content-type"]).toBe("text/css; charset=utf-8");
    expect((await raw("/dashboard/", "GET")).body).toBe(page.body);

    const head = await raw("/dashboard", "HEAD");
    expect(head).toMatchObject({ status: 200, body: "" });
    expect(head.headers["content-length"]).toBe(String(Buffer.byteLength(page.body)));
    const post = await raw("/dashboard", "POST");
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe("GET, HEAD");

    // The data is not public: the API still wants the key.
    const anonymous = await fetch(`${t.app.url}/v1/shop.Webhook/GetWebhooks`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(anonymous.status).toBe(401);
  });

  it("serves nothing outside its list: no traversal, no other node_modules file", async () => {
    const page = await raw("/dashboard");
    const preact = (JSON.parse(/<script type="importmap">(.*?)<\/script>/.exec(page.body)![1]!) as { imports: Record<string, string> }).imports.preact!;
    const vendorDir = preact.slice(0, preact.lastIndexOf("/dist/")); // /dashboard/vendor/preact@<version>
    for (const path of [
      "/dashboard/../../package.json",
      "/dashboard/%2e%2e/%2e%2e/package.json",
      "/dashboard/..%2f..%2fpackage.json",
      `${vendorDir}/package.json`,
      `${vendorDir}/../../../../package.json`,
      `${vendorDir}/dist/preact.js`,
      "/dashboard/vendor/pg/package.json",
      "/dashboard/node_modules/preact/package.json",
      "/dashboard/route.ts",
      "/dashboard/public/app.js",
      "/dashboard/index.html/",
    ]) {
      const res = await raw(path);
      expect(res.status, path).toBe(404);
      expect(res.body, path).not.toContain('"name"');
    }
  });
});

describe("in the browser", () => {
  it.skipIf(!HAS_CHROMIUM && !IN_CI)(`a failing webhook shows red, Retry turns it green (needs ${CHROMIUM}: apt-get install -y chromium)`, { timeout: 60_000 }, async () => {
    expect(HAS_CHROMIUM, `CI is set and ${CHROMIUM} is missing: the browser test must run in CI (apt-get install -y chromium)`).toBe(true);
    const shop = await t.shop("Dashboard shop");
    receiver = await startReceiver(() => ({ status: 500, body: "receiver down for maintenance" }));
    const wh = await shop.client(Webhook).createWebhook({ url: receiver.url, entities: ["customer"], description: "CRM sync" });
    await shop.client(Customer).createCustomer({ fullName: "Ada" });
    await receiver.until((rs) => rs.length >= 1);
    await expect.poll(async () => (await shop.client(Webhook).getWebhook({ id: wh.id })).states?.state).toBe("retry");

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    page.on("pageerror", (e) => problems.push(e.message));
    page.on("console", (m) => {
      // 401 from the wrong key below is expected; anything else (CSP, module errors) is not.
      if (m.type() === "error" && !m.text().includes("401")) problems.push(m.text());
    });
    await page.goto(`${t.app.url}/dashboard`);

    // A wrong key is refused with the API's error, and not kept.
    await page.getByLabel("API key").fill("shk_not_a_key");
    await page.getByTestId("sign-in").click();
    await page.getByTestId("error").waitFor();
    expect(await page.getByTestId("error").textContent()).toContain("unauthenticated");
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);

    await page.getByLabel("API key").fill(shop.key);
    await page.getByTestId("sign-in").click();
    const card = page.locator(`[data-testid=webhook][data-webhook-id="${wh.id}"]`);
    const badge = card.getByTestId("state");
    await card.locator("[data-testid=state][data-state=retry]").waitFor();
    expect(await badge.innerText()).toMatch(/retry/i);
    expect(await badge.evaluate((el) => el.ownerDocument.defaultView!.getComputedStyle(el).backgroundColor)).toBe("rgb(207, 34, 46)"); // red
    await card.locator("[data-testid=delivery][data-status=failed]").first().waitFor();
    expect(await card.getByTestId("last-error").textContent()).toContain("500");

    // Health: error, in red (no attempt of the last 24 h succeeded).
    const health = card.getByTestId("health");
    await expect.poll(() => health.innerText()).toMatch(/^error$/i);
    expect(await health.evaluate((el) => el.ownerDocument.defaultView!.getComputedStyle(el).color)).toBe("rgb(207, 34, 46)"); // red
    expect(await card.getByText(/% success over 24 h/).textContent()).toContain("0% success over 24 h");

    // The success-rate chart: one bar per day for 14 days; the day of the attempt drawn all red.
    const chart = card.getByTestId("chart");
    const days = chart.getByTestId("chart-day");
    const attempted = () =>
      days.evaluateAll((els) =>
        els.filter((e) => e.getAttribute("data-total") !== "0").map((e) => ({ total: Number(e.getAttribute("data-total")), success: Number(e.getAttribute("data-success")) })),
      );
    await expect.poll(attempted).toEqual([{ total: 1, success: 0 }]);
    expect(await days.count()).toBe(14);
    const bar = chart.locator("[data-testid=chart-day]:not([data-total='0'])");
    expect(await bar.locator("rect.bar-failed").getAttribute("height")).toBe("64");
    expect(await bar.locator("rect.bar-success").getAttribute("height")).toBe("0");
    expect(await bar.locator("rect.bar-failed").evaluate((el) => el.ownerDocument.defaultView!.getComputedStyle(el).fill)).toBe("rgb(207, 34, 46)");
    expect(await chart.locator("svg").getAttribute("aria-label")).toMatch(/: 0% of 1$/);
    expect(await chart.locator("figcaption").innerText()).toContain("1 attempt, 0% success");
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}dashboard-failing.png`, fullPage: true });

    receiver.behave(() => ({ status: 200, body: "ok" }));
    await card.getByTestId("retry").click();
    await card.locator("[data-testid=state][data-state=ok]").waitFor({ timeout: 15_000 });
    expect(await badge.evaluate((el) => el.ownerDocument.defaultView!.getComputedStyle(el).backgroundColor)).toBe("rgb(26, 127, 55)"); // green
    expect(await card.getByTestId("action-result").textContent()).toContain("Retry queued");
    const deliveries = () =>
      card.getByTestId("delivery").evaluateAll((els) => els.map((e) => `${e.getAttribute("data-status")} ${e.querySelector("[data-testid=delivery-status]")!.textContent}`));
    await expect.poll(deliveries).toEqual(["success 200", "failed 500"]); // newest first

    // Half the attempts succeeded now: health is no longer error but warning (amber), and the
    // chart's bar is half green.
    await expect.poll(() => health.innerText()).toMatch(/^warning$/i);
    expect(await health.evaluate((el) => el.ownerDocument.defaultView!.getComputedStyle(el).color)).toBe("rgb(154, 103, 0)"); // amber
    await expect.poll(attempted).toEqual([{ total: 2, success: 1 }]);
    expect(await bar.locator("rect.bar-success").getAttribute("height")).toBe("32");
    expect(await bar.locator("rect.bar-success").evaluate((el) => el.ownerDocument.defaultView!.getComputedStyle(el).fill)).toBe("rgb(26, 127, 55)");
    expect(await chart.locator("figcaption").innerText()).toContain("2 attempts, 50% success");
    const failed = card.locator("[data-testid=delivery][data-status=failed]");
    await failed.locator("summary").click();
    const detail = await failed.getByTestId("delivery-detail").innerText();
    expect(detail).toContain("receiver down for maintenance");
    expect(detail).toContain("webhook-signature");

    // Test sends a signed request now and says what came back; Disable and Enable pause and resume.
    await card.getByTestId("test").click();
    await expect.poll(() => card.getByTestId("action-result").textContent()).toMatch(/^Test customer\.updated: 200 in \d+ ms/);
    await card.getByTestId("toggle-active").click();
    await card.getByTestId("paused").waitFor();
    expect((await shop.client(Webhook).getWebhook({ id: wh.id })).active).toBe(false);
    await card.getByTestId("toggle-active").click();
    await card.getByTestId("paused").waitFor({ state: "detached" });
    await failed.locator("summary").scrollIntoViewIfNeeded();

    const shot = `${ARTIFACTS}dashboard.png`;
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`dashboard screenshots: ${shot} (and dashboard-failing.png beside it)`);

    await page.getByTestId("sign-out").click();
    await page.getByLabel("API key").waitFor();
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    expect(problems).toEqual([]);
  });
});
