/**
 * Valid calls while the port is abused. `shophook serve` in its own process, default limits;
 * a valid client makes CurrentAccount calls (Connect JSON over HTTP/1.1 keep-alive, and gRPC
 * over one HTTP/2 session), 4 at a time, in two phases of the same run:
 *   1. quiet: nothing else;
 *   2. abused, all at once: IDLE connections that send nothing (reopened as the headers timeout
 *      closes them), SLOW slowloris connections (a header byte a second), and rapid reset: HTTP/2
 *      sessions opening and cancelling streams as fast as they can, a new session whenever the
 *      server closes one.
 * Figure: the valid calls' p99 in phase 2 (target <= 250 ms), beside phase 1's.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx node bench/abuse.ts
 */
import http2 from "node:http2";
import net from "node:net";
import { Agent, request } from "undici";
import { createApiKey, createShop } from "../src/auth/api-keys.ts";
import { createPool } from "../src/db/pool.ts";
import { startService } from "../test/support/process.ts";
import { benchDatabase, machine, ms, report, rssMiB, sleep, summarize, table } from "./support.ts";

const IDLE = Number(process.env.IDLE ?? 2000);
const SLOW = Number(process.env.SLOW ?? 200);
const SECONDS = Number(process.env.SECONDS ?? 15);

const db = await benchDatabase();
const service = await startService({ DATABASE_URL: db.url, LOG_LEVEL: "info" }); // info: the default, and the "listening" line startService waits for
const pool = createPool(db.url, 2);
const shop = await createShop(pool, "abuse");
const key = (await createApiKey(pool, shop.id)).key;
await pool.end();
const { hostname, port } = new URL(service.url);

// --- the valid client ---------------------------------------------------------------------------
const agent = new Agent({ connections: 4, keepAliveTimeout: 1_000 });
let grpc = http2.connect(service.url);
grpc.on("error", () => undefined);

async function jsonCall(): Promise<number> {
  const t0 = performance.now();
  const res = await request(`${service.url}/v1/shop.Misc/CurrentAccount`, { method: "POST", dispatcher: agent, headers: { "content-type": "application/json", authorization: `Bearer ${key}` }, body: "{}" });
  await res.body.dump();
  if (res.statusCode !== 200) throw new Error(`CurrentAccount: HTTP ${res.statusCode}`);
  return performance.now() - t0;
}

function grpcCall(): Promise<number> {
  if (grpc.closed || grpc.destroyed) {
    grpc = http2.connect(service.url);
    grpc.on("error", () => undefined);
  }
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const s = grpc.request({ ":method": "POST", ":path": "/shop.Misc/CurrentAccount", "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${key}` });
    let status: string | undefined;
    s.on("response", (h) => h["grpc-status"] !== undefined && (status = String(h["grpc-status"])));
    s.on("trailers", (h) => (status = String(h["grpc-status"])));
    s.on("error", reject);
    s.resume();
    s.on("close", () => (status === "0" ? resolve(performance.now() - t0) : reject(new Error(`gRPC CurrentAccount: status ${status}`))));
    s.end(Buffer.alloc(5));
  });
}

async function measure(seconds: number) {
  const lat: { json: number[]; grpc: number[] } = { json: [], grpc: [] };
  let errors = 0;
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: 4 }, async (_, w) => {
      while (performance.now() < until) {
        try {
          if (w % 2) lat.grpc.push(await grpcCall());
          else lat.json.push(await jsonCall());
        } catch {
          errors++;
        }
      }
    }),
  );
  return { json: summarize(lat.json), grpc: summarize(lat.grpc), all: summarize([...lat.json, ...lat.grpc]), errors };
}

// --- the abuse ------------------------------------------------------------------------------------
let abusing = false;
const stats = { idleOpened: 0, slowOpened: 0, resetSessions: 0, resetStreams: 0 };

function holdIdle() {
  if (!abusing) return;
  const s = net.connect(Number(port), hostname);
  stats.idleOpened++;
  s.on("error", () => undefined);
  s.on("close", () => setTimeout(holdIdle, 10));
}

function slowloris() {
  if (!abusing) return;
  const s = net.connect(Number(port), hostname);
  stats.slowOpened++;
  let timer: NodeJS.Timeout | undefined;
  s.on("connect", () => {
    s.write("POST /v1/shop.Misc/CurrentAccount HTTP/1.1\r\nHost: x\r\n");
    timer = setInterval(() => s.writable && s.write("x"), 1000);
  });
  s.on("error", () => undefined);
  s.on("close", () => {
    clearInterval(timer);
    setTimeout(slowloris, 10);
  });
}

async function rapidReset() {
  while (abusing) {
    const session = http2.connect(service.url);
    stats.resetSessions++;
    session.on("error", () => undefined);
    await new Promise((r) => {
      session.once("remoteSettings", r);
      session.once("close", r);
    });
    for (let i = 0; i < 5_000 && abusing && !session.closed && !session.destroyed; i++) {
      try {
        const s = session.request({ ":method": "POST", ":path": "/shop.Misc/CurrentAccount", "content-type": "application/grpc" }, { endStream: false });
        s.on("error", () => undefined);
        s.close(http2.constants.NGHTTP2_CANCEL);
        stats.resetStreams++;
      } catch {
        break;
      }
      if (i % 50 === 0) await sleep(0);
    }
    session.destroy();
    await sleep(10);
  }
}

await measure(2); // warm-up
const quiet = await measure(SECONDS);
abusing = true;
for (let i = 0; i < IDLE; i++) holdIdle();
for (let i = 0; i < SLOW; i++) slowloris();
const flood = rapidReset();
await sleep(2_000); // the abuse at full size before measuring
const abused = await measure(SECONDS);
abusing = false;
await flood;
const rss = await rssMiB(service.child.pid!);

console.log(`\n# valid calls while the port is abused (${IDLE} idle connections, ${SLOW} slowloris, rapid-reset HTTP/2 sessions), ${SECONDS} s per phase`);
console.log(`machine: ${machine()}`);
console.log(
  table(
    ["phase", "calls", "p50 ms", "p99 ms", "max ms", "JSON p99 ms", "gRPC p99 ms", "errors"],
    [
      ["quiet", quiet.all.n, ms(quiet.all.p50), ms(quiet.all.p99), ms(quiet.all.max), ms(quiet.json.p99), ms(quiet.grpc.p99), quiet.errors],
      ["abused", abused.all.n, ms(abused.all.p50), ms(abused.all.p99), ms(abused.all.max), ms(abused.json.p99), ms(abused.grpc.p99), abused.errors],
    ],
  ),
);
console.log(`abuse: ${stats.idleOpened} idle and ${stats.slowOpened} slowloris connections opened, ${stats.resetSessions} rapid-reset sessions, ${stats.resetStreams} streams reset; service RSS after: ${rss.toFixed(0)} MiB`);
await report({
  figure: "valid calls' p99 during rapid reset + slowloris + idle connections",
  ours: `p99 ${ms(abused.all.p99)} ms (p50 ${ms(abused.all.p50)} ms, ${abused.errors} errors)`,
  limit: `quiet: p99 ${ms(quiet.all.p99)} ms (p50 ${ms(quiet.all.p50)} ms)`,
  ratio: `${(abused.all.p99 / quiet.all.p99).toFixed(1)}x quiet p99`,
  target: "p99 <= 250 ms",
  met: abused.all.p99 <= 250 && abused.errors === 0,
});

grpc.close();
await agent.close();
service.child.kill("SIGTERM");
await service.exited;
await db.drop();
