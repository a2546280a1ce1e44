/**
 * Typed configuration, read once from the environment at start.
 * Every field has a default and a one-line doc; docs/configuration.md lists them.
 */
import path from "node:path";

export const ROLES = ["all", "api", "delivery"] as const;
export type Role = (typeof ROLES)[number];

/** Limits of the one port against slow, idle and abusive clients (docs/configuration.md). */
export interface ConnectionLimits {
  /** Open TCP connections at most; more are closed as they arrive. */
  maxConnections: number;
  /** HTTP/1.1: a request's headers must arrive within this (slowloris); also the first bytes of any connection. */
  headersTimeoutMs: number;
  /** HTTP/1.1: a whole request, body included. */
  requestTimeoutMs: number;
  /** HTTP/1.1: an idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** HTTP/2: a session with no stream and no frame for this long is closed (GOAWAY). */
  h2IdleTimeoutMs: number;
  /** HTTP/2: concurrent streams per session (SETTINGS_MAX_CONCURRENT_STREAMS). */
  h2MaxStreams: number;
}

export interface Config {
  /** HTTP/1.1 + HTTP/2 (gRPC) port. `PORT`, default 8080; 0 picks a free port. */
  port: number;
  /** Interface to listen on. `HOST`, default 127.0.0.1 (set 0.0.0.0 to expose). */
  host: string;
  /** PostgreSQL URL. `DATABASE_URL`; unset starts an embedded PostgreSQL. A direct (or session-pooled) connection: LISTEN, leases, pg-boss and migrations need sessions. */
  databaseUrl: string | undefined;
  /** The API's queries through a transaction-mode pooler (PgBouncer). `SHOPHOOK_API_DATABASE_URL`; unset: DATABASE_URL. */
  apiDatabaseUrl: string | undefined;
  /** Reads (List*, GetChanges, Get*) from a streaming replica. `SHOPHOOK_READ_DATABASE_URL`; unset: the API's database. */
  readDatabaseUrl: string | undefined;
  /** Data directory of the embedded PostgreSQL. `SHOPHOOK_DATA_DIR`, default `<project>/.data/postgres`. */
  embeddedDataDir: string;
  /** Port of the embedded PostgreSQL. `SHOPHOOK_EMBEDDED_PG_PORT`, default 54329. */
  embeddedPort: number;
  /** Connections in the service's pool. `SHOPHOOK_DB_POOL_SIZE`, default 20. */
  dbPoolSize: number;
  /** Connections for delivery bookkeeping. `SHOPHOOK_DELIVERY_POOL_SIZE`, default 10. */
  deliveryPoolSize: number;
  /** Largest request body accepted, in bytes. `SHOPHOOK_BODY_LIMIT_BYTES`, default 1 MiB. */
  bodyLimitBytes: number;
  /** Connection limits of the one port (server/one-port.ts): see docs/configuration.md. */
  connections: ConnectionLimits;
  /** pino log level. `LOG_LEVEL`, default info. */
  logLevel: string;
  /** Time SIGTERM waits for in-flight work before forcing exit. `SHOPHOOK_SHUTDOWN_TIMEOUT_MS`, default 10000. */
  shutdownTimeoutMs: number;
  /** How long changes and tombstones are kept; older sync cursors must resync. `SHOPHOOK_CHANGE_RETENTION_HOURS`, default 168 (7 days). */
  changeRetentionHours: number;
  /**
   * How long changes a webhook has not delivered yet are kept past the retention (a paused or
   * stopped webhook resumes without a hole). `SHOPHOOK_WEBHOOK_BACKLOG_MAX_HOURS`, default 720 (30 days).
   */
  webhookBacklogMaxHours: number;
  /** When the retention prune runs (cron, UTC). `SHOPHOOK_PRUNE_CRON`, default every 10 minutes. */
  pruneCron: string;
  /** Webhook URLs may be plain http (otherwise https only). `SHOPHOOK_WEBHOOK_ALLOW_HTTP`, default false. */
  webhookAllowHttp: boolean;
  /**
   * Addresses webhooks may reach although they are not public (loopback, private...): comma-separated
   * CIDRs or IPs, or "*". `SHOPHOOK_WEBHOOK_ALLOW_PRIVATE`, default none. Tests and local development set it.
   */
  webhookAllowPrivate: string[];
  /** DNS servers for webhook hosts ("ip" or "ip:port", comma-separated); unset: the system's. `SHOPHOOK_DNS_SERVERS`. */
  dnsServers: string[];
  /** Webhooks a shop may have. `SHOPHOOK_MAX_WEBHOOKS_PER_SHOP`, default 20. */
  maxWebhooksPerShop: number;
  /** Time allowed for one delivery request, connect to last byte. `SHOPHOOK_DELIVERY_TIMEOUT_MS`, default 10000. */
  deliveryTimeoutMs: number;
  /** Changes per delivery request at most (eTop: 1000). `SHOPHOOK_BATCH_MAX_CHANGES`, default 1000. */
  batchMaxChanges: number;
  /** Bytes per delivery request body at most (a single larger change is sent alone). `SHOPHOOK_BATCH_MAX_BYTES`, default 1 MiB. */
  batchMaxBytes: number;
  /** First retry delay; each failure doubles it (with jitter). `SHOPHOOK_RETRY_BASE_SECONDS`, default 30. */
  retryBaseSeconds: number;
  /** Longest single retry delay. `SHOPHOOK_RETRY_MAX_STEP_SECONDS`, default 14400 (4 h). */
  retryMaxStepSeconds: number;
  /** After failing this long, a webhook goes to "stop". `SHOPHOOK_RETRY_WINDOW_HOURS`, default 72 (Standard Webhooks). */
  retryWindowHours: number;
  /** Webhook deliveries in flight at once in one instance. `SHOPHOOK_DELIVERY_CONCURRENCY`, default 2000. */
  deliveryConcurrency: number;
  /**
   * Bytes of changes one instance's deliveries hold at once (read, rendered, in flight); turns
   * wait for room. `SHOPHOOK_DELIVERY_MEMORY_BYTES`, default 64 MiB.
   */
  deliveryMemoryBytes: number;
  /** How often the due sweep (retries due, orphaned leases) and the change watcher's poll run. `SHOPHOOK_SWEEP_INTERVAL_MS`, default 1000. */
  sweepIntervalMs: number;
  /** How often every webhook is checked for undelivered changes (the last safety net). `SHOPHOOK_FULL_SWEEP_INTERVAL_MS`, default 300000. */
  fullSweepIntervalMs: number;
  /**
   * What this instance does. `SHOPHOOK_ROLE` (or `serve --role`): `all` (default), `api` (serves
   * the API, delivers nothing), `delivery` (delivers; serves only probes and metrics).
   * `SHOPHOOK_DELIVERY_ENABLED=false` is the older spelling of `api`.
   */
  role: Role;
  /** Run the delivery engine in this process: role `all` or `delivery`. */
  deliveryEnabled: boolean;
  /** Serve the RPCs and the dashboard: role `all` or `api`. */
  apiEnabled: boolean;
  /** Longest wait a receiver's 429 Retry-After can ask for. `SHOPHOOK_RETRY_AFTER_MAX_SECONDS`, default 3600. */
  retryAfterMaxSeconds: number;
  /** Days of delivery history kept. `SHOPHOOK_DELIVERY_HISTORY_DAYS`, default 30. */
  deliveryHistoryDays: number;
  /** Bearer token for GET /metrics; unset: /metrics answers loopback clients only. `SHOPHOOK_METRICS_TOKEN`. */
  metricsToken: string | undefined;
  /**
   * PEM files: with both, the one port speaks TLS only (HTTPS, gRPC over TLS: ALPN h2 and
   * http/1.1), and picks up new files when they change. `SHOPHOOK_TLS_CERT`, `SHOPHOOK_TLS_KEY`.
   */
  tls: { certFile: string; keyFile: string } | undefined;
  /** Warn when a transaction holding the feed back has been open this long. `SHOPHOOK_STALL_WARN_SECONDS`, default 30. */
  stallWarnSeconds: number;
}

