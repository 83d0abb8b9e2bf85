-- The settlement service's own records (written only by it; the gateway reads
-- transaction hashes from here). One row per settlement request: its intent
-- is recorded — nonce and signed bytes included — before anything is
-- broadcast, so a restart reconciles with the chain instead of sending again.
CREATE TABLE chain_transfers (
    id               uuid PRIMARY KEY,          -- the request's settlement id
    agent_id         uuid        NOT NULL,
    user_id          uuid        NOT NULL,
    kind             text        NOT NULL,      -- faucet_gas | faucet_token | deposit | withdrawal | payment
    asset            text        NOT NULL,      -- USDC | ETH
    amount           numeric     NOT NULL,
    payment_id       text,
    chain_id         bigint      NOT NULL,
    from_address     text        NOT NULL,
    to_address       text        NOT NULL,
    nonce            bigint,                    -- null: refused before signing
    -- signed: recorded (maybe broadcast); included: in a block, not deep
    -- enough; confirmed | failed: decided (published once `reported`).
    status           text        NOT NULL,
    tx_hash          text,                      -- the latest signed version
    raw_tx           bytea,                     -- its signed bytes
    max_fee_per_gas  numeric,
    priority_fee     numeric,
    replaced_hashes  text[]      NOT NULL DEFAULT '{}',  -- earlier versions (fee bumps)
    block_number     bigint,
    block_hash       text,
    reason           text        NOT NULL DEFAULT '',
    requested_at     timestamptz NOT NULL,
    signed_at        timestamptz,
    broadcast_at     timestamptz,
    included_at      timestamptz,
    decided_at       timestamptz,
    reported         boolean     NOT NULL DEFAULT false
);
-- No two transfers in flight from one wallet share a nonce. Decided ones may:
-- after a chain reset, nonces start again from the new chain's.
CREATE UNIQUE INDEX chain_transfers_in_flight_nonce ON chain_transfers (chain_id, from_address, nonce)
    WHERE status IN ('signed', 'included');
CREATE INDEX chain_transfers_unreported ON chain_transfers (requested_at) WHERE NOT reported;
CREATE INDEX chain_transfers_agent ON chain_transfers (agent_id, requested_at);

-- The next nonce of each sending wallet, handed out under a row lock.
CREATE TABLE chain_wallets (
    chain_id   bigint NOT NULL,
    address    text   NOT NULL,
    next_nonce bigint NOT NULL,
    PRIMARY KEY (chain_id, address)
);

-- The chain's genesis block as first seen: a different one means the chain
-- was reset (a fresh Anvil), and in-flight transfers can no longer happen.
CREATE TABLE chain_genesis (
    chain_id     bigint PRIMARY KEY,
    genesis_hash text   NOT NULL
);

-- EXTERNAL payments to an address: the address (receiver_agent_id is then the nil UUID).
ALTER TABLE payments ADD COLUMN receiver_address text;

-- How far the settlement service has read each requests partition (the
-- next offset), moved on only after the request's intent is recorded.
CREATE TABLE chain_request_offsets (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);
