-- The read model. Money tables (agents, events, journal_postings, transactions)
-- are written only by the Postgres sink from agentbank.events. Identity tables
-- (users, api_keys) are the gateway's own: credentials never travel on a topic.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    name          text        NOT NULL,
    email         text        NOT NULL,
    password_hash text        NOT NULL,      -- argon2id PHC string
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE api_keys (
    key_id        text PRIMARY KEY,          -- the public half of the key
    secret_sha256 bytea       NOT NULL,      -- SHA-256 of the 256-bit secret half
    user_id       uuid        NOT NULL REFERENCES users (id),
    agent_id      uuid,                      -- set for an agent's own key
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE agents (
    id                            uuid PRIMARY KEY,
    user_id                       uuid        NOT NULL,
    name                          text        NOT NULL,
    description                   text        NOT NULL,
    wallet_address                text,
    currency                      text        NOT NULL,
    daily_limit                   numeric,
    transaction_limit             numeric,
    require_approval_for_all      boolean     NOT NULL,
    require_approval_above_amount numeric,
    tags                          text[]      NOT NULL,
    status                        text        NOT NULL,
    balance                       numeric     NOT NULL,
    version                       bigint      NOT NULL,  -- the agent_version of the last event applied
    created_at                    timestamptz NOT NULL,
    updated_at                    timestamptz NOT NULL
);
CREATE INDEX agents_user ON agents (user_id, created_at, id);

CREATE TABLE events (
    id            uuid PRIMARY KEY,
    type          text        NOT NULL,
    agent_id      uuid        NOT NULL,
    user_id       uuid        NOT NULL,
    command_id    uuid        NOT NULL,
    agent_version bigint      NOT NULL,
    occurred_at   timestamptz NOT NULL,
    topic_partition integer   NOT NULL,
    topic_offset  bigint      NOT NULL
);
CREATE INDEX events_agent ON events (agent_id, agent_version);

CREATE TABLE journal_postings (
    entry_id    text        NOT NULL,
    account     text        NOT NULL,
    amount      numeric     NOT NULL,        -- signed; an entry's amounts sum to zero
    currency    text        NOT NULL,
    event_id    uuid        NOT NULL,
    agent_id    uuid        NOT NULL,
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (entry_id, account)
);

CREATE TABLE transactions (
    event_id      uuid PRIMARY KEY,
    agent_id      uuid        NOT NULL,
    user_id       uuid        NOT NULL,
    kind          text        NOT NULL,      -- deposit | initial balance | …
    amount        numeric     NOT NULL,
    currency      text        NOT NULL,
    balance_after numeric     NOT NULL,
    occurred_at   timestamptz NOT NULL
);
CREATE INDEX transactions_agent ON transactions (agent_id, occurred_at);

-- The sink's position per topic partition, committed with the rows it produced.
CREATE TABLE sink_offsets (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);
