import type { KeyObject } from "node:crypto";
import { matchMaker } from "@colyseus/core";
import type { Principal } from "../../src/auth/tokens.ts";
import { isStaffOf } from "../../src/domain/entitlement.ts";
import { HavenCloseCode } from "../../src/protocol/close-codes.ts";
import { HavenError } from "../../src/protocol/errors.ts";
import { services } from "../../src/services.ts";
import { FencedError, type ClaimedEmergency, type OutboxMessage } from "../../persistence/stores.ts";
import type { EmergencyState } from "../schema/EmergencyState.ts";
import { assignEmergencyState, blankEmergencyState } from "../schema/restore.ts";
import { Transactions, type HeldBack, type TransactionHost } from "../transactions.ts";
import { EmergencyChanges } from "./changes.ts";
import type { EmergencyContext, Timer } from "./context.ts";
import { Dispatch } from "./dispatch.ts";
import { Escalation } from "./escalation.ts";
import { ReceivingHospital } from "./hospital-link.ts";
import { MedicalRecord, type AlertNote } from "./medical-record.ts";
import { Timeline } from "./timeline.ts";
import { VitalsStream } from "./vitals.ts";
import { EmergencyChat } from "./chat.ts";
import { statusToPatient } from "../../src/notify/who.ts";

/** A change the room makes by itself that could not be committed is tried again after this. */
const SYSTEM_RETRY_MS = 2000;

/** Where the state was before a critical change: its JSON and the timeline position. */
interface Mark { state: Record<string, unknown>; seq: number }

/** What the parts of an emergency need of its room. */
export interface EmergencyRoomPort {
  readonly roomId: string;
  readonly fence: number;
  /** The room clock. */
  readonly clock: { setTimeout(fn: () => void, ms: number): Timer; setInterval(fn: () => void, ms: number): Timer };
  /** The parties connected now. */
  readonly clients: Iterable<{ auth: Principal; leave(code: number, reason: string): void }>;
  /** Patches: send what is pending now, hold back what a change changes, release it. */
  readonly patches: { flushPending(): void; hold(): HeldBack; release(): void };
  /** Something changed that the next snapshot must hold. */
  markDirty(): void;
  /** Every party is told the emergency is over. */
  disconnect(code: number): Promise<unknown>;
  isRelinquished(): boolean;
  relinquish(): void;
}

/** The parts of one emergency, each with one job. */
export interface EmergencyParts {
  tx: Transactions<unknown>;
  timeline: Timeline;
  record: MedicalRecord;
  dispatch: Dispatch;
  hospital: ReceivingHospital;
  escalation: Escalation;
  changes: EmergencyChanges;
  vitals: VitalsStream;
  chat: EmergencyChat;
}

/** The alert as recorded (the `call_received` event's payload). */
export interface AlertRecord extends AlertNote {
  patientName: string;
  lat: number;
  lng: number;
  accuracy?: number;
  priority?: "critical" | "high" | "medium";
  /** Emergency contacts of the patient (with consent) when the alert was raised: told of it, and of the handover. */
  contacts?: number;
  /** Where status replies go when the alert came by SMS or USSD (`tel:…`). */
  replyTo?: string;
}

/** An emergency's state as its alert left it, from its record in Postgres. */
export function alertState(id: string, claimed: ClaimedEmergency): { state: EmergencyState; alert: AlertRecord; now: number } {
  const alert = claimed.alert as unknown as AlertRecord;
  const now = claimed.alertAt ?? Date.now();
  const state = blankEmergencyState();
  state.id = id;
  state.priority = alert.priority ?? "high";
  state.bypass = claimed.bypass;
  state.createdAt = now;
  Object.assign(state.patient, {
    id: claimed.patientId, role: "patient", name: alert.patientName,
    lat: alert.lat, lng: alert.lng, accuracy: alert.accuracy ?? 0, updatedAt: now, online: false,
  });
  state.times.callReceivedAt = now;
  return { state, alert, now };
}

