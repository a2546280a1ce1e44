/**
 * A real primary and streaming standby from the machine's PostgreSQL binaries (Debian's
 * `postgresql`): initdb, pg_basebackup -R, hot standby. For the read-replica tests.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { freePort } from "./urls.ts";

/** The newest PostgreSQL bin directory that has pg_basebackup, or undefined. */
export function postgresBin(): string | undefined {
  const root = "/usr/lib/postgresql";
  if (!fs.existsSync(root)) return undefined;
  const versions = fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, "bin", "pg_basebackup"))).sort((a, b) => Number(b) - Number(a));
  return versions[0] ? path.join(root, versions[0], "bin") : undefined;
}


export interface ReplicaPair {
  primaryUrl: string;
  standbyUrl: string;
  /** Waits until the standby has replayed everything the primary has written so far. */
  caughtUp(): Promise<void>;
  stop(): Promise<void>;
}

export async function startReplicaPair(bin: string): Promise<ReplicaPair> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shophook-replica-"));
  fs.chmodSync(dir, 0o755);
  const root = process.getuid?.() === 0;
  if (root) execFileSync("chown", ["postgres:postgres", dir]);
  // As root, every binary runs as the postgres user (PostgreSQL refuses root).
  const run = (cmd: string, args: string[]) =>
    root ? execFileSync("runuser", ["-u", "postgres", "--", path.join(bin, cmd), ...args], { stdio: "pipe" }) : execFileSync(path.join(bin, cmd), args, { stdio: "pipe" });
  const [pPort, sPort] = [await freePort(), await freePort()];
  const primary = path.join(dir, "primary");
  const standby = path.join(dir, "standby");
  const options = (port: number, extra: string) => `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c fsync=off ${extra}`;
  run("initdb", ["-D", primary, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"]);
  run("pg_ctl", ["-D", primary, "-l", path.join(dir, "primary.log"), "-w", "-o", options(pPort, "-c wal_level=replica -c max_wal_senders=5"), "start"]);
  run("pg_basebackup", ["-h", "127.0.0.1", "-p", String(pPort), "-U", "postgres", "-D", standby, "-R", "-X", "stream"]);
  run("pg_ctl", ["-D", standby, "-l", path.join(dir, "standby.log"), "-w", "-o", options(sPort, "-c hot_standby=on"), "start"]);
  const primaryUrl = `postgres://postgres@127.0.0.1:${pPort}/postgres`;
  const standbyUrl = `postgres://postgres@127.0.0.1:${sPort}/postgres`;
  const one = async <T>(url: string, sql: string): Promise<T> => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query(sql)).rows[0] as T;
    } finally {
      await c.end();
    }
  };
  return {
    primaryUrl,
    standbyUrl,
    caughtUp: async () => {
      const { lsn } = await one<{ lsn: string }>(primaryUrl, "SELECT pg_current_wal_lsn()::text AS lsn");
      for (let i = 0; i < 200; i++) {
        const { done } = await one<{ done: boolean }>(standbyUrl, `SELECT pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn AS done`);
        if (done) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error("standby did not catch up in 10 s");
    },
    stop: async () => {
      for (const d of [standby, primary]) {
        try {
          run("pg_ctl", ["-D", d, "-m", "immediate", "-w", "stop"]);
        } catch {
          /* already down */
        }
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
