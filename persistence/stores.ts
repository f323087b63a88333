import type { Role } from "../src/auth/tokens.ts";

/**
 * The stores Haven's domain talks to; postgres.ts implements them on Postgres (the machine's, or
 * the embedded one that `npm start` runs when no DATABASE_URL is set).
 */

export interface User {
  id: string;
  email: string;
  name: string;
  phone?: string;
  role: Role;
  passwordHash: string;
  hospitalId?: string;
  createdAt: number;
}

export interface Responder {
  userId: string;
  kind: "first_aider" | "ambulance_crew";
  verified: boolean;
  verifiedBy?: string;
  verifiedAt?: number;
}

export interface RefreshTokenRecord {
  /** sha-256 of the opaque token; the token itself is never stored. */
  hash: string;
  userId: string;
  /** All tokens descended from one login share a family; reuse of a rotated token revokes it. */
  family: string;
  expiresAt: number;
  rotatedAt?: number;
  revokedAt?: number;
}

export interface UserStore {
  create(user: User): Promise<void>;
  byEmail(email: string): Promise<User | undefined>;
  byId(id: string): Promise<User | undefined>;
}

export interface ResponderStore {
  upsert(r: Responder): Promise<void>;
  get(userId: string): Promise<Responder | undefined>;
}

export interface RefreshTokenStore {
  put(r: RefreshTokenRecord): Promise<void>;
  get(hash: string): Promise<RefreshTokenRecord | undefined>;
  /** Marks `hash` rotated; false when it was already rotated or revoked (a replay). */
  rotate(hash: string, at: number): Promise<boolean>;
  revokeFamily(family: string, at: number): Promise<void>;
  revokeUser(userId: string, at: number): Promise<void>;
}

export interface HospitalRecord {
  id: string;
  name: string;
  lat: number;
  lng: number;
  specialties: string[];
  emergencyBeds: number;
  icuBeds: number;
  accepting: boolean;
  approved: boolean;
  /** The divert last declared and not lifted (it may have expired). */
  divert?: import("../src/domain/divert.ts").Divert;
}

export interface HospitalStore {
  /** Inserts the seed hospitals (approved) when the table is empty; returns how many it added. */
  seedIfEmpty(seed: Omit<HospitalRecord, "approved">[]): Promise<number>;
  approved(): Promise<HospitalRecord[]>;
  updateAvailability(id: string, a: { emergencyBeds: number; icuBeds: number; accepting: boolean }): Promise<void>;
  /** A divert declared, or lifted (`undefined`). */
  setDivert(id: string, divert: import("../src/domain/divert.ts").Divert | undefined): Promise<void>;
  /** A hospital registering itself: stored unapproved; false when the id is taken. */
  register(h: Omit<HospitalRecord, "approved">, by: string): Promise<boolean>;
  /** Ops approval: the approved record, or undefined for an unknown id. */
  approve(id: string, by: string): Promise<HospitalRecord | undefined>;
}

export interface StoredMedicalProfile {
  patientId: string;
  keyId: string;
  wrappedKey: Buffer;
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
  consentSharing: boolean;
  consentVersion: number;
  updatedAt: number;
}

export interface MedicalProfileStore {
  upsert(p: StoredMedicalProfile): Promise<void>;
  get(patientId: string): Promise<StoredMedicalProfile | undefined>;
  /**
   * Deletes the profile and its wrapped data key, and in the same transaction the `profile`
   * keys of every emergency that disclosed the profile: the profile and each disclosed copy are
   * unreadable from then on. Undefined when there was no profile; else the keys destroyed, each
   * audited (`auditOf`) in the same transaction.
   */
  erase(patientId: string, auditOf?: (k: DestroyedKey) => import("../src/audit/chain.ts").AuditEntry): Promise<DestroyedKey[] | undefined>;
}

/** A wrapped data key of one emergency (table `medical_keys`). */
export interface EmergencyKeyRow {
  purpose: "clinical" | "profile";
  /** The patient a `profile` key belongs to. */
  patientId?: string;
  /** Which master key wrapped it (MasterKey.keyId). */
  keyId: string;
  wrappedKey: Buffer;
}

