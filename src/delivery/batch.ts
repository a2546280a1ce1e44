/**
 * A delivery request body in eTop's Callback shape, built from the change log's stored JSON
 * without re-encoding it: {"id": "<callback id>", "changes": [{id, time, change_type, entity,
 * entity_id, latest: {<entity>: {...}}, changed: {<entity>: {...}}}]}, the same change shape
 * GetChanges returns.
 */
import type { BatchChangeRow } from "../db/sql/webhooks.ts";

/** RFC 3339 as protobuf JSON writes timestamps: no fraction at whole seconds, else milliseconds. */
export function rfc3339(d: Date): string {
  const iso = d.toISOString();
  return d.getUTCMilliseconds() === 0 ? iso.slice(0, 19) + "Z" : iso;
}

export function changeJson(c: BatchChangeRow): string {
  const changed = c.changed === null ? "" : `,"changed":${c.changed}`;
  return `{"id":"${c.id}","time":"${rfc3339(c.time)}","change_type":"${c.change_type}","entity":"${c.entity}","entity_id":"${c.entity_id}","latest":{"${c.entity}":${c.latest}}${changed}}`;
}

export interface Body {
  body: string;
  /** How many of `rows` it holds (the first ones). */
  count: number;
}

/** The body for as many of `rows` as fit in `maxBytes` (at least one: a larger change goes alone). */
export function buildBody(callbackId: string, rows: BatchChangeRow[], maxBytes: number): Body {
  const head = `{"id":"${callbackId}","changes":[`;
  let size = Buffer.byteLength(head) + 2;
  const parts: string[] = [];
  for (const r of rows) {
    const json = changeJson(r);
    const bytes = Buffer.byteLength(json) + (parts.length ? 1 : 0);
    if (parts.length && size + bytes > maxBytes) break;
    parts.push(json);
    size += bytes;
  }
  return { body: `${head}${parts.join(",")}]}`, count: parts.length };
}
