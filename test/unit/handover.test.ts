import { describe, expect, it } from "vitest";
import { handoverSummary, type Assessment } from "../../src/domain/handover.ts";
import { idleText, missingRoles, noResponderText, raisedReasons, readableDuration } from "../../src/domain/escalation.ts";

const none = { heartRate: -1, systolic: -1, diastolic: -1, respiratoryRate: -1, spo2: -1, temperature: -1, gcs: -1, avpu: "" };

describe("handover summary", () => {
  it("is empty before the assessment", () => {
    expect(handoverSummary({ assessed: false, age: 40, timeOfIncident: 0, mechanism: "fall", injuries: [], treatment: [], signs: none })).toBe("");
  });

  it("reads ATMIST in one line, with only the signs recorded", () => {
    const a: Assessment = {
      assessed: true, age: 34, timeOfIncident: Date.UTC(2026, 0, 1, 8, 30), mechanism: "motorbike collision",
      injuries: ["open femur fracture", "scalp laceration"], treatment: ["tourniquet", "oxygen"],
      signs: { ...none, heartRate: 118, systolic: 92, respiratoryRate: 24, spo2: 93, temperature: 36.55, gcs: 14, avpu: "V" },
    };
    expect(handoverSummary(a)).toBe(
      "A: 34 | T: 2026-01-01T08:30:00.000Z | M: motorbike collision | I: open femur fracture; scalp laceration"
      + " | S: HR 118, BP 92/?, RR 24, SpO2 93%, T 36.5, GCS 14, AVPU V | T: tourniquet; oxygen",
    );
  });

  it("says unknown and none where nothing was recorded", () => {
    expect(handoverSummary({ assessed: true, age: -1, timeOfIncident: 0, mechanism: "", injuries: [], treatment: [], signs: none }))
      .toBe("A: unknown | T: unknown | M:  | I: none recorded | S: none recorded | T: none");
  });
});

describe("escalation rules", () => {
  it("names the roles still without a responder, and durations as people read them", () => {
    expect(missingRoles(0, 0)).toEqual(["first_aider", "ambulance_crew"]);
    expect(missingRoles(1, 0)).toEqual(["ambulance_crew"]);
    expect(missingRoles(1, 1)).toEqual([]);
    expect(noResponderText(["first_aider", "ambulance_crew"], 180_000)).toBe("no first_aider or ambulance_crew accepted within 3 min of the alert");
    expect(readableDuration(90_000)).toBe("90 s");
    expect(idleText(14_400_000)).toBe("no activity for 240 min");
  });

  it("reads back the reasons already raised from the timeline", () => {
    const raised = raisedReasons([
      { type: "escalated", detail: "no_responder: no first_aider accepted within 3 min of the alert" },
      { type: "hospital_matched", detail: "knh score 0.9" },
    ]);
    expect([...raised]).toEqual(["no_responder"]);
  });
});
