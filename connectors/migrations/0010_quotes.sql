-- Pricing quotes, one row per quote as of its latest event (moved only
-- forward, by version). `record` is the whole quote.
CREATE TABLE quotes (
    id          uuid        PRIMARY KEY,
    tenant_id   uuid        NOT NULL,
    product_key uuid        NOT NULL,
    product_id  text        NOT NULL,
    segment_id  text        NOT NULL,
    status      text        NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    version     bigint      NOT NULL,
    record      jsonb       NOT NULL
);
CREATE INDEX quotes_tenant_created ON quotes (tenant_id, created_at);
