/**
 * Native TLS (SHOPHOOK_TLS_CERT, SHOPHOOK_TLS_KEY): HTTPS and gRPC over TLS on the one port,
 * chosen by ALPN; curl over HTTP/1.1 and HTTP/2; a renewed certificate is served without a restart.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import crypto from "node:crypto";
import fs from "node:fs";
import http2 from "node:http2";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent, request } from "undici";
import { useApp } from "./support/app.ts";
import { certPaths, writeCert } from "./support/tls.ts";

const files = certPaths();
beforeAll(() => writeCert(files, "first"));
afterAll(() => fs.rmSync(files.dir, { recursive: true, force: true }));
const t = useApp({ tls: { certFile: files.certFile, keyFile: files.keyFile } });

const ca = () => fs.readFileSync(files.certFile);
// Not execFileSync: the server runs in this process, and would not answer while it blocks.
const run = promisify(execFile);
const port = () => Number(new URL(t.app.url).port);

/** The certificate a new connection is shown, as its SHA-256 fingerprint, and the protocol ALPN chose. */
function handshake(alpn: string[]): Promise<{ fingerprint: string; protocol: string | false | null }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port: port(), rejectUnauthorized: false, ALPNProtocols: alpn }, () => {
      resolve({ fingerprint: s.getPeerCertificate().fingerprint256, protocol: s.alpnProtocol });
      s.end();
    });
    s.on("error", reject);
  });
}

const fingerprintOf = (pem: Buffer) => new crypto.X509Certificate(pem).fingerprint256;

describe("TLS on the one port", () => {
  it("HTTPS (HTTP/1.1) and gRPC over TLS (h2), by ALPN; the URL says https", async () => {
    expect(t.app.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect((await handshake(["h2", "http/1.1"])).protocol).toBe("h2");
    expect((await handshake(["http/1.1"])).protocol).toBe("http/1.1");
    const shop = await t.shop();
    const agent = new Agent({ connect: { ca: ca() } });
    const res = await request(`${t.app.url}/v1/shop.Misc/CurrentAccount`, { method: "POST", dispatcher: agent, headers: { "content-type": "application/json", authorization: `Bearer ${shop.key}` }, body: "{}" });
    expect(res.statusCode).toBe(200);
    expect(((await res.body.json()) as { shop: { id: string } }).shop.id).toBe(shop.id);
    await agent.close();

    const session = http2.connect(t.app.url, { ca: ca() });
    const status = await new Promise<string>((resolve, reject) => {
      const s = session.request({ ":method": "POST", ":path": "/shop.Misc/VersionInfo", "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${shop.key}` });
      let st = "";
      s.on("response", (h) => h["grpc-status"] !== undefined && (st = String(h["grpc-status"])));
      s.on("trailers", (h) => (st = String(h["grpc-status"])));
      s.on("error", reject);
      s.resume();
      s.on("close", () => resolve(st));
      s.end(Buffer.alloc(5));
    });
    session.close();
    expect(status).toBe("0");
  });

  it("curl, HTTP/1.1 and HTTP/2, trusting the certificate; plain HTTP on the port gets nothing", async () => {
    for (const flag of ["--http1.1", "--http2"]) {
      const { stdout } = await run("curl", ["-sS", "--max-time", "10", flag, "--cacert", files.certFile, "-w", " %{http_version}", `${t.app.url}/healthz`]);
      expect(stdout, flag).toBe(`{"status":"ok"} ${flag === "--http2" ? "2" : "1.1"}`);
    }
    const plain = await fetch(`http://127.0.0.1:${port()}/healthz`).then(
      (r) => r.status,
      () => "refused",
    );
    expect(plain).toBe("refused");
  });

  it("a renewed certificate is served to new connections without a restart", async () => {
    const before = fingerprintOf(ca());
    expect((await handshake(["h2"])).fingerprint).toBe(before);
    writeCert(files, "renewed");
    const after = fingerprintOf(ca());
    expect(after).not.toBe(before);
    await expect.poll(async () => (await handshake(["h2"])).fingerprint, { timeout: 10_000, interval: 250 }).toBe(after);
    const agent = new Agent({ connect: { ca: ca() } });
    expect((await request(`${t.app.url}/healthz`, { dispatcher: agent })).statusCode).toBe(200);
    await agent.close();
  });
});
