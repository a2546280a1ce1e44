/**
 * Hostile input: for every RPC, one valid request (to prove the RPC is routed and what a sound
 * call answers), then generated requests that each carry one defect, over HTTP/1.1 (Connect
 * JSON) and HTTP/2 (gRPC), each kind with the exact refusal it must get; and cross-tenant probes
 * that aim one shop's ids and cursors at another's data, beside controls with ids and cursors
 * that exist nowhere.
 *
 * Requests go round-robin over (RPC, transport, kind): case i is RPC i mod R with kind
 * (i div R + i mod R + offset) mod K, so R x K consecutive cases hit every triple exactly once;
 * the kinds alternate between transports, so each RPC meets both in any two passes.
 */
import { type DescField, type DescMethod, type DescService, fromJson, type JsonValue, toBinary } from "@bufbuild/protobuf";
import http2 from "node:http2";
import { brotliCompressSync, gzipSync } from "node:zlib";
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
  /** `/shop.<Service>/<Method>` */
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
export type Rng = ReturnType<typeof rng>;

// ---------------------------------------------------------------------------------------------
// Valid requests

export type EntityKind = "product" | "variant" | "customer" | "order" | "fulfillment" | "webhook" | "delivery" | "api_key";

/** Where a request's ids and cursors come from; `slot` names the field ("lines.variant_id"). */
export interface BodySources {
  id(kind: EntityKind, slot: string): string;
  /** A cursor for `slot` ("paging.after"), or undefined to send none. */
  cursor(slot: string): string | undefined;
  /** A webhook receiver the service may reach. */
  receiverUrl: string;
}

type Body = Record<string, unknown>;
const list = (s: BodySources): Body => ({ limit: 10, after: s.cursor("paging.after"), before: s.cursor("paging.before") });
const feed = (s: BodySources): Body => ({ limit: 10, after: s.cursor("paging.after") });
const hourAgo = () => new Date(Date.now() - 3_600_000).toISOString();

/**
 * A sound request for every RPC: well-formed and sensible. With ids that exist nowhere it may
 * answer not_found; it never fails for its shape.
 */
