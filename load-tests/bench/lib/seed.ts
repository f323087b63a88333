/**
 * Seeds a fresh database with N copies of the template emergency (template.ts), each with its own
 * patient, two first-aiders, an ambulance crew and a member of the receiving hospital's staff:
 * the template's rows with new ids, spread over the accepting hospitals. No REST calls and no
 * password hashing: thousands of emergencies seed in about a second. The server restores them
 * from their snapshots when it starts, exactly as after a restart.
 */
import { randomUUID } from "node:crypto";
import { Packr } from "msgpackr";
import type postgres from "postgres";
import type { TemplateEmergency } from "./template.ts";
import {
  MasterKey, newDataKey, openEmergencyPart, sealEmergencyPart, unwrapEmergencyKey, wrapEmergencyKey, type EmergencyKeyPurpose,
} from "../../../src/medical/crypto.ts";

/** The server's own snapshot codec settings (rooms/EmergencyRoom.ts). */
const snapshotCodec = new Packr({ useRecords: false, moreTypes: false, structuredClone: false });

export interface SeededEmergency {
  id: string;
  hospitalId: string;
  patient: string;
  firstAiders: [string, string];
  crew: string;
  staff: string;
}

export interface Seeded {
  emergencies: SeededEmergency[];
  ops: string;
}

/** Replaces every occurrence of the template's ids in a JSON-able value. */
function renamer(map: Map<string, string>): <T>(value: T) => T {
  const pattern = new RegExp([...map.keys()].map((k) => k.replace(/[.*+?^${}()|[\]\\-]/g, "\\$&")).join("|"), "g");
  return <T>(value: T): T => JSON.parse(JSON.stringify(value).replace(pattern, (m) => map.get(m)!)) as T;
}

async function insertBatched(sql: postgres.Sql | postgres.TransactionSql, table: string, rows: Record<string, unknown>[], batch = 1000): Promise<void> {
  for (let i = 0; i < rows.length; i += batch) {
    const part = rows.slice(i, i + batch);
    await (sql as postgres.Sql)`insert into ${(sql as postgres.Sql)(table)} ${(sql as postgres.Sql)(part as never)}`;
  }
}

/**
 * Inserts `count` emergencies copied from the template. `parked` ones are inserted closed
 * (`handed_over`) so that no node restores them yet; `unpark` opens them later (cluster mode).
 */
/**
 * A tree that seals its emergencies' medical data (src/medical/emergency.ts) binds each sealed part
 * and each key to its emergency's id: copies cannot share them. The template's parts are opened
 * once with its keys and sealed again for every copy under keys of the copy's own.
 */
function medicalSealer(t: TemplateEmergency, masterKeyText: string | undefined, sealed: Record<string, Uint8Array> | undefined) {
  if (!sealed || !masterKeyText) return undefined;
  const master = MasterKey.fromEnvValue(masterKeyText);
  const templateKeys = new Map<string, Buffer>();
  for (const k of t.medicalKeys) {
    templateKeys.set(String(k.purpose), unwrapEmergencyKey(k.wrapped_key as Buffer, master, t.ids.emergency, k.purpose as EmergencyKeyPurpose));
  }
  const keyFor = (part: string) => templateKeys.get(part === "profile" ? "profile" : "clinical")!;
  const parts = new Map(Object.entries(sealed).map(([part, bytes]) => [part, openEmergencyPart(bytes, keyFor(part), t.ids.emergency, part)]));
  const eventPart = (seq: unknown) => `event:${Number(seq)}`;
  return (emergencyId: string, patientId: string, rename: <T>(v: T) => T) => {
    const keys = new Map<string, Buffer>([...templateKeys.keys()].map((purpose) => [purpose, newDataKey()]));
    const rows = [...keys].map(([purpose, key]) => ({
      emergency_id: emergencyId, purpose, patient_id: purpose === "profile" ? patientId : null, key_id: master.keyId,
      wrapped_key: wrapEmergencyKey(key, master, emergencyId, purpose as EmergencyKeyPurpose), created_at: new Date(),
    }));
    const newKey = (part: string) => keys.get(part === "profile" ? "profile" : "clinical")!;
    const snapshotParts = Object.fromEntries([...parts].map(([part, value]) => [part, sealEmergencyPart(rename(value), newKey(part), emergencyId, part)]));
    const payload = (ev: Record<string, any>) => {
      const p = ev.payload as Record<string, unknown>;
      if (typeof p.sealed === "string") {
        const note = openEmergencyPart(Buffer.from(p.sealed, "base64"), keyFor("clinical"), t.ids.emergency, eventPart(ev.seq));
        return { ...p, sealed: sealEmergencyPart(note, newKey("clinical"), emergencyId, eventPart(ev.seq)).toString("base64") };
      }
      if (typeof p.sealedNote === "string") {
        const note = openEmergencyPart(Buffer.from(p.sealedNote, "base64"), keyFor("clinical"), t.ids.emergency, eventPart(ev.seq));
        return { ...p, sealedNote: sealEmergencyPart(note, newKey("clinical"), emergencyId, eventPart(ev.seq)).toString("base64") };
      }
      return p;
    };
    return { rows, snapshotParts, payload };
  };
}

