/** A query as text plus bind values: values are never spliced into SQL text. */
import { createHash } from "node:crypto";

export interface Query {
  text: string;
  values: unknown[];
  /** Set by `prepared`: the statement is parsed and planned once per connection, then reused. */
  name?: string;
}

/** Statement texts given a name so far; past the cap new shapes go unnamed (bounded memory per connection). */
const names = new Map<string, string>();
const MAX_PREPARED = 300;

/**
 * Marks a hot query as a prepared statement. Parsing and planning was about a third of
 * PostgreSQL's CPU for a create (measured: 372 -> 253 us of machine CPU per insert,
 * docs/performance.md). Only for statements whose result columns are listed, never `*`: a
 * prepared `*` breaks ("cached plan must not change result type") when a migration adds a
 * column while an older instance still runs.
 */
export function prepared(q: Query): Query {
  let name = names.get(q.text);
  if (!name) {
    if (names.size >= MAX_PREPARED) return q;
    name = `s${createHash("sha1").update(q.text).digest("base64url").slice(0, 16)}`;
    names.set(q.text, name);
  }
  return { ...q, name };
}
