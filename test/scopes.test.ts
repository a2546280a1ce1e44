/**
 * Scoped API keys (src/auth/scopes.ts): every RPC, over every transport, with every key
 * that lacks the scope it needs is permission_denied naming that scope, and with a key that has
 * only that scope is not; keys made without scopes (and keys from before scopes) can do
 * everything; a key cannot mint a key with more than it has.
 */
import { describe, expect, it } from "vitest";
import { ApiKey } from "../gen/shop/api_key_pb.ts";
import { createApiKey } from "../src/auth/api-keys.ts";
import { SCOPES, scopeOf } from "../src/auth/scopes.ts";
import { shopHandle, useApp } from "./support/app.ts";
import { frame, GrpcSessions, RPCS, sendGrpc, sendHttp, type Transport, TRANSPORTS } from "./support/fuzz.ts";

const t = useApp();

async function call(key: string, path: string, transport: Transport, sessions: GrpcSessions) {
  const authorization = `Bearer ${key}`;
  const post = (p: string, type: string, body: Buffer) => sendHttp(t.app.url, { method: "POST", path: p, headers: { "content-type": type, authorization }, body });
  switch (transport) {
    case "json":
      return post(`/v1${path}`, "application/json", Buffer.from("{}"));
    case "binary":
      return post(`/v1${path}`, "application/proto", Buffer.alloc(0));
    case "grpcweb":
      return post(path, "application/grpc-web+proto", frame(Buffer.alloc(0)));
    case "grpc":
      return sendGrpc(sessions.get(), { path, headers: { "content-type": "application/grpc", te: "trailers", authorization }, body: frame(Buffer.alloc(0)) });
  }
}

/** Refused for the key's scopes (CreateApiKey with `{}` from a keys-only key is refused otherwise: it asks for every scope). */
const denied = (o: { result: string; code?: string; message?: string }) => (o.code === "permission_denied" || o.result === "grpc:7") && /lacks the "/.test(o.message ?? "");

describe("scoped keys", () => {
  it("every RPC x transport (JSON, gRPC, gRPC-Web, binary): refused without its scope (naming it), not refused with only that scope", async () => {
    const shop = await t.shop();
    const keys: Record<string, string> = {};
    for (const s of SCOPES) keys[s] = (await createApiKey(t.app.pool, shop.id, `only ${s}`, [s])).key;
    const sessions = new GrpcSessions(t.app.url);
    const wrong: string[] = [];
    let checked = 0;
    try {
      for (const rpc of RPCS) {
        const [, service, method] = rpc.path.split("/");
        const needed = scopeOf(service!, method!);
        for (const transport of TRANSPORTS) {
          for (const s of SCOPES) {
            const o = await call(keys[s]!, rpc.path, transport, sessions);
            checked++;
            const shouldDeny = needed !== undefined && s !== needed;
            if (shouldDeny !== denied(o)) wrong.push(`${rpc.path} ${transport} with "${s}": ${o.result} ${o.code ?? ""} ${o.message ?? ""}`);
            if (shouldDeny && !(o.message ?? "").includes(`"${needed}"`)) wrong.push(`${rpc.path} ${transport}: message does not name "${needed}": ${o.message}`);
          }
        }
      }
    } finally {
      sessions.close();
    }
    expect(wrong).toEqual([]);
    expect(checked).toBe(RPCS.length * TRANSPORTS.length * SCOPES.length);
  });

  it("the mapping: reads, writes, webhooks, keys; Misc needs none", () => {
    expect(scopeOf("shop.Product", "ListProducts")).toBe("read");
    expect(scopeOf("shop.History", "GetChanges")).toBe("read");
    expect(scopeOf("shop.Webhook", "GetChanges")).toBe("read");
    expect(scopeOf("shop.Order", "CreateOrder")).toBe("write");
    expect(scopeOf("shop.Inventory", "AdjustInventory")).toBe("write");
    expect(scopeOf("shop.Webhook", "GetWebhooks")).toBe("webhooks");
    expect(scopeOf("shop.Webhook", "ListDeliveries")).toBe("webhooks");
    expect(scopeOf("shop.ApiKey", "ListApiKeys")).toBe("keys");
    expect(scopeOf("shop.Misc", "CurrentAccount")).toBeUndefined();
  });

  it("a key without scopes can do everything; a key cannot grant scopes it lacks; scopes show in ListApiKeys", async () => {
    const shop = await t.shop(); // its key was made without scopes
    const full = shop.client(ApiKey);
    const made = await full.createApiKey({ name: "poller", scopes: ["read"] });
    expect(made.apiKey?.scopes).toEqual(["read"]);
    const keysOnly = await full.createApiKey({ name: "key admin", scopes: ["keys"] });
    const admin = shopHandle(t.app.url, shop.id, shop.name, keysOnly.key).client(ApiKey);
    await expect(admin.createApiKey({ name: "escalate", scopes: ["read", "keys"] })).rejects.toMatchObject({ rawMessage: expect.stringMatching(/cannot grant "read"/) });
    await expect(admin.createApiKey({ name: "all", scopes: [] })).rejects.toMatchObject({ rawMessage: expect.stringMatching(/cannot grant "read", "write", "webhooks"/) });
    expect((await admin.createApiKey({ name: "another admin", scopes: ["keys"] })).apiKey?.scopes).toEqual(["keys"]);
    await expect(full.createApiKey({ name: "typo", scopes: ["reed"] })).rejects.toMatchObject({ rawMessage: expect.stringMatching(/^scopes: unknown scope "reed"/) });
    const listed = await full.listApiKeys({});
    expect(Object.fromEntries(listed.apiKeys.map((k) => [k.name, k.scopes]))).toMatchObject({ test: [...SCOPES], poller: ["read"], "key admin": ["keys"] });
  });
});
