/**
 * Unary Connect JSON takes a direct path (src/server/unary-json.ts); everything else goes
 * through connect-es. The two must answer alike: the same request sent both ways (a
 * `connect-timeout-ms` header sends it through connect-es) gets the same status, body and headers.
 */
import http from "node:http";
import type net from "node:net";
import zlib from "node:zlib";
import { describe, expect, it } from "vitest";
import { Misc } from "../gen/shop/misc_pb.ts";
import { miscService } from "../src/api/misc.ts";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { unaryJson } from "../src/server/unary-json.ts";
import { useApp } from "./support/app.ts";

const t = useApp();

async function both(path: string, body: string, headers: Record<string, string>) {
  const send = async (extra: Record<string, string>) => {
    const res = await fetch(t.app.url + path, { method: "POST", headers: { "content-type": "application/json", ...headers, ...extra }, body });
    return { status: res.status, type: res.headers.get("content-type"), requestId: res.headers.get("x-request-id"), body: await res.text() };
  };
  return { direct: await send({}), generic: await send({ "connect-timeout-ms": "60000" }) };
}

describe("the direct path for unary JSON", () => {
  it("answers every kind of request exactly as connect-es does", async () => {
    const shop = await t.shop();
    const auth = { authorization: `Bearer ${shop.key}`, "x-request-id": "same-id-both-ways" };
    const cases: Array<[string, string, Record<string, string>]> = [
      ["/v1/shop.Misc/CurrentAccount", "{}", auth],
      ["/shop.Misc/CurrentAccount", "{}", auth],
      ["/v1/shop.Misc/CurrentAccount", "{}", { authorization: "Bearer shk_nope", "x-request-id": "r1" }],
      ["/v1/shop.Misc/CurrentAccount", "{}", { "x-request-id": "r2" }],
      ["/v1/shop.Product/GetProduct", '{"id": "123"}', auth],
      ["/v1/shop.Product/GetProduct", '{"id": "x"}', auth],
      ["/v1/shop.Product/GetProduct", '{"id": 1.5}', auth],
      ["/v1/shop.Product/GetProduct", '{"idd": "1"}', auth],
      ["/v1/shop.Product/GetProduct", '{"id": "1"', auth],
      ["/v1/shop.Product/GetProduct", "", auth],
      ["/v1/shop.Product/GetProduct", "[]", auth],
      ["/v1/shop.Product/ListProducts", '{"paging": {"limit": 5000}}', auth],
      ["/v1/shop.Product/ListProducts", '{"paging": {"after": "tampered.cursor"}}', auth],
      ["/v1/shop.Webhook/GetWebhooks", "{}", auth],
      ["/v1/shop.Customer/CreateCustomer", '{"full_name": 5}', auth],
      ["/v1/shop.Customer/CreateCustomer", '{"email": "x".repeat(3)}', auth],
    ];
    for (const [path, body, headers] of cases) {
      const { direct, generic } = await both(path, body, headers);
      expect(direct, `${path} ${body}`).toEqual(generic);
    }
  });

  it("creates through both paths alike, and a write through the direct path is recorded once", async () => {
    const shop = await t.shop();
    const auth = { authorization: `Bearer ${shop.key}` };
    const { direct, generic } = await both("/v1/shop.Customer/CreateCustomer", '{"full_name": "Lan"}', auth);
    expect(direct.status).toBe(200);
    const [a, b] = [JSON.parse(direct.body), JSON.parse(generic.body)];
    expect(Object.keys(a)).toEqual(Object.keys(b));
    expect({ ...a, id: "", code: "", created_at: "", updated_at: "" }).toEqual({ ...b, id: "", code: "", created_at: "", updated_at: "" });
    const changes = await shop.post("/v1/shop.History/GetChanges", {});
    expect(changes.body.changes.map((c: any) => c.entity_id)).toEqual([a.id, b.id]);
  });
});

