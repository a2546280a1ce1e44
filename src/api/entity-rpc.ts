/** Helpers the entity RPCs share: live-row lookups that answer not_found, and Delete*'s answer. */
import { create } from "@bufbuild/protobuf";
import { RemovedResponseSchema } from "../../gen/shop/common_pb.ts";
import type { AppContext } from "../context.ts";
import type { BaseRow, EntityDef } from "../entities/model.ts";
import { ConnectError, Code } from "@connectrpc/connect";
import { readOne, REMOVE, updateOne } from "../store/write.ts";

/** A deleted row, a missing row and another shop's row all read as not found. */
export function live<R extends BaseRow>(row: R | undefined, def: EntityDef<R>, id: string, field?: string): R {
  if (!row || row.deleted_at) {
    const what = `${def.name.replace("_", " ")} ${id}`;
    throw new ConnectError(field ? `${field}: ${what} not found` : `${what} not found`, Code.NotFound);
  }
  return row;
}

/** Reads one live row outside any write transaction (Get* RPCs, references). */
export async function readLive<R extends BaseRow>(ctx: AppContext, def: EntityDef<R>, shopId: string, id: string, field?: string): Promise<R> {
  return live(await readOne(ctx.pool, def, shopId, id), def, id, field);
}

export const removed = (n: number) => create(RemovedResponseSchema, { removed: n });

/**
 * Deletes one entity (a tombstone stays); `check` may refuse (e.g. an order still processing).
 * Returns 1, or 0 when it was already deleted: deleting twice is not an error.
 */
export async function removeOne<R extends BaseRow>(ctx: AppContext, shopId: string, def: EntityDef<R>, id: string, check?: (row: R) => void): Promise<number> {
  let n = 0;
  await updateOne(ctx, shopId, def, id, (old) => {
    if (!old) live(old, def, id);
    if (old!.deleted_at) return (n = 0), undefined;
    check?.(old!);
    n = 1;
    return REMOVE;
  });
  return n;
}
