import { randomUUID } from "node:crypto";
import { matchMaker } from "@colyseus/core";
import type { Principal } from "../../src/auth/tokens.ts";
import { dutyRoomId } from "../../src/domain/duty.ts";
import { isUuid } from "../../src/domain/identity.ts";
import type { NoticeRegion } from "../../src/domain/ops.ts";
import { HavenError } from "../../src/protocol/errors.ts";
import type { CallResult } from "../../src/protocol/results.ts";
import { services } from "../../src/services.ts";

/** A notice from the desk, as every connected party it reaches receives it (the `notice` message). */
export interface OpsNotice {
  id: string;
  text: string;
  at: number;
  region: NoticeRegion | null;
}

type Answer = Record<string, unknown> & { ok: true };

/**
 * What the operations desk may do, each an action of an ops_admin with a reason: carried out by
 * the engine that owns the change (the emergency's room actor, wherever it lives, or the
 * responder's duty room), and written to the audit log with who, what, when and why — refusals
 * too, with their code.
 */
export const opsActions = {
  /** Brings the emergency's room up (on a live node, if its node died) for the desk to join. */
  async open(by: Principal, p: { emergencyId: string; reason: string }): Promise<Answer> {
    return audited(by, "ops.open", p.emergencyId, p.reason, "", async () => {
      await reachEmergency(p.emergencyId);
      return { ok: true, emergencyId: p.emergencyId, roomId: p.emergencyId };
    });
  },

  /** Sends the patient to another hospital: the current one's card is withdrawn, the new one pre-notified. */
  async reassignHospital(by: Principal, p: { emergencyId: string; hospitalId: string; reason: string; idempotencyKey?: string }): Promise<Answer> {
    return audited(by, "ops.reassign_hospital", p.emergencyId, p.reason, `to ${p.hospitalId}`, async () => {
      if (!services().hospitals.get(p.hospitalId)) throw new HavenError("HOSPITAL_NOT_FOUND", "no such hospital");
      await reachEmergency(p.emergencyId);
      return call(p.emergencyId, "opsReassignHospital", [by, p.hospitalId, p.idempotencyKey ?? null], "EMERGENCY_NOT_FOUND");
    });
  },

  /** Assigns an on-duty responder by hand, through the responder's duty room (which then serves it). */
  async assignResponder(by: Principal, p: { emergencyId: string; responderId: string; reason: string; idempotencyKey?: string }): Promise<Answer> {
    return audited(by, "ops.assign_responder", p.emergencyId, p.reason, `responder ${p.responderId}`, async () => {
      await reachEmergency(p.emergencyId);
      const duty = dutyRoomId(p.responderId);
      if (!matchMaker.getLocalRoomById(duty) && !(await matchMaker.driver.findOne({ roomId: duty }))) {
        throw new HavenError("RESPONDER_NOT_ON_DUTY", "this responder is not on duty");
      }
      return call(duty, "opsAssign", [p.emergencyId, by, p.idempotencyKey ?? null], "RESPONDER_NOT_ON_DUTY");
    });
  },

  /** Cancels the emergency, as the patient's cancel does (offers withdrawn, responders released, hospital told). */
  async cancel(by: Principal, p: { emergencyId: string; cancelReason: string; reason: string; idempotencyKey?: string }): Promise<Answer> {
    return audited(by, "ops.cancel", p.emergencyId, p.reason, p.cancelReason, async () => {
      await reachEmergency(p.emergencyId);
      return call(p.emergencyId, "restCancel", [by, { reason: p.cancelReason, note: p.reason }, p.idempotencyKey ?? null], "EMERGENCY_NOT_FOUND");
    });
  },

  /** A notice to every connected party of the emergencies and duty rooms in the region (or everywhere), on every node. */
  async notice(by: Principal, p: { text: string; reason: string; region?: NoticeRegion }): Promise<Answer> {
    const region = p.region ? { lat: p.region.lat, lng: p.region.lng, radiusM: p.region.radiusM } : null;
    const detail = region ? `region ${region.lat},${region.lng} r ${region.radiusM} m` : "everyone";
    return audited(by, "ops.notice", undefined, p.reason, detail, async () => {
      const notice: OpsNotice = { id: randomUUID(), text: p.text, at: Date.now(), region };
      await services().bus.publish({ type: "ops_notice", notice });
      return { ok: true, noticeId: notice.id };
    });
  },
};

/** The emergency's room, brought back on a live node when its node died; an unknown id is EMERGENCY_NOT_FOUND. */
async function reachEmergency(id: string): Promise<void> {
  if (!isUuid(id)) throw new HavenError("EMERGENCY_NOT_FOUND", "no such active emergency");
  await services().emergencies.ensure(id);
}

/** Calls a room actor wherever it lives and unwraps its CallResult. */
async function call(roomId: string, method: string, args: unknown[], unreachable: "EMERGENCY_NOT_FOUND" | "RESPONDER_NOT_ON_DUTY"): Promise<Answer> {
  let result: CallResult;
  try {
    result = await matchMaker.remoteRoomCall(roomId, method, args) as CallResult;
  } catch {
    throw new HavenError(unreachable === "EMERGENCY_NOT_FOUND" ? "UNAVAILABLE" : unreachable, unreachable === "EMERGENCY_NOT_FOUND" ? "the emergency could not be reached; retry" : "this responder is not on duty");
  }
  if (!result.ok) throw new HavenError(result.error.code as never, result.error.message);
  return result as Answer;
}

/**
 * Runs an ops action and writes its audit record: the actor, the action, the emergency, the time,
 * the reason given (and what was asked), and the outcome (a refusal's code with it).
 */
async function audited(by: Principal, action: string, emergencyId: string | undefined, reason: string, detail: string, run: () => Promise<Answer>): Promise<Answer> {
  const s = services();
  let outcome: "ok" | "denied" | "error" = "ok";
  let code = "";
  try {
    return await run();
  } catch (error) {
    const e = error instanceof HavenError ? error : undefined;
    code = e?.code ?? "INTERNAL";
    outcome = e && e.status < 500 ? "denied" : "error";
    throw error;
  } finally {
    const what = [detail, code].filter(Boolean).join("; ");
    await s.audit.append({
      at: new Date(), actor: by.sub, actorRole: by.role, action,
      emergencyId: emergencyId && isUuid(emergencyId) ? emergencyId : undefined,
      breakGlass: false, node: s.config.nodeName, outcome,
      reason: (what ? `${what}: ${reason}` : reason).slice(0, 500),
    }).catch((error) => s.log.error({ err: error, action }, "audit write failed"));
  }
}
