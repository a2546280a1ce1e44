/**
 * A real local HTTP receiver for webhook tests: records every request and answers as told
 * (status, delay, hang, reset), per request, by a function the test can swap at any time.
 */
import http from "node:http";
import { afterAll } from "vitest";
import type net from "node:net";

export interface Received {
  at: number;
  path: string;
  headers: http.IncomingHttpHeaders;
  raw: string;
  body: any;
}

export type Behaviour = (r: Received) => { status?: number; body?: string; delayMs?: number; headers?: Record<string, string> } | "hang" | "reset";

export interface Receiver {
  url: string;
  port: number;
  requests: Received[];
  /** Every change id received, in arrival order (duplicates included). */
  changeIds(): string[];
  behave(b: Behaviour): void;
  /** Resolves once `predicate` holds (checked on every request), or rejects after `timeoutMs`. */
  until(predicate: (requests: Received[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startReceiver(initial: Behaviour = () => ({ status: 200, body: "ok" })): Promise<Receiver> {
  let behaviour = initial;
  const requests: Received[] = [];
  const waiters: Array<() => void> = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString();
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        body = undefined;
      }
      const r: Received = { at: Date.now(), path: req.url ?? "", headers: req.headers, raw, body };
      requests.push(r);
      for (const w of waiters.splice(0)) w();
      const b = behaviour(r);
      if (b === "hang") return;
      if (b === "reset") return req.socket.destroy();
      const send = () => {
        res.writeHead(b.status ?? 200, { "content-type": "text/plain", ...b.headers });
        res.end(b.body ?? "ok");
      };
      if (b.delayMs) setTimeout(send, b.delayMs);
      else send();
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    port,
    requests,
    changeIds: () => requests.flatMap((r) => (r.body?.changes ?? []).map((c: { id: string }) => c.id)),
    behave: (b) => (behaviour = b),
    until: (predicate, timeoutMs = 15_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          if (predicate(requests)) {
            clearTimeout(timer);
            resolve();
          } else waiters.push(check);
        };
        const timer = setTimeout(() => reject(new Error(`receiver: condition not met in ${timeoutMs} ms (${requests.length} requests)`)), timeoutMs);
        check();
      }),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A receiver factory for a test file: every receiver it starts is closed after the file's tests. */
export function useReceivers(): (...args: Parameters<typeof startReceiver>) => Promise<Receiver> {
  const started: Receiver[] = [];
  afterAll(async () => {
    for (const r of started) await r.close();
  });
  return async (...args) => {
    const r = await startReceiver(...args);
    started.push(r);
    return r;
  };
}
