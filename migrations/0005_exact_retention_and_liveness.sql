-- Exact retention, engine liveness by database session, and rate limits shared by instances.

-- The highest feed position each shop's prune deleted, per list ('changes', or an entity table
-- for its tombstones). A sync cursor below it may have skipped pruned rows: it is refused
-- (failed_precondition, "cursor expired"), and a webhook whose cursor is below it stops with a
-- reason instead of skipping. Positions, not times: exact whatever the rows' ages.
CREATE TABLE feed_pruned (
  shop_id   bigint NOT NULL,
  list      text NOT NULL,
  xid       xid8 NOT NULL,
  seq       bigint NOT NULL,
  pruned_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (shop_id, list)
);

-- The backend of the engine's heartbeat connection. A SIGKILLed engine's sessions end at once,
-- so its leases free up after a missed heartbeat; a frozen one (SIGSTOP, a long GC pause) keeps
-- its sessions, so its leases are only taken over when they run out, which a live engine never
-- lets happen mid-request (src/delivery/deliverer.ts): no two requests in flight for one webhook.
ALTER TABLE delivery_instances ADD COLUMN backend_pid integer;

-- Undelivered changes of a webhook hold the log past the retention window (up to
-- SHOPHOOK_WEBHOOK_BACKLOG_MAX_HOURS); finding them per shop wants the smallest cursor.
CREATE INDEX webhooks_shop_cursor ON webhooks (shop_id, cursor_xid, cursor_seq);

-- UpdateWebhook bumps settings_version; a stored batch remembers the version it was cut under.
-- A batch cut under other settings is cut again from the cursor (under a new callback id), so
-- widened subscriptions or fields never lose the part of its range the old settings left out.
ALTER TABLE webhooks
  ADD COLUMN settings_version integer NOT NULL DEFAULT 0,
  ADD COLUMN batch_version integer;

-- ListOrders filtered by status, in either order, is an index range scan even for a rare status.
CREATE INDEX orders_status_position ON orders (shop_id, status, feed_xid, feed_seq);
CREATE INDEX orders_status ON orders (shop_id, status, id);
