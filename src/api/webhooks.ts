/**
 * shop.Webhook, settings side: eTop's CreateWebhook/GetWebhooks/DeleteWebhook, and GetWebhook,
 * UpdateWebhook, SetActive, RotateSecret, RecoverWebhook. The delivery side (history, test,
 * retry, stats) is in webhook-deliveries.ts.
 */
import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type CreateWebhookRequest,
  type ShopWebhook,
  ShopWebhookSchema,
  type UpdateWebhookRequest,
  type Webhook,
  WebhookErrorSchema,
  WebhookHealthSchema,
  type WebhookHeader,
} from "../../gen/shop/webhook_pb.ts";
import type { AppContext } from "../context.ts";
import { inTx } from "../db/pool.ts";
import { recentOutcomes } from "../db/sql/deliveries.ts";
import * as sql from "../db/sql/webhooks.ts";
import type { History } from "../delivery/history.ts";
import type { HttpSender } from "../delivery/http-sender.ts";
import type { Metrics } from "../metrics.ts";
import { newSecret } from "../delivery/signing.ts";
import type { AddressPolicy } from "../delivery/ssrf.ts";
import { parseTopic, subscriptions } from "../delivery/topics.ts";
import { exclusive } from "./exclusive.ts";
import { entities as ENTITY_DEFS } from "../entities/index.ts";
import type { EntityName } from "../entities/model.ts";
import { principal } from "./auth.ts";
import { getChanges, validateEntities } from "./changes.ts";
import { ts } from "./convert.ts";
import { failedPrecondition, invalidArgument, notFound } from "./errors.ts";
import { maxPosition } from "../db/position.ts";
import { cursorExpired } from "./paging.ts";
import { requireId, text } from "./validate.ts";
import { webhookDeliveries } from "./webhook-deliveries.ts";

const METADATA_MAX_BYTES = 4096;
const MAX_HEADERS = 20;
const MAX_RATE_LIMIT = 1000;
const MAX_GRACE_SECONDS = 7 * 86_400;
const FORMATS = ["json", "xml", "thin"] as const;
/** Headers shophook sets itself, or that HTTP reserves to the connection: a webhook may not set them. */
const RESERVED_HEADERS = new Set([
  "host", "content-type", "content-length", "content-encoding", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
  "upgrade", "expect", "user-agent", "date", "cookie", "proxy-authorization", "proxy-authenticate", "proxy-connection",
]);
const RESERVED_PREFIXES = ["webhook-", "x-shophook-", "proxy-", "sec-", ":"];
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Health thresholds (docs/webhook-operations.md). */
const HEALTH_WINDOW_MS = 24 * 3_600_000;
const FAILING_TOO_LONG_MS = 3_600_000;

export interface WebhookApiDeps {
  validation: WebhookValidation;
  sender: HttpSender;
  history: History;
  metrics?: Metrics;
  /** Asks the delivery engine for a turn of the webhook now (no-op without an engine here); never throws. */
  wake(id: string): void;
}

export interface WebhookValidation {
  allowHttp: boolean;
  policy: AddressPolicy;
}

interface Outcome {
  total: number;
  success: number;
}

export function health(w: sql.WebhookRow, o: Outcome | undefined, now: Date) {
  const rate = o && o.total ? o.success / o.total : 1;
  const failingLong = w.state === "retry" && w.failing_since !== null && now.getTime() - w.failing_since.getTime() > FAILING_TOO_LONG_MS;
  const status = w.state === "stop" || w.disabled_reason || failingLong || rate < 0.5 ? "error" : w.state === "retry" || rate < 0.95 ? "warning" : "healthy";
  return create(WebhookHealthSchema, {
    status,
    successRate: rate,
    lastSuccessAt: ts(w.last_success_at),
    lastFailureAt: ts(w.last_failure_at),
    lastFailureReason: w.last_error?.error ?? "",
  });
}

export function webhookMessage(w: sql.WebhookRow, outcome?: Outcome, now = new Date(), secret = ""): ShopWebhook {
  return create(ShopWebhookSchema, {
    id: w.id,
    url: w.url,
    entities: w.entities,
    topics: w.topics,
    fields: w.fields,
    metadata: w.metadata,
    createdAt: ts(w.created_at),
    updatedAt: ts(w.updated_at),
    active: w.active,
    headers: w.headers,
    description: w.description,
    format: w.format,
    coalesce: w.coalesce_changes,
    rateLimit: w.rate_limit,
    disabledReason: w.disabled_reason,
    previousSecretExpiresAt: w.previous_secret && w.previous_secret_expires_at && w.previous_secret_expires_at > now ? ts(w.previous_secret_expires_at) : undefined,
    health: health(w, outcome, now),
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
    // Visible ASCII, spaces and tabs: what every HTTP stack sends as is (undici refuses the rest).
    if (h.value.length > 2000 || !/^[\t\x20-\x7e]*$/.test(h.value)) throw invalidArgument(`${field}[${i}].value`, "at most 2000 characters of visible ASCII (no line breaks or other control characters)");
    return { name, value: h.value };
  });
}

