/**
 * GetChanges: the shop's change log as a pull feed, served by shop.History (eTop's documented
 * path) and shop.Webhook. Commit-safe: see src/db/sql/lists.ts and docs/change-feed.md.
 */
import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import { type Change, ChangeSchema, type GetChangesRequest, type GetChangesResponse, GetChangesResponseSchema } from "../../gen/shop/change_pb.ts";
import type { AppContext } from "../context.ts";
import { type ChangeRow, changesAfter } from "../db/sql/lists.ts";
import { ENTITY_NAMES } from "../entities/model.ts";
import { principal } from "./auth.ts";
import { invalidArgument } from "./errors.ts";
import { maxPosition } from "../db/position.ts";
import { cursorExpired, pageLimit, readerOf, readSettled } from "./paging.ts";

export function validateEntities(field: string, entities: string[]): string[] {
  const seen = new Set<string>();
  for (const e of entities) {
    if (!(ENTITY_NAMES as readonly string[]).includes(e)) throw invalidArgument(field, `unknown entity "${e.slice(0, 40)}"; one of ${ENTITY_NAMES.join(", ")}`);
    if (seen.has(e)) throw invalidArgument(field, `duplicate entity "${e}"`);
    seen.add(e);
  }
  return entities;
}

/** A change-log row as the API's Change message. */
export function changeMessage(r: ChangeRow): Change {
  return create(ChangeSchema, {
    id: r.id!,
    time: timestampFromDate(r.time),
    changeType: r.change_type,
    entity: r.entity,
    entityId: r.entity_id,
    latest: { [r.entity]: JSON.parse(r.latest) as JsonObject },
    changed: r.changed ? (JSON.parse(r.changed) as JsonObject) : undefined,
  });
}

export function getChanges(ctx: AppContext) {
  return async (req: GetChangesRequest, hc: HandlerContext): Promise<GetChangesResponse> => {
    const shopId = principal(hc).shopId;
    const limit = pageLimit(req.paging?.limit ?? 0);
    const entities = validateEntities("entities", req.entities);
    // A cursor names its filter: reusing it with another would skip the other entities' changes.
    const entitiesKey = [...entities].sort().join(",");
    let pos = ["0", "0"];
    if (req.paging?.after) {
      const c = ctx.cursors.decode(req.paging.after, "paging.after", "changes", shopId);
      if (c.o !== entitiesKey) throw invalidArgument("paging.after", `cursor is for entities [${c.o}], not [${entitiesKey}]: keep the entities filter of the first page`);
      pos = c.k;
    }
    const query = changesAfter(shopId, pos[0]!, pos[1]!, entities, limit, Boolean(req.paging?.after));
    const rows = await readSettled(
      () => readerOf(ctx, hc).query<ChangeRow>(query).then((r) => r.rows),
      (rs) => rs.filter((r) => r.id !== null).length === limit,
    );
    if (rows[0]!.expired) throw cursorExpired(ctx, "paging.after");
    const changes = rows.filter((r) => r.id !== null);
    // A short page read everything below the horizon: the next page starts there.
    const next = changes.length === limit ? [changes.at(-1)!.xid, changes.at(-1)!.id!] : [rows[0]!.horizon, "0"];
    return create(GetChangesResponseSchema, {
      changes: changes.map(changeMessage),
      paging: { next: ctx.cursors.encode("changes", shopId, entitiesKey, maxPosition(pos, next)) },
    });
  };
}
