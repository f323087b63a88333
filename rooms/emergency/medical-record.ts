import type { KeyObject } from "node:crypto";
import { Packr } from "msgpackr";
import type { Principal } from "../../src/auth/tokens.ts";
import type { Specialty } from "../../src/domain/hospitals.ts";
import type { EmergencyMedical } from "../../src/medical/emergency.ts";
import type { MedicalProfiles } from "../../src/medical/service.ts";
import { NOTE_EVENTS, PART } from "../../src/medical/emergency.ts";
import type { EmergencyState, TimelineEvent } from "../schema/EmergencyState.ts";
import type { PartLog } from "./context.ts";

/**
 * Snapshots are plain JSON of the state, msgpack on disk (no records, no extensions), without
 * the medical part and without the free-text notes of the timeline: those travel sealed beside it
 * (`sealed.clinical`, `sealed.profile`; see `snapshot()`), and are put back on restore.
 */
const snapshotCodec = new Packr({ useRecords: false, moreTypes: false, structuredClone: false });

/** A snapshot as stored. `sealed` is absent in snapshots written before medical data was sealed. */
interface SavedSnapshot {
  seq: number;
  state: Record<string, any>;
  sealed?: { clinical?: Uint8Array; profile?: Uint8Array };
}

/** The alert as recorded (the `call_received` event's payload), as far as its note goes. */
export interface AlertNote {
  /** The alert's note, sealed under the emergency's clinical key (base64). */
  sealedNote?: string;
  /** The note in the clear, as alerts recorded before notes were sealed kept it. */
  note?: string;
}

/** An assessment as a responder submits it (the `assessment` message). */
export interface Assessment {
  age?: number;
  timeOfIncident?: number;
  mechanism: string;
  injuries: string[];
  treatment: string[];
  signs?: Record<string, number | string>;
  priority?: "critical" | "high" | "medium";
  suspected?: Specialty[];
  idempotencyKey?: string;
}

const SIGNS = ["heartRate", "respiratoryRate", "systolic", "diastolic", "spo2", "temperature", "gcs"] as const;

const NO_PROFILE = { shared: false, bloodType: "", allergies: [], conditions: [], medications: [] };

/**
 * An emergency's medical data at rest: its data keys (in memory only while the room runs), the
 * sealing of the assessment, the timeline's notes and the disclosed profile summary in snapshots
 * and events, and the profile summary's disclosure and withdrawal.
 */
export class MedicalRecord {
  private readonly roomId: string;
  private readonly state: EmergencyState;
  private readonly medical: Pick<EmergencyMedical, "seal" | "unseal" | "profileKey" | "recorded">;
  private readonly profiles: Pick<MedicalProfiles, "summaryFor" | "disclosed">;
  private readonly log: PartLog;
  private clinicalKey!: KeyObject;
  private profileKey?: KeyObject;
  /** Bumped whenever the assessment or a note changes (clinical) or the profile summary does. */
  private clinicalVersion = 0;
  private profileVersion = 0;
  /** The sealed parts of the last snapshot, kept until their part changes: a flush re-encrypts nothing unchanged. */
  private sealedClinical?: { version: number; bytes: Buffer };
  private sealedProfile?: { version: number; bytes: Buffer | undefined };
  /** The patient erased their profile during the emergency: its summary stays withdrawn. */
  private profileWithdrawn = false;

  constructor(o: { roomId: string; state: EmergencyState; medical: MedicalRecord["medical"]; profiles: MedicalRecord["profiles"]; log: PartLog; keys: { clinical: KeyObject; profile?: KeyObject } }) {
    this.roomId = o.roomId;
    this.state = o.state;
    this.medical = o.medical;
    this.profiles = o.profiles;
    this.log = o.log;
    this.clinicalKey = o.keys.clinical;
    this.profileKey = o.keys.profile;
  }

  /** The assessment or a note changed: the next snapshot seals the clinical part again. */
  clinicalChanged(): void {
    this.clinicalVersion++;
  }

  /** The state was put back (an undone change): both parts are sealed again, and an erased summary stays out. */
  stateReplaced(): boolean {
    this.clinicalVersion++;
    this.profileVersion++;
    return this.profileWithdrawn ? this.withdrawProfile() : false;
  }

