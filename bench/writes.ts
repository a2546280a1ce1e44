/**
 * Write RPC throughput over HTTP/1.1 JSON through the real server (CreateProduct, UpdateProduct),
 * beside the machine's limit measured in the same run: plain single-row INSERT commits/s from
 * the same number of concurrent connections straight to PostgreSQL.
 *
 * The service runs in its own process (`shophook serve`, as deployed). Load comes from C tools
 * when the machine has them (Debian's wrk for the RPCs, pgbench for the INSERTs): on 2 cores a
 * load generator's own CPU is taken from the service, and a Node one costs several times what
 * wrk does. Without them, from this process (undici, pg), which the output says. Also printed:
 * CPU per request of the service and of the whole machine, which a busy machine disturbs far
 * less than throughput.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx node bench/writes.ts [seconds] [concurrency]
 */
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { Pool as HttpPool } from "undici";
import { benchDatabase, benchService, benchShop, machine, machineBusyMs, ms, pct, report, table } from "./support.ts";

const SECONDS = Number(process.argv[2] ?? 10);
const CONCURRENCY = Number(process.argv[3] ?? 32);
const has = (tool: string) => spawnSync("sh", ["-c", `command -v ${tool}`]).status === 0;
const C_TOOLS = has("wrk") && has("pgbench");

const db = await benchDatabase();
const service = await benchService(db.url, { SHOPHOOK_DB_POOL_SIZE: String(CONCURRENCY) });
const admin = new pg.Pool({ connectionString: db.url, max: 2 });
const shop = await benchShop({ pool: admin });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "shophook-writes-"));

interface Result {
  name: string;
  perSec: number;
  p50: number;
  p99: number;
  errors: number;
  serviceCpuUs?: number;
  machineCpuUs: number;
}

/** Runs `load` (which returns requests done, latencies and errors) and reads CPU around it. */
async function measured(name: string, load: () => Promise<{ done: number; p50: number; p99: number; errors: number; secs: number }>, service?: { cpuMs(): number }): Promise<Result> {
  const s0 = service?.cpuMs() ?? 0;
  const m0 = machineBusyMs();
  const r = await load();
  const per = (msUsed: number) => (msUsed * 1000) / Math.max(r.done, 1);
  return { name, perSec: r.done / r.secs, p50: r.p50, p99: r.p99, errors: r.errors, serviceCpuUs: service ? per(service.cpuMs() - s0) : undefined, machineCpuUs: per(machineBusyMs() - m0) };
}

// --- load generators -----------------------------------------------------------------------

/** wrk with a Lua script; latencies from its --latency distribution (in ms). */
function wrk(script: string, urlPath: string) {
  const file = path.join(tmp, "script.lua");
  fs.writeFileSync(file, script);
  const out = execFileSync("wrk", ["-t2", `-c${CONCURRENCY}`, `-d${SECONDS}s`, "--latency", "-s", file, service.url + urlPath]).toString();
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  const toMs = (v: string | undefined) => (!v ? NaN : v.endsWith("us") ? parseFloat(v) / 1000 : v.endsWith("ms") ? parseFloat(v) : parseFloat(v) * 1000);
  const done = num(/(\d+) requests in/);
  const errors = num(/Non-2xx or 3xx responses: (\d+)/) || 0;
  return { done, secs: num(/requests in ([\d.]+)s/), p50: toMs(/50%\s+(\S+)/.exec(out)?.[1]), p99: toMs(/99%\s+(\S+)/.exec(out)?.[1]), errors };
}

const luaHeaders = `wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer ${shop.key}"\n`;

/** undici from this process (when wrk is missing). */
async function undiciLoad(urlPath: string, body: (i: number) => unknown) {
  const http = new HttpPool(service.url, { connections: CONCURRENCY, pipelining: 1 });
  const latencies: number[] = [];
  let errors = 0;
  const until = performance.now() + SECONDS * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      for (let i = 0; performance.now() < until; i++) {
        const s = performance.now();
        const res = await http.request({ method: "POST", path: urlPath, headers: { "content-type": "application/json", authorization: `Bearer ${shop.key}` }, body: JSON.stringify(body(w * 1_000_000 + i)) });
        await res.body.text();
        if (res.statusCode === 200) latencies.push(performance.now() - s);
        else errors++;
      }
    }),
  );
  await http.close();
  latencies.sort((a, b) => a - b);
  return { done: latencies.length, secs: (performance.now() - start) / 1000, p50: latencies[Math.floor(latencies.length / 2)] ?? NaN, p99: latencies[Math.floor(latencies.length * 0.99)] ?? NaN, errors };
}

// --- the limit: plain single-row INSERT commits ---------------------------------------------

