/**
 * The soak's parameters: a short run inside `npm test` (test/soak.test.ts) and the full run of
 * `npm run soak` (test/soak/full.soak.ts). Environment variables override either.
 */
export interface SoakParams {
  name: string;
  /** Simulated days. `SOAK_DAYS`. */
  days: number;
  /** Shops. `SOAK_SHOPS`. */
  shops: number;
  /** Seed of every random choice (activity, webhooks, outages, operations). `SOAK_SEED`. */
  seed: number;
  /** Write RPCs per simulated day over all shops (on average; Zipf-skewed between shops). `SOAK_WRITES_PER_DAY`. */
  writesPerDay: number;
  /** The clock moves by this much per step; after each step deliveries run until none is due. `SOAK_TICK_MINUTES`. */
  tickMinutes: number;
  /** config.changeRetentionHours. `SOAK_RETENTION_HOURS`. */
  retentionHours: number;
  /** config.webhookBacklogMaxHours. `SOAK_BACKLOG_HOURS`. */
  backlogHours: number;
  /** config.retryWindowHours. */
  retryWindowHours: number;
  /** config.deliveryHistoryDays. */
  historyDays: number;
  /** Receivers down for longer than the retry window. */
  longOutages: number;
  /** Unrelated writes of the final sweep-cost experiment. */
  burst: number;
  /** Wall-clock limit of the test, ms. */
  timeoutMs: number;
}

const SHORT: SoakParams = {
  name: "short",
  days: 20,
  shops: 30,
  seed: 1,
  writesPerDay: 150,
  tickMinutes: 20,
  // Scaled down so that 20 days cover several retention and backlog windows.
  retentionHours: 48,
  backlogHours: 168,
  retryWindowHours: 72,
  historyDays: 10,
  longOutages: 2,
  burst: 600,
  timeoutMs: 600_000,
};

const FULL: SoakParams = {
  name: "full",
  days: 90,
  shops: 200,
  seed: 1,
  writesPerDay: 400,
  tickMinutes: 15,
  // The shipped defaults (src/config.ts).
  retentionHours: 168,
  backlogHours: 720,
  retryWindowHours: 72,
  historyDays: 30,
  longOutages: 6,
  burst: 3000,
  timeoutMs: 3_600_000,
};

function envInt(name: string, def: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return def;
  if (!/^\d+$/.test(raw) || Number(raw) < min) throw new Error(`${name} must be an integer of at least ${min}, got "${raw}"`);
  return Number(raw);
}

export function soakParams(kind: "short" | "full"): SoakParams {
  const base = kind === "short" ? SHORT : FULL;
  const p: SoakParams = {
    ...base,
    days: envInt("SOAK_DAYS", base.days, 6),
    shops: envInt("SOAK_SHOPS", base.shops, 12),
    seed: envInt("SOAK_SEED", base.seed, 0),
    writesPerDay: envInt("SOAK_WRITES_PER_DAY", base.writesPerDay, 1),
    tickMinutes: envInt("SOAK_TICK_MINUTES", base.tickMinutes, 1),
    retentionHours: envInt("SOAK_RETENTION_HOURS", base.retentionHours, 24),
    backlogHours: envInt("SOAK_BACKLOG_HOURS", base.backlogHours, 1),
  };
  if (p.backlogHours < p.retryWindowHours + 48) throw new Error(`SOAK_BACKLOG_HOURS must be at least the retry window + 48 h (${p.retryWindowHours + 48})`);
  if (1440 % p.tickMinutes) throw new Error(`SOAK_TICK_MINUTES must divide a day, got ${p.tickMinutes}`);
  return p;
}
