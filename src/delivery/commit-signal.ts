/**
 * Tells delivery instances elsewhere what happened here, by NOTIFY: commits made on an instance
 * that does not deliver (role `api`), and changes to a shop's webhooks (every role: peers cache
 * subscriptions). Only a wake-up: a lost notification delays delivery until the watcher's poll
 * (`SHOPHOOK_SWEEP_INTERVAL_MS`), and a listener that reconnects sweeps everything.
 *
 * Commits are coalesced: one NOTIFY in flight at a time, carrying the highest xid committed
 * meanwhile, so a burst of writes costs a handful of notifications.
 */
import type { Pool } from "../db/pool.ts";
import { CHANGES_CHANNEL, notify, WEBHOOKS_CHANNEL } from "../db/sql/watch.ts";
import type { Committed } from "../store/write.ts";

export class CommitSignal {
  private readonly pool: Pool;
  private readonly onError: (err: Error) => void;
  private pendingXid = 0n;
  private sending: Promise<void> | undefined;

  constructor(pool: Pool, onError: (err: Error) => void) {
    this.pool = pool;
    this.onError = onError;
  }

  committed(c: Committed): void {
    const xid = BigInt(c.xid);
    if (xid > this.pendingXid) this.pendingXid = xid;
    this.sending ??= this.send();
  }

  private async send(): Promise<void> {
    try {
      while (this.pendingXid > 0n) {
        const xid = this.pendingXid;
        this.pendingXid = 0n;
        await this.pool.query(notify(CHANGES_CHANNEL, xid.toString()));
      }
    } catch (err) {
      this.onError(err as Error);
    } finally {
      this.sending = undefined;
    }
  }

  webhooksChanged(shopId: string): void {
    this.pool.query(notify(WEBHOOKS_CHANNEL, shopId)).catch((err: unknown) => this.onError(err as Error));
  }

  /** Waits for the notification in flight. */
  async flush(): Promise<void> {
    await this.sending;
  }
}
