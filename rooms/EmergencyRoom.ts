import { type AuthContext, CloseCode } from "@colyseus/core";
import { StateView } from "@colyseus/schema";
import type { Principal, Role } from "../src/auth/tokens.ts";
import { HavenError } from "../src/protocol/errors.ts";
import { fail, guard, type CallResult } from "../src/protocol/results.ts";
import { HavenCloseCode } from "../src/protocol/close-codes.ts";
import { services } from "../src/services.ts";
import { isEntitled, isMedicallyEntitled, mayCancel, mayChat } from "../src/domain/entitlement.ts";
import { isClosed, type ResponderStep } from "../src/domain/status.ts";
import { HavenRoom, refuse, type HavenClient, type MessageHandler } from "./HavenRoom.ts";
import { HeldChanges } from "./patches.ts";
import type { Party } from "./schema/common.ts";
import { CHAT_VIEW, MEDICAL_VIEW, type EmergencyState } from "./schema/EmergencyState.ts";
import { assignEmergencyState } from "./schema/restore.ts";
import type { Transactions } from "./transactions.ts";
import { actor, requireOpen, type EmergencyChanges } from "./emergency/changes.ts";
import type { Dispatch } from "./emergency/dispatch.ts";
import type { Escalation } from "./emergency/escalation.ts";
import type { ReceivingHospital } from "./emergency/hospital-link.ts";
import type { Assessment, MedicalRecord } from "./emergency/medical-record.ts";
import { alertState, assembleEmergency, type EmergencyRoomPort } from "./emergency/parts.ts";
import type { Timeline } from "./emergency/timeline.ts";
import type { VitalsMessage, VitalsStream } from "./emergency/vitals.ts";
import type { EmergencyChat } from "./emergency/chat.ts";
import { reactToDivert, receiveVitals, type ReactionParts } from "./emergency/reactions.ts";
import { applyPositions, encodePositions } from "./emergency/positions.ts";
import { emergencySummary, noticeReaches } from "./emergency/ops-view.ts";
import type { EmergencySummary } from "../src/domain/ops.ts";
import type { OpsNotice } from "./ops/actions.ts";

/** A room is created from its emergency's record in Postgres, never from what a caller passes. */
export interface EmergencyCreateOptions {
  emergencyId: string;
}

type Position = { lat: number; lng: number; accuracy?: number; heading?: number; speed?: number };

const RESPONDER_ROLES: readonly Role[] = ["first_aider", "ambulance_crew"];
const PARTY_ROLES: readonly Role[] = ["patient", "first_aider", "ambulance_crew"];
const CHAT_ROLES: readonly Role[] = ["patient", "first_aider", "ambulance_crew", "hospital_staff", "hospital_admin"];

/**
 * One active emergency, from alert to handover: the live positions of every party, dispatch of
 * the nearest responders, the assessment, the receiving hospital and its readiness, and the EMS
 * timeline. Its roomId is the emergency's id. Medical details go only to the assigned responders
 * and the receiving hospital's staff, through their StateView.
 *
 * The room is the emergency's hooks and message handlers; its parts each do one job: the
 * transaction engine (rooms/transactions.ts), the timeline, the medical record at rest, dispatch,
 * the receiving hospital and escalation (rooms/emergency/), over the rules of src/domain/.
 */
export class EmergencyRoom extends HavenRoom<EmergencyState> {
  autoDispose = false;

  /** Critical changes, each committed before it is acknowledged. */
  private tx!: Transactions<unknown>;
  private timeline!: Timeline;
  private record!: MedicalRecord;
  private dispatch!: Dispatch;
  private hospital!: ReceivingHospital;
  private escalation!: Escalation;
  private vitals!: VitalsStream;
  private chat!: EmergencyChat;
  private reactionParts?: ReactionParts;
  /** What the assigned responders and the receiving hospital's staff see beyond the shared state. */
  private medicalView?: StateView;
  /** What the patient sees beyond the shared state: the chat. */
  private chatView?: StateView;
  private changes!: EmergencyChanges;
  /** Changed since the last snapshot, beyond positions (a whole snapshot is due). */
  dirty = false;
  /** A party moved since the last snapshot or positions row. */
  moved = false;
  /** The fencing token of this room's hold on the emergency: every write carries it. */
  fence = 0;

