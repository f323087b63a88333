import { inRegion, type EmergencySummary, type NoticeRegion } from "../../src/domain/ops.ts";
import type { EmergencyState } from "../schema/EmergencyState.ts";

/** The emergency as the operations desk sees it: status, priority, parties, hospital link; nothing medical. */
export function emergencySummary(state: EmergencyState): EmergencySummary {
  const link = state.hospital;
  return {
    id: state.id,
    status: state.status,
    priority: state.priority,
    createdAt: state.createdAt,
    lat: state.patient.lat,
    lng: state.patient.lng,
    firstAiders: [...state.firstAiders.keys()],
    ambulance: [...state.ambulance.keys()],
    offersOut: state.dispatch.offersOut,
    searching: state.dispatch.searching,
    hospitalId: link.id,
    hospitalStatus: link.status,
    notifiedAt: link.notifiedAt,
    acknowledgedAt: link.acknowledgedAt,
    etaSeconds: link.etaSeconds,
  };
}

/** Whether a desk notice for `region` reaches this emergency (by the patient's position). */
export function noticeReaches(state: EmergencyState, region: NoticeRegion | null): boolean {
  return inRegion(region ?? undefined, state.patient);
}
