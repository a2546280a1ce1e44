/**
 * The request handler behind the one port: health probes, then Connect (JSON over HTTP/1.1,
 * gRPC, gRPC-Web) at both `/v1/shop.<Service>/<Method>` (eTop's paths) and `/shop.<Service>/<Method>`.
 */
import type { ConnectRouter, ConnectRouterOptions, Interceptor } from "@connectrpc/connect";
import type { ServerHttp2Stream } from "node:http2";
import type { Logger } from "../logger.ts";
import { isGrpc, requestIdFor } from "../api/errors.ts";
import { connectAdapter } from "./connect-adapter.ts";
import type { NodeServerRequest, NodeServerResponse, RequestHandler } from "./one-port.ts";
import { handOver, readBody } from "./read-body.ts";

export interface HttpHandlerOptions {
  routes: (router: ConnectRouter) => void;
  interceptors: Interceptor[];
  bodyLimitBytes: number;
  log: Logger;
  /** Database reachable and migrations applied. */
  ready: () => Promise<boolean>;
  /** Extra plain-HTTP routes (metrics, dashboard), tried before Connect. Return true when handled. */
  extra?: (req: NodeServerRequest, res: NodeServerResponse) => boolean;
  /**
   * Checks a call's Authorization header before its body is read or decoded; resolves to the
   * reason when it is refused (answered `unauthenticated`). The interceptors still run after.
   */
  authorize?: (authorization: string | undefined) => Promise<string | undefined>;
  /** Counts a call the handler refused itself (as the edge interceptor counts the others). */
  refused?: (rpc: string, code: string) => void;
}

/** The content types our RPCs take (unary Connect JSON or binary, gRPC, gRPC-Web); others get a 415 that says so. */
const RPC_CONTENT_TYPE = /^application\/(json(\s*;\s*charset=utf-?8)?|proto|grpc(-web)?(\+(json|proto))?)\s*$/i;

/**
 * A gRPC or gRPC-Web refusal in the protocol's own terms: HTTP 200, its content type, and the
 * status in a trailers-only response.
 */
const DRAIN_MAX_BYTES = 1024 * 1024;
const DRAIN_MAX_MS = 5_000;

function sendGrpcStatus(req: NodeServerRequest, res: NodeServerResponse, code: number, message: string) {
  // HTTP/2: answer once the client has sent its message (read and dropped here). gRPC clients
  // take a stream closed while they are still sending as reset ("Stream removed"), not as the status.
  if ("stream" in res && !req.readableEnded) {
    // Up to a point: a client that keeps sending (1 MiB, or 5 s) gets its answer anyway.
    let seen = 0;
    const answer = () => {
      clearTimeout(timer);
      req.removeListener("data", count);
      req.removeListener("end", answer);
      writeGrpcStatus(req, res, code, message);
    };
    const count = (chunk: Buffer) => {
      if ((seen += chunk.length) > DRAIN_MAX_BYTES) answer();
    };
    const timer = setTimeout(answer, DRAIN_MAX_MS);
    req.on("data", count);
    req.once("end", answer);
    return;
  }
  writeGrpcStatus(req, res, code, message);
}

function writeGrpcStatus(req: NodeServerRequest, res: NodeServerResponse, code: number, message: string) {
  if (res.destroyed || res.headersSent) return;
  const headers = {
    "content-type": /^application\/grpc-web/i.test(req.headers["content-type"] ?? "") ? "application/grpc-web+proto" : "application/grpc+proto",
    "grpc-status": String(code),
    "grpc-message": encodeURIComponent(message),
    "x-request-id": req.headers["x-request-id"] as string,
  };
  // A trailers-only response: over HTTP/2 one HEADERS frame that ends the stream (gRPC's C core
  // reads HEADERS followed by an empty DATA frame as a stream removed, not as the status).
  if ("stream" in res) return res.stream.respond({ ":status": 200, ...headers }, { endStream: true });
  res.writeHead(200, headers);
  res.end();
}

export function sendJson(res: NodeServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader("content-type", "application/json");
  res.setHeader("content-length", Buffer.byteLength(text));
  res.end(text);
}

/**
 * 413 for a body over the limit. Connect says resource_exhausted with HTTP 429, which tells a
 * client to retry later; a body that is too large fails the same way every time.
 */
function bodyTooLarge(res: NodeServerResponse, limit: number) {
  sendJson(res, 413, tooLargeError(limit));
}

const tooLargeError = (limit: number) => ({ code: "resource_exhausted", message: `request body larger than ${limit} bytes` });

function readAndDrop(stream: ServerHttp2Stream) {
  while (stream.read() !== null);
}