export const VALID: Record<string, (s: BodySources) => Body> = {
  "/shop.ApiKey/CreateApiKey": () => ({ name: "fuzz control" }),
  "/shop.ApiKey/ListApiKeys": () => ({}),
  "/shop.ApiKey/RevokeApiKey": (s) => ({ id: s.id("api_key", "id") }),
  "/shop.History/GetChanges": (s) => ({ paging: feed(s), entities: ["product", "order"] }),
  "/shop.Customer/CreateCustomer": () => ({ full_name: "Fuzz Control", email: "fuzz@example.com" }),
  "/shop.Customer/GetCustomer": (s) => ({ id: s.id("customer", "id") }),
  "/shop.Customer/UpdateCustomer": (s) => ({ id: s.id("customer", "id"), note: "control" }),
  "/shop.Customer/DeleteCustomer": (s) => ({ id: s.id("customer", "id") }),
  "/shop.Customer/ListCustomers": (s) => ({ filter: { id: [s.id("customer", "filter.id")] }, paging: list(s) }),
  "/shop.Fulfillment/CreateFulfillment": (s) => ({ order_id: s.id("order", "order_id"), carrier: "ghn", shipping_note: "control" }),
  "/shop.Fulfillment/GetFulfillment": (s) => ({ id: s.id("fulfillment", "id") }),
  "/shop.Fulfillment/UpdateFulfillment": (s) => ({ id: s.id("fulfillment", "id"), shipping_note: "control" }),
  "/shop.Fulfillment/UpdateShippingState": (s) => ({ id: s.id("fulfillment", "id"), shipping_state: "picking" }),
  "/shop.Fulfillment/CancelFulfillment": (s) => ({ id: s.id("fulfillment", "id"), cancel_reason: "control" }),
  "/shop.Fulfillment/DeleteFulfillment": (s) => ({ id: s.id("fulfillment", "id") }),
  "/shop.Fulfillment/ListFulfillments": (s) => ({ filter: { id: [s.id("fulfillment", "filter.id")], order_id: [s.id("order", "filter.order_id")] }, paging: list(s) }),
  "/shop.Inventory/GetInventoryLevel": (s) => ({ variant_id: s.id("variant", "variant_id") }),
  "/shop.Inventory/ListInventoryLevels": (s) => ({ filter: { variant_id: [s.id("variant", "filter.variant_id")] }, paging: list(s) }),
  "/shop.Inventory/AdjustInventory": (s) => ({ adjustments: [{ variant_id: s.id("variant", "adjustments.variant_id"), available_delta: 1 }] }),
  "/shop.Inventory/SetInventory": (s) => ({ counts: [{ variant_id: s.id("variant", "counts.variant_id"), available_quantity: 3 }] }),
  "/shop.Misc/CurrentAccount": () => ({}),
  "/shop.Misc/VersionInfo": () => ({}),
  "/shop.Order/CreateOrder": (s) => ({ customer_id: s.id("customer", "customer_id"), lines: [{ variant_id: s.id("variant", "lines.variant_id"), quantity: 1 }], order_note: "control" }),
  "/shop.Order/GetOrder": (s) => ({ id: s.id("order", "id") }),
  "/shop.Order/UpdateOrder": (s) => ({ id: s.id("order", "id"), customer_id: s.id("customer", "customer_id"), order_note: "control" }),
  "/shop.Order/UpdateOrderLines": (s) => ({ id: s.id("order", "id"), lines: [{ variant_id: s.id("variant", "lines.variant_id"), quantity: 2 }] }),
  "/shop.Order/ConfirmOrder": (s) => ({ id: s.id("order", "id") }),
  "/shop.Order/CancelOrder": (s) => ({ id: s.id("order", "id"), cancel_reason: "control" }),
  "/shop.Order/DeleteOrder": (s) => ({ id: s.id("order", "id") }),
  "/shop.Order/ListOrders": (s) => ({ filter: { id: [s.id("order", "filter.id")], customer_id: [s.id("customer", "filter.customer_id")] }, paging: list(s) }),
  "/shop.Product/CreateProduct": () => ({ name: "Fuzz control", list_price: "1000" }),
  "/shop.Product/GetProduct": (s) => ({ id: s.id("product", "id") }),
  "/shop.Product/UpdateProduct": (s) => ({ id: s.id("product", "id"), name: "Fuzz control 2" }),
  "/shop.Product/UpdateProductImages": (s) => ({ id: s.id("product", "id"), image_urls: ["https://example.com/a.png"] }),
  "/shop.Product/DeleteProduct": (s) => ({ id: s.id("product", "id") }),
  "/shop.Product/ListProducts": (s) => ({ filter: { id: [s.id("product", "filter.id")] }, paging: list(s) }),
  "/shop.Variant/CreateVariant": (s) => ({ product_id: s.id("product", "product_id"), name: "M", attributes: [{ name: "size", value: "M" }] }),
  "/shop.Variant/GetVariant": (s) => ({ id: s.id("variant", "id") }),
  "/shop.Variant/UpdateVariant": (s) => ({ id: s.id("variant", "id"), name: "L" }),
  "/shop.Variant/UpdateVariantAttributes": (s) => ({ id: s.id("variant", "id"), attributes: [{ name: "size", value: "L" }] }),
  "/shop.Variant/DeleteVariant": (s) => ({ id: s.id("variant", "id") }),
  "/shop.Variant/ListVariants": (s) => ({ filter: { id: [s.id("variant", "filter.id")], product_id: [s.id("product", "filter.product_id")] }, paging: list(s) }),
  // Fulfillments only: the shop that runs the fuzz never creates one, so this webhook never delivers.
  "/shop.Webhook/CreateWebhook": (s) => ({ url: s.receiverUrl, entities: ["fulfillment"], description: "control", after: s.cursor("after") }),
  "/shop.Webhook/GetWebhooks": () => ({}),
  "/shop.Webhook/GetWebhook": (s) => ({ id: s.id("webhook", "id") }),
  "/shop.Webhook/DeleteWebhook": (s) => ({ id: s.id("webhook", "id") }),
  "/shop.Webhook/GetChanges": (s) => ({ paging: feed(s), entities: ["customer"] }),
  "/shop.Webhook/UpdateWebhook": (s) => ({ id: s.id("webhook", "id"), description: "control", update_mask: "description" }),
  "/shop.Webhook/SetActive": (s) => ({ id: s.id("webhook", "id"), active: true }),
  "/shop.Webhook/TestWebhook": (s) => ({ id: s.id("webhook", "id"), event: "order.created" }),
  "/shop.Webhook/RotateSecret": (s) => ({ id: s.id("webhook", "id"), grace_seconds: 60 }),
  "/shop.Webhook/ListDeliveries": (s) => ({ filter: { webhook_id: s.id("webhook", "filter.webhook_id"), status: "failed" }, paging: feed(s) }),
  "/shop.Webhook/GetDelivery": (s) => ({ id: s.id("delivery", "id") }),
  "/shop.Webhook/RetryDelivery": (s) => ({ id: s.id("delivery", "id") }),
  "/shop.Webhook/ClearDeliveryHistory": (s) => ({ webhook_id: s.id("webhook", "webhook_id"), status: "failed" }),
  "/shop.Webhook/RecoverWebhook": (s) => ({ id: s.id("webhook", "id"), since: hourAgo() }),
  "/shop.Webhook/GetStats": (s) => ({ id: s.id("webhook", "id") }),
};

/** A JSON object as the protobuf JSON parser reads it (undefined members dropped). */
export function validJson(rpc: Rpc, s: BodySources): Body {
  const build = VALID[rpc.path];
  if (!build) throw new Error(`no valid request for ${rpc.path}`);
  return JSON.parse(JSON.stringify(build(s))) as Body;
}

export function toProto(rpc: Rpc, json: Body): Buffer {
  return Buffer.from(toBinary(rpc.method.input, fromJson(rpc.method.input, json as JsonValue)));
}

/** The id and cursor fields a valid request of `rpc` fills, with the entity each id names. */
export function slotsOf(rpc: Rpc): { ids: Array<{ slot: string; kind: EntityKind }>; cursors: string[] } {
  const ids: Array<{ slot: string; kind: EntityKind }> = [];
  const cursors: string[] = [];
  VALID[rpc.path]!({
    id: (kind, slot) => (ids.push({ slot, kind }), "1"),
    cursor: (slot) => (cursors.push(slot), undefined),
    receiverUrl: "http://127.0.0.1/",
  });
  return { ids, cursors };
}

// ---------------------------------------------------------------------------------------------
// Defective requests

/** Connect JSON over HTTP/1.1, gRPC over HTTP/2, gRPC-Web and Connect binary over HTTP/1.1. */
export type Transport = "json" | "grpc" | "grpcweb" | "binary";
export const TRANSPORTS: Transport[] = ["json", "grpc", "grpcweb", "binary"];

