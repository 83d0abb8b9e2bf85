-- An agent's spending policies (schemas::policy::SpendingPolicies as JSON),
-- moved forward by the version of the `AgentUpdated` event that set them.
ALTER TABLE agents ADD COLUMN policies jsonb;
ALTER TABLE agents ADD COLUMN policies_version bigint NOT NULL DEFAULT 0;
