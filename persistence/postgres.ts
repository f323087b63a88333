import type { Sql } from "./db.ts";
import type {
  AuditLog, ClaimedEmergency, EmergencyEventRow, EmergencyStore, HospitalRecord, HospitalStore, MedicalProfileStore, RefreshTokenRecord, RefreshTokenStore, Responder, ResponderStore,
  StoredMedicalProfile, User, UserStore,
} from "./stores.ts";
import { FencedError } from "./stores.ts";
import { chainHash, type AuditEntry } from "../src/audit/chain.ts";
import type { Role } from "../src/auth/tokens.ts";

/**
 * Postgres implementations of the account stores. Every statement is a tagged template
 * (parameterized); no user data ever reaches `sql.unsafe`.
 */

const UNIQUE_VIOLATION = "23505";

/** Ids of accounts are UUIDs; other subjects (bypass callers) have no rows, and are not queried. */
const isUuid = (id: string) => /^[0-9a-f-]{36}$/i.test(id);

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
}

const toHospital = (r: HospitalRow): HospitalRecord => ({
  id: r.id, name: r.name, lat: r.lat, lng: r.lng, specialties: r.specialties,
  emergencyBeds: r.emergency_beds, icuBeds: r.icu_beds, accepting: r.accepting, approved: r.approved,
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
      select id, name, lat, lng, specialties, emergency_beds, icu_beds, accepting, approved
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
    await this.sql`
      insert into medical_profiles (patient_id, key_id, wrapped_key, ciphertext, iv, tag, consent_sharing, consent_version, updated_at)
      values (${p.patientId}, ${p.keyId}, ${p.wrappedKey}, ${p.ciphertext}, ${p.iv}, ${p.tag}, ${p.consentSharing}, ${p.consentVersion}, ${new Date(p.updatedAt)})
      on conflict (patient_id) do update set key_id = excluded.key_id, wrapped_key = excluded.wrapped_key,
        ciphertext = excluded.ciphertext, iv = excluded.iv, tag = excluded.tag, consent_sharing = excluded.consent_sharing,
        consent_version = excluded.consent_version, updated_at = excluded.updated_at`;
  }

  async get(patientId: string): Promise<StoredMedicalProfile | undefined> {
    if (!isUuid(patientId)) return undefined;
    const [r] = await this.sql<{
      patient_id: string; key_id: string; wrapped_key: Buffer; ciphertext: Buffer; iv: Buffer; tag: Buffer;
      consent_sharing: boolean; consent_version: number; updated_at: Date;
    }[]>`select patient_id, key_id, wrapped_key, ciphertext, iv, tag, consent_sharing, consent_version, updated_at
         from medical_profiles where patient_id = ${patientId}`;
    return r && {
      patientId: r.patient_id, keyId: r.key_id, wrappedKey: r.wrapped_key, ciphertext: r.ciphertext, iv: r.iv, tag: r.tag,
      consentSharing: r.consent_sharing, consentVersion: r.consent_version, updatedAt: r.updated_at.getTime(),
    };
  }

  async erase(patientId: string): Promise<boolean> {
    if (!isUuid(patientId)) return false;
    const rows = await this.sql`delete from medical_profiles where patient_id = ${patientId} returning patient_id`;
    return rows.length === 1;
  }
}

/** The audit log: append-only (a trigger refuses UPDATE and DELETE) and hash-chained. */
export class PgAuditLog implements AuditLog {
  private readonly sql: Sql;
  constructor(sql: Sql) { this.sql = sql; }

  async append(entry: AuditEntry): Promise<void> {
    await this.sql.begin(async (tx) => {
      // the chain needs one writer at a time, cluster-wide
      await tx`select pg_advisory_xact_lock(7243002)`;
      const [last] = await tx<{ hash: Buffer }[]>`select hash from audit_log order by seq desc limit 1`;
      const prev = last?.hash ?? null;
      const hash = chainHash(prev, entry);
      await tx`
        insert into audit_log (at, actor, actor_role, action, subject, emergency_id, fields, break_glass, reason, node, outcome, prev_hash, hash)
        values (${entry.at}, ${entry.actor}, ${entry.actorRole}, ${entry.action}, ${entry.subject ?? null}, ${entry.emergencyId ?? null},
                ${entry.fields ?? null}, ${entry.breakGlass}, ${entry.reason ?? null}, ${entry.node ?? null}, ${entry.outcome}, ${prev}, ${hash})`;
    });
  }
}

export class PgEmergencyStore implements EmergencyStore {
  private readonly sql: Sql;
  constructor(sql: Sql) { this.sql = sql; }

