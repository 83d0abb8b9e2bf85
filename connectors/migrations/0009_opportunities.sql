-- The revenue platform's opportunities, one row per opportunity as of its
-- latest event (the sink moves a row only forward, by version). The columns
-- are what lists filter and sort on; `record` is the whole opportunity.
CREATE TABLE opportunities (
    id                uuid PRIMARY KEY,
    tenant_id         uuid             NOT NULL,
    name              text             NOT NULL,
    vertical          text             NOT NULL,
    status            text             NOT NULL,
    score             double precision NOT NULL,
    expected_irr      double precision NOT NULL,
    payback_months    bigint           NOT NULL,
    moat_score        double precision NOT NULL,
    risk_score        double precision NOT NULL,
    scalability_score double precision NOT NULL,
    created_at        timestamptz      NOT NULL,
    updated_at        timestamptz      NOT NULL,
    version           bigint           NOT NULL,
    record            jsonb            NOT NULL
);
CREATE INDEX opportunities_tenant_created ON opportunities (tenant_id, created_at, id);
CREATE INDEX opportunities_tenant_score ON opportunities (tenant_id, score DESC, id);
