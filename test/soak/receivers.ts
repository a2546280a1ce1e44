/**
 * The webhook receivers: one local HTTP server, one path per receiver (`/r/<n>`), each with its
 * own outages on the simulated clock (503, connection reset, or no answer until shophook's
 * timeout) and, for some, random failures. Every request is checked and recorded per webhook
 * (by `x-shophook-webhook-id`):
 *   - the signature, verified with the standardwebhooks package with the secret(s) the receiver
 *     holds: the old one until it switches, at its own pace within the rotation's grace period,
 *     then the new one; the number of signatures (two during a grace period, one otherwise);
 *   - one callback id (`webhook-id`, = body id) always carries the same body;
 *   - never two requests of one webhook in flight at once;
 *   - a receiver that is down processes nothing; an accepted request's changes are applied to the
 *     receiver's copy as docs/delivery.md "Deduplicating" rule 2 says: per entity, a change is
 *     applied only if its id is greater than the last one applied.
 */
import { createHash } from "node:crypto";
import http from "node:http";
import type net from "node:net";
import { Webhook as StandardWebhook } from "standardwebhooks";
import type { ManualClock } from "../support/clock.ts";
import type { Rng } from "./random.ts";

export type OutageMode = "503" | "reset" | "hang";
export interface Outage {
  start: number;
  end: number;
  mode: OutageMode;
  kind: "minutes" | "hours" | "long";
}

export interface Endpoint {
  n: number;
  url: string;
  outages: Outage[];
  /** Probability that a request is refused (500, or 429 with Retry-After) while the receiver is up. */
  flaky: number;
  rng: Rng;
}

/** JSON with sorted keys: two copies of one value compare equal whatever their key order. */
export function stable(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(stable).join(",")}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${stable(o[k])}`)
    .join(",")}}`;
}

export const digest = (v: unknown) => createHash("sha1").update(stable(v)).digest("base64");

export interface Attempt {
  /** Simulated time of the request. */
  t: number;
  ok: boolean;
  callback: string;
  status: number | "reset" | "hang";
}

/** What a webhook's receiver saw, and what it holds. */
export class HookRecord {
  readonly id: string;
  format: "json" | "thin" = "json";
  /** Secrets the receiver verifies with now, and switches it has planned (to a new secret, at a time). */
  accept: string[];
  readonly switches: Array<{ at: number; secret: string }> = [];
  /** Rotations: two signatures are due from `at` until `graceEnd`. */
  readonly rotations: Array<{ at: number; graceEnd: number }> = [];
  readonly attempts: Attempt[] = [];
  readonly bodies = new Map<string, string>();
  /** Change ids in order of first arrival (accepted requests only). */
  readonly first: string[] = [];
  /** Change id -> digest of the change as first received. */
  readonly seen = new Map<string, string>();
  /** entity:entity_id -> the newest change applied (rule 2). */
  readonly copy = new Map<string, { id: bigint; latest: any }>();
  inflight = 0;
  readonly problems: string[] = [];
  /** Set when SetActive revives a stopped webhook: the callback id that must come first. */
  expectCallback: string | undefined;
  duplicates = 0;
  requests = 0;

  constructor(id: string, secret: string) {
    this.id = id;
    this.accept = [secret];
  }

  problem(s: string) {
    if (this.problems.length < 20) this.problems.push(s);
  }

  /** The shop rotated the secret at `at` with a grace period; the receiver switches at `switchAt` (at once when the grace is 0). */
  rotated(secret: string, at: number, graceEnd: number, switchAt: number) {
    this.rotations.push({ at, graceEnd });
    if (switchAt <= at) this.accept = [secret];
    else this.switches.push({ at: switchAt, secret });
  }

  /** The last callback id that failed (the batch a stopped webhook was retrying). */
  lastFailedCallback(): string | undefined {
    for (let i = this.attempts.length - 1; i >= 0; i--) if (!this.attempts[i]!.ok) return this.attempts[i]!.callback;
    return undefined;
  }
}

export class Receivers {
  readonly endpoints: Endpoint[] = [];
  readonly hooks = new Map<string, HookRecord>();
  readonly problems: string[] = [];
  private server!: http.Server;
  private readonly sockets = new Set<net.Socket>();
  private base = "";
  private readonly clock: ManualClock;
  private readonly deliveryTimeoutMs: number;