  protected readonly handlers: Record<string, MessageHandler<EmergencyRoom>> = {
    position: { schema: "position", roles: PARTY_ROLES, run(client, p) { return this.updatePosition(client.auth, p); } },
    vitals: { schema: "vitals", roles: RESPONDER_ROLES, run(client, p) { return this.streamVitals(client.auth, p); } },
    status: { schema: "responderStatus", roles: RESPONDER_ROLES, run(client, p) { return this.responderStatus(client.auth, p); } },
    assessment: { schema: "assessment", roles: RESPONDER_ROLES, run(client, p) { return this.submitAssessment(client.auth, p); } },
    cancel: { schema: "cancel", roles: ["patient", "ops_admin"], run(client, p) { return this.cancel(client.auth, p, p.idempotencyKey); } },
    chat: { schema: "chat", roles: CHAT_ROLES, run(client, p) { return this.sendChat(client.auth, p.text, p.clientId); } },
  };

  /**
   * Fires once, when the server creates the room: after an authorized alert, or to bring the
   * emergency back after its node died or restarted. The room claims the emergency cluster-wide
   * and takes it over in Postgres (raising its fencing token) before it reads what to rebuild
   * from; no join is handled before it resolves.
   */
  async onCreate(options: EmergencyCreateOptions): Promise<void> {
    this.roomId = options.emergencyId;
    const s = services();
    await this.claimId();
    let claimed, keys;
    try {
      claimed = await s.emergencyStore.claim(this.roomId, s.membership.processId, s.config.nodeName);
      if (!claimed) throw new HavenError("EMERGENCY_NOT_FOUND", `EMERGENCY_NOT_FOUND: no active emergency ${this.roomId}`);
      this.fence = claimed.fence;
      keys = await s.emergencyMedical.open(this.roomId, claimed.keys);
    } catch (error) {
      this.releaseId();
      throw error;
    }
    const { state, alert, now } = alertState(this.roomId, claimed);
    ({ tx: this.tx, timeline: this.timeline, record: this.record, dispatch: this.dispatch, hospital: this.hospital, escalation: this.escalation, changes: this.changes, vitals: this.vitals, chat: this.chat } = assembleEmergency(this.port(), state, keys, alert));
    this.setState(state);
    s.emergencies.attach(this);
    if (claimed.snapshot) {
      const saved = this.record.open(claimed.snapshot);
      assignEmergencyState(this.state, saved.state);
      if (claimed.positions) applyPositions(this.state, claimed.positions);
      this.chat.restore(saved.state.chat);
      this.timeline.seq = saved.seq;
      this.changes.restore(this.state.timeline);
      // nobody is connected to a room that was just restored
      for (const party of [this.state.patient, ...this.state.firstAiders.values(), ...this.state.ambulance.values()]) party.online = false;
      await this.record.keyRestoredProfile(claimed.patientId);
      this.dispatch.resume();
      this.escalation.restore(this.state.timeline);
      this.escalation.arm();
      this.hospital.rearm();
      if (claimed.positions) this.hospital.refreshEta(); // from the positions written after the snapshot
      this.hospital.sync(true); // the receiving hospital's wallboard learns of it again
      // its receiving hospital may have gone on divert while no node held it
      if (this.state.hospital.id) void this.hospitalDiverted(this.state.hospital.id);
      this.reassertAssignments();
      this.dirty = saved.unsealed; // a snapshot from before sealing is written again, sealed
    } else {
      this.timeline.add("call_received", `patient:${claimed.patientId}`, this.record.alertNote(alert), now);
      this.timeline.forgetUnsaved(); // recorded with the alert
      this.dispatch.resume();
      this.escalation.arm();
      this.dirty = true;
      if (!claimed.bypass) await this.record.loadProfile(claimed.patientId);
    }
  }