function validateMetadata(field: string, metadata: string): string {
  if (Buffer.byteLength(metadata) > METADATA_MAX_BYTES) throw invalidArgument(field, `at most ${METADATA_MAX_BYTES} bytes, got ${Buffer.byteLength(metadata)}`);
  return metadata;
}

function validateTopics(field: string, topics: string[]): string[] {
  if (topics.length > 50) throw invalidArgument(field, `at most 50 topics, got ${topics.length}`);
  return topics.map((t, i) => {
    const r = parseTopic(t);
    if ("error" in r) throw invalidArgument(`${field}[${i}]`, r.error);
    return r.sub;
  });
}

/** Field names of the subscribed entities' messages; `fields` may only name these. */
function validateFields(field: string, fields: string[], subs: string[]): string[] {
  const entities = [...new Set(subs.map((s) => s.split(":")[0] as EntityName))];
  const known = new Set(entities.flatMap((e) => ENTITY_DEFS[e].schema.fields.map((f) => f.name)));
  if (fields.length > 100) throw invalidArgument(field, `at most 100 fields, got ${fields.length}`);
  for (const f of fields) if (!known.has(f)) throw invalidArgument(field, `"${f.slice(0, 60)}" is not a field of ${entities.join(", ")}`);
  return [...new Set(fields)];
}

function validateRate(field: string, rate: number): number {
  if (!Number.isInteger(rate) || rate < 0 || rate > MAX_RATE_LIMIT) throw invalidArgument(field, `must be from 0 (no limit) to ${MAX_RATE_LIMIT} requests per second, got ${rate}`);
  return rate;
}

const oneOfFormats = (field: string, f: string) => {
  if (f === "") return "json" as const;
  if (!(FORMATS as readonly string[]).includes(f)) throw invalidArgument(field, `must be one of json, xml, thin, got "${f.slice(0, 40)}"`);
  return f as (typeof FORMATS)[number];
};

/** Every setting of a new webhook, validated. */
async function newSettings(req: CreateWebhookRequest, v: WebhookValidation): Promise<sql.WebhookSettings> {
  const entities = validateEntities("entities", req.entities);
  const topics = validateTopics("topics", req.topics);
  if (!entities.length && !topics.length) throw invalidArgument("entities", "at least one entity (or topic) is required");
  const subs = subscriptions(entities, topics);
  return {
    url: await validateUrl("url", req.url, v),
    entities,
    topics: req.topics.map((t) => t.trim()),
    subscriptions: subs,
    fields: validateFields("fields", req.fields, subs),
    metadata: validateMetadata("metadata", req.metadata),
    headers: validateHeaders("headers", req.headers),
    description: text("description", req.description, 500),
    format: oneOfFormats("format", req.format),
    coalesce_changes: req.coalesce,
    rate_limit: validateRate("rate_limit", req.rateLimit),
  };
}

const MASKABLE = ["url", "entities", "topics", "fields", "metadata", "headers", "description", "format", "coalesce", "rate_limit"];

