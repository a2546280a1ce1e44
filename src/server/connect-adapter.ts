/**
 * Our Node adapter for the Connect router (in place of connect-node's `connectNodeAdapter`):
 * - one router serves each RPC at `/v1/shop.<Service>/<Method>` (eTop) and `/shop.<Service>/<Method>` (gRPC);
 * - a request the client got wrong is `invalid_argument`, not `internal`: connect-es reports a
 *   body it cannot parse as binary, a body that does not decompress, and a compressed gRPC
 *   message without a declared encoding with code internal, which would read as our fault; and an
 *   unknown Content-Encoding is HTTP 415, not 501 (all of these are the client's to fix);
 * - handler failures are logged through our logger, not console.
 */
import type http from "node:http";
import { Code, ConnectError, type ConnectRouterOptions, type ConnectRouter, createConnectRouter } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { encodeEnvelope, type UniversalServerResponse } from "@connectrpc/connect/protocol";
import { trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import type { Logger } from "../logger.ts";
import type { NodeServerRequest, NodeServerResponse, RequestHandler } from "./one-port.ts";
import { unaryJson } from "./unary-json.ts";

export interface ConnectAdapterOptions extends ConnectRouterOptions {
  routes: (router: ConnectRouter) => void;
  prefixes: string[];
  fallback: RequestHandler;
  log: Logger;
  /** Answers a request body over readMaxBytes. */
  tooLarge: (res: NodeServerResponse) => void;
}

/** Messages of connect-es `internal` errors that are really about the client's request. */
const CLIENT_FAULT = /^(parse binary:|decompression failed|received compressed envelope, but do not know how to decompress)/;
/** connect-es's `unimplemented` for a unary gRPC call that sent no message, or two: a malformed request. */
const MESSAGE_COUNT_FAULT = /^protocol error: (missing input message|received extra input message) for unary method/;
const GRPC_INTERNAL = "13";
const GRPC_UNIMPLEMENTED = "12";
const GRPC_INVALID_ARGUMENT = "3";

/** Rewrites connect-es's `internal` or `unimplemented` for a request the client got wrong to `invalid_argument`. */
function grpcTrailerFix(h: Headers | undefined) {
  const status = h?.get("grpc-status");
  if (status !== GRPC_INTERNAL && status !== GRPC_UNIMPLEMENTED) return;
  const msg = decodeURIComponent(h!.get("grpc-message") ?? "");
  if ((status === GRPC_INTERNAL && CLIENT_FAULT.test(msg)) || (status === GRPC_UNIMPLEMENTED && MESSAGE_COUNT_FAULT.test(msg))) h!.set("grpc-status", GRPC_INVALID_ARGUMENT);
}

async function* oneChunk(b: Uint8Array) {
  yield b;
}

/**
 * gRPC-Web sends its status in a trailer frame at the end of the body (connect-es yields each
 * frame as one chunk): the same fix, applied to that frame.
 */
function grpcWebTrailerFix(chunk: Uint8Array): Uint8Array {
  if (chunk.length < 5 || chunk[0] !== trailerFlag) return chunk; // a message, or a compressed trailer
  const length = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength).getUint32(1);
  if (length !== chunk.length - 5) return chunk;
  const trailer = trailerParse(chunk.subarray(5));
  const before = trailer.get("grpc-status");
  grpcTrailerFix(trailer);
  return trailer.get("grpc-status") === before ? chunk : encodeEnvelope(trailerFlag, trailerSerialize(trailer));
}

