/**
 * Cursor paging for List* and GetChanges.
 *
 * A cursor is an opaque, signed token: base64url(JSON) + "." + HMAC. It names its list, its
 * shop and its sort, so a cursor from another list, shop or sort, or a tampered one, is
 * invalid_argument. In the sync orders, a cursor behind rows the retention prune deleted (the
 * shop's feed_pruned mark, read in the page's own statement) is refused with failed_precondition
 * and a stable message telling the client to resync: never a silent gap.
 */
import { create } from "@bufbuild/protobuf";
import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from "node:crypto";
import { type PageInfo, PageInfoSchema, type Paging } from "../../gen/shop/common_pb.ts";
import type { HandlerContext } from "@connectrpc/connect";
import type { AppContext } from "../context.ts";
import type { Pool } from "../db/pool.ts";
import { maxPosition } from "../db/position.ts";
import { type Filter, listRows, type Sort } from "../db/sql/lists.ts";
import type { BaseRow, EntityDef } from "../entities/model.ts";
import { failedPrecondition, invalidArgument } from "./errors.ts";

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;
/** The stable start of the message for an expired cursor; clients may match on it. */
export const CURSOR_EXPIRED = "cursor expired";

interface CursorBody {
  v: 1;
  /** List name ("products", "changes"...). */
  l: string;
  /** Shop id. */
  s: string;
  /** Sort. */
  o: string;
  /** Position key: [id] or [xid, seq]. */
  k: string[];
  /** Issued at, ms since epoch. */
  t: number;
  /**
   * List* in updated_at order: where the sync began, the horizon (xid) of its first page.
   * Tombstones pruned below it were deletes from before the sync began, of rows it never saw,
   * so skipping them loses nothing (docs/change-feed.md). Absent (GetChanges, cursors issued
   * before it existed): every prune behind the cursor counts.
   */
  b?: string;
}

export class Cursors {
  /** A KeyObject, made once: a raw key given to createHmac is turned into one on every call. */
  private readonly secret: KeyObject;
  constructor(secret: string) {
    this.secret = createSecretKey(Buffer.from(secret));
  }

  private mac(body: string): Buffer {
    return createHmac("sha256", this.secret).update(body).digest().subarray(0, 16);
  }

  encode(list: string, shopId: string, sort: string, key: string[], base?: string): string {
    const body: CursorBody = { v: 1, l: list, s: shopId, o: sort, k: key, t: Date.now(), ...(base ? { b: base } : {}) };
    const b = Buffer.from(JSON.stringify(body)).toString("base64url");
    return `${b}.${this.mac(b).toString("base64url")}`;
  }

  /** Decodes and checks a cursor; errors name `field`. */
  decode(token: string, field: string, list: string, shopId: string): CursorBody {
    const bad = () => invalidArgument(field, "invalid cursor; use paging.next or paging.prev of a previous response unchanged");
    const [b, m, ...rest] = token.split(".");
    if (!b || !m || rest.length || token.length > 1000) throw bad();
    const mac = Buffer.from(m, "base64url");
    const want = this.mac(b);
    if (mac.length !== want.length || !timingSafeEqual(mac, want)) throw bad();
    let body: CursorBody;
    try {
      body = JSON.parse(Buffer.from(b, "base64url").toString()) as CursorBody;
    } catch {
      throw bad();
    }
    if (body.v !== 1 || !Array.isArray(body.k) || typeof body.t !== "number" || (body.b !== undefined && !/^\d{1,20}$/.test(body.b))) throw bad();
    if (body.s !== shopId) throw invalidArgument(field, "cursor was issued to another shop");
    if (body.l !== list) throw invalidArgument(field, `cursor is for ${body.l}, not ${list}`);
    return body;
  }
}

export function pageLimit(limit: number, field = "paging.limit"): number {
  if (limit === 0) return DEFAULT_LIMIT;
  if (limit < 0 || limit > MAX_LIMIT) throw invalidArgument(field, `must be between 1 and ${MAX_LIMIT} (0 means ${DEFAULT_LIMIT}), got ${limit}`);
  return limit;
}

/** The error for a sync cursor behind pruned rows (the message starts with `<field>: cursor expired`). */
export function cursorExpired(ctx: AppContext, field: string) {
  return failedPrecondition(
    `${field}: ${CURSOR_EXPIRED}: changes after it were pruned (retention ${ctx.config.changeRetentionHours}h); resync from the start (no cursor)`,
  );
}

/** Ids filter: at most 100 valid int64 ids. */
export function idsFilter(column: string, field: string, ids: string[]): Filter[] {
  if (!ids.length) return [];
  if (ids.length > 100) throw invalidArgument(field, `at most 100 ids, got ${ids.length}`);
  for (const id of ids) if (!/^[1-9]\d{0,18}$/.test(id)) throw invalidArgument(field, `not a valid id: "${id.slice(0, 40)}"`);
  return [{ column, values: ids, type: "bigint" }];
}

