/** Runs the real `shophook` CLI as a child process (for signals, crashes and multi-instance tests). */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { SERVE_NODE_FLAGS } from "../../bin/node-flags.js";
import { projectRoot } from "../../src/config.ts";

export interface ServiceProcess {
  child: ChildProcess;
  url: string;
  port: number;
  /** Every log line so far, parsed. */
  logs: Array<Record<string, unknown>>;
  /** Resolves with the exit code (or signal name) once the process ends. */
  exited: Promise<number | string>;
  /** What the process wrote to stderr so far. */
  stderr(): string;
}

export const cliEntry = path.join(projectRoot, "src", "cli", "main.ts");

/** Starts `shophook serve` with `env` and waits until it listens. */
export function startService(env: Record<string, string>, timeoutMs = 30_000): Promise<ServiceProcess> {
  const child = spawn(process.execPath, [...SERVE_NODE_FLAGS, cliEntry, "serve"], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", PORT: "0", LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = "";
  const exited = new Promise<number | string>((resolve) => child.on("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`service did not start in ${timeoutMs} ms: ${stderr}`)), timeoutMs);
    let buf = "";
    child.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          logs.push(entry);
          if (entry.msg === "listening") {
            clearTimeout(timer);
            resolve({ child, url: entry.url as string, port: entry.port as number, logs, exited, stderr: () => stderr });
          }
        } catch {
          /* not a log line */
        }
      }
    });
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`service exited (${code}) before listening: ${stderr}`));
    });
  });
}
