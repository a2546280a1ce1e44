/**
 * Delivery request bodies. The change log's stored JSON goes out without being re-encoded in the
 * default format, eTop's Callback: {"id": "<callback id>", "changes": [{id, time, change_type,
 * entity, entity_id, latest: {<entity>: {...}}, changed: {<entity>: {...}}}]}, the same change
 * shape GetChanges returns. A webhook may also ask for XML (same content), or thin notifications
 * (Tray: what changed, not the data), for `fields` projection, and for coalescing.
 */
import type { BatchChangeRow } from "../db/sql/webhooks.ts";
import { eventName } from "./topics.ts";

export type Format = "json" | "xml" | "thin";

/** A change as it will be sent (after field projection and coalescing). */
export interface ChangeView {
  id: string;
  time: Date;
  change_type: string;
  entity: string;
  entity_id: string;
  /** The entity's JSON text. */
  latest: string;
  /** `{"<entity>": {...}}` JSON text, or null. */
  changed: string | null;
  /** The change as the JSON body carries it, once computed (by `fitting`), while nothing reshaped it. */
  json?: string;
}

export interface RenderOptions {
  format: Format;
  /** Non-empty: `changed` carries only these fields. */
  fields: string[];
  /** Several changes of one entity collapse into the newest. */
  coalesce: boolean;
  shopId: string;
}

/** RFC 3339 as protobuf JSON writes timestamps: no fraction at whole seconds, else milliseconds. */
export function rfc3339(d: Date): string {
  const iso = d.toISOString();
  return d.getUTCMilliseconds() === 0 ? iso.slice(0, 19) + "Z" : iso;
}

export function changeJson(c: ChangeView): string {
  const changed = c.changed === null ? "" : `,"changed":${c.changed}`;
  return `{"id":"${c.id}","time":"${rfc3339(c.time)}","change_type":"${c.change_type}","entity":"${c.entity}","entity_id":"${c.entity_id}","latest":{"${c.entity}":${c.latest}}${changed}}`;
}

/** Bytes one change takes in a body of `format` (an upper bound: projection only shrinks it). */
function changeBytes(r: ChangeView, format: Format, shopId: string): number {
  switch (format) {
    case "json":
      // Kept for `render`: a batch of a thousand changes is a megabyte of text, built once.
      return Buffer.byteLength((r.json ??= changeJson(r)));
    case "thin":
      return Buffer.byteLength(JSON.stringify(thinNote(r, shopId)));
    case "xml":
      return Buffer.byteLength(xmlChange(r));
  }
}

/** How many of `rows` (at least one) fit in `maxBytes` as a body of `format`. */
export function fitting(callbackId: string, rows: BatchChangeRow[], maxBytes: number, format: Format = "json", shopId = ""): number {
  let size = 200 + callbackId.length; // the envelope, in any format
  let n = 0;
  for (const r of rows) {
    const bytes = changeBytes(r as ChangeView, format, shopId) + (n ? 1 : 0);
    if (n && size + bytes > maxBytes) break;
    size += bytes;
    n++;
  }
  return n;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function pick(changed: string, entity: string, fields: string[]): string {
  const all = (JSON.parse(changed) as Record<string, Record<string, Json>>)[entity] ?? {};
  return JSON.stringify({ [entity]: Object.fromEntries(Object.entries(all).filter(([k]) => fields.includes(k))) });
}

/** Collapses the changes of each entity into its newest; a create followed by updates stays a create. */
function coalesced(views: ChangeView[]): ChangeView[] {
  const byKey = new Map<string, ChangeView>();
  for (const v of views) {
    const key = `${v.entity}:${v.entity_id}`;
    const prev = byKey.get(key);
    byKey.delete(key); // re-inserted last: the output follows each entity's newest change
    if (!prev) {
      byKey.set(key, v);
      continue;
    }
    const type = prev.change_type === "create" && v.change_type === "update" ? "create" : v.change_type;
    let changed: string | null = null;
    if (type === "update") {
      const latest = JSON.parse(v.latest) as Record<string, Json>;
      const keys = new Set([prev, v].flatMap((x) => Object.keys(x.changed ? ((JSON.parse(x.changed) as Record<string, object>)[v.entity] ?? {}) : {})));
      changed = JSON.stringify({ [v.entity]: Object.fromEntries([...keys].map((k) => [k, latest[k] ?? null])) });
    }
    byKey.set(key, { ...v, change_type: type, changed, json: undefined });
  }
  return [...byKey.values()];
}

export function views(rows: BatchChangeRow[], opts: Pick<RenderOptions, "fields" | "coalesce">): ChangeView[] {
  let out: ChangeView[] = rows.map((r) => ({ id: r.id!, time: r.time, change_type: r.change_type, entity: r.entity, entity_id: r.entity_id, latest: r.latest, changed: r.changed, json: (r as ChangeView).json }));
  if (opts.fields.length) out = out.map((v) => (v.changed && v.change_type === "update" ? { ...v, changed: pick(v.changed, v.entity, opts.fields), json: undefined } : v));
  if (opts.coalesce) out = coalesced(out);
  return out;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;" })[c]!);
}

function xml(name: string, v: Json): string {
  if (v === null) return `<${name}/>`;
  if (Array.isArray(v)) return `<${name}>${v.map((x) => xml("item", x)).join("")}</${name}>`;
  if (typeof v === "object") return `<${name}>${Object.entries(v).map(([k, x]) => xml(k, x)).join("")}</${name}>`;
  return `<${name}>${escapeXml(String(v))}</${name}>`;
}

const ACT: Record<string, string> = { create: "insert", update: "update", delete: "delete" };

const thinNote = (c: ChangeView, shopId: string) => ({ scope_name: c.entity, scope_id: c.entity_id, shop_id: shopId, act: ACT[c.change_type], change_id: c.id, time: rfc3339(c.time) });

const xmlChange = (c: ChangeView) =>
  xml("change", {
    id: c.id,
    time: rfc3339(c.time),
    change_type: c.change_type,
    entity: c.entity,
    entity_id: c.entity_id,
    latest: { [c.entity]: JSON.parse(c.latest) as Json },
    changed: c.changed ? (JSON.parse(c.changed) as Json) : null,
  });

/** The request body and content type of a batch, in the webhook's format. */
export function render(callbackId: string, changes: ChangeView[], opts: RenderOptions): { body: string; contentType: string; events: string[] } {
  const events = [...new Set(changes.map((c) => eventName(c.entity, c.change_type)))];
  switch (opts.format) {
    case "json":
      return { body: `{"id":"${callbackId}","changes":[${changes.map((c) => c.json ?? changeJson(c)).join(",")}]}`, contentType: "application/json", events };
    case "thin":
      return { body: JSON.stringify({ id: callbackId, notifications: changes.map((c) => thinNote(c, opts.shopId)) }), contentType: "application/json", events };
    case "xml":
      return { body: `<?xml version="1.0" encoding="UTF-8"?><callback><id>${callbackId}</id><changes>${changes.map(xmlChange).join("")}</changes></callback>`, contentType: "application/xml", events };
  }
}