  /**
   * The state as a snapshot: msgpack of its plain JSON with the timeline position, with nothing
   * medical in the clear. The medical part and the timeline's free-text notes are left out of the
   * JSON and stored sealed beside it: `sealed.clinical` (assessment, notes and chat, under the clinical
   * key) and `sealed.profile` (the disclosed summary, under the profile key). Each sealed part is
   * encrypted again only when it changed since the last snapshot.
   */
  snapshot(seq: number): { seq: number; state: Buffer } {
    const state = this.state.toJSON() as Record<string, any>;
    delete state.medical;
    for (const e of state.timeline as { type: string; detail: string }[]) if (e.detail && NOTE_EVENTS.has(e.type)) e.detail = "";
    for (const m of (state.chat?.messages ?? []) as { text: string }[]) m.text = "";
    const saved: SavedSnapshot = { seq, state, sealed: this.sealedParts() };
    return { seq, state: Buffer.from(snapshotCodec.pack(saved)) };
  }

  /** The sealed medical parts for a snapshot: from the cache while their part is unchanged. */
  private sealedParts(): { clinical: Buffer; profile?: Buffer } {
    if (this.sealedClinical?.version !== this.clinicalVersion) {
      const record = this.state.medical.toJSON() as Record<string, unknown>;
      delete record.profile;
      const notes = [...this.state.timeline].filter((e) => e.detail && NOTE_EVENTS.has(e.type)).map((e) => [e.seq, e.detail]);
      const chat = [...this.state.chat.messages].map((m) => [m.seq, m.text]);
      this.sealedClinical = { version: this.clinicalVersion, bytes: this.medical.seal({ medical: record, notes, chat }, this.clinicalKey, this.roomId, PART.clinical) };
    }
    if (this.sealedProfile?.version !== this.profileVersion) {
      const profile = this.state.medical.profile;
      // a summary is only ever kept under its key; without one (erased) it is not kept at all
      const bytes = profile.shared && this.profileKey ? this.medical.seal(profile.toJSON(), this.profileKey, this.roomId, PART.profile) : undefined;
      this.sealedProfile = { version: this.profileVersion, bytes };
    }
    return this.sealedProfile.bytes ? { clinical: this.sealedClinical.bytes, profile: this.sealedProfile.bytes } : { clinical: this.sealedClinical.bytes };
  }

  /**
   * A stored snapshot's state with its sealed parts opened and put back: the medical part and the
   * timeline's notes. A part that does not open (its key destroyed) comes back empty. Snapshots
   * written before sealing have their medical part in the clear, and are taken as they are
   * (`unsealed`: the next snapshot seals it).
   */
  open(bytes: Uint8Array): { seq: number; state: Record<string, any>; unsealed: boolean } {
    const saved = snapshotCodec.unpack(bytes) as SavedSnapshot;
    const state = saved.state;
    this.clinicalVersion++;
    this.profileVersion++;
    if (!saved.sealed) return { seq: saved.seq, state, unsealed: true };
    let record: Record<string, any> = {};
    if (saved.sealed.clinical) {
      try {
        const opened = this.medical.unseal(saved.sealed.clinical, this.clinicalKey, this.roomId, PART.clinical) as { medical: Record<string, any>; notes: [number, string][]; chat?: [number, string][] };
        record = opened.medical ?? {};
        const bySeq = new Map(opened.notes ?? []);
        for (const e of (state.timeline ?? []) as { seq: number; detail: string }[]) {
          const note = bySeq.get(e.seq);
          if (note !== undefined) e.detail = note;
        }
        const chatBySeq = new Map(opened.chat ?? []);
        for (const m of (state.chat?.messages ?? []) as { seq: number; text: string }[]) m.text = chatBySeq.get(m.seq) ?? "";
      } catch (error) {
        this.log.error({ err: error, emergencyId: this.roomId }, "the emergency's clinical record could not be opened; it is restored without it");
      }
    }
    let profile: Record<string, any> | undefined;
    if (saved.sealed.profile && this.profileKey) {
      try {
        profile = this.medical.unseal(saved.sealed.profile, this.profileKey, this.roomId, PART.profile) as Record<string, any>;
      } catch (error) {
        this.log.error({ err: error, emergencyId: this.roomId }, "the emergency's profile summary could not be opened; it is restored without it");
      }
    }
    state.medical = { ...record, profile: profile ?? { ...NO_PROFILE } };
    return { seq: saved.seq, state, unsealed: false };
  }

