/**
 * The soak's checks, each returning what went wrong as sentences that name the webhook, shop or
 * day and say why (an empty list is a pass).
 */
import type { Pool } from "../../src/db/pool.ts";
import { entities } from "../../src/entities/index.ts";
import type { EntityName } from "../../src/entities/model.ts";
import { entityJson } from "../../src/store/write.ts";
import type { Change, ChangesPoller, ListPoller } from "./pollers.ts";
import { digest, type HookRecord, stable } from "./receivers.ts";
import { type Settings, subscriptionsOf } from "./scenario.ts";
import { KINDS, type Kind } from "./shop-model.ts";

/** The database's rows of a shop, as the API shows them (entityJson: what `latest` holds). */
export type DbRows = Map<Kind, Map<string, any>>;

export async function dbRows(pool: Pool, shopId: string): Promise<DbRows> {
  const out: DbRows = new Map();
  for (const kind of KINDS) {
    const def = entities[kind as EntityName];
    const { rows } = await pool.query(`SELECT * FROM ${def.table} WHERE shop_id = $1`, [shopId]);
    out.set(kind, new Map(rows.map((r) => [String(r[def.key]), entityJson(def, r)])));
  }
  return out;
}

/** Top-level fields whose values differ (for messages). */
function diff(a: any, b: any): string {
  if (!a || !b) return a ? "missing in the database" : "missing in the copy";
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => stable(a[k]) !== stable(b[k]));
  return keys.map((k) => `${k}: ${JSON.stringify(a[k])?.slice(0, 60)} vs ${JSON.stringify(b[k])?.slice(0, 60)}`).join("; ");
}

/**
 * A copy (entity key -> JSON) equals the database: every row present and equal; a copy's entity
 * the database no longer has must be a deleted one (its tombstone was pruned).
 */
function compareCopy(what: string, kind: Kind, copy: Map<string, any>, db: Map<string, any>, out: string[]) {
  let bad = 0;
  for (const [key, row] of db) {
    const mine = copy.get(key);
    if (!mine || stable(mine) !== stable(row)) {
      if (bad++ < 3) out.push(`${what}: ${kind} ${key} differs from the database (${diff(mine, row)})`);
    }
  }
  for (const [key, mine] of copy) {
    if (!db.has(key) && mine?.deleted !== true) {
      if (bad++ < 3) out.push(`${what}: ${kind} ${key} is live in the copy but absent from the database`);
    }
  }
  if (bad > 3) out.push(`${what}: ${bad} ${kind} rows differ in all`);
}

export function checkPollers(label: string, changes: ChangesPoller, lists: ListPoller, db: DbRows, out: string[]) {
  for (const p of changes.problems) out.push(`${label} GetChanges poller: ${p}`);
  for (const [kind, why] of lists.broken) out.push(`${label} List* poller of ${kind}: ${why}`);
  for (const kind of KINDS) {
    const copy = new Map<string, any>();
    for (const [key, latest] of changes.copy) if (key.startsWith(`${kind}:`)) copy.set(key.slice(kind.length + 1), latest);
    compareCopy(`${label} GetChanges poller's copy`, kind, copy, db.get(kind)!, out);
    if (!lists.broken.has(kind)) compareCopy(`${label} List* poller's copy`, kind, lists.copies.get(kind)!, db.get(kind)!, out);
  }
}

/** Every change the database still holds for the shop was served by GetChanges, with the same content. */
export async function checkLogAgainstDb(pool: Pool, label: string, shopId: string, poller: ChangesPoller, out: string[]) {
  const { rows } = await pool.query<{ id: string; entity: string; latest: string; changed: string | null }>(
    "SELECT id::text, entity, latest::text, changed::text FROM changes WHERE shop_id = $1",
    [shopId],
  );
  let missing = 0;
  let differ = 0;
  for (const r of rows) {
    const k = poller.index.get(r.id);
    if (k === undefined) {
      if (missing++ < 3) out.push(`${label}: change ${r.id} (${r.entity}) is in the database but GetChanges never served it`);
      continue;
    }
    const c = poller.log[k]!;
    if (stable(c.latest[c.entity]) !== stable(JSON.parse(r.latest)) || stable(c.changed) !== stable(r.changed === null ? null : JSON.parse(r.changed))) {
      if (differ++ < 3) out.push(`${label}: change ${r.id} served by GetChanges differs from the database`);
    }
  }
  if (missing > 3) out.push(`${label}: ${missing} changes never served by GetChanges`);
}

export function matches(x: Settings, c: Change): boolean {
  const subs = subscriptionsOf(x);
  if (!subs.has(`${c.entity}:*`) && !subs.has(`${c.entity}:${c.change_type}`)) return false;
  if (c.change_type !== "update" || !x.fields.length) return true;
  return Object.keys(c.changed?.[c.entity] ?? {}).some((k) => x.fields.includes(k));
}

const ACT: Record<string, string> = { create: "insert", update: "update", delete: "delete" };

/** The change as a webhook with settings `x` sends it (docs/webhook-operations.md: fields, thin). */
export function view(x: Settings, c: Change, shopId: string): unknown {
  if (x.format === "thin") return { scope_name: c.entity, scope_id: c.entity_id, shop_id: shopId, act: ACT[c.change_type], change_id: c.id, time: c.time };
  if (c.change_type !== "update" || !x.fields.length || !c.changed) return c;
  const all = c.changed[c.entity] ?? {};
  return { ...c, changed: { [c.entity]: Object.fromEntries(Object.entries(all).filter(([k]) => x.fields.includes(k))) } };
}

export interface Epoch {
  /** Index in the shop's log of the first change committed under these settings. */
  from: number;
  settings: Settings;
}