  constructor(clock: ManualClock, deliveryTimeoutMs: number) {
    this.clock = clock;
    this.deliveryTimeoutMs = deliveryTimeoutMs;
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.keepAliveTimeout = 60_000;
    this.server.on("connection", (s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.base = `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  endpoint(outages: Outage[], flaky: number, rng: Rng): Endpoint {
    const n = this.endpoints.length;
    const e: Endpoint = { n, url: `${this.base}/r/${n}`, outages, flaky, rng };
    this.endpoints.push(e);
    return e;
  }

  outageAt(e: Endpoint, t: number): Outage | undefined {
    return e.outages.find((o) => o.start <= t && t < o.end);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString();
      const t = this.clock.now().getTime();
      const m = /^\/r\/(\d+)$/.exec(req.url ?? "");
      const endpoint = m ? this.endpoints[Number(m[1])] : undefined;
      const rec = this.hooks.get(String(req.headers["x-shophook-webhook-id"] ?? ""));
      if (!endpoint || !rec) {
        if (this.problems.length < 20) this.problems.push(`request to ${req.url} for unknown webhook ${String(req.headers["x-shophook-webhook-id"])}`);
        res.writeHead(404).end();
        return;
      }
      rec.requests++;
      const callback = String(req.headers["webhook-id"] ?? "");
      const attempt: Attempt = { t, ok: false, callback, status: 0 };
      rec.attempts.push(attempt);
      // The same callback id always carries the same body (docs/delivery.md "Deduplicating").
      const bodyHash = createHash("sha1").update(raw).digest("base64");
      const known = rec.bodies.get(callback);
      if (known === undefined) rec.bodies.set(callback, bodyHash);
      else if (known !== bodyHash) rec.problem(`callback ${callback} sent again with a different body`);

      const outage = this.outageAt(endpoint, t);
      if (outage?.mode === "hang") {
        attempt.status = "hang"; // shophook gives up after its timeout and closes the connection
        setTimeout(() => req.socket.destroy(), this.deliveryTimeoutMs * 4).unref();
        return;
      }
      if (outage?.mode === "reset") {
        attempt.status = "reset";
        req.socket.destroy();
        return;
      }
      if (++rec.inflight > 1) rec.problem(`two requests in flight at once (callback ${callback})`);
      const answer = (status: number, headers: Record<string, string> = {}) => {
        attempt.status = status;
        attempt.ok = status >= 200 && status < 300;
        rec.inflight--;
        res.writeHead(status, { "content-type": "text/plain", ...headers }).end(attempt.ok ? "ok" : "no");
      };
      if (outage) return answer(503);
      if (endpoint.flaky && endpoint.rng.chance(endpoint.flaky)) return endpoint.rng.chance(0.5) ? answer(500) : answer(429, { "retry-after": "120" });

      // Signatures: the receiver's own secrets, switched at its pace.
      for (const s of rec.switches.filter((x) => x.at <= t)) {
        rec.accept = [s.secret];
        rec.switches.splice(rec.switches.indexOf(s), 1);
      }
      const headers = {
        "webhook-id": callback,
        "webhook-timestamp": String(req.headers["webhook-timestamp"] ?? ""),
        "webhook-signature": String(req.headers["webhook-signature"] ?? ""),
      };
      if (!rec.accept.some((secret) => verifies(secret, raw, headers))) {
        rec.problem(`signature does not verify with the receiver's secret at ${new Date(t).toISOString()} (callback ${callback}; rotations ${rec.rotations.length})`);
        return answer(401);
      }
      const signatures = headers["webhook-signature"].split(" ").length;
      const inGrace = rec.rotations.some((r) => r.at <= t && t < r.graceEnd);
      if (signatures !== (inGrace ? 2 : 1)) rec.problem(`${signatures} signatures at ${new Date(t).toISOString()}, ${inGrace ? "during" : "outside"} a rotation's grace period`);

      let body: any;
      try {
        body = JSON.parse(raw);
      } catch {
        rec.problem(`callback ${callback}: body is not JSON`);
        return answer(400);
      }
      if (String(body.id) !== callback) rec.problem(`body id ${body.id} under webhook-id ${callback}`);
      if (rec.expectCallback !== undefined) {
        if (callback !== rec.expectCallback) rec.problem(`after SetActive revived the stopped webhook, callback ${callback} came first, not the failing batch ${rec.expectCallback}`);
        rec.expectCallback = undefined;
      }
      if (rec.format === "thin") {
        for (const n of body.notifications ?? []) this.take(rec, String(n.change_id), n, undefined);
      } else {
        for (const c of body.changes ?? []) this.take(rec, String(c.id), { ...c, changed: c.changed ?? null }, c);
      }
      answer(200);
    });
  }

  private take(rec: HookRecord, id: string, view: unknown, change: any) {
    if (rec.seen.has(id)) {
      rec.duplicates++;
      return;
    }
    rec.seen.set(id, digest(view));
    rec.first.push(id);
    if (!change) return;
    const key = `${change.entity}:${change.entity_id}`;
    const prev = rec.copy.get(key);
    const n = BigInt(id);
    if (!prev || n > prev.id) rec.copy.set(key, { id: n, latest: change.latest?.[change.entity] });
  }
}

function verifies(secret: string, raw: string, headers: Record<string, string>): boolean {
  try {
    new StandardWebhook(secret).verify(raw, headers);
    return true;
  } catch {
    return false;
  }
}
