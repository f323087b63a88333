import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, account, join, login, scenario, sdk, startHaven, waitFor, type Account, type Haven } from "./harness.ts";

/** Hospital matching, re-alerts, fallback on decline and on silence, and the REST hospital API. */
let h: Haven;
let ops: Account;
beforeAll(async () => {
  h = await startHaven({ HAVEN_HOSPITAL_ACK_TIMEOUT_MS: "1500", HAVEN_HOSPITAL_REALERT_INTERVAL_MS: "300" });
  ops = await login(h, OPS.email, OPS.password);
});
afterAll(async () => { await h?.stop(); });

const AGA_KHAN = { lat: -1.2620, lng: 36.8230 };
const assessment = { mechanism: "chest pain at rest", injuries: [], treatment: ["aspirin"], suspected: ["cardiac"], priority: "critical" };

describe("hospital matching and fallback", () => {
  it("re-alerts until acknowledged, falls back when a hospital declines or stays silent, and keeps the score with each decision", async () => {
    const s = await scenario(h, ops, AGA_KHAN);
    const akStaff = await account(h, "hospital_staff", { hospitalId: "aga-khan", by: ops });
    const akBoard = await join(h, akStaff.token, "hospital-aga-khan");

    await s.faRoom.request("assessment", assessment);
    await waitFor(s.pRoom, (st) => st.hospital.id === "aga-khan" && st.hospital.status === "notified", 2000, "aga-khan notified");
    const first = s.pRoom.state.hospital;
    expect(first.score).toBeCloseTo(0.4 * first.distanceScore + 0.3 * first.capacityScore + 0.3 * first.specialtyScore, 2);
    expect(first.specialtyScore).toBe(1);
    await waitFor(s.pRoom, (st) => st.hospital.alerts >= 3, 2000, "re-alerted at the interval");

    // the receiving hospital's staff may follow the emergency itself, with the medical view
    const akInRoom = await join(h, akStaff.token, s.id);
    await waitFor(akInRoom, (st) => st.medical?.assessed === true, 2000, "staff medical view");
    const kicked = new Promise<number>((r) => akInRoom.onLeave((code: number) => r(code)));

    // decline: the next best hospital is notified, the decliner loses the emergency and its view
    const declined = await akBoard.request("decline", { emergencyId: s.id, reason: "cath lab down" });
    await waitFor(s.pRoom, (st) => [...st.timeline].some((e: any) => e.type === "hospital_declined" && e.detail === "cath lab down"), 2000, "decline reason on the timeline");
    const next = declined.nextHospitalId as string;
    expect(next).toBeTruthy();
    expect(next).not.toBe("aga-khan");
    await waitFor(s.pRoom, (st) => st.hospital.id === next && st.hospital.status === "notified", 2000, "next notified");
    expect([...s.pRoom.state.hospital.passedOver]).toEqual(["aga-khan"]);
    await waitFor(akBoard, (st) => !st.incoming.has(s.id), 2000, "removed from the decliner's wallboard");
    expect(await kicked).toBe(4403);
    // and cannot take its seat back with the reconnection token
    const rejoin = await sdk(h, akStaff.token).reconnect(akInRoom.reconnectionToken).then((r) => { void r.leave(); return "rejoined"; }, (e) => e);
    expect(rejoin).not.toBe("rejoined");

    // silence: after the acknowledgement timeout the next one is tried
    await waitFor(s.pRoom, (st) => st.hospital.passedOver.length === 2 && st.hospital.id !== next && st.hospital.status === "notified", 4000, "timed out to a third hospital");
    const types = [...s.pRoom.state.timeline].map((e: any) => e.type);
    expect(types).toEqual(expect.arrayContaining(["hospital_matched", "hospital_realerted", "hospital_declined", "hospital_timed_out"]));
    const third = s.pRoom.state.hospital.id;

    // the third acknowledges: no more re-alerts
    const staff3 = await account(h, "hospital_staff", { hospitalId: third, by: ops });
    const board3 = await join(h, staff3.token, `hospital-${third}`);
    await board3.request("acknowledge", { emergencyId: s.id });
    await waitFor(s.pRoom, (st) => st.hospital.status === "acknowledged", 2000, "acknowledged");
    const alerts = s.pRoom.state.hospital.alerts;
    await new Promise((r) => setTimeout(r, 700));
    expect(s.pRoom.state.hospital.alerts).toBe(alerts);
    // a hospital that is not receiving cannot act on the emergency
    await expect(akBoard.request("acknowledge", { emergencyId: s.id })).rejects.toMatchObject({ reason: { code: "EMERGENCY_NOT_FOUND" } });
    // handover before the patient left the scene is refused
    await expect(board3.request("handover", { emergencyId: s.id })).rejects.toMatchObject({ reason: { code: "INVALID_TRANSITION" } });
  });

  it("a hospital that stops accepting is not matched", async () => {
    const admin = await account(h, "hospital_admin", { hospitalId: "gertrudes", by: ops });
    const r = await h.http("POST", "/api/hospitals/gertrudes/availability", { emergencyBeds: 0, accepting: false }, admin.token);
    expect(r.status).toBe(200);
    const s = await scenario(h, ops, { lat: -1.2533, lng: 36.8396 }); // at Gertrude's Children's Hospital
    await s.faRoom.request("assessment", { mechanism: "fever and seizure", injuries: [], treatment: [], age: 4 });
    await waitFor(s.pRoom, (st) => st.hospital.status === "notified", 2000, "matched");
    expect(s.pRoom.state.hospital.id).not.toBe("gertrudes");
    expect(s.pRoom.state.hospital.specialtyScore).toBe(1); // still a pediatric hospital
  });
});

