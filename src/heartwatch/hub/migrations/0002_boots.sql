-- Migration 2: the boots each host has had, in the order the hub first heard them (finding 7
-- of the fleet's review). Boots are ordered by arrival, never by the agent's clock (an agent
-- restarted with its clock behind would otherwise never be current again): a report of a boot
-- not in this table becomes the host's current boot; a report of a boot in it that is not the
-- current one is of a boot already replaced, and is ignored. Only boots that were current go
-- in (a host's first, and each one it switches to), so "in here, not current" = "replaced".
CREATE TABLE boots (
  host text NOT NULL REFERENCES hosts ON DELETE CASCADE,
  boot text NOT NULL,
  first_seen timestamptz NOT NULL DEFAULT now(),  -- the hub's clock when it became current
  PRIMARY KEY (host, boot));

-- The hosts a hub of migration 1 already knows: their current boot.
INSERT INTO boots (host, boot, first_seen) SELECT host, boot, last_seen FROM hosts;
