import { distanceM, type LatLng } from "./geo.ts";

/**
 * The operations desk's picture of the cluster, as plain values: what each node reports of the
 * emergencies and on-duty responders it holds, and the rules the desk applies to it (which waits
 * are highlighted, what a unit is doing, who a regional notice reaches).
 */

/** One open emergency as its node reports it to the desk (no medical detail). */
export interface EmergencySummary {
  id: string;
  status: string;
  priority: string;
  /** When the alert was raised, epoch ms. */
  createdAt: number;
  lat: number;
  lng: number;
  firstAiders: string[];
  ambulance: string[];
  offersOut: number;
  searching: boolean;
  /** The receiving hospital ("" none) and its link: none | notified | acknowledged. */
  hospitalId: string;
  hospitalStatus: string;
  notifiedAt: number;
  acknowledgedAt: number;
  etaSeconds: number;
}

/** One on-duty responder as the node holding its duty room reports it. */
export interface UnitSummary {
  id: string;
  kind: string;
  name: string;
  /** The responder says they can take offers. */
  available: boolean;
  /** Their duty socket is connected now. */
  online: boolean;
  /** Offers open now. */
  offers: number;
  /** The emergency they are assigned to, or "". */
  assignedTo: string;
  lat: number;
  lng: number;
  updatedAt: number;
}

/** What a node of the cluster reports to the desk, on the desk's refresh interval. */
export interface NodeReport {
  processId: string;
  name: string;
  reportedAt: number;
  load: { emergencies: number; rooms: number; clients: number; rssMb: number; cpuPercent: number };
  emergencies: EmergencySummary[];
  units: UnitSummary[];
}

export interface WaitThresholds {
  acceptWaitMs: number;
  ackWaitMs: number;
}

/**
 * The waits the desk highlights: nobody accepted the emergency (still `alerted`) past the accept
 * threshold after the alert; the receiving hospital notified and not acknowledged past the
 * acknowledgement threshold after it was notified.
 */
export function waits(e: Pick<EmergencySummary, "status" | "createdAt" | "hospitalStatus" | "notifiedAt">, now: number, t: WaitThresholds): { waitingAccept: boolean; waitingAck: boolean } {
  return {
    waitingAccept: e.status === "alerted" && now - e.createdAt >= t.acceptWaitMs,
    waitingAck: e.hospitalStatus === "notified" && e.notifiedAt > 0 && now - e.notifiedAt >= t.ackWaitMs,
  };
}

/** What a unit is doing, for the unit board: assigned, offered, available, or unavailable. */
export function unitStatus(u: Pick<UnitSummary, "available" | "online" | "offers" | "assignedTo">): "assigned" | "offered" | "available" | "unavailable" {
  if (u.assignedTo) return "assigned";
  if (u.offers > 0) return "offered";
  return u.available && u.online ? "available" : "unavailable";
}

/** Where a notice goes: everyone (no region), or whoever is within `radiusM` of the centre. */
export interface NoticeRegion extends LatLng {
  radiusM: number;
}

/** Whether a party at `at` is reached by a notice for `region` (everyone, when there is no region). */
export function inRegion(region: NoticeRegion | undefined, at: LatLng): boolean {
  if (!region) return true;
  return distanceM(region, at) <= region.radiusM;
}
