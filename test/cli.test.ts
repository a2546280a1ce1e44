/**
 * The `shophook` command line: help, migrate on a fresh database, the embedded PostgreSQL's
 * progress line, shop and key administration, and `listen` receiving real deliveries.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { Customer } from "../gen/shop/customer_pb.ts";
import { Webhook } from "../gen/shop/webhook_pb.ts";
import { loadMigrations } from "../src/db/migrate.ts";
import { postJson, useApp } from "./support/app.ts";
import { cliEntry } from "./support/process.ts";
import { withDatabase } from "./support/urls.ts";

const t = useApp({ webhookAllowHttp: true, webhookAllowPrivate: ["127.0.0.1"], sweepIntervalMs: 100 });
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill("SIGTERM");
});

/** Runs the CLI with the test database; `env` adds variables, or removes them with undefined. */
function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const merged = Object.entries({ PATH: process.env.PATH ?? "", DATABASE_URL: t.dbUrl, ...env }).filter((e): e is [string, string] => e[1] !== undefined);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cliEntry, ...args], { env: Object.fromEntries(merged) });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Starts `shophook listen` and resolves with its port and a way to wait for output. */
function startListen(args: string[]) {
  const child = spawn(process.execPath, [cliEntry, "listen", "--port", "0", ...args], { env: { PATH: process.env.PATH ?? "" } });
  children.push(child);
  let out = "";
  const waiters: Array<() => void> = [];
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
    for (const w of waiters.splice(0)) w();
  });
  const until = (re: RegExp, timeoutMs = 10_000) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`listen output never matched ${re}:\n${out}`)), timeoutMs);
      const check = () => {
        const m = re.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[0]);
        } else waiters.push(check);
      };
      check();
    });
  return { child, until, output: () => out };
}

