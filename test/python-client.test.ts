/** Another language over gRPC: examples/python/client.py (stubs generated from proto/) against the real server. */
import { execFile, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Webhook } from "../gen/shop/webhook_pb.ts";
import { useApp } from "./support/app.ts";
import { certPaths, writeCert } from "./support/tls.ts";

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "..");
const dir = path.join(root, "examples/python");
const PYTHON = "/usr/bin/python3";

/** What is missing to generate the stubs and run the client, from Debian's packages; empty when all is there. */
function missing(): string[] {
  const out: string[] = [];
  if (spawnSync(PYTHON, ["-c", "import grpc"], { stdio: "ignore" }).status !== 0) out.push("python3-grpcio");
  if (!fs.existsSync("/usr/bin/protoc") || !fs.existsSync("/usr/bin/grpc_python_plugin")) out.push("protobuf-compiler-grpc");
  if (!fs.existsSync("/usr/include/google/protobuf/timestamp.proto")) out.push("libprotobuf-dev");
  return out;
}
const absent = missing();
/** In CI (CI set, not to false or 0), which installs the packages, missing ones fail the test instead. */
const IN_CI = !["", "false", "0"].includes(process.env.CI ?? "");
if (absent.length && !IN_CI) {
  console.warn(
    `python-client.test.ts skipped: ${PYTHON} cannot generate or run the gRPC client here. ` +
      `Install Debian's packages: apt-get install -y ${absent.join(" ")} (.ci/run does).`,
  );
}

// The child gets a clean view: no proxy (gRPC's C core honours http_proxy/grpc_proxy), no pyenv paths.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(https?_proxy|grpc_proxy|all_proxy|pythonpath|pythonhome)$/i.test(k)));

async function client(args: string[]) {
  return run(PYTHON, [path.join(dir, "client.py"), ...args], { cwd: root, env, timeout: 30_000 });
}

const t = useApp({ webhookAllowHttp: true, webhookAllowPrivate: ["127.0.0.1"] });
// A second server with native TLS (SHOPHOOK_TLS_CERT / _KEY), for the client's --tls-ca.
const certs = certPaths();
beforeAll(() => writeCert(certs));
afterAll(() => fs.rmSync(certs.dir, { recursive: true, force: true }));
const secure = useApp({ webhookAllowHttp: true, webhookAllowPrivate: ["127.0.0.1"], tls: { certFile: certs.certFile, keyFile: certs.keyFile } });

describe("Python gRPC client (examples/python)", () => {
  it.skipIf(absent.length > 0 && !IN_CI)("creates a product and a webhook, lists them and reads the change over gRPC; a bad key is UNAUTHENTICATED", { timeout: 60_000 }, async () => {
    expect(absent, "CI is set: .ci/run installs these Debian packages").toEqual([]);
    await run("bash", [path.join(dir, "generate.sh")], { cwd: root, env });
    expect(fs.existsSync(path.join(dir, "gen/shop/webhook_pb2_grpc.py"))).toBe(true);

    const shop = await t.shop();
    const server = new URL(t.app.url).host; // host:port, no scheme: grpc.insecure_channel's target
    const hookUrl = "http://127.0.0.1:9/hook"; // nothing listens there: delivery need not succeed
    const { stdout, stderr } = await client(["--server", server, "--key", shop.key, "--webhook-url", hookUrl, "--page-size", "2"]);
    expect(stderr).toBe("");
    const steps = Object.fromEntries(
      stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line))
        .map((o) => [o.step, o]),
    );
    expect(Object.keys(steps)).toEqual(["CreateProduct", "CreateWebhook", "GetWebhooks", "ListProducts", "GetChanges"]);

    const product = steps.CreateProduct;
    expect(product).toMatchObject({ id: expect.stringMatching(/^\d+$/), name: "Python example product" });
    const hook = steps.CreateWebhook;
    expect(hook).toMatchObject({ id: expect.stringMatching(/^\d+$/), url: hookUrl, entities: ["product"], state: "ok", secret_prefix: "whsec_" });
    expect(steps.GetWebhooks.webhooks).toEqual([{ id: hook.id, url: hookUrl, active: true, state: expect.any(String) }]);

    // The webhook the Python client created is there for the TypeScript client too.
    const listed = await shop.client(Webhook).getWebhooks({});
    expect(listed.webhooks.map((w) => [w.id, w.url, w.entities])).toEqual([[hook.id, hookUrl, ["product"]]]);

    // Paged until an empty page (page size 2: one page with the product, then the empty one).
    expect(steps.ListProducts.products).toEqual([{ id: product.id, name: "Python example product", updated_at: product.updated_at, deleted: false }]);
    expect(steps.ListProducts.pages).toBe(2);
    expect(steps.ListProducts.next).toBeTruthy();
    expect(steps.GetChanges.changes).toContainEqual(expect.objectContaining({ change_type: "create", entity: "product", entity_id: product.id }));
    expect(steps.GetChanges.next).toBeTruthy();

    const bad = await client(["--server", server, "--key", "shk_not_a_key", "--webhook-url", hookUrl]).then(
      () => expect.unreachable("an unknown key must fail"),
      (e: { code?: number; stdout: string; stderr: string }) => e,
    );
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe("");
    expect(bad.stderr).toMatch(/^CreateProduct failed: UNAUTHENTICATED: authorization: unknown or revoked api key/);
  });

  it.skipIf(absent.length > 0 && !IN_CI)("the same over TLS: a secure channel trusting the server's certificate (generated stubs from the test above)", { timeout: 60_000 }, async () => {
    const shop = await secure.shop();
    const server = new URL(secure.app.url).host;
    const { stdout, stderr } = await client(["--server", server, "--key", shop.key, "--webhook-url", "http://127.0.0.1:9/hook", "--tls-ca", certs.certFile]);
    expect(stderr).toBe("");
    expect(stdout.trim().split("\n").map((l) => JSON.parse(l).step)).toEqual(["CreateProduct", "CreateWebhook", "GetWebhooks", "ListProducts", "GetChanges"]);
    // Without trusting it, the client refuses the connection.
    const untrusted = await client(["--server", server, "--key", shop.key, "--tls-ca", "/etc/ssl/certs/ca-certificates.crt"]).then(
      () => "connected",
      (e: { stderr: string }) => e.stderr,
    );
    expect(untrusted).toMatch(/UNAVAILABLE/);
  });
});
