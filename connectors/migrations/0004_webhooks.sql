-- Webhook endpoints and their deliveries. The sink queues a delivery for
-- every matching endpoint in the same transaction as the read model (so
-- intake is exactly once); the dispatcher delivers them, in `seq` order per
-- endpoint. Secrets are stored sealed (AES-256-GCM, connectors::secrets).
CREATE TABLE webhook_endpoints (
    id                   uuid PRIMARY KEY,
    user_id              uuid        NOT NULL,
    url                  text        NOT NULL,
    events               text[]      NOT NULL,
    secret_sealed        text        NOT NULL,
    active               boolean     NOT NULL,
    -- Dead deliveries in a row; at the limit the endpoint is disabled.
    consecutive_failures int         NOT NULL DEFAULT 0,
    disabled_reason      text,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);
CREATE INDEX webhook_endpoints_user ON webhook_endpoints (user_id) WHERE active;

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq             bigserial   NOT NULL,
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    payload         text        NOT NULL,
    -- pending | succeeded | dead
    status          text        NOT NULL,
    attempts        int         NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_status     int,
    last_error      text,
    -- A replay copies a delivery; the copy names its original.
    replay_of       uuid,
    created_at      timestamptz NOT NULL,
    delivered_at    timestamptz
);
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (endpoint_id, event_id) WHERE replay_of IS NULL;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (endpoint_id, created_at);