/** The project root: two levels above this file (src/config.ts). */
export const projectRoot = path.resolve(import.meta.dirname, "..");

class ConfigError extends Error {}

function int(env: NodeJS.ProcessEnv, name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return def;
  if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be an integer, got "${raw}"`);
  const v = Number(raw);
  if (v < min || v > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${v}`);
  return v;
}

function bool(env: NodeJS.ProcessEnv, name: string, def: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === "") return def;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
}

function list(env: NodeJS.ProcessEnv, name: string): string[] {
  return (env[name] ?? "").split(",").map((s) => s.trim()).filter(Boolean);
}

function str(env: NodeJS.ProcessEnv, name: string, def: string): string {
  const raw = env[name];
  return raw === undefined || raw === "" ? def : raw;
}

/** Reads the configuration from `env`; throws a readable error naming the bad variable. */
function tlsFiles(env: NodeJS.ProcessEnv): Config["tls"] {
  const certFile = env.SHOPHOOK_TLS_CERT || undefined;
  const keyFile = env.SHOPHOOK_TLS_KEY || undefined;
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) throw new ConfigError(`TLS needs both SHOPHOOK_TLS_CERT and SHOPHOOK_TLS_KEY; only ${certFile ? "SHOPHOOK_TLS_CERT" : "SHOPHOOK_TLS_KEY"} is set`);
  return { certFile: path.resolve(certFile), keyFile: path.resolve(keyFile) };
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const logLevel = str(env, "LOG_LEVEL", "info");
  const levels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
  if (!levels.includes(logLevel)) throw new ConfigError(`LOG_LEVEL must be one of ${levels.join(", ")}, got "${logLevel}"`);
  const role = str(env, "SHOPHOOK_ROLE", bool(env, "SHOPHOOK_DELIVERY_ENABLED", true) ? "all" : "api") as Role;
  if (!ROLES.includes(role)) throw new ConfigError(`SHOPHOOK_ROLE must be one of ${ROLES.join(", ")}, got "${role}"`);
  if (role === "delivery" && !bool(env, "SHOPHOOK_DELIVERY_ENABLED", true)) throw new ConfigError("SHOPHOOK_ROLE=delivery contradicts SHOPHOOK_DELIVERY_ENABLED=false");
  const config: Config = {
    port: int(env, "PORT", 8080, 0, 65535),
    host: str(env, "HOST", "127.0.0.1"),
    databaseUrl: env.DATABASE_URL || undefined,
    apiDatabaseUrl: env.SHOPHOOK_API_DATABASE_URL || undefined,
    readDatabaseUrl: env.SHOPHOOK_READ_DATABASE_URL || undefined,
    embeddedDataDir: path.resolve(str(env, "SHOPHOOK_DATA_DIR", path.join(projectRoot, ".data", "postgres"))),
    embeddedPort: int(env, "SHOPHOOK_EMBEDDED_PG_PORT", 54329, 1, 65535),
    dbPoolSize: int(env, "SHOPHOOK_DB_POOL_SIZE", 20, 2, 1000),
    deliveryPoolSize: int(env, "SHOPHOOK_DELIVERY_POOL_SIZE", 10, 2, 1000),
    bodyLimitBytes: int(env, "SHOPHOOK_BODY_LIMIT_BYTES", 1024 * 1024, 1024, 256 * 1024 * 1024),
    connections: {
      maxConnections: int(env, "SHOPHOOK_MAX_CONNECTIONS", 10_000, 1, 1_000_000),
      headersTimeoutMs: int(env, "SHOPHOOK_HEADERS_TIMEOUT_MS", 10_000, 100, 600_000),
      requestTimeoutMs: int(env, "SHOPHOOK_REQUEST_TIMEOUT_MS", 60_000, 100, 3_600_000),
      keepAliveTimeoutMs: int(env, "SHOPHOOK_KEEP_ALIVE_TIMEOUT_MS", 5_000, 100, 600_000),
      h2IdleTimeoutMs: int(env, "SHOPHOOK_H2_IDLE_TIMEOUT_MS", 300_000, 100, 86_400_000),
      h2MaxStreams: int(env, "SHOPHOOK_H2_MAX_STREAMS", 100, 1, 10_000),
    },
    logLevel,
    shutdownTimeoutMs: int(env, "SHOPHOOK_SHUTDOWN_TIMEOUT_MS", 10_000, 100, 600_000),
    changeRetentionHours: int(env, "SHOPHOOK_CHANGE_RETENTION_HOURS", 168, 1, 24 * 365),
    webhookBacklogMaxHours: int(env, "SHOPHOOK_WEBHOOK_BACKLOG_MAX_HOURS", 720, 1, 24 * 3650),
    pruneCron: str(env, "SHOPHOOK_PRUNE_CRON", "*/10 * * * *"),
    webhookAllowHttp: bool(env, "SHOPHOOK_WEBHOOK_ALLOW_HTTP", false),
    webhookAllowPrivate: list(env, "SHOPHOOK_WEBHOOK_ALLOW_PRIVATE"),
    dnsServers: list(env, "SHOPHOOK_DNS_SERVERS"),
    maxWebhooksPerShop: int(env, "SHOPHOOK_MAX_WEBHOOKS_PER_SHOP", 20, 1, 100_000),
    deliveryTimeoutMs: int(env, "SHOPHOOK_DELIVERY_TIMEOUT_MS", 10_000, 100, 120_000),
    batchMaxChanges: int(env, "SHOPHOOK_BATCH_MAX_CHANGES", 1000, 1, 10_000),
    batchMaxBytes: int(env, "SHOPHOOK_BATCH_MAX_BYTES", 1024 * 1024, 1024, 64 * 1024 * 1024),
    retryBaseSeconds: int(env, "SHOPHOOK_RETRY_BASE_SECONDS", 30, 1, 86_400),
    retryMaxStepSeconds: int(env, "SHOPHOOK_RETRY_MAX_STEP_SECONDS", 4 * 3600, 1, 7 * 86_400),
    retryWindowHours: int(env, "SHOPHOOK_RETRY_WINDOW_HOURS", 72, 1, 24 * 90),
    deliveryConcurrency: int(env, "SHOPHOOK_DELIVERY_CONCURRENCY", 2000, 1, 100_000),
    deliveryMemoryBytes: int(env, "SHOPHOOK_DELIVERY_MEMORY_BYTES", 64 * 1024 * 1024, 1024 * 1024, 64 * 1024 * 1024 * 1024),
    sweepIntervalMs: int(env, "SHOPHOOK_SWEEP_INTERVAL_MS", 1000, 10, 600_000),
    fullSweepIntervalMs: int(env, "SHOPHOOK_FULL_SWEEP_INTERVAL_MS", 300_000, 1000, 86_400_000),
    role,
    deliveryEnabled: role !== "api",
    apiEnabled: role !== "delivery",
    retryAfterMaxSeconds: int(env, "SHOPHOOK_RETRY_AFTER_MAX_SECONDS", 3600, 1, 86_400),
    deliveryHistoryDays: int(env, "SHOPHOOK_DELIVERY_HISTORY_DAYS", 30, 1, 3650),
    metricsToken: env.SHOPHOOK_METRICS_TOKEN || undefined,
    tls: tlsFiles(env),
    stallWarnSeconds: int(env, "SHOPHOOK_STALL_WARN_SECONDS", 30, 1, 86_400),
  };
  if ((config.apiDatabaseUrl || config.readDatabaseUrl) && !config.databaseUrl) {
    throw new ConfigError("SHOPHOOK_API_DATABASE_URL and SHOPHOOK_READ_DATABASE_URL need DATABASE_URL (the embedded PostgreSQL has neither a pooler nor a replica)");
  }
  if (config.webhookBacklogMaxHours < config.retryWindowHours) {
    throw new ConfigError(
      `SHOPHOOK_WEBHOOK_BACKLOG_MAX_HOURS (${config.webhookBacklogMaxHours}) must be at least SHOPHOOK_RETRY_WINDOW_HOURS (${config.retryWindowHours}): a retrying webhook's changes must outlive its retries`,
    );
  }
  return config;
}

export { ConfigError };
