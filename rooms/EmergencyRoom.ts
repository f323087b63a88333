import { randomUUID } from "node:crypto";
import { type AuthContext, CloseCode, matchMaker } from "@colyseus/core";
import { StateView } from "@colyseus/schema";
import type { Principal, Role } from "../src/auth/tokens.ts";
import { HavenError, toWireError } from "../src/protocol/errors.ts";
import { HavenCloseCode } from "../src/protocol/close-codes.ts";
import { services } from "../src/services.ts";
import { DispatchPolicy, type Outstanding } from "../src/domain/dispatch.ts";
import { dutyRoomId, type Candidate, type ResponderKind } from "../src/domain/duty.ts";
import { isUrban, type LatLng } from "../src/domain/geo.ts";
import { neededSpecialties, rankHospitals } from "../src/domain/matching.ts";
import type { Specialty } from "../src/domain/hospitals.ts";
import { HavenRoom, refuse, type HavenClient, type MessageHandler } from "./HavenRoom.ts";
import { Party, ReadinessItem } from "./schema/common.ts";
import { EmergencyState, HospitalLink, Medical, TimelineEvent } from "./schema/EmergencyState.ts";
import { assignEmergencyState } from "./schema/restore.ts";
import { Packr } from "msgpackr";
import { HeldChanges, type RoomTimer } from "./patches.ts";
import type { KeyObject } from "node:crypto";
import { FencedError, type EmergencyEventRow } from "../persistence/stores.ts";
import { NOTE_EVENTS, PART, CLINICAL_FIELDS } from "../src/medical/emergency.ts";

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

/** A room is created from its emergency's record in Postgres, never from what a caller passes. */
export interface EmergencyCreateOptions {
  emergencyId: string;
}

/** The alert as recorded (the `call_received` event's payload). */
interface AlertRecord {
  patientId: string;
  patientName: string;
  bypass: boolean;
  lat: number;
  lng: number;
  accuracy?: number;
  priority?: "critical" | "high" | "medium";
  /** The alert's note, sealed under the emergency's clinical key (base64). */
  sealedNote?: string;
  /** The note in the clear, as alerts recorded before notes were sealed kept it. */
  note?: string;
}

/** The result shape of every method other actors call on this one (it survives IPC as JSON). */
export type CallResult<T = Record<string, unknown>> = ({ ok: true } & T) | { ok: false; error: { code: string; message: string } };

const RESPONDER_ROLES: readonly Role[] = ["first_aider", "ambulance_crew"];
const PARTY_ROLES: readonly Role[] = ["patient", "first_aider", "ambulance_crew"];
const STATUS_ORDER = ["alerted", "dispatched", "on_scene", "transporting", "at_hospital", "handed_over"] as const;
const CLOSED = new Set(["handed_over", "cancelled", "expired"]);
const IDEMPOTENCY_MEMORY = 256;
/** Timeline events kept while the database is away before the oldest are dropped. */
const MAX_UNSAVED_EVENTS = 4096;
/** Critical changes waiting to commit in one room before more are refused (retry). */
const MAX_QUEUED_CRITICAL = 16;
/** The window of the bound on one sender's critical changes (`HAVEN_CRITICAL_CHANGES_PER_10S`). */
const CRITICAL_WINDOW_MS = 10_000;
/** A change the room makes by itself that could not be committed is tried again after this. */
const SYSTEM_RETRY_MS = 2000;

/** The hospital wallboard room of a hospital. */
export const hospitalRoomId = (hospitalId: string) => `hospital-${hospitalId}`;

/**
 * One active emergency, from alert to handover: the live positions of every party, dispatch of
 * the nearest responders, the assessment, the receiving hospital and its readiness, and the EMS
 * timeline. Its roomId is the emergency's id. Medical details go only to the assigned responders
 * and the receiving hospital's staff, through their StateView.
 */
export class EmergencyRoom extends HavenRoom<EmergencyState> {
  autoDispose = false;

  private dispatchers!: Record<ResponderKind, DispatchPolicy>;
  private offerTimers = new Map<string, { clear(): void }>();
  private retryTimers: Partial<Record<ResponderKind, { clear(): void }>> = {};
  private hospitalTimers: { clear(): void }[] = [];
  private seq = 0;
  private readonly idempotent = new Map<string, unknown>();
  private lastHospitalSync = 0;
  private hospitalSyncTimer?: { clear(): void };
  /** What the assigned responders and the receiving hospital's staff see beyond the shared state. */
  private medicalView?: StateView;
  /** Dispatch offer id → the responder kind it belongs to. */
  private readonly offerKinds = new Map<string, ResponderKind>();
  /** Critical changes run one at a time, each committed before it is acknowledged. */
  private commitQueue: Promise<unknown> = Promise.resolve();
  private committing = 0;
  /** Critical changes waiting for their turn. */
  private queuedCritical = 0;
  /** What the critical change being committed changed, held back from patches until it is. */
  private held?: HeldChanges;
  /** The bounds of escalation (operations alerted, idle expiry), on the room clock. */
  private escalationTimers: RoomTimer[] = [];
  /** Why operations was alerted already (each reason once). */
  private readonly escalated = new Set<string>();
  /** The last party message, join or critical change: an emergency idle too long expires. */
  private lastActivityAt = Date.now();
  /** Timeline events raised outside a critical change, not yet in Postgres. */
  private unsaved: EmergencyEventRow[] = [];
  /** Responders who said they are on their way. */
  private readonly enRoute = new Set<string>();
  /** Critical changes per sender. */
  private readonly criticalRate = new SenderRate(services().config.limits.criticalChangesPer10s, CRITICAL_WINDOW_MS);
  /** Side effects of the critical change in progress, run once it is committed. */
  private effects: (() => void)[] | undefined;
  /** Positions (and other fast-changing state) changed since the last snapshot. */
  dirty = false;
  /** The fencing token of this room's hold on the emergency: every write carries it. */
  fence = 0;
  /** The emergency's data keys (src/medical/emergency.ts): in memory only while the room runs. */
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

  protected readonly handlers: Record<string, MessageHandler<EmergencyRoom>> = {
    position: { schema: "position", roles: PARTY_ROLES, run(client, p) { return this.updatePosition(client.auth, p); } },
    status: { schema: "responderStatus", roles: RESPONDER_ROLES, run(client, p) { return this.responderStatus(client.auth, p); } },
    assessment: { schema: "assessment", roles: RESPONDER_ROLES, run(client, p) { return this.submitAssessment(client.auth, p); } },
    cancel: { schema: "cancel", roles: ["patient", "ops_admin"], run(client, p) { return this.cancel(client.auth, p, p.idempotencyKey); } },
  };

