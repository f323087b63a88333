import type postgres from "postgres";
import type { Sql } from "./client.ts";
import type { ClaimedMessage, OutboxRow, OutboxStatus, OutboxStore, OutboxWrite } from "./stores.ts";

type TransactionSql = postgres.TransactionSql<{}> | Sql;

/**
 * Writes a change's notifications inside the caller's transaction: they commit with it or not at
 * all. A message whose key is queued already is not queued again (a retried change); a cancel
 * touches only messages still pending.
 */
export async function writeOutbox(tx: TransactionSql, w: OutboxWrite | undefined): Promise<void> {
  if (!w) return;
  const m = w.messages;
  if (m.length > 0) {
    await tx`
      insert into outbox (dedupe_key, channel, recipient, event, emergency_id, payload, next_attempt_at)
      select k, c, r, e, id, p::jsonb, at from unnest(${m.map((x) => x.key)}::text[], ${m.map((x) => x.channel)}::text[], ${m.map((x) => x.recipient)}::text[],
        ${m.map((x) => x.event)}::text[], ${m.map((x) => x.emergencyId ?? null) as string[]}::uuid[], ${m.map((x) => JSON.stringify(x.payload))}::text[],
        ${m.map((x) => new Date(x.notBefore ?? Date.now()).toISOString())}::timestamptz[]) as t(k, c, r, e, id, p, at)
      on conflict (dedupe_key) do nothing`;
  }
  if (w.cancel.length > 0) {
    await tx`
      update outbox set status = 'cancelled', finished_at = now()
      where dedupe_key = any(${[...w.cancel]}::text[]) and status = 'pending'`;
  }
}

interface ClaimedRow {
  id: string; dedupe_key: string; channel: ClaimedMessage["channel"]; recipient: string; event: string;
  emergency_id: string | null; payload: ClaimedMessage["payload"]; attempts: number;
}

export class PgOutboxStore implements OutboxStore {
  private readonly sql: Sql;
  constructor(sql: Sql) { this.sql = sql; }

  async write(w: OutboxWrite): Promise<void> {
    await writeOutbox(this.sql, w);
  }

  async claim(node: string, limit: number, leaseMs: number): Promise<ClaimedMessage[]> {
    // one statement: the due rows (outbox_due_idx), locked and skipped by any other node's claim,
    // pushed past the lease and counted as an attempt, all before anything is sent
    const rows = await this.sql<ClaimedRow[]>`
      update outbox o set next_attempt_at = now() + ${leaseMs} * interval '1 millisecond',
        attempts = o.attempts + 1, claimed_by = ${node}, last_attempt_at = now()
      where o.id in (
        select id from outbox where status = 'pending' and next_attempt_at <= now()
        order by next_attempt_at limit ${limit}
        for update skip locked)
      returning o.id, o.dedupe_key, o.channel, o.recipient, o.event, o.emergency_id, o.payload, o.attempts`;
    return rows.map((r) => ({
      id: String(r.id), key: r.dedupe_key, channel: r.channel, recipient: r.recipient, event: r.event,
      emergencyId: r.emergency_id ?? undefined, payload: r.payload, attempts: r.attempts,
    }));
  }

  async finish(m: ClaimedMessage, node: string, outcome: Parameters<OutboxStore["finish"]>[2]): Promise<boolean> {
    // only the claim that made this attempt may record its outcome (a node whose lease ran out
    // while it sent finds another attempt counted, and leaves the row to that one)
    const rows = outcome.status === "pending"
      ? await this.sql`
          update outbox set next_attempt_at = now() + ${outcome.retryInMs} * interval '1 millisecond', last_error = ${outcome.error.slice(0, 500)}
          where id = ${m.id} and claimed_by = ${node} and attempts = ${m.attempts} and status = 'pending' returning id`
      : await this.sql`
          update outbox set status = ${outcome.status}, finished_at = now(),
            delivered_at = ${outcome.status === "delivered" ? new Date() : null}, last_error = ${outcome.error?.slice(0, 500) ?? null}
          where id = ${m.id} and claimed_by = ${node} and attempts = ${m.attempts} and status = 'pending' returning id`;
    return rows.length === 1;
  }

  async list(status: OutboxStatus, limit: number): Promise<OutboxRow[]> {
    const rows = await this.sql<{
      id: string; dedupe_key: string; channel: OutboxRow["channel"]; recipient: string; event: string; emergency_id: string | null; status: OutboxStatus;
      attempts: number; last_error: string | null; created_at: Date; next_attempt_at: Date; finished_at: Date | null;
    }[]>`
      select id, dedupe_key, channel, recipient, event, emergency_id, status, attempts, last_error, created_at, next_attempt_at, finished_at
      from outbox where status = ${status} order by id desc limit ${limit}`;
    return rows.map((r) => ({
      id: String(r.id), key: r.dedupe_key, channel: r.channel, recipient: r.recipient, event: r.event, emergencyId: r.emergency_id ?? undefined,
      status: r.status, attempts: r.attempts, lastError: r.last_error ?? undefined, createdAt: r.created_at.getTime(),
      nextAttemptAt: r.next_attempt_at.getTime(), finishedAt: r.finished_at?.getTime(),
    }));
  }

