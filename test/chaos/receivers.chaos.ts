/**
 * Chaos 3: receivers that fail in every way (500, timeout, slow body, reset, refused, 429 with
 * Retry-After, 410, an invalid TLS certificate), then recover. States and the retry schedule
 * are as specified (on a hand-moved clock), and nothing is lost: each webhook ends with every
 * change, in order.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { afterAll, expect, it } from "vitest";
import { Customer } from "../../gen/shop/customer_pb.ts";
import { Webhook } from "../../gen/shop/webhook_pb.ts";
import { useApp } from "../support/app.ts";
import { ManualClock } from "../support/clock.ts";
import { rounds, sleep } from "./harness.ts";

const clock = new ManualClock();
const t = useApp(
  { webhookAllowHttp: true, webhookAllowPrivate: ["127.0.0.1"], deliveryTimeoutMs: 800, sweepIntervalMs: 100, retryAfterMaxSeconds: 3600 },
  { clock },
);
const servers: net.Server[] = [];
afterAll(() => {
  for (const s of servers) s.close();
});

type Mode = "500" | "hang" | "slow-body" | "reset" | "429" | "410" | "ok";

/** A receiver whose failure mode can be switched to "ok". Records the changes it accepted. */
async function failing(mode: Mode, tls?: { key: string; cert: string }) {
  const state = { mode, accepted: [] as string[] };
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      switch (state.mode) {
        case "500":
          res.writeHead(500).end("internal");
          return;
        case "hang":
          return;
        case "slow-body":
          res.writeHead(200, { "content-type": "text/plain" });
          res.write("o"); // then nothing: the body never ends
          return;
        case "reset":
          req.socket.destroy();
          return;
        case "429":
          res.writeHead(429, { "retry-after": "5" }).end("slow down");
          return;
        case "410":
          res.writeHead(410).end("gone");
          return;
        default: {
          const body = JSON.parse(Buffer.concat(chunks).toString()) as { changes: Array<{ id: string }> };
          state.accepted.push(...body.changes.map((c) => c.id));
          res.writeHead(200).end("ok");
        }
      }
    });
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  servers.push(server);
  const port = (server.address() as net.AddressInfo).port;
  return { state, url: `${tls ? "https" : "http"}://127.0.0.1:${port}/hook`, port };
}

function selfSigned() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shophook-tls-"));
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", `${dir}/key.pem`, "-out", `${dir}/cert.pem`, "-days", "1", "-subj", "/CN=localhost"], { stdio: "ignore" });
  return { key: fs.readFileSync(`${dir}/key.pem`, "utf8"), cert: fs.readFileSync(`${dir}/cert.pem`, "utf8") };
}

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

it.each(rounds())("round %i: every kind of failing receiver, then recovery: states, schedule, nothing lost", async () => {
  const shop = await t.shop();
  const hooks = shop.client(Webhook);
  const tlsServer = await failing("ok", selfSigned());
  const refusedPort = await closedPort();
  const kinds = {
    "500": await failing("500"),
    hang: await failing("hang"),
    "slow-body": await failing("slow-body"),
    reset: await failing("reset"),
    "429": await failing("429"),
    "410": await failing("410"),
  };
  const created: Record<string, string> = {};
  for (const [kind, r] of Object.entries(kinds)) created[kind] = (await hooks.createWebhook({ url: r.url, entities: ["customer"] })).id;
  created.refused = (await hooks.createWebhook({ url: `http://127.0.0.1:${refusedPort}/hook`, entities: ["customer"] })).id;
  created.tls = (await hooks.createWebhook({ url: tlsServer.url, entities: ["customer"] })).id;

  const written: string[] = [];
  for (let i = 0; i < 20; i++) written.push((await shop.client(Customer).createCustomer({ fullName: `c${i}` })).id);
  const state = async (kind: string) => (await hooks.getWebhook({ id: created[kind]! }))!;
  const expected: Record<string, RegExp> = {
    "500": /^unexpected status: 500$/,
    hang: /^timeout after 800 ms$/,
    "slow-body": /^timeout after 800 ms$/,
    reset: /^connection reset$/,
    "429": /^unexpected status: 429$/,
    refused: /^connection refused$/,
    tls: /^tls error: /,
  };
  for (const [kind, re] of Object.entries(expected)) {
    await expect.poll(async () => (await state(kind)).states?.lastError?.error ?? "", { timeout: 10_000 }).toMatch(re);
    const s = await state(kind);
    expect(s.states?.state, kind).toBe("retry");
    const delay = timestampMs(s.states!.nextAttemptAt!) - clock.now().getTime();
    if (kind === "429") expect(delay, "429 Retry-After: 5").toBeLessThanOrEqual(5_000);
    else {
      expect(delay, `${kind}: first retry 30 s ± 25%`).toBeGreaterThanOrEqual(22_000);
      expect(delay, `${kind}: first retry 30 s ± 25%`).toBeLessThanOrEqual(38_000);
    }
    expect(s.health?.status, kind).toBe("error"); // 0% success
  }
  await expect.poll(async () => (await state("410")).active).toBe(false);
  expect((await state("410")).disabledReason).toMatch(/410 Gone/);

  // The second failure waits about twice as long (60 s ± 25%).
  clock.advance(40_000);
  await expect.poll(async () => (await state("500")).states?.lastError?.retried, { timeout: 10_000 }).toBe(2);
  const second = timestampMs((await state("500")).states!.nextAttemptAt!) - clock.now().getTime();
  expect(second).toBeGreaterThanOrEqual(44_000);
  expect(second).toBeLessThanOrEqual(76_000);

  // Recovery: every receiver answers, the refused port opens, the TLS webhook moves to a valid URL, the 410 one is re-enabled.
  for (const r of Object.values(kinds)) r.state.mode = "ok";
  const refusedNow = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      refusedAccepted.push(...(JSON.parse(Buffer.concat(chunks).toString()) as { changes: Array<{ id: string }> }).changes.map((c) => c.id));
      res.end("ok");
    });
  });
  const refusedAccepted: string[] = [];
  await new Promise<void>((r) => refusedNow.listen(refusedPort, "127.0.0.1", r));
  servers.push(refusedNow);
  const tlsRecovered = await failing("ok");
  await hooks.updateWebhook({ id: created.tls!, url: tlsRecovered.url });
  await hooks.setActive({ id: created["410"]!, active: true });
  for (let i = 0; i < 40; i++) {
    clock.advance(60_000);
    await sleep(250);
    const states = await Promise.all(Object.keys(created).map(async (k) => (await state(k)).states?.state));
    if (states.every((s) => s === "ok")) break;
  }
  const received: Record<string, string[]> = { ...Object.fromEntries(Object.entries(kinds).map(([k, r]) => [k, r.state.accepted])), refused: refusedAccepted, tls: tlsRecovered.state.accepted };
  const changeIds = (await shop.post("/v1/shop.History/GetChanges", { paging: { limit: 1000 } })).body.changes.map((c: any) => c.id);
  for (const [kind, got] of Object.entries(received)) {
    expect((await state(kind)).states?.state, kind).toBe("ok");
    expect([...new Set(got)], `${kind}: every change, in order`).toEqual(changeIds);
  }
  expect(changeIds).toHaveLength(written.length);
});