/** What a request must get: `http:<status>` or `grpc:<status>`, and the Connect code of a JSON error body. */
export interface Expected {
  result: string;
  code?: string;
}

export interface FuzzCase {
  index: number;
  rpc: string;
  transport: Transport;
  kind: string;
  /** Which variant of the kind, for the report (a field name, a header value). */
  detail?: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  /** Sent with Transfer-Encoding: chunked (no Content-Length). */
  chunked?: boolean;
  expect: Expected;
}

export interface CaseContext {
  rpc: Rpc;
  key: string;
  /** Keys that must not authenticate: unknown, revoked, malformed. */
  badKeys: string[];
  r: Rng;
  bodyLimit: number;
  valid: Body;
  validProto: Buffer;
}

type Built = Partial<Pick<FuzzCase, "method" | "path" | "headers" | "detail" | "chunked">> & { body: Buffer };

export interface Kind {
  name: string;
  transport: Transport;
  expect: Expected;
  build(c: CaseContext): Built;
}

const INVALID = { result: "http:400", code: "invalid_argument" };
const GRPC_INVALID = { result: "grpc:3" };

/** A value of the wrong JSON type for a field: never parseable as that field. */
function wrongValue(f: DescField, r: Rng): unknown {
  if (f.fieldKind === "list") return r.pick([{}, "not a list", 7, true]);
  if (f.fieldKind === "map") return r.pick([[], "not a map", 7]);
  if (f.fieldKind === "enum") return r.pick([{}, [], true, 1.5]);
  if (f.fieldKind === "message") {
    const t = f.message.typeName;
    if (t === "google.protobuf.Timestamp") return r.pick(["yesterday", "2026-13-45T99:00:00Z", {}, [], true, 7]);
    if (t === "google.protobuf.Struct") return r.pick(["a string", 7, [], true]);
    if (t === "google.protobuf.FieldMask") return r.pick([7, {}, [], true]);
    return r.pick(["not an object", 7, [], true]);
  }
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

/** The valid body with one field, at the top or one level down, set to a value of the wrong type. */
function wrongTyped(c: CaseContext): { body: Body; detail: string } | undefined {
  const fields = c.rpc.method.input.fields;
  if (!fields.length) return undefined;
  const f = c.r.pick(fields);
  const inner = f.fieldKind === "message" && !f.message.typeName.startsWith("google.protobuf.") && f.message.fields.length ? f.message : undefined;
  if (inner && c.r.next() < 0.5) {
    const g = c.r.pick(inner.fields);
    const base = typeof c.valid[f.name] === "object" && c.valid[f.name] !== null ? (c.valid[f.name] as Body) : {};
    return { body: { ...c.valid, [f.name]: { ...base, [g.name]: wrongValue(g, c.r) } }, detail: `${f.name}.${g.name}` };
  }
  return { body: { ...c.valid, [f.name]: wrongValue(f, c.r) }, detail: f.name };
}

function nested(depth: number, r: Rng): string {
  return r.next() < 0.5 ? "[".repeat(depth) + "]".repeat(depth) : '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
}

function randomBytes(r: Rng, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = r.int(256);
  return b;
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

function varint(n: number): Buffer {
  const out: number[] = [];
  let v = n >>> 0;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return Buffer.from(out);
}
const tag = (field: number, wireType: number) => varint(((field << 3) | wireType) >>> 0);
/** A field number no request message uses. */
const unknownField = (r: Rng) => 900 + r.int(100);

/** Wire type the declared type of `f` is read with: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32. */
function declaredWireType(f: DescField): number {
  if (f.fieldKind === "message" || f.fieldKind === "map" || (f.fieldKind === "list" && f.listKind === "message")) return 2;
  if (f.fieldKind === "enum" || (f.fieldKind === "list" && f.listKind === "enum")) return 0;
  switch (f.scalar) {
    case 9:
    case 12: // string, bytes
      return 2;
    case 1:
    case 6:
    case 16: // double, fixed64, sfixed64
      return 1;
    case 2:
    case 7:
    case 15: // float, fixed32, sfixed32
      return 5;
    default:
      return 0;
  }
}

/**
 * A known field with a wire type other than its declared one, and a payload that does not parse
 * as the declared type either (protobuf-es reads a field by its declared type whatever the wire
 * type says): appended last, so nothing after it can make it parse.
 */
function wrongWireType(c: CaseContext): { bytes: Buffer; detail: string } {
  const fields = c.rpc.method.input.fields;
  if (!fields.length) return { bytes: Buffer.concat([c.validProto, tag(1, 4)]), detail: "no fields: an end-group tag with no start" };
  const f = c.r.pick(fields);
  let bytes: Buffer;
  switch (declaredWireType(f)) {
    case 2: // length-delimited, sent as a varint: a length of 2^32-1
      bytes = Buffer.concat([tag(f.number, 0), Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])]);
      break;
    case 0: // varint, sent as fixed32: an 11-byte varint
      bytes = Buffer.concat([tag(f.number, 5), Buffer.alloc(11, 0xff)]);
      break;
    default: // fixed64 or fixed32, sent as a varint: one byte
      bytes = Buffer.concat([tag(f.number, 0), Buffer.from([0x01])]);
  }
  return { bytes: Buffer.concat([c.validProto, bytes]), detail: `${f.name} (wire type ${declaredWireType(f)})` };
}