async function fixParseErrors(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  const type = res.header?.get("content-type") ?? "";
  if (type.startsWith("application/grpc-web") && res.body) {
    const body = res.body;
    return {
      ...res,
      body: (async function* () {
        for await (const chunk of body) yield grpcWebTrailerFix(chunk);
      })(),
    };
  }
  if (type.startsWith("application/grpc")) {
    grpcTrailerFix(res.header);
    if (!res.body) return res;
    const body = res.body;
    const trailer = res.trailer;
    // Trailers are filled in while the body streams: fix them once it has.
    return {
      ...res,
      body: (async function* () {
        yield* body;
        grpcTrailerFix(trailer);
      })(),
    };
  }
  if ((res.status === 500 || res.status === 501 || res.status === 429) && type.startsWith("application/json") && res.body) {
    const chunks: Uint8Array[] = [];
    for await (const c of res.body) chunks.push(c);
    let text = Buffer.concat(chunks).toString();
    let status = res.status;
    const err = JSON.parse(text) as { code?: string; message?: string };
    if (err.code === "internal" && CLIENT_FAULT.test(err.message ?? "")) {
      status = 400;
      text = JSON.stringify({ ...err, code: "invalid_argument" });
    } else if (err.code === "unimplemented" && /compression/.test(err.message ?? "")) {
      // An unknown Content-Encoding is the client's to fix: HTTP's answer is 415.
      status = 415;
    } else if (err.code === "resource_exhausted" && /readMaxBytes/.test(err.message ?? "")) {
      // A body over the limit once decompressed: 413, as one over it on the wire (429 says "retry later").
      status = 413;
    }
    res.header?.delete("content-length");
    return { ...res, status, body: oneChunk(Buffer.from(text)) };
  }
  return res;
}

/** The adapter's handler, and whether a path is one of its RPCs. */
export type ConnectHandler = RequestHandler & { knows(path: string): boolean };

/**
 * HTTP/1.1, a request connect-es serves: an answer written before the body was read to its end
 * (a message connect-es stopped reading: too large, malformed) says `Connection: close`.
 * connect-es drops such a request stream unread, which destroys its socket: a client that
 * reused the connection would see its next request reset (ECONNRESET). Our own refusals (and
 * the direct JSON path) leave the rest to Node, which reads and drops it and keeps the connection.
 */
function closeIfUnread(req: NodeServerRequest, res: NodeServerResponse) {
  const r = res as http.ServerResponse;
  const writeHead = r.writeHead;
  r.writeHead = function (this: http.ServerResponse, ...args: Parameters<typeof writeHead>) {
    // (A GET or HEAD has no body to wait for.)
    if (!req.readableEnded && req.method !== "GET" && req.method !== "HEAD") this.shouldKeepAlive = false;
    return writeHead.apply(this, args);
  } as typeof writeHead;
}

export function connectAdapter(opts: ConnectAdapterOptions): ConnectHandler {
  const acceptCompression = [compressionGzip, compressionBrotli];
  const router = createConnectRouter({ acceptCompression, ...opts });
  opts.routes(router);
  const paths = new Map<string, (typeof router.handlers)[number]>();
  for (const h of router.handlers) for (const prefix of opts.prefixes) paths.set(prefix + h.requestPath, h);

  // Unary Connect JSON, the common case, takes a direct path (src/server/unary-json.ts).
  const direct = unaryJson({ routes: opts.routes, prefixes: opts.prefixes, interceptors: opts.interceptors ?? [], jsonOptions: opts.jsonOptions ?? {}, readMaxBytes: opts.readMaxBytes ?? 0xffffffff, tooLarge: opts.tooLarge, acceptCompression });

  const handle = (req: NodeServerRequest, res: NodeServerResponse) => {
    if (direct(req, res)) return;
    const handler = paths.get((req.url ?? "").split("?", 1)[0]!);
    if (!handler) return opts.fallback(req, res);
    if (!("stream" in res)) closeIfUnread(req, res);
    handler(universalRequestFromNodeRequest(req, res, undefined, undefined))
      .then(fixParseErrors)
      .then((uRes) => universalResponseToNodeResponse(uRes, res))
      .catch((reason: unknown) => {
        // The client went away mid-response: nothing to do.
        if (ConnectError.from(reason).code === Code.Aborted || res.destroyed) return;
        opts.log.error({ err: reason, rpc: `${handler.service.typeName}/${handler.method.name}` }, "rpc handler failed");
        if (!res.headersSent) {
          res.statusCode = 500;
          res.end();
        } else res.destroy();
      });
  };
  return Object.assign(handle, { knows: (path: string) => paths.has(path) });
}
