-- A hospital on divert: for every patient (no specialties) or for the named specialties, with a
-- reason, until a time (past it, the divert is off by itself). Null `divert_until`: not on divert.
alter table hospitals
  add column divert_specialties text[] not null default '{}',
  add column divert_reason text,
  add column divert_until timestamptz,
  add column divert_by text,
  add column divert_at timestamptz;
