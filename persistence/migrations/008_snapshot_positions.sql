-- The parties' positions written between whole snapshots (msgpack; see
-- rooms/emergency/positions.ts). Newer than `state` when present; a whole snapshot clears it.
alter table emergency_snapshots add column positions bytea;