  async open(e: { id: string; patientId: string; bypass: boolean; status: string; priority: string; createdAt: number; node: string }, first: EmergencyEventRow): Promise<void> {
    await this.sql.begin(async (tx) => {
      await tx`
        insert into emergencies (id, patient_id, bypass, status, priority, created_at, node)
        values (${e.id}, ${e.patientId}, ${e.bypass}, ${e.status}, ${e.priority}, ${new Date(e.createdAt)}, ${e.node})`;
      await tx`
        insert into emergency_events (emergency_id, seq, type, actor, payload, idempotency_key, at)
        values (${e.id}, ${first.seq}, ${first.type}, ${first.actor}, ${tx.json(first.payload as never)}, ${first.idempotencyKey ?? null}, ${new Date(first.at)})`;
    });
  }

  async claim(id: string, owner: string, node: string): Promise<ClaimedEmergency | undefined> {
    if (!isUuid(id)) return undefined;
    return this.sql.begin(async (tx) => {
      const [row] = await tx<{ fence: string; patient_id: string; bypass: boolean }[]>`
        update emergencies set fence = fence + 1, owner = ${owner}, node = ${node}
        where id = ${id} and status not in ('handed_over', 'cancelled')
        returning fence, patient_id, bypass`;
      if (!row) return undefined;
      const [snap] = await tx<{ state: Buffer }[]>`select state from emergency_snapshots where emergency_id = ${id}`;
      const [alert] = await tx<{ payload: Record<string, unknown> }[]>`select payload from emergency_events where emergency_id = ${id} and seq = 1`;
      return { id, fence: Number(row.fence), patientId: row.patient_id, bypass: row.bypass, snapshot: snap?.state, alert: alert?.payload ?? {} };
    });
  }

  async commit(id: string, fence: number, events: EmergencyEventRow[], snapshot: { seq: number; state: Buffer }, status: string): Promise<boolean> {
    try {
      await this.sql.begin(async (tx) => {
        // the row lock makes a takeover wait for this commit, and this commit see a takeover; it is
        // taken exclusive at once (the status is updated below), so that a snapshot batch holding a
        // share lock on it never waits on this transaction while this one waits on it
        const [row] = await tx<{ fence: string }[]>`select fence from emergencies where id = ${id} for update`;
        if (!row || Number(row.fence) !== fence) throw new FencedError(id);
        for (const ev of events) {
          await tx`
            insert into emergency_events (emergency_id, seq, type, actor, payload, idempotency_key, at)
            values (${id}, ${ev.seq}, ${ev.type}, ${ev.actor}, ${tx.json(ev.payload as never)}, ${ev.idempotencyKey ?? null}, ${new Date(ev.at)})`;
        }
        await tx`
          insert into emergency_snapshots (emergency_id, seq, state, taken_at) values (${id}, ${snapshot.seq}, ${snapshot.state}, now())
          on conflict (emergency_id) do update set seq = excluded.seq, state = excluded.state, taken_at = excluded.taken_at`;
        const closed = status === "handed_over" || status === "cancelled";
        await tx`update emergencies set status = ${status}, closed_at = ${closed ? new Date() : null} where id = ${id}`;
      });
      return true;
    } catch (error) {
      if ((error as { code?: string; constraint_name?: string }).code === UNIQUE_VIOLATION
        && (error as { constraint_name?: string }).constraint_name === "emergency_events_idempotency") return false;
      throw error;
    }
  }

  async saveSnapshots(rows: { id: string; fence: number; seq: number; state: Buffer }[]): Promise<string[]> {
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
        await tx`
          insert into emergency_snapshots (emergency_id, seq, state, taken_at)
          select s.id, s.seq, decode(s.state, 'base64'), now()
          from unnest(${held.map((r) => r.id)}::uuid[], ${held.map((r) => r.seq)}::bigint[], ${held.map((r) => r.state.toString("base64"))}::text[]) as s(id, seq, state)
          on conflict (emergency_id) do update set seq = excluded.seq, state = excluded.state, taken_at = excluded.taken_at
          where emergency_snapshots.seq <= excluded.seq`;
      }
      return rows.filter((r) => fences.get(r.id) !== r.fence).map((r) => r.id);
    });
  }

  async activeOwners(): Promise<{ id: string; owner?: string }[]> {
    const rows = await this.sql<{ id: string; owner: string | null }[]>`
      select id, owner from emergencies where status not in ('handed_over', 'cancelled') order by created_at`;
    return rows.map((r) => ({ id: r.id, owner: r.owner ?? undefined }));
  }

  async isActive(id: string): Promise<boolean> {
    const [row] = await this.sql`select 1 from emergencies where id = ${id} and status not in ('handed_over', 'cancelled')`;
    return row !== undefined;
  }

  async activeFor(patientId: string): Promise<string | undefined> {
    const [row] = await this.sql<{ id: string }[]>`
      select id from emergencies where patient_id = ${patientId} and status not in ('handed_over', 'cancelled')`;
    return row?.id;
  }

  async raisedAny(patientId: string): Promise<boolean> {
    const [row] = await this.sql`select 1 from emergencies where patient_id = ${patientId} limit 1`;
    return row !== undefined;
  }
}
