import type { Divert } from "../src/domain/divert.ts";
import type postgres from "postgres";
import type { Sql } from "./db.ts";
import type {
  AuditLog, ClaimedEmergency, DestroyedKey, EmergencyEventRow, EmergencyKeyRow, EmergencyStore, HospitalRecord, HospitalStore, MedicalKeyStore, MedicalProfileStore,
  RefreshTokenRecord, RefreshTokenStore, Responder, ResponderStore, StoredMedicalProfile, User, UserStore,
} from "./stores.ts";
import { FencedError, type OutboxWrite, type SnapshotRow } from "./stores.ts";
import { writeOutbox } from "./outbox.ts";
import { chainHash, type AuditEntry } from "../src/audit/chain.ts";
import type { Role } from "../src/auth/tokens.ts";
import { isUuid } from "../src/domain/identity.ts";

/**
 * Postgres implementations of the account stores. Every statement is a tagged template
 * (parameterized); no user data ever reaches `sql.unsafe`.
 */

const UNIQUE_VIOLATION = "23505";

/** Ids of accounts are UUIDs; other subjects (bypass callers) have no rows, and are not queried. */

interface UserRow {
  id: string; email: string; name: string; phone: string | null; role: Role;
  password_hash: string; hospital_id: string | null; created_at: Date;
}

const toUser = (r: UserRow): User => ({
  id: r.id, email: r.email, name: r.name, phone: r.phone ?? undefined, role: r.role,
  passwordHash: r.password_hash, hospitalId: r.hospital_id ?? undefined, createdAt: r.created_at.getTime(),
});

export class PgUserStore implements UserStore {
  private readonly sql: Sql;
  constructor(sql: Sql) { this.sql = sql; }

  async create(u: User): Promise<void> {
    try {
      await this.sql`
        insert into users (id, email, name, phone, role, password_hash, hospital_id, created_at)
        values (${u.id}, ${u.email.toLowerCase()}, ${u.name}, ${u.phone ?? null}, ${u.role}, ${u.passwordHash}, ${u.hospitalId ?? null}, ${new Date(u.createdAt)})`;
    } catch (error) {
      if ((error as { code?: string }).code === UNIQUE_VIOLATION) throw Object.assign(new Error("email taken"), { duplicate: true });
      throw error;
    }
  }

  async byEmail(email: string): Promise<User | undefined> {
    const [r] = await this.sql<UserRow[]>`select id, email, name, phone, role, password_hash, hospital_id, created_at from users where email = ${email.toLowerCase()}`;
    return r ? toUser(r) : undefined;
  }

  async byId(id: string): Promise<User | undefined> {
    if (!isUuid(id)) return undefined;
    const [r] = await this.sql<UserRow[]>`select id, email, name, phone, role, password_hash, hospital_id, created_at from users where id = ${id}`;
    return r ? toUser(r) : undefined;
  }
}

export class PgResponderStore implements ResponderStore {
  private readonly sql: Sql;
  constructor(sql: Sql) { this.sql = sql; }

  async upsert(r: Responder): Promise<void> {
    await this.sql`
      insert into responders (user_id, kind, verified, verified_by, verified_at)
      values (${r.userId}, ${r.kind}, ${r.verified}, ${r.verifiedBy ?? null}, ${r.verifiedAt ? new Date(r.verifiedAt) : null})
      on conflict (user_id) do update set verified = excluded.verified, verified_by = excluded.verified_by, verified_at = excluded.verified_at`;
  }

  async get(userId: string): Promise<Responder | undefined> {
    if (!isUuid(userId)) return undefined;
    const [r] = await this.sql<{ user_id: string; kind: Responder["kind"]; verified: boolean; verified_by: string | null; verified_at: Date | null }[]>`
      select user_id, kind, verified, verified_by, verified_at from responders where user_id = ${userId}`;
    return r && {
      userId: r.user_id, kind: r.kind, verified: r.verified,
      verifiedBy: r.verified_by ?? undefined, verifiedAt: r.verified_at?.getTime(),
    };
  }
}

export class PgRefreshTokenStore implements RefreshTokenStore {
  private readonly sql: Sql;
  constructor(sql: Sql) { this.sql = sql; }

  async put(r: RefreshTokenRecord): Promise<void> {
    await this.sql`
      insert into refresh_tokens (hash, user_id, family, expires_at)
      values (${r.hash}, ${r.userId}, ${r.family}, ${new Date(r.expiresAt)})`;
  }

