/** shop.Webhook: eTop's CreateWebhook/GetWebhooks/DeleteWebhook, GetWebhook, and GetChanges. */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { type ShopWebhook, ShopWebhookSchema, type Webhook, WebhookErrorSchema, type WebhookHeader } from "../../gen/shop/webhook_pb.ts";
import type { AppContext } from "../context.ts";
import { inTx } from "../db/pool.ts";
import * as sql from "../db/sql/webhooks.ts";
import { newSecret } from "../delivery/signing.ts";
import type { AddressPolicy } from "../delivery/ssrf.ts";
import { principal } from "./auth.ts";
import { getChanges, validateEntities } from "./changes.ts";
import { ts } from "./convert.ts";
import { failedPrecondition, invalidArgument, notFound } from "./errors.ts";
import { checkRetention } from "./paging.ts";
import { requireId, text } from "./validate.ts";

const METADATA_MAX_BYTES = 4096;
const MAX_HEADERS = 20;
/** Headers shophook sets itself, or that HTTP reserves to the connection: a webhook may not set them. */
const RESERVED_HEADERS = new Set([
  "host", "content-type", "content-length", "content-encoding", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
  "upgrade", "expect", "user-agent", "date", "cookie", "proxy-authorization", "proxy-authenticate", "proxy-connection",
]);
const RESERVED_PREFIXES = ["webhook-", "x-shophook-", "proxy-", "sec-", ":"];
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export function webhookMessage(w: sql.WebhookRow, secret = ""): ShopWebhook {
  return create(ShopWebhookSchema, {
    id: w.id,
    url: w.url,
    entities: w.entities,
    fields: w.fields,
    metadata: w.metadata,
    createdAt: ts(w.created_at),
    updatedAt: ts(w.updated_at),
    active: w.active,
    headers: w.headers,
    description: w.description,
    secret,
    states: {
      state: w.state,
      lastSentAt: ts(w.last_sent_at),
      nextAttemptAt: w.state === "retry" ? ts(w.next_attempt_at) : undefined,
      lastError: w.last_error
        ? create(WebhookErrorSchema, {
            error: w.last_error.error,
            respStatus: w.last_error.resp_status,
            respBody: w.last_error.resp_body,
            retried: w.last_error.retried,
            sentAt: ts(new Date(w.last_error.sent_at)),
          })
        : undefined,
    },
  });
}

export interface WebhookValidation {
  allowHttp: boolean;
  policy: AddressPolicy;
}

/** An absolute http(s) URL whose host is allowed (resolved now; checked again at every connection). */
export async function validateUrl(field: string, raw: string, v: WebhookValidation): Promise<string> {
  const value = text(field, raw, 2000, true);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalidArgument(field, `not an absolute URL: "${value.slice(0, 100)}"`);
  }
  if (url.protocol !== "https:" && !(v.allowHttp && url.protocol === "http:")) {
    throw invalidArgument(field, v.allowHttp ? "must be an http or https URL" : "must be an https URL (this server does not allow plain http)");
  }
  if (url.username || url.password) throw invalidArgument(field, "must not carry credentials; send them in a custom header instead");
  const refusal = await v.policy.checkHost(url.hostname);
  if (refusal) throw invalidArgument(field, `not an allowed destination: ${refusal}`);
  return url.toString();
}

export function validateHeaders(field: string, headers: WebhookHeader[]): Array<{ name: string; value: string }> {
  if (headers.length > MAX_HEADERS) throw invalidArgument(field, `at most ${MAX_HEADERS} headers, got ${headers.length}`);
  const seen = new Set<string>();
  return headers.map((h, i) => {
    const name = h.name.trim();
    const lower = name.toLowerCase();
    if (!TOKEN.test(name) || name.length > 100) throw invalidArgument(`${field}[${i}].name`, `not a valid header name: "${name.slice(0, 100)}"`);
    if (RESERVED_HEADERS.has(lower) || RESERVED_PREFIXES.some((p) => lower.startsWith(p))) throw invalidArgument(`${field}[${i}].name`, `"${name}" is reserved and cannot be set`);
    if (seen.has(lower)) throw invalidArgument(`${field}[${i}].name`, `duplicate header "${name}"`);
    seen.add(lower);
    if (h.value.length > 2000 || /[\r\n\0]/.test(h.value)) throw invalidArgument(`${field}[${i}].value`, "at most 2000 characters, no line breaks");
    return { name, value: h.value };
  });
}

export function validateMetadata(field: string, metadata: string): string {
  if (Buffer.byteLength(metadata) > METADATA_MAX_BYTES) throw invalidArgument(field, `at most ${METADATA_MAX_BYTES} bytes, got ${Buffer.byteLength(metadata)}`);
  return metadata;
}

export function webhookService(ctx: AppContext, v: WebhookValidation): ServiceImpl<typeof Webhook> {
  const list = async (shopId: string) => (await ctx.pool.query<sql.WebhookRow>(sql.listWebhooks(shopId))).rows.map((w) => webhookMessage(w));
  return {
    async createWebhook(req, hc) {
      const shopId = principal(hc).shopId;
      if (!req.entities.length) throw invalidArgument("entities", "at least one entity is required");
      const entities = validateEntities("entities", req.entities);
      if (req.fields.length) throw invalidArgument("fields", "not supported yet; leave it empty");
      const url = await validateUrl("url", req.url, v);
      const headers = validateHeaders("headers", req.headers);
      const metadata = validateMetadata("metadata", req.metadata);
      const description = text("description", req.description, 500);
      let after: [string, string] | undefined;
      if (req.after) {
        const c = ctx.cursors.decode(req.after, "after", "changes", shopId);
        checkRetention(ctx, c.t, "after");
        after = [c.k[0]!, c.k[1]!];
      }
      const id = await ctx.ids.next();
      const secret = newSecret();
      const row = await inTx(ctx.pool, async (tx) => {
        await tx.query(sql.lockShopWebhooks(shopId));
        const { rows } = await tx.query<{ n: number }>(sql.countWebhooks(shopId));
        if (rows[0]!.n >= ctx.config.maxWebhooksPerShop) throw failedPrecondition(`a shop may have at most ${ctx.config.maxWebhooksPerShop} webhooks; delete one first`);
        return (await tx.query<sql.WebhookRow>(sql.insertWebhook(shopId, { id, url, entities, fields: [], metadata, headers, description, secret, now: new Date(), after }))).rows[0]!;
      });
      ctx.webhooksChanged?.(shopId);
      return webhookMessage(row, secret);
    },

    async getWebhooks(_req, hc) {
      return { webhooks: await list(principal(hc).shopId) };
    },

    async getWebhook(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const row = (await ctx.pool.query<sql.WebhookRow>(sql.getWebhook(shopId, id))).rows[0];
      if (!row) throw notFound(`webhook ${id}`);
      return webhookMessage(row);
    },

    async deleteWebhook(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const { rowCount } = await ctx.pool.query(sql.deleteWebhook(shopId, id));
      if (!rowCount) throw notFound(`webhook ${id}`);
      ctx.webhooksChanged?.(shopId);
      return { webhooks: await list(shopId) };
    },

    getChanges: getChanges(ctx),
  };
}
