/**
 * Tells delivery instances elsewhere what happened here, by NOTIFY. Commits made on an instance
 * that does not deliver (role `api`) notify themselves: their statements carry the NOTIFY, which
 * PostgreSQL sends at commit (`notifyCommits`, sql/entities.ts). What is sent from here is the
 * other kind: a shop's webhooks changed (every role: peers cache subscriptions). Only wake-ups:
 * a lost notification delays delivery until the watcher's poll (`SHOPHOOK_SWEEP_INTERVAL_MS`),
 * and a listener that reconnects sweeps everything.
 */
import type { Pool } from "../db/pool.ts";
import { notify, WEBHOOKS_CHANNEL } from "../db/sql/watch.ts";

export class CommitSignal {
  private readonly pool: Pool;
  private readonly onError: (err: Error) => void;
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(pool: Pool, onError: (err: Error) => void) {
    this.pool = pool;
    this.onError = onError;
  }

  webhooksChanged(shopId: string): void {
    const p = this.pool.query(notify(WEBHOOKS_CHANNEL, shopId)).catch((err: unknown) => this.onError(err as Error));
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  /** Waits for the notifications in flight. */
  async flush(): Promise<void> {
    await Promise.all(this.inFlight);
  }
}