await admin.query("CREATE TABLE bench_plain (id bigserial PRIMARY KEY, shop_id bigint, name text, description text, created_at timestamptz DEFAULT now())");
const plain = await measured("plain INSERT commit (no server)", async () => {
  if (C_TOOLS) {
    const file = path.join(tmp, "insert.sql");
    fs.writeFileSync(file, `INSERT INTO bench_plain (shop_id, name, description) VALUES (${shop.id}, 'product', '${"d".repeat(200)}');\n`);
    const url = new URL(db.url);
    const out = execFileSync("pgbench", ["-n", "-c", String(CONCURRENCY), "-j", "2", "-T", String(SECONDS), "-f", file, "-r", "-h", url.hostname, "-p", url.port || "5432", "-U", url.username || "postgres", url.pathname.slice(1)]).toString();
    const done = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1]);
    const lat = Number(/latency average = ([\d.]+) ms/.exec(out)?.[1]);
    return { done, secs: SECONDS, p50: lat, p99: NaN, errors: 0 };
  }
  const direct = new pg.Pool({ connectionString: db.url, max: CONCURRENCY });
  let done = 0;
  const until = performance.now() + SECONDS * 1000;
  const start = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (performance.now() < until) {
      await direct.query("INSERT INTO bench_plain (shop_id, name, description) VALUES ($1, $2, $3)", [shop.id, "product", "d".repeat(200)]);
      done++;
    }
  }));
  await direct.end();
  return { done, secs: (performance.now() - start) / 1000, p50: NaN, p99: NaN, errors: 0 };
});

// --- the RPCs -------------------------------------------------------------------------------

const productBody = (i: number) => ({ name: `Product ${i}`, description: "d".repeat(200), retail_price: String(i % 1000) });
const creates = await measured(
  "CreateProduct RPC (JSON)",
  () => (C_TOOLS ? Promise.resolve(wrk(`${luaHeaders}wrk.body = '${JSON.stringify(productBody(1))}'\n`, "/v1/shop.Product/CreateProduct")) : undiciLoad("/v1/shop.Product/CreateProduct", productBody)),
  service,
);
const { rows: some } = await admin.query<{ id: string }>("SELECT id::text FROM products WHERE shop_id = $1 LIMIT 5000", [shop.id]);
const ids = some.map((r) => r.id);
const updates = await measured(
  "UpdateProduct RPC (JSON)",
  () =>
    C_TOOLS
      ? Promise.resolve(
          wrk(
            `${luaHeaders}local ids = {${ids.map((id) => `"${id}"`).join(",")}}\nlocal n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(nil, nil, nil, '{"id": "' .. ids[math.random(#ids)] .. '", "retail_price": "' .. n .. '"}')\nend\n`,
            "/v1/shop.Product/UpdateProduct",
          ),
        )
      : undiciLoad("/v1/shop.Product/UpdateProduct", (i) => ({ id: ids[i % ids.length], retail_price: String(i) })),
  service,
);

const generator = C_TOOLS ? "wrk and pgbench (C), 2 threads" : "undici and pg from the bench process (install wrk and pgbench for C load generators)";
console.log(`# write throughput, ${CONCURRENCY} concurrent connections, ${SECONDS} s each; load: ${generator}`);
console.log(`machine: ${machine()}`);
console.log(
  table(
    ["operation", "per second", "ratio to plain INSERT", "p50 ms", "p99 ms", "CPU per request: service / whole machine", "errors"],
    [plain, creates, updates].map((r) => [
      r.name,
      r.perSec.toFixed(0),
      (r.perSec / plain.perSec).toFixed(2),
      ms(r.p50),
      ms(r.p99),
      `${r.serviceCpuUs === undefined ? "-" : r.serviceCpuUs.toFixed(0)} / ${r.machineCpuUs.toFixed(0)} µs`,
      r.errors,
    ]),
  ),
);

for (const r of [creates, updates]) {
  await report({
    figure: `write RPCs/s: ${r.name}, ${CONCURRENCY} connections`,
    ours: `${r.perSec.toFixed(0)}/s (p99 ${ms(r.p99)} ms; CPU per request: service ${r.serviceCpuUs!.toFixed(0)} µs, machine ${r.machineCpuUs.toFixed(0)} µs)`,
    limit: `${plain.perSec.toFixed(0)}/s plain INSERT commits (machine ${plain.machineCpuUs.toFixed(0)} µs each)`,
    ratio: pct(r.perSec, plain.perSec),
    target: ">= 3,000/s and >= 50%",
    met: r.perSec >= 3000 && r.perSec / plain.perSec >= 0.5,
    note: `load: ${generator}`,
  });
}

await admin.end();
await service.stop();
fs.rmSync(tmp, { recursive: true, force: true });
await db.drop();