  /**
   * Fires once, when the server creates the room: after an authorized alert, or to bring the
   * emergency back after its node died or restarted. The room claims the emergency cluster-wide
   * and takes it over in Postgres (raising its fencing token) before it reads what to rebuild
   * from; no join is handled before it resolves.
   */
  async onCreate(options: EmergencyCreateOptions): Promise<void> {
    this.roomId = options.emergencyId;
    const { membership, emergencyStore, config } = services();
    await this.claimId();
    let claimed;
    try {
      claimed = await emergencyStore.claim(this.roomId, membership.processId, config.nodeName);
    } catch (error) {
      this.releaseId();
      throw error;
    }
    if (!claimed) {
      this.releaseId();
      throw new HavenError("EMERGENCY_NOT_FOUND", `EMERGENCY_NOT_FOUND: no active emergency ${this.roomId}`);
    }
    this.fence = claimed.fence;
    try {
      const keys = await services().emergencyMedical.open(this.roomId, claimed.keys);
      this.clinicalKey = keys.clinical;
      this.profileKey = keys.profile;
    } catch (error) {
      this.releaseId();
      throw error;
    }
    const alert = claimed.alert as unknown as AlertRecord;
    const restoring = claimed.snapshot !== undefined;
    /** A snapshot written before medical data was sealed: written again (sealed) at the next flush. */
    let unsealedSnapshot = false;

    const now = claimed.alertAt ?? Date.now();
    const state = new EmergencyState();
    state.id = this.roomId;
    state.priority = alert.priority ?? "high";
    state.bypass = claimed.bypass;
    state.createdAt = now;
    state.patient = new Party();
    Object.assign(state.patient, {
      id: claimed.patientId, role: "patient", name: alert.patientName,
      lat: alert.lat, lng: alert.lng, accuracy: alert.accuracy ?? 0, updatedAt: now, online: false,
    });
    state.hospital = new HospitalLink();
    state.medical = new Medical();
    state.times.callReceivedAt = now;
    this.setState(state);
    services().emergencies.attach(this);
    if (claimed.snapshot) {
      const saved = snapshotCodec.unpack(claimed.snapshot) as SavedSnapshot;
      unsealedSnapshot = saved.sealed === undefined;
      assignEmergencyState(this.state, this.unsealed(saved));
      this.seq = saved.seq;
      for (const e of this.state.timeline) if (e.type === "en_route") this.enRoute.add(e.actor.slice(e.actor.indexOf(":") + 1));
      // nobody is connected to a room that was just restored
      for (const party of [this.state.patient, ...this.state.firstAiders.values(), ...this.state.ambulance.values()]) party.online = false;
      // a snapshot from before sealing held the summary in the clear: it needs a key of its own now
      if (this.state.medical.profile.shared && !this.profileKey) {
        this.profileKey = await services().emergencyMedical.profileKey(this.roomId, claimed.patientId).catch(() => undefined);
        if (!this.profileKey) this.withdrawProfile();
      }
    } else {
      this.event("call_received", `patient:${claimed.patientId}`, this.alertNote(alert), now);
      this.unsaved = []; // recorded with the alert
    }

    this.dispatchers = { first_aider: this.newDispatch("first_aider"), ambulance_crew: this.newDispatch("ambulance_crew") };
    this.resumeDispatch();
    for (const e of this.state.timeline) if (e.type === "escalated") this.escalated.add(e.detail.slice(0, e.detail.indexOf(":")));
    this.armEscalation();
    if (restoring) {
      this.rearmHospitalTimers();
      this.syncHospital(true); // the receiving hospital's wallboard learns of it again
      this.reassertAssignments();
      this.dirty = unsealedSnapshot;
    } else {
      this.dirty = true;
      if (!claimed.bypass) await this.loadProfile(claimed.patientId);
    }
  }

  /** Whether the emergency is still open (not handed over or cancelled). */
  isOpen(): boolean {
    return !CLOSED.has(this.state.status);
  }

  /** The duty index learns again who serves this emergency (after a restore, or after Redis lost it). */
  reassertAssignments(): void {
    if (!this.isOpen()) return;
    const { duty } = services();
    for (const id of [...this.state.firstAiders.keys(), ...this.state.ambulance.keys()]) {
      duty.assign(id, this.roomId).catch(() => undefined);
    }
  }

  /** The wallboard of `hospitalId` was reopened: it learns of this emergency again. */
  resyncHospital(hospitalId: string): void {
    if (this.state.hospital.id === hospitalId && this.state.hospital.status !== "none") this.syncHospital(true);
  }

  /**
   * Another node took this emergency over: nothing more is written or timed from here, and every
   * party is sent to the node that holds the emergency now.
   */
  relinquish(): void {
    if (this.isRelinquished()) return;
    services().log.warn({ emergencyId: this.roomId, fence: this.fence }, "emergency taken over by another node; parties are sent there");
    this.stopTimersOnly();
    super.relinquish();
  }

  /** Stops every timer of this room without telling anyone (the new holder carries on). */
  private stopTimersOnly(): void {
    this.clearEscalation();
    for (const t of this.offerTimers.values()) t.clear();
    this.offerTimers.clear();
    for (const t of Object.values(this.retryTimers)) t?.clear();
    this.clearHospitalTimers();
  }

  /** Dispatch goes on for every role nobody was assigned to yet (after a create, a restore or an undone accept). */
  private resumeDispatch(): void {
    if (CLOSED.has(this.state.status)) return;
    for (const kind of ["first_aider", "ambulance_crew"] as const) {
      if (this.partiesOf(kind).size > 0) {
        this.dispatchers[kind].assignedTo ??= "";
        continue;
      }
      if (this.dispatchers[kind].done) this.dispatchers[kind] = this.newDispatch(kind);
      this.runDispatch(kind);
    }
  }

  /** A fresh dispatch for one role: its first radius depends on whether the patient is in an urban area. */
  private newDispatch(kind: ResponderKind): DispatchPolicy {
    const { config, urbanAreas } = services();
    return new DispatchPolicy(kind === "first_aider" ? config.dispatch.firstAider : config.dispatch.ambulance, isUrban(this.state.patient, urbanAreas));
  }

  /** The assigned responders of one role. */
  private partiesOf(kind: ResponderKind) {
    return kind === "first_aider" ? this.state.firstAiders : this.state.ambulance;
  }

  /** Hospital re-alert and acknowledgement timers follow the state (after a restore or an undone change). */
  private rearmHospitalTimers(retryDelayMs = 0): void {
    this.clearHospitalTimers();
    if (CLOSED.has(this.state.status)) return;
    const { config } = services();
    const link = this.state.hospital;
    if (link.status === "none") {
      if (this.state.medical.assessed) {
        this.hospitalTimers.push(this.clock.setTimeout(() => void this.system(() => this.matchHospital()), Math.max(retryDelayMs, config.hospitals.realertIntervalMs)));
      }
      return;
    }
    if (link.status !== "notified") return;
    const id = link.id;
    this.hospitalTimers.push(this.clock.setInterval(() => {
      if (this.state.hospital.id !== id || this.state.hospital.status !== "notified") return;
      this.state.hospital.alerts++;
      this.event("hospital_realerted", "system", id);
      this.syncHospital(true);
    }, config.hospitals.realertIntervalMs));
    const remaining = Math.max(retryDelayMs, link.notifiedAt + config.hospitals.ackTimeoutMs - Date.now());
    this.hospitalTimers.push(this.clock.setTimeout(() => {
      if (this.state.hospital.id === id && this.state.hospital.status === "notified") void this.system(() => this.passOver("no_acknowledgement"));
    }, remaining));
  }

  /** While a critical change commits, what it changed is held back; everything else goes out. */
  broadcastPatch(): boolean {
    const held = this.held;
    return held ? held.patchWithout(() => super.broadcastPatch()) : super.broadcastPatch();
  }

  isCommitting(): boolean {
    return this.committing > 0;
  }

  /** Timeline events the flusher should write with the next snapshot. */
  unsavedEvents(): readonly EmergencyEventRow[] {
    return this.unsaved;
  }

  /** The flusher wrote these events (up to `seq`): they are no longer waiting. */
  eventsSaved(seq: number): void {
    while (this.unsaved.length > 0 && this.unsaved[0].seq <= seq) this.unsaved.shift();
  }

  /**
   * The state as a snapshot: msgpack of its plain JSON with the timeline position, with nothing
   * medical in the clear. The medical part and the timeline's free-text notes are left out of the
   * JSON and stored sealed beside it: `sealed.clinical` (assessment and notes, under the clinical
   * key) and `sealed.profile` (the disclosed summary, under the profile key). Each sealed part is
   * encrypted again only when it changed since the last snapshot.
   */
  snapshot(): { seq: number; state: Buffer } {
    const state = this.state.toJSON() as Record<string, any>;
    delete state.medical;
    for (const e of state.timeline as { type: string; detail: string }[]) if (e.detail && NOTE_EVENTS.has(e.type)) e.detail = "";
    const saved: SavedSnapshot = { seq: this.seq, state, sealed: this.sealedParts() };
    return { seq: this.seq, state: Buffer.from(snapshotCodec.pack(saved)) };
  }

