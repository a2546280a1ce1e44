/**
 * Page latency of ListProducts (sort updated_at) and GetChanges at 1M rows, at a shallow and a
 * deep position, through the real server over HTTP/1.1 JSON; beside them, in the same run, the
 * same page as a keyset SQL query and as an OFFSET query on the same data.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx node bench/feed.ts [rows]
 */
import { Pool as HttpPool } from "undici";
import { benchApp, benchDatabase, benchShop, machine, ms, report, summarize, table } from "./support.ts";

const ROWS = Number(process.argv[2] ?? 1_000_000);
const BATCH = 50_000;
const RUNS = Number(process.env.RUNS ?? 300);

const db = await benchDatabase();
const app = await benchApp(db.url);
const shop = await benchShop(app);
const other = await benchShop(app, "neighbour");

async function load(shopId: string, rows: number) {
  for (let done = 0; done < rows; done += BATCH) {
    const n = Math.min(BATCH, rows - done);
    // One transaction per batch (distinct xids, like real writers); product + change per row.
    await app.pool.query(
      `WITH ids AS (SELECT next_id() AS id, nextval('changes_id_seq') AS seq, g FROM generate_series($2::int, $2::int + $3::int - 1) g),
       c AS (INSERT INTO changes (id, shop_id, entity, entity_id, change_type, time, latest)
             SELECT seq, $1, 'product', id, 'create', now(),
                    json_build_object('id', id::text, 'external_id', '', 'external_code', '', 'name', 'Product ' || g,
                      'description', repeat('d', 200), 'short_desc', '', 'image_urls', '[]'::json, 'note', '', 'status', 'active',
                      'list_price', '1000', 'retail_price', '900', 'created_at', now(), 'updated_at', now(), 'deleted', false)
             FROM ids)
       INSERT INTO products (shop_id, id, name, description, status, list_price, retail_price, created_at, updated_at, feed_xid, feed_seq)
       SELECT $1, id, 'Product ' || g, repeat('d', 200), 'active', 1000, 900, now(), now(), pg_current_xact_id(), seq FROM ids`,
      [shopId, done, n],
    );
  }
}

const t0 = performance.now();
await load(shop.id, ROWS);
await load(other.id, Math.floor(ROWS / 10));
await app.pool.query("VACUUM ANALYZE products");
await app.pool.query("VACUUM ANALYZE changes");
// The load's dirty pages written now, not by a checkpoint in the middle of the measurements.
await app.pool.query("CHECKPOINT").catch(() => undefined);
const loadSec = (performance.now() - t0) / 1000;

const depth = Math.floor(ROWS * 0.9);
const deepProduct = (await app.pool.query("SELECT feed_xid::text AS x, feed_seq::text AS s FROM products WHERE shop_id = $1 ORDER BY feed_xid, feed_seq OFFSET $2 LIMIT 1", [shop.id, depth])).rows[0];
const deepChange = (await app.pool.query("SELECT xid::text AS x, id::text AS s FROM changes WHERE shop_id = $1 ORDER BY xid, id OFFSET $2 LIMIT 1", [shop.id, depth])).rows[0];
const cursors = {
  productsShallow: undefined,
  productsDeep: app.cursors.encode("products", shop.id, "updated_at", [deepProduct.x, deepProduct.s]),
  changesShallow: undefined,
  changesDeep: app.cursors.encode("changes", shop.id, "", [deepChange.x, deepChange.s]),
};