describe("shophook CLI", () => {
  it("has --help for every command and clear errors", async () => {
    const top = await cli(["--help"]);
    expect(top.code).toBe(0);
    for (const c of ["serve", "migrate", "shop create", "shop list", "key create", "key list", "key revoke", "listen"]) {
      expect(top.stdout).toContain(`shophook ${c}`);
      const help = await cli([...c.split(" "), "--help"]);
      expect(help.code, c).toBe(0);
      expect(help.stdout).toMatch(/^Usage: shophook /);
    }
    const unknown = await cli(["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command "frobnicate"/);
    const missing = await cli(["key", "create"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/shop id is required/);
    const badFlag = await cli(["shop", "list", "--nope"]);
    expect(badFlag.code).toBe(2);
  });

  it("migrate applies every migration to a fresh, empty database and says which; a second run has nothing to apply", async () => {
    const name = `shophook_cli_${randomBytes(4).toString("hex")}`;
    const admin = new pg.Client({ connectionString: t.dbUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    const url = withDatabase(t.dbUrl, name);
    try {
      const migrations = await loadMigrations();
      expect(migrations.length).toBeGreaterThan(1);
      const first = await cli(["migrate"], { DATABASE_URL: url });
      expect(first.code, first.stderr).toBe(0);
      expect(first.stderr).toBe(""); // DATABASE_URL set: no embedded PostgreSQL to announce
      expect(first.stdout.trim().split("\n")).toEqual([
        ...migrations.map((m) => `applied ${String(m.version).padStart(4, "0")}_${m.name}`),
        `${migrations.length} migrations applied`,
      ]);
      const db = new pg.Client({ connectionString: url });
      await db.connect();
      try {
        const { rows } = await db.query<{ version: number }>("SELECT version FROM schema_migrations ORDER BY version");
        expect(rows.map((r) => r.version)).toEqual(migrations.map((m) => m.version));
        expect((await db.query("SELECT count(*)::int AS n FROM shops")).rows[0].n).toBe(0); // the schema is there
      } finally {
        await db.end();
      }
      const last = migrations.at(-1)!;
      const second = await cli(["migrate"], { DATABASE_URL: url });
      expect(second.code, second.stderr).toBe(0);
      expect(second.stdout).toBe(`nothing to apply: the database is up to date (latest migration ${String(last.version).padStart(4, "0")}_${last.name})\n`);
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    }
  });

  it("without DATABASE_URL, says on stderr that it starts the embedded PostgreSQL (initdb on the first start), then answers", { timeout: 180_000 }, async () => {
    const work = await fs.mkdtemp(path.join(os.tmpdir(), "shophook-cli-pg-"));
    await fs.chmod(work, 0o755); // as root, PostgreSQL runs as the user postgres, which must enter it
    const dataDir = path.join(work, "pg");
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.on("error", reject);
      s.listen(0, "127.0.0.1", () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const env = { DATABASE_URL: undefined, SHOPHOOK_DATA_DIR: dataDir, SHOPHOOK_EMBEDDED_PG_PORT: String(port) };
    try {
      const first = await cli(["shop", "list"], env);
      expect(first.code, first.stderr).toBe(0);
      expect(first.stderr).toBe(`starting the embedded PostgreSQL in ${dataDir} (first start: initdb, a few seconds)…\n`);
      expect(first.stdout).toBe("no shops\n");
      expect(existsSync(path.join(dataDir, "PG_VERSION"))).toBe(true);
      expect(existsSync(path.join(dataDir, "postmaster.pid"))).toBe(false); // the CLI stopped the server it started

      const created = await cli(["shop", "create", "Embedded shop", "--no-key"], env);
      expect(created.code, created.stderr).toBe(0);
      expect(created.stderr).toBe(`starting the embedded PostgreSQL in ${dataDir}…\n`); // initialised already
      expect((await cli(["shop", "list"], env)).stdout).toMatch(/^\d+ {2}\S+ {2}Embedded shop\n$/);
    } finally {
      await fs.rm(work, { recursive: true, force: true });
    }
  });

  it("creates a shop with a key, lists and revokes keys; the key works until revoked", async () => {
    const created = await cli(["shop", "create", "CLI shop", "--json"]);
    expect(created.code, created.stderr).toBe(0);
    const { shop, api_key } = JSON.parse(created.stdout);
    expect(shop.name).toBe("CLI shop");
    expect(api_key.key).toMatch(/^shk_/);
    const call = () => postJson(`${t.app.url}/v1/shop.Misc/CurrentAccount`, {}, { authorization: `Bearer ${api_key.key}` });
    expect((await call()).status).toBe(200);
    const second = await cli(["key", "create", shop.id, "--name", "ci"]);
    expect(second.stdout).toMatch(/shown only now:\nshk_/);
    const list = await cli(["key", "list", shop.id]);
    expect(list.stdout.trim().split("\n")).toHaveLength(2);
    expect(list.stdout).not.toContain(api_key.key);
    const revoked = await cli(["key", "revoke", api_key.id]);
    expect(revoked.stdout).toMatch(/revoked at/);
    // Revoked by another process: the server refuses the key once its key cache (1 s) expires.
    await expect.poll(async () => (await call()).status, { timeout: 5_000, interval: 100 }).toBe(401);
  });

  it("listen prints each delivery and verifies its signature", async () => {
    const shop = await t.shop();
    const good = startListen([]);
    const port = Number((await good.until(/listening on http:\/\/127\.0\.0\.1:(\d+)/)).split(":").at(-1)!.replace("/", ""));
    const wh = await shop.client(Webhook).createWebhook({ url: `http://127.0.0.1:${port}/`, entities: ["customer"] });
    // restart it with the secret
    good.child.kill("SIGTERM");
    const l = startListen(["--secret", wh.secret]);
    const port2 = Number((await l.until(/listening on http:\/\/127\.0\.0\.1:\d+/)).split(":").at(-1));
    await shop.client(Webhook).updateWebhook({ id: wh.id, url: `http://127.0.0.1:${port2}/` });
    const c = await shop.client(Customer).createCustomer({ fullName: "Lan" });
    await shop.client(Customer).updateCustomer({ id: c.id, phone: "0901", email: "lan@example.com" });
    await l.until(new RegExp(`customer\\.updated  ${c.id}  changed: phone, email`));
    expect(l.output()).toMatch(new RegExp(`customer\\.created  ${c.id}`));
    expect(l.output()).toMatch(/signature ok/);

    const wrong = startListen(["--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
    const port3 = Number((await wrong.until(/listening on http:\/\/127\.0\.0\.1:\d+/)).split(":").at(-1));
    const wh2 = await shop.client(Webhook).createWebhook({ url: `http://127.0.0.1:${port3}/`, entities: ["customer"] });
    await shop.client(Customer).createCustomer({ fullName: "Forged?" });
    await wrong.until(/signature INVALID/);
    await expect.poll(async () => (await shop.client(Webhook).getWebhook({ id: wh2.id })).states?.lastError?.respStatus).toBe(401);
  });
});