  /** What the parts of this emergency need of the room. */
  private port(): EmergencyRoomPort {
    const room = this;
    return {
      roomId: this.roomId,
      get fence() { return room.fence; },
      clock: this.clock,
      clients: this.clients,
      patches: {
        // what is pending goes out first, so that the change queue holds this change alone
        flushPending: () => { if (this.clients.length > 0) super.broadcastPatch(); },
        hold: () => new HeldChanges(this.changeRoot()),
        release: () => this.requestPatch(),
      },
      markDirty: () => { this.dirty = true; },
      disconnect: (code: number) => this.disconnect(code),
      isRelinquished: () => this.isRelinquished(),
      relinquish: () => this.relinquish(),
    };
  }

  /** Whether the emergency is still open (not handed over, cancelled or expired). */
  isOpen(): boolean {
    return !isClosed(this.state.status);
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
    this.hospital.resync(hospitalId);
  }

  /** A hospital went on divert: the emergency reacts if it was bound there (emergency/reactions.ts). */
  hospitalDiverted(hospitalId: string): Promise<void> {
    return this.tx ? reactToDivert(this.reactions(), hospitalId) : Promise.resolve();
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
    if (!this.tx) return; // its parts are made with its state
    this.escalation.clear();
    this.dispatch.stopTimers();
    this.hospital.clearTimers();
  }

  /** While a critical change commits, what it changed is held back; everything else goes out. */
  broadcastPatch(): boolean {
    const held = this.tx.held;
    return held ? held.patchWithout(() => super.broadcastPatch()) : super.broadcastPatch();
  }

  isCommitting(): boolean {
    return this.tx.isCommitting();
  }

  /** Timeline events the flusher should write with the next snapshot. */
  unsavedEvents() {
    return this.timeline.unsavedEvents();
  }

  /** The flusher wrote these events (up to `seq`): they are no longer waiting. */
  eventsSaved(seq: number): void {
    this.timeline.saved(seq);
  }

  /** The state as a snapshot, with nothing medical in the clear (see MedicalRecord.snapshot). */
  snapshot(): { seq: number; state: Buffer } {
    return this.record.snapshot(this.timeline.seq);
  }

  positions(): { seq: number; positions: Buffer } {
    return { seq: this.timeline.seq, positions: encodePositions(this.state) };
  }

  /**
   * Called once the patient erased their medical profile (its key for this emergency is already
   * destroyed): the summary leaves the state at once, so the parties stop seeing it and no later
   * snapshot keeps it.
   */
  profileErased(): CallResult {
    if (this.record.withdrawProfile()) this.dirty = true;
    services().log.info({ emergencyId: this.roomId }, "the patient erased their medical profile; its summary was withdrawn from the emergency");
    return { ok: true };
  }

  /** Fires for every new socket join: verifies the token and that this party belongs here. */
  async onAuth(_client: HavenClient, _options: unknown, context: AuthContext): Promise<Principal> {
    const principal = await this.authenticate(context);
    if (!this.isOpen()) throw refuse(HavenCloseCode.EMERGENCY_CLOSED, "EMERGENCY_CLOSED", "this emergency is over");
    if (!isEntitled(this.state, principal)) throw refuse(HavenCloseCode.FORBIDDEN, "NOT_ENTITLED", "you are not a party to this emergency");
    return principal;
  }

  /** Fires after onAuth accepted the party: marks it online and opens its medical view if entitled. */
  onJoin(client: HavenClient): void {
    this.escalation.touch();
    this.setOnline(client.auth, true);
    if (isMedicallyEntitled(this.state, client.auth)) {
      // one view for every entitled party: their patches are encoded once, not once per party
      if (!this.medicalView) {
        this.medicalView = new StateView();
        this.medicalView.add(this.state.medical, MEDICAL_VIEW);
        this.medicalView.add(this.state.chat, CHAT_VIEW);
      }
      client.view = this.medicalView;
      this.record.auditDisclosure(client.auth);
    } else if (mayChat(this.state, client.auth)) {
      // the patient: the chat, not the medical record
      if (!this.chatView) {
        this.chatView = new StateView();
        this.chatView.add(this.state.chat, CHAT_VIEW);
      }
      client.view = this.chatView;
    }
  }

  /** Fires when a party's socket drops without leaving: its seat is held for the reconnect window. */
  async onDrop(client: HavenClient): Promise<void> {
    this.setOnline(client.auth, false);
    const seconds = services().config.reconnectWindowSeconds;
    // a party that was removed (a hospital passed over) or whose emergency is over gets no seat back
    if (seconds > 0 && this.isOpen() && isEntitled(this.state, client.auth)) {
      try {
        await this.allowReconnection(client, seconds);
      } catch {
        // the window passed; onLeave follows
      }
    }
  }

