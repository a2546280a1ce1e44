/**
 * The delivery sweep's cost per pass: the queries one `DeliveryEngine.sweep()` sends (captured as
 * it runs, so a change of the sweep's SQL is measured as it is), each run again under
 * EXPLAIN (ANALYZE, BUFFERS) in a transaction that is rolled back. pg_stat_statements would do
 * too, but needs shared_preload_libraries, which the test server may not have.
 */
import type { App } from "../../src/app.ts";

export interface SweepCost {
  /** Webhooks the measured pass woke (0 when measured idle). */
  woke: number;
  queries: number;
  /** Rows read by every table and index scan of the plans (returned + removed by filters), all loops. */
  rows: number;
  /** Of which from `changes`. */
  changesRows: number;
  /** Shared buffers hit + read. */
  buffers: number;
  /** Execution time, JIT compilation included. */
  ms: number;
  /** Of which JIT compilation (PostgreSQL compiles a plan whose estimated cost passes jit_above_cost, on every run). */
  jitMs: number;
  /** The planner's highest estimated total cost among the queries. */
  planCost: number;
}

interface PlanNode {
  "Total Cost"?: number;
  "Relation Name"?: string;
  "Actual Rows"?: number;
  "Actual Loops"?: number;
  "Rows Removed by Filter"?: number;
  "Rows Removed by Index Recheck"?: number;
  "Shared Hit Blocks"?: number;
  "Shared Read Blocks"?: number;
  Plans?: PlanNode[];
}

function walk(node: PlanNode, acc: SweepCost) {
  if (node["Relation Name"]) {
    const loops = node["Actual Loops"] ?? 1;
    const rows = Math.round(((node["Actual Rows"] ?? 0) + (node["Rows Removed by Filter"] ?? 0) + (node["Rows Removed by Index Recheck"] ?? 0)) * loops);
    acc.rows += rows;
    if (node["Relation Name"] === "changes") acc.changesRows += rows;
  }
  for (const c of node.Plans ?? []) walk(c, acc);
}

export async function sweepCost(app: App): Promise<SweepCost> {
  const pool = app.db.deliveryPool as unknown as { query: (...args: any[]) => Promise<unknown> };
  const original = pool.query;
  const captured: Array<{ text: string; values: unknown[] }> = [];
  pool.query = function (this: unknown, ...args: any[]) {
    const [q, values] = args;
    if (typeof q === "string") captured.push({ text: q, values: Array.isArray(values) ? values : [] });
    else if (q && typeof q.text === "string") captured.push({ text: q.text, values: q.values ?? [] });
    return original.apply(this, args);
  } as typeof original;
  let woke: number;
  try {
    woke = await app.delivery!.sweep();
  } finally {
    pool.query = original;
  }
  const cost: SweepCost = { woke, queries: captured.length, rows: 0, changesRows: 0, buffers: 0, ms: 0, jitMs: 0, planCost: 0 };
  const client = await app.pool.connect();
  try {
    for (const q of captured) {
      await client.query("BEGIN");
      try {
        const { rows } = await client.query<{ "QUERY PLAN": Array<{ Plan: PlanNode; "Execution Time": number; JIT?: { Timing?: { Total?: number } } }> }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${q.text}`, q.values);
        const plan = rows[0]!["QUERY PLAN"][0]!;
        walk(plan.Plan, cost);
        cost.buffers += (plan.Plan["Shared Hit Blocks"] ?? 0) + (plan.Plan["Shared Read Blocks"] ?? 0);
        cost.ms += plan["Execution Time"];
        cost.jitMs += plan.JIT?.Timing?.Total ?? 0;
        cost.planCost = Math.max(cost.planCost, Math.round(plan.Plan["Total Cost"] ?? 0));
      } finally {
        await client.query("ROLLBACK");
      }
    }
  } finally {
    client.release();
  }
  cost.ms = Math.round(cost.ms * 100) / 100;
  cost.jitMs = Math.round(cost.jitMs * 100) / 100;
  return cost;
}
