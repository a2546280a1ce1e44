-- Webhook operations: topics and field filters, formats, rate limits, secret rotation, disable
-- reasons, admin holds, and the delivery history. See docs/webhook-operations.md.
ALTER TABLE webhooks
  -- What the webhook receives, normalised: 'order:*' (every change of orders) or 'order:update'.
  -- Built from `entities` (eTop) and `topics` (order.created, product.*, Sapo's orders/create).
  ADD COLUMN subscriptions text[] NOT NULL DEFAULT '{}',
  ADD COLUMN topics text[] NOT NULL DEFAULT '{}',
  ADD COLUMN format text NOT NULL DEFAULT 'json' CHECK (format IN ('json', 'xml', 'thin')),
  -- Collapse several changes of one entity in a batch into the newest.
  ADD COLUMN coalesce_changes boolean NOT NULL DEFAULT false,
  -- Requests per second at most; 0: no limit.
  ADD COLUMN rate_limit integer NOT NULL DEFAULT 0 CHECK (rate_limit >= 0),
  -- The previous secret, still signing until it expires (rotation grace).
  ADD COLUMN previous_secret text,
  ADD COLUMN previous_secret_expires_at timestamptz,
  -- Why the webhook is inactive when the system made it so (410 Gone).
  ADD COLUMN disabled_reason text NOT NULL DEFAULT '',
  ADD COLUMN last_success_at timestamptz,
  ADD COLUMN last_failure_at timestamptz,
  -- An operation that moves the cursor (RecoverWebhook) holds delivery off while it takes the lease.
  ADD COLUMN held_until timestamptz;

UPDATE webhooks SET subscriptions = ARRAY(SELECT e || ':*' FROM unnest(entities) e);

-- Every delivery attempt (and test request): what was sent, what came back.
CREATE TABLE deliveries (
  id               bigint PRIMARY KEY,
  shop_id          bigint NOT NULL,
  webhook_id       bigint NOT NULL,
  callback_id      bigint NOT NULL,
  attempt          integer NOT NULL,
  test             boolean NOT NULL DEFAULT false,
  url              text NOT NULL,
  -- entity.action pairs in the batch (order.created, product.updated...).
  events           text[] NOT NULL,
  change_count     integer NOT NULL,
  -- The change-log range the batch covered: RetryDelivery re-reads it.
  from_xid         xid8,
  from_seq         bigint,
  end_xid          xid8,
  end_seq          bigint,
  request_headers  jsonb NOT NULL,
  body_size        integer NOT NULL,
  status           text NOT NULL CHECK (status IN ('success', 'failed')),
  response_status  integer NOT NULL,
  response_headers jsonb NOT NULL DEFAULT '{}',
  response_body    text NOT NULL DEFAULT '',
  error            text NOT NULL DEFAULT '',
  duration_ms      integer NOT NULL,
  created_at       timestamptz NOT NULL
);
CREATE INDEX deliveries_webhook ON deliveries (webhook_id, id DESC);
CREATE INDEX deliveries_shop ON deliveries (shop_id, id DESC);
CREATE INDEX deliveries_created ON deliveries USING brin (created_at);
