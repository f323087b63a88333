import type { Principal } from "../../src/auth/tokens.ts";
import { dutyRoomId, type DutyIndex } from "../../src/domain/duty.ts";
import { declineRefusal, handoverRefusal, isClosed, isRefusal, responderStep, type Refusal, type ResponderStep } from "../../src/domain/status.ts";
import { CLINICAL_FIELDS } from "../../src/medical/emergency.ts";
import { HavenError } from "../../src/protocol/errors.ts";
import { contactsTold } from "../../src/notify/who.ts";
import type { EmergencyContext } from "./context.ts";
import type { Dispatch } from "./dispatch.ts";
import type { Escalation } from "./escalation.ts";
import type { ReceivingHospital } from "./hospital-link.ts";
import type { Assessment, MedicalRecord } from "./medical-record.ts";

export interface ChangesDeps {
  ctx: EmergencyContext;
  record: MedicalRecord;
  dispatch: Dispatch;
  hospital: ReceivingHospital;
  escalation: Escalation;
  duty: Pick<DutyIndex, "update" | "assign">;
  /** After handover, cancel or expiry, parties see the final state this long before the room closes. */
  closeGraceMs: number;
  /** Closes every party's socket: the emergency is over. */
  disconnect(): void;
  /** An audit record of a decision the emergency made by itself. */
  audit(action: string, reason: string): void;
  /** The patient's emergency contacts told of the alert, told again of the handover. */
  contactCount?: number;
}

/**
 * The critical changes of an emergency, each run inside a transaction (rooms/transactions.ts):
 * a responder's steps and assessment, a cancel, the receiving hospital's acknowledgement,
 * decline, readiness and handover, an idle expiry — and the closing that the last three share.
 * Each checks the status machine and entitlement rules of src/domain/ first; a refusal throws
 * and changes nothing.
 */
export class EmergencyChanges {
  private readonly d: ChangesDeps;
  /** Responders who said they are on their way. */
  readonly enRoute = new Set<string>();

  constructor(deps: ChangesDeps) {
    this.d = deps;
  }

  /** Reads back who said they are on their way (after a restore). */
  restore(timeline: Iterable<{ type: string; actor: string }>): void {
    for (const e of timeline) if (e.type === "en_route") this.enRoute.add(e.actor.slice(e.actor.indexOf(":") + 1));
  }

  /** A responder reports a step (en route, on scene, left scene, at hospital). */
  responderStep(p: Principal, step: ResponderStep): { ok: true; status: string } {
    const { ctx, hospital } = this.d;
    const state = ctx.state;
    const outcome = check(responderStep(state.status, step, state.hospital.status !== "none"));
    // en route is said once per responder: a repeat changes nothing and records nothing
    if (step === "en_route" && this.enRoute.has(p.sub)) return { ok: true, status: state.status };
    if (outcome) {
      const now = ctx.clock.now();
      if (step === "en_route") ctx.effect(() => this.enRoute.add(p.sub));
      if (outcome.to) state.status = outcome.to;
      if (!outcome.timeIfUnset || state.times[outcome.time] === 0) state.times[outcome.time] = now;
      ctx.event(outcome.event, actor(p), "", now);
    }
    hospital.refreshEta();
    hospital.sync(true);
    return { ok: true, status: state.status };
  }

  /** A responder submits the assessment: the receiving hospital is matched (or told), and its acknowledgement is now due. */
  assess(p: Principal, a: Assessment): { ok: true; priority: string; hospitalId: string } {
    const { ctx, record, hospital } = this.d;
    const state = ctx.state;
    record.assess(a, actor(p), ctx.clock.now());
    ctx.event("assessment_submitted", actor(p));
    ctx.effect(record.auditRecorded(p, CLINICAL_FIELDS.filter((f) => f !== "notes" && f !== "vitals")));
    if (a.priority && a.priority !== state.priority) {
      ctx.event("priority_changed", actor(p), `${state.priority} -> ${a.priority}`);
      state.priority = a.priority;
    }
    if (state.hospital.status === "none") hospital.match();
    else hospital.sync(true);
    this.d.escalation.arm();
    return { ok: true, priority: state.priority, hospitalId: state.hospital.id };
  }

