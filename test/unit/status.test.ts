import { describe, expect, it } from "vitest";
import { STATUS_ORDER, declineRefusal, handoverRefusal, isClosed, isRefusal, responderStep, statusAfterAssignment } from "../../src/domain/status.ts";

describe("status machine", () => {
  it("goes alerted → dispatched → on_scene → transporting → at_hospital, one step at a time, each setting its EMS time and event", () => {
    expect(statusAfterAssignment("alerted")).toBe("dispatched");
    expect(statusAfterAssignment("on_scene")).toBe("on_scene");
    expect(responderStep("dispatched", "on_scene", false)).toEqual({ to: "on_scene", time: "onSceneAt", timeIfUnset: false, event: "on_scene" });
    expect(responderStep("on_scene", "left_scene", false)).toEqual({ to: "transporting", time: "leftSceneAt", timeIfUnset: false, event: "left_scene" });
    expect(responderStep("transporting", "at_hospital", true)).toEqual({ to: "at_hospital", time: "atHospitalAt", timeIfUnset: false, event: "arrived_at_hospital" });
    expect(STATUS_ORDER).toEqual(["alerted", "dispatched", "on_scene", "transporting", "at_hospital", "handed_over"]);
  });

  it("refuses a skipped or backward step with INVALID_TRANSITION naming both statuses", () => {
    const skipped = responderStep("dispatched", "left_scene", false);
    expect(isRefusal(skipped) && skipped.refused).toEqual({ code: "INVALID_TRANSITION", message: "cannot go to transporting while dispatched" });
    expect(isRefusal(responderStep("transporting", "on_scene", false))).toBe(true);
    expect(isRefusal(responderStep("alerted", "on_scene", false))).toBe(true);
  });

  it("records nothing for a step already taken", () => {
    expect(responderStep("on_scene", "on_scene", false)).toBeUndefined();
    expect(responderStep("at_hospital", "at_hospital", true)).toBeUndefined();
  });

  it("needs a receiving hospital before arriving at one", () => {
    const r = responderStep("transporting", "at_hospital", false);
    expect(isRefusal(r) && r.refused.message).toBe("no receiving hospital yet");
  });

  it("takes en route in any open status, setting its time only once", () => {
    for (const s of ["alerted", "dispatched", "on_scene"]) {
      expect(responderStep(s, "en_route", false)).toEqual({ time: "enRouteAt", timeIfUnset: true, event: "en_route" });
    }
  });

  it("hands over only while transporting or at hospital, and declines only before arrival", () => {
    expect(handoverRefusal("transporting")).toBeUndefined();
    expect(handoverRefusal("at_hospital")).toBeUndefined();
    expect(handoverRefusal("on_scene")?.refused.message).toBe("cannot hand over while on_scene");
    expect(declineRefusal("transporting")).toBeUndefined();
    expect(declineRefusal("at_hospital")?.refused.message).toBe("the patient is already here");
  });

  it("counts handed over, cancelled and expired as closed", () => {
    expect(["handed_over", "cancelled", "expired"].every(isClosed)).toBe(true);
    expect(STATUS_ORDER.slice(0, 5).some(isClosed)).toBe(false);
  });
});
