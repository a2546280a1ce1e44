-- shophook: no-transaction
-- A webhook's first matching change per subscribed entity, found by an index probe instead of a
-- walk of the shop's whole log.
--
-- Built CONCURRENTLY (writes and the feed carry on: docs/migrations.md), so outside a
-- transaction (the marker above). Re-runnable: the runner drops an INVALID index of this name
-- left by a build that failed halfway before running this again, and IF NOT EXISTS skips a valid
-- one whose migration was not recorded (the process died in between).
CREATE INDEX CONCURRENTLY IF NOT EXISTS changes_shop_entity_position ON changes (shop_id, entity, xid, id);
