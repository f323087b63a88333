-- Which process holds each active emergency's room, and its fencing token. A node that takes an
-- emergency over (after its holder died) raises `fence`; every later write of the old holder
-- carries the old token and is refused, so a stale holder can never overwrite the new one.
alter table emergencies add column fence bigint not null default 0;
alter table emergencies add column owner text;
create index emergencies_active_owner on emergencies (owner) where status not in ('handed_over', 'cancelled');