  async get(hash: string): Promise<RefreshTokenRecord | undefined> {
    const [r] = await this.sql<{ hash: string; user_id: string; family: string; expires_at: Date; rotated_at: Date | null; revoked_at: Date | null }[]>`
      select hash, user_id, family, expires_at, rotated_at, revoked_at from refresh_tokens where hash = ${hash}`;
    return r && {
      hash: r.hash, userId: r.user_id, family: r.family, expiresAt: r.expires_at.getTime(),
      rotatedAt: r.rotated_at?.getTime(), revokedAt: r.revoked_at?.getTime(),
    };
  }

  /** One statement: only the first of two concurrent refreshes with the same token wins. */
  async rotate(hash: string, at: number): Promise<boolean> {
    const rows = await this.sql`
      update refresh_tokens set rotated_at = ${new Date(at)}
      where hash = ${hash} and rotated_at is null and revoked_at is null
      returning hash`;
    return rows.length === 1;
  }

  async revokeFamily(family: string, at: number): Promise<void> {
    await this.sql`update refresh_tokens set revoked_at = ${new Date(at)} where family = ${family} and revoked_at is null`;
  }

  async revokeUser(userId: string, at: number): Promise<void> {
    await this.sql`update refresh_tokens set revoked_at = ${new Date(at)} where user_id = ${userId} and revoked_at is null`;
  }
}

interface HospitalRow {
  id: string; name: string; lat: number; lng: number; specialties: string[];
  emergency_beds: number; icu_beds: number; accepting: boolean; approved: boolean;
  divert_specialties?: string[]; divert_reason?: string | null; divert_until?: Date | null; divert_by?: string | null; divert_at?: Date | null;
}

const toHospital = (r: HospitalRow): HospitalRecord => ({
  id: r.id, name: r.name, lat: r.lat, lng: r.lng, specialties: r.specialties,
  emergencyBeds: r.emergency_beds, icuBeds: r.icu_beds, accepting: r.accepting, approved: r.approved,
  ...(r.divert_until ? {
    divert: {
      specialties: (r.divert_specialties ?? []) as Divert["specialties"], reason: r.divert_reason ?? "", until: r.divert_until.getTime(),
      setBy: r.divert_by ?? "", setAt: r.divert_at?.getTime() ?? 0,
    },
  } : {}),
});

export class PgHospitalStore implements HospitalStore {
  private readonly sql: Sql;
  constructor(sql: Sql) { this.sql = sql; }

  async seedIfEmpty(seed: Omit<HospitalRecord, "approved">[]): Promise<number> {
    return this.sql.begin(async (tx) => {
      // one node seeds; the others wait here and then find the table filled
      await tx`select pg_advisory_xact_lock(7243001)`;
      const [{ n }] = await tx<{ n: number }[]>`select count(*)::int as n from hospitals`;
      if (n > 0) return 0;
      for (const h of seed) {
        await tx`
          insert into hospitals (id, name, lat, lng, specialties, emergency_beds, icu_beds, accepting, approved, approved_at)
          values (${h.id}, ${h.name}, ${h.lat}, ${h.lng}, ${h.specialties}, ${h.emergencyBeds}, ${h.icuBeds}, ${h.accepting}, true, now())`;
      }
      return seed.length;
    });
  }

  async approved(): Promise<HospitalRecord[]> {
    const rows = await this.sql<HospitalRow[]>`
      select id, name, lat, lng, specialties, emergency_beds, icu_beds, accepting, approved,
        divert_specialties, divert_reason, divert_until, divert_by, divert_at
      from hospitals where approved order by id`;
    return rows.map(toHospital);
  }

  async register(h: Omit<HospitalRecord, "approved">, _by: string): Promise<boolean> {
    const rows = await this.sql`
      insert into hospitals (id, name, lat, lng, specialties, emergency_beds, icu_beds, accepting, approved)
      values (${h.id}, ${h.name}, ${h.lat}, ${h.lng}, ${h.specialties}, ${h.emergencyBeds}, ${h.icuBeds}, ${h.accepting}, false)
      on conflict (id) do nothing
      returning id`;
    return rows.length === 1;
  }

  async approve(id: string, by: string): Promise<HospitalRecord | undefined> {
    const [r] = await this.sql<HospitalRow[]>`
      update hospitals set approved = true, approved_by = ${isUuid(by) ? by : null}, approved_at = now(), updated_at = now()
      where id = ${id}
      returning id, name, lat, lng, specialties, emergency_beds, icu_beds, accepting, approved`;
    return r && toHospital(r);
  }

