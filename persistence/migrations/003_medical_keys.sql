-- Emergency medical data at rest. What an emergency discloses (the patient's profile summary) and
-- records (the ATMIST assessment, free-text notes) is sealed by the application under data keys
-- of the emergency's own, wrapped by the master key (HAVEN_MEDICAL_MASTER_KEY). The ciphertext
-- lives in emergency_snapshots and emergency_events; the wrapped keys live here, and only here,
-- so that deleting a row destroys what it sealed and the ciphertext tables can be backed up
-- apart from the keys.
--
--   purpose 'clinical': the assessment and the notes; destroyed after the retention period
--                       (HAVEN_MEDICAL_RETENTION_DAYS) once the emergency is closed.
--   purpose 'profile':  the profile summary disclosed to this emergency's responders; destroyed
--                       with the patient's profile (erasure), or with the clinical key.
--
-- Destroying a key is a DELETE of its row, recorded in the audit log.
create table medical_keys (
  emergency_id uuid not null references emergencies,
  purpose text not null check (purpose in ('clinical', 'profile')),
  -- the patient whose profile a 'profile' key seals (how erasure finds it); null for 'clinical'
  patient_id text,
  key_id text not null,
  wrapped_key bytea not null,
  created_at timestamptz not null default now(),
  primary key (emergency_id, purpose),
  check ((purpose = 'profile') = (patient_id is not null))
);
create index medical_keys_patient_idx on medical_keys (patient_id) where patient_id is not null;

-- The retention sweep looks for emergencies closed before a cut-off.
create index emergencies_closed_at_idx on emergencies (closed_at) where closed_at is not null;

-- A patient's own profile key moves out of the profile's row into a table of its own, for the
-- same reason: the keys tables (medical_keys, medical_profile_keys) can be backed up apart from
-- the ciphertext, and kept for a shorter time.
create table medical_profile_keys (
  patient_id uuid primary key references users on delete cascade,
  key_id text not null,
  wrapped_key bytea not null
);
insert into medical_profile_keys (patient_id, key_id, wrapped_key)
  select patient_id, key_id, wrapped_key from medical_profiles;
alter table medical_profiles drop column key_id, drop column wrapped_key;
