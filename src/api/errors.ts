/**
 * Errors at the API edge. Handlers throw ConnectErrors built here (right code, message naming
 * the field); anything else becomes `internal` with a request id, its cause logged, never sent.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { randomUUID } from "node:crypto";
import type { Logger } from "../logger.ts";
import type { Metrics } from "../metrics.ts";

export const invalidArgument = (field: string, problem: string) => new ConnectError(`${field}: ${problem}`, Code.InvalidArgument);
export const notFound = (what: string) => new ConnectError(`${what} not found`, Code.NotFound);
export const alreadyExists = (field: string, problem: string) => new ConnectError(`${field}: ${problem}`, Code.AlreadyExists);
export const failedPrecondition = (message: string) => new ConnectError(message, Code.FailedPrecondition);
export const resourceExhausted = (message: string) => new ConnectError(message, Code.ResourceExhausted);
export const permissionDenied = (message: string) => new ConnectError(message, Code.PermissionDenied);

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,100}$/;

/**
 * The request id of a call: the client's `x-request-id` when sane (1 to 100 of `A-Za-z0-9._:-`,
 * so it is safe in logs and headers), else a new UUID. Exported for the HTTP layer, which could
 * give one to requests refused before Connect's interceptors run.
 */
export function requestIdFor(given: string | null | undefined): string {
  return given && REQUEST_ID.test(given) ? given : randomUUID();
}

/** A gRPC or gRPC-Web content type: its answers carry status and metadata their own way. */
export const isGrpc = (contentType: string | null | undefined): boolean => /^application\/grpc/i.test(contentType ?? "");

/**
 * Outermost interceptor: gives each call a request id (the client's `x-request-id` when sane),
 * answers it in the `x-request-id` response header (an error's: in its metadata, except over
 * gRPC and gRPC-Web, whose answers already carry it as a header), logs the call with it (successes at debug: an info line per RPC at
 * thousands per second would drown the log; failures at info, internal errors at error with
 * their cause), and turns unexpected errors into a bare `internal`.
 */
export function edgeInterceptor(log: Logger, metrics?: Metrics): Interceptor {
  return (next) => async (req) => {
    const requestId = requestIdFor(req.header.get("x-request-id"));
    const started = performance.now();
    const rpc = `${req.service.typeName}/${req.method.name}`;
    const observe = (code: string) => {
      metrics?.rpcs.inc({ rpc, code });
      metrics?.rpcDuration.observe({ rpc }, (performance.now() - started) / 1000);
    };
    try {
      const res = await next(req);
      res.header.set("x-request-id", requestId);
      log.debug({ requestId, rpc, ms: Math.round(performance.now() - started) }, "rpc ok");
      observe("ok");
      return res;
    } catch (err) {
      const ms = Math.round(performance.now() - started);
      observe(err instanceof ConnectError ? Code[err.code] : "Internal");
      if (err instanceof ConnectError) {
        // gRPC and gRPC-Web answers carry it as a header already (server/http-handler.ts): as
        // error metadata it would come again in the trailers, and clients merge the two.
        if (!isGrpc(req.header.get("content-type"))) err.metadata.set("x-request-id", requestId);
        log.info({ requestId, rpc, ms, code: Code[err.code], error: err.rawMessage }, "rpc failed");
        throw err;
      }
      log.error({ requestId, rpc, ms, err }, "rpc internal error");
      const internal = new ConnectError(`internal error (request id ${requestId})`, Code.Internal);
      if (!isGrpc(req.header.get("content-type"))) internal.metadata.set("x-request-id", requestId);
      throw internal;
    }
  };
}
