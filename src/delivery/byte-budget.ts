/**
 * A budget of bytes shared by every delivery turn of this process: the changes a turn has read,
 * their rendered body and the request in flight are held against it. A turn reserves before it
 * reads (the most one read may return), shrinks the reservation to what it got, and gives it
 * back once the batch is sent. When the budget is spent, turns wait (first come, first served),
 * so a thousand backlogged webhooks after an outage hold at most the budget, not a batch each.
 *
 * A turn waits for at most one reservation at a time (its next batch only takes what is free,
 * `tryReserve`), so turns cannot deadlock on each other's reservations.
 */
export class ByteBudget {
  readonly limit: number;
  private used = 0;
  private readonly waiters: Array<{ n: number; grant: (h: Hold) => void }> = [];
  private readonly onChange: ((used: number) => void) | undefined;

  constructor(limit: number, onChange?: (used: number) => void) {
    this.limit = limit;
    this.onChange = onChange;
  }

  /** Bytes held now. */
  get held(): number {
    return this.used;
  }

  /** Reserves `n` bytes (at most the whole budget), waiting behind earlier reservations. */
  reserve(n: number): Promise<Hold> {
    const want = Math.min(n, this.limit);
    if (!this.waiters.length && this.used + want <= this.limit) return Promise.resolve(this.grant(want));
    return new Promise((grant) => this.waiters.push({ n: want, grant }));
  }

  /** Reserves `n` bytes if they are free now and nobody waits; otherwise undefined. */
  tryReserve(n: number): Hold | undefined {
    const want = Math.min(n, this.limit);
    return !this.waiters.length && this.used + want <= this.limit ? this.grant(want) : undefined;
  }

  private grant(n: number): Hold {
    this.used += n;
    this.onChange?.(this.used);
    let size = n;
    const hold: Hold = {
      get bytes() {
        return size;
      },
      resize: (m: number) => {
        const to = Math.min(Math.max(0, m), size); // only ever shrinks: growing could overrun the budget
        this.used -= size - to;
        size = to;
        this.onChange?.(this.used);
        this.drain();
      },
      release: () => hold.resize(0),
    };
    return hold;
  }

  private drain() {
    while (this.waiters.length && this.used + this.waiters[0]!.n <= this.limit) {
      const w = this.waiters.shift()!;
      w.grant(this.grant(w.n));
    }
  }
}

export interface Hold {
  /** Bytes held now. */
  readonly bytes: number;
  /** Shrinks the reservation to `n` bytes (what was actually read), freeing the rest. */
  resize(n: number): void;
  /** Gives it all back; idempotent. */
  release(): void;
}
