-- Identity for both APIs: a tier per user (NULL: the configured default),
-- live and sandbox keys, and login sessions with single-use refresh tokens.

ALTER TABLE users ADD COLUMN tier text;

-- A sandbox (`test_sk_`) key acts for its user's sandbox tenant.
ALTER TABLE api_keys ADD COLUMN mode text NOT NULL DEFAULT 'live';

-- One login: its refresh tokens form a family; revoking the session (logout,
-- or a spent refresh token presented again) ends every token of it.
CREATE TABLE auth_sessions (
    id          uuid PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id);

CREATE TABLE refresh_tokens (
    id            uuid PRIMARY KEY,            -- the public half of the token
    session_id    uuid        NOT NULL REFERENCES auth_sessions (id),
    secret_sha256 bytea       NOT NULL,        -- SHA-256 of the secret half
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,                 -- set once: refresh tokens are single-use
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