  async setDivert(id: string, d: Divert | undefined): Promise<void> {
    await this.sql`
      update hospitals set divert_specialties = ${d?.specialties ?? []}, divert_reason = ${d?.reason ?? null},
        divert_until = ${d ? new Date(d.until) : null}, divert_by = ${d?.setBy ?? null}, divert_at = ${d ? new Date(d.setAt) : null}, updated_at = now()
      where id = ${id}`;
  }

  async updateAvailability(id: string, a: { emergencyBeds: number; icuBeds: number; accepting: boolean }): Promise<void> {
    await this.sql`
      update hospitals set emergency_beds = ${a.emergencyBeds}, icu_beds = ${a.icuBeds}, accepting = ${a.accepting}, updated_at = now()
      where id = ${id}`;
  }
}

export class PgMedicalProfileStore implements MedicalProfileStore {
  private readonly sql: Sql;
  constructor(sql: Sql) { this.sql = sql; }

  async upsert(p: StoredMedicalProfile): Promise<void> {
    // the wrapped key and the ciphertext live in separate tables (backed up apart), written together
    await this.sql.begin(async (tx) => {
      await tx`
        insert into medical_profiles (patient_id, ciphertext, iv, tag, consent_sharing, consent_version, updated_at)
        values (${p.patientId}, ${p.ciphertext}, ${p.iv}, ${p.tag}, ${p.consentSharing}, ${p.consentVersion}, ${new Date(p.updatedAt)})
        on conflict (patient_id) do update set ciphertext = excluded.ciphertext, iv = excluded.iv, tag = excluded.tag,
          consent_sharing = excluded.consent_sharing, consent_version = excluded.consent_version, updated_at = excluded.updated_at`;
      await tx`
        insert into medical_profile_keys (patient_id, key_id, wrapped_key) values (${p.patientId}, ${p.keyId}, ${p.wrappedKey})
        on conflict (patient_id) do update set key_id = excluded.key_id, wrapped_key = excluded.wrapped_key`;
    });
  }

  async get(patientId: string): Promise<StoredMedicalProfile | undefined> {
    if (!isUuid(patientId)) return undefined;
    const [r] = await this.sql<{
      patient_id: string; key_id: string; wrapped_key: Buffer; ciphertext: Buffer; iv: Buffer; tag: Buffer;
      consent_sharing: boolean; consent_version: number; updated_at: Date;
    }[]>`select p.patient_id, k.key_id, k.wrapped_key, p.ciphertext, p.iv, p.tag, p.consent_sharing, p.consent_version, p.updated_at
         from medical_profiles p join medical_profile_keys k on k.patient_id = p.patient_id where p.patient_id = ${patientId}`;
    return r && {
      patientId: r.patient_id, keyId: r.key_id, wrappedKey: r.wrapped_key, ciphertext: r.ciphertext, iv: r.iv, tag: r.tag,
      consentSharing: r.consent_sharing, consentVersion: r.consent_version, updatedAt: r.updated_at.getTime(),
    };
  }

  async erase(patientId: string, auditOf?: (k: DestroyedKey) => AuditEntry): Promise<DestroyedKey[] | undefined> {
    if (!isUuid(patientId)) return undefined;
    return this.sql.begin(async (tx) => {
      // the profile row first: a disclosure storing its key at this moment (MedicalKeyStore.addProfile
      // holds a share lock on this row) finishes before, and its key is deleted just below
      const rows = await tx`delete from medical_profiles where patient_id = ${patientId} returning patient_id`;
      await tx`delete from medical_profile_keys where patient_id = ${patientId}`;
      if (rows.length === 0) return undefined;
      const keys = await tx<{ emergency_id: string }[]>`
        delete from medical_keys where patient_id = ${patientId} and purpose = 'profile' returning emergency_id`;
      const destroyed = keys.map((k) => ({ emergencyId: k.emergency_id, purpose: "profile" as const, patientId }));
      if (auditOf) for (const k of destroyed) await appendAudit(tx, auditOf(k));
      return destroyed;
    });
  }
}

type KeyRow = { purpose: "clinical" | "profile"; patient_id: string | null; key_id: string; wrapped_key: Buffer };
const toKey = (r: KeyRow): EmergencyKeyRow => ({ purpose: r.purpose, patientId: r.patient_id ?? undefined, keyId: r.key_id, wrappedKey: r.wrapped_key });

