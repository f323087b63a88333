-- The notifications outbox in use: each row is one message to one recipient on one channel,
-- written in the same transaction as the change that causes it, and delivered by the outbox
-- worker of any node (src/notify/worker.ts).
--
-- `dedupe_key` is the message's delivery key: unique, so that a change written twice (a retry)
-- queues its message once; it travels with every delivery attempt (Idempotency-Key) so that a
-- receiver can drop a repeat. `status`: pending (due at next_attempt_at), delivered, dead (the
-- attempt limit was reached), cancelled (made moot before it was due, e.g. the hospital
-- acknowledged before its SMS fallback), skipped (the recipient has no address on that channel).
-- A worker claims due rows with FOR UPDATE SKIP LOCKED and moves next_attempt_at past a lease, so
-- that no other node takes them while it sends; a worker that dies leaves them due again when
-- the lease ends.
alter table outbox
  add column dedupe_key text,
  add column emergency_id uuid,
  add column event text not null default '',
  add column status text not null default 'pending'
    check (status in ('pending', 'delivered', 'dead', 'cancelled', 'skipped')),
  add column claimed_by text,
  add column last_attempt_at timestamptz,
  add column finished_at timestamptz;
update outbox set dedupe_key = 'legacy:' || id where dedupe_key is null;
update outbox set status = 'delivered' where delivered_at is not null;
alter table outbox alter column dedupe_key set not null;
create unique index outbox_dedupe_key on outbox (dedupe_key);
drop index outbox_due_idx;
create index outbox_due_idx on outbox (next_attempt_at) where status = 'pending';
create index outbox_dead_idx on outbox (finished_at) where status = 'dead';
create index outbox_emergency_idx on outbox (emergency_id) where emergency_id is not null;

-- Each user's notification language and the channels they may be reached on (in order).
create table notification_preferences (
  user_id uuid primary key references users (id) on delete cascade,
  language text not null default 'en' check (language in ('en', 'sw')),
  channels text[] not null default '{push,sms}',
  updated_at timestamptz not null default now()
);

-- Web Push subscriptions of a user's devices (the browser's PushSubscription).
create table push_subscriptions (
  user_id uuid not null references users (id) on delete cascade,
  endpoint text not null,
  p256dh text not null,
  auth text not null,
  created_at timestamptz not null default now(),
  primary key (user_id, endpoint)
);

-- A hospital's duty phone (SMS fallback when its wallboard does not acknowledge) and the URL of
-- its signed webhook (told when an emergency is routed to it).
alter table hospitals
  add column duty_phone text,
  add column webhook_url text;

-- Inbound SMS and USSD find the sender's account by its phone number (E.164).
create index users_phone_idx on users (phone) where phone is not null;
