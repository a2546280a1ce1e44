/**
 * Hostile input: generated malformed requests for every RPC, over HTTP/1.1 (Connect JSON) and
 * HTTP/2 (gRPC), each with a defect the server must refuse with a client-class error; and
 * cross-tenant probes that aim one shop's ids and cursors at another's data.
 */
import type { DescField, DescMessage, DescMethod, DescService } from "@bufbuild/protobuf";
import http2 from "node:http2";
import { ApiKey } from "../../gen/shop/api_key_pb.ts";
import { History } from "../../gen/shop/change_pb.ts";
import { Customer } from "../../gen/shop/customer_pb.ts";
import { Fulfillment } from "../../gen/shop/fulfillment_pb.ts";
import { Inventory } from "../../gen/shop/inventory_pb.ts";
import { Misc } from "../../gen/shop/misc_pb.ts";
import { Order } from "../../gen/shop/order_pb.ts";
import { Product } from "../../gen/shop/product_pb.ts";
import { Variant } from "../../gen/shop/variant_pb.ts";
import { Webhook } from "../../gen/shop/webhook_pb.ts";

export const SERVICES: DescService[] = [ApiKey, History, Customer, Fulfillment, Inventory, Misc, Order, Product, Variant, Webhook];

export interface Rpc {
  path: string;
  method: DescMethod;
}

export const RPCS: Rpc[] = SERVICES.flatMap((s) => s.methods.map((m) => ({ path: `/${s.typeName}/${m.name}`, method: m })));

/** A small deterministic random source (mulberry32), so a failing case can be replayed by seed. */
export function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n: number) => Math.floor(next() * n), pick: <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)]! };
}
type Rng = ReturnType<typeof rng>;

export interface FuzzCase {
  kind: string;
  transport: "json" | "grpc";
  path: string;
  headers: Record<string, string>;
  body: Buffer;
}

/** A value of the wrong JSON type for a field: never parseable as that field. */
function wrongValue(f: DescField, r: Rng): unknown {
  if (f.fieldKind === "list") return r.pick([{}, "not a list", 7, true]);
  if (f.fieldKind === "map") return r.pick([[], "not a map", 7]);
  if (f.fieldKind === "message") {
    const t = f.message.typeName;
    if (t === "google.protobuf.Timestamp") return r.pick(["yesterday", "2026-13-45T99:00:00Z", {}, [], true]);
    if (t === "google.protobuf.Struct") return r.pick(["a string", 7, [], true]);
    if (t === "google.protobuf.FieldMask") return r.pick([7, {}, [], true]);
    return r.pick(["not an object", 7, [], true]);
  }
  if (f.fieldKind === "scalar") {
    switch (f.scalar) {
      case 9: // string
        return r.pick([{}, [], 12, true]);
      case 8: // bool
        return r.pick([{}, [], "maybe", 3]);
      case 1:
      case 2: // double, float
        return r.pick([{}, [], "x1.5", true]);
      default: // integers
        return r.pick([{}, [], "12x", 1.5, "9999999999999999999999999", true]);
    }
  }
  return {};
}

const CONTENT_TYPES = ["text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/octet-stream", "image/png", "application/json; charset=latin1"];

function deep(n: number): string {
  return "[".repeat(n) + "]".repeat(n);
}

function randomBytes(r: Rng, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = r.int(256);
  return b;
}

