/**
 * Hostile input, smoke size (npm run chaos runs the full round-robin five times): a valid call
 * per RPC and transport, then 600 defective requests over Connect JSON, gRPC, gRPC-Web and
 * Connect binary covering every RPC on every transport, each with the exact refusal its kind must get; then another shop's ids
 * and cursors aimed at every RPC.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTestDatabase, dropTestDatabase } from "./support/db.ts";
import { KINDS, RPCS, TRANSPORTS, tripleKey } from "./support/fuzz.ts";
import { runFuzz } from "./support/fuzz-run.ts";
import { type ServiceProcess, startService } from "./support/process.ts";

const BODY_LIMIT = 65536;
let dbUrl: string;
let svc: ServiceProcess;
beforeAll(async () => {
  dbUrl = await createTestDatabase();
  svc = await startService({ DATABASE_URL: dbUrl, SHOPHOOK_BODY_LIMIT_BYTES: String(BODY_LIMIT), SHOPHOOK_WEBHOOK_ALLOW_HTTP: "true", SHOPHOOK_WEBHOOK_ALLOW_PRIVATE: "127.0.0.1", LOG_LEVEL: "info" });
});
afterAll(async () => {
  svc?.child.kill("SIGTERM");
  if (svc) await svc.exited;
  if (dbUrl) await dropTestDatabase(dbUrl);
});

it("routes every RPC, refuses every defective request with its exact client error, leaks nothing across shops, stores nothing", async () => {
  const count = Number(process.env.FUZZ_COUNT ?? 600);
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 100000);
  const report = await runFuzz(svc, dbUrl, { seed, slices: 1, perSlice: count, bodyLimit: BODY_LIMIT });
  const [slice] = report.slices;
  console.log(
    `fuzz (seed ${seed}): controls ${JSON.stringify(report.controls)}; ${report.sent} requests in ${slice!.ms} ms ${JSON.stringify(report.byResult)}; ` +
      `RSS ${report.memoryBefore.rssKb} -> ${slice!.memory.rssKb} kB; ${report.tablesCounted} tables counted; ${report.probes} cross-shop probes ${JSON.stringify(report.probeResults)}`,
  );
  if (report.failures.length) console.log(JSON.stringify(report.failures, null, 1));
  expect(report.controlFailures, "valid calls").toEqual([]);
  expect(report.failures, `seed ${seed}`).toEqual([]);
  expect(report.sent).toBe(count);

  // Every RPC on every transport, and every kind of each transport.
  const hit = (rpc: string, transport: string) => Object.keys(report.coverage).some((k) => k.startsWith(`${rpc} ${transport} `));
  expect(RPCS.flatMap((r) => TRANSPORTS.filter((t) => !hit(r.path, t)).map((t) => `${r.path} ${t}`)), "RPC x transport never hit").toEqual([]);
  const kindHit = (transport: string, kind: string) => RPCS.some((r) => report.coverage[tripleKey(r.path, transport as "json", kind)]);
  expect([...new Set(KINDS)].filter((k) => !kindHit(k.transport, k.name)).map((k) => `${k.transport} ${k.name}`), "kinds never sent").toEqual([]);

  expect(report.dbChanges, "tables changed by the requests").toEqual([]);
  expect(report.tablesCounted).toBeGreaterThanOrEqual(14);
  expect(report.leaks).toEqual([]);
  expect(report.victimChanges, "the victim's state").toEqual([]);
  expect(report.probes).toBeGreaterThan(500);
  expect(slice!.memory.rssKb - report.memoryBefore.rssKb).toBeLessThan(150 * 1024);
  expect(svc.child.exitCode).toBeNull();
}, 120_000);