describe("hospital onboarding", () => {
  it("a registered hospital waits for ops approval, then is matched and has a wallboard", async () => {
    const someone = await account(h, "patient");
    const reg = { id: "thika-level5", name: "Thika Level 5 Hospital", lat: -1.0333, lng: 37.0693, specialties: ["trauma", "general"], emergencyBeds: 12, icuBeds: 2, accepting: true };
    expect((await h.http("POST", "/api/hospitals", reg, someone.token))).toMatchObject({ status: 201, body: { approved: false } });
    expect((await h.http("POST", "/api/hospitals", reg, someone.token))).toMatchObject({ status: 409, body: { code: "HOSPITAL_EXISTS" } });
    expect((await h.http("POST", "/api/hospitals", { ...reg, id: "x2", specialties: ["astrology"] }, someone.token)).status).toBe(400);
    expect((await h.http("GET", "/api/hospitals/thika-level5/capabilities", undefined, someone.token)).status).toBe(404);
    expect((await h.http("POST", "/api/auth/register", { email: "thika-admin@haven.test", password: "a-long-password-1", name: "Admin", role: "hospital_admin", hospitalId: "thika-level5" }, ops.token)).status).toBe(404);

    for (const bad of [{ ...reg, id: "Bad Id!" }, { ...reg, lat: 91 }, { ...reg, emergencyBeds: "12" }, { name: "no id" }, { ...reg, extra: 1 }]) {
      expect((await h.http("POST", "/api/hospitals", bad, someone.token)).body.code).toBe("INVALID_PAYLOAD");
    }
    for (const bad of [{ approved: false }, {}, { approved: "yes" }]) {
      expect((await h.http("POST", "/api/hospitals/thika-level5/approval", bad, ops.token)).body.code).toBe("INVALID_PAYLOAD");
    }
    expect((await h.http("POST", "/api/hospitals/nowhere/approval", { approved: true }, ops.token)).status).toBe(404);
    // responder verification: ops only, a boolean, a known responder
    const fa = await account(h, "first_aider");
    expect((await h.http("POST", `/api/responders/${fa.id}/verification`, { verified: "yes" }, ops.token)).body.code).toBe("INVALID_PAYLOAD");
    expect((await h.http("POST", `/api/responders/${fa.id}/verification`, { verified: true }, someone.token)).status).toBe(403);
    expect((await h.http("POST", "/api/responders/00000000-0000-4000-8000-000000000000/verification", { verified: true }, ops.token)).status).toBe(404);
    expect((await h.http("POST", "/api/hospitals/thika-level5/approval", { approved: true }, someone.token)).status).toBe(403);
    expect((await h.http("POST", "/api/hospitals/thika-level5/approval", { approved: true }, ops.token))).toMatchObject({ status: 200, body: { approved: true } });
    expect((await h.http("GET", "/api/hospitals/thika-level5/capabilities", undefined, someone.token)).body).toMatchObject({ id: "thika-level5", specialties: ["trauma", "general"] });
    const admin = await account(h, "hospital_admin", { hospitalId: "thika-level5", by: ops });
    const board = await join(h, admin.token, "hospital-thika-level5");
    expect(board.state.name).toBe("Thika Level 5 Hospital");

    const s = await scenario(h, ops, { lat: -1.0340, lng: 37.0690 });
    await s.faRoom.request("assessment", { mechanism: "fall from a scaffold", injuries: ["closed head injury"], treatment: [], suspected: ["trauma"] });
    await waitFor(s.pRoom, (st) => st.hospital.id === "thika-level5" && st.hospital.status === "notified", 2000, "the new hospital is matched");
    await waitFor(board, (st) => st.incoming.has(s.id), 2000, "on its wallboard");
    await board.leave();
  });
});

