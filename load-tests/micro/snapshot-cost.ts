/**
 * What one emergency's snapshot costs the flusher (persistence/snapshots.ts), in µs: the room's own
 * `snapshot()` on a state like a live one (three parties, an assessment, a disclosed profile, a
 * timeline of 20 events with notes), against the encoding Haven used before medical data was
 * sealed (msgpack of the whole state's JSON). Sealed parts are cached until their part changes;
 * "re-sealed" is the cost when the assessment or a note has just changed.
 *
 *   node load-tests/micro/snapshot-cost.ts
 */
import { Packr } from "msgpackr";
import { MedicalRecord } from "../../rooms/emergency/medical-record.ts";
import { Party } from "../../rooms/schema/common.ts";
import { TimelineEvent } from "../../rooms/schema/EmergencyState.ts";
import { blankEmergencyState } from "../../rooms/schema/restore.ts";
import { EmergencyMedical } from "../../src/medical/emergency.ts";
import { MasterKey, dataKeyObject, newDataKey } from "../../src/medical/crypto.ts";

const master = MasterKey.generateDevelopmentKey();
const noop = async () => undefined as never;
const emergencyMedical = new EmergencyMedical({ keys: { addClinical: noop, addProfile: noop, destroyClosedBefore: noop } as never, audit: { append: noop }, master, node: "bench", log: console as never });

const state = blankEmergencyState();
state.id = "5b0c7a52-51e5-4b1f-9d0e-3f1b2c1d9e01";
const party = (id: string, role: string) => Object.assign(new Party(), { id, role, name: `${role} ${id}`, lat: -1.262, lng: 36.823, accuracy: 8, updatedAt: Date.now(), online: true });
Object.assign(state.patient, party("p-1", "patient"));
state.firstAiders.set("fa-1", party("fa-1", "first_aider"));
state.ambulance.set("crew-1", party("crew-1", "ambulance_crew"));
const m = state.medical;
Object.assign(m, { assessed: true, age: 58, timeOfIncident: Date.now(), mechanism: "collapsed at a bus stop, chest pain", assessedBy: "first_aider:fa-1", assessedAt: Date.now() });
m.injuries.push("none visible"); m.treatment.push("aspirin 300 mg", "oxygen"); m.suspected.push("cardiac");
Object.assign(m.signs, { heartRate: 118, systolic: 92, diastolic: 60, respiratoryRate: 24, spo2: 91, gcs: 14, avpu: "voice" });
Object.assign(m.profile, { shared: true, bloodType: "O-" });
m.profile.allergies.push("penicillin (LIFE-THREATENING: anaphylaxis)"); m.profile.conditions.push("type 1 diabetes"); m.profile.medications.push("insulin glargine 20 units nightly");
for (let i = 1; i <= 20; i++) {
  state.timeline.push(Object.assign(new TimelineEvent(), { seq: i, type: i === 1 ? "call_received" : i % 5 === 0 ? "offer_declined" : "responders_notified", at: Date.now(), actor: "system", detail: i === 1 ? "chest pain" : `detail ${i}` }));
}
// the emergency room's snapshot is its medical record's (rooms/emergency/medical-record.ts): timed here without a room
const record = new MedicalRecord({
  roomId: state.id, state, medical: emergencyMedical, profiles: undefined as never, log: console,
  keys: { clinical: dataKeyObject(newDataKey()), profile: dataKeyObject(newDataKey()) },
});

const before = new Packr({ useRecords: false, moreTypes: false, structuredClone: false });
const baseline = () => Buffer.from(before.pack({ seq: 20, state: state.toJSON() }));

/** µs per call: the median and the best of 9 interleaved rounds (the machine may be shared). */
const cases: [string, () => unknown][] = [
  ["before: msgpack of the whole state's JSON", baseline],
  ["now: snapshot(), sealed parts cached", () => record.snapshot(20)],
  ["now: snapshot(), both parts re-sealed", () => {
    record.stateReplaced(); // as after an undone change: both parts are sealed again
    return record.snapshot(20);
  }],
];
const samples = cases.map(() => [] as number[]);
for (const [, fn] of cases) for (let i = 0; i < 3000; i++) fn();
for (let round = 0; round < 9; round++) {
  cases.forEach(([, fn], c) => {
    const n = 4000;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    samples[c].push(Number(process.hrtime.bigint() - t0) / 1000 / n);
  });
}
cases.forEach(([label], c) => {
  const sorted = samples[c].sort((a, b) => a - b);
  console.log(`${label.padEnd(44)} median ${sorted[4].toFixed(1)} µs, best ${sorted[0].toFixed(1)} µs`);
});
console.log(`snapshot bytes: before ${baseline().length} B, now ${record.snapshot(20).state.length} B`);
