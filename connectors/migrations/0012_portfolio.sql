-- The portfolio: each position as of its latest event (moved only forward,
-- by the portfolio's version), every cash flow into or out of a position
-- (its opening capital, rebalancing trades) by day — what valuation reads —
-- and each applied rebalance.
CREATE TABLE portfolio_positions (
    opportunity_id uuid        PRIMARY KEY,
    tenant_id      uuid        NOT NULL,
    product_id     text        NOT NULL,
    capital        numeric     NOT NULL,
    opened_at      timestamptz NOT NULL,
    version        bigint      NOT NULL
);
CREATE INDEX portfolio_positions_tenant ON portfolio_positions (tenant_id, opened_at);

CREATE TABLE portfolio_flows (
    event_id       uuid    NOT NULL,
    opportunity_id uuid    NOT NULL,
    tenant_id      uuid    NOT NULL,
    day            date    NOT NULL,
    amount         numeric NOT NULL,
    PRIMARY KEY (event_id, opportunity_id)
);
CREATE INDEX portfolio_flows_tenant ON portfolio_flows (tenant_id, day);

CREATE TABLE portfolio_rebalances (
    event_id    uuid        PRIMARY KEY,
    tenant_id   uuid        NOT NULL,
    strategy    text        NOT NULL,
    reason      text        NOT NULL,
    applied_at  timestamptz NOT NULL,
    version     bigint      NOT NULL,
    trades      jsonb       NOT NULL
);
CREATE INDEX portfolio_rebalances_tenant ON portfolio_rebalances (tenant_id, version);
