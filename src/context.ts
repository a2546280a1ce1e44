/** The shared handles every module receives: built once at start, passed down explicitly. */
import type { Config } from "./config.ts";
import type { Pool } from "./db/pool.ts";
import type { Logger } from "./logger.ts";

export interface AppContext {
  config: Config;
  pool: Pool;
  log: Logger;
}
