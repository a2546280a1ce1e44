/**
 * Request ids: every RPC answers with an `x-request-id` header (the client's when sane, else a
 * generated one), over Connect JSON, gRPC and gRPC-Web, on success and on error, and the log
 * line of the call carries it. The app here logs at debug level into a stream the test reads.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Misc } from "../gen/shop/misc_pb.ts";
import { Product } from "../gen/shop/product_pb.ts";
import { type App, startApp } from "../src/app.ts";
import { createApiKey, createShop } from "../src/auth/api-keys.ts";
import { createLogger } from "../src/logger.ts";
import { postJson, type Protocol, protocols, testConfig, transport } from "./support/app.ts";
import { createTestDatabase, dropTestDatabase } from "./support/db.ts";

type LogLine = Record<string, unknown> & { level: number; msg: string };
const lines: LogLine[] = [];
const DEBUG = 20;
const INFO = 30;

let app: App;
let dbUrl: string;
let key: string;
let failed = false;
beforeAll(async () => {
  dbUrl = await createTestDatabase();
  const log = createLogger("debug", { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  app = await startApp(testConfig(dbUrl), log);
  const shop = await createShop(app.pool, "request ids");
  key = (await createApiKey(app.pool, shop.id, "test")).key;
});
afterEach(({ task }) => {
  if (task.result?.state === "fail") failed = true;
});
afterAll(async () => {
  await app?.stop();
  if (failed) console.error(`test database kept for inspection: ${dbUrl}`);
  else if (dbUrl) await dropTestDatabase(dbUrl);
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
let n = 0;
/** A sane request id, unique per call so each call's log line is found by it alone. */
const saneId = () => `ci-run_42.step:${++n}`;

/** The log lines of one request id (by the time a response arrived, its line is written: pino writes synchronously here). */
const logsOf = (requestId: string) => lines.filter((l) => l.requestId === requestId);

/** Calls `rpc` over `protocol` with `x-request-id: given` (when set); resolves to the id the server answered with and the error, if any. */
async function call(protocol: Protocol, rpc: "ok" | "not_found" | "unauthenticated", given?: string): Promise<{ requestId: string | null; error?: ConnectError }> {
  const t = transport(app.url, protocol, rpc === "unauthenticated" ? undefined : key);
  let requestId: string | null = null;
  const options = { headers: given === undefined ? {} : { "x-request-id": given }, onHeader: (h: Headers) => (requestId = h.get("x-request-id")) };
  try {
    if (rpc === "not_found") await createClient(Product, t).getProduct({ id: "1" }, options);
    else await createClient(Misc, t).currentAccount({}, options);
    return { requestId };
  } catch (err) {
    const error = ConnectError.from(err);
    // Connect JSON puts an error's metadata in the response headers, gRPC in the trailers
    // (a trailers-only response: headers); the client merges both into `metadata`.
    return { requestId: error.metadata.get("x-request-id") ?? requestId, error };
  }
}

