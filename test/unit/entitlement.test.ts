import { describe, expect, it } from "vitest";
import { isEntitled, isMedicallyEntitled, isReceivingHospital, isStaffOf, mayCancel, type Caller, type EmergencyParties } from "../../src/domain/entitlement.ts";

const emergency = (hospitalStatus = "notified"): EmergencyParties => ({
  patient: { id: "pat" },
  firstAiders: new Set(["fa"]),
  ambulance: new Set(["crew"]),
  hospital: { id: "knh", status: hospitalStatus },
});
const as = (role: Caller["role"], sub: string, hospitalId?: string): Caller => ({ role, sub, hospitalId });

describe("entitlement", () => {
  it("lets in the patient, the assigned responders, the receiving hospital's staff and operations, and nobody else", () => {
    const e = emergency();
    expect(isEntitled(e, as("patient", "pat"))).toBe(true);
    expect(isEntitled(e, as("first_aider", "fa"))).toBe(true);
    expect(isEntitled(e, as("ambulance_crew", "crew"))).toBe(true);
    expect(isEntitled(e, as("hospital_staff", "s", "knh"))).toBe(true);
    expect(isEntitled(e, as("hospital_admin", "a", "knh"))).toBe(true);
    expect(isEntitled(e, as("ops_admin", "ops"))).toBe(true);

    expect(isEntitled(e, as("patient", "someone-else"))).toBe(false);
    expect(isEntitled(e, as("first_aider", "crew"))).toBe(false); // assigned in the other role
    expect(isEntitled(e, as("ambulance_crew", "fa"))).toBe(false);
    expect(isEntitled(e, as("hospital_staff", "s", "aga-khan"))).toBe(false);
    expect(isEntitled(e, as("hospital_staff", "s"))).toBe(false);
  });

  it("shows medical details to the assigned responders and the receiving hospital only, not the patient or operations", () => {
    const e = emergency();
    expect(isMedicallyEntitled(e, as("first_aider", "fa"))).toBe(true);
    expect(isMedicallyEntitled(e, as("ambulance_crew", "crew"))).toBe(true);
    expect(isMedicallyEntitled(e, as("hospital_staff", "s", "knh"))).toBe(true);
    expect(isMedicallyEntitled(e, as("patient", "pat"))).toBe(false);
    expect(isMedicallyEntitled(e, as("ops_admin", "ops"))).toBe(false);
    expect(isMedicallyEntitled(e, as("first_aider", "stranger"))).toBe(false);
  });

  it("has no receiving hospital once it was passed over (status none)", () => {
    const e = emergency("none");
    expect(isReceivingHospital(e, "knh")).toBe(false);
    expect(isEntitled(e, as("hospital_staff", "s", "knh"))).toBe(false);
    expect(isMedicallyEntitled(e, as("hospital_admin", "a", "knh"))).toBe(false);
    expect(isReceivingHospital(emergency("acknowledged"), "knh")).toBe(true);
  });

  it("lets only the patient or operations cancel, and knows a hospital's staff", () => {
    const e = emergency();
    expect(mayCancel(e, as("patient", "pat"))).toBe(true);
    expect(mayCancel(e, as("ops_admin", "ops"))).toBe(true);
    expect(mayCancel(e, as("patient", "other"))).toBe(false);
    expect(mayCancel(e, as("first_aider", "fa"))).toBe(false);
    expect(isStaffOf(as("hospital_staff", "s", "knh"), "knh")).toBe(true);
    expect(isStaffOf(as("hospital_admin", "s", "knh"), "mp-shah")).toBe(false);
    expect(isStaffOf(as("ops_admin", "ops", "knh"), "knh")).toBe(false);
  });
});
