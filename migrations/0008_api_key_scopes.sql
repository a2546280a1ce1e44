-- What each API key may do (src/auth/scopes.ts). NULL: every scope, as for every key made before
-- this column existed. A nullable column without a default: no table rewrite, a brief lock only.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS scopes text[];
