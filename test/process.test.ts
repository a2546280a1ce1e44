/** The service as a process: graceful SIGTERM, two instances on one database, the embedded default. */
import fs from "node:fs/promises";
import http2 from "node:http2";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, describe, expect, inject, it } from "vitest";
import { createApiKey, createShop } from "../src/auth/api-keys.ts";
import { createPool } from "../src/db/pool.ts";
import { createTestDatabase, dropTestDatabase } from "./support/db.ts";
import { startService } from "./support/process.ts";
import { withDatabase } from "./support/urls.ts";

const dbs: string[] = [];
afterAll(async () => {
  for (const url of dbs) await dropTestDatabase(url);
});

async function shopKey(dbUrl: string): Promise<string> {
  const pool = createPool(dbUrl, 2);
  try {
    const shop = await createShop(pool, "process test");
    return (await createApiKey(pool, shop.id)).key;
  } finally {
    await pool.end();
  }
}

describe("SIGTERM", () => {
  it("finishes the in-flight request, closes keep-alive and HTTP/2 sessions, exits 0, even signalled twice", async () => {
    const dbUrl = await createTestDatabase();
    dbs.push(dbUrl);
    const svc = await startService({ DATABASE_URL: dbUrl, SHOPHOOK_SHUTDOWN_TIMEOUT_MS: "5000" });
    const key = await shopKey(dbUrl);

    // An idle HTTP/2 session and an idle keep-alive HTTP/1.1 connection.
    const session = http2.connect(svc.url);
    await new Promise<void>((resolve, reject) => session.once("connect", () => resolve()).once("error", reject));
    const sessionClosed = new Promise<void>((resolve) => session.once("close", () => resolve()));
    const idle = net.connect(svc.port, "127.0.0.1");
    await new Promise((r) => idle.once("connect", r));
    idle.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    await new Promise((r) => idle.once("data", r));
    const idleClosed = new Promise<void>((resolve) => idle.once("close", () => resolve()));

    // A request in flight: headers and half the body sent before the signal, the rest after.
    const body = "{}";
    const inflight = net.connect(svc.port, "127.0.0.1");
    await new Promise((r) => inflight.once("connect", r));
    let response = "";
    inflight.on("data", (d) => (response += d.toString()));
    const inflightClosed = new Promise<void>((resolve) => inflight.once("close", () => resolve()));
    inflight.write(
      `POST /v1/shop.Misc/CurrentAccount HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${key}\r\nContent-Length: ${body.length}\r\n\r\n{`,
    );
    await new Promise((r) => setTimeout(r, 100));

    const started = Date.now();
    svc.child.kill("SIGTERM");
    // A repeated signal (Ctrl-C reaches the launcher and the service) does not cut the drain short.
    await new Promise((r) => setTimeout(r, 50));
    svc.child.kill("SIGINT");
    await new Promise((r) => setTimeout(r, 250));
    inflight.write("}");

    expect(await svc.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(5_000);
    await Promise.all([sessionClosed, idleClosed, inflightClosed]);
    expect(response).toMatch(/^HTTP\/1\.1 200/);
    expect(response.toLowerCase()).toContain("connection: close");
    expect(response).toContain('"shop"');
    expect(svc.logs.map((l) => l.msg)).toContain("stopped");
  });

  it("refuses new connections once stopping", async () => {
    const dbUrl = await createTestDatabase();
    dbs.push(dbUrl);
    const svc = await startService({ DATABASE_URL: dbUrl });
    svc.child.kill("SIGTERM");
    expect(await svc.exited).toBe(0);
    const err = await fetch(`${svc.url}/healthz`).then(() => undefined, (e: unknown) => e);
    expect(err).toBeDefined();
  });
});

describe("two instances", () => {
  it("start together on an empty database: migrations run once, both serve", async () => {
    const name = `shophook_t_empty_${Date.now()}`;
    const admin = new pg.Client({ connectionString: inject("adminUrl") });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const dbUrl = withDatabase(inject("adminUrl"), name);
    dbs.push(dbUrl);

    const [a, b] = await Promise.all([startService({ DATABASE_URL: dbUrl }), startService({ DATABASE_URL: dbUrl })]);
    const key = await shopKey(dbUrl);
    for (const svc of [a, b]) {
      expect((await fetch(`${svc.url}/readyz`)).status).toBe(200);
      const res = await fetch(`${svc.url}/v1/shop.Misc/CurrentAccount`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        body: "{}",
      });
      expect(res.status).toBe(200);
    }
    const applied = [...a.logs, ...b.logs].filter((l) => l.msg === "migrations applied");
    expect(applied).toHaveLength(1);
    const pool = createPool(dbUrl, 1);
    const { rows } = await pool.query("SELECT version, count(*) FROM schema_migrations GROUP BY version HAVING count(*) > 1");
    await pool.end();
    expect(rows).toEqual([]);

    a.child.kill("SIGTERM");
    b.child.kill("SIGTERM");
    expect(await a.exited).toBe(0);
    expect(await b.exited).toBe(0);
  });
});

describe("embedded PostgreSQL", () => {
  it("starts on a bare data directory when DATABASE_URL is unset, and stops with the service", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "shophook-embedded-"));
    await fs.chmod(dir, 0o755);
    const pgPort = String(20000 + Math.floor(Math.random() * 20000));
    try {
      const svc = await startService({ SHOPHOOK_DATA_DIR: path.join(dir, "pg"), SHOPHOOK_EMBEDDED_PG_PORT: pgPort }, 60_000);
      const ready = await fetch(`${svc.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(svc.logs.map((l) => l.msg)).toContain("embedded postgres up");
      svc.child.kill("SIGTERM");
      expect(await svc.exited).toBe(0);
      // The server is gone with the service.
      const refused = await new Promise<boolean>((resolve) => {
        const s = net.connect(Number(pgPort), "127.0.0.1");
        s.once("connect", () => (s.destroy(), resolve(false)));
        s.once("error", () => resolve(true));
      });
      expect(refused).toBe(true);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it("as root, says plainly when the postgres user cannot reach the data directory (instead of a failing initdb)", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "shophook-private-"));
    await fs.chmod(dir, 0o700);
    try {
      const env = { SHOPHOOK_DATA_DIR: path.join(dir, "pg"), SHOPHOOK_EMBEDDED_PG_PORT: String(20000 + Math.floor(Math.random() * 20000)) };
      if (process.getuid?.() === 0) {
        const err = await startService(env, 60_000).then(() => undefined, (e: Error) => e);
        expect(err?.message).toMatch(/runs as the OS user postgres \(PostgreSQL refuses root\), which cannot enter .*shophook-private-.* set DATABASE_URL/);
      } else {
        // Not root: PostgreSQL runs as this user, who owns the directory: it just starts.
        const svc = await startService(env, 60_000);
        svc.child.kill("SIGTERM");
        expect(await svc.exited).toBe(0);
      }
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
