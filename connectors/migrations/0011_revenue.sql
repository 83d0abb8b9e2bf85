-- The revenue ledger: one row per posted entry (`record` is the whole
-- entry, hashes included, so the chain can be re-verified from here), the
-- daily aggregates the analytics read (sums of the entries' movements by
-- currency, day, product, vertical and customer segment), and each
-- tenant's monthly targets.
CREATE TABLE revenue_entries (
    event_id         uuid        PRIMARY KEY,
    tenant_id        uuid        NOT NULL,
    sequence         bigint      NOT NULL,
    event_type       text        NOT NULL,
    amount           numeric     NOT NULL,
    currency         text        NOT NULL,
    product_id       text        NOT NULL,
    customer_id      text        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    natural_key      text,
    record           jsonb       NOT NULL,
    UNIQUE (tenant_id, sequence)
);
CREATE INDEX revenue_entries_natural ON revenue_entries (tenant_id, natural_key) WHERE natural_key IS NOT NULL;
CREATE INDEX revenue_entries_customer ON revenue_entries (tenant_id, customer_id, sequence);
CREATE INDEX revenue_entries_product ON revenue_entries (tenant_id, product_id, sequence);

CREATE TABLE revenue_daily (
    tenant_id             uuid    NOT NULL,
    currency              text    NOT NULL,
    day                   date    NOT NULL,
    product_id            text    NOT NULL,
    vertical              text    NOT NULL,
    customer_segment      text    NOT NULL,
    recurring             numeric NOT NULL,
    one_time              numeric NOT NULL,
    refunds               numeric NOT NULL,
    new_customers         bigint  NOT NULL,
    reactivated_customers bigint  NOT NULL,
    churned_customers     bigint  NOT NULL,
    new_mrr               numeric NOT NULL,
    reactivation_mrr      numeric NOT NULL,
    expansion             numeric NOT NULL,
    contraction           numeric NOT NULL,
    churned_mrr           numeric NOT NULL,
    PRIMARY KEY (tenant_id, currency, day, product_id, vertical, customer_segment)
);

CREATE TABLE revenue_targets (
    tenant_id      uuid    NOT NULL,
    currency       text    NOT NULL,
    monthly_target numeric NOT NULL,
    version        bigint  NOT NULL,
    PRIMARY KEY (tenant_id, currency)
);
