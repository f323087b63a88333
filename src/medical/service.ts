import { existsSync, readFileSync } from "node:fs";
import { writeSecretFile } from "../secret-file.ts";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { AuditLog, MedicalProfileStore } from "../../persistence/stores.ts";
import type { Principal } from "../auth/tokens.ts";
import { HavenError } from "../protocol/errors.ts";
import { isPlainData, rejectNulls } from "../protocol/validate.ts";
import type { Logger } from "../log.ts";
import { MASTER_KEY_VARIABLE, MasterKey, newDataKey, openProfile, sealProfile, unwrap, wrap } from "./crypto.ts";
import { EMERGENCY_SUMMARY_FIELDS, emergencySummary, validateProfile, type EmergencySummary, type MedicalProfile } from "./profile.ts";

/**
 * The master key that wraps every patient's data key: HAVEN_MEDICAL_MASTER_KEY, or — outside
 * production — a development key generated on first start and kept in the data folder.
 */
export function loadMasterKey(env: Record<string, string | undefined>, production: boolean, dataDir: string, log: Logger): MasterKey {
  if (env[MASTER_KEY_VARIABLE] !== undefined && env[MASTER_KEY_VARIABLE] !== "") return MasterKey.fromEnv(env);
  if (production) return MasterKey.fromEnv(env); // throws: the key is required in production
  const file = join(dataDir, "medical-master-key.development");
  if (!existsSync(file)) writeSecretFile(file, randomBytes(32).toString("base64"));
  const key = MasterKey.fromEnvValue(readFileSync(file, "utf8"));
  log.warn({ file, keyId: key.keyId }, `${MASTER_KEY_VARIABLE} is not set: medical profiles are encrypted under a DEVELOPMENT key kept next to the data. Set ${MASTER_KEY_VARIABLE} in production.`);
  return key;
}

/**
 * Medical profiles: validated, encrypted per patient (a data key wrapped by the master key), shown
 * in an emergency only to entitled parties, and every access audited — who, which emergency, when,
 * which fields, never the values. Erasure deletes the wrapped key with the row (crypto-shredding).
 */
export class MedicalProfiles {
  private readonly store: MedicalProfileStore;
  private readonly audit: AuditLog;
  private readonly master: MasterKey;
  private readonly node: string;

  constructor(o: { store: MedicalProfileStore; audit: AuditLog; master: MasterKey; node: string }) {
    this.store = o.store;
    this.audit = o.audit;
    this.master = o.master;
    this.node = o.node;
  }

  private requireOwner(p: Principal): void {
    if (p.role !== "patient" || p.bypass) throw new HavenError("FORBIDDEN", "a medical profile belongs to a registered patient");
  }

  private async record(p: Principal, action: string, outcome: "ok" | "denied" | "error", extra: { fields?: string[]; emergencyId?: string; subject?: string } = {}): Promise<void> {
    await this.audit.append({
      at: new Date(), actor: p.sub, actorRole: p.role, action, subject: extra.subject ?? p.sub,
      emergencyId: extra.emergencyId, fields: extra.fields, breakGlass: false, node: this.node, outcome,
    });
  }

  /** Creates (`create`) or replaces (`update`) the caller's own profile. */
  async save(p: Principal, body: unknown, mode: "create" | "update"): Promise<{ updatedAt: number }> {
    this.requireOwner(p);
    if (isPlainData(body)) rejectNulls(body); // a new profile has no nulls; stored ones are read as they are
    const profile = validateProfile(body);
    const existing = await this.store.get(p.sub);
    if (mode === "create" && existing) throw new HavenError("PROFILE_EXISTS", "a profile exists; update it with PUT");
    if (mode === "update" && !existing) throw new HavenError("PROFILE_NOT_FOUND", "no profile yet; create it with POST");
    const dataKey = existing && existing.keyId === this.master.keyId ? unwrap(existing.wrappedKey, this.master, p.sub) : newDataKey();
    try {
      const sealed = sealProfile(profile, dataKey, p.sub);
      const updatedAt = Date.now();
      await this.store.upsert({
        patientId: p.sub, keyId: this.master.keyId, wrappedKey: wrap(dataKey, this.master, p.sub), ...sealed,
        consentSharing: profile.consent.shareInEmergency, consentVersion: profile.consent.version, updatedAt,
      });
      await this.record(p, `medical_profile.${mode}`, "ok", { fields: Object.keys(profile) });
      return { updatedAt };
    } finally {
      dataKey.fill(0);
    }
  }