  /** The sealed medical parts for a snapshot: from the cache while their part is unchanged. */
  private sealedParts(): { clinical: Buffer; profile?: Buffer } {
    const medical = services().emergencyMedical;
    if (this.sealedClinical?.version !== this.clinicalVersion) {
      const record = this.state.medical.toJSON() as Record<string, unknown>;
      delete record.profile;
      const notes = [...this.state.timeline].filter((e) => e.detail && NOTE_EVENTS.has(e.type)).map((e) => [e.seq, e.detail]);
      this.sealedClinical = { version: this.clinicalVersion, bytes: medical.seal({ medical: record, notes }, this.clinicalKey, this.roomId, PART.clinical) };
    }
    if (this.sealedProfile?.version !== this.profileVersion) {
      const profile = this.state.medical.profile;
      // a summary is only ever kept under its key; without one (erased) it is not kept at all
      const bytes = profile.shared && this.profileKey ? medical.seal(profile.toJSON(), this.profileKey, this.roomId, PART.profile) : undefined;
      this.sealedProfile = { version: this.profileVersion, bytes };
    }
    return this.sealedProfile.bytes ? { clinical: this.sealedClinical.bytes, profile: this.sealedProfile.bytes } : { clinical: this.sealedClinical.bytes };
  }

  /**
   * A stored snapshot's state with its sealed parts opened and put back: the medical part and the
   * timeline's notes. A part that does not open (its key destroyed) comes back empty. Snapshots
   * written before sealing have their medical part in the clear, and are taken as they are (the
   * next snapshot seals it).
   */
  private unsealed(saved: SavedSnapshot): Record<string, any> {
    const state = saved.state;
    this.clinicalVersion++;
    this.profileVersion++;
    if (!saved.sealed) return state;
    const medical = services().emergencyMedical;
    let record: Record<string, any> = {};
    if (saved.sealed.clinical) {
      try {
        const opened = medical.unseal(saved.sealed.clinical, this.clinicalKey, this.roomId, PART.clinical) as { medical: Record<string, any>; notes: [number, string][] };
        record = opened.medical ?? {};
        const bySeq = new Map(opened.notes ?? []);
        for (const e of (state.timeline ?? []) as { seq: number; detail: string }[]) {
          const note = bySeq.get(e.seq);
          if (note !== undefined) e.detail = note;
        }
      } catch (error) {
        services().log.error({ err: error, emergencyId: this.roomId }, "the emergency's clinical record could not be opened; it is restored without it");
      }
    }
    let profile: Record<string, any> | undefined;
    if (saved.sealed.profile && this.profileKey) {
      try {
        profile = medical.unseal(saved.sealed.profile, this.profileKey, this.roomId, PART.profile) as Record<string, any>;
      } catch (error) {
        services().log.error({ err: error, emergencyId: this.roomId }, "the emergency's profile summary could not be opened; it is restored without it");
      }
    }
    state.medical = { ...record, profile: profile ?? { shared: false, bloodType: "", allergies: [], conditions: [], medications: [] } };
    return state;
  }

  /** The alert's note, opened from the alert record. */
  private alertNote(alert: AlertRecord): string {
    if (!alert.sealedNote) return alert.note ?? "";
    try {
      return String(services().emergencyMedical.unseal(Buffer.from(alert.sealedNote, "base64"), this.clinicalKey, this.roomId, PART.event(1)));
    } catch (error) {
      services().log.error({ err: error, emergencyId: this.roomId }, "the alert's note could not be opened");
      return "";
    }
  }

  /** A committed event's payload: a free-text note sealed under the clinical key, anything else as it is. */
  /** A timeline event as the database keeps it (its note sealed). */
  private eventRow(e: TimelineEvent): EmergencyEventRow {
    return { seq: e.seq, type: e.type, actor: e.actor, payload: this.eventPayload(e), at: e.at };
  }

  private eventPayload(e: TimelineEvent): Record<string, unknown> {
    if (!e.detail || !NOTE_EVENTS.has(e.type)) return { detail: e.detail };
    const sealed = services().emergencyMedical.seal(e.detail, this.clinicalKey, this.roomId, PART.event(e.seq));
    return { sealed: sealed.toString("base64") };
  }

  /** A side effect of a critical change (a call to another actor, a disconnect): run once the change is committed. */
  private effect(fn: () => void): void {
    if (this.effects) this.effects.push(fn);
    else fn();
  }

  /**
   * Runs a critical change: one at a time; the events it adds to the timeline, the snapshot after
   * it and the status are committed to Postgres before it is acknowledged and before its side
   * effects run. While it commits, what it changed is held back from patches (nobody sees what may
   * be undone) and every other change (positions) keeps going out. If the commit fails or passes
   * the database deadline, the change is undone and the sender is told to retry. A retried change
   * (same sender, same idempotency key) gets the first answer and changes nothing; a change that
   * changes nothing commits nothing. Each sender has a bounded rate of critical changes, and the
   * room a bounded queue of them.
   */
  private critical<T>(p: Principal | null, key: string | null | undefined, action: () => T): Promise<T> {
    const cacheKey = p && key ? `${p.sub}:${key}` : undefined;
    if (cacheKey && this.idempotent.has(cacheKey)) return Promise.resolve(this.replay<T>(cacheKey));
    try {
      if (p) this.criticalRate.take(p.sub);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.queuedCritical >= MAX_QUEUED_CRITICAL) {
      return Promise.reject(new HavenError("UNAVAILABLE", "too many changes are waiting to be recorded in this emergency; nothing changed; retry"));
    }
    // the answer is due within the database deadline, however long the wait for its turn
    const deadlineAt = Date.now() + services().config.database.callTimeoutMs;
    const run = async (): Promise<T> => {
      this.queuedCritical--;
      if (cacheKey && this.idempotent.has(cacheKey)) return this.replay<T>(cacheKey);
      if (Date.now() >= deadlineAt) throw new HavenError("UNAVAILABLE", "the change could not be recorded in time; nothing changed; retry");
      // what is pending goes out first, so that the change queue holds this change alone
      if (this.clients.length > 0) super.broadcastPatch();
      const held = new HeldChanges(this.changeRoot());
      const before = this.state.toJSON() as Record<string, unknown>;
      const seqBefore = this.seq;
      this.effects = [];
      this.committing++;
      let result: T;
      let effects: (() => void)[] = [];
      try {
        try {
          result = action();
        } catch (error) {
          // a refused action changes nothing; undo only what it may have touched before refusing
          if (this.seq !== seqBefore || JSON.stringify(this.state.toJSON()) !== JSON.stringify(before)) this.undo(before, seqBefore);
          throw error;
        }
        held.capture();
        this.held = held;
        effects = this.effects;
        this.effects = undefined;
        const changed = [...this.state.timeline].filter((e) => e.seq > seqBefore).map((e, i) => ({
          ...this.eventRow(e), idempotencyKey: i === 0 && key ? key : undefined,
        }));
        // events raised outside a critical change and not written yet go with it
        const carried = this.unsaved.at(-1)?.seq ?? 0;
        const events = [...this.unsaved, ...changed];
        if (changed.length > 0) {
          let fresh: boolean;
          try {
            if (this.isRelinquished()) throw new FencedError(this.roomId);
            fresh = await commitBy(deadlineAt, (signal) =>
              services().emergencyStore.commit(this.roomId, this.fence, events, this.snapshot(), this.state.status, signal));
          } catch (error) {
            // the sequence numbers stay spent: a commit whose answer was lost may have landed
            this.undo(before, this.seq);
            if (error instanceof FencedError) {
              this.relinquish();
              throw new HavenError("UNAVAILABLE", "this emergency moved to another node; nothing changed; rejoin and retry");
            }
            services().log.warn({ err: error, emergencyId: this.roomId }, "a critical change could not be committed and was undone");
            throw new HavenError("UNAVAILABLE", "the change could not be recorded; nothing changed; retry");
          }
          if (!fresh) {
            // committed before (a retry after a restart): keep the recorded outcome, not a second
            // one; the answer is the action's outcome on the state that already holds it
            this.undo(before, seqBefore);
            return { ...(result as object), duplicate: true } as T;
          }
          this.eventsSaved(carried);
          if (p) this.lastActivityAt = Date.now();
        }
      } finally {
        this.effects = undefined;
        this.held = undefined;
        this.committing--;
        // changes held during the commit go out now
        if (this.committing === 0) this.requestPatch();
      }
      for (const fn of effects) fn();
      if (cacheKey) {
        this.idempotent.set(cacheKey, result);
        if (this.idempotent.size > IDEMPOTENCY_MEMORY) this.idempotent.delete(this.idempotent.keys().next().value!);
      }
      return result;
    };
    this.queuedCritical++;
    const done = this.commitQueue.then(run, run);
    this.commitQueue = done.catch(() => undefined);
    return done;
  }

