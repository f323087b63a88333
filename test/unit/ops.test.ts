import { describe, expect, it } from "vitest";
import { inRegion, unitStatus, waits } from "../../src/domain/ops.ts";
import { mayChat, type Caller, type EmergencyParties } from "../../src/domain/entitlement.ts";

const T = { acceptWaitMs: 60_000, ackWaitMs: 30_000 };
const at = (status: string, createdAt: number, hospitalStatus = "none", notifiedAt = 0) => ({ status, createdAt, hospitalStatus, notifiedAt });

describe("the operations desk's rules", () => {
  it("highlights an emergency nobody accepted once the accept threshold has passed since the alert, and only while it is still alerted", () => {
    expect(waits(at("alerted", 0), 59_999, T).waitingAccept).toBe(false);
    expect(waits(at("alerted", 0), 60_000, T).waitingAccept).toBe(true);
    expect(waits(at("dispatched", 0), 600_000, T).waitingAccept).toBe(false);
    expect(waits(at("cancelled", 0), 600_000, T).waitingAccept).toBe(false);
  });

  it("highlights a notified hospital that has not acknowledged once the acknowledgement threshold has passed since it was notified", () => {
    expect(waits(at("on_scene", 0, "notified", 100_000), 129_999, T).waitingAck).toBe(false);
    expect(waits(at("on_scene", 0, "notified", 100_000), 130_000, T).waitingAck).toBe(true);
    expect(waits(at("on_scene", 0, "acknowledged", 100_000), 999_999, T).waitingAck).toBe(false);
    expect(waits(at("on_scene", 0, "none", 0), 999_999, T).waitingAck).toBe(false);
  });

  it("names what a unit is doing: assigned before offered before available; unavailable when away or not available", () => {
    const u = { available: true, online: true, offers: 0, assignedTo: "" };
    expect(unitStatus(u)).toBe("available");
    expect(unitStatus({ ...u, offers: 2 })).toBe("offered");
    expect(unitStatus({ ...u, offers: 1, assignedTo: "e1" })).toBe("assigned");
    expect(unitStatus({ ...u, available: false })).toBe("unavailable");
    expect(unitStatus({ ...u, online: false })).toBe("unavailable");
  });

  it("reaches everyone without a region, and within a region only those inside its radius", () => {
    const nairobi = { lat: -1.2860, lng: 36.8200 };
    expect(inRegion(undefined, { lat: 3.1, lng: 35.6 })).toBe(true);
    expect(inRegion({ ...nairobi, radiusM: 1000 }, { lat: -1.2860 + 800 / 111_320, lng: 36.82 })).toBe(true);
    expect(inRegion({ ...nairobi, radiusM: 1000 }, { lat: -1.2860 + 1200 / 111_320, lng: 36.82 })).toBe(false);
  });
});

describe("who takes part in an emergency's chat", () => {
  const e: EmergencyParties = { patient: { id: "pat" }, firstAiders: new Set(["fa"]), ambulance: new Set(["crew"]), hospital: { id: "knh", status: "acknowledged" } };
  const as = (role: Caller["role"], sub: string, hospitalId?: string): Caller => ({ role, sub, hospitalId });

  it("the patient, the assigned responders and the receiving hospital's staff; not operations, another hospital or an unassigned responder", () => {
    for (const c of [as("patient", "pat"), as("first_aider", "fa"), as("ambulance_crew", "crew"), as("hospital_staff", "s", "knh"), as("hospital_admin", "a", "knh")]) expect(mayChat(e, c), c.role).toBe(true);
    for (const c of [as("ops_admin", "ops"), as("patient", "other"), as("first_aider", "someone"), as("hospital_staff", "s", "aga-khan"), as("hospital_staff", "s")]) expect(mayChat(e, c), `${c.role}:${c.sub}`).toBe(false);
    expect(mayChat({ ...e, hospital: { id: "knh", status: "none" } }, as("hospital_staff", "s", "knh"))).toBe(false);
  });
});