const http = new HttpPool(app.url, { connections: 1 });
async function rpc(path: string, body: unknown): Promise<number> {
  const start = performance.now();
  const res = await http.request({ method: "POST", path, headers: { "content-type": "application/json", authorization: `Bearer ${shop.key}` }, body: JSON.stringify(body) });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${path}: ${res.statusCode} ${text}`);
  return performance.now() - start;
}

/**
 * Probes are measured interleaved, one sample of each in turn, so that whatever else the machine
 * does at a moment weighs on all of them alike (the ratios compare like with like).
 */
const probes: Array<{ fn: () => Promise<number>; runs: number; samples: number[] }> = [];
function probe(fn: () => Promise<number>, runs = RUNS) {
  const p = { fn, runs, samples: [] as number[] };
  probes.push(p);
  return p;
}
async function measureAll() {
  for (const p of probes) for (let i = 0; i < Math.min(20, p.runs); i++) await p.fn();
  for (let round = 0; round < RUNS; round++) {
    for (const p of probes) if (round % Math.round(RUNS / p.runs) === 0) p.samples.push(await p.fn());
  }
}

async function sql(text: string, values: unknown[]): Promise<number> {
  const start = performance.now();
  await app.pool.query(text, values);
  return performance.now() - start;
}

const listBody = (after?: string) => ({ paging: after ? { after, limit: 100 } : { sort: "updated_at", limit: 100 } });
const changesBody = (after?: string) => ({ paging: { after, limit: 100 } });
const keysetProducts = "SELECT * FROM products WHERE shop_id = $1 AND (feed_xid, feed_seq) > ($2::xid8, $3::bigint) AND feed_xid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY feed_xid, feed_seq LIMIT 100";
const offsetProducts = "SELECT * FROM products WHERE shop_id = $1 ORDER BY feed_xid, feed_seq OFFSET $2 LIMIT 100";
const keysetChanges = "SELECT * FROM changes WHERE shop_id = $1 AND (xid, id) > ($2::xid8, $3::bigint) AND xid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY xid, id LIMIT 100";
const offsetChanges = "SELECT * FROM changes WHERE shop_id = $1 ORDER BY xid, id OFFSET $2 LIMIT 100";

const rows: Array<Array<string | number>> = [];
const add = (what: string, where: string, s: ReturnType<typeof summarize>) => {
  rows.push([what, where, ms(s.p50), ms(s.p99), s.n]);
  return s;
};
const deep = `deep (${depth.toLocaleString("en")})`;
const probed = {
  products: {
    shallow: probe(() => rpc("/v1/shop.Product/ListProducts", listBody(cursors.productsShallow))),
    deep: probe(() => rpc("/v1/shop.Product/ListProducts", listBody(cursors.productsDeep))),
  },
  changes: {
    shallow: probe(() => rpc("/v1/shop.History/GetChanges", changesBody(cursors.changesShallow))),
    deep: probe(() => rpc("/v1/shop.History/GetChanges", changesBody(cursors.changesDeep))),
  },
};
const sqlProbes = {
  products: {
    keysetShallow: probe(() => sql(keysetProducts, [shop.id, "0", "0"])),
    keysetDeep: probe(() => sql(keysetProducts, [shop.id, deepProduct.x, deepProduct.s])),
    offsetShallow: probe(() => sql(offsetProducts, [shop.id, 0])),
    offsetDeep: probe(() => sql(offsetProducts, [shop.id, depth]), 30),
  },
  changes: {
    keysetShallow: probe(() => sql(keysetChanges, [shop.id, "0", "0"])),
    keysetDeep: probe(() => sql(keysetChanges, [shop.id, deepChange.x, deepChange.s])),
    offsetShallow: probe(() => sql(offsetChanges, [shop.id, 0])),
    offsetDeep: probe(() => sql(offsetChanges, [shop.id, depth]), 30),
  },
};
await measureAll();
const s = (p: { samples: number[] }) => summarize(p.samples);
const measured = {
  products: {
    shallow: add("ListProducts (server, HTTP JSON)", "shallow", s(probed.products.shallow)),
    deep: add("ListProducts (server, HTTP JSON)", deep, s(probed.products.deep)),
  },
  changes: {
    shallow: add("GetChanges (server, HTTP JSON)", "shallow", s(probed.changes.shallow)),
    deep: add("GetChanges (server, HTTP JSON)", deep, s(probed.changes.deep)),
  },
};
const sqlFigures = {
  products: {
    keysetShallow: add("products keyset SQL", "shallow", s(sqlProbes.products.keysetShallow)),
    keysetDeep: add("products keyset SQL", deep, s(sqlProbes.products.keysetDeep)),
    offsetShallow: add("products OFFSET SQL", "shallow", s(sqlProbes.products.offsetShallow)),
    offsetDeep: add("products OFFSET SQL", deep, s(sqlProbes.products.offsetDeep)),
  },
  changes: {
    keysetShallow: add("changes keyset SQL", "shallow", s(sqlProbes.changes.keysetShallow)),
    keysetDeep: add("changes keyset SQL", deep, s(sqlProbes.changes.keysetDeep)),
    offsetShallow: add("changes OFFSET SQL", "shallow", s(sqlProbes.changes.offsetShallow)),
    offsetDeep: add("changes OFFSET SQL", deep, s(sqlProbes.changes.offsetDeep)),
  },
};

console.log(`# feed page latency, ${ROWS} rows in the shop (+${Math.floor(ROWS / 10)} in another), page of 100`);
console.log(`machine: ${machine()}; loaded in ${loadSec.toFixed(1)} s`);
console.log(table(["query", "position", "p50 ms", "p99 ms", "runs"], rows));

for (const [name, rpcName] of [["products", "ListProducts (updated_at)"], ["changes", "GetChanges"]] as const) {
  for (const pos of ["shallow", "deep"] as const) {
    const ours = measured[name][pos];
    const f = sqlFigures[name];
    const offset = pos === "shallow" ? f.offsetShallow : f.offsetDeep;
    const keyset = pos === "shallow" ? f.keysetShallow : f.keysetDeep;
    await report({
      figure: `${rpcName} page of 100 at ${ROWS.toLocaleString("en")} rows, ${pos === "shallow" ? "shallow" : deep}: p99`,
      ours: `p50 ${ms(ours.p50)} ms, p99 ${ms(ours.p99)} ms (server over HTTP)`,
      limit: `OFFSET SQL p99 ${ms(offset.p99)} ms; keyset SQL p99 ${ms(keyset.p99)} ms`,
      ratio: `${(ours.p99 / offset.p99).toFixed(2)}x OFFSET, ${(ours.p99 / keyset.p99).toFixed(2)}x keyset SQL`,
      target: "p99 <= 5 ms",
      met: ours.p99 <= 5,
    });
  }
}

await http.close();
await app.stop();
await db.drop();