  /** The first answer to a retried change (same sender, same key), marked as a duplicate. */
  private replay<T>(cacheKey: string): T {
    return { ...(this.idempotent.get(cacheKey) as object), duplicate: true } as T;
  }

  /** A change the room makes by itself (a timer): critical too, with nobody to answer. */
  private system(action: () => void): Promise<void> {
    return this.critical(null, undefined, action).catch((error) => {
      services().log.warn({ err: error, emergencyId: this.roomId }, "a timed change was not committed; it will be retried");
      this.rearmHospitalTimers(SYSTEM_RETRY_MS);
    });
  }

  /** Puts the state back as it was before a change that was refused or not committed. */
  private undo(before: Record<string, unknown>, seq: number): void {
    assignEmergencyState(this.state, before);
    this.seq = seq;
    this.clinicalVersion++;
    this.profileVersion++;
    if (this.profileWithdrawn) this.withdrawProfile();
    this.rearmHospitalTimers();
    this.resumeDispatch();
    this.armEscalation();
  }

  /** The patient's consented profile summary goes into the medical view; without it the emergency goes on. */
  private async loadProfile(patientId: string): Promise<void> {
    try {
      const summary = await services().medical.summaryFor(patientId);
      if (!summary) return;
      // the summary is kept (sealed) under a key of its own, linked to the patient, stored only
      // while the profile exists: an erasure destroys it, and one that came first stops it here
      this.profileKey ??= await services().emergencyMedical.profileKey(this.roomId, patientId);
      if (!this.profileKey || this.profileWithdrawn) return;
      this.profileVersion++;
      const p = this.state.medical.profile;
      p.shared = true;
      p.bloodType = summary.bloodType;
      p.allergies.push(...summary.allergies);
      p.conditions.push(...summary.conditions);
      p.medications.push(...summary.medications);
    } catch (error) {
      services().log.warn({ err: error, emergencyId: this.roomId }, "medical profile unavailable for this emergency");
    }
  }

  /** Takes the profile summary out of the state (the patient erased the profile). */
  private withdrawProfile(): void {
    this.profileWithdrawn = true;
    this.profileKey = undefined;
    this.profileVersion++;
    const p = this.state.medical.profile;
    if (!p.shared && p.bloodType === "" && p.allergies.length === 0) return;
    p.shared = false;
    p.bloodType = "";
    p.allergies.clear();
    p.conditions.clear();
    p.medications.clear();
    this.dirty = true;
  }

  /**
   * Called once the patient erased their medical profile (its key for this emergency is already
   * destroyed): the summary leaves the state at once, so the parties stop seeing it and no later
   * snapshot keeps it.
   */
  profileErased(): CallResult {
    this.withdrawProfile();
    services().log.info({ emergencyId: this.roomId }, "the patient erased their medical profile; its summary was withdrawn from the emergency");
    return { ok: true };
  }

  /** Every disclosure of the profile summary to a party is audited. */
  private auditDisclosure(p: Principal): void {
    if (!this.state.medical.profile.shared) return;
    services().medical.disclosed(p, this.state.patient.id, this.roomId)
      .catch((error) => services().log.error({ err: error, emergencyId: this.roomId }, "audit write failed"));
  }

  /** Fires for every new socket join: verifies the token and that this party belongs here. */
  async onAuth(_client: HavenClient, _options: unknown, context: AuthContext): Promise<Principal> {
    const principal = await this.authenticate(context);
    if (CLOSED.has(this.state.status)) {
      throw refuse(HavenCloseCode.EMERGENCY_CLOSED, "EMERGENCY_CLOSED", "this emergency is over");
    }
    if (!this.entitled(principal)) {
      throw refuse(HavenCloseCode.FORBIDDEN, "NOT_ENTITLED", "you are not a party to this emergency");
    }
    return principal;
  }

  /** Fires after onAuth accepted the party: marks it online and opens its medical view if entitled. */
  onJoin(client: HavenClient): void {
    this.lastActivityAt = Date.now();
    this.setOnline(client.auth, true);
    if (this.medicallyEntitled(client.auth)) {
      // one view for every entitled party: their patches are encoded once, not once per party
      if (!this.medicalView) {
        this.medicalView = new StateView();
        this.medicalView.add(this.state.medical);
      }
      client.view = this.medicalView;
      this.auditDisclosure(client.auth);
    }
  }

  /** Fires when a party's socket drops without leaving: its seat is held for the reconnect window. */
  async onDrop(client: HavenClient): Promise<void> {
    this.setOnline(client.auth, false);
    const seconds = services().config.reconnectWindowSeconds;
    // a party that was removed (a hospital passed over) or whose emergency is over gets no seat back
    if (seconds > 0 && !CLOSED.has(this.state.status) && this.entitled(client.auth)) {
      try {
        await this.allowReconnection(client, seconds);
      } catch {
        // the window passed; onLeave follows
      }
    }
  }

  /** Fires when a dropped party is back on a new socket; it gets the full state again. */
  onReconnect(client: HavenClient): void {
    if (!this.entitled(client.auth)) {
      client.leave(HavenCloseCode.FORBIDDEN, "NOT_ENTITLED");
      return;
    }
    this.setOnline(client.auth, true);
  }

  /** Fires when a party has left for good. */
  onLeave(client: HavenClient): void {
    this.setOnline(client.auth, false);
  }

  /**
   * Fires when the server shuts down: the state is already flushed; parties are told to reconnect
   * (4010), and they find the emergency again by its id once a node has restored it.
   */
  onBeforeShutdown(): void {
    this.disconnect(CloseCode.MAY_TRY_RECONNECT).catch(() => {});
  }

  /** Fires when the room is disposed (after handover or cancel, once its parties are told). */
  onDispose(): void {
    services().emergencies.detach(this);
    if (this.isRelinquished()) {
      this.stopTimersOnly();
      return;
    }
    if (!this.holdsRoomId) return; // a duplicate that lost the claim: it never ran
    this.stopAllDispatch();
    this.clearHospitalTimers();
    this.clearEscalation();
    this.releaseId();
  }

  // ---------------------------------------------------------------- entitlement

  private entitled(p: Principal): boolean {
    switch (p.role) {
      case "patient": return p.sub === this.state.patient.id;
      case "first_aider": return this.state.firstAiders.has(p.sub);
      case "ambulance_crew": return this.state.ambulance.has(p.sub);
      case "hospital_staff":
      case "hospital_admin": return this.isReceivingHospital(p.hospitalId);
      case "ops_admin": return true;
    }
  }

  /** Assigned responders and the receiving hospital's staff see medical details. */
  private medicallyEntitled(p: Principal): boolean {
    return (p.role === "first_aider" && this.state.firstAiders.has(p.sub))
      || (p.role === "ambulance_crew" && this.state.ambulance.has(p.sub))
      || ((p.role === "hospital_staff" || p.role === "hospital_admin") && this.isReceivingHospital(p.hospitalId));
  }

  private isReceivingHospital(hospitalId: string | undefined): boolean {
    return hospitalId !== undefined && hospitalId === this.state.hospital.id && this.state.hospital.status !== "none";
  }

  private partyOf(p: Principal): Party | undefined {
    if (p.role === "patient" && p.sub === this.state.patient.id) return this.state.patient;
    if (p.role === "first_aider") return this.state.firstAiders.get(p.sub);
    if (p.role === "ambulance_crew") return this.state.ambulance.get(p.sub);
    return undefined;
  }

  private setOnline(p: Principal, online: boolean): void {
    const party = this.partyOf(p);
    if (party) party.online = online;
  }

  private requireOpen(): void {
    if (CLOSED.has(this.state.status)) throw new HavenError("EMERGENCY_CLOSED", `the emergency is ${this.state.status}`);
  }

  private requireParty(p: Principal): Party {
    const party = this.partyOf(p);
    if (!party) throw new HavenError("NOT_ENTITLED", "you are not a party to this emergency");
    return party;
  }

  // ---------------------------------------------------------------- timeline