describe("hospital REST", () => {
  it("nearby, capabilities and availability answer with what they should, to whom they should", async () => {
    const patient = await account(h, "patient");
    const near = await h.http("GET", "/api/hospitals/nearby?lat=-1.3007&lng=36.8065&radiusM=3000", undefined, patient.token);
    expect(near.status).toBe(200);
    expect(near.body.hospitals[0].id).toBe("knh");
    expect(near.body.hospitals.every((x: any) => x.distanceM <= 3000)).toBe(true);
    const dists = near.body.hospitals.map((x: any) => x.distanceM);
    expect(dists).toEqual([...dists].sort((a: number, b: number) => a - b));
    expect((await h.http("GET", "/api/hospitals/nearby?lat=-1.3&lng=36.8")).status).toBe(401);

    const cap = await h.http("GET", "/api/hospitals/knh/capabilities", undefined, patient.token);
    expect(cap.body).toMatchObject({ id: "knh", accepting: true });
    expect(cap.body.specialties).toContain("trauma");
    expect((await h.http("GET", "/api/hospitals/nowhere/capabilities", undefined, patient.token)).status).toBe(404);

    const staff = await account(h, "hospital_staff", { hospitalId: "mbagathi", by: ops });
    const board = await join(h, staff.token, "hospital-mbagathi");
    expect((await h.http("POST", "/api/hospitals/mbagathi/availability", { emergencyBeds: 3, accepting: true }, patient.token)).status).toBe(403);
    expect((await h.http("POST", "/api/hospitals/knh/availability", { emergencyBeds: 3, accepting: true }, staff.token)).status).toBe(403);
    const ok = await h.http("POST", "/api/hospitals/mbagathi/availability", { emergencyBeds: 3, icuBeds: 1, accepting: true }, staff.token);
    expect(ok.body).toMatchObject({ id: "mbagathi", emergencyBeds: 3, icuBeds: 1, accepting: true });
    await waitFor(board, (st) => st.emergencyBeds === 3 && st.icuBeds === 1, 2000, "wallboard sees capacity");
    await board.request("capacity", { emergencyBeds: 5, accepting: true });
    const after = await h.http("GET", "/api/hospitals/mbagathi/capabilities", undefined, patient.token);
    expect(after.body.emergencyBeds).toBe(5);
    await board.leave();
  });

  it("emergency status over REST hides medical details from those not entitled", async () => {
    const s = await scenario(h, ops, { lat: -1.3093, lng: 36.8005 });
    await s.faRoom.request("assessment", { mechanism: "road traffic collision", injuries: ["open fracture of the left femur"], treatment: ["splint"], suspected: ["trauma"] });
    await waitFor(s.pRoom, (st) => st.hospital.status === "notified", 2000, "matched");
    const asPatient = await h.http("GET", `/api/emergency/${s.id}/status`, undefined, s.patient.token);
    expect(asPatient.status).toBe(200);
    expect(asPatient.body.medical).toBeUndefined();
    expect(JSON.stringify(asPatient.body)).not.toContain("femur");
    const asResponder = await h.http("GET", `/api/emergency/${s.id}/status`, undefined, s.fa.acc.token);
    expect(asResponder.body.medical.injuries).toEqual(["open fracture of the left femur"]);
    const asOps = await h.http("GET", `/api/emergency/${s.id}/status`, undefined, ops.token);
    expect(asOps.status).toBe(200);
    expect(asOps.body.medical).toBeUndefined();
    // ops watching the room live sees no medical details either
    const opsRoom = await join(h, ops.token, s.id);
    expect(opsRoom.state.medical).toBeUndefined();
    // a location update over REST reaches the socket parties
    const put = await h.http("PUT", `/api/emergency/${s.id}/location`, { lat: -1.30931, lng: 36.80051, accuracy: 12 }, s.patient.token);
    expect(put.status).toBe(200);
    await waitFor(s.crewRoom, (st) => st.patient.lat === -1.30931 && st.patient.accuracy === 12, 1000, "REST position seen on socket");
    await opsRoom.leave();
  });
});
