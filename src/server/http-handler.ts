/**
 * The request handler behind the one port: health probes, then Connect (JSON over HTTP/1.1,
 * gRPC, gRPC-Web) at both `/v1/shop.<Service>/<Method>` (eTop's paths) and `/shop.<Service>/<Method>`.
 */
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import type { Logger } from "../logger.ts";
import { connectAdapter } from "./connect-adapter.ts";
import type { NodeServerRequest, NodeServerResponse, RequestHandler } from "./one-port.ts";

export interface HttpHandlerOptions {
  routes: (router: ConnectRouter) => void;
  interceptors: Interceptor[];
  bodyLimitBytes: number;
  log: Logger;
  /** Database reachable and migrations applied. */
  ready: () => Promise<boolean>;
  /** Extra plain-HTTP routes (metrics, dashboard), tried before Connect. Return true when handled. */
  extra?: (req: NodeServerRequest, res: NodeServerResponse) => boolean;
}

const RPC_CONTENT_TYPE = /^application\/(json|proto|connect\+(json|proto)|grpc(-web)?(\+(json|proto))?)\s*(;|$)/i;

export function sendJson(res: NodeServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader("content-type", "application/json");
  res.setHeader("content-length", Buffer.byteLength(text));
  res.end(text);
}

export function createHttpHandler(opts: HttpHandlerOptions): RequestHandler {
  const notFound = (req: NodeServerRequest, res: NodeServerResponse) =>
    sendJson(res, 404, { code: "unimplemented", message: `no such RPC: ${req.method} ${(req.url ?? "").slice(0, 200)}` });
  const handler = connectAdapter({
    routes: opts.routes,
    interceptors: opts.interceptors,
    readMaxBytes: opts.bodyLimitBytes,
    // eTop's JSON: snake_case field names; empty lists and zero values present rather than absent;
    // unknown fields refused, so a typo'd field name is an error instead of being ignored.
    jsonOptions: { useProtoFieldName: true, alwaysEmitImplicit: true, ignoreUnknownFields: false },
    prefixes: ["/v1", ""],
    fallback: notFound,
    log: opts.log,
  });

  return (req, res) => {
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
    // Connect answers an unknown content type with a bare 415; say what is accepted instead.
    const type = req.headers["content-type"];
    if (req.method === "POST" && !(type && RPC_CONTENT_TYPE.test(type))) {
      return sendJson(res, 415, {
        code: "invalid_argument",
        message: `content-type: expected application/json (or application/proto, application/grpc, application/grpc-web), got ${type ? `"${type.slice(0, 100)}"` : "none"}`,
      });
    }
    handler(req, res);
  };
}
