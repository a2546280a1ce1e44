/**
 * The one rule of which changes a webhook gets, in SQL over a webhook `w` and a change `c`.
 * Delivery reads, lease release, the sweep, the idle advance, the prune's holds, RecoverWebhook
 * and the backlog metrics all use it; the wake-up filter applies its subscription half in memory
 * (`subscribes` in delivery/topics.ts), as a hint only: a turn reads with this rule.
 *
 * A change goes to a webhook when its entity (any action) or its entity and action is
 * subscribed, and, for an update when the webhook's `fields` is set, one of those fields changed.
 */
export const MATCHES = `((c.entity || ':*') = ANY(w.subscriptions) OR (c.entity || ':' || c.change_type) = ANY(w.subscriptions))
  AND (c.change_type <> 'update' OR cardinality(w.fields) = 0
       OR EXISTS (SELECT 1 FROM json_object_keys(c.changed -> c.entity) k WHERE k = ANY(w.fields)))`;

/** The entities webhook `w` reads (from its subscriptions, topics included), as an array. */
export const WEBHOOK_ENTITIES = "ARRAY(SELECT DISTINCT split_part(s, ':', 1) FROM unnest(w.subscriptions) s)";

/**
 * The changes of webhook `w`'s shop and entities after position (fromXid, fromSeq): a condition
 * on `c` that the index changes_shop_entity_position serves per entity, so unrelated writes
 * (other entities) are never read.
 */
const after = (fromXid: string, fromSeq: string) =>
  `c.shop_id = w.shop_id AND c.entity = e.entity AND (c.xid, c.id) > (${fromXid}, ${fromSeq})`;

/**
 * A subquery: the first change after (fromXid, fromSeq) (and below `horizon`, if given) that `w`
 * gets, as (xid, id, time); one index probe per subscribed entity.
 */
export const firstMatch = (fromXid: string, fromSeq: string, horizon?: string) => `
  SELECT f.xid, f.id, f.time FROM unnest(${WEBHOOK_ENTITIES}) e(entity)
   CROSS JOIN LATERAL (
     SELECT c.xid, c.id, c.time FROM changes c
      WHERE ${after(fromXid, fromSeq)}${horizon ? ` AND c.xid < ${horizon}` : ""} AND ${MATCHES}
      ORDER BY c.xid, c.id LIMIT 1) f
   ORDER BY f.xid, f.id LIMIT 1`;

/** A subquery: up to `limit` changes after (fromXid, fromSeq) that `w` gets (for counting). */
export const matchingAfter = (fromXid: string, fromSeq: string, limit: string) => `
  SELECT 1 FROM unnest(${WEBHOOK_ENTITIES}) e(entity)
   CROSS JOIN LATERAL (SELECT 1 FROM changes c WHERE ${after(fromXid, fromSeq)} AND ${MATCHES} LIMIT ${limit}) x
   LIMIT ${limit}`;
