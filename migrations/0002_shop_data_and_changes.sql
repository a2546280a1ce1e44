-- Shop data and the change log. See docs/change-feed.md for why positions are (xid, seq).
--
-- Every entity table has the same bookkeeping columns:
--   shop_id      the tenant; part of the primary key so no lookup can skip it
--   deleted_at   set on delete: the row stays as a tombstone so pollers learn about the delete
--   feed_xid     pg_current_xact_id() of the transaction that last wrote the row
--   feed_seq     id of the change that write recorded
-- (feed_xid, feed_seq) is the row's position in "updated_at" order.
-- No foreign key to shops: the checks would take a KEY SHARE lock on the shop row in every
-- write of every concurrent transaction (multixact contention); auth guarantees the shop.

CREATE TABLE settings (
  singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  -- Signs paging cursors; random per deployment, shared by every instance.
  cursor_secret text NOT NULL
);
INSERT INTO settings (cursor_secret)
VALUES (replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));

CREATE SEQUENCE changes_id_seq;

CREATE TABLE changes (
  id          bigint PRIMARY KEY,
  xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
  shop_id     bigint NOT NULL,
  entity      text NOT NULL,
  entity_id   bigint NOT NULL,
  change_type text NOT NULL CHECK (change_type IN ('create', 'update', 'delete')),
  time        timestamptz NOT NULL,
  -- json, not jsonb: kept byte for byte in the API's field order, and never queried inside.
  latest      json NOT NULL,
  changed     json
);
CREATE INDEX changes_shop_position ON changes (shop_id, xid, id);
CREATE INDEX changes_time ON changes USING brin (time);

CREATE TABLE products (
  shop_id       bigint NOT NULL,
  id            bigint NOT NULL,
  external_id   text NOT NULL DEFAULT '',
  external_code text NOT NULL DEFAULT '',
  name          text NOT NULL,
  description   text NOT NULL DEFAULT '',
  short_desc    text NOT NULL DEFAULT '',
  image_urls    text[] NOT NULL DEFAULT '{}',
  note          text NOT NULL DEFAULT '',
  status        text NOT NULL,
  list_price    bigint NOT NULL DEFAULT 0,
  retail_price  bigint NOT NULL DEFAULT 0,
  created_at    timestamptz NOT NULL,
  updated_at    timestamptz NOT NULL,
  deleted_at    timestamptz,
  feed_xid      xid8 NOT NULL,
  feed_seq      bigint NOT NULL,
  PRIMARY KEY (shop_id, id)
);
CREATE UNIQUE INDEX products_external_id ON products (shop_id, external_id) WHERE external_id <> '' AND deleted_at IS NULL;
CREATE INDEX products_position ON products (shop_id, feed_xid, feed_seq);

CREATE TABLE variants (
  shop_id       bigint NOT NULL,
  id            bigint NOT NULL,
  product_id    bigint NOT NULL,
  external_id   text NOT NULL DEFAULT '',
  code          text NOT NULL DEFAULT '',
  name          text NOT NULL DEFAULT '',
  attributes    jsonb NOT NULL DEFAULT '[]',
  image_urls    text[] NOT NULL DEFAULT '{}',
  note          text NOT NULL DEFAULT '',
  status        text NOT NULL,
  list_price    bigint NOT NULL DEFAULT 0,
  retail_price  bigint NOT NULL DEFAULT 0,
  cost_price    bigint NOT NULL DEFAULT 0,
  created_at    timestamptz NOT NULL,
  updated_at    timestamptz NOT NULL,
  deleted_at    timestamptz,
  feed_xid      xid8 NOT NULL,
  feed_seq      bigint NOT NULL,
  PRIMARY KEY (shop_id, id)
);
CREATE UNIQUE INDEX variants_external_id ON variants (shop_id, external_id) WHERE external_id <> '' AND deleted_at IS NULL;
CREATE UNIQUE INDEX variants_code ON variants (shop_id, code) WHERE code <> '' AND deleted_at IS NULL;
CREATE INDEX variants_product ON variants (shop_id, product_id);
CREATE INDEX variants_position ON variants (shop_id, feed_xid, feed_seq);

