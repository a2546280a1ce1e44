-- Webhooks and their delivery state. See docs/delivery.md.
CREATE TABLE webhooks (
  id            bigint PRIMARY KEY,
  shop_id       bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
  url           text NOT NULL,
  entities      text[] NOT NULL,
  fields        text[] NOT NULL DEFAULT '{}',
  metadata      text NOT NULL DEFAULT '',
  headers       jsonb NOT NULL DEFAULT '[]',
  description   text NOT NULL DEFAULT '',
  -- The Standard Webhooks signing key ("whsec_..."): needed in the clear to sign.
  secret        text NOT NULL,
  active        boolean NOT NULL DEFAULT true,
  created_at    timestamptz NOT NULL,
  updated_at    timestamptz NOT NULL,
  -- Everything at or before this change-log position was delivered (or did not match).
  cursor_xid    xid8 NOT NULL,
  cursor_seq    bigint NOT NULL,
  -- The batch being delivered: its callback id and the end of its range, fixed at the first
  -- attempt so every retry (and a resend after a crash) carries the same id and the same changes.
  batch_id      bigint,
  batch_end_xid xid8,
  batch_end_seq bigint,
  -- ok | retry | stop (eTop's states), the failure streak, and the next attempt.
  state         text NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'retry', 'stop')),
  attempts      integer NOT NULL DEFAULT 0,
  failing_since timestamptz,
  next_attempt_at timestamptz,
  last_sent_at  timestamptz,
  last_error    jsonb,
  -- One sender at a time across instances: a lease in database time, renewed per batch.
  lease_owner   text,
  lease_until   timestamptz
);
CREATE INDEX webhooks_shop ON webhooks (shop_id, id);

-- Delivery engines alive now: each heartbeats every few seconds. A lease whose owner stopped
-- heartbeating (killed, frozen) can be taken over before it runs out.
CREATE TABLE delivery_instances (
  owner        text PRIMARY KEY,
  started_at   timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);
