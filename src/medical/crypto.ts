import { createCipheriv, createDecipheriv, createHash, createSecretKey, randomBytes, type KeyObject } from "node:crypto";
import { ConfigError } from "../config.ts";

/**
 * Application-level envelope encryption of medical profiles: medical profiles are sensitive personal
 * data (Kenya DPA 2019; GDPR/HIPAA by analogy) and are encrypted at rest by the application.
 *
 *   master key (HAVEN_MEDICAL_MASTER_KEY, never stored in the database)
 *     └─ wraps one random data key per patient   → medical_profile_keys.wrapped_key (+ key_id)
 *          └─ seals that patient's profile        → medical_profiles.iv / tag / ciphertext
 *
 * Both layers are AES-256-GCM with a fresh random 12-byte IV on every write and a 16-byte tag.
 * The additional authenticated data binds each blob to its patient and its purpose, so a wrapped
 * key or a profile row copied onto another patient's row does not decrypt, and a wrapped key can
 * never be opened as a profile or the other way round.
 *
 * Crypto-shredding: the profile ciphertext is only readable through the patient's data key, and
 * the data key exists at rest only wrapped by the master key in that patient's key row
 * (medical_profile_keys, a table apart from the ciphertext, so it can be backed up apart). Deleting
 * (or overwriting) the wrapped key therefore erases the profile for good — including every copy
 * of the ciphertext sitting in backups, replicas or logs — without having to find those copies,
 * once no copy of the key row is left: a backup that holds both the key row and the ciphertext
 * still opens with the master key (README, "What a database backup exposes").
 * Erasure on request = delete the key row; nothing else is needed.
 *
 * Nothing in this module logs, and no error message contains key material or plaintext.
 */

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const WRAPPED_BYTES = IV_BYTES + TAG_BYTES + KEY_BYTES;
const MAX_PATIENT_ID = 128;

export const MASTER_KEY_VARIABLE = "HAVEN_MEDICAL_MASTER_KEY";
const PROFILE_AAD_PREFIX = "haven:medical-profile:v1:";
const WRAP_AAD_PREFIX = "haven:medical-data-key:v1:";

/** The master key's bytes live only here, as a KeyObject: never on the MasterKey object itself, so
 * they cannot be reached by JSON.stringify, util.inspect, a logger's serializer or a spread. */
const secrets = new WeakMap<MasterKey, KeyObject>();

/** Thrown when a wrapped key or a sealed profile does not authenticate: wrong master key, wrong
 * data key, another patient's row, or tampered bytes. Deliberately says nothing more. */
export class MedicalDecryptError extends Error {
  constructor(what: string) {
    super(`${what} could not be decrypted (wrong key, another patient's data, or tampered bytes)`);
    this.name = "MedicalDecryptError";
  }
}

export class MasterKey {
  /** First 8 hex characters of sha256(key): stored next to each wrapped key (medical_profile_keys.key_id, medical_keys.key_id)
   * so a rotated master key is detected rather than producing decryption failures. */
  readonly keyId: string;
  /** True only for a key made by `generateDevelopmentKey()`: profiles sealed under it are unreadable
   * after a restart, which is what development wants and production must never have. */
  readonly development: boolean;

  private constructor(raw: Buffer, development: boolean) {
    if (raw.length !== KEY_BYTES) throw new Error("master key must be 32 bytes");
    this.keyId = createHash("sha256").update(raw).digest("hex").slice(0, 8);
    this.development = development;
    secrets.set(this, createSecretKey(Buffer.from(raw)));
    Object.freeze(this);
  }