  /** A restored summary from before sealing held it in the clear: it needs a key of its own now. */
  async keyRestoredProfile(patientId: string): Promise<void> {
    if (!this.state.medical.profile.shared || this.profileKey) return;
    this.profileKey = await this.medical.profileKey(this.roomId, patientId).catch(() => undefined);
    if (!this.profileKey) this.withdrawProfile();
  }

  /** The alert's note, opened from the alert record. */
  alertNote(alert: AlertNote): string {
    if (!alert.sealedNote) return alert.note ?? "";
    try {
      return String(this.medical.unseal(Buffer.from(alert.sealedNote, "base64"), this.clinicalKey, this.roomId, PART.event(1)));
    } catch (error) {
      this.log.error({ err: error, emergencyId: this.roomId }, "the alert's note could not be opened");
      return "";
    }
  }

  /** A timeline event's payload as the database keeps it: a free-text note sealed under the clinical key, anything else as it is. */
  eventPayload(e: TimelineEvent): Record<string, unknown> {
    if (!e.detail || !NOTE_EVENTS.has(e.type)) return { detail: e.detail };
    const sealed = this.medical.seal(e.detail, this.clinicalKey, this.roomId, PART.event(e.seq));
    return { sealed: sealed.toString("base64") };
  }

  /** The patient's consented profile summary goes into the medical view; without it the emergency goes on. */
  async loadProfile(patientId: string): Promise<void> {
    try {
      const summary = await this.profiles.summaryFor(patientId);
      if (!summary) return;
      // the summary is kept (sealed) under a key of its own, linked to the patient, stored only
      // while the profile exists: an erasure destroys it, and one that came first stops it here
      this.profileKey ??= await this.medical.profileKey(this.roomId, patientId);
      if (!this.profileKey || this.profileWithdrawn) return;
      this.profileVersion++;
      const p = this.state.medical.profile;
      p.shared = true;
      p.bloodType = summary.bloodType;
      p.allergies.push(...summary.allergies);
      p.conditions.push(...summary.conditions);
      p.medications.push(...summary.medications);
    } catch (error) {
      this.log.warn({ err: error, emergencyId: this.roomId }, "medical profile unavailable for this emergency");
    }
  }

  /** Takes the profile summary out of the state (the patient erased the profile); true when the state changed. */
  withdrawProfile(): boolean {
    this.profileWithdrawn = true;
    this.profileKey = undefined;
    this.profileVersion++;
    const p = this.state.medical.profile;
    if (!p.shared && p.bloodType === "" && p.allergies.length === 0) return false;
    p.shared = false;
    p.bloodType = "";
    p.allergies.clear();
    p.conditions.clear();
    p.medications.clear();
    return true;
  }

  /** Records an ATMIST assessment in the medical part (the clinical record changed). */
  assess(a: Assessment, by: string, at: number): void {
    const m = this.state.medical;
    m.assessed = true;
    m.age = a.age ?? -1;
    m.timeOfIncident = a.timeOfIncident ?? 0;
    m.mechanism = a.mechanism;
    m.injuries.clear(); m.injuries.push(...a.injuries);
    m.treatment.clear(); m.treatment.push(...a.treatment);
    m.suspected.clear(); m.suspected.push(...(a.suspected ?? []));
    for (const key of SIGNS) (m.signs as any)[key] = a.signs?.[key] ?? -1;
    m.signs.avpu = (a.signs?.avpu as string | undefined) ?? "";
    m.assessedBy = by;
    m.assessedAt = at;
    this.clinicalVersion++;
  }

  /** Every disclosure of the profile summary to a party is audited. */
  auditDisclosure(p: Principal): void {
    if (!this.state.medical.profile.shared) return;
    this.profiles.disclosed(p, this.state.patient.id, this.roomId)
      .catch((error) => this.log.error({ err: error, emergencyId: this.roomId }, "audit write failed"));
  }

  /** An assessment was recorded: audited, once it is committed. */
  auditRecorded(p: Principal, fields: readonly string[]): () => void {
    const patientId = this.state.patient.id;
    return () => void this.medical.recorded(p, patientId, this.roomId, fields)
      .catch((error) => this.log.error({ err: error, emergencyId: this.roomId }, "audit write failed"));
  }
}
