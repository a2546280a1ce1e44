/**
 * Hostile input at full size: the round-robin of defective requests over Connect JSON, gRPC,
 * gRPC-Web and Connect binary, five times over every (RPC, transport, kind) (25,000 requests),
 * in five slices with a full GC and a memory reading after each; then the cross-shop probes.
 */
import { afterAll, expect, it } from "vitest";
import { createTestDatabase, dropTestDatabase } from "../support/db.ts";
import { CYCLE, KINDS, RPCS, tripleKey } from "../support/fuzz.ts";
import { inspectorMemory, runFuzz } from "../support/fuzz-run.ts";
import { startService } from "../support/process.ts";
import { rounds } from "./harness.ts";

const BODY_LIMIT = 65536;
const SLICES = 5;
const dbs: string[] = [];
afterAll(async () => {
  for (const d of dbs) await dropTestDatabase(d);
});

const mb = (kb: number | undefined) => (kb === undefined ? "?" : (kb / 1024).toFixed(1));

it.each(rounds())("round %i: 10,000+ defective requests, each refused as its kind must be; every RPC x transport x kind 5 times; no leak; memory flat", async (round) => {
  const db = await createTestDatabase();
  dbs.push(db);
  // The inspector (loopback, random port) lets the test force a full GC in the service before
  // each reading, so a growing heap is a leak and not garbage not yet collected.
  const svc = await startService({
    DATABASE_URL: db,
    SHOPHOOK_BODY_LIMIT_BYTES: String(BODY_LIMIT),
    SHOPHOOK_WEBHOOK_ALLOW_HTTP: "true",
    SHOPHOOK_WEBHOOK_ALLOW_PRIVATE: "127.0.0.1",
    NODE_OPTIONS: "--inspect=127.0.0.1:0",
  });
  const inspector = await inspectorMemory(svc);
  try {
    // Whole rounds of the round-robin per slice: every triple is hit once per round.
    const perSlice = Math.ceil(Number(process.env.FUZZ_COUNT ?? 10_000) / SLICES / CYCLE) * CYCLE;
    const seed = Number(process.env.FUZZ_SEED ?? 1000 * round + (Date.now() % 1000));
    const report = await runFuzz(svc, db, { seed, slices: SLICES, perSlice, bodyLimit: BODY_LIMIT, measure: inspector.measure });
    console.log(`fuzz (seed ${seed}): controls ${JSON.stringify(report.controls)}; ${report.sent} requests ${JSON.stringify(report.byResult)}`);
    console.log(`by kind: ${JSON.stringify(report.byKind)}`);
    const m = report.memoryBefore;
    console.log(`memory after GC, before: RSS ${mb(m.rssKb)} MB, heap ${mb(m.heapUsedKb)} MB, external ${mb(m.externalKb)} MB`);
    for (const [i, s] of report.slices.entries())
      console.log(`  slice ${i + 1}: ${s.sent} requests in ${s.ms} ms; RSS ${mb(s.memory.rssKb)} MB, heap ${mb(s.memory.heapUsedKb)} MB, external ${mb(s.memory.externalKb)} MB`);
    console.log(`${report.tablesCounted} tables counted; ${report.probes} cross-shop probes ${JSON.stringify(report.probeResults)}`);
    if (report.failures.length) console.log(JSON.stringify(report.failures, null, 1));

    expect(report.controlFailures, "valid calls").toEqual([]);
    expect(report.failures, `seed ${seed}`).toEqual([]);
    expect(report.sent).toBe(SLICES * perSlice);
    expect(report.sent).toBeGreaterThanOrEqual(10_000);
    // A kind of a transport with fewer kinds comes round more than once per cycle.
    const times = SLICES * (perSlice / CYCLE);
    const perCycle = new Map<string, number>();
    for (const r of RPCS) for (const k of KINDS) perCycle.set(tripleKey(r.path, k.transport, k.name), (perCycle.get(tripleKey(r.path, k.transport, k.name)) ?? 0) + 1);
    const off = [...perCycle].filter(([t, n]) => report.coverage[t] !== times * n).map(([t]) => t);
    expect(off, `(RPC, transport, kind) not hit exactly ${times} times a round`).toEqual([]);
    expect(report.dbChanges, "tables changed by the requests").toEqual([]);
    expect(report.leaks).toEqual([]);
    expect(report.victimChanges, "the victim's state").toEqual([]);
    expect(svc.child.exitCode).toBeNull();

    // Memory: after a full GC, the last three slices (6,000+ requests) must not grow it. (An
    // HTTP/2 stream left open by each oversized gRPC request grew RSS by 7.5 MB a slice.)
    const last = report.slices.slice(-4).map((s) => s.memory);
    // And it comes back: within 30 MB of where it started, after the whole run.
    expect(last[3]!.rssKb - report.memoryBefore.rssKb, "RSS after the run over RSS before it, after GC (kB)").toBeLessThan(30 * 1024);
    expect(last[3]!.rssKb, "RSS after the last slice (kB)").toBeLessThan(512 * 1024);
    expect(last[3]!.rssKb - last[0]!.rssKb, "RSS growth over the last 3 slices (kB)").toBeLessThan(16 * 1024);
    expect(last[3]!.heapUsedKb! - last[0]!.heapUsedKb!, "heap growth over the last 3 slices (kB)").toBeLessThan(4 * 1024);
    expect(last[3]!.externalKb! - last[0]!.externalKb!, "growth of buffers outside the heap over the last 3 slices (kB)").toBeLessThan(4 * 1024);
  } finally {
    inspector.close();
    svc.child.kill("SIGTERM");
    await svc.exited;
  }
});