/** A POST with raw http (fetch would decompress and drop content-encoding): status, headers but date, bytes. */
function rawPost(url: string, body: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, unknown>; bytes: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers: { "content-type": "application/json", ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const { date: _date, ...rest } = res.headers;
        resolve({ status: res.statusCode!, headers: rest, bytes: Buffer.concat(chunks) });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("compressed answers", () => {
  it("negotiates and compresses as connect-es does: headers and bytes alike, from the same minimum size", async () => {
    const shop = await t.shop();
    for (let i = 0; i < 100; i++) await shop.post("/v1/shop.Product/CreateProduct", { name: `product ${i} with a name long enough to matter`, description: "d".repeat(200) });
    const url = t.app.url + "/v1/shop.Product/ListProducts";
    const big = '{"paging": {"limit": 100}}';
    const small = '{"paging": {"limit": 1}}';
    const bad = '{"paging": {"limit": "x"}}';
    const sizes: Record<string, number> = {};
    for (const body of [big, small, bad]) {
      for (const acceptEncoding of ["gzip", "br", "gzip, deflate, br", "br, gzip", "deflate", "identity", "gzip;q=1.0", "*", undefined]) {
        const headers: Record<string, string> = { authorization: `Bearer ${shop.key}`, "x-request-id": "same" };
        if (acceptEncoding !== undefined) headers["accept-encoding"] = acceptEncoding;
        const direct = await rawPost(url, body, headers);
        const generic = await rawPost(url, body, { ...headers, "connect-timeout-ms": "60000" });
        const label = `${body} accept-encoding: ${acceptEncoding}`;
        expect(direct.status, label).toBe(generic.status);
        // Compressed bytes (and so content-length) can differ with the compressor's state; what they hold may not.
        const sansLength = (h: Record<string, unknown>) => (h["content-encoding"] ? { ...h, "content-length": "(compressed)" } : h);
        expect(sansLength(direct.headers), label).toEqual(sansLength(generic.headers));
        const plain = (r: typeof direct) =>
          r.headers["content-encoding"] === "gzip" ? zlib.gunzipSync(r.bytes) : r.headers["content-encoding"] === "br" ? zlib.brotliDecompressSync(r.bytes) : r.bytes;
        // Paging cursors carry the feed's horizon at the time of the read: compare which are there.
        const norm = (r: typeof direct) => {
          const j = JSON.parse(plain(r).toString());
          if (j.paging) j.paging = Object.keys(j.paging).sort();
          return j;
        };
        expect(norm(direct), label).toEqual(norm(generic));
        if (body === big) sizes[acceptEncoding ?? "none"] = direct.bytes.length;
      }
    }
    console.log(`ListProducts, 100 products: ${JSON.stringify(sizes)} bytes by accept-encoding`);
    // The page of 100 products: tens of KB as it is, a few KB compressed.
    expect(sizes.none).toBeGreaterThan(30_000);
    expect(sizes.gzip).toBeLessThan(sizes.none! / 5);
    expect(sizes.br).toBeLessThan(sizes.none! / 5);
    expect(sizes.identity).toBe(sizes.none);
  });
});

describe("which requests take it", () => {
  it("unary JSON POSTs to a known RPC; gRPC, binary, compressed, timed, GET and unknown paths are left to connect-es", async () => {
    const direct = unaryJson({
      routes: (router) => void router.service(Misc, miscService()),
      prefixes: ["/v1", ""],
      interceptors: [],
      jsonOptions: { useProtoFieldName: true },
      readMaxBytes: 1024,
      acceptCompression: [compressionGzip, compressionBrotli],
      tooLarge: (res) => {
        res.writeHead(413);
        res.end();
      },
    });
    // Whatever the direct path leaves answers 599 here.
    const server = http.createServer((req, res) => {
      if (!direct(req, res)) res.writeHead(599).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    const post = async (path: string, headers: Record<string, string>, body = "{}", method = "POST") => {
      const res = await fetch(url + path, { method, headers, body: method === "GET" ? undefined : body });
      return [res.status, await res.text()];
    };
    try {
      const json = { "content-type": "application/json" };
      expect(await post("/v1/shop.Misc/VersionInfo", json)).toEqual([200, expect.stringContaining('"service":"shophook"')]);
      expect(await post("/shop.Misc/VersionInfo", { "content-type": "application/json; charset=utf-8" })).toEqual([200, expect.stringContaining("shophook")]);
      expect(await post("/v1/shop.Misc/VersionInfo", json, "x".repeat(2000))).toEqual([413, ""]);
      for (const [path, headers, method] of [
        ["/v1/shop.Misc/VersionInfo", { "content-type": "application/grpc" }, "POST"],
        ["/v1/shop.Misc/VersionInfo", { "content-type": "application/proto" }, "POST"],
        ["/v1/shop.Misc/VersionInfo", { ...json, "content-encoding": "gzip" }, "POST"],
        ["/v1/shop.Misc/VersionInfo", { ...json, "connect-timeout-ms": "1000" }, "POST"],
        ["/v1/shop.Misc/VersionInfo", json, "GET"],
        ["/v1/shop.Misc/Nope", json, "POST"],
      ] as const) {
        expect((await post(path, headers, "{}", method))[0], `${method} ${path} ${JSON.stringify(headers)}`).toBe(599);
      }
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
