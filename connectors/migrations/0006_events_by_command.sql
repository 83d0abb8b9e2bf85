-- An Idempotency-Key retry looks up whether its command already took effect.
CREATE INDEX events_command ON events (command_id);
