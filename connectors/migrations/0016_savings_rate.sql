-- A savings position keeps the rate in force when it opened (annual %),
-- recorded by the agent's processor. Positions opened before: null until
-- their next accrual records the rate in force at their opening.
ALTER TABLE savings ADD COLUMN rate_pct numeric;
