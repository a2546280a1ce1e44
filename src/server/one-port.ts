/**
 * One TCP port for HTTP/1.1 (Connect JSON, gRPC-Web, health) and cleartext HTTP/2 with prior
 * knowledge (gRPC). A plain net.Server peeks at the first bytes of each connection: the HTTP/2
 * client preface goes to an http2 server, anything else to an http server.
 *
 * The peek runs in paused mode ('readable' + read() + unshift()): a 'data' listener with
 * pause/unshift breaks h2c framing (../shared/STACK.md).
 */
import type { connectNodeAdapter } from "@connectrpc/connect-node";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/** A connection that sends nothing for this long is dropped before it reaches either server. */
const PEEK_TIMEOUT_MS = 10_000;

/** The handler shape Connect's node adapter produces: serves http and http2 requests alike. */
export type RequestHandler = ReturnType<typeof connectNodeAdapter>;
export type NodeServerRequest = Parameters<RequestHandler>[0];
export type NodeServerResponse = Parameters<RequestHandler>[1];

export interface OnePortServer {
  listen(port: number, host: string): Promise<net.AddressInfo>;
  /**
   * Graceful stop: no new connections, in-flight requests finish, keep-alive connections and
   * HTTP/2 sessions are closed; whatever is still open after `timeoutMs` is destroyed.
   */
  close(timeoutMs: number): Promise<void>;
  /** Requests being served now. */
  inFlight(): number;
}

export function createOnePortServer(handler: RequestHandler, opts: { maxHeaderSize?: number } = {}): OnePortServer {
  let closing = false;
  let active = 0;
  /** HTTP/1.1 responses not yet finished: told to close their connection when shutdown starts. */
  const h1Responses = new Set<http.ServerResponse>();
  const closeAfter = (res: http.ServerResponse) => {
    if (!res.headersSent) res.setHeader("connection", "close");
  };
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  let drained: (() => void) | undefined;

  const wrapped: RequestHandler = (req, res) => {
    active++;
    if (req.httpVersionMajor === 1) {
      const r = res as http.ServerResponse;
      // During shutdown an HTTP/1.1 response tells the client this connection is done.
      if (closing) closeAfter(r);
      h1Responses.add(r);
    }
    res.once("close", () => {
      active--;
      h1Responses.delete(res as http.ServerResponse);
      if (closing) {
        h1.closeIdleConnections();
        if (active === 0) drained?.();
      }
    });
    handler(req, res);
  };

  const h1 = http.createServer({ maxHeaderSize: opts.maxHeaderSize ?? 16 * 1024, keepAliveTimeout: 5_000, requestTimeout: 60_000 }, wrapped);
  const h2 = http2.createServer({ maxSessionMemory: 32 }, wrapped);
  h2.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
    if (closing) s.close();
  });
  // A broken peer must never take the process down.
  h1.on("clientError", (_err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    else socket.destroy();
  });
  h2.on("sessionError", () => undefined);

  const tcp = net.createServer({ pauseOnConnect: true }, (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    let seen = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), PEEK_TIMEOUT_MS);
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      const isH2 = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (isH2 && seen.length < PREFACE.length) return; // a prefix of the preface: wait for more
      clearTimeout(timer);
      socket.removeListener("readable", onReadable);
      socket.unshift(seen);
      (isH2 ? h2 : h1).emit("connection", socket);
    };
    socket.on("readable", onReadable);
    socket.once("end", () => clearTimeout(timer));
  });

  return {
    listen(port, host) {
      return new Promise((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen(port, host, () => {
          tcp.removeListener("error", reject);
          resolve(tcp.address() as net.AddressInfo);
        });
      });
    },
    async close(timeoutMs) {
      closing = true;
      for (const r of h1Responses) closeAfter(r);
      const stopped = new Promise<void>((resolve) => tcp.close(() => resolve()));
      h1.closeIdleConnections();
      for (const s of sessions) s.close();
      const idle = active === 0 ? Promise.resolve() : new Promise<void>((resolve) => (drained = resolve));
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
      await Promise.race([idle, timedOut]);
      clearTimeout(timer);
      for (const s of sessions) s.destroy();
      // end() rather than destroy(): a response just finished may still sit in the socket's buffer.
      for (const s of sockets) {
        s.end();
        setTimeout(() => s.destroy(), 1_000).unref();
      }
      await stopped;
    },
    inFlight: () => active,
  };
}
