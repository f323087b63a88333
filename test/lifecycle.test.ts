import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, account, join, login, nextMessage, onDuty, startHaven, waitFor, type Haven } from "./harness.ts";

/**
 * The whole emergency, alert to handover, with a patient, two first-aiders, an ambulance crew and
 * the receiving hospital's wallboard, each on its own socket.
 */
let h: Haven;
beforeAll(async () => { h = await startHaven({ HAVEN_CLOSE_GRACE_MS: "1000" }); });
afterAll(async () => { await h?.stop(); });

// Next to the Aga Khan University Hospital, Nairobi
const SCENE = { lat: -1.2620, lng: 36.8230 };
const offset = (metresNorth: number) => ({ lat: SCENE.lat + metresNorth / 111_320, lng: SCENE.lng });

describe("alert to handover", () => {
  it(`runs the whole lifecycle and every party sees every other party move within one second (transport: ${process.env.HAVEN_TRANSPORT ?? "auto"})`, async () => {
    console.log(`[haven] lifecycle suite running on the ${h.transport} transport`);
    const ops = await login(h, OPS.email, OPS.password);
    const fa1 = await onDuty(h, ops, "first_aider", offset(100));
    const fa2 = await onDuty(h, ops, "first_aider", offset(250));
    const crew = await onDuty(h, ops, "ambulance_crew", offset(3000));
    const staff = await account(h, "hospital_staff", { hospitalId: "aga-khan", by: ops });
    const wallboard = await join(h, staff.token, "hospital-aga-khan");

    // alert
    const patient = await account(h, "patient");
    const alert = await h.http("POST", "/api/emergency/alert", { ...SCENE, priority: "high" }, patient.token);
    expect(alert.status).toBe(201);
    const id = alert.body.emergencyId as string;
    const pRoom = await join(h, patient.token, id);
    expect(pRoom.state.status).toBe("alerted");
    expect(pRoom.state.times.callReceivedAt).toBeGreaterThan(0);

    // dispatch: both first-aiders are offered, the first to accept wins, the other offer is withdrawn
    await waitFor(fa1.duty, (s) => s.offers.size === 1, 3000, "fa1 offer");
    await waitFor(fa2.duty, (s) => s.offers.size === 1, 3000, "fa2 offer");
    await waitFor(crew.duty, (s) => s.offers.size === 1, 3000, "crew offer");
    const fa1Offer = [...fa1.duty.state.offers.values()][0] as any;
    expect(fa1Offer.emergencyId).toBe(id);
    expect(fa1Offer.distanceM).toBeGreaterThan(80);
    expect(fa1Offer.distanceM).toBeLessThan(120);
    const withdrawn = nextMessage(fa2.duty, "offer_withdrawn");
    const accepted = await fa1.duty.request("accept_offer", { offerId: fa1Offer.id });
    expect(accepted).toMatchObject({ ok: true, emergencyId: id });
    expect((await withdrawn).reason).toBe("assigned_elsewhere");
    await waitFor(fa2.duty, (s) => s.offers.size === 0, 2000, "fa2 offer gone");
    const crewOffer = [...crew.duty.state.offers.values()][0] as any;
    await crew.duty.request("accept_offer", { offerId: crewOffer.id });
    await waitFor(pRoom, (s) => s.firstAiders.has(fa1.acc.id) && s.ambulance.has(crew.acc.id) && s.status === "dispatched", 2000, "assignment");
    expect(pRoom.state.firstAiders.has(fa2.acc.id)).toBe(false);
    expect(pRoom.state.times.responderNotifiedAt).toBeGreaterThan(0);

    const faRoom = await join(h, fa1.acc.token, id);
    const crewRoom = await join(h, crew.acc.token, id);

    // live positions: each party sees each other party's move within one second
    const parties = [
      { name: "patient", room: pRoom, read: (s: any) => s.patient, base: SCENE },
      { name: "first-aider", room: faRoom, read: (s: any) => s.firstAiders.get(fa1.acc.id), base: offset(100) },
      { name: "ambulance", room: crewRoom, read: (s: any) => s.ambulance.get(crew.acc.id), base: offset(3000) },
    ];
    let worst = 0;
    for (let step = 1; step <= 3; step++) {
      for (const sender of parties) {
        const target = { lat: sender.base.lat - step * 0.0001234567, lng: sender.base.lng + step * 0.0000765432 };
        const seen = parties.filter((p) => p !== sender).map((p) =>
          waitFor(p.room, (s) => sender.read(s)?.lat === target.lat && sender.read(s)?.lng === target.lng, 1000, `${p.name} sees ${sender.name} move`));
        await sender.room.request("position", { ...target, accuracy: 8, heading: 90, speed: 3 });
        for (const ms of await Promise.all(seen)) worst = Math.max(worst, ms);
      }
    }
    console.log(`[haven] slowest position propagation to another party: ${worst} ms`);

    // on scene, assessment (ATMIST) raises priority and picks the hospital
    await faRoom.request("status", { step: "on_scene" });
    await waitFor(pRoom, (s) => s.status === "on_scene" && s.times.onSceneAt > 0, 2000, "on scene");
    const assessed = await faRoom.request("assessment", {
      age: 58, timeOfIncident: Date.now() - 600_000, mechanism: "collapsed at a bus stop, chest pain",
      injuries: ["none visible"], signs: { heartRate: 118, systolic: 92, diastolic: 60, spo2: 91, respiratoryRate: 24, gcs: 14, avpu: "voice" },
      treatment: ["aspirin 300 mg", "oxygen"], priority: "critical", suspected: ["cardiac"],
    });
    expect(assessed).toMatchObject({ ok: true, priority: "critical", hospitalId: "aga-khan" });
    await waitFor(pRoom, (s) => s.priority === "critical" && s.hospital.id === "aga-khan" && s.hospital.status === "notified", 2000, "hospital matched");
    expect(pRoom.state.hospital.score).toBeGreaterThan(0.9);
    expect(pRoom.state.hospital.distanceScore).toBeGreaterThan(0);

    // medical details reach the responders and the receiving hospital, never the patient's app
    await waitFor(faRoom, (s) => s.medical?.assessed === true && s.medical.signs.heartRate === 118, 2000, "fa medical");
    expect(pRoom.state.medical).toBeUndefined();
    const inc = () => wallboard.state.incoming.get(id);
    await waitFor(wallboard, () => inc()?.hospitalStatus === "notified" && inc()!.handoverSummary.includes("chest pain"), 2000, "wallboard notified");
    expect(inc()!.priority).toBe("critical");
    expect(inc()!.etaSeconds).toBeGreaterThan(0);

    // the hospital acknowledges and prepares
    await wallboard.request("acknowledge", { emergencyId: id });
    await waitFor(wallboard, () => inc()?.hospitalStatus === "acknowledged", 2000, "wallboard ack");
    await waitFor(pRoom, (s) => s.hospital.status === "acknowledged" && s.hospital.acknowledgedAt > 0, 2000, "patient sees ack");
    for (const key of ["team", "equipment", "bed"]) await wallboard.request("readiness", { emergencyId: id, key, ready: true });
    await wallboard.request("readiness", { emergencyId: id, key: "cath_lab", label: "Cath lab on standby", ready: true });
    await waitFor(wallboard, () => inc()!.readiness.size === 4 && [...inc()!.readiness.values()].every((r: any) => r.ready), 2000, "readiness");
    await waitFor(crewRoom, (s) => s.hospital.readiness.get("cath_lab")?.ready === true, 2000, "crew sees readiness");

    // transport with live ETA, arrival, handover
    await crewRoom.request("status", { step: "left_scene" });
    await waitFor(pRoom, (s) => s.status === "transporting" && s.times.leftSceneAt > 0, 2000, "transporting");
    await crewRoom.request("position", { lat: SCENE.lat + 0.02, lng: SCENE.lng });
    await waitFor(wallboard, () => inc()!.status === "transporting" && inc()!.etaSeconds > 100, 3000, "live eta on wallboard");
    await crewRoom.request("status", { step: "at_hospital" });
    await waitFor(pRoom, (s) => s.status === "at_hospital", 2000, "at hospital");

    const patientLeft = new Promise<number>((resolve) => pRoom.onLeave((code: number) => resolve(code)));
    await wallboard.request("handover", { emergencyId: id, notes: "received in resus 2" });
    await waitFor(wallboard, () => inc()?.hospitalStatus === "handed_over" && inc()!.handedOverAt > 0, 2000, "wallboard handover");
    await waitFor(pRoom, (s) => s.status === "handed_over", 2000, "patient sees handover");
    const t = pRoom.state.times;
    for (const k of ["callReceivedAt", "responderNotifiedAt", "enRouteAt", "onSceneAt", "leftSceneAt", "atHospitalAt", "handedOverAt"]) {
      expect(t[k], k).toBeGreaterThan(0);
    }
    expect(t.callReceivedAt).toBeLessThanOrEqual(t.responderNotifiedAt);
    expect(t.onSceneAt).toBeLessThanOrEqual(t.leftSceneAt);
    expect(t.atHospitalAt).toBeLessThanOrEqual(t.handedOverAt);
    const types = [...pRoom.state.timeline].map((e: any) => e.type);
    expect(types).toEqual(expect.arrayContaining(["call_received", "responder_assigned", "assessment_submitted", "hospital_matched", "hospital_acknowledged", "readiness_changed", "left_scene", "arrived_at_hospital", "handed_over"]));
    expect(await patientLeft).toBe(4410);

    // responders are free again and the patient may raise a new emergency
    await waitFor(fa1.duty, (s) => s.assignedTo === "", 2000, "fa1 released");
    const again = await h.http("POST", "/api/emergency/alert", SCENE, patient.token);
    expect(again.status).toBe(201);
    expect(again.body.emergencyId).not.toBe(id);
  });
});
