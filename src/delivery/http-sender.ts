/**
 * One webhook POST: SSRF-checked at connect time, bounded in time, never following redirects,
 * and always answering with a result (a failure is data for last_error, never a throw).
 */
import net from "node:net";
import { Agent, request } from "undici";
import type { AddressPolicy } from "./ssrf.ts";

export interface SendResult {
  ok: boolean;
  /** HTTP status, 0 when no response arrived. */
  status: number;
  /** Empty on success; otherwise what went wrong, for people: "unexpected status: 500", "timeout after 10000 ms"... */
  error: string;
  /** The start of the response body. */
  body: string;
  headers: Record<string, string>;
  durationMs: number;
}

export interface SenderOptions {
  timeoutMs: number;
  userAgent: string;
  /** How much of a response body is kept (for last_error and history). */
  bodyExcerptBytes?: number;
}

/** The largest response body read to the end (so the connection can be reused); larger ones are cut off. */
const DRAIN_LIMIT = 64 * 1024;

function describe(err: unknown, timeoutMs: number): string {
  const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = e?.code ?? e?.cause?.code ?? "";
  const name = e?.name ?? "";
  if (name === "TimeoutError" || name === "AbortError" || code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT" || code === "UND_ERR_CONNECT_TIMEOUT")
    return `timeout after ${timeoutMs} ms`;
  if (code === "ESHOPHOOKBLOCKED") return e.message ?? e.cause?.message ?? "refused: address not allowed";
  if (code === "ECONNREFUSED") return "connection refused";
  if (code === "ECONNRESET" || code === "UND_ERR_SOCKET" || code === "EPIPE") return "connection reset";
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return `dns: host not found (${code})`;
  if (code === "EHOSTUNREACH" || code === "ENETUNREACH") return `network unreachable (${code})`;
  if (/CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code) || /certificate|tls|ssl/i.test(e?.message ?? "")) return `tls error: ${code || e.message}`;
  return `${code || name || "error"}: ${(e?.message ?? String(err)).slice(0, 200)}`;
}

export class HttpSender {
  private readonly agent: Agent;
  private readonly opts: Required<SenderOptions>;
  private readonly policy: AddressPolicy;

  constructor(policy: AddressPolicy, opts: SenderOptions) {
    this.policy = policy;
    this.opts = { bodyExcerptBytes: 1024, ...opts };
    this.agent = new Agent({
      connect: { lookup: policy.lookup, timeout: opts.timeoutMs },
      keepAliveTimeout: 30_000,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
    });
  }

  async post(url: string, headers: Record<string, string>, body: string): Promise<SendResult> {
    const started = performance.now();
    const done = (r: Omit<SendResult, "durationMs">): SendResult => ({ ...r, durationMs: Math.round(performance.now() - started) });
    let host: string;
    try {
      host = new URL(url).hostname;
    } catch {
      return done({ ok: false, status: 0, error: "invalid url", body: "", headers: {} });
    }
    // An IP literal never goes through lookup: check it here.
    const bare = host.startsWith("[") ? host.slice(1, -1) : host;
    if (net.isIP(bare)) {
      const why = this.policy.refusal(bare);
      if (why) return done({ ok: false, status: 0, error: `refused: ${why}`, body: "", headers: {} });
    }
    try {
      const res = await request(url, {
        method: "POST",
        dispatcher: this.agent,
        headers: { "user-agent": this.opts.userAgent, "content-type": "application/json", ...headers },
        body,
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
      const chunks: Buffer[] = [];
      let size = 0;
      let kept = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (kept < this.opts.bodyExcerptBytes) {
          chunks.push(chunk);
          kept += chunk.length;
        }
        if (size > DRAIN_LIMIT) {
          res.body.destroy();
          break;
        }
      }
      // Streaming decode drops a character cut in half at the excerpt's end.
      const text = new TextDecoder().decode(Buffer.concat(chunks).subarray(0, this.opts.bodyExcerptBytes), { stream: true });
      const respHeaders: Record<string, string> = {};
      for (const [k, v] of Object.entries(res.headers)) respHeaders[k] = Array.isArray(v) ? v.join(", ") : String(v);
      const ok = res.statusCode >= 200 && res.statusCode < 300;
      return done({ ok, status: res.statusCode, error: ok ? "" : `unexpected status: ${res.statusCode}`, body: text, headers: respHeaders });
    } catch (err) {
      return done({ ok: false, status: 0, error: describe(err, this.opts.timeoutMs), body: "", headers: {} });
    }
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }
}
