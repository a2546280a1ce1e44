/**
 * A real PgBouncer (Debian's `pgbouncer`) in front of the test PostgreSQL, on a free port, in
 * transaction pooling mode with few server connections, so multiplexing really happens.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { freePort } from "./urls.ts";

export const PGBOUNCER = "/usr/sbin/pgbouncer";

export interface Bouncer {
  /** `url` with its host and port replaced by the pooler's. */
  through(url: string): string;
  stop(): Promise<void>;
}


/** PgBouncer refuses to run as root: as root it runs as the `postgres` user (which the embedded PostgreSQL creates too). */
function runAs(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
  return { uid, gid };
}

export async function startPgBouncer(serverUrl: string, opts: { poolMode?: "transaction" | "session"; poolSize?: number } = {}): Promise<Bouncer> {
  const u = new URL(serverUrl);
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shophook-pgbouncer-"));
  fs.chmodSync(dir, 0o755);
  const target = [`host=${u.hostname}`, `port=${u.port || 5432}`, `user=${decodeURIComponent(u.username || "postgres")}`];
  if (u.password) target.push(`password=${decodeURIComponent(u.password)}`);
  const ini = [
    "[databases]",
    `* = ${target.join(" ")}`,
    "[pgbouncer]",
    "listen_addr = 127.0.0.1",
    `listen_port = ${port}`,
    "unix_socket_dir =",
    "auth_type = any",
    `pool_mode = ${opts.poolMode ?? "transaction"}`,
    `default_pool_size = ${opts.poolSize ?? 2}`,
    "max_client_conn = 500",
    "ignore_startup_parameters = extra_float_digits",
    "server_reset_query =",
  ].join("\n");
  const file = path.join(dir, "pgbouncer.ini");
  fs.writeFileSync(file, ini + "\n", { mode: 0o644 });
  const proc: ChildProcess = spawn(PGBOUNCER, [file], { ...runAs(), stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  // Listening once a connection is accepted.
  const until = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`pgbouncer exited: ${stderr}`);
    const ok = await new Promise<boolean>((r) => net.connect(port, "127.0.0.1").once("connect", function (this: net.Socket) { this.destroy(); r(true); }).once("error", () => r(false)));
    if (ok) break;
    if (Date.now() > until) throw new Error(`pgbouncer did not listen: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    through: (url) => {
      const x = new URL(url);
      x.hostname = "127.0.0.1";
      x.port = String(port);
      return x.toString();
    },
    stop: async () => {
      if (proc.exitCode === null) {
        await new Promise<void>((r) => {
          proc.once("exit", () => r());
          proc.kill("SIGTERM");
        });
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