/** The wrapped keys of emergencies (table `medical_keys`), apart from the ciphertext they open. */
export class PgMedicalKeyStore implements MedicalKeyStore {
  private readonly sql: Sql;
  constructor(sql: Sql) { this.sql = sql; }

  async addClinical(emergencyId: string, keyId: string, wrappedKey: Buffer): Promise<EmergencyKeyRow> {
    await this.sql`
      insert into medical_keys (emergency_id, purpose, key_id, wrapped_key) values (${emergencyId}, 'clinical', ${keyId}, ${wrappedKey})
      on conflict (emergency_id, purpose) do nothing`;
    const [row] = await this.sql<KeyRow[]>`
      select purpose, patient_id, key_id, wrapped_key from medical_keys where emergency_id = ${emergencyId} and purpose = 'clinical'`;
    if (!row) throw new Error("the emergency's clinical key was destroyed");
    return toKey(row);
  }

  async addProfile(emergencyId: string, patientId: string, keyId: string, wrappedKey: Buffer): Promise<EmergencyKeyRow | undefined> {
    if (!isUuid(patientId)) return undefined;
    return this.sql.begin(async (tx) => {
      // an erasure deletes this row; holding it here orders the two (see PgMedicalProfileStore.erase)
      const [profile] = await tx`select 1 from medical_profiles where patient_id = ${patientId} for key share`;
      if (!profile) return undefined;
      await tx`
        insert into medical_keys (emergency_id, purpose, patient_id, key_id, wrapped_key) values (${emergencyId}, 'profile', ${patientId}, ${keyId}, ${wrappedKey})
        on conflict (emergency_id, purpose) do nothing`;
      const [row] = await tx<KeyRow[]>`
        select purpose, patient_id, key_id, wrapped_key from medical_keys where emergency_id = ${emergencyId} and purpose = 'profile'`;
      return row && toKey(row);
    });
  }

  async destroyClosedBefore(cutoff: Date, limit: number, auditOf: (k: DestroyedKey) => AuditEntry): Promise<DestroyedKey[]> {
    // several nodes may sweep at once: each key is deleted (and audited) by one of them; the
    // deletions and their audit records commit together
    return this.sql.begin(async (tx) => {
      const rows = await tx<{ emergency_id: string; purpose: "clinical" | "profile"; patient_id: string }[]>`
        delete from medical_keys k using emergencies e
        where e.id = k.emergency_id and (k.emergency_id, k.purpose) in (
          select k2.emergency_id, k2.purpose from medical_keys k2 join emergencies e2 on e2.id = k2.emergency_id
          where e2.closed_at is not null and e2.closed_at < ${cutoff}
          order by e2.closed_at limit ${limit}
          for update of k2 skip locked)
        returning k.emergency_id, k.purpose, e.patient_id`;
      const destroyed = rows.map((r) => ({ emergencyId: r.emergency_id, purpose: r.purpose, patientId: r.patient_id }));
      for (const k of destroyed) await appendAudit(tx, auditOf(k));
      return destroyed;
    });
  }
}

/** The audit log: append-only (a trigger refuses UPDATE and DELETE) and hash-chained. */
export class PgAuditLog implements AuditLog {
  private readonly sql: Sql;
  constructor(sql: Sql) { this.sql = sql; }

  async append(entry: AuditEntry): Promise<void> {
    await this.sql.begin((tx) => appendAudit(tx, entry));
  }
}

type TransactionSql = postgres.TransactionSql<{}>;

/** Appends to the audit chain inside the caller's transaction (so a change and its record commit together). */
async function appendAudit(tx: TransactionSql, entry: AuditEntry): Promise<void> {
  // the chain needs one writer at a time, cluster-wide
  await tx`select pg_advisory_xact_lock(7243002)`;
  const [last] = await tx<{ hash: Buffer }[]>`select hash from audit_log order by seq desc limit 1`;
  const prev = last?.hash ?? null;
  const hash = chainHash(prev, entry);
  await tx`
    insert into audit_log (at, actor, actor_role, action, subject, emergency_id, fields, break_glass, reason, node, outcome, prev_hash, hash)
    values (${entry.at}, ${entry.actor}, ${entry.actorRole}, ${entry.action}, ${entry.subject ?? null}, ${entry.emergencyId ?? null},
            ${entry.fields ?? null}, ${entry.breakGlass}, ${entry.reason ?? null}, ${entry.node ?? null}, ${entry.outcome}, ${prev}, ${hash})`;
}