  /**
   * Parses the value of HAVEN_MEDICAL_MASTER_KEY: exactly 32 bytes, as base64 or base64url (padded
   * or not). Anything else — missing, empty, 31 or 33 bytes, stray characters, non-canonical
   * encodings — throws a ConfigError naming the variable (and never echoing the value).
   */
  static fromEnvValue(value: string | undefined): MasterKey {
    if (value === undefined || value.trim() === "") {
      throw new ConfigError(MASTER_KEY_VARIABLE, "is not set (32 random bytes, base64 or base64url encoded)");
    }
    const text = value.trim();
    const standard = /^[A-Za-z0-9+/]+={0,2}$/.test(text);
    const urlSafe = /^[A-Za-z0-9_-]+={0,2}$/.test(text);
    if (!standard && !urlSafe) {
      throw new ConfigError(MASTER_KEY_VARIABLE, "must be base64 or base64url (32 random bytes)");
    }
    const raw = Buffer.from(text, standard ? "base64" : "base64url");
    try {
      // Node's decoder skips what it does not understand; insist that the text is exactly the
      // canonical encoding of the bytes, so a typo cannot silently produce a different key.
      const canonical = raw.toString(standard ? "base64" : "base64url").replace(/=+$/, "");
      if (canonical !== text.replace(/=+$/, "")) {
        throw new ConfigError(MASTER_KEY_VARIABLE, "is not a canonical base64/base64url encoding");
      }
      if (raw.length !== KEY_BYTES) {
        throw new ConfigError(MASTER_KEY_VARIABLE, `must decode to exactly ${KEY_BYTES} bytes, got ${raw.length}`);
      }
      return new MasterKey(raw, false);
    } finally {
      raw.fill(0);
    }
  }

  /** Reads HAVEN_MEDICAL_MASTER_KEY from an environment (default: process.env). */
  static fromEnv(env: Record<string, string | undefined> = process.env): MasterKey {
    return MasterKey.fromEnvValue(env[MASTER_KEY_VARIABLE]);
  }

  /** A fresh random key for development and tests, marked `development: true`. */
  static generateDevelopmentKey(): MasterKey {
    const raw = randomBytes(KEY_BYTES);
    try {
      return new MasterKey(raw, true);
    } finally {
      raw.fill(0);
    }
  }

  toJSON(): { keyId: string; development: boolean } {
    return { keyId: this.keyId, development: this.development };
  }
}

function checkPatientId(patientId: string): void {
  if (typeof patientId !== "string" || patientId.length === 0 || patientId.length > MAX_PATIENT_ID) {
    throw new TypeError("patientId must be a non-empty string of at most 128 characters");
  }
}

function checkDataKey(dataKey: Buffer): void {
  if (!Buffer.isBuffer(dataKey) || dataKey.length !== KEY_BYTES) throw new TypeError("a data key is 32 bytes");
}

function masterSecret(master: MasterKey): KeyObject {
  const key = master instanceof MasterKey ? secrets.get(master) : undefined;
  if (key === undefined) throw new TypeError("not a MasterKey");
  return key;
}

/** A fresh random 32-byte data key for one patient. */
export function newDataKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

/**
 * Wraps a patient's data key under the master key: AES-256-GCM, random IV, AAD
 * `haven:medical-data-key:v1:<patientId>`. Returns one 60-byte Buffer: iv(12) ‖ tag(16) ‖ ciphertext(32).
 * Store `master.keyId` next to it.
 */
export function wrap(dataKey: Buffer, master: MasterKey, patientId: string): Buffer {
  checkDataKey(dataKey);
  checkPatientId(patientId);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", masterSecret(master), iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(WRAP_AAD_PREFIX + patientId, "utf8"));
  const ciphertext = Buffer.concat([cipher.update(dataKey), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), ciphertext]);
}

/** Reverses `wrap`. Throws MedicalDecryptError for a wrong master key, another patient id or any
 * altered byte. */
export function unwrap(wrapped: Buffer, master: MasterKey, patientId: string): Buffer {
  checkPatientId(patientId);
  const secret = masterSecret(master);
  if (!Buffer.isBuffer(wrapped) || wrapped.length !== WRAPPED_BYTES) throw new MedicalDecryptError("the wrapped data key");
  const iv = wrapped.subarray(0, IV_BYTES);
  const tag = wrapped.subarray(IV_BYTES, IV_BYTES + TAG_BYTES);
  const ciphertext = wrapped.subarray(IV_BYTES + TAG_BYTES);
  try {
    const decipher = createDecipheriv("aes-256-gcm", secret, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(WRAP_AAD_PREFIX + patientId, "utf8"));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    throw new MedicalDecryptError("the wrapped data key");
  }
}

