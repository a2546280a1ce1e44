/**
 * shop.Webhook, delivery side: TestWebhook, the delivery history (ListDeliveries, GetDelivery,
 * RetryDelivery, ClearDeliveryHistory) and GetStats.
 */
import { create, type JsonObject, toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { type Delivery, DeliverySchema, type Webhook } from "../../gen/shop/webhook_pb.ts";
import type { AppContext } from "../context.ts";
import * as dsql from "../db/sql/deliveries.ts";
import * as sql from "../db/sql/webhooks.ts";
import { render, views, type ChangeView } from "../delivery/batch.ts";
import { sendAttempt } from "../delivery/attempt.ts";
import { parseTopic } from "../delivery/topics.ts";
import { entities as ENTITY_DEFS } from "../entities/index.ts";
import type { EntityName } from "../entities/model.ts";
import { API_JSON } from "../store/write.ts";
import { principal } from "./auth.ts";
import { ts } from "./convert.ts";
import { failedPrecondition, invalidArgument, notFound } from "./errors.ts";
import { pageLimit } from "./paging.ts";
import { optionalId, requireId } from "./validate.ts";
import { exclusive } from "./exclusive.ts";
import type { WebhookApiDeps } from "./webhooks.ts";

const STATUSES = ["success", "failed"];
const MAX_STATS_DAYS = 366;

export function deliveryMessage(d: dsql.DeliveryRow): Delivery {
  return create(DeliverySchema, {
    id: d.id,
    webhookId: d.webhook_id,
    callbackId: d.callback_id,
    events: d.events,
    changeCount: d.change_count,
    requestHeaders: d.request_headers,
    bodySize: d.body_size,
    status: d.status,
    responseStatus: d.response_status,
    responseHeaders: d.response_headers,
    responseBody: d.response_body,
    error: d.error,
    durationMs: d.duration_ms,
    attempt: d.attempt,
    test: d.test,
    url: d.url,
    createdAt: ts(d.created_at),
  });
}

type GetWebhook = (shopId: string, id: string) => Promise<sql.WebhookRow>;

type DeliveryRpcs = Pick<ServiceImpl<typeof Webhook>, "testWebhook" | "listDeliveries" | "getDelivery" | "retryDelivery" | "clearDeliveryHistory" | "getStats">;

export function webhookDeliveries(ctx: AppContext, deps: WebhookApiDeps, getWebhook: GetWebhook): DeliveryRpcs {
  /** Signs and sends a rendered batch to the webhook outside the stream, and records the attempt. */
  const sendOnce = async (w: sql.WebhookRow, callbackId: string, changes: ChangeView[], extra: { test: boolean; attempt: number; range?: [string, string, string, string] }) => {
    const { body, contentType, events } = render(callbackId, changes, { format: w.format, fields: w.fields, coalesce: false, shopId: w.shop_id });
    return sendAttempt({ ...deps, clock: ctx.clock }, w, {
      callbackId,
      body,
      contentType,
      events,
      entities: [...new Set(changes.map((c) => c.entity))],
      changeCount: changes.length,
      attempt: extra.attempt,
      test: extra.test,
      range: extra.range,
    });
  };

  const getDelivery = async (shopId: string, id: string) => {
    const d = (await ctx.pool.query<dsql.DeliveryRow>(dsql.getDelivery(shopId, id))).rows[0];
    if (!d) throw notFound(`delivery ${id}`);
    return d;
  };

  return {
    async testWebhook(req, hc) {
      const shopId = principal(hc).shopId;
      const w = await getWebhook(shopId, requireId("id", req.id));
      const topic = parseTopic(req.event || "");
      if ("error" in topic) throw invalidArgument("event", topic.error);
      const [entity, action] = topic.sub.split(":") as [EntityName, string];
      if (action === "*") throw invalidArgument("event", "name one action: created, updated or deleted");
      const def = ENTITY_DEFS[entity];
      // The payload given, or a sample: an empty entity of that kind.
      const latest: JsonObject = req.payload ?? (toJson(def.schema, create(def.schema), API_JSON) as JsonObject);
      if (entity === "product") delete latest.variants;
      const entityId = typeof latest.id === "string" ? latest.id : typeof latest.variant_id === "string" ? latest.variant_id : "0";
      const now = ctx.clock.now();
      const change: ChangeView = {
        id: "0",
        time: now,
        change_type: action,
        entity,
        entity_id: entityId,
        latest: JSON.stringify(latest),
        changed: action === "update" ? JSON.stringify({ [entity]: latest }) : null,
      };
      // Under the webhook's lease: never beside a delivery request (api/exclusive.ts).
      const callbackId = await ctx.ids.next();
      const { result, row } = await exclusive(ctx, shopId, w.id, "TestWebhook", deps.wake, () => sendOnce(w, callbackId, [change], { test: true, attempt: 1 }));
      return { ok: result.ok, status: result.status, responseBody: result.body, durationMs: result.durationMs, error: result.error, deliveryId: row.id };
    },

    async listDeliveries(req, hc) {
      const shopId = principal(hc).shopId;
      const f = req.filter;
      const limit = pageLimit(req.paging?.limit ?? 0);
      const webhookId = optionalId("filter.webhook_id", f?.webhookId ?? "");
      if (f?.status && !STATUSES.includes(f.status)) throw invalidArgument("filter.status", `must be "success" or "failed", got "${f.status.slice(0, 40)}"`);
      let event: string | undefined;
      if (f?.event) {
        if (f.event.includes(".") || f.event.includes("/")) {
          const t = parseTopic(f.event);
          if ("error" in t || t.sub.endsWith(":*")) throw invalidArgument("filter.event", "error" in t ? t.error : "name one action");
          const [e, a] = t.sub.split(":");
          event = `${e}.${a}d`;
        } else {
          if (!(f.event in ENTITY_DEFS)) throw invalidArgument("filter.event", `unknown entity "${f.event.slice(0, 40)}"`);
          event = f.event;
        }
      }
      let before: string | undefined;
      if (req.paging?.after) before = ctx.cursors.decode(req.paging.after, "paging.after", "deliveries", shopId).k[0];
      const from = f?.from ? timestampDate(f.from) : undefined;
      const to = f?.to ? timestampDate(f.to) : undefined;
      if (from && to && from >= to) throw invalidArgument("filter.to", "must be after filter.from");
      const { rows } = await ctx.pool.query<dsql.DeliveryRow>(
        dsql.listDeliveries(shopId, { webhookId: webhookId === "0" ? undefined : webhookId, status: f?.status || undefined, event, from, to }, before, limit),
      );
      const last = rows.at(-1);
      const next = last ? last.id : (before ?? "9223372036854775807");
      return { deliveries: rows.map(deliveryMessage), paging: { next: ctx.cursors.encode("deliveries", shopId, "", [next]) } };
    },

    async getDelivery(req, hc) {
      return deliveryMessage(await getDelivery(principal(hc).shopId, requireId("id", req.id)));
    },

    async retryDelivery(req, hc) {
      const shopId = principal(hc).shopId;
      const d = await getDelivery(shopId, requireId("id", req.id));
      if (d.test) throw failedPrecondition(`delivery ${d.id} was a test; send another with TestWebhook`);
      const w = await getWebhook(shopId, d.webhook_id).catch(() => {
        throw failedPrecondition(`webhook ${d.webhook_id} of delivery ${d.id} no longer exists`);
      });
      // The pending batch: retry it in the stream now, keeping order.
      if (w.batch_id === d.callback_id) {
        if (!w.active || w.state === "stop") {
          throw failedPrecondition(`webhook ${w.id} is ${w.active ? "stopped" : "paused"}: SetActive with active true resumes it, this batch first`);
        }
        await ctx.pool.query(sql.retryNow(shopId, w.id, ctx.clock.now()));
        deps.wake(w.id);
        return { queued: true };
      }
      // An earlier batch: send it again as it was, from the change log.
      if (d.from_xid === null || d.end_xid === null) throw failedPrecondition(`delivery ${d.id} has no recorded range to resend`);
      const { rows } = await ctx.pool.query<sql.BatchChangeRow>(
        sql.nextChanges([{ webhookId: w.id, shopId, fromXid: d.from_xid, fromSeq: d.from_seq!, endXid: d.end_xid, endSeq: d.end_seq!, limit: ctx.config.batchMaxChanges, maxBytes: null }]),
      );
      if (rows[0]?.pruned) throw failedPrecondition(`delivery ${d.id}: some of its changes were pruned by the retention (${ctx.config.changeRetentionHours}h); it cannot be sent again as it was`);
      const changes = views(rows.filter((r) => r.id !== null), { fields: w.fields, coalesce: w.coalesce_changes });
      if (!changes.length) throw failedPrecondition(`delivery ${d.id}: none of its changes match the webhook now`);
      const range: [string, string, string, string] = [d.from_xid, d.from_seq!, d.end_xid, d.end_seq!];
      const { row } = await exclusive(ctx, shopId, w.id, "RetryDelivery", deps.wake, () => sendOnce(w, d.callback_id, changes, { test: false, attempt: d.attempt + 1, range }));
      return { queued: false, delivery: deliveryMessage(row) };
    },

    async clearDeliveryHistory(req, hc) {
      const shopId = principal(hc).shopId;
      const webhookId = requireId("webhook_id", req.webhookId);
      if (req.status && !STATUSES.includes(req.status)) throw invalidArgument("status", `must be "success" or "failed", got "${req.status.slice(0, 40)}"`);
      // A deleted webhook's history is kept (until its retention) and may be cleared too.
      const { rowCount } = await ctx.pool.query(dsql.clearDeliveries(shopId, webhookId, req.before ? timestampDate(req.before) : null, req.status || null));
      if (!rowCount) await getWebhook(shopId, webhookId); // not_found when there is neither webhook nor history
      return { deletedCount: rowCount ?? 0 };
    },

    async getStats(req, hc) {
      const shopId = principal(hc).shopId;
      const w = await getWebhook(shopId, requireId("id", req.id));
      const to = req.to ? timestampDate(req.to) : ctx.clock.now();
      const from = req.from ? timestampDate(req.from) : new Date(to.getTime() - 7 * 86_400_000);
      if (from >= to) throw invalidArgument("from", "must be before to");
      if (to.getTime() - from.getTime() > MAX_STATS_DAYS * 86_400_000) throw invalidArgument("from", `the period may span at most ${MAX_STATS_DAYS} days`);
      const [{ rows: totals }, { rows: days }] = await Promise.all([
        ctx.pool.query<{ total: number; success: number; p50: number; p95: number }>(dsql.stats(shopId, w.id, from, to)),
        ctx.pool.query<{ day: string; total: number; success: number }>(dsql.statsByDay(shopId, w.id, from, to)),
      ]);
      const t = totals[0]!;
      return {
        total: t.total,
        success: t.success,
        failed: t.total - t.success,
        successRate: t.total ? t.success / t.total : 1,
        p50DurationMs: t.p50,
        p95DurationMs: t.p95,
        byDay: days.map((d) => ({ day: d.day, total: d.total, success: d.success, failed: d.total - d.success })),
      };
    },
  };
}