  private event(type: string, actor: string, detail = "", at = Date.now()): void {
    const e = new TimelineEvent();
    e.seq = ++this.seq;
    e.type = type;
    e.at = at;
    e.actor = actor;
    e.detail = detail.slice(0, 200);
    this.state.timeline.push(e);
    this.dirty = true;
    if (e.detail && NOTE_EVENTS.has(type)) this.clinicalVersion++;
    // outside a critical change (a timer, dispatch): written by the snapshot flusher or the next commit
    if (this.effects === undefined) {
      if (this.unsaved.length >= MAX_UNSAVED_EVENTS) {
        services().log.error({ emergencyId: this.roomId, seq: this.unsaved[0].seq }, "timeline events waiting for the database overflowed; the oldest is dropped");
        this.unsaved.shift();
      }
      this.unsaved.push(this.eventRow(e));
    }
    const max = services().config.timelineLength;
    while (this.state.timeline.length > max) this.state.timeline.shift();
  }

  private actor(p: Principal): string {
    return `${p.role}:${p.sub}`;
  }

  // ---------------------------------------------------------------- positions

  updatePosition(p: Principal, pos: { lat: number; lng: number; accuracy?: number; heading?: number; speed?: number }): { ok: true } {
    this.requireOpen();
    const party = this.requireParty(p);
    party.lat = pos.lat;
    party.lng = pos.lng;
    if (pos.accuracy !== undefined) party.accuracy = pos.accuracy;
    if (pos.heading !== undefined) party.heading = pos.heading;
    if (pos.speed !== undefined) party.speed = pos.speed;
    party.updatedAt = this.lastActivityAt = Date.now();
    this.dirty = true;
    if (this.state.hospital.status !== "none" && p.role !== "first_aider") this.refreshEta();
    return { ok: true };
  }

  /** Seconds until the patient reaches the receiving hospital, from the best position known. */
  private refreshEta(): void {
    const h = this.state.hospital;
    if (h.status === "none") return;
    const { eta } = services();
    const target: LatLng = { lat: h.lat, lng: h.lng };
    const crew = [...this.state.ambulance.values()][0];
    let seconds: number;
    if (this.state.status === "transporting" || this.state.status === "at_hospital") {
      seconds = this.state.status === "at_hospital" ? 0 : eta.etaSeconds(crew ?? this.state.patient, target);
    } else if (crew && crew.updatedAt > 0) {
      seconds = eta.etaSeconds(crew, this.state.patient) + eta.etaSeconds(this.state.patient, target);
    } else {
      seconds = eta.etaSeconds(this.state.patient, target);
    }
    if (seconds !== h.etaSeconds) {
      h.etaSeconds = seconds;
      this.syncHospital(false);
    }
  }

  // ---------------------------------------------------------------- dispatch

  /**
   * Looks the nearest dispatchable responders up (in Redis GEO in a cluster, wherever their duty
   * socket is), then fills the open offer slots from them in one synchronous step.
   */
  private runDispatch(kind: ResponderKind): void {
    const policy = this.dispatchers[kind];
    if (policy.done || CLOSED.has(this.state.status) || this.isRelinquished()) return;
    const { duty, config } = services();
    const at: LatLng = { lat: this.state.patient.lat, lng: this.state.patient.lng };
    const cfg = kind === "first_aider" ? config.dispatch.firstAider : config.dispatch.ambulance;
    duty.candidates(kind, at, cfg.maxRadiusM, cfg.offers + policy.offered.size).then(
      (found) => this.offerTo(kind, at, found),
      (error) => {
        services().log.warn({ err: error, emergencyId: this.roomId, kind }, "the on-duty index cannot be searched; dispatch retries");
        this.offerTo(kind, at, [], true);
      },
    );
  }

  private offerTo(kind: ResponderKind, at: LatLng, found: Candidate[], failed = false): void {
    const policy = this.dispatchers[kind];
    if (policy.done || CLOSED.has(this.state.status) || this.isRelinquished()) return;
    const { config } = services();
    const step = failed
      ? { offer: [], withdraw: [], exhausted: policy.outstanding.size === 0, widenedTo: undefined }
      : policy.fill((radiusM, exclude, limit) => found.filter((c) => c.distanceM <= radiusM && !exclude.has(c.userId)).slice(0, limit));
    if (step.widenedTo !== undefined) this.event("radius_widened", "system", `${kind} ${step.widenedTo} m`);
    if (kind === "first_aider") this.state.dispatch.firstAiderRadiusM = policy.radiusM;
    else this.state.dispatch.ambulanceRadiusM = policy.radiusM;

    const now = Date.now();
    for (const c of step.offer) {
      const offer: Outstanding = { offerId: randomUUID(), userId: c.userId, dutyRoomId: c.dutyRoomId, distanceM: c.distanceM, lat: c.lat, lng: c.lng, expiresAt: now + config.dispatch.offerTimeoutMs };
      policy.record(offer);
      this.offerKinds.set(offer.offerId, kind);
      this.offerTimers.set(offer.offerId, this.clock.setTimeout(() => this.offerLapsed(offer.offerId, "timeout"), config.dispatch.offerTimeoutMs));
      matchMaker.remoteRoomCall(c.dutyRoomId, "receiveOffer", [{
        id: offer.offerId, emergencyId: this.roomId, priority: this.state.priority,
        lat: at.lat, lng: at.lng, distanceM: c.distanceM, expiresAt: offer.expiresAt,
      }]).catch(() => this.offerLapsed(offer.offerId, "unreachable"));
    }
    if (step.offer.length > 0) {
      if (this.state.times.responderNotifiedAt === 0) this.state.times.responderNotifiedAt = now;
      this.event("responders_notified", "system", `${step.offer.length} ${kind}`, now);
    }
    this.updateDispatchView();

    this.retryTimers[kind]?.clear();
    if (step.exhausted) {
      this.retryTimers[kind] = this.clock.setTimeout(() => this.runDispatch(kind), config.dispatch.widenIntervalMs);
    }
  }

  private updateDispatchView(): void {
    const out = this.dispatchers.first_aider.outstanding.size + this.dispatchers.ambulance_crew.outstanding.size;
    this.state.dispatch.offersOut = out;
    this.state.dispatch.searching = !CLOSED.has(this.state.status) && (!this.dispatchers.first_aider.done || !this.dispatchers.ambulance_crew.done);
  }

  private offerLapsed(offerId: string, why: "timeout" | "declined" | "unreachable", detail = ""): void {
    const kind = this.offerKinds.get(offerId);
    if (!kind) return;
    const released = this.dispatchers[kind].release(offerId);
    this.forgetOffer(offerId);
    if (!released) return;
    if (why === "timeout") {
      this.event("offer_timed_out", "system", kind);
      matchMaker.remoteRoomCall(released.dutyRoomId, "withdrawOffer", [offerId, "timeout"]).catch(() => {});
    } else if (why === "declined") {
      this.event("offer_declined", `${kind}:${released.userId}`, detail);
    }
    this.runDispatch(kind);
  }

  /** Drops an offer's timer and its kind: it is no longer live. */
  private forgetOffer(offerId: string): void {
    this.offerTimers.get(offerId)?.clear();
    this.offerTimers.delete(offerId);
    this.offerKinds.delete(offerId);
  }

  private withdraw(offers: Outstanding[], reason: string): void {
    for (const o of offers) {
      this.forgetOffer(o.offerId);
      this.effect(() => void matchMaker.remoteRoomCall(o.dutyRoomId, "withdrawOffer", [o.offerId, reason]).catch(() => {}));
    }
  }

  private stopAllDispatch(): void {
    if (!this.dispatchers) return;
    for (const kind of ["first_aider", "ambulance_crew"] as const) {
      this.withdraw(this.dispatchers[kind].stop(), "closed");
      this.retryTimers[kind]?.clear();
    }
    this.updateDispatchView();
  }

  /** Called by a responder's duty room when the responder accepts an offer. First accept wins. */
  acceptOffer(offerId: string, userId: string, name: string): Promise<CallResult<{ emergencyId: string }>> {
    return this.critical(null, undefined, () => this.assign(offerId, userId, name));
  }

