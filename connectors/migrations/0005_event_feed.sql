-- The event feed behind WebSocket /v1/events: each event's envelope (as
-- webhooks carry it) and its position in the feed. One sink writes events in
-- commit order, so `seq` only grows: a client resuming after position n
-- asks for seq > n and misses nothing.
ALTER TABLE events ADD COLUMN seq bigserial;
ALTER TABLE events ADD COLUMN envelope text;
CREATE INDEX events_user_seq ON events (user_id, seq);
CREATE UNIQUE INDEX events_seq ON events (seq);
