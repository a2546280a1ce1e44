/**
 * Hostile input, smoke size (npm run chaos runs 10,000+): malformed requests over HTTP/1.1 JSON
 * and gRPC to every RPC, then another shop's ids and cursors aimed at every RPC.
 */
import { afterAll, expect, it } from "vitest";
import { createTestDatabase, dropTestDatabase } from "./support/db.ts";
import { runFuzz } from "./support/fuzz-run.ts";
import { type ServiceProcess, startService } from "./support/process.ts";

let dbUrl: string | undefined;
let svc: ServiceProcess | undefined;
afterAll(async () => {
  svc?.child.kill("SIGTERM");
  if (svc) await svc.exited;
  if (dbUrl) await dropTestDatabase(dbUrl);
});

it("refuses every malformed request with a client error, leaks nothing across shops, and keeps serving", async () => {
  dbUrl = await createTestDatabase();
  svc = await startService({ DATABASE_URL: dbUrl, SHOPHOOK_BODY_LIMIT_BYTES: "65536", SHOPHOOK_WEBHOOK_ALLOW_HTTP: "true", SHOPHOOK_WEBHOOK_ALLOW_PRIVATE: "127.0.0.1", LOG_LEVEL: "info" });
  const count = Number(process.env.FUZZ_COUNT ?? 600);
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 100000);
  const report = await runFuzz(svc, dbUrl, count, seed);
  console.log(`fuzz (seed ${seed}): ${report.sent} requests ${JSON.stringify(report.byResult)}; RSS ${report.rssBeforeKb} -> ${report.rssAfterKb} kB; ${report.probes} cross-shop probes`);
  if (report.failures.length) console.log(JSON.stringify(report.failures, null, 1));
  expect(report.failures, `seed ${seed}`).toEqual([]);
  expect(report.sent).toBe(count);
  expect(report.leaks).toEqual([]);
  expect(report.rssAfterKb - report.rssBeforeKb).toBeLessThan(150 * 1024);
  expect(svc.child.exitCode).toBeNull();
}, 300_000);
