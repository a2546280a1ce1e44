/** SQL for the change log's upkeep. */
import type { Query } from "./query.ts";

/** Changes older than `before`, a batch at a time (BRIN on time finds them). */
export const pruneChanges = (before: Date, batch: number): Query => ({
  text: "DELETE FROM changes WHERE id IN (SELECT id FROM changes WHERE time < $1 LIMIT $2)",
  values: [before, batch],
});
