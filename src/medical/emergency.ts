import type { KeyObject } from "node:crypto";
import type { AuditEntry } from "../audit/chain.ts";
import type { AuditLog, DestroyedKey, EmergencyKeyRow, MedicalKeyStore } from "../../persistence/stores.ts";
import type { Logger } from "../log.ts";
import { dataKeyObject, MedicalDecryptError, newDataKey, openEmergencyPart, sealEmergencyPart, unwrapEmergencyKey, wrapEmergencyKey, type MasterKey } from "./crypto.ts";
import { EMERGENCY_SUMMARY_FIELDS } from "./profile.ts";

/**
 * An emergency's medical data at rest (src/medical/crypto.ts has the scheme). Two data keys per
 * emergency, each wrapped by the master key and stored in `medical_keys`, apart from the
 * ciphertext:
 *
 * - `clinical` seals the ATMIST assessment, the streamed vitals and the free-text notes of the timeline (the alert's
 *   note, offer and hospital decline reasons, the cancel note, the handover notes, the chat): the clinical
 *   record of the emergency. It is made when the alert is recorded, in the same transaction, and
 *   destroyed `HAVEN_MEDICAL_RETENTION_DAYS` after the emergency closed.
 * - `profile` seals the summary of the patient's own profile that the emergency disclosed to its
 *   responders and hospital. It is made when the summary is loaded, only while the profile exists,
 *   and linked to the patient: erasing the profile destroys it (and with it every copy the
 *   emergency kept, in snapshots and in backups of them), whatever the retention.
 *
 * The room keeps both keys in memory while it runs (as KeyObjects); nothing it writes to Postgres
 * holds medical plaintext. Every key destroyed is audited.
 */

/** Timeline events whose `detail` is free text a person typed: sealed with the clinical record. */
export const NOTE_EVENTS: ReadonlySet<string> = new Set(["call_received", "offer_declined", "hospital_declined", "cancelled", "handed_over", "chat"]);

/** The fields of the clinical record, as named in the audit log. */
export const CLINICAL_FIELDS = ["age", "timeOfIncident", "mechanism", "injuries", "signs", "treatment", "suspected", "notes", "vitals"] as const;

/** Where a part of the emergency sits, as bound into its additional data. */
export const PART = {
  clinical: "clinical",
  profile: "profile",
  event: (seq: number) => `event:${seq}`,
} as const;

export interface EmergencyKeys {
  clinical: KeyObject;
  profile?: KeyObject;
}

export class EmergencyMedical {
  private readonly keys: MedicalKeyStore;
  private readonly audit: AuditLog;
  private readonly master: MasterKey;
  private readonly node: string;
  private readonly log: Logger;

  constructor(o: { keys: MedicalKeyStore; audit: AuditLog; master: MasterKey; node: string; log: Logger }) {
    this.keys = o.keys;
    this.audit = o.audit;
    this.master = o.master;
    this.node = o.node;
    this.log = o.log;
  }

  /** A fresh clinical key for an emergency being recorded: the key, and its wrapped form to store. */
  newClinicalKey(emergencyId: string): { key: KeyObject; stored: { keyId: string; wrappedKey: Buffer } } {
    const raw = newDataKey();
    try {
      return { key: dataKeyObject(raw), stored: { keyId: this.master.keyId, wrappedKey: wrapEmergencyKey(raw, this.master, emergencyId, "clinical") } };
    } finally {
      raw.fill(0);
    }
  }

  /**
   * The emergency's keys, unwrapped from the rows its claim read. An emergency recorded before
   * its keys existed gets its clinical key now. A key that does not unwrap (another master key)
   * is an error: the emergency's medical data cannot be read or written.
   */
  async open(emergencyId: string, rows: EmergencyKeyRow[]): Promise<EmergencyKeys> {
    let clinicalRow = rows.find((r) => r.purpose === "clinical");
    if (!clinicalRow) {
      const fresh = this.newClinicalKey(emergencyId);
      clinicalRow = await this.keys.addClinical(emergencyId, fresh.stored.keyId, fresh.stored.wrappedKey);
    }
    const profileRow = rows.find((r) => r.purpose === "profile");
    return {
      clinical: this.unwrap(emergencyId, clinicalRow),
      profile: profileRow && this.unwrap(emergencyId, profileRow),
    };
  }

  private unwrap(emergencyId: string, row: EmergencyKeyRow): KeyObject {
    if (row.keyId !== this.master.keyId) {
      throw new MedicalDecryptError(`the ${row.purpose} key of emergency ${emergencyId} (wrapped by master key ${row.keyId}, not ${this.master.keyId})`);
    }
    const raw = unwrapEmergencyKey(row.wrappedKey, this.master, emergencyId, row.purpose);
    try {
      return dataKeyObject(raw);
    } finally {
      raw.fill(0);
    }
  }

  /**
   * A key for the profile summary this emergency discloses, stored only while the patient's
   * profile exists; undefined when it was erased meanwhile (then nothing may be disclosed).
   */
  async profileKey(emergencyId: string, patientId: string): Promise<KeyObject | undefined> {
    const raw = newDataKey();
    try {
      const row = await this.keys.addProfile(emergencyId, patientId, this.master.keyId, wrapEmergencyKey(raw, this.master, emergencyId, "profile"));
      return row && this.unwrap(emergencyId, row);
    } finally {
      raw.fill(0);
    }
  }

  seal(value: unknown, key: KeyObject, emergencyId: string, part: string): Buffer {
    return sealEmergencyPart(value, key, emergencyId, part);
  }

  unseal(sealed: Uint8Array, key: KeyObject, emergencyId: string, part: string): unknown {
    return openEmergencyPart(sealed, key, emergencyId, part);
  }

  /** One audit record per write of the clinical record (an assessment). */
  async recorded(actor: { sub: string; role: string }, patientId: string, emergencyId: string, fields: readonly string[]): Promise<void> {
    await this.audit.append({
      at: new Date(), actor: actor.sub, actorRole: actor.role, action: "emergency_medical.write", subject: patientId,
      emergencyId, fields: [...fields], breakGlass: false, node: this.node, outcome: "ok",
    });
  }

  /** The audit record of a destroyed key: whose data, which emergency, which fields, and why. */
  destructionRecord(k: DestroyedKey, why: "retention" | "erasure", actor: { sub: string; role: string } = { sub: "system", role: "system" }): AuditEntry {
    return {
      at: new Date(), actor: actor.sub, actorRole: actor.role, action: "emergency_medical.destroy", subject: k.patientId,
      emergencyId: k.emergencyId, fields: k.purpose === "clinical" ? [...CLINICAL_FIELDS] : [...EMERGENCY_SUMMARY_FIELDS],
      breakGlass: false, reason: why, node: this.node, outcome: "ok",
    };
  }

  /**
   * Destroys the keys of emergencies closed longer than `retentionMs` ago, in batches, each with
   * its audit record in the same transaction. Any node may run it at the same time as others:
   * each key is destroyed (and audited) by one of them.
   */
  async sweepRetention(retentionMs: number, batch = 200): Promise<number> {
    const cutoff = new Date(Date.now() - retentionMs);
    let total = 0;
    for (;;) {
      const gone = await this.keys.destroyClosedBefore(cutoff, batch, (k) => this.destructionRecord(k, "retention"));
      total += gone.length;
      if (gone.length < batch) break;
    }
    if (total > 0) this.log.info({ keys: total }, "medical data of closed emergencies destroyed after the retention period");
    return total;
  }
}