/** Builds the parts of an emergency over its state and wires them to each other and to the room. */
export function assembleEmergency(room: EmergencyRoomPort, state: EmergencyState, keys: { clinical: KeyObject; profile?: KeyObject }, alert?: AlertRecord): EmergencyParts {
  const s = services();
  const roomId = room.roomId;
  const system = (action: () => void): Promise<void> => tx.run(null, undefined, action).catch((error) => {
    s.log.warn({ err: error, emergencyId: roomId }, "a timed change was not committed; it will be retried");
    hospital.rearm(SYSTEM_RETRY_MS);
  });
  // the notifications of the critical change in progress, written with its commit
  let outbox: { messages: OutboxMessage[]; cancel: string[] } = { messages: [], cancel: [] };
  const ctx: EmergencyContext = {
    roomId, state, log: s.log,
    clock: { now: () => Date.now(), setTimeout: (fn, ms) => room.clock.setTimeout(fn, ms), setInterval: (fn, ms) => room.clock.setInterval(fn, ms) },
    event: (type, actor, detail, at) => timeline.add(type, actor, detail, at),
    effect: (fn) => tx.effect(fn),
    system,
    call: (target, method, args) => matchMaker.remoteRoomCall(target, method, args),
    isRelinquished: () => room.isRelinquished(),
    notify: (m) => {
      if (tx.inChange) outbox.messages.push(m);
      else s.notify.queue([m]);
    },
    tellPatient: (moment) => {
      if (!alert?.replyTo) return;
      const responder = [...state.firstAiders.values(), ...state.ambulance.values()][0]?.name ?? "";
      const eta = state.hospital.etaSeconds >= 0 && state.hospital.id ? Math.max(1, Math.round(state.hospital.etaSeconds / 60)) : "";
      ctx.notify(statusToPatient({ emergencyId: roomId, replyTo: alert.replyTo, moment, params: { status: state.status, responder, eta, hospital: state.hospital.name } }));
    },
    cancelNotice: (key) => {
      if (tx.inChange) outbox.cancel.push(key);
      else s.notify.queue([], [key]);
    },
  };
  const audit = (action: string, reason: string) => {
    s.audit.append({
      at: new Date(), actor: "system", actorRole: "system", action, subject: state.patient.id, emergencyId: roomId,
      breakGlass: false, reason, node: s.config.nodeName, outcome: "ok",
    }).catch((error) => s.log.error({ err: error, emergencyId: roomId, action }, "audit write failed"));
  };
  const record = new MedicalRecord({ roomId, state, medical: s.emergencyMedical, profiles: s.medical, log: s.log, keys });
  const timeline: Timeline = new Timeline({
    state, roomId, maxLength: s.config.timelineLength, log: s.log,
    inChange: () => tx.inChange,
    payload: (e) => record.eventPayload(e),
    added: (note) => {
      room.markDirty();
      if (note) record.clinicalChanged();
    },
  });
  const hospital: ReceivingHospital = new ReceivingHospital({
    ctx, config: s.config.hospitals, hospitals: s.hospitals, eta: s.eta, smsFallbackMs: s.config.notify.hospitalSmsFallbackMs,
    dismissStaff: (hospitalId) => {
      for (const c of room.clients) if (isStaffOf(c.auth, hospitalId)) c.leave(HavenCloseCode.FORBIDDEN, "NOT_RECEIVING_HOSPITAL");
    },
  });
  const dispatch = new Dispatch({
    ctx, config: s.config.dispatch, duty: s.duty, urbanAreas: s.urbanAreas,
    onAssigned: (kind) => { if (kind === "ambulance_crew") hospital.refreshEta(); },
  });
  const escalation: Escalation = new Escalation({
    ctx, config: s.config.escalation, audit,
    expire: (reason) => tx.run(null, undefined, () => changes.expire(reason)),
  });
  const changes: EmergencyChanges = new EmergencyChanges({
    ctx, record, dispatch, hospital, escalation, duty: s.duty, closeGraceMs: s.config.closeGraceMs, audit, contactCount: alert?.contacts ?? 0,
    disconnect: () => void room.disconnect(HavenCloseCode.EMERGENCY_CLOSED).catch(() => {}),
  });

  const vitals = new VitalsStream({
    ctx, config: s.config.vitals, hospital,
    changed: () => { record.clinicalChanged(); room.markDirty(); },
  });

  const chat = new EmergencyChat({
    ctx, config: s.config.chat,
    record: (actor, text, at) => timeline.record("chat", actor, text, at),
    changed: () => { record.clinicalChanged(); room.markDirty(); },
  });

  const host: TransactionHost<Mark> = {
    ...room.patches,
    mark: () => {
      outbox = { messages: [], cancel: [] }; // a change starts with no notifications of its own
      return { state: state.toJSON() as Record<string, unknown>, seq: timeline.seq };
    },
    movedFrom: (mark) => timeline.seq !== mark.seq || JSON.stringify(state.toJSON()) !== JSON.stringify(mark.state),
    undo: (mark, keepSequence) => {
      outbox = { messages: [], cancel: [] }; // an undone change sends nothing
      assignEmergencyState(state, mark.state);
      if (!keepSequence) timeline.seq = mark.seq;
      if (record.stateReplaced()) room.markDirty();
      hospital.rearm();
      dispatch.resume();
      escalation.arm();
    },
    prepare: (mark, key) => {
      const { events, changed, carried } = timeline.toCommit(mark.seq, key);
      const notices = outbox;
      outbox = { messages: [], cancel: [] };
      if (changed === 0 && notices.messages.length === 0 && notices.cancel.length === 0) return undefined;
      return {
        write: async (signal) => {
          if (room.isRelinquished()) throw new FencedError(roomId);
          return s.emergencyStore.commit(roomId, room.fence, events, record.snapshot(timeline.seq), state.status, signal, notices);
        },
        written: () => {
          timeline.saved(carried);
          if (notices.messages.length > 0) s.notify.committed();
        },
      };
    },
    commitFailed: (error) => {
      if (error instanceof FencedError) {
        room.relinquish();
        return new HavenError("UNAVAILABLE", "this emergency moved to another node; nothing changed; rejoin and retry");
      }
      s.log.warn({ err: error, emergencyId: roomId }, "a critical change could not be committed and was undone");
      return new HavenError("UNAVAILABLE", "the change could not be recorded; nothing changed; retry");
    },
  };
  const tx = new Transactions<Mark>(host, {
    deadlineMs: s.config.database.callTimeoutMs,
    perSender: { limit: s.config.limits.criticalChangesPer10s, windowMs: 10_000 },
    onSenderCommit: () => escalation.touch(),
  });
  return { tx: tx as Transactions<unknown>, timeline, record, dispatch, hospital, escalation, changes, vitals, chat };
}
