-- Migration 1: the fleet's tables (docs/fleet.md). Applied once, by hub/schema.py, under an
-- advisory lock; later changes are new numbered files, never edits of this one.
CREATE TABLE schema_version (version int PRIMARY KEY, name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now());

CREATE TABLE hosts (
  host text PRIMARY KEY,
  boot text NOT NULL,                     -- the current boot (the last heartbeat/snapshot's)
  labels jsonb NOT NULL DEFAULT '{}',
  config_hash text NOT NULL DEFAULT '', version text NOT NULL DEFAULT '',
  started_at double precision, heartbeat_interval double precision,
  state text NOT NULL DEFAULT 'live',     -- live | stale | unreachable
  state_since timestamptz NOT NULL DEFAULT now(),
  last_seen timestamptz NOT NULL DEFAULT now(),   -- the hub's clock (PG now()) at its last message
  last_seq bigint NOT NULL DEFAULT 0,     -- highest event seq stored for the current boot
  snapshot_at timestamptz);               -- NULL: no snapshot of the current boot yet

CREATE TABLE services (
  host text NOT NULL REFERENCES hosts ON DELETE CASCADE,
  service text NOT NULL,
  instance_of text,
  state text NOT NULL, reason text NOT NULL DEFAULT '',
  since double precision,                 -- agent's wall clock when it entered that state
  status jsonb NOT NULL,                  -- the agent's ServiceStatus item, as last known
  updated_seq bigint NOT NULL DEFAULT 0,  -- the event (current boot) or snapshot seq behind it
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (host, service));

CREATE TABLE events (
  host text NOT NULL, boot text NOT NULL, seq bigint NOT NULL,
  type text NOT NULL,                     -- entry | counts | reply
  at double precision NOT NULL,           -- the agent's clock
  kind text, service text, reason text, state text, previous text, detail jsonb,
  body jsonb NOT NULL,                    -- the whole body as received
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (host, boot, seq));
CREATE INDEX events_host_at ON events (host, at);
CREATE INDEX events_host_service_at ON events (host, service, at);
CREATE INDEX events_kind_at ON events (kind, at);

CREATE TABLE counts (host text NOT NULL, minute bigint NOT NULL, service text NOT NULL,
  kind text NOT NULL, count bigint NOT NULL, PRIMARY KEY (host, minute, service, kind));

CREATE TABLE commands (
  id text PRIMARY KEY, host text NOT NULL, service text, verb text NOT NULL,
  args jsonb NOT NULL DEFAULT '{}', issued_by text NOT NULL,
  issued_at double precision NOT NULL, expires_at double precision NOT NULL,
  status text NOT NULL DEFAULT 'sent',    -- sent | accepted | done | failed | refused | expired
  reason text NOT NULL DEFAULT '', updated_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX commands_host ON commands (host, issued_at);

CREATE TABLE alerts (
  key text PRIMARY KEY,                   -- what makes it one alert (so two hubs send it once)
  host text NOT NULL, service text, kind text NOT NULL, message text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(), sent_by text NOT NULL,
  sent boolean NOT NULL DEFAULT false, error text);