export function valuesFilter(column: string, field: string, values: string[], allowed: readonly string[]): Filter[] {
  if (!values.length) return [];
  for (const v of values) if (!allowed.includes(v)) throw invalidArgument(field, `unknown value "${v.slice(0, 40)}"; one of ${allowed.join(", ")}`);
  return [{ column, values, type: "text" }];
}

/** The request header that asks for reads from the primary (read-your-writes) when a replica serves reads. */
export const CONSISTENCY_HEADER = "x-shophook-consistency";

/**
 * Where a feed read goes: the replica (SHOPHOOK_READ_DATABASE_URL) unless the caller asks for
 * `x-shophook-consistency: strong` (read-your-writes: the primary). Either way the page is
 * gap-free: its horizon is taken where it is read, and positions are the same on both.
 */
export function readerOf(ctx: AppContext, hc: HandlerContext): Pool {
  return hc.requestHeader.get(CONSISTENCY_HEADER)?.trim().toLowerCase() === "strong" ? ctx.pool : ctx.readPool;
}

/** Runs one List* page: validates paging, reads rows (from `pool`), and builds paging.next/prev. */
export async function listPage<R extends BaseRow>(
  ctx: AppContext,
  pool: Pool,
  shopId: string,
  def: EntityDef<R>,
  list: string,
  paging: Paging | undefined,
  includeDeleted: boolean,
  filters: Filter[],
): Promise<{ rows: R[]; paging: PageInfo }> {
  const limit = pageLimit(paging?.limit ?? 0);
  const requested = paging?.sort ?? "";
  if (requested !== "" && requested !== "updated_at") throw invalidArgument("paging.sort", `must be "" (creation order) or "updated_at", got "${requested.slice(0, 40)}"`);
  let sort: Sort = requested;
  if (paging?.after && paging?.before) throw invalidArgument("paging", "set after or before, not both");
  const field = paging?.before ? "paging.before" : "paging.after";
  const token = paging?.before || paging?.after;
  let key: string[] | undefined;
  let base: string | undefined;
  if (token) {
    const c = ctx.cursors.decode(token, field, list, shopId);
    if (paging?.sort && c.o !== paging.sort) throw invalidArgument(field, `cursor is for sort "${c.o}", not "${paging.sort}"`);
    sort = c.o as Sort;
    key = c.k;
    base = c.b ?? "0";
  }
  const backward = Boolean(paging?.before);
  const query = listRows(def, shopId, { sort, key, base, backward, limit, includeDeleted, filters });
  const keyOf = (r: R) => (r as unknown as Record<string, string | null>)[def.key];
  const raw = await readSettled(
    () => pool.query<R & { horizon: string; held: boolean; expired: boolean }>(query).then((r) => r.rows),
    (rs) => rs.filter((r) => keyOf(r) !== null).length === limit,
  );
  if (raw[0]!.expired) throw cursorExpired(ctx, field);
  const horizon = raw[0]!.horizon;
  // A sync that begins here began at this page's horizon; later pages carry it on.
  base ??= horizon;
  const rows: R[] = raw.filter((r) => keyOf(r) !== null);
  if (backward) rows.reverse();

  const pos = (r: R): string[] => (sort === "updated_at" ? [r.feed_xid, r.feed_seq] : [keyOf(r)!]);
  const cursor = (k: string[]) => ctx.cursors.encode(list, shopId, sort, k, base);
  const full = rows.length === limit;
  let next: string[];
  if (backward) next = rows.length ? pos(rows.at(-1)!) : key!;
  else if (sort === "updated_at" && !full) {
    // Every row below the horizon after the cursor was read: the next page starts at the horizon.
    next = maxPosition(key ?? ["0", "0"], [horizon, "0"]);
  } else next = rows.length ? pos(rows.at(-1)!) : (key ?? ["0"]);
  const prev = rows.length && (token || backward) && (!backward || full) ? cursor(pos(rows[0]!)) : "";
  return { rows, paging: create(PageInfoSchema, { next: cursor(next), prev, limit, sort }) };
}

/** Waits between re-reads of a short page whose rows are held back: 5, 10, 20, 40, 80 ms. */
const HELD_WAITS = [5, 10, 20, 40, 80];

/**
 * Reads a feed page; when it is short and the shop has committed rows held back behind a
 * transaction open elsewhere (often just a concurrent short one), re-reads a few times over
 * ~150 ms so a client that just wrote sees its write. A longer stall still answers, with what is
 * safe to serve: the feed pauses, it never skips (docs/change-feed.md).
 */
export async function readSettled<T extends { held: boolean }>(read: () => Promise<T[]>, full: (rows: T[]) => boolean): Promise<T[]> {
  let rows = await read();
  for (const wait of HELD_WAITS) {
    if (full(rows) || !rows[0]?.held) break;
    await new Promise((r) => setTimeout(r, wait));
    rows = await read();
  }
  return rows;
}
