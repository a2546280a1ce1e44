/**
 * The real service for a test file: its own database, the whole app on 127.0.0.1:0, and
 * clients for each protocol. Call `useApp()` at the top of a file or describe block.
 */
import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll } from "vitest";
import { type App, type AppDeps, startApp } from "../../src/app.ts";
import { createApiKey, createShop } from "../../src/auth/api-keys.ts";
import { type Config, loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/logger.ts";
import { createPrivateDatabase, createTestDatabase, dropTestDatabase } from "./db.ts";

export type Protocol = "connect" | "grpc" | "grpcweb";
export const protocols: Protocol[] = ["connect", "grpc", "grpcweb"];

export function transport(baseUrl: string, protocol: Protocol, key?: string): Transport {
  const auth: Interceptor = (next) => (req) => {
    if (key) req.header.set("authorization", `Bearer ${key}`);
    return next(req);
  };
  const interceptors = [auth];
  switch (protocol) {
    case "connect":
      return createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors, useBinaryFormat: false });
    case "grpc":
      return createGrpcTransport({ baseUrl, interceptors });
    case "grpcweb":
      return createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors });
  }
}

export interface TestShop {
  id: string;
  name: string;
  key: string;
  /** A client for `service` authenticated as this shop, over `protocol` (default Connect JSON). */
  client<S extends DescService>(service: S, protocol?: Protocol): Client<S>;
  /** POST a JSON body like curl does; returns status and parsed body. */
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Headers }>;
}

export interface TestApp {
  app: App;
  dbUrl: string;
  /** Creates a shop with a key, through the same code as the CLI. */
  shop(name?: string): Promise<TestShop>;
}

export function testConfig(dbUrl: string, overrides: Partial<Config> = {}): Config {
  return { ...loadConfig({}), port: 0, host: "127.0.0.1", databaseUrl: dbUrl, dbPoolSize: 10, logLevel: "silent", ...overrides };
}

/**
 * The file's app on its own database. `cluster: "private"`: on a PostgreSQL cluster of its own
 * (test/support/db.ts createPrivateDatabase), for files that stall the feed on purpose.
 */
export function useApp(overrides: Partial<Config> = {}, deps: AppDeps = {}, opts: { cluster?: "shared" | "private" } = {}): TestApp {
  const handle = {} as TestApp;
  let failed = false;
  let shops = 0;
  let privateCluster: Awaited<ReturnType<typeof createPrivateDatabase>> | undefined;
  beforeAll(async () => {
    if (opts.cluster === "private") {
      privateCluster = await createPrivateDatabase();
      handle.dbUrl = privateCluster.url;
    } else handle.dbUrl = await createTestDatabase();
    const config = testConfig(handle.dbUrl, overrides);
    handle.app = await startApp(config, createLogger(process.env.TEST_LOG_LEVEL ?? "silent"), deps);
    handle.shop = async (name = `shop ${++shops}`) => {
      const shop = await createShop(handle.app.pool, name);
      const { key } = await createApiKey(handle.app.pool, shop.id, "test");
      return shopHandle(handle.app.url, shop.id, name, key);
    };
  });
  afterEach(({ task }) => {
    if (task.result?.state === "fail") failed = true;
  });
  afterAll(async () => {
    await handle.app?.stop();
    if (privateCluster) return privateCluster.stop();
    if (!handle.dbUrl) return;
    if (failed) console.error(`test database kept for inspection: ${handle.dbUrl}`);
    else await dropTestDatabase(handle.dbUrl);
  });
  return handle;
}

export function shopHandle(baseUrl: string, id: string, name: string, key: string): TestShop {
  return {
    id,
    name,
    key,
    client: (service, protocol = "connect") => createClient(service, transport(baseUrl, protocol, key)),
    post: (path, body, headers = {}) => postJson(baseUrl + path, body, { authorization: `Bearer ${key}`, ...headers }),
  };
}

export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON: keep the text */
  }
  return { status: res.status, body: parsed as any, headers: res.headers };
}
