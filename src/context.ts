/** The shared handles every module receives: built once at start, passed down explicitly. */
import type { Cursors } from "./api/paging.ts";
import type { Clock } from "./clock.ts";
import type { Committed } from "./store/write.ts";
import type { Config } from "./config.ts";
import type { IdAllocator } from "./db/ids.ts";
import type { Pool } from "./db/pool.ts";
import type { Logger } from "./logger.ts";

export interface AppContext {
  config: Config;
  pool: Pool;
  /** Feed reads (List*, GetChanges): a streaming replica when SHOPHOOK_READ_DATABASE_URL is set, else `pool`. */
  readPool: Pool;
  log: Logger;
  /** Signs and checks paging cursors (secret from the settings table). */
  cursors: Cursors;
  /** Entity ids. */
  ids: IdAllocator;
  /** Retry scheduling time (tests move it by hand). */
  clock: Clock;
  /** Called after each committed write: wakes the webhooks of the changed entities. */
  onCommit?: (c: Committed) => void;
  /** Writes NOTIFY their commits for delivery instances elsewhere (role `api`: store/write.ts). */
  notifyCommits?: boolean;
  /** Called when a shop's webhooks were created, changed or deleted. */
  webhooksChanged?: (shopId: string) => void;
}
