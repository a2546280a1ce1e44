/**
 * One TCP port for HTTP/1.1 (Connect JSON, gRPC-Web, health) and cleartext HTTP/2 with prior
 * knowledge (gRPC). A plain net.Server peeks at the first bytes of each connection: the HTTP/2
 * client preface goes to an http2 server, anything else to an http server.
 *
 * The peek runs in paused mode ('readable' + read() + unshift()): a 'data' listener with
 * pause/unshift breaks h2c framing (../shared/STACK.md).
 */
import type { connectNodeAdapter } from "@connectrpc/connect-node";
import type { ConnectionLimits } from "../config.ts";
import http from "node:http";
import http2 from "node:http2";
import fs from "node:fs";
import net from "node:net";
import tls from "node:tls";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** What a server gets when nothing is set: config.ts's defaults. */
export const DEFAULT_LIMITS: ConnectionLimits = {
  maxConnections: 10_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  h2IdleTimeoutMs: 300_000,
  h2MaxStreams: 100,
};

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

/**
 * Limits (`limits`, from config): connections at most (more are closed on arrival); a
 * connection's first bytes, and an HTTP/1.1 request's headers, within `headersTimeoutMs`
 * (slowloris); a whole HTTP/1.1 request within `requestTimeoutMs`; idle keep-alive connections
 * closed after `keepAliveTimeoutMs` and idle HTTP/2 sessions after `h2IdleTimeoutMs`;
 * `h2MaxStreams` concurrent streams per session, and a session that resets streams faster than
 * Node's rapid-reset limit (a burst of 1,000, then 33 a second) is closed with ENHANCE_YOUR_CALM.
 */
export function createOnePortServer(
  handler: RequestHandler,
  opts: { maxHeaderSize?: number; limits?: ConnectionLimits; tls?: TlsFiles; onTls?: (event: "reloaded" | "reload failed", err?: Error) => void } = {},
): OnePortServer {
  const limits = opts.limits ?? DEFAULT_LIMITS;
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

  const h1 = http.createServer(
    {
      maxHeaderSize: opts.maxHeaderSize ?? 16 * 1024,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      headersTimeout: Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs),
      requestTimeout: limits.requestTimeoutMs,
      // How often the two timeouts above are checked (Node's default, 30 s, would let a slowloris linger).
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 4))),
    },
    wrapped,
  );
  const h2 = http2.createServer(
    { maxSessionMemory: 32, settings: { maxConcurrentStreams: limits.h2MaxStreams }, streamResetBurst: 1000, streamResetRate: 33 } as http2.ServerOptions,
    wrapped,
  );
  h2.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
    // An idle session (no frame either way) is asked to go; streams in flight finish first.
    s.setTimeout(limits.h2IdleTimeoutMs, () => {
      s.close();
      setTimeout(() => s.destroy(), 10_000).unref();
    });
    if (closing) s.close();
  });
  // A broken peer must never take the process down.
  h1.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    // Headers or a body too slow (headersTimeout, requestTimeout): 408; anything else malformed: 400.
    const status = err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? "408 Request Timeout" : "400 Bad Request";
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    else socket.destroy();
  });
  h2.on("sessionError", () => undefined);

  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
  };
  const plain = (socket: net.Socket) => {
    track(socket);
    let seen = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), limits.headersTimeoutMs);
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
  };
  // TLS: the handshake's ALPN says which protocol the client speaks (no peeking).
  const secure = opts.tls ? tlsServer(opts.tls, limits, opts.onTls ?? (() => undefined)) : undefined;
  secure?.server.on("secureConnection", (socket: tls.TLSSocket) => {
    track(socket);
    (socket.alpnProtocol === "h2" ? h2 : h1).emit("connection", socket);
  });
  const tcp: net.Server = secure?.server ?? net.createServer({ pauseOnConnect: true }, plain);

  tcp.maxConnections = limits.maxConnections;
  // The http server gets its connections from `tcp` and never listens itself, so start what its
  // 'listening' starts: the connection list and the timer that enforces headersTimeout and
  // requestTimeout (without it a slowloris lingers) and that closeIdleConnections() walks.
  h1.emit("listening");

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
      secure?.stop();
      const stopped = new Promise<void>((resolve) => tcp.close(() => resolve()));
      h1.close(() => undefined); // stops the timer above and closes idle connections (it never listened: the error is expected)
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

export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

/**
 * A TLS server offering h2 and http/1.1 by ALPN, from PEM files read now and again whenever
 * either changes (checked every second): a renewed certificate is served to new connections
 * without a restart. A pair that does not load keeps the old one (and says so).
 */
function tlsServer(files: TlsFiles, limits: ConnectionLimits, onEvent: (event: "reloaded" | "reload failed", err?: Error) => void) {
  const read = () => ({ cert: fs.readFileSync(files.certFile), key: fs.readFileSync(files.keyFile) });
  const server = tls.createServer({ ...read(), ALPNProtocols: ["h2", "http/1.1"], handshakeTimeout: limits.headersTimeoutMs });
  server.on("tlsClientError", () => undefined); // a failed handshake ends that socket only
  const reload = () => {
    try {
      server.setSecureContext({ ...read(), ALPNProtocols: ["h2", "http/1.1"] } as tls.SecureContextOptions);
      onEvent("reloaded");
    } catch (err) {
      onEvent("reload failed", err as Error);
    }
  };
  for (const f of [files.certFile, files.keyFile]) fs.watchFile(f, { interval: 1_000, persistent: false }, reload);
  return {
    server: server as net.Server,
    stop: () => {
      for (const f of [files.certFile, files.keyFile]) fs.unwatchFile(f, reload);
    },
  };
}
