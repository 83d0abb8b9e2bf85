-- Users manage their API keys: named keys, when each was last used (to
-- about a minute: gateways record it when they verify a key afresh), and
-- an expiry for a rotated key's overlap window.
ALTER TABLE api_keys ADD COLUMN name text;
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