export interface SealedProfile {
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
}

/**
 * Encrypts a profile (as JSON) under the patient's data key: AES-256-GCM, a fresh random 12-byte IV
 * per write, AAD `haven:medical-profile:v1:<patientId>`. Validate the profile before sealing it.
 */
export function sealProfile(profile: object, dataKey: Buffer, patientId: string): SealedProfile {
  checkDataKey(dataKey);
  checkPatientId(patientId);
  if (typeof profile !== "object" || profile === null) throw new TypeError("a profile is an object");
  const plaintext = Buffer.from(JSON.stringify(profile), "utf8");
  try {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", dataKey, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(PROFILE_AAD_PREFIX + patientId, "utf8"));
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return { iv, tag: cipher.getAuthTag(), ciphertext };
  } finally {
    plaintext.fill(0);
  }
}

/**
 * Decrypts a sealed profile. Throws MedicalDecryptError for a wrong data key, another patient id,
 * a truncated tag or any altered byte. Returns the parsed JSON as `unknown`: pass it through
 * `validateProfile` (src/medical/profile.ts) before use, which also catches rows written under an
 * older schema.
 */
export function openProfile(sealed: SealedProfile, dataKey: Buffer, patientId: string): unknown {
  checkDataKey(dataKey);
  checkPatientId(patientId);
  const { iv, tag, ciphertext } = sealed;
  // GCM in Node accepts shorter tags unless told otherwise; a truncated tag is a forgery vector.
  if (!Buffer.isBuffer(iv) || iv.length !== IV_BYTES || !Buffer.isBuffer(tag) || tag.length !== TAG_BYTES || !Buffer.isBuffer(ciphertext)) {
    throw new MedicalDecryptError("the medical profile");
  }
  let plaintext: Buffer;
  try {
    const decipher = createDecipheriv("aes-256-gcm", dataKey, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(PROFILE_AAD_PREFIX + patientId, "utf8"));
    decipher.setAuthTag(tag);
    plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    throw new MedicalDecryptError("the medical profile");
  }
  try {
    return JSON.parse(plaintext.toString("utf8")) as unknown;
  } catch {
    throw new MedicalDecryptError("the medical profile");
  } finally {
    plaintext.fill(0);
  }
}

// ---------------------------------------------------------------- emergency medical data

/**
 * What an emergency discloses and records — the patient's profile summary and the ATMIST
 * assessment with the free-text notes of its timeline — is sealed the same way, under data keys
 * of the emergency's own (persistence/migrations/003_medical_keys.sql):
 *
 *   master key
 *     └─ wraps the emergency's `clinical` key  → medical_keys (emergency, 'clinical')
 *     │    └─ seals the assessment and notes   → the snapshot's `sealed.clinical`, sealed event payloads
 *     └─ wraps the emergency's `profile` key   → medical_keys (emergency, 'profile', patient)
 *          └─ seals the disclosed summary      → the snapshot's `sealed.profile`
 *
 * The additional data of a wrapped key is `haven:emergency-key:v1:<purpose>:<emergencyId>` and
 * that of a sealed blob `haven:emergency-medical:v1:<emergencyId>:<part>`: a blob copied into
 * another emergency, or into another part of the same one, does not open. One blob is one
 * Buffer: iv(12) ‖ tag(16) ‖ ciphertext.
 */
export type EmergencyKeyPurpose = "clinical" | "profile";

const EMERGENCY_KEY_AAD_PREFIX = "haven:emergency-key:v1:";
const EMERGENCY_BLOB_AAD_PREFIX = "haven:emergency-medical:v1:";
const MAX_CONTEXT = 200;

