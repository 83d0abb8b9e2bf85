-- Payments, as of the latest change on the sender's side (written by the sink
-- from the sender's payment events; `version` is the sender agent's version,
-- so a replayed older event never rolls a payment back).
CREATE TABLE payments (
    id                uuid PRIMARY KEY,
    sender_agent_id   uuid        NOT NULL,
    receiver_agent_id uuid        NOT NULL,
    sender_user_id    uuid        NOT NULL,
    name              text        NOT NULL,
    payment_type      text        NOT NULL,
    amount            numeric     NOT NULL,
    currency          text        NOT NULL,
    method            text        NOT NULL,
    contact_email     text,
    contact_phone     text,
    tags              text[]      NOT NULL,
    status            text        NOT NULL,
    approval_status   text        NOT NULL,
    approval_required boolean     NOT NULL,
    created_at        timestamptz NOT NULL,
    approved_at       timestamptz,
    tx_hash           text,
    version           bigint      NOT NULL
);
CREATE INDEX payments_sender ON payments (sender_agent_id, created_at);
CREATE INDEX payments_receiver ON payments (receiver_agent_id, created_at);
CREATE INDEX payments_sender_user ON payments (sender_user_id, created_at);

-- Summaries filter a user's money movements by time.
CREATE INDEX transactions_user ON transactions (user_id, occurred_at);
-- Balances per account (wallet balance, audits).
CREATE INDEX journal_postings_account ON journal_postings (account);