/** The settings an UpdateWebhook changes, validated against the webhook's current ones. */
async function changedSettings(req: UpdateWebhookRequest, current: sql.WebhookRow, v: WebhookValidation): Promise<Partial<sql.WebhookSettings>> {
  const mask = req.updateMask?.paths ?? [];
  for (const p of mask) if (!MASKABLE.includes(p)) throw invalidArgument("update_mask", `unknown field "${p.slice(0, 40)}"; one of ${MASKABLE.join(", ")}`);
  const named = (name: string, present: boolean) => (mask.length ? mask.includes(name) : present);
  const set: Partial<sql.WebhookSettings> = {};
  if (named("url", req.url !== undefined)) set.url = await validateUrl("url", req.url ?? "", v);
  if (named("entities", req.entities.length > 0)) set.entities = validateEntities("entities", req.entities);
  if (named("topics", req.topics.length > 0)) set.topics = req.topics.map((t) => t.trim());
  const topicSubs = validateTopics("topics", set.topics ?? current.topics);
  const entities = set.entities ?? current.entities;
  if (set.entities || set.topics) {
    if (!entities.length && !topicSubs.length) throw invalidArgument("entities", "at least one entity (or topic) is required");
    set.subscriptions = subscriptions(entities, topicSubs);
  }
  if (named("fields", req.fields.length > 0) || set.subscriptions) set.fields = validateFields("fields", named("fields", req.fields.length > 0) ? req.fields : current.fields, set.subscriptions ?? current.subscriptions);
  if (named("metadata", req.metadata !== undefined)) set.metadata = validateMetadata("metadata", req.metadata ?? "");
  if (named("headers", req.headers.length > 0)) set.headers = validateHeaders("headers", req.headers);
  if (named("description", req.description !== undefined)) set.description = text("description", req.description ?? "", 500);
  if (named("format", req.format !== undefined)) set.format = oneOfFormats("format", req.format ?? "");
  if (named("coalesce", req.coalesce !== undefined)) set.coalesce_changes = req.coalesce ?? false;
  if (named("rate_limit", req.rateLimit !== undefined)) set.rate_limit = validateRate("rate_limit", req.rateLimit ?? 0);
  return set;
}