function checkContext(text: string, what: string): void {
  if (typeof text !== "string" || text.length === 0 || text.length > MAX_CONTEXT) throw new TypeError(`${what} must be a non-empty string of at most ${MAX_CONTEXT} characters`);
}

/** Wraps an emergency's data key under the master key (AAD: purpose and emergency id). */
export function wrapEmergencyKey(dataKey: Buffer, master: MasterKey, emergencyId: string, purpose: EmergencyKeyPurpose): Buffer {
  checkDataKey(dataKey);
  checkContext(emergencyId, "emergencyId");
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", masterSecret(master), iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(`${EMERGENCY_KEY_AAD_PREFIX}${purpose}:${emergencyId}`, "utf8"));
  const ciphertext = Buffer.concat([cipher.update(dataKey), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), ciphertext]);
}

/** Reverses `wrapEmergencyKey`; MedicalDecryptError for a wrong master key, emergency, purpose or byte. */
export function unwrapEmergencyKey(wrapped: Buffer, master: MasterKey, emergencyId: string, purpose: EmergencyKeyPurpose): Buffer {
  checkContext(emergencyId, "emergencyId");
  const secret = masterSecret(master);
  if (!Buffer.isBuffer(wrapped) || wrapped.length !== WRAPPED_BYTES) throw new MedicalDecryptError("the wrapped emergency key");
  try {
    const decipher = createDecipheriv("aes-256-gcm", secret, wrapped.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(`${EMERGENCY_KEY_AAD_PREFIX}${purpose}:${emergencyId}`, "utf8"));
    decipher.setAuthTag(wrapped.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([decipher.update(wrapped.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
  } catch {
    throw new MedicalDecryptError("the wrapped emergency key");
  }
}

/** Seals one part of an emergency's medical data (any JSON value) under one of its data keys. */
export function sealEmergencyPart(value: unknown, dataKey: KeyObject | Buffer, emergencyId: string, part: string): Buffer {
  if (Buffer.isBuffer(dataKey)) checkDataKey(dataKey);
  checkContext(emergencyId, "emergencyId");
  checkContext(part, "part");
  const plaintext = Buffer.from(JSON.stringify(value), "utf8");
  try {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", dataKey, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(`${EMERGENCY_BLOB_AAD_PREFIX}${emergencyId}:${part}`, "utf8"));
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), ciphertext]);
  } finally {
    plaintext.fill(0);
  }
}

/** Opens a part sealed by `sealEmergencyPart`; MedicalDecryptError when it does not authenticate. */
export function openEmergencyPart(sealed: Buffer | Uint8Array, dataKey: KeyObject | Buffer, emergencyId: string, part: string): unknown {
  if (Buffer.isBuffer(dataKey)) checkDataKey(dataKey);
  checkContext(emergencyId, "emergencyId");
  checkContext(part, "part");
  if (!(sealed instanceof Uint8Array) || sealed.length < IV_BYTES + TAG_BYTES) throw new MedicalDecryptError("the emergency's medical data");
  const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  let plaintext: Buffer;
  try {
    const decipher = createDecipheriv("aes-256-gcm", dataKey, bytes.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(`${EMERGENCY_BLOB_AAD_PREFIX}${emergencyId}:${part}`, "utf8"));
    decipher.setAuthTag(bytes.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    plaintext = Buffer.concat([decipher.update(bytes.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
  } catch {
    throw new MedicalDecryptError("the emergency's medical data");
  }
  try {
    return JSON.parse(plaintext.toString("utf8")) as unknown;
  } catch {
    throw new MedicalDecryptError("the emergency's medical data");
  } finally {
    plaintext.fill(0);
  }
}

/** A data key as a KeyObject (its bytes then live outside the JS heap's reach of a serializer). */
export function dataKeyObject(dataKey: Buffer): KeyObject {
  checkDataKey(dataKey);
  return createSecretKey(dataKey);
}