/** A key that was destroyed, for the audit record. */
export interface DestroyedKey {
  emergencyId: string;
  purpose: "clinical" | "profile";
  /** The patient of the emergency. */
  patientId: string;
}

/** The wrapped keys of emergencies, kept apart from the ciphertext they open. */
export interface MedicalKeyStore {
  /** Stores a `clinical` key unless the emergency has one; returns the emergency's key either way. */
  addClinical(emergencyId: string, keyId: string, wrappedKey: Buffer): Promise<EmergencyKeyRow>;
  /**
   * Stores the key that seals the profile summary disclosed to an emergency, only while the
   * patient's profile exists (an erasure running at the same time either waits for this or makes
   * it store nothing). Returns the emergency's profile key, or undefined when the profile is gone.
   */
  addProfile(emergencyId: string, patientId: string, keyId: string, wrappedKey: Buffer): Promise<EmergencyKeyRow | undefined>;
  /**
   * Deletes up to `limit` keys of emergencies closed before `cutoff`, each audited (`auditOf`) in
   * the same transaction; returns what it deleted.
   */
  destroyClosedBefore(cutoff: Date, limit: number, auditOf: (k: DestroyedKey) => import("../src/audit/chain.ts").AuditEntry): Promise<DestroyedKey[]>;
}

export interface AuditLog {
  append(entry: import("../src/audit/chain.ts").AuditEntry): Promise<void>;
}

export interface EmergencyEventRow {
  seq: number;
  type: string;
  actor: string;
  payload: Record<string, unknown>;
  idempotencyKey?: string;
  at: number;
}

/** A snapshot the flusher writes, with the timeline events raised outside critical changes since the last. */
export interface SnapshotRow {
  id: string;
  fence: number;
  seq: number;
  /** The whole state; absent on a row that carries positions only. */
  state?: Buffer;
  /** The parties' positions, newer than `state` (or than the stored state, on a positions-only row). */
  positions?: Buffer;
  events?: readonly EmergencyEventRow[];
}

export interface ActiveEmergency {
  id: string;
  patientId: string;
  bypass: boolean;
  /** msgpack of the room state, or undefined when no snapshot was taken yet. */
  snapshot?: Buffer;
  /** Positions written after that snapshot, to apply on top of it. */
  positions?: Buffer;
  /** The alert's own record (the `call_received` event's payload). */
  alert: Record<string, unknown>;
  /** When the alert was recorded (the `call_received` event's time). */
  alertAt?: number;
  /** The emergency's wrapped data keys (none for an emergency recorded before they existed). */
  keys: EmergencyKeyRow[];
}

/** A write by a room whose emergency was taken over by another node (its fencing token is stale). */
export class FencedError extends Error {
  readonly emergencyId: string;
  constructor(emergencyId: string) {
    super(`emergency ${emergencyId} is held by another node now`);
    this.name = "FencedError";
    this.emergencyId = emergencyId;
  }
}

/** An emergency taken over by one room: what to rebuild it from, and the token its writes carry. */
export interface ClaimedEmergency extends ActiveEmergency {
  fence: number;
}

