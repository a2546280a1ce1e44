/**
 * A minimal webhook receiver for benchmarks, run as its own process so it does not share the
 * service's event loop. Answers 200 "ok", counts requests and changes, and records when each
 * change id first arrived (wall clock, µs). GET /stats returns the counts; GET /arrivals the times.
 * POST /hang/... never answers (an endpoint that times out); GET /fail and GET /heal switch every
 * other POST between 503 and 200.
 *
 *   npx node bench/receiver.ts   (prints {"port": N} on stdout once listening)
 */
import http from "node:http";
import type net from "node:net";

let requests = 0;
let failing = false;
let refused = 0;
let changes = 0;
const arrivals = new Map<string, number>();
const wallMicros = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

const server = http.createServer((req, res) => {
  if (req.method === "GET") {
    const body = req.url === "/arrivals" ? JSON.stringify(Object.fromEntries(arrivals)) : JSON.stringify({ requests, changes, refused, distinct: arrivals.size });
    if (req.url === "/fail") failing = true;
    if (req.url === "/heal") failing = false;
    if (req.url === "/reset") {
      refused = 0;
      requests = 0;
      changes = 0;
      arrivals.clear();
    }
    res.writeHead(200, { "content-type": "application/json" });
    return res.end(body);
  }
  if (req.url?.startsWith("/hang")) return req.resume(); // never answered: the sender times out
  if (failing) {
    refused++;
    req.resume();
    res.writeHead(503, { "content-length": 0 });
    return res.end();
  }
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const at = wallMicros();
    requests++;
    const text = Buffer.concat(chunks).toString();
    if (text.startsWith('{"id"')) {
      const body = JSON.parse(text) as { changes: Array<{ entity_id: string }> };
      changes += body.changes.length;
      for (const c of body.changes) if (!arrivals.has(c.entity_id)) arrivals.set(c.entity_id, at);
    }
    res.writeHead(200, { "content-type": "text/plain", "content-length": 2 });
    res.end("ok");
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: (server.address() as net.AddressInfo).port }) + "\n");
});
process.on("SIGTERM", () => process.exit(0));