export function webhookService(ctx: AppContext, deps: WebhookApiDeps): ServiceImpl<typeof Webhook> {
  const get = async (shopId: string, id: string) => {
    const row = (await ctx.pool.query<sql.WebhookRow>(sql.getWebhook(shopId, id))).rows[0];
    if (!row) throw notFound(`webhook ${id}`);
    return row;
  };
  /** Webhook messages with health (one query for the attempts of all of them). */
  const messages = async (shopId: string, rows: sql.WebhookRow[]) => {
    const now = ctx.clock.now();
    const { rows: outcomes } = await ctx.pool.query<Outcome & { webhook_id: string }>(recentOutcomes(shopId, rows.map((r) => r.id), new Date(now.getTime() - HEALTH_WINDOW_MS)));
    const by = new Map(outcomes.map((o) => [o.webhook_id, o]));
    return rows.map((r) => webhookMessage(r, by.get(r.id), now));
  };
  const one = async (shopId: string, row: sql.WebhookRow) => (await messages(shopId, [row]))[0]!;
  const list = async (shopId: string) => messages(shopId, (await ctx.pool.query<sql.WebhookRow>(sql.listWebhooks(shopId))).rows);
  const changed = (shopId: string, id: string) => {
    ctx.webhooksChanged?.(shopId);
    deps.wake(id);
  };

  return {
    async createWebhook(req, hc) {
      const shopId = principal(hc).shopId;
      const settings = await newSettings(req, deps.validation);
      let after: [string, string] | undefined;
      if (req.after) {
        const c = ctx.cursors.decode(req.after, "after", "changes", shopId);
        // A cursor of a filtered GetChanges has passed other entities' changes without reading them.
        const covered = c.o ? c.o.split(",") : undefined;
        const missing = covered && [...new Set(settings.subscriptions.map((sub) => sub.split(":")[0]!))].filter((e) => !covered.includes(e));
        if (missing?.length) throw invalidArgument("after", `cursor is from GetChanges for [${c.o}] only, so it may have passed changes of ${missing.join(", ")}`);
        after = [c.k[0]!, c.k[1]!];
        const mark = (await ctx.pool.query<{ xid: string; seq: string }>(sql.changesPruneMark(shopId))).rows[0];
        if (mark && maxPosition(after, [mark.xid, mark.seq]) !== after) throw cursorExpired(ctx, "after");
      }
      const id = await ctx.ids.next();
      const secret = newSecret();
      const row = await inTx(ctx.pool, async (tx) => {
        await tx.query(sql.lockShopWebhooks(shopId));
        const { rows } = await tx.query<{ n: number }>(sql.countWebhooks(shopId));
        if (rows[0]!.n >= ctx.config.maxWebhooksPerShop) throw failedPrecondition(`a shop may have at most ${ctx.config.maxWebhooksPerShop} webhooks; delete one first`);
        return (await tx.query<sql.WebhookRow>(sql.insertWebhook(shopId, { ...settings, id, secret, now: new Date(), after }))).rows[0]!;
      });
      changed(shopId, id);
      return webhookMessage(row, undefined, ctx.clock.now(), secret);
    },

    async getWebhooks(_req, hc) {
      return { webhooks: await list(principal(hc).shopId) };
    },

    async getWebhook(req, hc) {
      const shopId = principal(hc).shopId;
      return one(shopId, await get(shopId, requireId("id", req.id)));
    },

    async deleteWebhook(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const { rowCount } = await ctx.pool.query(sql.deleteWebhook(shopId, id));
      if (!rowCount) throw notFound(`webhook ${id}`);
      ctx.webhooksChanged?.(shopId);
      return { webhooks: await list(shopId) };
    },

    async updateWebhook(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const current = await get(shopId, id);
      const set = await changedSettings(req, current, deps.validation);
      if (!Object.keys(set).length) return one(shopId, current);
      // New settings apply from the webhook's position: first move it past what the old ones
      // left out (up to the first change it gets), so the change applies from now, not from
      // wherever an idle webhook last stood.
      await ctx.pool.query(sql.advanceIdle([id]));
      const row = (await ctx.pool.query<sql.WebhookRow>(sql.updateSettings(shopId, id, set, new Date()))).rows[0];
      if (!row) throw notFound(`webhook ${id}`);
      changed(shopId, id);
      return one(shopId, row);
    },

    async setActive(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      if (req.active && (await ctx.pool.query<{ behind: boolean }>(sql.behindPrunedChanges(shopId, id))).rows[0]?.behind) {
        throw failedPrecondition(`id: changes webhook ${id} had not delivered were pruned; RecoverWebhook with a since within the retention resumes it from there`);
      }
      const row = (await ctx.pool.query<sql.WebhookRow>(sql.setActive(shopId, id, req.active, new Date()))).rows[0];
      if (!row) throw notFound(`webhook ${id}`);
      changed(shopId, id);
      return one(shopId, row);
    },

    async rotateSecret(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      if (!Number.isInteger(req.graceSeconds) || req.graceSeconds < 0 || req.graceSeconds > MAX_GRACE_SECONDS) {
        throw invalidArgument("grace_seconds", `must be from 0 to ${MAX_GRACE_SECONDS} (7 days), got ${req.graceSeconds}`);
      }
      const secret = newSecret();
      const expires = req.graceSeconds ? new Date(ctx.clock.now().getTime() + req.graceSeconds * 1000) : null;
      const row = (await ctx.pool.query<sql.WebhookRow>(sql.rotateSecret(shopId, id, secret, expires, new Date()))).rows[0];
      if (!row) throw notFound(`webhook ${id}`);
      return { secret, previousSecretExpiresAt: ts(expires) };
    },

    async recoverWebhook(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      if (!req.since) throw invalidArgument("since", "required");
      const since = timestampDate(req.since);
      const now = ctx.clock.now();
      if (since > now) throw invalidArgument("since", "must not be in the future");
      const oldest = new Date(now.getTime() - ctx.config.changeRetentionHours * 3_600_000);
      if (since < oldest) throw failedPrecondition(`since: older than the ${ctx.config.changeRetentionHours}h change retention; the earliest time to recover from is ${oldest.toISOString()}`);
      await get(shopId, id);
      // Under the webhook's lease (api/exclusive.ts), so the position never moves under a sender
      // and two recoveries of one webhook run one after the other.
      return exclusive(ctx, shopId, id, "RecoverWebhook", deps.wake, async (owner) => {
        // From just before the first change since `since` that the webhook gets, but never
        // forward past undelivered changes (a backlog older than `since` still goes out), nor
        // back behind pruned ones.
        const current = await get(shopId, id);
        const first = (await ctx.pool.query<{ xid: string; id: string }>(sql.firstChangeSince(shopId, id, since))).rows[0];
        const mark = (await ctx.pool.query<{ xid: string; seq: string }>(sql.changesPruneMark(shopId))).rows[0];
        let cursor = [current.cursor_xid, current.cursor_seq];
        if (first) {
          const from = [first.xid, (BigInt(first.id) - 1n).toString()];
          if (maxPosition(cursor, from) === cursor) cursor = from;
        }
        if (mark) cursor = maxPosition(cursor, [mark.xid, mark.seq]);
        const row = (await ctx.pool.query<sql.WebhookRow>(sql.recover(shopId, id, owner, [cursor[0]!, cursor[1]!], new Date()))).rows[0];
        if (!row) throw notFound(`webhook ${id}`);
        ctx.webhooksChanged?.(shopId);
        return one(shopId, row);
      });
    },

    getChanges: getChanges(ctx),
    ...webhookDeliveries(ctx, deps, get),
  };
}