/** gRPC message framing: flag byte, 4-byte length, message. */
export function frame(payload: Buffer, compressed = false, length = payload.length): Buffer {
  const head = Buffer.alloc(5);
  head[0] = compressed ? 1 : 0;
  head.writeUInt32BE(length >>> 0, 1);
  return Buffer.concat([head, payload]);
}

const CONTENT_TYPES = [
  "text/plain",
  "application/xml",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "application/octet-stream",
  "image/png",
  "application/json; charset=latin1",
  "application/connect+json", // the streaming type, on a unary RPC
  "",
];

export const JSON_KINDS: Kind[] = [
  {
    name: "syntax",
    transport: "json",
    expect: INVALID,
    build: (c) => {
      const v = JSON.stringify(c.valid);
      return { body: Buffer.from(c.r.pick(["{", "{]", '{"a":}', "{'single':1}", "{/*c*/}", "NaN", "{,}", '{"a" 1}', `${v}}`, `${v},${v}`, v.replace("{", "{,"), "\u0000", ""].filter(Boolean))) };
    },
  },
  {
    name: "truncated",
    transport: "json",
    expect: INVALID,
    build: (c) => {
      const v = JSON.stringify(c.valid);
      const n = 1 + c.r.int(v.length - 1);
      return { body: Buffer.from(v.slice(0, n)), detail: `${n} of ${v.length} bytes` };
    },
  },
  {
    name: "wrong-type",
    transport: "json",
    expect: INVALID,
    build: (c) => {
      const w = wrongTyped(c);
      return w ? { body: json(w.body), detail: w.detail } : { body: Buffer.from(c.r.pick(["[]", "7", '"s"', "true"])), detail: "top level" };
    },
  },
  {
    name: "unknown-field",
    transport: "json",
    expect: INVALID,
    build: (c) => ({ body: json({ ...c.valid, [`no_such_field_${c.r.int(1000)}`]: c.r.pick([1, "x", {}, [], null]) }) }),
  },
  {
    name: "deep",
    transport: "json",
    expect: INVALID,
    build: (c) => {
      const depth = 200 + c.r.int(8000);
      const v = JSON.stringify(c.valid);
      // Into the Struct where the RPC has one (TestWebhook's payload), else under an unknown name.
      const name = c.rpc.method.input.fields.some((f) => f.fieldKind === "message" && f.message.typeName === "google.protobuf.Struct") ? "payload" : "no_such_field";
      const value = name === "payload" ? '{"a":'.repeat(depth) + "1" + "}".repeat(depth) : nested(depth, c.r);
      return { body: Buffer.from(`${v.slice(0, -1)}${v.length > 2 ? "," : ""}"${name}":${value}}`), detail: `${name}, ${depth} levels` };
    },
  },
  {
    name: "bad-utf8",
    transport: "json",
    expect: INVALID,
    // In a field name (in a string value: bad-utf8-in-value).
    build: (c) => ({ body: Buffer.concat([Buffer.from('{"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from(`": 1${JSON.stringify(c.valid).length > 2 ? "," : ""}${JSON.stringify(c.valid).slice(1)}`)]) }),
  },
  {
    name: "not-object",
    transport: "json",
    expect: INVALID,
    build: (c) => ({ body: Buffer.from(c.r.pick(["[]", "1", '"s"', "null", "true", `[${JSON.stringify(c.valid)}]`])) }),
  },
  {
    name: "content-type",
    transport: "json",
    expect: { result: "http:415", code: "invalid_argument" },
    build: (c) => {
      const type = c.r.pick(CONTENT_TYPES);
      const headers: Record<string, string> = { authorization: `Bearer ${c.key}` };
      if (type) headers["content-type"] = type;
      return { headers, body: json(c.valid), detail: type || "none" };
    },
  },
  {
    name: "no-auth",
    transport: "json",
    expect: { result: "http:401", code: "unauthenticated" },
    build: (c) => ({ headers: { "content-type": "application/json" }, body: json(c.valid) }),
  },
  {
    name: "bad-auth",
    transport: "json",
    expect: { result: "http:401", code: "unauthenticated" },
    build: (c) => {
      const auth = c.r.pick(c.badKeys);
      return { headers: { "content-type": "application/json", authorization: auth }, body: json(c.valid), detail: auth.slice(0, 20) };
    },
  },
  {
    name: "bad-encoding",
    transport: "json",
    expect: INVALID,
    build: (c) => {
      const encoding = c.r.pick(["gzip", "br"]);
      const v = JSON.stringify(c.valid);
      // Not gzip at all (no gzip magic), a cut gzip stream, or a well-encoded body that is not
      // JSON. (Random bytes are no test for br: some decode, to anything.)
      const notJson = Buffer.from(v.slice(0, -1));
      const body = encoding === "br" ? brotliCompressSync(notJson) : c.r.pick([Buffer.concat([Buffer.from([0x00]), randomBytes(c.r, c.r.int(64))]), gzipSync(v).subarray(0, 12), gzipSync(notJson)]);
      return { headers: { "content-type": "application/json", authorization: `Bearer ${c.key}`, "content-encoding": encoding }, body, detail: encoding };
    },
  },
  {
    name: "unknown-encoding",
    transport: "json",
    expect: { result: "http:415", code: "unimplemented" },
    build: (c) => {
      const encoding = c.r.pick(["deflate-x", "compress", "zstd", "gzip, br"]);
      return { headers: { "content-type": "application/json", authorization: `Bearer ${c.key}`, "content-encoding": encoding }, body: json(c.valid), detail: encoding };
    },
  },
  {
    name: "oversized",
    transport: "json",
    expect: { result: "http:413", code: "resource_exhausted" },
    build: (c) => ({ body: json({ ...c.valid, no_such_field: "x".repeat(c.bodyLimit + c.r.int(2 * c.bodyLimit)) }) }),
  },
  {
    name: "oversized-chunked",
    transport: "json",
    expect: { result: "http:413", code: "resource_exhausted" },
    build: (c) => ({ chunked: true, body: json({ ...c.valid, no_such_field: "x".repeat(c.bodyLimit + c.r.int(2 * c.bodyLimit)) }) }),
  },
  {
    name: "bad-timeout",
    transport: "json",
    expect: INVALID,
    build: (c) => {
      const t = c.r.pick(["-1", "abc", "99999999999999999999", "1.5", "0x10"]);
      return { headers: { "content-type": "application/json", authorization: `Bearer ${c.key}`, "connect-timeout-ms": t }, body: json(c.valid), detail: t };
    },
  },
  {
    name: "unknown-method",
    transport: "json",
    expect: { result: "http:404", code: "unimplemented" },
    build: (c) => {
      const [, service, method] = c.rpc.path.split("/");
      const path = c.r.pick([`/v1/${service}/${method}X`, `/v1/${service}x/${method}`, `/v1/${service}/${method!.toLowerCase()}`, `/v2/${service}/${method}`]);
      return { path, body: json(c.valid), detail: path };
    },
  },
  {
    name: "wrong-method",
    transport: "json",
    expect: { result: "http:405" },
    build: (c) => {
      const method = c.r.pick(["GET", "PUT", "DELETE", "PATCH"]);
      return { method, body: method === "GET" ? Buffer.alloc(0) : json(c.valid), detail: method };
    },
  },
  {
    name: "proto-garbage",
    transport: "json",
    expect: INVALID,
    build: (c) => ({ headers: { "content-type": "application/proto", authorization: `Bearer ${c.key}` }, body: Buffer.concat([c.validProto, Buffer.from(c.r.pick([[0x0f], [0x00], [0x0e, 0x01], [0xff, 0xff, 0xff, 0xff, 0xff, 0x01]]))]) }),
  },
  {
    name: "oversized-after-gzip",
    transport: "json",
    expect: { result: "http:413", code: "resource_exhausted" },
    build: (c) => ({ headers: { "content-type": "application/json", authorization: `Bearer ${c.key}`, "content-encoding": "gzip" }, body: gzipSync(JSON.stringify({ ...c.valid, no_such_field: "x".repeat(4 * c.bodyLimit) })) }),
  },
  {
    name: "bad-utf8-in-value",
    transport: "json",
    expect: INVALID,
    build: () => ({ body: Buffer.concat([Buffer.from('{"name": "ab'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]) }),
  },
];

const grpcHeaders = (c: CaseContext) => ({ "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${c.key}` });

export const GRPC_KINDS: Kind[] = [
  {
    name: "proto-garbage",
    transport: "grpc",
    expect: GRPC_INVALID,
    // Tags no parser accepts: field 0, wire types 6 and 7, a tag varint over 32 bits.
    build: (c) => ({ body: frame(Buffer.concat([c.validProto, Buffer.from(c.r.pick([[0x0f], [0x00, 0x01], [0x0e], [0xff, 0xff, 0xff, 0xff, 0xff, 0x01]])), randomBytes(c.r, c.r.int(16))])) }),
  },
  {
    name: "wrong-wire-type",
    transport: "grpc",
    expect: GRPC_INVALID,
    build: (c) => {
      const w = wrongWireType(c);
      return { body: frame(w.bytes), detail: w.detail };
    },
  },
  {
    name: "nested-groups",
    transport: "grpc",
    expect: GRPC_INVALID,
    build: (c) => {
      const depth = 101 + c.r.int(5000);
      const field = unknownField(c.r);
      const closed = c.r.next() < 0.5;
      const body = Buffer.concat([c.validProto, Buffer.concat(Array.from({ length: depth }, () => tag(field, 3))), closed ? Buffer.concat(Array.from({ length: depth }, () => tag(field, 4))) : Buffer.alloc(0)]);
      return { body: frame(body), detail: `${depth} levels, ${closed ? "closed" : "unterminated"}` };
    },
  },
  {
    name: "huge-inner-length",
    transport: "grpc",
    expect: GRPC_INVALID,
    build: (c) => {
      const lenField = c.rpc.method.input.fields.find((f) => declaredWireType(f) === 2 && f.fieldKind !== "list");
      const field = lenField && c.r.next() < 0.5 ? lenField.number : unknownField(c.r);
      return { body: frame(Buffer.concat([c.validProto, tag(field, 2), Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), randomBytes(c.r, c.r.int(8))])), detail: `field ${field}` };
    },
  },
  {
    name: "truncated-message",
    transport: "grpc",
    expect: GRPC_INVALID,
    // A length-delimited field that promises more bytes than the message holds.
    build: (c) => ({ body: frame(Buffer.concat([c.validProto, tag(unknownField(c.r), 2), varint(20), randomBytes(c.r, c.r.int(19))])) }),
  },
  {
    name: "truncated-frame",
    transport: "grpc",
    expect: GRPC_INVALID,
    // At least one byte of the message (a header alone: frame-header-only).
    build: (c) => {
      const sent = Buffer.concat([c.validProto, Buffer.from([0x0a])]);
      return { body: frame(sent, false, sent.length + 1 + c.r.int(1000)), detail: `frame promises more than ${sent.length} bytes` };
    },
  },
  {
    name: "short-header",
    transport: "grpc",
    expect: GRPC_INVALID,
    build: (c) => ({ body: frame(c.validProto).subarray(0, 1 + c.r.int(4)) }),
  },
  {
    name: "compressed-unannounced",
    transport: "grpc",
    expect: GRPC_INVALID,
    build: (c) => ({ body: frame(c.r.next() < 0.5 ? gzipSync(c.validProto) : randomBytes(c.r, 16), true) }),
  },
  {
    name: "bad-compressed",
    transport: "grpc",
    expect: GRPC_INVALID,
    build: (c) => {
      // Not gzip (no gzip magic), a cut gzip stream, or well-compressed bytes that are no message.
      // (Random bytes are no test for br: some decode, to anything.)
      const encoding = c.r.pick(["gzip", "br"]);
      const garbage = Buffer.concat([c.validProto, Buffer.from([0x0f])]);
      const payload = encoding === "br" ? brotliCompressSync(garbage) : c.r.pick([Buffer.concat([Buffer.from([0x00]), randomBytes(c.r, c.r.int(32))]), gzipSync(c.validProto).subarray(0, 12), gzipSync(garbage)]);
      return { headers: { ...grpcHeaders(c), "grpc-encoding": encoding }, body: frame(payload, true), detail: encoding };
    },
  },
  {
    name: "oversize-length",
    transport: "grpc",
    expect: { result: "grpc:8" },
    build: (c) => {
      const length = c.r.pick([0x7fffffff, 0xffffffff, c.bodyLimit + 1 + c.r.int(c.bodyLimit)]);
      return { body: frame(c.validProto, false, length), detail: `length ${length}` };
    },
  },
  {
    name: "oversize-payload",
    transport: "grpc",
    expect: { result: "grpc:8" },
    build: (c) => {
      const n = c.bodyLimit + c.r.int(c.bodyLimit);
      return { body: frame(Buffer.concat([c.validProto, tag(unknownField(c.r), 2), varint(n), Buffer.alloc(n, 0x61)])), detail: `${n} bytes` };
    },
  },
  {
    name: "no-auth",
    transport: "grpc",
    expect: { result: "grpc:16" },
    build: (c) => ({ headers: { "content-type": "application/grpc", te: "trailers" }, body: frame(c.validProto) }),
  },
  {
    name: "bad-auth",
    transport: "grpc",
    expect: { result: "grpc:16" },
    build: (c) => {
      const auth = c.r.pick(c.badKeys);
      return { headers: { "content-type": "application/grpc", te: "trailers", authorization: auth }, body: frame(c.validProto), detail: auth.slice(0, 20) };
    },
  },
  {
    name: "content-type",
    transport: "grpc",
    expect: { result: "http:415", code: "invalid_argument" },
    build: (c) => {
      const type = c.r.pick(["text/plain", "application/x-protobuf", "application/octet-stream", "grpc", ""]);
      const headers: Record<string, string> = { te: "trailers", authorization: `Bearer ${c.key}` };
      if (type) headers["content-type"] = type;
      return { headers, body: frame(c.validProto), detail: type || "none" };
    },
  },
  {
    // A gRPC content type with a codec we do not serve: answered as gRPC, status 3.
    name: "grpc-subtype",
    transport: "grpc",
    expect: GRPC_INVALID,
    build: (c) => {
      const type = c.r.pick(["application/grpc+foo", "application/grpc+thrift", "application/grpc-web+xml", "application/grpc+proto+json"]);
      return { headers: { ...grpcHeaders(c), "content-type": type }, body: frame(c.validProto), detail: type };
    },
  },
  {
    name: "json-malformed",
    transport: "grpc",
    expect: GRPC_INVALID,
    build: (c) => ({ headers: { ...grpcHeaders(c), "content-type": "application/grpc+json" }, body: frame(Buffer.from(c.r.pick(["{", "[]", '{"no_such_field": 1}', "\u0000", "null", JSON.stringify(c.valid).slice(0, -1), nested(5000, c.r)]))) }),
  },
  {
    name: "json-wrong-type",
    transport: "grpc",
    expect: GRPC_INVALID,
    build: (c) => {
      const w = wrongTyped(c);
      return { headers: { ...grpcHeaders(c), "content-type": "application/grpc+json" }, body: frame(w ? json(w.body) : Buffer.from("[]")), detail: w?.detail ?? "top level" };
    },
  },
  {
    name: "bad-timeout",
    transport: "grpc",
    expect: GRPC_INVALID,
    build: (c) => {
      const t = c.r.pick(["abc", "999999999S", "-1S", "1x", "S", "123456789012H"]);
      return { headers: { ...grpcHeaders(c), "grpc-timeout": t }, body: frame(c.validProto), detail: t };
    },
  },
  {
    name: "unknown-method",
    transport: "grpc",
    // gRPC's own terms: HTTP 200, a gRPC content type, grpc-status 12.
    expect: { result: "grpc:12" },
    build: (c) => {
      const [, service, method] = c.rpc.path.split("/");
      const path = c.r.pick([`/${service}/${method}X`, `/${service}x/${method}`, `/grpc.reflection.v1.ServerReflection/ServerReflectionInfo`]);
      return { path, body: frame(c.validProto), detail: path };
    },
  },
  {
    name: "no-message",
    transport: "grpc",
    expect: GRPC_INVALID,
    build: () => ({ body: Buffer.alloc(0) }),
  },
  {
    name: "frame-header-only",
    transport: "grpc",
    expect: GRPC_INVALID,
    build: () => ({ body: frame(Buffer.alloc(0), false, 10) }),
  },
  {
    name: "two-messages",
    transport: "grpc",
    expect: GRPC_INVALID,
    build: (c) => ({ body: Buffer.concat([frame(c.validProto), frame(c.validProto)]) }),
  },
];

/** gRPC kinds sent as gRPC-Web (HTTP/1.1, the same frames): the same answer, in a trailer frame. */
const GRPC_WEB_KINDS: Kind[] = ["proto-garbage", "wrong-wire-type", "nested-groups", "huge-inner-length", "truncated-message", "compressed-unannounced", "bad-compressed", "oversize-payload", "no-auth", "bad-auth", "grpc-subtype", "json-malformed", "unknown-method", "no-message", "two-messages"].map((name) => {
  const k = GRPC_KINDS.find((g) => g.name === name)!;
  return {
    ...k,
    transport: "grpcweb" as const,
    build: (c: CaseContext) => {
      const b = k.build(c);
      const headers: Record<string, string> = { ...(b.headers ?? grpcHeaders(c)) };
      delete headers.te;
      const type = headers["content-type"] ?? "";
      if (type.startsWith("application/grpc") && !type.startsWith("application/grpc-web")) headers["content-type"] = type.replace("application/grpc", "application/grpc-web");
      return { ...b, headers };
    },
  };
});

/** gRPC's message defects as Connect unary binary (application/proto: the message, no frame). */
const BINARY_KINDS: Kind[] = (
  [
    ["proto-garbage", INVALID],
    ["wrong-wire-type", INVALID],
    ["nested-groups", INVALID],
    ["huge-inner-length", INVALID],
    ["truncated-message", INVALID],
    ["oversize-payload", { result: "http:413", code: "resource_exhausted" }],
    ["no-auth", { result: "http:401", code: "unauthenticated" }],
    ["bad-auth", { result: "http:401", code: "unauthenticated" }],
  ] as const
).map(([name, expect]) => {
  const k = GRPC_KINDS.find((g) => g.name === name)!;
  return {
    name,
    transport: "binary" as const,
    expect,
    build: (c: CaseContext) => {
      const b = k.build(c);
      const headers: Record<string, string> = { ...(b.headers ?? grpcHeaders(c)), "content-type": "application/proto" };
      delete headers.te;
      return { ...b, headers, body: b.body.subarray(5) };
    },
  };
});

/**
 * Every kind in the round-robin, the transports interleaved so that any four in a row hold all
 * four (a shorter list comes round again).
 */
export const KINDS: Kind[] = (() => {
  const out: Kind[] = [];
  const lists = [JSON_KINDS, GRPC_KINDS, GRPC_WEB_KINDS, BINARY_KINDS];
  for (let i = 0; i < Math.max(...lists.map((l) => l.length)); i++) for (const l of lists) out.push(l[i % l.length]!);
  return out;
})();

const SPREAD = Math.ceil(KINDS.length / RPCS.length);

/** Requests in one full round: every (RPC, transport, kind) once. */
export const CYCLE = RPCS.length * KINDS.length;

export const tripleKey = (rpc: string, transport: Transport, kind: string) => `${rpc} ${transport} ${kind}`;

export interface GeneratorInput {
  key: string;
  badKeys: string[];
  seed: number;
  bodyLimit: number;
  /** Sources for the valid bodies the defects are made from. */
  sources: BodySources;
}

export function buildCase(kind: Kind, rpc: Rpc, index: number, c: Omit<CaseContext, "rpc" | "valid" | "validProto">, sources: BodySources): FuzzCase {
  const valid = validJson(rpc, sources);
  const ctx: CaseContext = { ...c, rpc, valid, validProto: toProto(rpc, valid) };
  const built = kind.build(ctx);
  const defaults =
    kind.transport === "json"
      ? { method: "POST", path: `${c.r.pick(["/v1", ""])}${rpc.path}`, headers: { "content-type": "application/json", authorization: `Bearer ${c.key}` } }
      : { method: "POST", path: kind.transport === "binary" ? `/v1${rpc.path}` : rpc.path, headers: grpcHeaders(ctx) };
  return { index, rpc: rpc.path, transport: kind.transport, kind: kind.name, expect: kind.expect, ...defaults, ...built };
}

/** Cases `start` .. `start + count - 1` of the round-robin for `seed`. */
export function* fuzzCases(input: GeneratorInput, start: number, count: number): Generator<FuzzCase> {
  const offset = input.seed % KINDS.length;
  for (let i = start; i < start + count; i++) {
    const r = rng(input.seed * 1_000_003 + i);
    const rpc = RPCS[i % RPCS.length]!;
    // Each RPC takes consecutive kinds (all transports in any four), from a start spread over
    // every kind: so a run of a few rounds sends every kind too.
    const kind = KINDS[(Math.floor(i / RPCS.length) + (i % RPCS.length) * SPREAD + offset) % KINDS.length]!;
    yield buildCase(kind, rpc, i, { key: input.key, badKeys: input.badKeys, r, bodyLimit: input.bodyLimit }, input.sources);
  }
}

// ---------------------------------------------------------------------------------------------
// Sending

export interface Outcome {
  /** "http:400" or "grpc:3". */
  result: string;
  /** The Connect code of a JSON error body, or the grpc-message's status name. */
  code?: string;
  message?: string;
  /** The parsed JSON body of an HTTP reply. */
  body?: unknown;
}

export function matches(o: Outcome, e: Expected): boolean {
  return o.result === e.result && (e.code === undefined || o.code === e.code);
}

function chunks(body: Buffer): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= body.length) return controller.close();
      controller.enqueue(body.subarray(at, (at += 16 * 1024)));
    },
  });
}

export async function sendHttp(baseUrl: string, c: Pick<FuzzCase, "method" | "path" | "headers" | "body" | "chunked">): Promise<Outcome> {
  const init: RequestInit & { duplex?: "half" } = { method: c.method, headers: c.headers };
  if (c.method !== "GET") {
    if (c.chunked) {
      init.body = chunks(c.body);
      init.duplex = "half";
    } else init.body = c.body;
  }
  const res = await fetch(baseUrl + c.path, init);
  if ((res.headers.get("content-type") ?? "").startsWith("application/grpc-web")) return grpcWebOutcome(res);
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = text;
  }
  const err = (res.status !== 200 && body) || {};
  const { code, message } = err as { code?: unknown; message?: unknown };
  return { result: `http:${res.status}`, code: typeof code === "string" ? code : undefined, message: typeof message === "string" ? message : undefined, body };
}

/** The fields of the trailer frame(s) in a gRPC-Web body, names lower-cased. */
export function grpcWebTrailers(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (let at = 0; at + 5 <= body.length; ) {
    const len = body.readUInt32BE(at + 1);
    if (body[at] === 0x80) {
      for (const line of body.subarray(at + 5, at + 5 + len).toString().split("\r\n")) {
        const i = line.indexOf(":");
        if (i > 0) out[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
    }
    at += 5 + len;
  }
  return out;
}

/** A gRPC-Web answer: grpc-status from the headers (trailers-only) or from the body's trailer frame. */
async function grpcWebOutcome(res: Response): Promise<Outcome> {
  const fields: Record<string, string> = {};
  if (res.headers.has("grpc-status")) {
    fields["grpc-status"] = res.headers.get("grpc-status")!;
    fields["grpc-message"] = res.headers.get("grpc-message") ?? "";
  }
  Object.assign(fields, grpcWebTrailers(Buffer.from(await res.arrayBuffer())));
  if (res.status !== 200 || fields["grpc-status"] === undefined) return { result: `http:${res.status}` };
  return { result: `grpc:${fields["grpc-status"]}`, message: decodeURIComponent(fields["grpc-message"] ?? "") };
}

export function sendGrpc(session: http2.ClientHttp2Session, c: Pick<FuzzCase, "path" | "headers" | "body">): Promise<Outcome> {
  return new Promise((resolve) => {
    let status: string | undefined;
    let message: string | undefined;
    let httpStatus = 0;
    const data: Buffer[] = [];
    const stream = session.request({ ":method": "POST", ":path": c.path, ...c.headers });
    const read = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
      if (h["grpc-message"] !== undefined) message = decodeURIComponent(String(h["grpc-message"]));
    };
    stream.on("response", (h) => {
      httpStatus = Number(h[":status"]);
      read(h);
    });
    stream.on("trailers", read);
    stream.on("data", (d: Buffer) => data.push(d));
    stream.on("error", () => undefined);
    stream.on("close", () => {
      if (status !== undefined) return resolve({ result: `grpc:${status}`, message });
      if (!httpStatus) return resolve({ result: `error:stream closed (${stream.rstCode})` });
      let body: { code?: string; message?: string } = {};
      try {
        body = JSON.parse(Buffer.concat(data).toString()) as typeof body;
      } catch {
        /* not JSON */
      }
      resolve({ result: `http:${httpStatus}`, code: body.code, message: body.message });
    });
    stream.end(c.body);
  });
}

/** A gRPC client session that reconnects when the server closed the last one. */
export class GrpcSessions {
  private session: http2.ClientHttp2Session | undefined;
  private readonly url: string;
  constructor(url: string) {
    this.url = url;
  }
  get(): http2.ClientHttp2Session {
    if (!this.session || this.session.closed || this.session.destroyed) {
      this.session = http2.connect(this.url);
      this.session.on("error", () => undefined);
    }
    return this.session;
  }
  close() {
    this.session?.close();
  }
}

export async function send(baseUrl: string, sessions: GrpcSessions, c: FuzzCase): Promise<Outcome> {
  try {
    return c.transport === "grpc" ? await sendGrpc(sessions.get(), c) : await sendHttp(baseUrl, c);
  } catch (err) {
    const e = err as Error & { cause?: Error };
    return { result: `error:${e.message}${e.cause ? ` (${e.cause.message})` : ""}` };
  }
}

/** A description of a case to replay it by hand, for the report. */
export function describeCase(c: FuzzCase): string {
  const body = c.body.length > 300 ? `${c.body.subarray(0, 300).toString("base64")}... (${c.body.length} bytes)` : c.body.toString("base64");
  return `${c.transport} ${c.method} ${c.path} headers=${JSON.stringify({ ...c.headers, authorization: c.headers.authorization ? "<key>" : undefined })}${c.chunked ? " chunked" : ""} body(base64)=${body}`;
}
