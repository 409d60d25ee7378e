-- Retention (hub/retention.py) prunes events by when the hub received them, not by the
-- agents' clocks: without an index each pruning batch would scan the table.
CREATE INDEX events_received_at ON events (received_at);
