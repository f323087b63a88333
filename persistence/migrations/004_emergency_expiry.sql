-- An emergency with no activity for the configured time closes as `expired`: a closed status,
-- like handed over and cancelled, for the one-active-emergency rule and the owner index.
drop index emergencies_one_active_per_patient;
create unique index emergencies_one_active_per_patient on emergencies (patient_id)
  where status not in ('handed_over', 'cancelled', 'expired');
drop index emergencies_active_owner;
create index emergencies_active_owner on emergencies (owner)
  where status not in ('handed_over', 'cancelled', 'expired');
