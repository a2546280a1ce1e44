/**
 * Entity ids from the database's next_id() (time-ordered, unique across instances), fetched in
 * blocks so a create needs no extra round trip. Fetched outside any write transaction: nextval
 * can assign a transaction id, which must not happen before a writer holds its locks.
 */
import type { Pool } from "./pool.ts";

const BLOCK = 64;
/** Ids carry their allocation time; an older block is dropped so creation order stays close to time order. */
const MAX_AGE_MS = 1_000;

export class IdAllocator {
  private ids: string[] = [];
  private fetchedAt = 0;
  private refill: Promise<void> | undefined;
  private readonly pool: Pool;

  constructor(pool: Pool) {
    this.pool = pool;
  }

  async next(): Promise<string> {
    if (Date.now() - this.fetchedAt > MAX_AGE_MS) this.ids = [];
    while (this.ids.length === 0) {
      this.refill ??= this.pool
        .query<{ id: string }>("SELECT next_id()::text AS id FROM generate_series(1, $1)", [BLOCK])
        .then((r) => {
          this.ids.push(...r.rows.map((x) => x.id));
          this.fetchedAt = Date.now();
        })
        .finally(() => (this.refill = undefined));
      await this.refill;
    }
    return this.ids.shift()!;
  }
}
