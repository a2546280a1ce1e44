/**
 * Every transport answers in its own terms, refusals included: a malformed message is
 * invalid_argument over Connect binary, gRPC and gRPC-Web (connect-es says internal, or
 * unimplemented for a message count, for some); an unknown method over gRPC is HTTP 200 with
 * grpc-status 12; a call without a valid key is unauthenticated whatever its body (the key is
 * checked before the body is read); every answer carries x-request-id.
 */
import http from "node:http";
import http2 from "node:http2";
import { describe, expect, it } from "vitest";
import { useApp } from "./support/app.ts";
import { frame, grpcWebTrailers } from "./support/fuzz.ts";

const t = useApp();

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** grpc-status and grpc-message: from the headers, the trailers or a gRPC-Web trailer frame. */
  grpcStatus?: string;
  grpcMessage?: string;
  body: Buffer;
}

function h1(path: string, body: Buffer | string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(t.app.url + path, { method: "POST", headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const b = Buffer.concat(chunks);
        const tr = grpcWebTrailers(b);
        const h = res.headers as Record<string, string>;
        resolve({ status: res.statusCode!, headers: res.headers, body: b, grpcStatus: h["grpc-status"] ?? tr["grpc-status"], grpcMessage: decodeURIComponent(h["grpc-message"] ?? tr["grpc-message"] ?? "") });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

function h2(path: string, body: Buffer, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(t.app.url);
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ":path": path, te: "trailers", ...headers });
    let head: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (head = h));
    stream.on("trailers", (h) => (trailers = h));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      session.close();
      const status = (trailers["grpc-status"] ?? head["grpc-status"]) as string | undefined;
      const msg = (trailers["grpc-message"] ?? head["grpc-message"]) as string | undefined;
      resolve({ status: Number(head[":status"]), headers: head as Answer["headers"], body: Buffer.concat(chunks), grpcStatus: status, grpcMessage: decodeURIComponent(msg ?? "") });
    });
    stream.on("error", reject);
    stream.end(body);
  });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// GetProduct's request, field 1 (id) as a varint: then bytes that are no protobuf at all.
const GARBAGE = Buffer.from([0x1f, 0x25]);

describe("malformed messages are invalid_argument on every transport", () => {
  it("gRPC-Web (+proto and bare), gRPC, Connect binary; two messages in a unary gRPC-Web or gRPC call too", async () => {
    const shop = await t.shop();
    const auth = { authorization: `Bearer ${shop.key}` };
    for (const type of ["application/grpc-web+proto", "application/grpc-web"]) {
      const a = await h1("/shop.Product/GetProduct", frame(GARBAGE), { ...auth, "content-type": type });
      expect([a.status, a.grpcStatus, a.headers["content-type"]], type).toEqual([200, "3", "application/grpc-web+proto"]);
      expect(a.grpcMessage).toMatch(/parse binary/);
      expect(a.headers["x-request-id"]).toMatch(UUID);
      const two = await h1("/shop.Product/GetProduct", Buffer.concat([frame(Buffer.alloc(0)), frame(Buffer.alloc(0))]), { ...auth, "content-type": type });
      expect([two.status, two.grpcStatus], `${type}, two messages`).toEqual([200, "3"]);
      expect(two.headers["x-request-id"]).toMatch(UUID);
    }
    const g = await h2("/shop.Product/GetProduct", frame(GARBAGE), { ...auth, "content-type": "application/grpc+proto", "x-request-id": "mine-1" });
    expect([g.status, g.grpcStatus, g.headers["x-request-id"]]).toEqual([200, "3", "mine-1"]);
    const g2 = await h2("/shop.Product/GetProduct", Buffer.concat([frame(Buffer.alloc(0)), frame(Buffer.alloc(0))]), { ...auth, "content-type": "application/grpc" });
    expect(g2.grpcStatus).toBe("3");
    const c = await h1("/v1/shop.Product/GetProduct", GARBAGE, { ...auth, "content-type": "application/proto" });
    expect([c.status, JSON.parse(c.body.toString()).code]).toEqual([400, "invalid_argument"]);
    expect(c.headers["x-request-id"]).toMatch(UUID);
    // And a well-formed message still works on each (not found: no such product).
    const ok = await h1("/shop.Product/GetProduct", frame(Buffer.from([0x08, 0x01])), { ...auth, "content-type": "application/grpc-web+proto" });
    expect(ok.grpcStatus).toBe("5");
  });
});

describe("an unknown method over gRPC or gRPC-Web", () => {
  it("is HTTP 200, a gRPC content type and grpc-status 12, with x-request-id", async () => {
    const g = await h2("/shop.Product/Nope", frame(Buffer.alloc(0)), { "content-type": "application/grpc" });
    expect([g.status, g.grpcStatus, g.headers["content-type"]]).toEqual([200, "12", "application/grpc+proto"]);
    expect(g.headers["x-request-id"]).toMatch(UUID);
    const w = await h1("/shop.Nope/Nope", frame(Buffer.alloc(0)), { "content-type": "application/grpc-web+proto" });
    expect([w.status, w.grpcStatus]).toEqual([200, "12"]);
    expect(w.headers["x-request-id"]).toMatch(UUID);
  });
});

describe("the key is checked before the body", () => {
  it("no key, a bad key or a revoked shape with a malformed or oversized body is unauthenticated on every transport", async () => {
    for (const authorization of [undefined, "Bearer shk_nope", "Basic abc"]) {
      const auth: Record<string, string> = authorization ? { authorization } : {};
      const json = await h1("/v1/shop.Product/GetProduct", '{"id":', { ...auth, "content-type": "application/json" });
      expect([json.status, JSON.parse(json.body.toString()).code], `json ${authorization}`).toEqual([401, "unauthenticated"]);
      expect(json.headers["x-request-id"]).toMatch(UUID);
      const bin = await h1("/v1/shop.Product/GetProduct", GARBAGE, { ...auth, "content-type": "application/proto" });
      expect([bin.status, JSON.parse(bin.body.toString()).code], `binary ${authorization}`).toEqual([401, "unauthenticated"]);
      const web = await h1("/shop.Product/GetProduct", frame(GARBAGE), { ...auth, "content-type": "application/grpc-web+proto" });
      expect([web.status, web.grpcStatus], `grpc-web ${authorization}`).toEqual([200, "16"]);
      expect(web.headers["x-request-id"]).toMatch(UUID);
      const g = await h2("/shop.Product/GetProduct", frame(GARBAGE), { ...auth, "content-type": "application/grpc" });
      expect([g.status, g.grpcStatus], `grpc ${authorization}`).toEqual([200, "16"]);
      expect(g.grpcMessage).toMatch(/^authorization: /);
      // gRPC: a client that keeps sending still gets its answer (after at most 1 MiB read and dropped).
      const gBig = await h2("/shop.Product/GetProduct", frame(Buffer.alloc(3 * 1024 * 1024)), { ...auth, "content-type": "application/grpc" });
      expect([gBig.status, gBig.grpcStatus], `grpc, 3 MiB, ${authorization}`).toEqual([200, "16"]);
      // A body far over the limit is not read either: the answer is the key's.
      const big = await h1("/v1/shop.Product/GetProduct", "x".repeat(2 * 1024 * 1024), { ...auth, "content-type": "application/json" });
      expect(big.status, `oversized ${authorization}`).toBe(401);
    }
  });
});
