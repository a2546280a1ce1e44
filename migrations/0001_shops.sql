-- Ids are int64 and time-ordered like eTop's (snowflake style): milliseconds since
-- 2020-01-01 in the high bits, a sequence in the low 22 bits (4M ids per ms before a repeat).
CREATE SEQUENCE id_seq CYCLE MAXVALUE 4194303;

CREATE FUNCTION next_id() RETURNS bigint LANGUAGE sql VOLATILE AS $$
  SELECT ((floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint - 1577836800000) << 22)
         | nextval('id_seq')
$$;

-- A shop is a tenant. Every other table carries shop_id and every query filters on it.
CREATE TABLE shops (
  id         bigint PRIMARY KEY DEFAULT next_id(),
  name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  created_at timestamptz NOT NULL DEFAULT now()
);

-- API keys: only a SHA-256 of the key is stored; the key itself is shown once, at creation.
-- Keys carry 256 random bits, so a fast hash is enough (no brute force is possible).
CREATE TABLE api_keys (
  id         bigint PRIMARY KEY DEFAULT next_id(),
  shop_id    bigint NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
  name       text NOT NULL DEFAULT '',
  prefix     text NOT NULL,
  key_hash   bytea NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);
CREATE INDEX api_keys_shop_id ON api_keys (shop_id);