export class PgEmergencyStore implements EmergencyStore {
  private readonly sql: Sql;
  constructor(sql: Sql) { this.sql = sql; }

  async open(e: { id: string; patientId: string; bypass: boolean; status: string; priority: string; createdAt: number; node: string }, first: EmergencyEventRow,
    clinicalKey?: { keyId: string; wrappedKey: Buffer }, outbox?: OutboxWrite): Promise<void> {
    await this.sql.begin(async (tx) => {
      await tx`
        insert into emergencies (id, patient_id, bypass, status, priority, created_at, node)
        values (${e.id}, ${e.patientId}, ${e.bypass}, ${e.status}, ${e.priority}, ${new Date(e.createdAt)}, ${e.node})`;
      await tx`
        insert into emergency_events (emergency_id, seq, type, actor, payload, idempotency_key, at)
        values (${e.id}, ${first.seq}, ${first.type}, ${first.actor}, ${tx.json(first.payload as never)}, ${first.idempotencyKey ?? null}, ${new Date(first.at)})`;
      if (clinicalKey) {
        await tx`insert into medical_keys (emergency_id, purpose, key_id, wrapped_key) values (${e.id}, 'clinical', ${clinicalKey.keyId}, ${clinicalKey.wrappedKey})`;
      }
      await writeOutbox(tx, outbox);
    });
  }

  async claim(id: string, owner: string, node: string): Promise<ClaimedEmergency | undefined> {
    if (!isUuid(id)) return undefined;
    return this.sql.begin(async (tx) => {
      const [row] = await tx<{ fence: string; patient_id: string; bypass: boolean }[]>`
        update emergencies set fence = fence + 1, owner = ${owner}, node = ${node}
        where id = ${id} and status not in ('handed_over', 'cancelled', 'expired')
        returning fence, patient_id, bypass`;
      if (!row) return undefined;
      // three reads, pipelined: one round trip
      const [[snap], [alert], keys] = await Promise.all([
        tx<{ state: Buffer; positions: Buffer | null }[]>`select state, positions from emergency_snapshots where emergency_id = ${id}`,
        tx<{ payload: Record<string, unknown>; at: Date }[]>`select payload, at from emergency_events where emergency_id = ${id} and seq = 1`,
        tx<KeyRow[]>`select purpose, patient_id, key_id, wrapped_key from medical_keys where emergency_id = ${id}`,
      ]);
      return { id, fence: Number(row.fence), patientId: row.patient_id, bypass: row.bypass, snapshot: snap?.state, positions: snap?.positions ?? undefined, alert: alert?.payload ?? {}, keys: keys.map(toKey), alertAt: alert?.at.getTime() };
    });
  }

  async commit(id: string, fence: number, events: EmergencyEventRow[], snapshot: { seq: number; state: Buffer }, status: string, signal?: AbortSignal, outbox?: OutboxWrite): Promise<boolean> {
    try {
      await this.sql.begin(async (tx) => {
        signal?.throwIfAborted();
        // the row lock makes a takeover wait for this commit, and this commit see a takeover; it is
        // taken exclusive at once (the status is updated below), so that a snapshot batch holding a
        // share lock on it never waits on this transaction while this one waits on it
        const [row] = await tx<{ fence: string }[]>`select fence from emergencies where id = ${id} for update`;
        if (!row || Number(row.fence) !== fence) throw new FencedError(id);
        for (const ev of events) {
          await tx`
            insert into emergency_events (emergency_id, seq, type, actor, payload, idempotency_key, at)
            values (${id}, ${ev.seq}, ${ev.type}, ${ev.actor}, ${tx.json(ev.payload as never)}, ${ev.idempotencyKey ?? null}, ${new Date(ev.at)})
            on conflict (emergency_id, seq) do nothing`; // written before by a batch whose answer was lost
        }
        await tx`
          insert into emergency_snapshots (emergency_id, seq, state, taken_at) values (${id}, ${snapshot.seq}, ${snapshot.state}, now())
          on conflict (emergency_id) do update set seq = excluded.seq, state = excluded.state, positions = null, taken_at = excluded.taken_at`;
        const closed = status === "handed_over" || status === "cancelled" || status === "expired";
        await tx`update emergencies set status = ${status}, closed_at = ${closed ? new Date() : null} where id = ${id}`;
        await writeOutbox(tx, outbox); // the notifications the change causes commit with it, or not at all
        signal?.throwIfAborted(); // abandoned by the caller: roll back rather than commit late
      });
      return true;
    } catch (error) {
      if ((error as { code?: string; constraint_name?: string }).code === UNIQUE_VIOLATION
        && (error as { constraint_name?: string }).constraint_name === "emergency_events_idempotency") return false;
      throw error;
    }
  }