export function createHttpHandler(opts: HttpHandlerOptions): RequestHandler {
  const limit = opts.bodyLimitBytes;
  const notFound = (req: NodeServerRequest, res: NodeServerResponse) => {
    const message = `no such RPC: ${req.method} ${(req.url ?? "").slice(0, 200)}`;
    // gRPC and gRPC-Web answer in their own terms: status 12, unimplemented.
    if (req.method === "POST" && isGrpc(req.headers["content-type"])) return sendGrpcStatus(req, res, 12, message);
    sendJson(res, 404, { code: "unimplemented", message });
  };
  const handler = connectAdapter({
    routes: opts.routes,
    interceptors: opts.interceptors,
    readMaxBytes: limit,
    // eTop's JSON: snake_case field names; empty lists and zero values present rather than absent;
    // unknown fields refused, so a typo'd field name is an error instead of being ignored.
    // Invalid UTF-8 is refused (invalid_argument), not read as U+FFFD into stored text.
    jsonOptions: { useProtoFieldName: true, alwaysEmitImplicit: true, ignoreUnknownFields: false, textDecoder: new TextDecoder("utf-8", { fatal: true }) } as ConnectRouterOptions["jsonOptions"],
    prefixes: ["/v1", ""],
    fallback: notFound,
    tooLarge: (res) => bodyTooLarge(res, limit),
    log: opts.log,
  });

  return (req, res) => {
    // An answer can go out before the request body is read (refused early, over the limit).
    // HTTP/1.1 then reads and drops the rest. An HTTP/2 stream whose body is left unread never
    // closes: Connect destroys the request it stopped reading, which leaves the stream paused, in
    // flight until the session ends (and a graceful shutdown waits for it). Once the answer is
    // written, read and drop the rest here. (Ending the stream with RST_STREAM instead loses the
    // trailers still queued: the gRPC status.)
    if ("stream" in res) {
      const stream = res.stream;
      stream.once("finish", () => {
        if (!stream.readableEnded) stream.on("readable", () => readAndDrop(stream));
      });
    }
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === "/healthz") return sendJson(res, 200, { status: "ok" });
    if (req.method === "GET" && path === "/readyz") {
      opts.ready().then(
        (ok) => sendJson(res, ok ? 200 : 503, { status: ok ? "ready" : "not ready" }),
        () => sendJson(res, 503, { status: "not ready" }),
      );
      return;
    }
    if (opts.extra?.(req, res)) return;
    // Every RPC answer carries a request id, also one refused before any interceptor runs (wrong
    // content type, too large, unparseable); the edge interceptor takes this one over.
    // (gRPC and gRPC-Web carry it in the status trailers the interceptor fills.)
    // gRPC and gRPC-Web carry it as a header too (a call connect-es refuses before the
    // interceptors run, a message it cannot parse, has no other).
    const requestId = requestIdFor(req.headers["x-request-id"] as string | undefined);
    req.headers["x-request-id"] = requestId;
    res.setHeader("x-request-id", requestId);
    const refuse = (status: number, body: { code: string; message: string }) => {
      opts.log.info({ requestId, path: path?.slice(0, 200), status, code: body.code, error: body.message }, "request refused");
      sendJson(res, status, body);
    };
    if (req.method !== "POST") return handler(req, res);
    // Connect answers an unknown content type with a bare 415; say what is accepted instead.
    const type = req.headers["content-type"];
    if (type && isGrpc(type) && !RPC_CONTENT_TYPE.test(type)) {
      // A gRPC call with a codec we do not serve (application/grpc+foo): a gRPC status, 3.
      const message = `content-type: "${type.slice(0, 100)}" is not served; use application/grpc (+proto or +json) or application/grpc-web (+proto or +json)`;
      opts.log.info({ requestId, path: path?.slice(0, 200), code: "invalid_argument", error: message }, "request refused");
      return sendGrpcStatus(req, res, 3, message);
    }
    if (!(type && RPC_CONTENT_TYPE.test(type))) {
      return refuse(415, {
        code: "invalid_argument",
        message: `content-type: expected application/json (or application/proto, application/grpc, application/grpc-web), got ${type ? `"${type.slice(0, 100)}"` : "none"}`,
      });
    }
    const dispatch = () => {
      if (isGrpc(type)) return handler(req, res);
      // Connect unary (JSON or binary): Connect reads the whole body before the call anyway, so
      // its size can be checked first: from Content-Length, or by reading a chunked body here.
      const length = req.headers["content-length"];
      const tooLarge = () => refuse(413, tooLargeError(limit));
      if (length !== undefined) return Number(length) > limit ? tooLarge() : handler(req, res);
      readBody(req, limit).then(
        (chunks) => {
          if (!chunks) return tooLarge();
          // Connect reads the request as an async iterable: hand it the chunks already read.
          handOver(req, chunks);
          handler(req, res);
        },
        // The client went away mid-body: nothing to answer.
        () => res.destroy(),
      );
    };
    // The key before the body: a caller without one never has its body read, decoded or answered on.
    if (opts.authorize && path && handler.knows(path)) {
      opts.authorize(req.headers.authorization).then(
        (refused) => {
          if (res.destroyed) return;
          if (refused === undefined) return dispatch();
          // Logged and counted as the interceptors log and count a failed call.
          const rpc = path.replace(/^\/v1\//, "/").slice(1);
          opts.log.info({ requestId, rpc, code: "Unauthenticated", error: refused }, "rpc failed");
          opts.refused?.(rpc, "Unauthenticated");
          if (isGrpc(type)) sendGrpcStatus(req, res, 16, refused);
          else sendJson(res, 401, { code: "unauthenticated", message: refused });
        },
        (err: unknown) => {
          // The key could not be checked (the database is away): the call fails as the interceptor's would.
          opts.log.warn({ requestId, error: (err as Error).message }, "authorization check failed");
          if (isGrpc(type)) sendGrpcStatus(req, res, 14, "unavailable: try again");
          else sendJson(res, 503, { code: "unavailable", message: "unavailable: try again" });
        },
      );
      return;
    }
    dispatch();
  };
}