  private assign(offerId: string, userId: string, name: string): CallResult<{ emergencyId: string }> {
    if (CLOSED.has(this.state.status)) return fail("EMERGENCY_CLOSED", "the emergency is over");
    const kind = this.offerKinds.get(offerId);
    if (!kind) return fail("OFFER_EXPIRED", "the offer is no longer open");
    const policy = this.dispatchers[kind];
    const live = policy.outstanding.get(offerId);
    if (!live || live.userId !== userId) return fail("OFFER_EXPIRED", "the offer is no longer open");
    const won = policy.accept(offerId);
    if (!won) return fail("ALREADY_ASSIGNED", "another responder was assigned");
    this.forgetOffer(offerId);
    this.withdraw(won.withdraw, "assigned_elsewhere");
    this.retryTimers[kind]?.clear();

    const { duty } = services();
    this.effect(() => void duty.assign(userId, this.roomId).catch(() => undefined));
    const party = new Party();
    Object.assign(party, {
      id: userId, role: kind, name, lat: live.lat, lng: live.lng,
      updatedAt: live.expiresAt - services().config.dispatch.offerTimeoutMs, online: false,
    });
    this.partiesOf(kind).set(userId, party);
    const now = Date.now();
    if (this.state.status === "alerted") this.state.status = "dispatched";
    if (this.state.times.enRouteAt === 0) this.state.times.enRouteAt = now;
    this.event("responder_assigned", `${kind}:${userId}`, "", now);
    this.updateDispatchView();
    if (kind === "ambulance_crew") this.refreshEta();
    return { ok: true, emergencyId: this.roomId };
  }

  /** Called by a responder's duty room when the responder declines an offer. */
  declineOffer(offerId: string, userId: string, reason?: string | null): CallResult {
    const kind = this.offerKinds.get(offerId);
    const live = kind && this.dispatchers[kind].outstanding.get(offerId);
    if (!live || live.userId !== userId) return fail("OFFER_EXPIRED", "the offer is no longer open");
    this.offerLapsed(offerId, "declined", reason ?? "");
    return { ok: true };
  }

  // ---------------------------------------------------------------- responder actions

  responderStatus(p: Principal, body: { step: "en_route" | "on_scene" | "left_scene" | "at_hospital"; idempotencyKey?: string }): Promise<{ ok: true; status: string }> {
    return this.critical(p, body.idempotencyKey, () => {
      this.requireOpen();
      this.requireParty(p);
      const t = this.state.times;
      const now = Date.now();
      const advance = (to: (typeof STATUS_ORDER)[number], from: readonly string[]) => {
        if (this.state.status === to) return false;
        if (!from.includes(this.state.status)) {
          throw new HavenError("INVALID_TRANSITION", `cannot go to ${to} while ${this.state.status}`);
        }
        this.state.status = to;
        return true;
      };
      switch (body.step) {
        case "en_route":
          // said once per responder: a repeat changes nothing and records nothing
          if (this.enRoute.has(p.sub)) return { ok: true as const, status: this.state.status };
          this.effect(() => this.enRoute.add(p.sub));
          if (t.enRouteAt === 0) t.enRouteAt = now;
          this.event("en_route", this.actor(p), "", now);
          break;
        case "on_scene":
          if (advance("on_scene", ["dispatched"])) { t.onSceneAt = now; this.event("on_scene", this.actor(p), "", now); }
          break;
        case "left_scene":
          if (advance("transporting", ["on_scene"])) { t.leftSceneAt = now; this.event("left_scene", this.actor(p), "", now); }
          break;
        case "at_hospital":
          if (this.state.hospital.status === "none") throw new HavenError("INVALID_TRANSITION", "no receiving hospital yet");
          if (advance("at_hospital", ["transporting"])) { t.atHospitalAt = now; this.event("arrived_at_hospital", this.actor(p), "", now); }
          break;
      }
      this.refreshEta();
      this.syncHospital(true);
      return { ok: true as const, status: this.state.status };
    });
  }

  submitAssessment(p: Principal, a: {
    age?: number; timeOfIncident?: number; mechanism: string; injuries: string[]; treatment: string[];
    signs?: Record<string, number | string>; priority?: "critical" | "high" | "medium"; suspected?: Specialty[]; idempotencyKey?: string;
  }): Promise<{ ok: true; priority: string; hospitalId: string }> {
    return this.critical(p, a.idempotencyKey, () => {
      this.requireOpen();
      this.requireParty(p);
      const m = this.state.medical;
      m.assessed = true;
      m.age = a.age ?? -1;
      m.timeOfIncident = a.timeOfIncident ?? 0;
      m.mechanism = a.mechanism;
      m.injuries.clear(); m.injuries.push(...a.injuries);
      m.treatment.clear(); m.treatment.push(...a.treatment);
      m.suspected.clear(); m.suspected.push(...(a.suspected ?? []));
      for (const key of ["heartRate", "respiratoryRate", "systolic", "diastolic", "spo2", "temperature", "gcs"] as const) {
        (m.signs as any)[key] = a.signs?.[key] ?? -1;
      }
      m.signs.avpu = (a.signs?.avpu as string | undefined) ?? "";
      m.assessedBy = this.actor(p);
      m.assessedAt = Date.now();
      this.clinicalVersion++;
      this.event("assessment_submitted", this.actor(p));
      const patientId = this.state.patient.id;
      this.effect(() => void services().emergencyMedical.recorded(p, patientId, this.roomId, CLINICAL_FIELDS.filter((f) => f !== "notes"))
        .catch((error) => services().log.error({ err: error, emergencyId: this.roomId }, "audit write failed")));
      if (a.priority && a.priority !== this.state.priority) {
        this.event("priority_changed", this.actor(p), `${this.state.priority} -> ${a.priority}`);
        this.state.priority = a.priority;
      }
      if (this.state.hospital.status === "none") this.matchHospital();
      else this.syncHospital(true);
      this.armEscalation(); // the receiving hospital's acknowledgement is now due
      return { ok: true as const, priority: this.state.priority, hospitalId: this.state.hospital.id };
    });
  }

  cancel(p: Principal, why: { reason: string; note?: string }, idempotencyKey?: string | null): Promise<{ ok: true; status: string }> {
    return this.critical(p, idempotencyKey, () => {
      if (this.state.status === "cancelled") return { ok: true as const, status: "cancelled" };
      this.requireOpen();
      if (p.role === "patient" && p.sub !== this.state.patient.id) throw new HavenError("NOT_ENTITLED", "not your emergency");
      this.state.status = "cancelled";
      this.event("cancelled", this.actor(p), why.note ? `${why.reason}: ${why.note}` : why.reason);
      this.close();
      return { ok: true as const, status: "cancelled" };
    });
  }

  // ---------------------------------------------------------------- hospital

  /** Ranks hospitals and pre-notifies the best one not yet passed over. */
  private matchHospital(): void {
    const { hospitals, config } = services();
    const exclude = new Set<string>(this.state.hospital.passedOver);
    const m = this.state.medical;
    const [best] = rankHospitals(hospitals.all(), {
      at: this.state.patient,
      needs: neededSpecialties(m.assessed ? ([...m.suspected] as Specialty[]) : [], m.age >= 0 ? m.age : undefined),
      critical: this.state.priority === "critical",
      exclude,
      maxDistanceM: config.hospitals.maxDistanceM,
    });
    if (!best) {
      this.event("no_hospital_available", "system");
      this.rearmHospitalTimers(); // tries again at the re-alert interval
      return;
    }
    const h = hospitals.get(best.hospitalId)!;
    const link = this.state.hospital;
    link.id = h.id; link.name = h.name; link.lat = h.lat; link.lng = h.lng;
    link.status = "notified";
    link.notifiedAt = Date.now();
    link.acknowledgedAt = 0;
    link.alerts = 1;
    link.score = best.score; link.distanceScore = best.distanceScore; link.capacityScore = best.capacityScore; link.specialtyScore = best.specialtyScore;
    link.distanceM = best.distanceM;
    link.readiness.clear();
    for (const [key, label] of [["team", "Team assembled"], ["equipment", "Equipment ready"], ["bed", "Bed allocated"]] as const) {
      const item = new ReadinessItem();
      item.key = key; item.label = label; item.ready = false; item.updatedAt = Date.now();
      link.readiness.set(key, item);
    }
    this.event("hospital_matched", "system", `${h.id} score ${best.score} (d ${best.distanceScore}, c ${best.capacityScore}, s ${best.specialtyScore})`);
    this.refreshEta();
    this.syncHospital(true);
    this.rearmHospitalTimers(); // re-alerts until acknowledged, passes over when not in time
  }

