/**
 * `shophook listen`: a local webhook receiver for development, like `stripe listen` or
 * `svix listen`. Prints each delivery readably (entity, action, id, changed fields), verifies
 * its Standard Webhooks signature with the stock `standardwebhooks` library, and answers 200
 * so the stream moves (401 when a secret is given and the signature does not verify).
 */
import http from "node:http";
import type net from "node:net";
import { Webhook } from "standardwebhooks";

export interface ListenOptions {
  port: number;
  host: string;
  secret?: string;
  /** Print each request's body as one JSON line instead of the summary. */
  json: boolean;
  /** Status to answer valid deliveries with (to try retries). */
  status: number;
  out: (line: string) => void;
}

interface Change {
  id?: string;
  time?: string;
  change_type?: string;
  entity?: string;
  entity_id?: string;
  changed?: Record<string, Record<string, unknown>>;
}

function summary(c: Change): string {
  const changed = c.entity && c.changed?.[c.entity] ? Object.keys(c.changed[c.entity]!) : [];
  const fields = changed.length ? `  changed: ${changed.join(", ")}` : "";
  return `  ${c.time ?? ""}  ${c.entity}.${c.change_type}d  ${c.entity_id}${fields}`;
}

/** Describes one delivery in a few lines: what arrived and whether it is genuine. */
export function describeDelivery(headers: http.IncomingHttpHeaders, raw: string, verdict: string): string[] {
  const lines = [`${new Date().toISOString()}  POST ${headers["webhook-id"] ?? "?"}  ${headers["x-shophook-event"] ?? ""}  signature ${verdict}${headers["x-shophook-test"] ? "  (test)" : ""}`];
  if ((headers["content-type"] ?? "").includes("xml")) return [...lines, `  ${raw.length} bytes of XML`];
  try {
    const body = JSON.parse(raw) as { changes?: Change[]; notifications?: Array<Record<string, string>> };
    if (body.changes) lines.push(...body.changes.map(summary));
    if (body.notifications) lines.push(...body.notifications.map((n) => `  ${n.time ?? ""}  ${n.scope_name}.${n.act}  ${n.scope_id}`));
  } catch {
    lines.push(`  (not JSON: ${raw.slice(0, 80)})`);
  }
  return lines;
}

/** Starts the receiver; resolves with the server once listening. */
export async function listen(opts: ListenOptions): Promise<http.Server> {
  const verifier = opts.secret ? new Webhook(opts.secret) : undefined;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString();
      let verdict = "not checked (no --secret)";
      let status = opts.status;
      if (verifier) {
        try {
          verifier.verify(raw, {
            "webhook-id": String(req.headers["webhook-id"] ?? ""),
            "webhook-timestamp": String(req.headers["webhook-timestamp"] ?? ""),
            "webhook-signature": String(req.headers["webhook-signature"] ?? ""),
          });
          verdict = "ok";
        } catch (err) {
          // The library's verify also parses JSON: an XML body that signs correctly lands here too.
          const h = req.headers;
          const sig = String(h["webhook-signature"] ?? "");
          const expected = verifier.sign(String(h["webhook-id"] ?? ""), new Date(Number(h["webhook-timestamp"] ?? 0) * 1000), raw);
          if (sig.split(" ").includes(expected)) verdict = "ok";
          else {
            verdict = `INVALID (${(err as Error).message})`;
            status = 401;
          }
        }
      }
      if (opts.json) opts.out(JSON.stringify({ headers: req.headers, body: raw }));
      else for (const line of describeDelivery(req.headers, raw, verdict)) opts.out(line);
      res.writeHead(status, { "content-type": "text/plain" });
      res.end(status < 300 ? "ok" : "rejected");
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const address = server.address() as net.AddressInfo;
  opts.out(`listening on http://${address.address}:${address.port}/ ; point a webhook at it (the server must allow it: SHOPHOOK_WEBHOOK_ALLOW_HTTP=true SHOPHOOK_WEBHOOK_ALLOW_PRIVATE=127.0.0.1)`);
  return server;
}
