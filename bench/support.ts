/**
 * Shared bench plumbing: a fresh database on the configured server (DATABASE_URL, else an
 * embedded PostgreSQL in a temp dir), the app on port 0, percentiles and a table printer.
 * Benchmarks print figures; they assert nothing.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import pg from "pg";
import { request } from "undici";
import { type App, startApp } from "../src/app.ts";
import { createApiKey, createShop } from "../src/auth/api-keys.ts";
import { type Config, loadConfig } from "../src/config.ts";
import { SERVE_NODE_FLAGS } from "../bin/node-flags.js";
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
  // SHOPHOOK_* variables of the bench's environment apply (an A/B of one setting), then the bench's own.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("SHOPHOOK_")));
  const config: Config = { ...loadConfig(env), port: 0, databaseUrl: dbUrl, logLevel: "warn", dbPoolSize: 20, ...overrides };
  return startApp(config, createLogger((process.env.BENCH_LOG as "info") ?? "warn"));
}

export async function benchShop(app: { pool: pg.Pool }, name = "bench"): Promise<{ id: string; key: string }> {
  const shop = await createShop(app.pool, name);
  return { id: shop.id, key: (await createApiKey(app.pool, shop.id)).key };
}

/** CPU time (ms) all cores have been busy so far (user, system, irq, steal...: everything but idle and iowait), from /proc/stat. */
export function machineBusyMs(): number {
  const [, ...ticks] = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/);
  const t = ticks.map(Number);
  const busy = t.reduce((a, b) => a + b, 0) - t[3]! - t[4]!; // minus idle, iowait
  return (busy * 1000) / 100;
}

/** CPU time (ms) this process has used so far. */
export const ownCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

export interface BenchService {
  url: string;
  /** CPU time (user + system) the service process has used so far, in ms (from /proc). */
  cpuMs(): number;
  stop(): Promise<void>;
}

/**
 * `shophook serve` in its own process, as deployed, so load generators in the bench process do
 * not share its event loop. Migrates `dbUrl` first (serve does); `env` adds SHOPHOOK_* settings.
 */
export async function benchService(dbUrl: string, env: Record<string, string> = {}): Promise<BenchService> {
  const proc = spawn(process.execPath, [...SERVE_NODE_FLAGS, path.join(import.meta.dirname, "..", "src", "cli", "main.ts"), "serve"], {
    env: { ...process.env, DATABASE_URL: dbUrl, PORT: "0", LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url: string = await new Promise((resolve, reject) => {
    proc.once("exit", (code) => reject(new Error(`shophook serve exited (${code}) before listening`)));
    readline.createInterface({ input: proc.stdout! }).on("line", (l) => {
      try {
        const entry = JSON.parse(l) as { msg?: string; url?: string };
        if (entry.msg === "listening") resolve(entry.url!);
      } catch {
        /* not a log line */
      }
    });
  });
  return {
    url,
    cpuMs: () => {
      const fields = readFileSync(`/proc/${proc.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // clock ticks at USER_HZ = 100
    },
    stop: () =>
      new Promise((resolve) => {
        proc.once("exit", () => resolve());
        proc.kill("SIGTERM");
      }),
  };
}

export interface BenchReceiver {
  port: number;
  /** URL of a path on the receiver: "/hook" answers 200, "/hang" never answers. */
  url(path?: string): string;
  /** GET /stats (or /arrivals, /reset, /fail, /heal). */
  get(what?: string): Promise<any>;
  stop(): void;
}

/** The bench receiver (bench/receiver.ts) in its own process, off the service's event loop. */
export async function startReceiver(): Promise<BenchReceiver> {
  const proc = spawn(process.execPath, [path.join(import.meta.dirname, "receiver.ts")], { stdio: ["ignore", "pipe", "inherit"] });
  const port: number = await new Promise((resolve) => readline.createInterface({ input: proc.stdout! }).once("line", (l) => resolve(JSON.parse(l).port)));
  return {
    port,
    url: (p = "/hook") => `http://127.0.0.1:${port}${p}`,
    get: async (what = "stats") => (await request(`http://127.0.0.1:${port}/${what}`)).body.json(),
    stop: () => proc.kill("SIGTERM"),
  };
}

/** A customer webhook for `shopId` straight in the table (no per-shop limit), cursor at the horizon. */
export async function createHook(app: App, shopId: string, url: string): Promise<string> {
  const { rows } = await app.pool.query(
    `INSERT INTO webhooks (id, shop_id, url, entities, subscriptions, secret, created_at, updated_at, cursor_xid, cursor_seq)
     VALUES (next_id(), $1, $2, '{customer}', '{customer:*}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', now(), now(), pg_snapshot_xmin(pg_current_snapshot()), 0) RETURNING id`,
    [shopId, url],
  );
  app.webhooksChanged?.(shopId);
  return rows[0].id as string;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A process's resident memory now, MiB (from /proc). */
export async function rssMiB(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

/** Samples a process's RSS every 100 ms while `work` runs; returns the peak, MiB. */
export async function peakRss<T>(pid: number, work: () => Promise<T>): Promise<{ peak: number; result: T }> {
  let peak = await rssMiB(pid);
  let running = true;
  const sampler = (async () => {
    while (running) {
      peak = Math.max(peak, await rssMiB(pid));
      await sleep(100);
    }
  })();
  try {
    const result = await work();
    running = false;
    await sampler; // its last sample counts too
    return { peak, result };
  } finally {
    running = false;
  }
}
export const wallMicros = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

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

/** One line of docs/performance.md: our figure beside the machine's limit from the same run. */
export interface Figure {
  figure: string;
  ours: string;
  limit: string;
  /** ours / limit, as shown ("0.42", "21%"), or "" when there is no limit to compare with. */
  ratio: string;
  target: string;
  met: boolean | undefined;
  note?: string;
}

/** Prints a figure and, under `npm run bench` (BENCH_RESULTS set), appends it for the page. */
export async function report(f: Figure): Promise<void> {
  console.log(`figure: ${f.figure}: ours ${f.ours}; limit ${f.limit || "-"}; ratio ${f.ratio || "-"}; target ${f.target}: ${f.met === undefined ? "-" : f.met ? "met" : "NOT met"}${f.note ? ` (${f.note})` : ""}`);
  if (process.env.BENCH_RESULTS) await fs.appendFile(process.env.BENCH_RESULTS, JSON.stringify(f) + "\n");
}

export const pct = (ours: number, limit: number) => `${((ours / limit) * 100).toFixed(0)}%`;
