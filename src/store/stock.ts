/**
 * Stock moves between an inventory level's buckets (available, reserved, picked) as orders are
 * confirmed and cancelled and their fulfillments move. Levels must be locked by the writer.
 */
import { failedPrecondition } from "../api/errors.ts";
import { inventoryLevelEntity as IL, type InventoryLevelRow } from "../entities/inventory-level.ts";
import type { OrderLineJson } from "../entities/order.ts";
import type { Writer } from "./write.ts";

type Bucket = "available_quantity" | "reserved_quantity" | "picked_quantity";

/** A bucket's ceiling: the columns are 32-bit integers. */
const BUCKET_MAX = 2_000_000_000;

/** Total quantity per variant over an order's variant lines. */
export function quantities(lines: OrderLineJson[]): Map<string, number> {
  const q = new Map<string, number>();
  for (const l of lines) if (l.variant_id !== "0") q.set(l.variant_id, (q.get(l.variant_id) ?? 0) + l.quantity);
  return q;
}

export const stockLocks = (lines: OrderLineJson[]) => [...quantities(lines).keys()].map((v) => ["inventory_level", v] as ["inventory_level", string]);

/**
 * Moves each variant's quantity from one bucket to another (`from` null: stock arrives; `to`
 * null: stock leaves). Levels of deleted variants are skipped: their stock went with them.
 * Taking more than is available is failed_precondition; any other bucket going negative is a bug.
 */
export async function moveStock(w: Writer, lines: OrderLineJson[], from: Bucket | null, to: Bucket | null): Promise<void> {
  for (const [variantId, qty] of quantities(lines)) {
    const level = await w.get<InventoryLevelRow>(IL, variantId);
    if (!level || level.deleted_at) continue;
    const patch: Partial<InventoryLevelRow> = {};
    if (from) {
      const left = level[from] - qty;
      if (left < 0) {
        if (from === "available_quantity") throw failedPrecondition(`variant ${variantId}: only ${level.available_quantity} available, ${qty} needed`);
        throw new Error(`stock invariant broken: variant ${variantId} ${from} would become ${left}`);
      }
      patch[from] = left;
    }
    if (to) {
      patch[to] = level[to] + qty;
      if (patch[to] > BUCKET_MAX) throw failedPrecondition(`variant ${variantId}: ${to} would exceed ${BUCKET_MAX}`);
    }
    await w.update(IL, level, patch);
  }
}