/** One malformed Connect JSON request for `rpc`: every one carries a defect the server must refuse. */
function jsonCase(rpc: Rpc, key: string, r: Rng, bodyLimit: number): FuzzCase {
  const base = { transport: "json" as const, path: `${r.pick(["/v1", ""])}${rpc.path}`, headers: { "content-type": "application/json", authorization: `Bearer ${key}` } };
  const fields = rpc.method.input.fields;
  const kind = r.pick(["syntax", "truncated", "wrong-type", "unknown-field", "deep", "bad-utf8", "content-type", "no-auth", "bad-auth", "bad-gzip", "not-object", "huge-string-unknown", "timeout-header"]);
  const valid = JSON.stringify(Object.fromEntries(fields.slice(0, 2).map((f) => [f.name, f.fieldKind === "list" ? [] : f.fieldKind === "message" ? {} : f.fieldKind === "scalar" && f.scalar === 9 ? "x" : f.fieldKind === "scalar" && f.scalar === 8 ? true : "1"])));
  switch (kind) {
    case "syntax":
      return { ...base, kind, body: Buffer.from(r.pick(["{", "{]", '{"a":}', "{'single':1}", "{/*c*/}", "NaN", "{,}", '{"a" 1}', valid + "}", "\u0000"])) };
    case "truncated":
      return { ...base, kind, body: Buffer.from(valid.slice(0, Math.max(1, r.int(valid.length)))) };
    case "wrong-type": {
      if (!fields.length) return { ...base, kind, body: Buffer.from('{"x": 1}') };
      const f = r.pick(fields);
      return { ...base, kind: `wrong-type:${f.name}`, body: Buffer.from(JSON.stringify({ [f.name]: wrongValue(f, r) })) };
    }
    case "unknown-field":
      return { ...base, kind, body: Buffer.from(JSON.stringify({ [`no_such_field_${r.int(1000)}`]: r.pick([1, "x", {}, []]) })) };
    case "deep":
      return { ...base, kind, body: Buffer.from(`{"no_such_field": ${deep(1000 + r.int(9000))}}`) };
    case "bad-utf8":
      return { ...base, kind, body: Buffer.concat([Buffer.from('{"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('": 1}')]) };
    case "content-type":
      return { ...base, kind, headers: { ...base.headers, "content-type": r.pick(CONTENT_TYPES) }, body: Buffer.from(valid) };
    case "no-auth":
      return { ...base, kind, headers: { "content-type": "application/json" }, body: Buffer.from(valid) };
    case "bad-auth":
      return { ...base, kind, headers: { ...base.headers, authorization: r.pick(["Bearer shk_" + "A".repeat(43), "Basic abc", "Bearer", key.slice(0, -3) + "xyz", "bearer " + key + " extra"]) }, body: Buffer.from(valid) };
    case "bad-gzip":
      return { ...base, kind, headers: { ...base.headers, "content-encoding": r.pick(["gzip", "br", "deflate-x"]) }, body: randomBytes(r, 1 + r.int(64)) };
    case "not-object":
      return { ...base, kind, body: Buffer.from(r.pick(["[]", "1", '"s"', "null", "true", "[{}]"])) };
    case "huge-string-unknown":
      return { ...base, kind, body: Buffer.from(JSON.stringify({ no_such_field: "x".repeat(Math.min(bodyLimit * 2, 2_000_000)) })) };
    default: // timeout-header
      return { ...base, kind, headers: { ...base.headers, "connect-timeout-ms": r.pick(["-1", "abc", "99999999999999999999"]) }, body: Buffer.from(valid) };
  }
}

/** gRPC message framing: flag byte, 4-byte length, message. */
function frame(payload: Buffer, compressed = false, length = payload.length): Buffer {
  const head = Buffer.alloc(5);
  head[0] = compressed ? 1 : 0;
  head.writeUInt32BE(length >>> 0, 1);
  return Buffer.concat([head, payload]);
}

/** One malformed gRPC request for `rpc` (unprefixed path, HTTP/2). */
function grpcCase(rpc: Rpc, key: string, r: Rng): FuzzCase {
  const base = { transport: "grpc" as const, path: rpc.path, headers: { "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${key}` } };
  const kind = r.pick(["garbage-proto", "truncated-frame", "compressed-unannounced", "huge-length", "json-garbage", "no-auth", "short-header", "two-messages-garbage"]);
  switch (kind) {
    case "garbage-proto":
      // Wire type 7 is never valid: the message cannot parse.
      return { ...base, kind, body: frame(Buffer.concat([Buffer.from([0x0f]), randomBytes(r, r.int(32))])) };
    case "truncated-frame":
      return { ...base, kind, body: frame(randomBytes(r, 4), false, 100 + r.int(1000)) };
    case "compressed-unannounced":
      return { ...base, kind, body: frame(randomBytes(r, 16), true) };
    case "huge-length":
      return { ...base, kind, body: frame(Buffer.alloc(0), false, 0x7fffffff) };
    case "json-garbage":
      return { ...base, kind, headers: { ...base.headers, "content-type": "application/grpc+json" }, body: frame(Buffer.from(r.pick(["{", "[]", '{"no_such_field": 1}', "\u0000"]))) };
    case "no-auth":
      return { ...base, kind, headers: { "content-type": "application/grpc", te: "trailers" }, body: frame(Buffer.alloc(0)) };
    case "short-header":
      return { ...base, kind, body: Buffer.from([0, 0, 0]) };
    default:
      return { ...base, kind, body: Buffer.concat([frame(Buffer.from([0x0f, 0xff])), frame(Buffer.from([0x0f]))]) };
  }
}

export function* fuzzCases(count: number, key: string, seed: number, bodyLimit: number): Generator<FuzzCase> {
  const r = rng(seed);
  for (let i = 0; i < count; i++) {
    const rpc = r.pick(RPCS);
    yield r.next() < 0.7 ? jsonCase(rpc, key, r, bodyLimit) : grpcCase(rpc, key, r);
  }
}

/** HTTP statuses that mean "the client's request was refused". */
export const CLIENT_ERROR_STATUSES = new Set([400, 401, 403, 404, 405, 408, 409, 411, 413, 415, 429, 431]);
/** gRPC statuses of the client-error class. */
export const CLIENT_ERROR_GRPC = new Set(["3", "5", "6", "7", "8", "9", "11", "12", "16"]);

export interface Outcome {
  /** "http:400" or "grpc:3". */
  result: string;
  ok: boolean;
}

export async function sendJson(baseUrl: string, c: FuzzCase): Promise<Outcome> {
  const res = await fetch(baseUrl + c.path, { method: "POST", headers: c.headers, body: c.body });
  await res.arrayBuffer();
  return { result: `http:${res.status}`, ok: CLIENT_ERROR_STATUSES.has(res.status) };
}

export function sendGrpc(session: http2.ClientHttp2Session, c: FuzzCase): Promise<Outcome> {
  return new Promise((resolve) => {
    let status: string | undefined;
    let httpStatus = 0;
    const stream = session.request({ ":method": "POST", ":path": c.path, ...c.headers });
    const done = () => {
      const grpc = status ?? "";
      resolve({ result: grpc ? `grpc:${grpc}` : `http:${httpStatus}`, ok: grpc ? CLIENT_ERROR_GRPC.has(grpc) : CLIENT_ERROR_STATUSES.has(httpStatus) });
    };
    stream.on("response", (h) => {
      httpStatus = Number(h[":status"]);
      if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
    });
    stream.on("trailers", (h) => {
      if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
    });
    stream.on("data", () => undefined);
    stream.on("close", done);
    stream.on("error", () => undefined);
    stream.end(c.body);
  });
}

/**
 * Requests that aim `ids` (another shop's entity ids) and `cursors` at every RPC: every int64
 * field, at the top level and one level down (filters, lines, adjustments), gets each id; every
 * cursor field gets each cursor.
 */
export function probes(ids: string[], cursors: string[]): Array<{ path: string; body: unknown }> {
  const out: Array<{ path: string; body: unknown }> = [];
  const fill = (m: DescMessage, value: (f: DescField) => unknown, depth = 0): Record<string, unknown> | undefined => {
    const obj: Record<string, unknown> = {};
    for (const f of m.fields) {
      const v = value(f);
      if (v !== undefined) obj[f.name] = f.fieldKind === "list" ? [v] : v;
      else if (depth < 1 && (f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message"))) {
        const inner = fill(f.message!, value, depth + 1);
        if (inner) obj[f.name] = f.fieldKind === "list" ? [inner] : inner;
      }
    }
    return Object.keys(obj).length ? obj : undefined;
  };
  for (const rpc of RPCS) {
    for (const id of ids) {
      const body = fill(rpc.method.input, (f) =>
        f.fieldKind !== "map" && f.scalar === 3 /* int64 */ && (f.name === "id" || f.name.endsWith("_id")) ? id : f.name === "quantity" || f.name === "available_delta" ? 1 : f.name === "cancel_reason" ? "probe" : undefined,
      );
      if (body) out.push({ path: `/v1${rpc.path}`, body });
    }
    for (const cursor of cursors) {
      const body = fill(rpc.method.input, (f) => (f.fieldKind === "scalar" && f.scalar === 9 && (f.name === "after" || f.name === "before") ? cursor : undefined));
      if (body) out.push({ path: `/v1${rpc.path}`, body });
    }
  }
  return out;
}