export async function seedEmergencies(sql: postgres.Sql, t: TemplateEmergency, count: number, offset = 0, opts: { parked?: boolean; medicalMasterKey?: string } = {}): Promise<SeededEmergency[]> {
  const hospitals = t.hospitals.length ? t.hospitals : [{ id: t.ids.hospital, name: "", lat: 0, lng: 0 }];
  const { sealed: templateSealed, ...unsealed } = snapshotCodec.unpack(t.snapshot.state as Buffer) as { seq: number; state: any; sealed?: Record<string, Uint8Array> };
  const state0 = unsealed;
  const sealer = medicalSealer(t, opts.medicalMasterKey, templateSealed);
  if (templateSealed && !sealer) throw new Error("the template's medical data is sealed: pass the medical master key to seed copies of it");
  const faParty = state0.state.firstAiders?.[t.ids.firstAider];
  if (!faParty) throw new Error("the template's snapshot has no first-aider");
  const userById = new Map(t.users.map((u) => [String(u.id), u]));
  const respById = new Map(t.responders.map((r) => [String(r.user_id), r]));

  const users: Record<string, unknown>[] = [];
  const responders: Record<string, unknown>[] = [];
  const emergencies: Record<string, unknown>[] = [];
  const events: Record<string, unknown>[] = [];
  const snapshots: Record<string, unknown>[] = [];
  const medicalKeys: Record<string, unknown>[] = [];
  const out: SeededEmergency[] = [];
  const now = new Date();

  for (let i = 0; i < count; i++) {
    const n = offset + i;
    const h = hospitals[n % hospitals.length];
    const e: SeededEmergency = {
      id: randomUUID(), hospitalId: h.id, patient: randomUUID(), firstAiders: [randomUUID(), randomUUID()], crew: randomUUID(), staff: randomUUID(),
    };
    const rename = renamer(new Map([
      [t.ids.emergency, e.id], [t.ids.patient, e.patient], [t.ids.firstAider, e.firstAiders[0]], [t.ids.crew, e.crew], [t.ids.staff, e.staff],
      [t.ids.hospital, h.id],
    ]));
    const user = (templateId: string, id: string, suffix: string, hospitalId?: string) => {
      const u = userById.get(templateId)!;
      users.push({ ...u, id, email: `${suffix}-${n}-${id.slice(0, 8)}@bench.haven`, name: `${u.name} ${n}`, hospital_id: hospitalId ?? null, created_at: now });
    };
    user(t.ids.patient, e.patient, "patient");
    user(t.ids.firstAider, e.firstAiders[0], "first-aider");
    user(t.ids.firstAider, e.firstAiders[1], "first-aider-b");
    user(t.ids.crew, e.crew, "crew");
    user(t.ids.staff, e.staff, "staff", h.id);
    for (const [tid, id] of [[t.ids.firstAider, e.firstAiders[0]], [t.ids.firstAider, e.firstAiders[1]], [t.ids.crew, e.crew]] as const) {
      responders.push({ ...respById.get(tid)!, user_id: id });
    }
    emergencies.push({
      ...t.emergency, id: e.id, patient_id: e.patient,
      status: opts.parked ? "handed_over" : t.emergency.status,
      closed_at: opts.parked ? now : null,
      // held by no live process: the starting server restores it
      owner: null, node: null,
    });
    const medical = sealer?.(e.id, e.patient, rename);
    if (medical) medicalKeys.push(...medical.rows);
    for (const ev of t.events) {
      const copy: Record<string, unknown> = rename({ ...ev, emergency_id: e.id });
      if (medical) copy.payload = medical.payload(copy);
      events.push({ ...copy, at: new Date(String(copy.at)) });
    }
    const state: { seq: number; state: any; sealed?: Record<string, Buffer> } = rename(state0);
    if (medical) state.sealed = medical.snapshotParts;
    const second = { ...rename(faParty), id: e.firstAiders[1], name: `${faParty.name} B` };
    state.state.firstAiders[e.firstAiders[1]] = second;
    state.state.hospital.name = h.name;
    state.state.hospital.lat = h.lat;
    state.state.hospital.lng = h.lng;
    snapshots.push({ emergency_id: e.id, seq: t.snapshot.seq, state: Buffer.from(snapshotCodec.pack(state)), taken_at: now });
    out.push(e);
  }
  for (const ev of events) ev.payload = sql.json(ev.payload as never);
  await sql.begin(async (tx) => {
    await insertBatched(tx, "users", users);
    await insertBatched(tx, "responders", responders);
    await insertBatched(tx, "emergencies", emergencies);
    await insertBatched(tx, "emergency_events", events);
    await insertBatched(tx, "emergency_snapshots", snapshots);
    if (medicalKeys.length > 0) await insertBatched(tx, "medical_keys", medicalKeys);
  });
  return out;
}

