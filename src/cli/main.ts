/**
 * `shophook` command line: serve, migrate, and shop/key administration against the configured
 * database (DATABASE_URL, or the embedded PostgreSQL).
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { type App, startApp } from "../app.ts";
import { createApiKey, createShop, revokeApiKey } from "../auth/api-keys.ts";
import { parseScopes, SCOPES } from "../auth/scopes.ts";
import { ConfigError, loadConfig } from "../config.ts";
import { openDatabase, type Database } from "../db/database.ts";
import { loadMigrations, migrate } from "../db/migrate.ts";
import * as sql from "../db/sql/shops.ts";
import { createLogger } from "../logger.ts";
import { listen } from "./listen.ts";

class UsageError extends Error {}

interface Command {
  usage: string;
  summary: string;
  /** Runs until a signal (serve, listen) instead of exiting when done. */
  keepsRunning?: boolean;
  options?: Record<string, { type: "string" | "boolean"; short?: string; doc: string }>;
  run(args: string[], flags: Record<string, string | boolean | undefined>): Promise<unknown>;
}

const out = (line: string) => process.stdout.write(line + "\n");
const json = (v: unknown) => out(JSON.stringify(v, null, 2));

const progress = (line: string) => process.stderr.write(line + "\n");

/**
 * Opens the database quietly (CLI output stays readable), migrates it unless told not to, runs
 * `fn`, closes it. Without DATABASE_URL it says on stderr that the embedded PostgreSQL is
 * starting: a first start runs initdb, seconds of silence otherwise.
 */
async function withDb<T>(fn: (db: Database) => Promise<T>, opts: { migrate?: boolean } = {}): Promise<T> {
  const config = loadConfig();
  if (!config.databaseUrl) {
    const first = !existsSync(path.join(config.embeddedDataDir, "PG_VERSION"));
    progress(`starting the embedded PostgreSQL in ${config.embeddedDataDir}${first ? " (first start: initdb, a few seconds)" : ""}…`);
  }
  const db = await openDatabase(config, createLogger(process.env.LOG_LEVEL ?? "warn"));
  try {
    if (opts.migrate ?? true) await migrate(db.directPool);
    return await fn(db);
  } finally {
    await db.close();
  }
}

