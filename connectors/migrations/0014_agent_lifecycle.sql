-- Agents change after creation (description, tags, payment rules, status):
-- the sink moves those columns forward by the version of the `AgentUpdated`
-- event that set them, apart from `version`, which balance events move.
ALTER TABLE agents ADD COLUMN settings_version bigint NOT NULL DEFAULT 0;