  async requeue(id: string): Promise<boolean> {
    if (!/^\d{1,18}$/.test(id)) return false;
    const rows = await this.sql`
      update outbox set status = 'pending', attempts = 0, next_attempt_at = now(), finished_at = null, claimed_by = null
      where id = ${id} and status in ('dead', 'skipped') returning id`;
    return rows.length === 1;
  }

  async counts(): Promise<{ status: OutboxStatus; channel: string; n: number }[]> {
    return this.sql<{ status: OutboxStatus; channel: string; n: number }[]>`
      select status, channel, count(*)::int as n from outbox where status in ('pending', 'dead') group by status, channel`;
  }
}

/** Where a user, a hospital is reached, read when a message is delivered (table `notification_preferences`, `push_subscriptions`, `hospitals`). */
export class PgNotifyDirectory {
  private readonly sql: Sql;
  constructor(sql: Sql) { this.sql = sql; }

  async user(userId: string): Promise<{ phone?: string; language?: string; channels?: string[]; push: { endpoint: string; keys: { p256dh: string; auth: string } }[] } | undefined> {
    if (!/^[0-9a-f-]{36}$/i.test(userId)) return undefined;
    const [[u], subs] = await Promise.all([
      this.sql<{ phone: string | null; language: string | null; channels: string[] | null }[]>`
        select u.phone, p.language, p.channels from users u left join notification_preferences p on p.user_id = u.id where u.id = ${userId}`,
      this.sql<{ endpoint: string; p256dh: string; auth: string }[]>`
        select endpoint, p256dh, auth from push_subscriptions where user_id = ${userId} order by created_at desc limit 5`,
    ]);
    if (!u) return undefined;
    return { phone: u.phone ?? undefined, language: u.language ?? undefined, channels: u.channels ?? undefined, push: subs.map((s) => ({ endpoint: s.endpoint, keys: { p256dh: s.p256dh, auth: s.auth } })) };
  }

  async hospital(id: string): Promise<{ dutyPhone?: string; webhookUrl?: string } | undefined> {
    const [h] = await this.sql<{ duty_phone: string | null; webhook_url: string | null }[]>`select duty_phone, webhook_url from hospitals where id = ${id}`;
    return h && { dutyPhone: h.duty_phone ?? undefined, webhookUrl: h.webhook_url ?? undefined };
  }

  async setHospitalContact(id: string, c: { dutyPhone?: string | null; webhookUrl?: string | null }): Promise<boolean> {
    const rows = await this.sql`
      update hospitals set duty_phone = ${c.dutyPhone ?? null}, webhook_url = ${c.webhookUrl ?? null}, updated_at = now() where id = ${id} returning id`;
    return rows.length === 1;
  }

  async preferences(userId: string): Promise<{ language: string; channels: string[] } | undefined> {
    const [p] = await this.sql<{ language: string; channels: string[] }[]>`select language, channels from notification_preferences where user_id = ${userId}`;
    return p;
  }

  async setPreferences(userId: string, p: { language: string; channels: string[] }): Promise<void> {
    await this.sql`
      insert into notification_preferences (user_id, language, channels, updated_at) values (${userId}, ${p.language}, ${p.channels}, now())
      on conflict (user_id) do update set language = excluded.language, channels = excluded.channels, updated_at = excluded.updated_at`;
  }

  async addPushSubscription(userId: string, s: { endpoint: string; keys: { p256dh: string; auth: string } }): Promise<void> {
    await this.sql.begin(async (tx) => {
      await tx`
        insert into push_subscriptions (user_id, endpoint, p256dh, auth) values (${userId}, ${s.endpoint}, ${s.keys.p256dh}, ${s.keys.auth})
        on conflict (user_id, endpoint) do update set p256dh = excluded.p256dh, auth = excluded.auth, created_at = now()`;
      // a user keeps their five newest devices
      await tx`
        delete from push_subscriptions where user_id = ${userId} and endpoint not in (
          select endpoint from push_subscriptions where user_id = ${userId} order by created_at desc limit 5)`;
    });
  }

  /** The account registered with this phone number (E.164), if exactly one is. */
  async userByPhone(phone: string): Promise<{ id: string; name: string; role: string } | undefined> {
    const rows = await this.sql<{ id: string; name: string; role: string }[]>`select id, name, role from users where phone = ${phone} limit 2`;
    return rows.length === 1 ? rows[0] : undefined;
  }
}