export interface HookUnderTest {
  name: string;
  id: string;
  shopLabel: string;
  shopId: string;
  rec: HookRecord;
  epochs: Epoch[];
  /** RecoverWebhook after changes were pruned: changes before `boundary` and older than `since` may be missing. */
  holes: Array<{ boundary: number; since: number }>;
  state: string;
}

/**
 * What a webhook received, against the shop's log (every change, from GetChanges):
 *   - only changes of its shop, committed after it started, that the settings in force at some
 *     time from their commit on select ("allowed"), with exactly the content GetChanges has (as
 *     projected by `fields`, or as thin notifications);
 *   - every change that every setting in force from its commit on selects ("required"), except
 *     inside a hole left by a prune (see `holes`);
 *   - first arrivals in log order.
 */
export function checkDeliveries(h: HookUnderTest, log: ChangesPoller, out: string[]) {
  const start = h.epochs[0]!.from;
  const epochAt = (k: number) => {
    let e = 0;
    while (e + 1 < h.epochs.length && h.epochs[e + 1]!.from <= k) e++;
    return e;
  };
  const what = `webhook ${h.name} (${h.id}, ${h.shopLabel}, ${describe(h.epochs.at(-1)!.settings)}${h.epochs.length > 1 ? `, ${h.epochs.length - 1} UpdateWebhook` : ""})`;
  let last = -1;
  let unordered = 0;
  let bad = 0;
  for (const id of h.rec.first) {
    const k = log.index.get(id);
    if (k === undefined) {
      if (bad++ < 3) out.push(`${what} received change ${id}, which is not in its shop's change log`);
      continue;
    }
    const c = log.log[k]!;
    if (k < start) {
      if (bad++ < 3) out.push(`${what} received change ${id} (${c.entity}.${c.change_type}) committed before it was created`);
      continue;
    }
    const allowed = h.epochs.slice(epochAt(k)).map((e) => e.settings).filter((x) => matches(x, c));
    if (!allowed.length) {
      if (bad++ < 3) out.push(`${what} received change ${id} (${c.entity}.${c.change_type}${c.changed ? ` of ${Object.keys(c.changed[c.entity] ?? {}).join(",")}` : ""}) that none of its subscriptions selects`);
    } else if (!allowed.some((x) => digest(view(x, c, h.shopId)) === h.rec.seen.get(id))) {
      if (bad++ < 3) out.push(`${what} received change ${id} (${c.entity}.${c.change_type}) with other content than GetChanges serves`);
    }
    if (k <= last && unordered++ < 3) out.push(`${what}: change ${id} arrived after change ${log.log[last]!.id}, which follows it in the log`);
    last = Math.max(last, k);
  }
  if (bad > 3) out.push(`${what}: ${bad} wrongly delivered changes in all`);
  const missing: Change[] = [];
  for (let k = start; k < log.log.length; k++) {
    const c = log.log[k]!;
    if (h.rec.seen.has(c.id)) continue;
    if (!h.epochs.slice(epochAt(k)).every((e) => matches(e.settings, c))) continue;
    if (h.holes.some((x) => k < x.boundary && Date.parse(c.time) < x.since)) continue;
    missing.push(c);
  }
  if (missing.length) {
    const eg = missing.slice(0, 3).map((c) => `${c.id} ${c.entity}.${c.change_type} at ${c.time}`);
    out.push(`${what} never received ${missing.length} changes it subscribes to (state ${h.state}; e.g. ${eg.join(", ")})`);
  }
}

export function describe(x: Settings): string {
  return [x.entities.length ? `entities ${x.entities.join(",")}` : "", x.topics.length ? `topics ${x.topics.join(",")}` : "", x.fields.length ? `fields ${x.fields.join(",")}` : "", x.format === "json" ? "" : x.format]
    .filter(Boolean)
    .join("; ");
}

/**
 * A receiver's copy (the newest `latest` per entity, rule 2) equals the database, for the
 * entities the webhook receives whole (`entities`, JSON). With `fields`, the listed fields (and
 * `deleted`) must equal: updates of other fields are not sent. Only rows with a change since the
 * webhook started are expected (older ones were never sent).
 */
export function checkReceiverCopy(h: HookUnderTest, log: ChangesPoller, db: DbRows, out: string[]) {
  const x = h.epochs[0]!.settings;
  if (x.format !== "json" || h.epochs.length > 1 || h.holes.length) return;
  const start = h.epochs[0]!.from;
  const lastChange = new Map<string, number>();
  for (let k = start; k < log.log.length; k++) lastChange.set(`${log.log[k]!.entity}:${log.log[k]!.entity_id}`, k);
  const pick = (o: any) => (x.fields.length && o ? Object.fromEntries([...x.fields, "deleted"].map((f) => [f, o[f]])) : o);
  let bad = 0;
  for (const kind of x.entities) {
    for (const [key, row] of db.get(kind)!) {
      if (!lastChange.has(`${kind}:${key}`)) continue;
      const mine = h.rec.copy.get(`${kind}:${key}`)?.latest;
      if (stable(pick(mine)) !== stable(pick(row)) && bad++ < 3) out.push(`webhook ${h.name} (${h.id}, ${h.shopLabel}): receiver's ${kind} ${key} differs from the database (${diff(pick(mine), pick(row))})`);
    }
    for (const [k, v] of h.rec.copy) {
      if (!k.startsWith(`${kind}:`) || db.get(kind)!.has(k.slice(kind.length + 1))) continue;
      if (v.latest?.deleted !== true && bad++ < 3) out.push(`webhook ${h.name} (${h.id}): receiver has live ${k}, absent from the database`);
    }
  }
  if (bad > 3) out.push(`webhook ${h.name} (${h.id}): ${bad} rows of the receiver's copy differ in all`);
}