  /** Fires when a dropped party is back on a new socket; it gets the full state again. */
  onReconnect(client: HavenClient): void {
    if (!isEntitled(this.state, client.auth)) {
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

  /** Fires when the room is disposed (after handover, cancel or expiry, once its parties are told). */
  onDispose(): void {
    services().emergencies.detach(this);
    if (this.isRelinquished()) {
      this.stopTimersOnly();
      return;
    }
    if (!this.holdsRoomId) return; // a duplicate that lost the claim: it never ran
    if (this.tx) {
      this.dispatch.stopAll();
      this.hospital.clearTimers();
      this.escalation.clear();
    }
    this.releaseId();
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

  private requireParty(p: Principal): Party {
    const party = this.partyOf(p);
    if (!party) throw new HavenError("NOT_ENTITLED", "you are not a party to this emergency");
    return party;
  }

  updatePosition(p: Principal, pos: Position): { ok: true } {
    requireOpen(this.state.status);
    const party = this.requireParty(p);
    party.lat = pos.lat;
    party.lng = pos.lng;
    if (pos.accuracy !== undefined) party.accuracy = pos.accuracy;
    if (pos.heading !== undefined) party.heading = pos.heading;
    if (pos.speed !== undefined) party.speed = pos.speed;
    party.updatedAt = this.escalation.lastActivityAt = Date.now();
    this.moved = true;
    if (this.state.hospital.status !== "none" && p.role !== "first_aider") this.hospital.refreshEta();
    return { ok: true };
  }

  /** A vitals sample from an assigned responder (emergency/reactions.ts). */
  streamVitals(p: Principal, s: VitalsMessage): { ok: true } | Promise<{ ok: true; alerts?: string[] }> {
    requireOpen(this.state.status);
    this.requireParty(p);
    return receiveVitals(this.reactions(), p, s);
  }

  private reactions(): ReactionParts {
    return this.reactionParts ??= {
      roomId: this.roomId, tx: this.tx, hospital: this.hospital, escalation: this.escalation, vitals: this.vitals,
      status: () => this.state.status,
      receivingHospitalId: () => this.state.hospital.id,
      live: () => this.isOpen() && !this.isRelinquished(),
      later: (fn, ms) => this.clock.setTimeout(fn, ms),
    };
  }

  /** A chat message from a party (emergency/chat.ts). */
  sendChat(p: Principal, text: string, clientId?: string): { ok: true; seq: number; duplicate?: true } {
    const sent = this.chat.send(p, text, clientId);
    this.escalation.touch();
    return sent;
  }

  /** Hospital room → here: a chat message from the receiving hospital's wallboard. */
  hospitalChat(hospitalId: string, staff: Principal, text: string, clientId?: string | null): Promise<CallResult<{ seq: number }>> {
    return guard(() => {
      this.hospital.requireReceiving(hospitalId);
      return this.sendChat(staff, text, clientId ?? undefined);
    });
  }

  /** Called by a responder's duty room when the responder accepts an offer. First accept wins. */
  acceptOffer(offerId: string, userId: string, name: string): Promise<CallResult<{ emergencyId: string }>> {
    return this.tx.run(null, undefined, () => this.dispatch.accept(offerId, userId, name));
  }

  /** Called by a responder's duty room when the responder declines an offer. */
  declineOffer(offerId: string, userId: string, reason?: string | null): CallResult {
    return this.dispatch.decline(offerId, userId, reason);
  }

  responderStatus(p: Principal, body: { step: ResponderStep; idempotencyKey?: string }): Promise<{ ok: true; status: string }> {
    return this.tx.run(p.sub, body.idempotencyKey, () => {
      requireOpen(this.state.status);
      this.requireParty(p);
      return this.changes.responderStep(p, body.step);
    });
  }

  submitAssessment(p: Principal, a: Assessment): Promise<{ ok: true; priority: string; hospitalId: string }> {
    return this.tx.run(p.sub, a.idempotencyKey, () => {
      requireOpen(this.state.status);
      this.requireParty(p);
      return this.changes.assess(p, a);
    });
  }

  cancel(p: Principal, why: { reason: string; note?: string }, idempotencyKey?: string | null): Promise<{ ok: true; status: string }> {
    return this.tx.run(p.sub, idempotencyKey, () => this.changes.cancel(p, why));
  }

  /** Hospital room → here: staff acknowledged the pre-notification. */
  hospitalAcknowledge(hospitalId: string, staff: Principal, key?: string): Promise<CallResult<{ status: string }>> {
    return guard(() => this.tx.run(staff.sub, key, () => this.changes.byHospital(hospitalId, () => ({ status: this.hospital.acknowledge(actor(staff)) }))));
  }

  hospitalDecline(hospitalId: string, staff: Principal, reason: string, key?: string): Promise<CallResult<{ nextHospitalId: string }>> {
    return guard(() => this.tx.run(staff.sub, key, () => this.changes.byHospital(hospitalId, () => this.changes.hospitalDecline(reason))));
  }

  hospitalReadiness(hospitalId: string, staff: Principal, item: { key: string; label?: string; ready: boolean }, key?: string): Promise<CallResult<{ key: string; ready: boolean }>> {
    return guard(() => this.tx.run(staff.sub, key, () => this.changes.byHospital(hospitalId, () => {
      this.hospital.readiness(item, actor(staff));
      return { key: item.key, ready: item.ready };
    })));
  }

  hospitalHandover(hospitalId: string, staff: Principal, notes: string | undefined, key?: string): Promise<CallResult<{ status: string }>> {
    return guard(() => this.tx.run(staff.sub, key, () => this.changes.handover(hospitalId, staff, notes)));
  }

  /** Ops room → here: send the patient to this hospital (emergency/hospital-link.ts `reassign`). */
  opsReassignHospital(by: Principal, hospitalId: string, key?: string | null): Promise<CallResult<{ hospitalId: string; hospitalStatus: string }>> {
    return guard(() => this.tx.run(by.sub, key, () => {
      requireOpen(this.state.status);
      return this.hospital.reassign(hospitalId, actor(by));
    }));
  }

  /** A responder's duty room → here: operations assigned this responder by hand (emergency/dispatch.ts `assignByHand`). */
  opsAssignResponder(by: Principal, kind: "first_aider" | "ambulance_crew", responder: { id: string; name: string; lat: number; lng: number; updatedAt: number }, key?: string | null): Promise<CallResult<{ emergencyId: string }>> {
    return guard(() => this.tx.run(by.sub, key, () => this.dispatch.assignByHand(kind, responder, actor(by))));
  }

  /** What the operations desk shows of this emergency (emergency/ops-view.ts). */
  opsSummary(): EmergencySummary {
    return emergencySummary(this.state);
  }

  /** A desk notice: every connected party gets it if the emergency is in its region. */
  opsNotice(notice: OpsNotice): void {
    if (this.isOpen() && noticeReaches(this.state, notice.region)) this.broadcast("notice", notice);
  }

  /** A snapshot for `GET /api/emergency/{id}/status`, filtered to what the caller may see. */
  statusFor(p: Principal): CallResult<{ emergency: unknown }> {
    if (!isEntitled(this.state, p)) return fail("NOT_ENTITLED", "you are not a party to this emergency");
    const json = this.state.toJSON() as Record<string, unknown>;
    delete json.chat; // the chat is for its parties' sockets only (docs/protocol.md §12)
    if (!isMedicallyEntitled(this.state, p)) delete json.medical;
    else this.record.auditDisclosure(p);
    return { ok: true, emergency: json };
  }

  async restPosition(p: Principal, pos: Position): Promise<CallResult> {
    if (!isEntitled(this.state, p)) return fail("NOT_ENTITLED", "you are not a party to this emergency");
    return guard(() => this.updatePosition(p, pos));
  }

  async restCancel(p: Principal, why: { reason: string; note?: string }, key?: string | null): Promise<CallResult<{ status: string }>> {
    if (!mayCancel(this.state, p)) return fail("NOT_ENTITLED", "only the patient or ops can cancel");
    return guard(() => this.cancel(p, why, key));
  }
}