  private clearHospitalTimers(): void {
    for (const t of this.hospitalTimers) t.clear();
    this.hospitalTimers = [];
  }

  /** The receiving hospital declined or did not answer: tell it, revoke its view, try the next. */
  private passOver(why: "declined" | "no_acknowledgement", detail = ""): void {
    const link = this.state.hospital;
    const previous = link.id;
    this.syncHospital(true, why === "declined" ? "declined" : "withdrawn");
    link.passedOver.push(previous);
    link.status = "none";
    link.id = "";
    link.etaSeconds = -1;
    this.event(why === "declined" ? "hospital_declined" : "hospital_timed_out", `hospital:${previous}`, detail || why);
    this.effect(() => {
      for (const c of this.clients) {
        if ((c.auth.role === "hospital_staff" || c.auth.role === "hospital_admin") && c.auth.hospitalId === previous) {
          c.leave(HavenCloseCode.FORBIDDEN, "NOT_RECEIVING_HOSPITAL");
        }
      }
    });
    this.matchHospital();
  }

  private requireReceiving(hospitalId: string): void {
    if (!this.isReceivingHospital(hospitalId)) throw new HavenError("NOT_RECEIVING_HOSPITAL", "this hospital is not receiving the patient");
  }

  /** Hospital room → here: staff acknowledged the pre-notification. */
  hospitalAcknowledge(hospitalId: string, staff: Principal, key?: string): Promise<CallResult<{ status: string }>> {
    return guard(() => this.critical(staff, key, () => {
      this.requireOpen();
      this.requireReceiving(hospitalId);
      if (this.state.hospital.status !== "acknowledged") {
        this.state.hospital.status = "acknowledged";
        this.state.hospital.acknowledgedAt = Date.now();
        this.clearHospitalTimers();
        this.event("hospital_acknowledged", this.actor(staff));
        this.syncHospital(true);
      }
      return { status: this.state.hospital.status };
    }));
  }

  hospitalDecline(hospitalId: string, staff: Principal, reason: string, key?: string): Promise<CallResult<{ nextHospitalId: string }>> {
    return guard(() => this.critical(staff, key, () => {
      this.requireOpen();
      this.requireReceiving(hospitalId);
      if (this.state.status === "at_hospital") throw new HavenError("INVALID_TRANSITION", "the patient is already here");
      this.passOver("declined", reason);
      return { nextHospitalId: this.state.hospital.id };
    }));
  }

  hospitalReadiness(hospitalId: string, staff: Principal, item: { key: string; label?: string; ready: boolean }, key?: string): Promise<CallResult<{ key: string; ready: boolean }>> {
    return guard(() => this.critical(staff, key, () => {
      this.requireOpen();
      this.requireReceiving(hospitalId);
      let r = this.state.hospital.readiness.get(item.key);
      if (!r) {
        if (this.state.hospital.readiness.size >= 20) throw new HavenError("INVALID_PAYLOAD", "at most 20 readiness items");
        r = new ReadinessItem();
        r.key = item.key;
        r.label = item.label ?? item.key;
        this.state.hospital.readiness.set(item.key, r);
      } else if (r.ready === item.ready && (item.label === undefined || item.label === r.label)) {
        return { key: item.key, ready: item.ready }; // as it is already: nothing to record
      } else if (item.label !== undefined) {
        r.label = item.label;
      }
      r.ready = item.ready;
      r.updatedAt = Date.now();
      this.event("readiness_changed", this.actor(staff), `${item.key}=${item.ready}`);
      this.syncHospital(true);
      return { key: item.key, ready: item.ready };
    }));
  }

  hospitalHandover(hospitalId: string, staff: Principal, notes: string | undefined, key?: string): Promise<CallResult<{ status: string }>> {
    return guard(() => this.critical(staff, key, () => {
      if (this.state.status === "handed_over") return { status: "handed_over" };
      this.requireOpen();
      this.requireReceiving(hospitalId);
      if (this.state.status !== "at_hospital" && this.state.status !== "transporting") {
        throw new HavenError("INVALID_TRANSITION", `cannot hand over while ${this.state.status}`);
      }
      const now = Date.now();
      if (this.state.times.atHospitalAt === 0) this.state.times.atHospitalAt = now;
      this.state.times.handedOverAt = now;
      this.state.status = "handed_over";
      this.state.hospital.etaSeconds = 0;
      this.event("handed_over", this.actor(staff), notes ?? "", now);
      this.close();
      return { status: "handed_over" };
    }));
  }

  /** The handover summary the receiving team reads on the wallboard (ATMIST in one paragraph). */
  private handoverSummary(): string {
    const m = this.state.medical;
    if (!m.assessed) return "";
    const s = m.signs;
    const signs = [
      s.heartRate >= 0 ? `HR ${s.heartRate}` : "", s.systolic >= 0 ? `BP ${s.systolic}/${s.diastolic >= 0 ? s.diastolic : "?"}` : "",
      s.respiratoryRate >= 0 ? `RR ${s.respiratoryRate}` : "", s.spo2 >= 0 ? `SpO2 ${s.spo2}%` : "",
      s.temperature >= 0 ? `T ${s.temperature.toFixed(1)}` : "", s.gcs >= 0 ? `GCS ${s.gcs}` : "", s.avpu ? `AVPU ${s.avpu}` : "",
    ].filter(Boolean).join(", ");
    return [
      `A: ${m.age >= 0 ? m.age : "unknown"}`,
      `T: ${m.timeOfIncident > 0 ? new Date(m.timeOfIncident).toISOString() : "unknown"}`,
      `M: ${m.mechanism}`,
      `I: ${m.injuries.join("; ") || "none recorded"}`,
      `S: ${signs || "none recorded"}`,
      `T: ${m.treatment.join("; ") || "none"}`,
    ].join(" | ");
  }

  /** Mirrors this emergency onto the receiving hospital's wallboard room. */
  private syncHospital(urgent: boolean, hospitalStatus?: string): void {
    const link = this.state.hospital;
    if (!link.id) return;
    const now = Date.now();
    if (!urgent && now - this.lastHospitalSync < 1000) {
      this.hospitalSyncTimer ??= this.clock.setTimeout(() => {
        this.hospitalSyncTimer = undefined;
        this.syncHospital(true);
      }, 1000 - (now - this.lastHospitalSync));
      return;
    }
    this.hospitalSyncTimer?.clear();
    this.hospitalSyncTimer = undefined;
    this.lastHospitalSync = now;
    const status = hospitalStatus ?? (CLOSED.has(this.state.status) ? this.state.status : link.status);
    const hospitalRoom = hospitalRoomId(link.id);
    const summary = {
      emergencyId: this.roomId,
      priority: this.state.priority,
      status: this.state.status,
      hospitalStatus: status,
      notifiedAt: link.notifiedAt,
      acknowledgedAt: link.acknowledgedAt,
      etaSeconds: link.etaSeconds,
      handoverSummary: this.handoverSummary(),
      score: link.score, distanceScore: link.distanceScore, capacityScore: link.capacityScore, specialtyScore: link.specialtyScore,
      readiness: [...link.readiness.values()].map((r) => ({ key: r.key, label: r.label, ready: r.ready, updatedAt: r.updatedAt })),
      handedOverAt: this.state.times.handedOverAt,
    };
    this.effect(() => void matchMaker.remoteRoomCall(hospitalRoom, "upsertIncoming", [summary])
      .catch((error) => services().log.warn({ err: error, emergencyId: this.roomId }, "hospital room unreachable")));
  }

  // ---------------------------------------------------------------- escalation and expiry

