import { Packr } from "msgpackr";
import type { EmergencyState } from "../schema/EmergencyState.ts";
import type { Party } from "../schema/common.ts";

/**
 * The parties' positions as a small row of their own, written between whole snapshots: a room
 * whose only change since its last snapshot is movement costs a few hundred bytes on the event
 * loop and in Postgres, not its whole state. A stored positions row is newer than the snapshot it
 * sits beside (a whole snapshot clears it) and is applied on top of it when the room is restored.
 *
 * Layout (msgpack): an array of `[party, id, lat, lng, accuracy, heading, speed, updatedAt]`,
 * where `party` is 0 for the patient, 1 for a first-aider and 2 for the ambulance crew.
 */
const codec = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, int64AsType: "number" });

type Row = [kind: 0 | 1 | 2, id: string, lat: number, lng: number, accuracy: number, heading: number, speed: number, updatedAt: number];

const row = (kind: Row[0], p: Party): Row => [kind, p.id, p.lat, p.lng, p.accuracy, p.heading, p.speed, p.updatedAt];

export function encodePositions(state: EmergencyState): Buffer {
  const rows: Row[] = [row(0, state.patient)];
  for (const p of state.firstAiders.values()) rows.push(row(1, p));
  for (const p of state.ambulance.values()) rows.push(row(2, p));
  return Buffer.from(codec.pack(rows));
}

/** Puts stored positions back on the parties still in `state` (a party that left is skipped). */
export function applyPositions(state: EmergencyState, bytes: Uint8Array): void {
  const rows = codec.unpack(bytes) as unknown;
  if (!Array.isArray(rows)) return;
  for (const r of rows as Row[]) {
    if (!Array.isArray(r) || r.length !== 8 || typeof r[1] !== "string" || !r.slice(2).every(Number.isFinite)) continue;
    const party = r[0] === 0 ? (state.patient.id === r[1] ? state.patient : undefined)
      : r[0] === 1 ? state.firstAiders.get(r[1])
      : r[0] === 2 ? state.ambulance.get(r[1]) : undefined;
    // never older than the snapshot's own
    if (!party || r[7] < party.updatedAt) continue;
    [, , party.lat, party.lng, party.accuracy, party.heading, party.speed, party.updatedAt] = r;
  }
}
