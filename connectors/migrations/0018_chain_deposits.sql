-- Deposits to users' custodial addresses seen on chain (token Transfer
-- logs not sent by the bank itself), each credited once to the user's
-- wallet by a FundWallet command whose id is derived from the log.
CREATE TABLE chain_deposits (
    chain_id     bigint      NOT NULL,
    tx_hash      text        NOT NULL,
    log_index    bigint      NOT NULL,
    user_id      uuid        NOT NULL,
    from_address text        NOT NULL,
    amount       numeric     NOT NULL,
    block_number bigint      NOT NULL,
    seen_at      timestamptz NOT NULL DEFAULT now(),
    credited     boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (chain_id, tx_hash, log_index)
);
CREATE INDEX chain_deposits_uncredited ON chain_deposits (chain_id) WHERE NOT credited;

-- How far the watcher has scanned (the next block to read), per chain.
CREATE TABLE chain_deposit_scan (
    chain_id   bigint PRIMARY KEY,
    next_block bigint NOT NULL
);
