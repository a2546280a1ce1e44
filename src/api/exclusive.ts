/**
 * One request in flight per webhook, on every path: the RPCs that send to a webhook outside its
 * stream (TestWebhook, RetryDelivery of an earlier batch) or move its position (RecoverWebhook)
 * take the same lease as a delivery turn. Deliverers are held off first (a turn ends after its
 * request in flight), then the lease is taken under an owner name that is no engine's: it is
 * held until released or run out, never taken over as a dead engine's (db/sql/webhooks.ts).
 * A second caller for the same webhook waits for the first; past the wait it gets `unavailable`.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { randomUUID } from "node:crypto";
import type { AppContext } from "../context.ts";
import * as sql from "../db/sql/webhooks.ts";
import { notFound } from "./errors.ts";

const POLL_MS = 50;

/**
 * Runs `fn(owner)` holding webhook `id`'s lease. `fn` may release the lease itself (RecoverWebhook
 * does, in the statement that sets the position); otherwise it is released here. Afterwards the
 * webhook is woken: its turn resumes where it was.
 */
export async function exclusive<T>(ctx: AppContext, shopId: string, id: string, rpc: string, wake: (id: string) => void, fn: (owner: string) => Promise<T>): Promise<T> {
  const leaseSeconds = sql.leaseSeconds(ctx.config.deliveryTimeoutMs);
  const owner = `${rpc}:${id}:${randomUUID().slice(0, 8)}`;
  // Long enough for a delivery request in flight to end, or a peer caller's request.
  const until = Date.now() + 2 * ctx.config.deliveryTimeoutMs + 5_000;
  for (;;) {
    // Held again at each try: a peer caller that finished cleared the hold.
    if (!(await ctx.pool.query(sql.hold(shopId, id, leaseSeconds))).rowCount) throw notFound(`webhook ${id}`);
    if ((await ctx.pool.query(sql.acquireLeases([id], owner, leaseSeconds, true))).rowCount) break;
    if (Date.now() > until) {
      await ctx.pool.query(sql.releaseExclusive(shopId, id, owner));
      throw new ConnectError(`webhook ${id} is busy (a delivery or another ${rpc} is in flight); try again`, Code.Unavailable);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  try {
    return await fn(owner);
  } finally {
    await ctx.pool.query(sql.releaseExclusive(shopId, id, owner));
    wake(id);
  }
}