  /** The caller's own profile. */
  async read(p: Principal): Promise<{ profile: MedicalProfile; updatedAt: number }> {
    this.requireOwner(p);
    const opened = await this.open(p.sub);
    if (!opened) throw new HavenError("PROFILE_NOT_FOUND", "no medical profile");
    await this.record(p, "medical_profile.read", "ok", { fields: Object.keys(opened.profile) });
    return opened;
  }

  /**
   * Told of every erasure once it is committed, with the emergencies whose disclosed copy was
   * destroyed (a live one withdraws the summary from its parties).
   */
  onErased?: (patientId: string, emergencyIds: string[]) => Promise<void>;

  /**
   * Right to erasure: the profile and its data key are deleted, and in the same transaction the
   * key of every copy an emergency disclosed (src/medical/emergency.ts). The emergencies' clinical
   * records (assessment, notes) are kept for the retention period under their own keys.
   */
  async erase(p: Principal): Promise<void> {
    this.requireOwner(p);
    // each disclosed copy's key is destroyed and audited in the erasure's own transaction
    const destroyed = await this.store.erase(p.sub, (k) => ({
      at: new Date(), actor: p.sub, actorRole: p.role, action: "emergency_medical.destroy", subject: p.sub, emergencyId: k.emergencyId,
      fields: [...EMERGENCY_SUMMARY_FIELDS], breakGlass: false, reason: "erasure", node: this.node, outcome: "ok",
    }));
    if (!destroyed) throw new HavenError("PROFILE_NOT_FOUND", "no medical profile");
    await this.record(p, "medical_profile.erase", "ok");
    // the live emergency is told in the background: the erasure itself is complete here
    void this.onErased?.(p.sub, destroyed.map((k) => k.emergencyId)).catch(() => undefined);
  }

  /** The emergency summary of a patient who consented to sharing, or undefined. Not audited: audit each disclosure. */
  async summaryFor(patientId: string): Promise<EmergencySummary | undefined> {
    const opened = await this.open(patientId);
    if (!opened || !opened.profile.consent.shareInEmergency) return undefined;
    return emergencySummary(opened.profile);
  }

  /**
   * The phone of emergency contact `index` of a patient who consented to sharing in an
   * emergency, to tell them of the emergency (never anything medical). Each read is audited.
   */
  async emergencyContact(patientId: string, index: number, emergencyId?: string): Promise<{ phone: string; name: string } | undefined> {
    const opened = await this.open(patientId);
    if (!opened || !opened.profile.consent.shareInEmergency) return undefined;
    const contact = opened.profile.emergencyContacts[index];
    if (!contact) return undefined;
    await this.audit.append({
      at: new Date(), actor: "system", actorRole: "system", action: "medical_profile.contact_notified", subject: patientId,
      emergencyId, fields: ["emergencyContacts"], breakGlass: false, node: this.node, outcome: "ok",
    });
    return { phone: contact.phone, name: contact.name };
  }

  /** How many emergency contacts a patient who consented to sharing has (0 without consent or profile). */
  async emergencyContactCount(patientId: string): Promise<number> {
    const opened = await this.open(patientId).catch(() => undefined);
    return opened?.profile.consent.shareInEmergency ? opened.profile.emergencyContacts.length : 0;
  }

  /** One audit record per disclosure of a patient's summary to a party of their emergency. */
  async disclosed(reader: Principal, patientId: string, emergencyId: string): Promise<void> {
    await this.record(reader, "medical_profile.emergency_read", "ok", { subject: patientId, emergencyId, fields: [...EMERGENCY_SUMMARY_FIELDS] });
  }

  private async open(patientId: string): Promise<{ profile: MedicalProfile; updatedAt: number } | undefined> {
    const row = await this.store.get(patientId);
    if (!row) return undefined;
    const dataKey = unwrap(row.wrappedKey, this.master, patientId);
    try {
      return { profile: validateProfile(openProfile(row, dataKey, patientId)), updatedAt: row.updatedAt };
    } finally {
      dataKey.fill(0);
    }
  }
}
