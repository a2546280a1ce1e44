/**
 * The change watcher: how a delivery instance learns of every commit, whichever instance made it.
 *
 * It reads the change log of every shop in (xid, id) order below the feed's horizon, exactly as
 * GetChanges pages one shop (docs/change-feed.md), so no commit is missed, whatever the order
 * transactions finish in, and hands each page's shops and events (`entity:change_type`) to
 * `onChanges`. It runs when told of a commit (in this process, or by NOTIFY from another
 * instance, such as an API-only one), and every `pollMs` as the safety net (one index probe when
 * nothing is new). A commit that is not yet below the horizon (an older transaction is still
 * open) is read again with backoff until it is.
 *
 * It starts at the horizon: what was committed before this instance started is the start-up
 * sweep's (delivery/engine.ts). Idle, it costs one small query per poll, whatever the number of
 * webhooks.
 */
import type { Pool } from "../db/pool.ts";
import { comparePositions } from "../db/position.ts";
import * as sql from "../db/sql/watch.ts";

/** Changes read per query; a full page is followed at once by the next. */
const PAGE = 5_000;
/** Waits before re-reading a commit that is not yet below the horizon. */
const HORIZON_BACKOFF_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

const before = (a: [string, string], b: [string, string]) => comparePositions(a, b) < 0;

export class ChangeWatcher {
  private readonly pool: Pool;
  private readonly onChanges: (byShop: Map<string, string[]>) => Promise<void>;
  private readonly onError: (err: Error) => void;
  private position: [string, string] | undefined;
  /** The highest xid we were told committed: read again until the horizon passes it. */
  private awaited = 0n;
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private poller: NodeJS.Timeout | undefined;
  private backoff = 0;
  private stopped = false;

  constructor(pool: Pool, onChanges: (byShop: Map<string, string[]>) => Promise<void>, onError: (err: Error) => void) {
    this.pool = pool;
    this.onChanges = onChanges;
    this.onError = onError;
  }

  /** Starts at the current horizon, polling every `pollMs`. */
  async start(pollMs: number): Promise<void> {
    const { rows } = await this.pool.query<{ horizon: string }>(sql.horizon());
    this.position = [rows[0]!.horizon, "0"];
    this.poller = setInterval(() => this.trigger(), pollMs);
    this.poller.unref();
  }

  /** A commit happened (its xid when known): read what is new. Cheap; runs coalesce. */
  trigger(xid?: bigint): void {
    if (xid !== undefined && xid > this.awaited) this.awaited = xid;
    if (this.stopped || !this.position) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = undefined;
    this.running = this.run()
      .catch((err: unknown) => this.onError(err as Error))
      .finally(() => {
        this.running = undefined;
        if (this.stopped) return;
        if (this.again) {
          this.again = false;
          this.trigger();
        }
      });
  }

  /** Resolves when the run in progress (if any) is done. */
  async idle(): Promise<void> {
    await this.running;
  }

  private async run(): Promise<void> {
    for (;;) {
      const [xid, seq] = this.position!;
      const { rows } = await this.pool.query<sql.WatchedRow>(sql.changesAfter(xid, seq, PAGE));
      const horizon = rows[0]!.horizon;
      const byShop = new Map<string, string[]>();
      let last: [string, string] | undefined;
      let count = 0;
      for (const r of rows) {
        if (r.shop_id === null) continue;
        byShop.set(r.shop_id, r.events!);
        count += r.rows;
        const p: [string, string] = [r.xid!, r.seq!];
        if (!last || before(last, p)) last = p;
      }
      if (byShop.size) await this.onChanges(byShop);
      if (count >= PAGE) {
        this.position = last!;
        continue;
      }
      // Everything below the horizon is read: start the next read there.
      const at: [string, string] = [horizon, "0"];
      if (before(this.position!, at)) this.position = at;
      if (this.awaited >= BigInt(horizon) && !this.stopped) {
        // Told of a commit the horizon has not passed yet (an older transaction is open): look again soon.
        this.timer = setTimeout(() => this.trigger(), HORIZON_BACKOFF_MS[Math.min(this.backoff++, HORIZON_BACKOFF_MS.length - 1)]);
      } else this.backoff = 0;
      return;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.poller);
    clearTimeout(this.timer);
    await this.running;
  }
}