describe("x-request-id", () => {
  it.each(protocols)("a sane one comes back on success and on error, and the error's log line carries it (%s)", async (protocol) => {
    const okId = saneId();
    expect(await call(protocol, "ok", okId)).toEqual({ requestId: okId });
    // Successful calls are logged at debug level only (thousands per second at info would be
    // noise); that line has the id too.
    expect(logsOf(okId)).toEqual([expect.objectContaining({ level: DEBUG, msg: "rpc ok", rpc: "shop.Misc/CurrentAccount", requestId: okId })]);

    for (const [rpc, code] of [["not_found", Code.NotFound], ["unauthenticated", Code.Unauthenticated]] as const) {
      const id = saneId();
      const res = await call(protocol, rpc, id);
      expect(res.error?.code, rpc).toBe(code);
      expect(res.requestId, rpc).toBe(id);
      expect(logsOf(id), rpc).toEqual([expect.objectContaining({ level: INFO, msg: "rpc failed", requestId: id, code: Code[code] })]);
    }
  });

  it.each(protocols)("an insane or missing one is replaced by a generated one, which the log line carries (%s)", async (protocol) => {
    for (const given of ["has spaces in it", "<script>alert(1)</script>", "a".repeat(101), "semi;colon", "", undefined]) {
      const before = lines.length;
      const res = await call(protocol, "not_found", given);
      expect(res.error?.code).toBe(Code.NotFound);
      expect(res.requestId, String(given)).toMatch(UUID);
      expect(logsOf(res.requestId!)).toEqual([expect.objectContaining({ msg: "rpc failed", rpc: "shop.Product/GetProduct" })]);
      // The insane value is not logged either (it could be anything a client sends).
      if (given) expect(JSON.stringify(lines.slice(before))).not.toContain(JSON.stringify(given).slice(1, -1));
    }
    const a = await call(protocol, "ok");
    const b = await call(protocol, "ok");
    expect(a.requestId).toMatch(UUID);
    expect(b.requestId).toMatch(UUID);
    expect(a.requestId).not.toBe(b.requestId);
  });

  it("curl's view: the header on a JSON success and on a JSON error, with the error body unchanged", async () => {
    const url = (rpc: string) => `${app.url}/v1/shop.${rpc}`;
    const auth = { authorization: `Bearer ${key}` };
    const okId = saneId();
    const ok = await postJson(url("Misc/CurrentAccount"), {}, { ...auth, "x-request-id": okId });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("x-request-id")).toBe(okId);

    const errId = saneId();
    const notFound = await postJson(url("Product/GetProduct"), { id: "1" }, { ...auth, "x-request-id": errId });
    expect(notFound.status).toBe(404);
    expect(notFound.body).toEqual({ code: "not_found", message: "product 1 not found" });
    expect(notFound.headers.get("x-request-id")).toBe(errId);
    expect(logsOf(errId)).toEqual([
      expect.objectContaining({ level: INFO, msg: "rpc failed", rpc: "shop.Product/GetProduct", code: "NotFound", error: "product 1 not found", ms: expect.any(Number) }),
    ]);

    const generated = await postJson(url("Product/GetProduct"), { id: "1" }, { ...auth, "x-request-id": "two words" });
    expect(generated.status).toBe(404);
    expect(generated.headers.get("x-request-id")).toMatch(UUID);
  });

  it("requests refused before any interceptor runs carry it too, and are logged with it", async () => {
    const auth = { authorization: `Bearer ${key}` };
    const cases: Array<[string, RequestInit, number]> = [
      ["wrong content type", { headers: { ...auth, "content-type": "text/plain" }, body: "{}" }, 415],
      ["too large", { headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify({ name: "x".repeat(2 * 1024 * 1024) }) }, 413],
      ["malformed JSON", { headers: { ...auth, "content-type": "application/json" }, body: "{" }, 400],
      ["unknown field", { headers: { ...auth, "content-type": "application/json" }, body: '{"nope": 1}' }, 400],
    ];
    for (const [what, init, status] of cases) {
      const id = saneId();
      const res = await fetch(`${app.url}/v1/shop.Misc/CurrentAccount`, { method: "POST", ...init, headers: { ...(init.headers as Record<string, string>), "x-request-id": id } });
      await res.text();
      expect(res.status, what).toBe(status);
      expect(res.headers.get("x-request-id"), what).toBe(id);
    }
    // The refusals the HTTP layer itself makes are logged with the id.
    const id = saneId();
    await fetch(`${app.url}/v1/shop.Misc/CurrentAccount`, { method: "POST", headers: { ...auth, "content-type": "text/plain", "x-request-id": id }, body: "{}" });
    expect(logsOf(id)).toEqual([expect.objectContaining({ level: INFO, msg: "request refused", status: 415, code: "invalid_argument" })]);
  });
});