  /**
   * Arms the bounds of this emergency from its state (after a create, a restore, an assessment or
   * an undone change): operations is alerted when a role has no accepted responder in time, or no
   * hospital acknowledged in time after the assessment; an emergency with no activity for the
   * idle bound is closed as expired. Dispatch and re-alerts go on until then.
   */
  private armEscalation(): void {
    this.clearEscalation();
    if (!this.isOpen()) return;
    const { escalation } = services().config;
    const now = Date.now();
    const at = (when: number, fn: () => void) => this.escalationTimers.push(this.clock.setTimeout(fn, Math.max(0, when - now)));
    if (!this.escalated.has("no_responder")) {
      at(this.state.createdAt + escalation.noResponderMs, () => {
        const missing = (["first_aider", "ambulance_crew"] as const).filter((k) => this.partiesOf(k).size === 0);
        if (missing.length > 0) this.escalate("no_responder", `no ${missing.join(" or ")} accepted within ${seconds(escalation.noResponderMs)} of the alert`);
      });
    }
    if (this.state.medical.assessed && !this.escalated.has("no_acknowledgement")) {
      at(this.state.medical.assessedAt + escalation.noAcknowledgementMs, () => {
        if (this.state.hospital.status !== "acknowledged") {
          this.escalate("no_acknowledgement", `no hospital acknowledged within ${seconds(escalation.noAcknowledgementMs)} of the assessment`);
        }
      });
    }
    at(this.lastActivityAt + escalation.idleExpiryMs, () => this.expireIfIdle());
  }

  private clearEscalation(): void {
    for (const t of this.escalationTimers) t.clear();
    this.escalationTimers = [];
  }

  /** Operations is alerted, once per reason: on the timeline, in the log at error level, and in the audit log. */
  private escalate(reason: string, text: string): void {
    if (!this.isOpen() || this.isRelinquished() || this.escalated.has(reason)) return;
    this.escalated.add(reason);
    this.event("escalated", "system", `${reason}: ${text}`);
    services().log.error({ emergencyId: this.roomId, priority: this.state.priority, status: this.state.status, reason }, `emergency escalated to operations: ${text}`);
    this.auditSystem("emergency.escalated", reason);
  }

  /** Closes the emergency as expired if nothing happened in it for the idle bound; otherwise looks again when it could be. */
  private expireIfIdle(): void {
    if (!this.isOpen() || this.isRelinquished()) return;
    const { idleExpiryMs } = services().config.escalation;
    const idle = Date.now() - this.lastActivityAt;
    if (idle < idleExpiryMs) {
      this.escalationTimers.push(this.clock.setTimeout(() => this.expireIfIdle(), idleExpiryMs - idle));
      return;
    }
    this.critical(null, undefined, () => {
      if (!this.isOpen()) return;
      this.state.status = "expired";
      this.event("expired", "system", `no activity for ${seconds(idleExpiryMs)}`);
      this.close();
      this.effect(() => this.auditSystem("emergency.expired", `no activity for ${seconds(idleExpiryMs)}`));
    }).catch((error) => {
      services().log.warn({ err: error, emergencyId: this.roomId }, "an idle emergency could not be closed as expired yet; trying again");
      this.escalationTimers.push(this.clock.setTimeout(() => this.expireIfIdle(), SYSTEM_RETRY_MS));
    });
  }

  /** An audit record of a decision the emergency made by itself. */
  private auditSystem(action: string, reason: string): void {
    const { audit, config, log } = services();
    audit.append({
      at: new Date(), actor: "system", actorRole: "system", action, subject: this.state.patient.id, emergencyId: this.roomId,
      breakGlass: false, reason, node: config.nodeName, outcome: "ok",
    }).catch((error) => log.error({ err: error, emergencyId: this.roomId, action }, "audit write failed"));
  }

  // ---------------------------------------------------------------- closing

  /** Handover or cancel: withdraw offers, release responders, tell the hospital, then close. */
  private close(): void {
    this.stopAllDispatch();
    this.clearHospitalTimers();
    this.clearEscalation();
    this.syncHospital(true);
    const { duty, config } = services();
    for (const kind of ["first_aider", "ambulance_crew"] as const) {
      for (const [id, party] of this.partiesOf(kind)) {
        const at = { lat: party.lat, lng: party.lng, updatedAt: party.updatedAt };
        // like an assignment, a release reaches the duty index only once it is committed; the
        // index learns where the responder is now, as seen here (and dispatchable again there)
        this.effect(() => {
          duty.update(id, at)
            .then(() => duty.assign(id, undefined))
            .then(() => matchMaker.remoteRoomCall(dutyRoomId(id), "released", [this.roomId]))
            .catch(() => {});
        });
      }
    }
    this.effect(() => {
      this.clock.setTimeout(() => this.disconnect(HavenCloseCode.EMERGENCY_CLOSED).catch(() => {}), config.closeGraceMs);
    });
  }

  // ---------------------------------------------------------------- REST entry points

  /** A snapshot for `GET /api/emergency/{id}/status`, filtered to what the caller may see. */
  statusFor(p: Principal): CallResult<{ emergency: unknown }> {
    if (!this.entitled(p)) return fail("NOT_ENTITLED", "you are not a party to this emergency");
    const json = this.state.toJSON() as Record<string, unknown>;
    if (!this.medicallyEntitled(p)) delete json.medical;
    else this.auditDisclosure(p);
    return { ok: true, emergency: json };
  }

  async restPosition(p: Principal, pos: { lat: number; lng: number; accuracy?: number; heading?: number; speed?: number }): Promise<CallResult> {
    if (!this.entitled(p)) return fail("NOT_ENTITLED", "you are not a party to this emergency");
    return guard(() => this.updatePosition(p, pos));
  }

  async restCancel(p: Principal, why: { reason: string; note?: string }, key?: string | null): Promise<CallResult<{ status: string }>> {
    if (!(p.role === "ops_admin" || (p.role === "patient" && p.sub === this.state.patient.id))) {
      return fail("NOT_ENTITLED", "only the patient or ops can cancel");
    }
    return guard(() => this.cancel(p, why, key));
  }
}

/**
 * A fixed-window count of what each sender did, bounded: a sender over its allowance is refused
 * with RATE_LIMITED until the window turns. Entries of past windows are dropped as it grows.
 */
class SenderRate {
  private readonly counts = new Map<string, { windowStart: number; count: number }>();
  private readonly limit: number;
  private readonly windowMs: number;

  constructor(limit: number, windowMs: number) {
    this.limit = limit;
    this.windowMs = windowMs;
  }

  take(sender: string): void {
    const now = Date.now();
    let entry = this.counts.get(sender);
    if (!entry || now - entry.windowStart >= this.windowMs) {
      if (this.counts.size >= 256) for (const [k, e] of this.counts) if (now - e.windowStart >= this.windowMs) this.counts.delete(k);
      if (this.counts.size >= 1024) this.counts.delete(this.counts.keys().next().value!);
      entry = { windowStart: now, count: 0 };
      this.counts.set(sender, entry);
    }
    if (++entry.count > this.limit) {
      const retryAfter = Math.ceil((entry.windowStart + this.windowMs - now) / 1000);
      throw new HavenError("RATE_LIMITED", `more than ${this.limit} changes in ${this.windowMs / 1000} s; retry in ${retryAfter} s`, { retryAfterSeconds: retryAfter });
    }
  }
}

/** A duration as people read it. */
function seconds(ms: number): string {
  return ms >= 120_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 1000)} s`;
}

/** Runs a commit that must answer by `deadlineAt`; past it, the commit is abandoned (it rolls back) and this rejects. */
function commitBy<T>(deadlineAt: number, commit: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const abandon = new AbortController();
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      abandon.abort();
      reject(new HavenError("UNAVAILABLE", "the database did not answer in time"));
    }, Math.max(0, deadlineAt - Date.now()));
    commit(abandon.signal).then(
      (value) => { clearTimeout(timer); resolve(value); },
      (error: unknown) => { clearTimeout(timer); reject(error); },
    );
  });
}

function fail(code: string, message: string): { ok: false; error: { code: string; message: string } } {
  return { ok: false, error: { code, message } };
}

async function guard<T extends object>(action: () => T | Promise<T>): Promise<CallResult<T>> {
  try {
    const value = await action() as Record<string, unknown>;
    return { ...value, ok: true } as CallResult<T>;
  } catch (error) {
    return { ok: false, error: toWireError(error) };
  }
}
