import { actsForHospital } from "./identity.ts";

/**
 * Who may join an emergency and who sees its medical details, on a minimal view of the emergency
 * (the room's state satisfies it as it is, and so does a plain object).
 */

/** Who is asking: a subject with a role, and for hospital staff, their hospital. */
export interface Caller {
  role: "patient" | "first_aider" | "ambulance_crew" | "hospital_staff" | "hospital_admin" | "ops_admin";
  sub: string;
  hospitalId?: string;
}

/** The parties of an emergency, as far as entitlement needs them. */
export interface EmergencyParties {
  patient: { id: string };
  firstAiders: { has(id: string): boolean };
  ambulance: { has(id: string): boolean };
  /** The receiving hospital; `status` is "none" while there is none. */
  hospital: { id: string; status: string };
}

/** The hospital that receives the patient now (notified or acknowledged). */
export function isReceivingHospital(e: EmergencyParties, hospitalId: string | undefined): boolean {
  return hospitalId !== undefined && hospitalId === e.hospital.id && e.hospital.status !== "none";
}

/** May join, see the state and send: the patient, the assigned responders, the receiving hospital's staff, operations. */
export function isEntitled(e: EmergencyParties, p: Caller): boolean {
  switch (p.role) {
    case "patient": return p.sub === e.patient.id;
    case "first_aider": return e.firstAiders.has(p.sub);
    case "ambulance_crew": return e.ambulance.has(p.sub);
    case "hospital_staff":
    case "hospital_admin": return isReceivingHospital(e, p.hospitalId);
    case "ops_admin": return true;
  }
}

/** Sees medical details: the assigned responders and the receiving hospital's staff (not the patient, not operations). */
export function isMedicallyEntitled(e: EmergencyParties, p: Caller): boolean {
  return (p.role === "first_aider" && e.firstAiders.has(p.sub))
    || (p.role === "ambulance_crew" && e.ambulance.has(p.sub))
    || (actsForHospital(p.role) && isReceivingHospital(e, p.hospitalId));
}

/**
 * Takes part in the emergency's chat (sends and receives it): the patient, the assigned
 * responders and the receiving hospital's staff. Not operations, who are not a party to the
 * patient's care (a chat may carry clinical details), and no one else.
 */
export function mayChat(e: EmergencyParties, p: Caller): boolean {
  return (p.role === "patient" && p.sub === e.patient.id) || isMedicallyEntitled(e, p);
}

/** May cancel: operations, or the patient whose emergency it is. */
export function mayCancel(e: EmergencyParties, p: Caller): boolean {
  return p.role === "ops_admin" || (p.role === "patient" && p.sub === e.patient.id);
}

/** Staff of a hospital that was passed over: they leave the emergency. */
export function isStaffOf(p: Caller, hospitalId: string): boolean {
  return actsForHospital(p.role) && p.hospitalId === hospitalId;
}