  /** The patient or operations cancels (a repeat answers as the first). */
  cancel(p: Principal, why: { reason: string; note?: string }): { ok: true; status: string } {
    const state = this.d.ctx.state;
    if (state.status === "cancelled") return { ok: true, status: "cancelled" };
    requireOpen(state.status);
    if (p.role === "patient" && p.sub !== state.patient.id) throw new HavenError("NOT_ENTITLED", "not your emergency");
    state.status = "cancelled";
    this.d.ctx.event("cancelled", actor(p), why.note ? `${why.reason}: ${why.note}` : why.reason);
    this.close();
    return { ok: true, status: "cancelled" };
  }

  /** A change by the receiving hospital's staff: only in an open emergency, only by the receiving hospital. */
  byHospital<T>(hospitalId: string, action: () => T): T {
    requireOpen(this.d.ctx.state.status);
    this.d.hospital.requireReceiving(hospitalId);
    return action();
  }

  hospitalDecline(reason: string): { nextHospitalId: string } {
    check(declineRefusal(this.d.ctx.state.status));
    this.d.hospital.passOver("declined", reason);
    return { nextHospitalId: this.d.ctx.state.hospital.id };
  }

  /** The receiving hospital confirms the handover (a repeat answers as the first). */
  handover(hospitalId: string, staff: Principal, notes: string | undefined): { status: string } {
    const { ctx } = this.d;
    const state = ctx.state;
    if (state.status === "handed_over") return { status: "handed_over" };
    return this.byHospital(hospitalId, () => {
      check(handoverRefusal(state.status));
      const now = ctx.clock.now();
      if (state.times.atHospitalAt === 0) state.times.atHospitalAt = now;
      state.times.handedOverAt = now;
      state.status = "handed_over";
      state.hospital.etaSeconds = 0;
      ctx.event("handed_over", actor(staff), notes ?? "", now);
      // the patient's emergency contacts learn where the patient is (committed with the handover)
      for (const m of contactsTold({
        emergencyId: ctx.roomId, patientId: state.patient.id, patientName: state.patient.name, count: state.bypass ? 0 : this.d.contactCount ?? 0, moment: "handover", hospitalName: state.hospital.name,
      })) ctx.notify(m);
      this.close();
      return { status: "handed_over" };
    });
  }

  /** Nothing happened in the emergency for the idle bound: it closes as expired, audited. */
  expire(reason: string): void {
    const state = this.d.ctx.state;
    if (isClosed(state.status)) return;
    state.status = "expired";
    this.d.ctx.event("expired", "system", reason);
    this.close();
    this.d.ctx.effect(() => this.d.audit("emergency.expired", reason));
  }

  /** Handover, cancel or expiry: withdraw offers, release responders, tell the hospital, then close. */
  private close(): void {
    const { ctx, dispatch, hospital, escalation, duty } = this.d;
    dispatch.stopAll();
    hospital.clearTimers();
    hospital.cancelFallback();
    escalation.clear();
    hospital.sync(true);
    for (const party of [...ctx.state.firstAiders.values(), ...ctx.state.ambulance.values()]) {
      const id = party.id;
      const at = { lat: party.lat, lng: party.lng, updatedAt: party.updatedAt };
      // like an assignment, a release reaches the duty index only once it is committed; the
      // index learns where the responder is now, as seen here (and dispatchable again there)
      ctx.effect(() => {
        duty.update(id, at)
          .then(() => duty.assign(id, undefined))
          .then(() => ctx.call(dutyRoomId(id), "released", [ctx.roomId]))
          .catch(() => {});
      });
    }
    ctx.effect(() => {
      ctx.clock.setTimeout(() => this.d.disconnect(), this.d.closeGraceMs);
    });
  }
}

export function actor(p: Principal): string {
  return `${p.role}:${p.sub}`;
}

export function requireOpen(status: string): void {
  if (isClosed(status)) throw new HavenError("EMERGENCY_CLOSED", `the emergency is ${status}`);
}

/** The outcome of a status rule, or its refusal thrown as the error the sender gets. */
function check<T>(outcome: T | Refusal): T {
  if (isRefusal(outcome)) throw new HavenError(outcome.refused.code, outcome.refused.message);
  return outcome;
}
