/**
 * Write RPC throughput over HTTP/1.1 JSON through the real server (CreateProduct, UpdateProduct),
 * beside the machine's limit measured in the same run: plain single-row INSERT commits/s from
 * the same number of concurrent connections straight to PostgreSQL. The service runs in its own
 * process (`shophook serve`, as deployed); this process only generates load. Also printed: the
 * service's CPU time per request, which a busy machine disturbs far less than throughput.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx node bench/writes.ts [seconds] [concurrency]
 */
import pg from "pg";
import { Pool as HttpPool } from "undici";
import { benchDatabase, benchService, benchShop, machine, machineBusyMs, ms, ownCpuMs, pct, report, summarize, table } from "./support.ts";

const SECONDS = Number(process.argv[2] ?? 10);
const CONCURRENCY = Number(process.argv[3] ?? 32);

const db = await benchDatabase();
const service = await benchService(db.url, { SHOPHOOK_DB_POOL_SIZE: String(CONCURRENCY) });
const admin = new pg.Pool({ connectionString: db.url, max: 2 });
const shop = await benchShop({ pool: admin });
const http = new HttpPool(service.url, { connections: CONCURRENCY, pipelining: 1 });

async function run(name: string, op: (i: number) => Promise<void>) {
  const latencies: number[] = [];
  let done = 0;
  let errors = 0;
  const until = performance.now() + SECONDS * 1000;
  const start = performance.now();
  const cpu0 = service.cpuMs();
  const pg0 = machineBusyMs();
  const own0 = ownCpuMs();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      for (let i = 0; performance.now() < until; i++) {
        const s = performance.now();
        try {
          await op(w * 1_000_000 + i);
          done++;
          latencies.push(performance.now() - s);
        } catch {
          errors++;
        }
      }
    }),
  );
  const secs = (performance.now() - start) / 1000;
  const per = (ms: number) => (ms * 1000) / Math.max(done, 1);
  return {
    name,
    perSec: done / secs,
    errors,
    serverCpuUs: per(service.cpuMs() - cpu0),
    pgCpuUs: per(machineBusyMs() - pg0),
    clientCpuUs: per(ownCpuMs() - own0),
    ...summarize(latencies),
  };
}

async function rpc(path: string, body: unknown): Promise<any> {
  const res = await http.request({ method: "POST", path, headers: { "content-type": "application/json", authorization: `Bearer ${shop.key}` }, body: JSON.stringify(body) });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${text}`);
  return JSON.parse(text);
}

// The machine's limit: autocommitted single-row INSERTs of a product-sized row.
const direct = new pg.Pool({ connectionString: db.url, max: CONCURRENCY });
await direct.query("CREATE TABLE bench_plain (id bigint PRIMARY KEY, shop_id bigint, name text, description text, created_at timestamptz DEFAULT now())");
const plain = await run("plain INSERT commit (pg, no server)", async (i) => {
  await direct.query("INSERT INTO bench_plain (id, shop_id, name, description) VALUES ($1, $2, $3, $4)", [i, shop.id, `p${i}`, "d".repeat(200)]);
});

const created: string[] = [];
const creates = await run("CreateProduct RPC (JSON)", async (i) => {
  const p = await rpc("/v1/shop.Product/CreateProduct", { name: `Product ${i}`, description: "d".repeat(200), retail_price: String(i % 1000) });
  if (created.length < 10_000) created.push(p.id);
});
const updates = await run("UpdateProduct RPC (JSON)", async (i) => {
  await rpc("/v1/shop.Product/UpdateProduct", { id: created[i % created.length], retail_price: String(i) });
});

console.log(`# write throughput, ${CONCURRENCY} concurrent connections, ${SECONDS} s each`);
console.log(`machine: ${machine()}`);
console.log(
  table(
    ["operation", "per second", "ratio to plain INSERT", "p50 ms", "p99 ms", "CPU per request: service / whole machine / load generator", "errors"],
    [plain, creates, updates].map((r) => [
      r.name,
      r.perSec.toFixed(0),
      (r.perSec / plain.perSec).toFixed(2),
      ms(r.p50),
      ms(r.p99),
      `${r === plain ? "-" : r.serverCpuUs.toFixed(0)} / ${r.pgCpuUs.toFixed(0)} / ${r.clientCpuUs.toFixed(0)} µs`,
      r.errors,
    ]),
  ),
);

for (const r of [creates, updates]) {
  await report({
    figure: `write RPCs/s: ${r.name}, ${CONCURRENCY} connections`,
    ours: `${r.perSec.toFixed(0)}/s (p99 ${ms(r.p99)} ms; service CPU ${r.serverCpuUs.toFixed(0)} µs/request)`,
    limit: `${plain.perSec.toFixed(0)}/s plain INSERT commits`,
    ratio: pct(r.perSec, plain.perSec),
    target: ">= 3,000/s and >= 50%",
    met: r.perSec >= 3000 && r.perSec / plain.perSec >= 0.5,
  });
}

await direct.end();
await admin.end();
await http.close();
await service.stop();
await db.drop();
