/**
 * Healthy endpoints' latency with and without 1% of endpoints timing out. Two runs, same process,
 * same pace (RATE changes/s spread round-robin over WEBHOOKS shops, one webhook each):
 *   1. every endpoint healthy
 *   2. 1% of the endpoints never answer (each request waits out the 10 s delivery timeout, then
 *      retries after 1-2 s and hangs again)
 * Figure: commit -> receipt latency of the healthy endpoints' changes, p50/p99, run 2 vs run 1.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx node bench/isolation.ts
 */
import { customerEntity } from "../src/entities/customer.ts";
import { createOne } from "../src/store/write.ts";
import { benchApp, benchDatabase, benchShop, createHook, machine, ms, report, sleep, startReceiver, summarize, table, wallMicros } from "./support.ts";

const WEBHOOKS = Number(process.env.WEBHOOKS ?? 1000);
const RATE = Number(process.env.RATE ?? 200);
const SECONDS = Number(process.env.SECONDS ?? 20);

const db = await benchDatabase();
const receiver = await startReceiver();

async function run(failingShare: number) {
  const app = await benchApp(db.url, {
    webhookAllowHttp: true,
    webhookAllowPrivate: ["127.0.0.1"],
    dbPoolSize: 30,
    sweepIntervalMs: 1000,
    retryBaseSeconds: 1,
    retryMaxStepSeconds: 2,
  });
  const failing = Math.round(WEBHOOKS * failingShare);
  const shops: Array<{ id: string; healthy: boolean }> = [];
  for (let i = 0; i < WEBHOOKS; i++) {
    const shop = await benchShop(app, `isolation ${i}`);
    // Spread the failing ones evenly through the round-robin.
    const healthy = !(failing && i % Math.round(WEBHOOKS / failing) === 0);
    await createHook(app, shop.id, receiver.url(healthy ? "/hook" : "/hang"));
    shops.push({ id: shop.id, healthy });
  }
  await receiver.get("reset");
  const committed = new Map<string, number>();
  const n = SECONDS * RATE;
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const wait = start + (i * 1000) / RATE - performance.now();
    if (wait > 0) await sleep(wait);
    const shop = shops[i % shops.length]!;
    const id = await app.ids.next();
    await createOne(app, shop.id, customerEntity, { id, external_id: "", code: `C${id}`, full_name: `c${i}`, phone: "", email: "", gender: "", birthday: "", note: "", status: "active" });
    if (shop.healthy) committed.set(id, wallMicros());
  }
  for (const until = Date.now() + 120_000; Date.now() < until; await sleep(50)) {
    if ((await receiver.get()).distinct >= committed.size) break;
  }
  const arrivals = (await receiver.get("arrivals")) as Record<string, number>;
  const missing = [...committed.keys()].filter((id) => !(id in arrivals)).length;
  const s = summarize([...committed].filter(([id]) => id in arrivals).map(([id, t]) => (arrivals[id]! - t) / 1000));
  await app.stop();
  return { ...s, failing, missing };
}

const healthy = await run(0);
const withFailing = await run(0.01);
console.log(`# healthy endpoints with and without 1% of endpoints timing out; ${WEBHOOKS} webhooks, ${RATE} changes/s, ${SECONDS} s`);
console.log(`machine: ${machine()}`);
console.log(
  table(
    ["run", "failing endpoints", "healthy changes", "p50 ms", "p99 ms", "max ms", "not delivered"],
    [
      ["all healthy", 0, healthy.n, ms(healthy.p50), ms(healthy.p99), ms(healthy.max), healthy.missing],
      ["1% timing out", withFailing.failing, withFailing.n, ms(withFailing.p50), ms(withFailing.p99), ms(withFailing.max), withFailing.missing],
    ],
  ),
);
await report({
  figure: `healthy endpoints' commit -> receipt p99, ${WEBHOOKS.toLocaleString("en")} webhooks at ${RATE} changes/s, 1% timing out vs none`,
  ours: `p50 ${ms(withFailing.p50)} ms, p99 ${ms(withFailing.p99)} ms with ${withFailing.failing} endpoints hanging`,
  limit: `p50 ${ms(healthy.p50)} ms, p99 ${ms(healthy.p99)} ms with none`,
  ratio: `p99 ${((withFailing.p99 / healthy.p99 - 1) * 100).toFixed(0)}%`,
  target: "within 10%",
  met: withFailing.p99 <= healthy.p99 * 1.1 && withFailing.missing === 0,
  note: `${withFailing.missing} healthy changes undelivered at the end`,
});
receiver.stop();
await db.drop();
