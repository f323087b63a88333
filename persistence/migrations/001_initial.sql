-- Haven's initial schema. Tables and indexes only; no data.
-- Applied by persistence/db.ts migrate() inside one transaction: no BEGIN/COMMIT here.

create table hospitals (
  id text primary key,
  name text not null,
  lat double precision not null,
  lng double precision not null,
  specialties text[] not null,
  emergency_beds int not null,
  icu_beds int not null,
  accepting boolean not null,
  approved boolean not null default false,
  approved_by uuid,
  approved_at timestamptz,
  updated_at timestamptz not null default now()
);

create table users (
  id uuid primary key,
  -- Lower-cased by the application before it is stored or looked up.
  email text not null unique,
  name text not null,
  phone text,
  role text not null check (role in ('patient', 'first_aider', 'ambulance_crew', 'hospital_staff', 'hospital_admin', 'ops_admin')),
  password_hash text not null,
  hospital_id text references hospitals (id),
  created_at timestamptz not null default now()
);

-- Only the sha-256 of a refresh token is stored. Tokens of one login share a family.
create table refresh_tokens (
  hash text primary key,
  user_id uuid not null references users on delete cascade,
  family uuid not null,
  expires_at timestamptz not null,
  rotated_at timestamptz,
  revoked_at timestamptz
);
create index refresh_tokens_family_idx on refresh_tokens (family);
create index refresh_tokens_user_id_idx on refresh_tokens (user_id);

create table responders (
  user_id uuid primary key references users on delete cascade,
  kind text not null check (kind in ('first_aider', 'ambulance_crew')),
  verified boolean not null default false,
  verified_by uuid,
  verified_at timestamptz
);

-- patient_id is text: a bypass (no account) alert has no user row.
create table emergencies (
  id uuid primary key,
  patient_id text not null,
  bypass boolean not null,
  status text not null,
  priority text not null,
  created_at timestamptz not null,
  closed_at timestamptz,
  node text
);
-- At most one active emergency per patient.
create unique index emergencies_one_active_per_patient on emergencies (patient_id)
  where status not in ('handed_over', 'cancelled');

-- The timeline: append-only (see the trigger below).
create table emergency_events (
  emergency_id uuid not null references emergencies,
  seq int not null,
  type text not null,
  actor text not null,
  payload jsonb not null,
  idempotency_key text,
  at timestamptz not null,
  primary key (emergency_id, seq)
);
-- A retried command (same actor, same key) is recorded once.
create unique index emergency_events_idempotency on emergency_events (emergency_id, actor, idempotency_key)
  where idempotency_key is not null;

create table emergency_snapshots (
  emergency_id uuid primary key references emergencies,
  seq int not null,
  state bytea not null,
  taken_at timestamptz not null
);

-- Encrypted at the application level (AES-256-GCM, one data key per patient wrapped by the
-- master key `key_id`): deleting the row or the key erases the profile.
create table medical_profiles (
  patient_id uuid primary key references users on delete cascade,
  key_id text not null,
  wrapped_key bytea not null,
  ciphertext bytea not null,
  iv bytea not null,
  tag bytea not null,
  consent_sharing boolean not null,
  consent_version int not null,
  updated_at timestamptz not null
);

-- One record per read or write of health data; never the values. Append-only and hash-chained
-- (hash covers prev_hash and the record).
create table audit_log (
  seq bigserial primary key,
  at timestamptz not null default now(),
  actor text not null,
  actor_role text not null,
  action text not null,
  subject text,
  emergency_id uuid,
  fields text[],
  break_glass boolean not null default false,
  reason text,
  node text,
  outcome text not null,
  prev_hash bytea,
  hash bytea not null
);

-- Notifications to deliver (SMS, push, ...), retried with backoff until delivered.
create table outbox (
  id bigserial primary key,
  channel text not null,
  recipient text not null,
  payload jsonb not null,
  created_at timestamptz not null default now(),
  attempts int not null default 0,
  next_attempt_at timestamptz not null default now(),
  delivered_at timestamptz,
  last_error text
);
create index outbox_due_idx on outbox (next_attempt_at) where delivered_at is null;

-- Append-only enforcement. Haven only ever INSERTs into the timeline (emergency_events) and the
-- audit log; any UPDATE, DELETE or TRUNCATE of them is refused here, whoever issues it. This is
-- a second line of defence: the table owner can still disable triggers, so in production the
-- application role should also be granted only INSERT and SELECT on these two tables.
create function haven_refuse_change() returns trigger
language plpgsql as $$
begin
  raise exception '% on % refused: the table is append-only', tg_op, tg_table_name
    using errcode = 'restrict_violation',
          hint = 'Haven only inserts into the emergency timeline and the audit log.';
end
$$;

create trigger emergency_events_append_only
  before update or delete on emergency_events
  for each row execute function haven_refuse_change();
create trigger emergency_events_no_truncate
  before truncate on emergency_events
  for each statement execute function haven_refuse_change();

create trigger audit_log_append_only
  before update or delete on audit_log
  for each row execute function haven_refuse_change();
create trigger audit_log_no_truncate
  before truncate on audit_log
  for each statement execute function haven_refuse_change();