const commands: Record<string, Command> = {
  serve: {
    keepsRunning: true,
    usage: "shophook serve [--role all|api|delivery]",
    summary: "Start the API server (and, without DATABASE_URL, the embedded PostgreSQL). SIGTERM stops it gracefully.",
    options: {
      role: { type: "string", doc: "all (default): API and delivery; api: API only; delivery: delivery only (probes and metrics served). Same as SHOPHOOK_ROLE" },
    },
    async run(_args, flags) {
      const config = loadConfig(flags.role === undefined ? process.env : { ...process.env, SHOPHOOK_ROLE: String(flags.role) });
      const log = createLogger(config.logLevel);
      const state: { app?: App; signal?: string; stopping?: boolean } = {};
      const shutdown = () => {
        if (state.stopping) return;
        state.stopping = true;
        log.info({ signal: state.signal }, "signal received");
        // A bound on the whole shutdown, beyond the server's own drain timeout.
        setTimeout(() => {
          log.error("shutdown took too long; exiting");
          process.exit(1);
        }, config.shutdownTimeoutMs + 5_000).unref();
        state.app!.stop().then(
          () => process.exit(0),
          (err: unknown) => {
            log.error({ err }, "shutdown failed");
            process.exit(1);
          },
        );
      };
      // Handlers first: a signal that arrives while starting stops the service once it is up.
      // They stay installed: a repeated signal (Ctrl-C reaches both bin/shophook.js and this
      // process, which the launcher also forwards) must not kill the drain midway.
      for (const name of ["SIGTERM", "SIGINT"] as const) {
        process.on(name, () => {
          state.signal ??= name;
          if (state.app) shutdown();
        });
      }
      // A promise nobody awaited that failed (a bug of ours, never a client's input: those are
      // answered as errors) is logged loudly; the service keeps serving, its state is in Postgres.
      process.on("unhandledRejection", (reason) => log.error({ err: reason }, "unhandled rejection (a bug: please report it)"));
      state.app = await startApp(config, log);
      if (state.signal) shutdown();
    },
  },
  listen: {
    keepsRunning: true,
    usage: "shophook listen [--port 9000] [--secret whsec_...] [--json] [--status 200]",
    summary: "Receive webhooks locally: print each delivery (entity, action, id, changed fields) and check its signature.",
    options: {
      port: { type: "string", doc: "port to listen on (default 9000)" },
      host: { type: "string", doc: "interface (default 127.0.0.1)" },
      secret: { type: "string", doc: "the webhook's whsec_ secret: signatures are verified, invalid ones answered 401" },
      json: { type: "boolean", doc: "print each request (headers and body) as one JSON line" },
      status: { type: "string", doc: "HTTP status to answer valid deliveries with (default 200; try 500 to see retries)" },
    },
    async run(_args, flags) {
      const port = Number(flags.port ?? 9000);
      const status = Number(flags.status ?? 200);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be a port number, got "${String(flags.port)}"`);
      if (!Number.isInteger(status) || status < 200 || status > 599) throw new UsageError(`--status must be an HTTP status from 200 to 599, got "${String(flags.status)}"`);
      const secret = flags.secret as string | undefined;
      if (secret !== undefined && !/^whsec_[A-Za-z0-9+/=]+$/.test(secret)) throw new UsageError("--secret must be the webhook's whsec_... secret");
      const server = await listen({ port, host: (flags.host as string | undefined) ?? "127.0.0.1", secret, json: Boolean(flags.json), status, out });
      for (const name of ["SIGTERM", "SIGINT"] as const) process.once(name, () => server.close(() => process.exit(0)));
    },
  },
  migrate: {
    usage: "shophook migrate",
    summary: "Apply pending database migrations and exit (serve also does this at start).",
    async run() {
      const applied = await withDb((db) => migrate(db.directPool), { migrate: false });
      const migrations = await loadMigrations();
      const label = (version: number) => {
        const m = migrations.find((x) => x.version === version);
        return `${String(version).padStart(4, "0")}_${m?.name ?? "?"}`;
      };
      if (!applied.length) return out(`nothing to apply: the database is up to date (latest migration ${label(Math.max(0, ...migrations.map((m) => m.version)))})`);
      for (const v of applied) out(`applied ${label(v)}`);
      out(`${applied.length} migration${applied.length === 1 ? "" : "s"} applied`);
    },
  },
  "shop create": {
    usage: "shophook shop create <name> [--key-name NAME] [--no-key] [--json]",
    summary: "Create a shop and, unless --no-key, a first API key (printed once: store it now).",
    options: {
      "key-name": { type: "string", doc: "name of the first key (default: default)" },
      "no-key": { type: "boolean", doc: "create the shop without a key" },
      json: { type: "boolean", doc: "print JSON" },
    },
    async run(args, flags) {
      const name = args.join(" ").trim();
      if (!name) throw new UsageError("shop name is required");
      const result = await withDb(async (db) => {
        const shop = await createShop(db.pool, name);
        const key = flags["no-key"] ? undefined : await createApiKey(db.pool, shop.id, (flags["key-name"] as string | undefined) ?? "default");
        return { shop, key };
      });
      if (flags.json) return json({ shop: result.shop, api_key: result.key && { ...result.key.row, key: result.key.key } });
      out(`shop ${result.shop.id} "${result.shop.name}" created`);
      if (result.key) {
        out(`api key ${result.key.row.id} created; it is shown only now:`);
        out(result.key.key);
      }
    },
  },
  "shop list": {
    usage: "shophook shop list [--json]",
    summary: "List shops.",
    options: { json: { type: "boolean", doc: "print JSON" } },
    async run(_args, flags) {
      const rows = await withDb(async (db) => (await db.pool.query<sql.ShopRow>(sql.listShops())).rows);
      if (flags.json) return json(rows);
      if (!rows.length) return out("no shops");
      for (const r of rows) out(`${r.id}  ${r.created_at.toISOString()}  ${r.name}`);
    },
  },
  "key create": {
    usage: "shophook key create <shop-id> [--name NAME] [--scopes read,write,webhooks,keys] [--json]",
    summary: "Create an API key for a shop; the key is printed once and stored only as a hash.",
    options: {
      name: { type: "string", doc: "a label for the key" },
      scopes: { type: "string", doc: "what it may do, comma-separated: read, write, webhooks, keys (default: all)" },
      json: { type: "boolean", doc: "print JSON" },
    },
    async run(args, flags) {
      const shopId = args[0];
      if (!shopId) throw new UsageError("shop id is required");
      const scopes = ((flags.scopes as string | undefined) ?? "").split(",");
      try {
        parseScopes(scopes);
      } catch (err) {
        throw new UsageError(`--scopes: ${(err as Error).message}`);
      }
      const { key, row } = await withDb((db) => createApiKey(db.pool, shopId, (flags.name as string | undefined) ?? "", scopes));
      if (flags.json) return json({ ...row, key });
      out(`api key ${row.id} created for shop ${row.shop_id}; it is shown only now:`);
      out(key);
    },
  },
  "key list": {
    usage: "shophook key list <shop-id> [--json]",
    summary: "List a shop's API keys (prefixes only; keys are never stored).",
    options: { json: { type: "boolean", doc: "print JSON" } },
    async run(args, flags) {
      const shopId = args[0];
      if (!shopId || !/^\d{1,19}$/.test(shopId)) throw new UsageError("shop id (an integer) is required");
      const rows = await withDb(async (db) => (await db.pool.query<sql.ApiKeyRow>(sql.listApiKeys(shopId))).rows);
      if (flags.json) return json(rows);
      if (!rows.length) return out("no keys");
      for (const r of rows) out(`${r.id}  ${r.prefix}…  ${r.revoked_at ? "revoked " + r.revoked_at.toISOString() : "active"}  ${(r.scopes ?? SCOPES).join(",")}  ${r.name}`);
    },
  },
  "key revoke": {
    usage: "shophook key revoke <key-id>",
    summary: "Revoke an API key: requests with it are refused from now on.",
    async run(args) {
      const keyId = args[0];
      if (!keyId) throw new UsageError("key id is required");
      const row = await withDb((db) => revokeApiKey(db.pool, keyId));
      if (!row) throw new UsageError(`no key with id ${keyId}`);
      out(`api key ${row.id} revoked at ${row.revoked_at!.toISOString()}`);
    },
  },
};

function help(): string {
  const lines = ["Usage: shophook <command> [options]   (--help after any command for its options)", "", "Commands:"];
  for (const c of Object.values(commands)) lines.push(`  ${c.usage}`, `      ${c.summary}`);
  lines.push("", "Configuration comes from the environment (DATABASE_URL, PORT, ...): see docs/configuration.md.");
  return lines.join("\n");
}

function commandHelp(c: Command): string {
  const lines = [`Usage: ${c.usage}`, "", c.summary];
  if (c.options) {
    lines.push("", "Options:");
    const flag = (name: string, type: string) => `--${name}${type === "string" ? " VALUE" : ""}`;
    const width = Math.max(...Object.entries(c.options).map(([n, o]) => flag(n, o.type).length));
    for (const [name, o] of Object.entries(c.options)) lines.push(`  ${flag(name, o.type).padEnd(width)}   ${o.doc}`);
  }
  return lines.join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const two = `${argv[0] ?? ""} ${argv[1] ?? ""}`;
  const [name, rest] = commands[two] ? [two, argv.slice(2)] : [argv[0] ?? "", argv.slice(1)];
  const command = commands[name];
  if (!command) {
    if (!name || name === "help" || name === "--help" || name === "-h") {
      out(help());
      return name ? 0 : 2;
    }
    process.stderr.write(`shophook: unknown command "${argv.slice(0, 2).join(" ")}"\n\n${help()}\n`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    out(commandHelp(command));
    return 0;
  }
  try {
    const options = Object.fromEntries(Object.entries(command.options ?? {}).map(([k, o]) => [k, { type: o.type }]));
    const { values, positionals } = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
    await command.run(positionals, values as Record<string, string | boolean | undefined>);
    return 0;
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError || err instanceof RangeError || String((err as { code?: unknown }).code).startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`shophook ${name}: ${(err as Error).message}\n\n${commandHelp(command)}\n`);
      return 2;
    }
    process.stderr.write(`shophook ${name}: ${(err as Error).message}\n`);
    return 1;
  }
}

/** Runs the CLI as a process: serve and listen keep running until a signal; other commands exit with their status. */
export async function run(argv: string[]): Promise<void> {
  const code = await main(argv);
  if (!commands[argv[0] ?? ""]?.keepsRunning || argv.includes("--help") || argv.includes("-h") || code !== 0) process.exit(code);
}

if (import.meta.main) await run(process.argv.slice(2));
