/**
 * Plain HTTP routes beside the RPCs: GET /metrics (Prometheus). Each route answers true when it
 * handled the request.
 */
import type { Metrics } from "../metrics.ts";
import type { NodeServerRequest, NodeServerResponse } from "./one-port.ts";

export type PlainRoute = (req: NodeServerRequest, res: NodeServerResponse) => boolean;

const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/;

function plain(res: NodeServerResponse, status: number, type: string, body: string) {
  res.statusCode = status;
  res.setHeader("content-type", type);
  res.setHeader("content-length", Buffer.byteLength(body));
  res.end(body);
}

/**
 * GET /metrics: with SHOPHOOK_METRICS_TOKEN set, for `Authorization: Bearer <token>`; without it,
 * for loopback clients only (a scraper on the same host), never the public.
 */
export function metricsRoute(metrics: Metrics, token: string | undefined): PlainRoute {
  return (req, res) => {
    if ((req.url ?? "").split("?")[0] !== "/metrics") return false;
    if (req.method !== "GET") {
      plain(res, 405, "text/plain", "method not allowed\n");
      return true;
    }
    const allowed = token ? req.headers.authorization === `Bearer ${token}` : LOOPBACK.test(req.socket?.remoteAddress ?? "");
    if (!allowed) {
      plain(res, token ? 401 : 403, "text/plain", token ? "metrics: send Authorization: Bearer <SHOPHOOK_METRICS_TOKEN>\n" : "metrics: only from the local host (set SHOPHOOK_METRICS_TOKEN to allow others)\n");
      return true;
    }
    metrics.registry.metrics().then(
      (text) => plain(res, 200, metrics.registry.contentType, text),
      (err: unknown) => plain(res, 500, "text/plain", `metrics unavailable: ${(err as Error).message}\n`),
    );
    return true;
  };
}

/** Routes in order: the first that handles a request wins. */
export function plainRoutes(routes: PlainRoute[]): PlainRoute {
  return (req, res) => routes.some((r) => r(req, res));
}
