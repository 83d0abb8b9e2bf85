-- Vertical agents: the worker pools that carry out opportunity executions
-- (one pool per configured vertical, plus `general`). Control-plane state,
-- written by the gateway's control route and read by the workers role.

-- What operators asked for. The workers role creates a pool's row (one
-- replica, running) the first time it starts it.
CREATE TABLE vertical_agents (
    pool       text        PRIMARY KEY,
    replicas   integer     NOT NULL CHECK (replicas BETWEEN 1 AND 8),
    paused     boolean     NOT NULL DEFAULT false,
    -- +1 per restart: a workers process running an older generation
    -- stops every instance of the pool and starts them again.
    generation bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every control action: who asked, why, and what it set.
CREATE TABLE vertical_agent_actions (
    id           bigserial   PRIMARY KEY,
    pool         text        NOT NULL,
    action       text        NOT NULL,
    replicas     integer,
    reason       text,
    requested_by text        NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vertical_agent_actions_pool ON vertical_agent_actions (pool, id);

-- What each workers process runs, refreshed about once a second; rows whose
-- heartbeat is old belong to a process that is gone.
CREATE TABLE vertical_agent_status (
    pool             text             NOT NULL,
    process          text             NOT NULL,
    running          integer          NOT NULL,
    generation       bigint           NOT NULL,
    concurrent_tasks integer          NOT NULL,
    cpu_usage        double precision NOT NULL,
    memory_usage     double precision NOT NULL,
    lag              bigint           NOT NULL,
    heartbeat_at     timestamptz      NOT NULL,
    PRIMARY KEY (pool, process)
);

-- How far each pool has read the executions topic (the next offset per
-- partition). Saved after the completions before it were acknowledged, so
-- a restart works a request at most once more, never zero times.
CREATE TABLE vertical_agent_offsets (
    topic       text    NOT NULL,
    pool        text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (topic, pool, partition)
);

-- The agents' task metrics are counted from the tenant's opportunities.
CREATE INDEX opportunities_tenant_vertical ON opportunities (tenant_id, status, lower(btrim(vertical)));
