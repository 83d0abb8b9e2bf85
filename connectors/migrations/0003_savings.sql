-- Savings vault positions, as of their latest change (written by the sink
-- from the agent's savings events; `version` is the agent's version, so a
-- replayed older event never rolls a position back). `rate_ms` with
-- `accrued_to` lets a reader compute the value to any later instant exactly
-- (schemas::interest).
CREATE TABLE savings (
    id              uuid PRIMARY KEY,
    agent_id        uuid        NOT NULL,
    user_id         uuid        NOT NULL,
    principal       numeric     NOT NULL,
    currency        text        NOT NULL,
    invested_at     timestamptz NOT NULL,
    status          text        NOT NULL,
    rate_ms         numeric     NOT NULL,
    accrued_to      bigint      NOT NULL,
    interest_posted numeric     NOT NULL,
    closed_at       timestamptz,
    version         bigint      NOT NULL
);
CREATE INDEX savings_agent ON savings (agent_id, invested_at);
CREATE INDEX savings_user ON savings (user_id, status);
