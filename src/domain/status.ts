/**
 * The status machine of an emergency, on plain values: which steps a responder may report from
 * which status, and which EMS time (NEMSIS v3 eTimes) and timeline event each step records.
 *
 *   alerted → dispatched → on_scene → transporting → at_hospital → handed_over
 *   any open status → cancelled (the patient or operations) or expired (idle too long)
 */
export type EmergencyStatus =
  | "alerted" | "dispatched" | "on_scene" | "transporting" | "at_hospital" | "handed_over" | "cancelled" | "expired";

/** The open statuses, in order. */
export const STATUS_ORDER = ["alerted", "dispatched", "on_scene", "transporting", "at_hospital", "handed_over"] as const;

const CLOSED: ReadonlySet<string> = new Set(["handed_over", "cancelled", "expired"]);

/** Whether an emergency in this status is over (nothing more may change in it). */
export function isClosed(status: string): boolean {
  return CLOSED.has(status);
}

/** The steps a responder reports (the `status` message). */
export type ResponderStep = "en_route" | "on_scene" | "left_scene" | "at_hospital";

/** The EMS times a step may set (fields of the state's `times`). */
export type StepTime = "enRouteAt" | "onSceneAt" | "leftSceneAt" | "atHospitalAt";

/** What a step changes: the new status (none for `en_route`), the time it sets, the event it records. */
export interface StepOutcome {
  to?: EmergencyStatus;
  time: StepTime;
  /** `en_route` only sets its time when no responder said it before. */
  timeIfUnset: boolean;
  event: string;
}

/** A step that may not be taken now: the room answers it with this code and message. */
export interface Refusal {
  refused: { code: "INVALID_TRANSITION"; message: string };
}

const STEPS: Record<Exclude<ResponderStep, "en_route">, { to: EmergencyStatus; from: EmergencyStatus; time: StepTime; event: string }> = {
  on_scene: { to: "on_scene", from: "dispatched", time: "onSceneAt", event: "on_scene" },
  left_scene: { to: "transporting", from: "on_scene", time: "leftSceneAt", event: "left_scene" },
  at_hospital: { to: "at_hospital", from: "transporting", time: "atHospitalAt", event: "arrived_at_hospital" },
};

/**
 * What a responder's step does in an open emergency of `status`: its outcome, `undefined` when
 * the emergency is already there (nothing to record), or a refusal. Arriving at hospital needs a
 * receiving hospital.
 */
export function responderStep(status: string, step: ResponderStep, hasHospital: boolean): StepOutcome | Refusal | undefined {
  if (step === "en_route") return { time: "enRouteAt", timeIfUnset: true, event: "en_route" };
  if (step === "at_hospital" && !hasHospital) return refusal("no receiving hospital yet");
  const s = STEPS[step];
  if (status === s.to) return undefined;
  if (status !== s.from) return refusal(`cannot go to ${s.to} while ${status}`);
  return { to: s.to, time: s.time, timeIfUnset: false, event: s.event };
}

/** Whether the receiving hospital may confirm the handover now (`handed_over` itself is a repeat). */
export function handoverRefusal(status: string): Refusal | undefined {
  return status === "at_hospital" || status === "transporting" ? undefined : refusal(`cannot hand over while ${status}`);
}

/** Whether the receiving hospital may still decline (not once the patient has arrived). */
export function declineRefusal(status: string): Refusal | undefined {
  return status === "at_hospital" ? refusal("the patient is already here") : undefined;
}

/** The status a first accepted responder moves the emergency to. */
export function statusAfterAssignment(status: string): string {
  return status === "alerted" ? "dispatched" : status;
}

export function isRefusal(x: unknown): x is Refusal {
  return typeof x === "object" && x !== null && "refused" in x;
}

function refusal(message: string): Refusal {
  return { refused: { code: "INVALID_TRANSITION", message } };
}