CREATE TABLE inventory_levels (
  shop_id            bigint NOT NULL,
  variant_id         bigint NOT NULL,
  product_id         bigint NOT NULL,
  available_quantity integer NOT NULL DEFAULT 0,
  reserved_quantity  integer NOT NULL DEFAULT 0,
  picked_quantity    integer NOT NULL DEFAULT 0,
  created_at         timestamptz NOT NULL,
  updated_at         timestamptz NOT NULL,
  deleted_at         timestamptz,
  feed_xid           xid8 NOT NULL,
  feed_seq           bigint NOT NULL,
  PRIMARY KEY (shop_id, variant_id)
);
CREATE INDEX inventory_levels_position ON inventory_levels (shop_id, feed_xid, feed_seq);

CREATE TABLE customers (
  shop_id     bigint NOT NULL,
  id          bigint NOT NULL,
  external_id text NOT NULL DEFAULT '',
  code        text NOT NULL,
  full_name   text NOT NULL DEFAULT '',
  phone       text NOT NULL DEFAULT '',
  email       text NOT NULL DEFAULT '',
  gender      text NOT NULL DEFAULT '',
  birthday    text NOT NULL DEFAULT '',
  note        text NOT NULL DEFAULT '',
  status      text NOT NULL,
  created_at  timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL,
  deleted_at  timestamptz,
  feed_xid    xid8 NOT NULL,
  feed_seq    bigint NOT NULL,
  PRIMARY KEY (shop_id, id)
);
CREATE UNIQUE INDEX customers_external_id ON customers (shop_id, external_id) WHERE external_id <> '' AND deleted_at IS NULL;
CREATE UNIQUE INDEX customers_code ON customers (shop_id, code) WHERE deleted_at IS NULL;
CREATE INDEX customers_position ON customers (shop_id, feed_xid, feed_seq);

CREATE TABLE orders (
  shop_id                     bigint NOT NULL,
  id                          bigint NOT NULL,
  code                        text NOT NULL,
  external_id                 text NOT NULL DEFAULT '',
  customer_id                 bigint NOT NULL DEFAULT 0,
  customer_address            jsonb,
  shipping_address            jsonb,
  lines                       jsonb NOT NULL,
  status                      text NOT NULL,
  confirm_status              text NOT NULL,
  fulfillment_shipping_status text NOT NULL DEFAULT '',
  basket_value                bigint NOT NULL,
  total_discount              bigint NOT NULL DEFAULT 0,
  total_fee                   bigint NOT NULL DEFAULT 0,
  total_amount                bigint NOT NULL,
  order_note                  text NOT NULL DEFAULT '',
  created_at                  timestamptz NOT NULL,
  updated_at                  timestamptz NOT NULL,
  confirmed_at                timestamptz,
  cancelled_at                timestamptz,
  cancel_reason               text NOT NULL DEFAULT '',
  deleted_at                  timestamptz,
  feed_xid                    xid8 NOT NULL,
  feed_seq                    bigint NOT NULL,
  PRIMARY KEY (shop_id, id)
);
CREATE UNIQUE INDEX orders_external_id ON orders (shop_id, external_id) WHERE external_id <> '' AND deleted_at IS NULL;
CREATE UNIQUE INDEX orders_code ON orders (shop_id, code) WHERE deleted_at IS NULL;
CREATE INDEX orders_customer ON orders (shop_id, customer_id) WHERE customer_id <> 0;
CREATE INDEX orders_position ON orders (shop_id, feed_xid, feed_seq);

CREATE TABLE fulfillments (
  shop_id        bigint NOT NULL,
  id             bigint NOT NULL,
  order_id       bigint NOT NULL,
  external_id    text NOT NULL DEFAULT '',
  carrier        text NOT NULL DEFAULT '',
  shipping_code  text NOT NULL DEFAULT '',
  shipping_state text NOT NULL,
  cod_amount     bigint NOT NULL DEFAULT 0,
  shipping_fee   bigint NOT NULL DEFAULT 0,
  shipping_note  text NOT NULL DEFAULT '',
  created_at     timestamptz NOT NULL,
  updated_at     timestamptz NOT NULL,
  delivered_at   timestamptz,
  cancelled_at   timestamptz,
  cancel_reason  text NOT NULL DEFAULT '',
  deleted_at     timestamptz,
  feed_xid       xid8 NOT NULL,
  feed_seq       bigint NOT NULL,
  PRIMARY KEY (shop_id, id)
);
CREATE UNIQUE INDEX fulfillments_external_id ON fulfillments (shop_id, external_id) WHERE external_id <> '' AND deleted_at IS NULL;
CREATE INDEX fulfillments_order ON fulfillments (shop_id, order_id);
CREATE INDEX fulfillments_position ON fulfillments (shop_id, feed_xid, feed_seq);