/** Opens emergencies seeded parked: any node's next sweep restores them. */
export async function unpark(sql: postgres.Sql, ids: string[], status: string): Promise<void> {
  for (let i = 0; i < ids.length; i += 1000) {
    await sql`update emergencies set status = ${status}, closed_at = null where id in ${sql(ids.slice(i, i + 1000))}`;
  }
}

/** Patients without an emergency and verified responders (for the alert → offer probe). */
export async function seedPeople(sql: postgres.Sql, t: TemplateEmergency, patients: number, firstAiders: number, crews: number): Promise<{ patients: string[]; firstAiders: string[]; crews: string[] }> {
  const userById = new Map(t.users.map((u) => [String(u.id), u]));
  const respById = new Map(t.responders.map((r) => [String(r.user_id), r]));
  const users: Record<string, unknown>[] = [];
  const responders: Record<string, unknown>[] = [];
  const now = new Date();
  const make = (templateId: string, n: number, kind: string) => {
    const id = randomUUID();
    const u = userById.get(templateId)!;
    users.push({ ...u, id, email: `${kind}-${n}-${id.slice(0, 8)}@bench.haven`, name: `${u.name} ${n}`, hospital_id: null, created_at: now });
    const r = respById.get(templateId);
    if (r) responders.push({ ...r, user_id: id });
    return id;
  };
  const out = {
    patients: Array.from({ length: patients }, (_, n) => make(t.ids.patient, n, "patient")),
    firstAiders: Array.from({ length: firstAiders }, (_, n) => make(t.ids.firstAider, n, "fa")),
    crews: Array.from({ length: crews }, (_, n) => make(t.ids.crew, n, "crew")),
  };
  await sql.begin(async (tx) => {
    await insertBatched(tx, "users", users);
    await insertBatched(tx, "responders", responders);
  });
  return out;
}
