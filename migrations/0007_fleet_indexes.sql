-- shophook: no-transaction
-- A fleet's indexes (docs/scaling.md). Built CONCURRENTLY: writes and the feed carry on
-- (docs/migrations.md); re-runnable as 0006 is.

-- The change watcher (src/delivery/change-watcher.ts) reads every shop's commits in (xid, id)
-- order from where it stood: a commit on any instance wakes delivery, with no scan.
CREATE INDEX CONCURRENTLY IF NOT EXISTS changes_position ON changes (xid, id);

-- The due sweep reads only webhooks with something due (src/db/sql/webhooks.ts dueSweep): a
-- retry, a stored batch, a lease. Idle webhooks are in none of these, however many there are.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhooks_retry_due ON webhooks (next_attempt_at) WHERE state = 'retry';
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhooks_batch_pending ON webhooks (id) WHERE batch_id IS NOT NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhooks_leased ON webhooks (id) WHERE lease_owner IS NOT NULL;
