/**
 * A direct path for the most common request: a unary Connect call with a JSON body (curl, fetch,
 * our TypeScript client) over HTTP/1.1 or HTTP/2. It runs the same pieces connect-es's handler
 * does, from connect-es itself (its JSON serialization with the same options and limits, its
 * interceptor invocation, its error JSON and HTTP status mapping), without the generic
 * machinery around them: Web-stream adapters, async iterables for a one-chunk body, and two
 * AbortControllers per call whose abort builds a DOMException (with a stack trace) every time.
 * That machinery was about a third of a write RPC's CPU (docs/performance.md).
 *
 * Anything else (gRPC, gRPC-Web, binary, a compressed request, GET, a client timeout, a streaming
 * method) goes to connect-es unchanged: `handle` returns false without touching the request.
 *
 * Responses are compressed as connect-es compresses them (its negotiation on `Accept-Encoding`,
 * gzip or br, from its minimum size). These are connect-es internals (`/protocol` exports, which
 * do not follow semver): package.json pins connect-es exactly, and test/unary-json.test.ts
 * compares both paths' answers, headers and bytes, so an upgrade that changes them fails there.
 */
import type { DescMessage, DescMethod, DescService } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createContextValues,
  createServiceImplSpec,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type ServiceImpl,
} from "@connectrpc/connect";
import { type Compression, compressionNegotiate, createMethodSerializationLookup, invokeUnaryImplementation, mergeNonProtocolHeaders } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorToJsonBytes, trailerMux } from "@connectrpc/connect/protocol-connect";
import type { JsonReadOptions, JsonWriteOptions } from "@bufbuild/protobuf";
import type { NodeServerRequest, NodeServerResponse } from "./one-port.ts";
import { handedOver, readBody } from "./read-body.ts";

type UnarySpec = MethodImplSpec & { kind: "unary" };

interface Route {
  spec: UnarySpec;
  serialization: ReturnType<typeof createMethodSerializationLookup<DescMessage, DescMessage>>;
}

export interface UnaryJsonOptions {
  routes: (router: ConnectRouter) => void;
  prefixes: string[];
  interceptors: Interceptor[];
  jsonOptions: Partial<JsonReadOptions & JsonWriteOptions>;
  readMaxBytes: number;
  /** Answers a body over readMaxBytes (the HTTP handler's own answer to one). */
  tooLarge: (res: NodeServerResponse) => void;
  /** Response compressions, as given to connect-es's router. */
  acceptCompression: Compression[];
}

/** connect-es's default `compressMinBytes`: smaller answers are sent as they are. */
const COMPRESS_MIN_BYTES = 1024;

const JSON_TYPE = /^application\/json(\s*;\s*charset=utf-8)?\s*$/i;
/** Our handlers never watch for cancellation: one signal that never aborts serves every call. */
const NEVER = new AbortController().signal;
const noTimeout = () => undefined;

/** The whole body (already read by the HTTP handler, or read here), or undefined when it runs over `limit`. */
async function wholeBody(req: NodeServerRequest, limit: number): Promise<Buffer | undefined> {
  const chunks = (await handedOver(req)) ?? (await readBody(req, limit));
  return chunks && (chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
}

/** Records each service's implementation as `routes` registers it, for the direct path. */
function implementations(routes: (router: ConnectRouter) => void): Array<MethodImplSpec> {
  const specs: MethodImplSpec[] = [];
  const recorder = {
    handlers: [],
    service(service: DescService, impl: Partial<ServiceImpl<DescService>>) {
      specs.push(...Object.values(createServiceImplSpec(service, impl).methods));
      return recorder;
    },
    rpc(method: DescMethod, impl: unknown) {
      throw new Error(`unary-json: router.rpc(${method.name}) is not recorded; register services instead (${typeof impl})`);
    },
  };
  routes(recorder as unknown as ConnectRouter);
  return specs;
}

/** Builds the direct path; `handle(req, res)` returns false for requests it leaves to connect-es. */
export function unaryJson(opts: UnaryJsonOptions): (req: NodeServerRequest, res: NodeServerResponse) => boolean {
  const routes = new Map<string, Route>();
  for (const spec of implementations(opts.routes)) {
    if (spec.kind !== "unary") continue;
    const route: Route = {
      spec: spec as UnarySpec,
      serialization: createMethodSerializationLookup(spec.method, undefined, opts.jsonOptions, { readMaxBytes: opts.readMaxBytes, writeMaxBytes: 0xffffffff }),
    };
    for (const prefix of opts.prefixes) routes.set(`${prefix}/${spec.method.parent.typeName}/${spec.method.name}`, route);
  }

  return (req, res) => {
    if (req.method !== "POST") return false;
    const h = req.headers;
    const type = h["content-type"];
    if (!type || !JSON_TYPE.test(type) || (h["content-encoding"] && h["content-encoding"] !== "identity") || h["connect-timeout-ms"] !== undefined) return false;
    const path = req.url ?? "";
    const route = routes.get(path.includes("?") ? path.slice(0, path.indexOf("?")) : path);
    if (!route) return false;

    wholeBody(req, opts.readMaxBytes).then(
      (body) => (body ? respond(route, req, res, body) : opts.tooLarge(res)),
      () => res.destroy(), // the client went away mid-body
    );
    return true;
  };

  async function respond(route: Route, req: NodeServerRequest, res: NodeServerResponse, body: Buffer) {
    const { spec, serialization } = route;
    // From req.headers (not rawHeaders): the HTTP handler may have settled x-request-id there.
    const requestHeader = new Headers();
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && k[0] !== ":") requestHeader.set(k, Array.isArray(v) ? v.join(", ") : v);
    const context: HandlerContext = {
      method: spec.method,
      service: spec.method.parent,
      signal: NEVER,
      timeoutMs: noTimeout,
      requestMethod: "POST",
      requestHeader,
      responseHeader: new Headers({ "content-type": "application/json" }),
      responseTrailer: new Headers(),
      protocolName: "connect",
      values: createContextValues(),
      url: `http://${req.headers.host ?? "localhost"}${req.url ?? ""}`,
    };
    let status = 200;
    let out: Uint8Array;
    try {
      const input = serialization.getI(false).parse(body);
      out = serialization.getO(false).serialize(await invokeUnaryImplementation(spec, context, input, opts.interceptors));
    } catch (e) {
      const error = e instanceof ConnectError ? e : new ConnectError("internal error", Code.Internal, undefined, undefined, e);
      status = codeToHttpStatus(error.code);
      context.responseHeader.set("content-type", "application/json");
      mergeNonProtocolHeaders(context.responseHeader, error.metadata);
      out = errorToJsonBytes(error, opts.jsonOptions);
    }
    // Connect unary: the response's compression is negotiated on Accept-Encoding (the request's is identity here).
    const compression = compressionNegotiate(opts.acceptCompression, null, req.headers["accept-encoding"] ?? null, "accept-encoding").response;
    if (compression && out.byteLength >= COMPRESS_MIN_BYTES) {
      out = await compression.compress(out);
      context.responseHeader.set("content-encoding", compression.name);
    }
    if (res.destroyed) return;
    const headers: Record<string, string> = {};
    trailerMux(context.responseHeader, context.responseTrailer).forEach((v, k) => (headers[k] = v));
    headers["content-length"] = String(out.byteLength);
    res.writeHead(status, headers);
    res.end(out);
  }
}
