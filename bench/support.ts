/**
 * Shared bench plumbing: a fresh database on the configured server (DATABASE_URL, else an
 * embedded PostgreSQL in a temp dir), the app on port 0, percentiles and a table printer.
 * Benchmarks print figures; they assert nothing.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { type App, startApp } from "../src/app.ts";
import { createApiKey, createShop } from "../src/auth/api-keys.ts";
import { type Config, loadConfig } from "../src/config.ts";
import { startEmbeddedPostgres } from "../src/db/embedded.ts";
import { createLogger } from "../src/logger.ts";

export interface BenchDb {
  adminUrl: string;
  url: string;
  drop(): Promise<void>;
}

function withDatabase(url: string, db: string) {
  const u = new URL(url);
  u.pathname = "/" + db;
  return u.toString();
}

/** A fresh, empty database for one bench run (dropped by `drop`). */
export async function benchDatabase(): Promise<BenchDb> {
  let adminUrl = process.env.DATABASE_URL;
  let stopEmbedded = async () => {};
  if (!adminUrl) {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "shophook-bench-"));
    await fs.chmod(dir, 0o755);
    const pgServer = await startEmbeddedPostgres({ dataDir: path.join(dir, "data"), port: 20000 + Math.floor(Math.random() * 20000) });
    adminUrl = pgServer.url;
    stopEmbedded = async () => {
      await pgServer.stop();
      await fs.rm(dir, { recursive: true, force: true });
    };
  }
  const name = `shophook_bench_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  return {
    adminUrl,
    url: withDatabase(adminUrl, name),
    drop: async () => {
      const a = new pg.Client({ connectionString: adminUrl });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
      await stopEmbedded();
    },
  };
}

export async function benchApp(dbUrl: string, overrides: Partial<Config> = {}): Promise<App> {
  const config: Config = { ...loadConfig({}), port: 0, databaseUrl: dbUrl, logLevel: "warn", dbPoolSize: 20, ...overrides };
  return startApp(config, createLogger("warn"));
}

export async function benchShop(app: App, name = "bench"): Promise<{ id: string; key: string }> {
  const shop = await createShop(app.pool, name);
  return { id: shop.id, key: (await createApiKey(app.pool, shop.id)).key };
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function summarize(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b);
  return { n: s.length, p50: percentile(s, 50), p99: percentile(s, 99), max: s.at(-1) ?? NaN };
}

export const ms = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "-");

export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells: Array<string | number>) => "| " + cells.map((c, i) => String(c).padEnd(widths[i]!)).join(" | ") + " |";
  return [line(headers), "| " + widths.map((w) => "-".repeat(w)).join(" | ") + " |", ...rows.map(line)].join("\n");
}

export function machine(): string {
  const cpus = os.cpus();
  return `${cpus.length} x ${cpus[0]?.model ?? "cpu"}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`;
}
