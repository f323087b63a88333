import type { MapSchema, ArraySchema } from "@colyseus/schema";
import { Party, ReadinessItem } from "./common.ts";
import { Chat, EmergencyState, HospitalLink, Medical, TimelineEvent, VitalsSample } from "./EmergencyState.ts";

/**
 * Haven owns its snapshot format: an emergency's state is snapshotted as its plain JSON (msgpack
 * on disk) and assigned back into live schema instances here — into a fresh state when a room is
 * restored after a crash, or into the running one when a critical change could not be committed
 * and is undone. Assigning into the existing instances keeps the clients' binary diffs correct.
 */
type Json = Record<string, any>;

function assignPrimitives(target: Json, json: Json, keys: readonly string[]): void {
  for (const k of keys) if (json[k] !== undefined && target[k] !== json[k]) target[k] = json[k];
}

function syncStrings(target: ArraySchema<string>, values: unknown): void {
  const list = Array.isArray(values) ? values.map(String) : [];
  if (target.length === list.length && list.every((v, i) => target[i] === v)) return;
  target.clear();
  target.push(...list);
}

function syncMap<T extends object>(target: MapSchema<T>, json: Json | undefined, make: () => T, assign: (item: T, j: Json) => void): void {
  const entries = json ?? {};
  for (const key of [...target.keys()]) if (!(key in entries)) target.delete(key);
  for (const [key, value] of Object.entries(entries)) {
    let item = target.get(key);
    if (!item) {
      item = make();
      assign(item, value as Json);
      target.set(key, item);
    } else {
      assign(item, value as Json);
    }
  }
}

const PARTY = ["id", "role", "name", "lat", "lng", "accuracy", "heading", "speed", "updatedAt", "online"] as const;
const assignParty = (p: Party, j: Json) => assignPrimitives(p, j, PARTY);
const VITALS_SAMPLE = ["heartRate", "systolic", "diastolic", "spo2", "temperature", "respiratoryRate", "battery", "signal", "at", "receivedAt"] as const;
const assignVitals = (v: VitalsSample, j: Json) => assignPrimitives(v, j, VITALS_SAMPLE);
const assignReadiness = (r: ReadinessItem, j: Json) => assignPrimitives(r, j, ["key", "label", "ready", "updatedAt"]);

export function assignEmergencyState(state: EmergencyState, json: Json): void {
  assignPrimitives(state, json, ["id", "status", "priority", "bypass", "createdAt"]);
  assignParty(state.patient, json.patient ?? {});
  syncMap(state.firstAiders, json.firstAiders, () => new Party(), assignParty);
  syncMap(state.ambulance, json.ambulance, () => new Party(), assignParty);

  const h: HospitalLink = state.hospital;
  const hj: Json = json.hospital ?? {};
  assignPrimitives(h, hj, ["id", "name", "lat", "lng", "status", "notifiedAt", "acknowledgedAt", "alerts", "etaSeconds", "score", "distanceScore", "capacityScore", "specialtyScore", "distanceM", "divertedFrom", "divertReason", "divertedAt"]);
  syncMap(h.readiness, hj.readiness, () => new ReadinessItem(), assignReadiness);
  syncStrings(h.passedOver, hj.passedOver);

  assignPrimitives(state.times, json.times ?? {}, ["callReceivedAt", "responderNotifiedAt", "enRouteAt", "onSceneAt", "leftSceneAt", "atHospitalAt", "handedOverAt"]);
  assignPrimitives(state.dispatch, json.dispatch ?? {}, ["firstAiderRadiusM", "ambulanceRadiusM", "offersOut", "searching"]);

  const timeline: Json[] = Array.isArray(json.timeline) ? json.timeline : [];
  const same = state.timeline.length === timeline.length && timeline.every((e, i) => state.timeline[i]?.seq === e.seq);
  if (!same) {
    state.timeline.clear();
    for (const e of timeline) {
      const t = new TimelineEvent();
      assignPrimitives(t, e, ["seq", "type", "at", "actor", "detail"]);
      state.timeline.push(t);
    }
  }

  const m: Medical = state.medical;
  const mj: Json = json.medical ?? {};
  assignPrimitives(m, mj, ["assessed", "age", "timeOfIncident", "mechanism", "assessedBy", "assessedAt"]);
  syncStrings(m.injuries, mj.injuries);
  syncStrings(m.treatment, mj.treatment);
  syncStrings(m.suspected, mj.suspected);
  assignPrimitives(m.signs, mj.signs ?? {}, ["heartRate", "respiratoryRate", "systolic", "diastolic", "spo2", "temperature", "gcs", "avpu"]);
  syncMap(m.vitals, mj.vitals, () => new VitalsSample(), assignVitals);
  syncStrings(m.vitalsAlerts, mj.vitalsAlerts);
  const pj: Json = mj.profile ?? {};
  assignPrimitives(m.profile, pj, ["shared", "bloodType"]);
  syncStrings(m.profile.allergies, pj.allergies);
  syncStrings(m.profile.conditions, pj.conditions);
  syncStrings(m.profile.medications, pj.medications);
}

/** A fresh state with every child instance in place, ready for `assignEmergencyState`. */
export function blankEmergencyState(): EmergencyState {
  const state = new EmergencyState();
  state.patient = new Party();
  state.hospital = new HospitalLink();
  state.medical = new Medical();
  state.chat = new Chat();
  return state;
}