  async saveSnapshots(rows: SnapshotRow[]): Promise<string[]> {
    if (rows.length === 0) return [];
    // One statement text whatever the number of rows (arrays, not a row list): one prepared
    // statement per connection, not one per batch size. The snapshots travel as base64 text,
    // a third smaller than the client's hex encoding of bytea.
    return this.sql.begin(async (tx) => {
      const current = await tx<{ id: string; fence: string }[]>`
        select id, fence from emergencies where id = any(${rows.map((r) => r.id)}::uuid[]) order by id for share`;
      const fences = new Map(current.map((r) => [r.id, Number(r.fence)]));
      const held = rows.filter((r) => fences.get(r.id) === r.fence);
      if (held.length > 0) {
        const whole = held.filter((r) => r.state);
        const moved = held.filter((r) => !r.state && r.positions);
        if (whole.length > 0) {
          await tx`
            insert into emergency_snapshots (emergency_id, seq, state, positions, taken_at)
            select s.id, s.seq, decode(s.state, 'base64'), decode(s.positions, 'base64'), now()
            from unnest(${whole.map((r) => r.id)}::uuid[], ${whole.map((r) => r.seq)}::bigint[], ${whole.map((r) => r.state!.toString("base64"))}::text[],
                        ${whole.map((r) => r.positions?.toString("base64") ?? null)}::text[]) as s(id, seq, state, positions)
            on conflict (emergency_id) do update set seq = excluded.seq, state = excluded.state, positions = excluded.positions, taken_at = excluded.taken_at
            where emergency_snapshots.seq <= excluded.seq`;
        }
        if (moved.length > 0) {
          // on top of the stored snapshot, unless a newer one (a later critical change) is there
          await tx`
            update emergency_snapshots t set positions = decode(s.positions, 'base64'), taken_at = now()
            from unnest(${moved.map((r) => r.id)}::uuid[], ${moved.map((r) => r.seq)}::bigint[], ${moved.map((r) => r.positions!.toString("base64"))}::text[]) as s(id, seq, positions)
            where t.emergency_id = s.id and t.seq <= s.seq`;
        }
        const events = held.flatMap((r) => (r.events ?? []).map((e) => ({ id: r.id, ...e })));
        if (events.length > 0) {
          await tx`
            insert into emergency_events (emergency_id, seq, type, actor, payload, at)
            select e.id, e.seq, e.type, e.actor, e.payload, e.at
            from unnest(${events.map((e) => e.id)}::uuid[], ${events.map((e) => e.seq)}::int[], ${events.map((e) => e.type)}::text[],
                        ${events.map((e) => e.actor)}::text[], ${events.map((e) => JSON.stringify(e.payload))}::jsonb[],
                        ${events.map((e) => new Date(e.at).toISOString())}::timestamptz[]) as e(id, seq, type, actor, payload, at)
            on conflict (emergency_id, seq) do nothing`;
        }
      }
      return rows.filter((r) => fences.get(r.id) !== r.fence).map((r) => r.id);
    });
  }

  async activeOwners(): Promise<{ id: string; owner?: string }[]> {
    const rows = await this.sql<{ id: string; owner: string | null }[]>`
      select id, owner from emergencies where status not in ('handed_over', 'cancelled', 'expired') order by created_at`;
    return rows.map((r) => ({ id: r.id, owner: r.owner ?? undefined }));
  }

  async isActive(id: string): Promise<boolean> {
    const [row] = await this.sql`select 1 from emergencies where id = ${id} and status not in ('handed_over', 'cancelled', 'expired')`;
    return row !== undefined;
  }

  async activeFor(patientId: string): Promise<string | undefined> {
    const [row] = await this.sql<{ id: string }[]>`
      select id from emergencies where patient_id = ${patientId} and status not in ('handed_over', 'cancelled', 'expired')`;
    return row?.id;
  }

  async raisedAny(patientId: string): Promise<boolean> {
    const [row] = await this.sql`select 1 from emergencies where patient_id = ${patientId} limit 1`;
    return row !== undefined;
  }
}
