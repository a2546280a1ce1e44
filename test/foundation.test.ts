/** The base: one port for JSON/gRPC/gRPC-Web, auth, errors, hostile requests, tenancy. */
import { Code, ConnectError } from "@connectrpc/connect";
import http2 from "node:http2";
import net from "node:net";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { toJsonString } from "@bufbuild/protobuf";
import { ApiKey, ListApiKeysResponseSchema } from "../gen/shop/api_key_pb.ts";
import { Misc } from "../gen/shop/misc_pb.ts";
import { postJson, protocols, useApp } from "./support/app.ts";

const t = useApp({ bodyLimitBytes: 64 * 1024 });

describe("one port, three protocols", () => {
  it("answers curl-style JSON at /v1/shop.Misc/... with snake_case fields", async () => {
    const shop = await t.shop("Curl shop");
    for (const path of ["/v1/shop.Misc/CurrentAccount", "/shop.Misc/CurrentAccount"]) {
      const res = await shop.post(path, {});
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/^application\/json/);
      expect(res.body.shop).toEqual({ id: shop.id, name: "Curl shop", created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
      expect(typeof res.body.shop.id).toBe("string"); // int64 as a JSON string
      expect(res.body.api_key.prefix).toBe(shop.key.slice(0, 12));
      expect(res.body.api_key).toHaveProperty("created_at");
    }
  });

  it.each(protocols)("serves the same RPC to the generated client over %s", async (protocol) => {
    const shop = await t.shop();
    const res = await shop.client(Misc, protocol).currentAccount({});
    expect(res.shop?.id).toBe(shop.id);
    expect(res.apiKey?.prefix).toBe(shop.key.slice(0, 12));
  });

  it("keeps an HTTP/2 connection and an HTTP/1.1 connection on the same port", async () => {
    const shop = await t.shop();
    const grpc = shop.client(Misc, "grpc");
    const json = shop.client(Misc, "connect");
    const results = await Promise.all([...Array(20)].map((_, i) => (i % 2 ? grpc : json).versionInfo({})));
    expect(results.every((r) => r.service === "shophook")).toBe(true);
  });

  it("answers /healthz and /readyz", async () => {
    expect((await fetch(`${t.app.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${t.app.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: "ready" });
  });
});

describe("authentication", () => {
  it("refuses a missing, malformed, unknown or revoked key with unauthenticated", async () => {
    const shop = await t.shop();
    const url = `${t.app.url}/v1/shop.Misc/CurrentAccount`;
    const cases: Record<string, string>[] = [
      {},
      { authorization: "" },
      { authorization: shop.key },
      { authorization: `Basic ${shop.key}` },
      { authorization: "Bearer shk_nope" },
      { authorization: `Bearer ${shop.key.slice(0, -1)}x` },
      { authorization: "Bearer " + "a".repeat(5000) },
    ];
    for (const headers of cases) {
      const res = await postJson(url, {}, headers);
      expect(res.status, JSON.stringify(headers).slice(0, 80)).toBe(401);
      expect(res.body.code).toBe("unauthenticated");
      expect(res.body.message).toMatch(/^authorization: /);
    }
    // over gRPC too
    const anon = (await import("./support/app.ts")).transport(t.app.url, "grpc");
    const { createClient } = await import("@connectrpc/connect");
    await expect(createClient(Misc, anon).currentAccount({})).rejects.toMatchObject({ code: Code.Unauthenticated });
  });

  it("creates, lists and revokes keys; a revoked key stops working at once", async () => {
    const shop = await t.shop();
    const keys = shop.client(ApiKey);
    const created = await keys.createApiKey({ name: "ci" });
    expect(created.key).toMatch(/^shk_[A-Za-z0-9_-]{43}$/);
    const second = await postJson(`${t.app.url}/v1/shop.Misc/CurrentAccount`, {}, { authorization: `Bearer ${created.key}` });
    expect(second.body.api_key.name).toBe("ci");

    const list = await keys.listApiKeys({});
    expect(list.apiKeys.map((k) => k.name).sort()).toEqual(["ci", "test"]);
    expect(toJsonString(ListApiKeysResponseSchema, list)).not.toContain(created.key.slice(12));

    await keys.revokeApiKey({ id: created.apiKey!.id });
    const after = await postJson(`${t.app.url}/v1/shop.Misc/CurrentAccount`, {}, { authorization: `Bearer ${created.key}` });
    expect(after.status).toBe(401);
    // the shop's other key still works
    expect((await shop.post("/v1/shop.Misc/CurrentAccount", {})).status).toBe(200);
  });

  it("never lets one shop revoke or see another shop's keys", async () => {
    const a = await t.shop("A");
    const b = await t.shop("B");
    const bKeys = await b.client(ApiKey).listApiKeys({});
    const bKeyId = bKeys.apiKeys[0]!.id;
    const res = await a.post("/v1/shop.ApiKey/RevokeApiKey", { id: bKeyId });
    expect(res.status).toBe(404);
    expect(res.body.code).toBe("not_found");
    expect((await b.post("/v1/shop.Misc/CurrentAccount", {})).status).toBe(200);
    const aKeys = await a.client(ApiKey).listApiKeys({});
    expect(aKeys.apiKeys.map((k) => k.id)).not.toContain(bKeyId);
  });
});

describe("bad requests", () => {
  it("answers at least 20 kinds of bad request with a clear 4xx, then still serves", async () => {
    const shop = await t.shop();
    const auth = { authorization: `Bearer ${shop.key}` };
    const rpc = `${t.app.url}/v1/shop.ApiKey/RevokeApiKey`;
    const raw = async (init: RequestInit & { url?: string }) => {
      const res = await fetch(init.url ?? rpc, { method: "POST", ...init, headers: { "content-type": "application/json", ...auth, ...(init.headers as Record<string, string>) } });
      const text = await res.text();
      return { status: res.status, text };
    };
    let nested = "1";
    for (let i = 0; i < 5000; i++) nested = `{"a":${nested}}`;
    const cases: Array<[string, () => Promise<{ status: number; text: string }>, number, RegExp?]> = [
      ["malformed JSON", () => raw({ body: "{bad" }), 400, /invalid_argument/],
      ["truncated JSON", () => raw({ body: '{"id": "12' }), 400, /invalid_argument/],
      ["JSON array body", () => raw({ body: "[1,2]" }), 400, /invalid_argument/],
      ["JSON string body", () => raw({ body: '"x"' }), 400, /invalid_argument/],
      ["unknown field", () => raw({ body: '{"nope": 1}' }), 400, /nope/],
      ["wrong field type", () => raw({ body: '{"id": {"x": 1}}' }), 400, /invalid_argument/],
      ["non-numeric int64", () => raw({ body: '{"id": "abc"}' }), 400, /invalid_argument/],
      ["missing required id", () => raw({ body: "{}" }), 400, /id: required/],
      ["deeply nested JSON", () => raw({ body: `{"id": ${nested}}` }), 400, /invalid_argument/],
      ["invalid UTF-8", () => raw({ body: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]) }), 400, /invalid_argument/],
      ["wrong content type", () => raw({ body: "{}", headers: { "content-type": "text/plain" } }), 415, /content-type/],
      ["no content type", () => fetch(rpc, { method: "POST", headers: auth, body: new Uint8Array([123, 125]) }).then(async (r) => ({ status: r.status, text: await r.text() })), 415, /content-type/],
      ["xml content type", () => raw({ body: "<a/>", headers: { "content-type": "application/xml" } }), 415, /content-type/],
      ["oversized body", () => raw({ body: JSON.stringify({ name: "x".repeat(200 * 1024) }), url: `${t.app.url}/v1/shop.ApiKey/CreateApiKey` }), 413, /resource_exhausted/],
      ["unknown method", () => raw({ body: "{}", url: `${t.app.url}/v1/shop.ApiKey/Nope` }), 404, /unimplemented/],
      ["unknown service", () => raw({ body: "{}", url: `${t.app.url}/v1/shop.Nope/Nope` }), 404, /unimplemented/],
      ["path outside the API", () => raw({ body: "{}", url: `${t.app.url}/v1/../../etc/passwd` }), 404],
      ["GET on an RPC", () => fetch(rpc, { headers: auth }).then(async (r) => ({ status: r.status, text: await r.text() })), 405],
      ["PUT on an RPC", () => raw({ method: "PUT", body: "{}" }), 405],
      ["bad gzip body", () => raw({ body: "not gzip", headers: { "content-encoding": "gzip" } }), 400],
      ["unsupported encoding", () => raw({ body: "{}", headers: { "content-encoding": "br-x" } }), 415, /compression/],
      ["protobuf garbage", () => raw({ body: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), headers: { "content-type": "application/proto" } }), 400, /invalid_argument/],
      ["gzip of invalid JSON", () => raw({ body: gzipSync("{nope"), headers: { "content-encoding": "gzip" } }), 400, /invalid_argument/],
      ["id out of int64 range", () => raw({ body: '{"id": "99999999999999999999"}' }), 400, /invalid_argument/],
      ["negative id", () => raw({ body: '{"id": "-5"}' }), 400, /id/],
      ["name too long", () => raw({ body: JSON.stringify({ name: "n".repeat(101) }), url: `${t.app.url}/v1/shop.ApiKey/CreateApiKey` }), 400, /name: at most 100/],
    ];
    expect(cases.length).toBeGreaterThanOrEqual(20);
    for (const [name, send, status, body] of cases) {
      const res = await send();
      expect(res.status, `${name}: ${res.text.slice(0, 200)}`).toBe(status);
      if (body) expect(res.text, name).toMatch(body);
      expect(res.text, name).not.toMatch(/\n\s+at /); // no stack traces
    }

    // Broken transports: a non-HTTP client, a truncated request, a bad HTTP/2 preface.
    await rawSocket(t.app.port, "GARBAGE\r\n\r\n");
    await rawSocket(t.app.port, "POST /v1/shop.Misc/VersionInfo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{");
    await rawSocket(t.app.port, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04garbage");
    await rawSocket(t.app.port, `GET /healthz HTTP/1.1\r\nX-Big: ${"a".repeat(64 * 1024)}\r\n\r\n`);

    // gRPC with a bad message frame
    const grpcStatus = await new Promise<string | undefined>((resolve, reject) => {
      const session = http2.connect(t.app.url);
      session.on("error", reject);
      const stream = session.request({ ":method": "POST", ":path": "/shop.Misc/VersionInfo", "content-type": "application/grpc", te: "trailers", ...auth });
      stream.on("trailers", (tr) => resolve(tr["grpc-status"] as string));
      stream.on("response", (h) => h["grpc-status"] && resolve(h["grpc-status"] as string));
      stream.on("error", reject);
      stream.end(Buffer.from([0, 0, 0, 0, 5, 0xff, 0xff]));
      stream.on("close", () => session.close());
    });
    expect(grpcStatus).toBe("3"); // INVALID_ARGUMENT

    // still serving
    const ok = await shop.post("/v1/shop.Misc/CurrentAccount", {});
    expect(ok.status).toBe(200);
    expect(ok.body.shop.id).toBe(shop.id);
  });

  it("maps errors to Connect codes for the generated client", async () => {
    const shop = await t.shop();
    const keys = shop.client(ApiKey, "grpc");
    const err = await keys.revokeApiKey({ id: "123" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.NotFound);
    expect((err as ConnectError).rawMessage).toBe("api key 123 not found");
  });
});

/** Writes `payload` on a raw TCP connection and waits for the server to answer or close. */
function rawSocket(port: number, payload: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.end(payload));
    let got = "";
    socket.on("data", (d) => (got += d.toString()));
    socket.on("close", () => resolve(got));
    socket.on("error", () => resolve(got));
    setTimeout(() => socket.destroy(), 2_000);
  });
}
