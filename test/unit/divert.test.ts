import { describe, expect, it } from "vitest";
import { ReceivingHospital } from "../../rooms/emergency/hospital-link.ts";
import { divertActive, divertApplies, divertUntilProblem, divertView, MAX_DIVERT_MS, type Divert } from "../../src/domain/divert.ts";
import type { Hospital } from "../../src/domain/hospitals.ts";
import { rankHospitals } from "../../src/domain/matching.ts";
import { fakeEmergency } from "./fakes.ts";

const NOW = 1_800_000_000_000;
const divert = (specialties: Divert["specialties"], until = NOW + 60_000): Divert => ({ specialties, reason: "ED full", until, setBy: "hospital_admin:a", setAt: NOW });
const hospital = (id: string, lat: number, d?: Divert): Hospital => ({
  id, name: id, lat, lng: 36.82, specialties: ["trauma", "cardiac", "general"], emergencyBeds: 5, icuBeds: 2, accepting: true, updatedAt: 0, ...(d ? { divert: d } : {}),
});
const request = (needs: Divert["specialties"], now = NOW) => ({ at: { lat: -1.29, lng: 36.82 }, needs, critical: false, exclude: new Set<string>(), maxDistanceM: 40_000, now });

describe("divert rule", () => {
  it("a divert for all patients applies to everyone until it runs out", () => {
    const d = divert([]);
    expect(divertApplies(d, [], NOW)).toBe(true);
    expect(divertApplies(d, ["cardiac"], NOW)).toBe(true);
    expect(divertApplies(d, [], NOW + 60_000)).toBe(false); // expired: off by itself
    expect(divertActive(d, NOW + 59_999)).toBe(true);
    expect(divertApplies(undefined, ["cardiac"], NOW)).toBe(false);
  });

  it("a specialty divert applies only to patients needing one of its specialties", () => {
    const d = divert(["cardiac", "stroke"]);
    expect(divertApplies(d, ["cardiac"], NOW)).toBe(true);
    expect(divertApplies(d, ["trauma", "stroke"], NOW)).toBe(true);
    expect(divertApplies(d, ["trauma"], NOW)).toBe(false);
    expect(divertApplies(d, [], NOW)).toBe(false);
  });

  it("until must be in the future and at most 24 h ahead; an expired divert shows as off", () => {
    expect(divertUntilProblem(undefined, NOW)).toMatch(/required/);
    expect(divertUntilProblem(NOW, NOW)).toMatch(/future/);
    expect(divertUntilProblem(NOW + MAX_DIVERT_MS + 1, NOW)).toMatch(/24 h/);
    expect(divertUntilProblem(NOW + MAX_DIVERT_MS, NOW)).toBeUndefined();
    expect(divertView(divert(["cardiac"]), NOW)).toEqual({ active: true, specialties: ["cardiac"], reason: "ED full", until: NOW + 60_000 });
    expect(divertView(divert(["cardiac"]), NOW + 60_000)).toEqual({ active: false, specialties: [], reason: "", until: 0 });
  });

  it("matching skips a hospital on divert for all, or for a needed specialty, and takes it again once the divert ran out", () => {
    const near = hospital("near", -1.291);
    const far = hospital("far", -1.26);
    const rank = (hs: Hospital[], needs: Divert["specialties"], now = NOW) => rankHospitals(hs, request(needs, now)).map((s) => s.hospitalId);
    expect(rank([near, far], [])).toEqual(["near", "far"]);
    expect(rank([{ ...near, divert: divert([]) }, far], [])).toEqual(["far"]);
    expect(rank([{ ...near, divert: divert(["cardiac"]) }, far], ["cardiac"])).toEqual(["far"]);
    expect(rank([{ ...near, divert: divert(["cardiac"]) }, far], ["trauma"])).toEqual(["near", "far"]);
    expect(rank([{ ...near, divert: divert([]) }, far], [], NOW + 60_000)).toEqual(["near", "far"]);
  });
});

describe("a divert while the patient is on the way", () => {
  function harness(hospitals: Hospital[]) {
    const e = fakeEmergency();
    const dismissed: string[] = [];
    const link = new ReceivingHospital({
      ctx: e.ctx,
      config: { file: "", ackTimeoutMs: 120_000, realertIntervalMs: 30_000, maxDistanceM: 40_000 },
      hospitals: { all: () => hospitals, get: (id) => hospitals.find((h) => h.id === id) },
      eta: { etaSeconds: () => 240 },
      dismissStaff: (id) => dismissed.push(id),
    });
    e.state.medical.assessed = true;
    return { ...e, link, dismissed };
  }

  it("re-matches to the next hospital not on divert, withdraws the card and records it, without passing the hospital over for good", () => {
    const hs = [hospital("near", -1.2921), hospital("far", -1.26)];
    const h = harness(hs);
    h.link.match();
    expect(h.state.hospital.id).toBe("near");
    h.state.hospital.status = "acknowledged";
    hs[0].divert = { ...divert([]), until: h.clock.now() + 60_000 };
    expect(h.link.divertHits("near")).toBe(true);
    expect(h.link.divertHits("far")).toBe(false);
    expect(h.link.diverted("ED full")).toBe("rematched");
    expect(h.state.hospital.id).toBe("far");
    expect(h.state.hospital.status).toBe("notified");
    expect(h.state.hospital.divertedFrom).toBe("near");
    expect(h.state.hospital.divertReason).toBe("ED full");
    expect([...h.state.hospital.passedOver]).toEqual([]);
    expect(h.dismissed).toEqual(["near"]);
    expect(h.types()).toEqual(expect.arrayContaining(["hospital_diverted", "hospital_matched"]));
    expect(h.calls.some((c) => c.roomId === "hospital-near" && (c.args[0] as { hospitalStatus: string }).hospitalStatus === "withdrawn")).toBe(true);
  });

  it("a patient at the hospital stays; a specialty divert that does not cover the patient changes nothing", () => {
    const hs = [hospital("near", -1.2921), hospital("far", -1.26)];
    const h = harness(hs);
    h.link.match();
    hs[0].divert = { ...divert(["cardiac"]), until: h.clock.now() + 60_000 };
    expect(h.link.divertHits("near")).toBe(false); // no cardiac need
    h.state.medical.suspected.push("cardiac");
    expect(h.link.divertHits("near")).toBe(true);
    h.state.status = "at_hospital";
    expect(h.link.diverted("cath lab down")).toBe("stays");
    expect(h.state.hospital.id).toBe("near");
    expect(h.link.divertHits("near")).toBe(false); // recorded once
    expect(h.dismissed).toEqual([]);
  });
});