export interface EmergencyStore {
  /** Records a raised alert, its first event, the emergency's clinical key and the notifications it causes in one transaction. */
  open(e: { id: string; patientId: string; bypass: boolean; status: string; priority: string; createdAt: number; node: string }, first: EmergencyEventRow,
    clinicalKey?: { keyId: string; wrappedKey: Buffer }, outbox?: OutboxWrite): Promise<void>;
  /**
   * Takes an active emergency over for the room of process `owner`: raises its fencing token and
   * returns it with the latest snapshot and its wrapped keys, read after the raise, so no write of an earlier holder
   * can land after it. Undefined when the emergency is not active.
   */
  claim(id: string, owner: string, node: string): Promise<ClaimedEmergency | undefined>;
  /**
   * Commits a critical change: its events, the state snapshot after it and the status, in one
   * transaction. Returns false (and writes nothing) when the idempotency key was seen before.
   * Throws FencedError when `fence` is no longer the emergency's token.
   */
  /** `signal` abandons the commit: aborted before the transaction ends, it rolls back. */
  /** `outbox`: the notifications the change causes (and cancels), written in the same transaction. */
  commit(id: string, fence: number, events: EmergencyEventRow[], snapshot: { seq: number; state: Buffer }, status: string, signal?: AbortSignal, outbox?: OutboxWrite): Promise<boolean>;
  /** One statement for many rooms' snapshots; returns the ids refused because their token is stale. */
  saveSnapshots(rows: SnapshotRow[]): Promise<string[]>;
  /** The active emergencies with the process that holds each (undefined: never claimed). */
  activeOwners(): Promise<{ id: string; owner?: string }[]>;
  /** Whether the emergency is active (raised, neither handed over nor cancelled). */
  isActive(id: string): Promise<boolean>;
  /** The patient's active emergency, if any. */
  activeFor(patientId: string): Promise<string | undefined>;
  /** Whether the subject ever raised an emergency (an emergency-bypass token raises one). */
  raisedAny(patientId: string): Promise<boolean>;
}

/** A channel a notification goes out on (src/notify/channels.ts). */
export type NotifyChannel = "sms" | "webhook" | "push";

/**
 * One notification to one recipient on one channel, as the outbox keeps it. `recipient` is a
 * literal address (`tel:+2547…`, `url:https://…`) or a target resolved when it is delivered
 * (`user:<id>`, `hospital:<id>`, `contact:<patientId>:<n>`, `ops`): src/notify/recipients.ts.
 */
export interface OutboxMessage {
  /** The delivery key: unique; a message queued twice under one key is queued once. */
  key: string;
  channel: NotifyChannel;
  recipient: string;
  /** The template (src/notify/templates.ts). */
  event: string;
  emergencyId?: string;
  /** The template's parameters, and a language when the writer fixed one. */
  payload: { params: Record<string, string | number>; language?: string };
  /** Not sent before this time (epoch ms); at once when absent. */
  notBefore?: number;
}

/** What a change writes to the outbox with itself: new messages, and messages made moot (by key). */
export interface OutboxWrite {
  messages: readonly OutboxMessage[];
  cancel: readonly string[];
}

/** A message a worker claimed: the attempt it is about to make is `attempts`. */
export interface ClaimedMessage extends OutboxMessage {
  id: string;
  attempts: number;
}

export type OutboxStatus = "pending" | "delivered" | "dead" | "cancelled" | "skipped";

/** A message as operations sees it (its recipient as written: a target, never a resolved address). */
export interface OutboxRow {
  id: string; key: string; channel: NotifyChannel; recipient: string; event: string; emergencyId?: string;
  status: OutboxStatus; attempts: number; lastError?: string; createdAt: number; nextAttemptAt: number; finishedAt?: number;
}

/** The outbox (table `outbox`): written with the changes that cause its messages, drained by every node's worker. */
export interface OutboxStore {
  /** Queues messages and cancels others outside any change (what causes them is not itself recorded). */
  write(w: OutboxWrite): Promise<void>;
  /**
   * Claims up to `limit` due messages for `node`: each is due again only after `leaseMs`, so no
   * other node takes it while this one sends (FOR UPDATE SKIP LOCKED).
   */
  claim(node: string, limit: number, leaseMs: number): Promise<ClaimedMessage[]>;
  /** The outcome of attempt `m.attempts` by `node`; ignored when another node claimed it since. */
  finish(m: ClaimedMessage, node: string, outcome: { status: "delivered" | "dead" | "skipped"; error?: string } | { status: "pending"; retryInMs: number; error: string }): Promise<boolean>;
  /** The newest messages of a status, for operations. */
  list(status: OutboxStatus, limit: number): Promise<OutboxRow[]>;
  /** A dead or skipped message is due again now, its attempts counted from zero; false when there is no such message in those states. */
  requeue(id: string): Promise<boolean>;
  /** Messages waiting (pending) and dead-lettered, by channel, for /metrics (both read from partial indexes). */
  counts(): Promise<{ status: OutboxStatus; channel: string; n: number }[]>;
}
