/**
 * A shop's side of the wire: every RPC of the soak goes through the real server, as Connect JSON
 * (`POST /v1/shop.<Service>/<Method>`, what curl sends) or as gRPC (HTTP/2, binary), with the
 * shop's current API key (it changes when the shop rotates its keys). gRPC requests are built
 * from the same JSON bodies (fromJson) and their answers read back as the API's JSON (toJson),
 * so both protocols feed the same checks.
 */
import { type DescService, fromJson, type JsonObject, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

export type Protocol = "connect" | "grpc";

/** The API's JSON options (src/store/write.ts API_JSON): proto field names, implicit fields emitted. */
const API_JSON = { useProtoFieldName: true, alwaysEmitImplicit: true } as const;

/** A refused RPC: the Connect code in snake case (`failed_precondition`) and the message. */
export class RpcError extends Error {
  readonly code: string;
  readonly rpc: string;
  constructor(rpc: string, code: string, message: string) {
    super(`${rpc}: ${code}: ${message}`);
    this.code = code;
    this.rpc = rpc;
  }
}

const snake = (s: string) => s.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();

/** Calls per protocol, over the whole run (printed with the figures). */
export const calls: Record<Protocol, number> = { connect: 0, grpc: 0 };

export class ShopApi {
  readonly shopId: string;
  key: string;
  keyId: string;
  readonly protocol: Protocol;
  private readonly baseUrl: string;
  private grpc: Transport | undefined;
  private readonly clients = new Map<DescService, any>();

  constructor(baseUrl: string, shopId: string, key: string, keyId: string, protocol: Protocol) {
    this.baseUrl = baseUrl;
    this.shopId = shopId;
    this.key = key;
    this.keyId = keyId;
    this.protocol = protocol;
  }

  /** Calls `service`/`method` with a JSON body over `protocol` (the shop's by default); answers the API's JSON or throws RpcError. */
  async call(service: DescService, method: string, body: JsonObject, protocol: Protocol = this.protocol): Promise<any> {
    calls[protocol]++;
    const rpc = `${service.typeName}/${method}`;
    if (protocol === "connect") {
      const res = await fetch(`${this.baseUrl}/v1/${rpc}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${this.key}` },
        body: JSON.stringify(body),
      });
      const text = await res.text();
      let parsed: any;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new RpcError(rpc, `http_${res.status}`, text.slice(0, 300));
      }
      if (res.status !== 200) throw new RpcError(rpc, String(parsed?.code ?? `http_${res.status}`), String(parsed?.message ?? text.slice(0, 300)));
      return parsed;
    }
    const m = service.methods.find((x) => x.name === method);
    if (!m) throw new Error(`no method ${rpc}`);
    let client = this.clients.get(service);
    if (!client) {
      // The interceptor reads the key at call time: a rotation switches keys without a new connection.
      this.grpc ??= createGrpcTransport({
        baseUrl: this.baseUrl,
        interceptors: [
          (next) => (req) => {
            req.header.set("authorization", `Bearer ${this.key}`);
            return next(req);
          },
        ],
      });
      client = createClient(service, this.grpc);
      this.clients.set(service, client);
    }
    try {
      const res = await client[m.localName](fromJson(m.input, body));
      return toJson(m.output, res, API_JSON);
    } catch (err) {
      const e = ConnectError.from(err);
      throw new RpcError(rpc, snake(Code[e.code] ?? "unknown"), e.rawMessage);
    }
  }
}
