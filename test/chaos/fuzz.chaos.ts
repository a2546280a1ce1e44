/** Hostile input at full size: 10,000+ malformed requests over JSON and gRPC, and cross-shop probes. */
import { afterAll, expect, it } from "vitest";
import { createTestDatabase, dropTestDatabase } from "../support/db.ts";
import { runFuzz } from "../support/fuzz-run.ts";
import { startService } from "../support/process.ts";
import { rounds } from "./harness.ts";

const dbs: string[] = [];
afterAll(async () => {
  for (const d of dbs) await dropTestDatabase(d);
});

it.each(rounds())("round %i: 10,000 malformed requests, all refused as the client's fault; no leak; memory bounded", async (round) => {
  const db = await createTestDatabase();
  dbs.push(db);
  const svc = await startService({ DATABASE_URL: db, SHOPHOOK_BODY_LIMIT_BYTES: "65536", SHOPHOOK_WEBHOOK_ALLOW_HTTP: "true", SHOPHOOK_WEBHOOK_ALLOW_PRIVATE: "127.0.0.1" });
  try {
    // Two halves: the second must not grow memory like the first did (V8 keeps its heap's
    // high-water mark; a leak would keep growing).
    const half = Number(process.env.FUZZ_COUNT ?? 10_000) / 2;
    const rss: number[] = [];
    for (const part of [1, 2]) {
      const seed = 1000 * round + 10 * part + (Date.now() % 10);
      const report = await runFuzz(svc, db, half, seed);
      console.log(`fuzz (seed ${seed}): ${report.sent} requests ${JSON.stringify(report.byResult)}; RSS ${report.rssBeforeKb} -> ${report.rssAfterKb} kB; ${report.probes} probes`);
      expect(report.failures, `seed ${seed}`).toEqual([]);
      expect(report.sent).toBe(half);
      expect(report.leaks).toEqual([]);
      rss.push(report.rssAfterKb);
      expect(svc.child.exitCode).toBeNull();
    }
    expect(rss[1]!, "RSS after the second half").toBeLessThan(512 * 1024);
    expect(rss[1]! - rss[0]!, "growth during the second half (kB)").toBeLessThan(96 * 1024);
  } finally {
    svc.child.kill("SIGTERM");
    await svc.exited;
  }
});
