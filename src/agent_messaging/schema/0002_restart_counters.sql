-- Restart counters of hosted agents, readable from any process (`agent-messaging agents list`).
ALTER TABLE agents ADD COLUMN restarts integer NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN last_error text;
