import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, login, startHaven, waitFor, type Account, type Haven } from "./harness.ts";

/**
 * The worked example of docs/protocol.md, run end to end against a real server. The code between
 * the protocol-example markers below is the code the document shows, character for character;
 * the first test checks that, the second runs it and checks what it produced.
 */

// <protocol-example>
import { Client, type Room } from "@colyseus/sdk";

/** Haven's REST API: JSON both ways, the access token as a bearer; a refusal throws with `reason = { code, message }`. */
export async function api<T = any>(base: string, method: string, path: string, body?: unknown, accessToken?: string): Promise<T> {
  const headers: Record<string, string> = {};
  if (accessToken) headers.authorization = `Bearer ${accessToken}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const answer: any = await res.json();
  if (!res.ok) throw Object.assign(new Error(`${res.status} ${answer.code}: ${answer.message}`), { reason: answer });
  return answer as T;
}

/** An SDK client that presents the token on matchmaking (Authorization) and on the socket upgrade (_authToken). */
export function connect(base: string, accessToken: string): Client {
  const client = new Client(base);
  client.auth.token = accessToken;
  return client;
}

/** Resolves with the room's state as soon as `predicate(state)` holds; checked after every patch. */
export function until<S = any>(room: Room<any, S>, predicate: (state: S) => boolean, timeoutMs = 10_000): Promise<S> {
  return new Promise((resolve, reject) => {
    let done = false;
    // the listener goes once the SDK has called every listener of this patch: removing it while
    // they run would make the SDK skip the next one (another pending until())
    const finish = () => { done = true; clearTimeout(timer); queueMicrotask(() => room.onStateChange.remove(check)); };
    const timer = setTimeout(() => { finish(); reject(new Error("timed out")); }, timeoutMs);
    function check(): void {
      if (done || room.state === undefined || !predicate(room.state)) return;
      finish();
      resolve(room.state);
    }
    room.onStateChange(check);
    check();
  });
}

export interface Credentials { email: string; password: string }

/** Alert to handover. One function here; in real life each party runs its part on its own device. */
export async function workedExample(base: string, who: { patient: Credentials; firstAider: Credentials; hospitalStaff: Credentials }) {
  const SCENE = { lat: -1.2620, lng: 36.8230 }; // next to the Aga Khan University Hospital, Nairobi

  // 1. Sign in: a 15-minute access token and a rotating refresh token.
  const patient = await api(base, "POST", "/api/auth/login", who.patient);
  const firstAider = await api(base, "POST", "/api/auth/login", who.firstAider);
  const staff = await api(base, "POST", "/api/auth/login", who.hospitalStaff);

  // 2. The hospital's wallboard: staff join `hospital-<hospitalId>` and keep it open.
  const wallboard = await connect(base, staff.accessToken).joinById(`hospital-${staff.user.hospitalId}`);

  // 3. A verified first-aider goes on duty and reports where they are (about 100 m north of the scene).
  const { roomId: dutyRoomId } = await api(base, "POST", "/api/duty", {}, firstAider.accessToken);
  const duty = await connect(base, firstAider.accessToken).joinById(dutyRoomId);
  duty.onMessage("offer_withdrawn", ({ offerId, reason }) => console.log(`offer ${offerId} withdrawn: ${reason}`));
  await duty.request("position", { lat: SCENE.lat + 0.0009, lng: SCENE.lng, accuracy: 10 }); // { ok: true }

  // 4. The patient raises the alert, then joins the emergency's room to follow it.
  const alert = await api(base, "POST", "/api/emergency/alert", { ...SCENE, accuracy: 15, priority: "high", note: "chest pain" }, patient.accessToken);
  // alert: { emergencyId, roomName: "emergency", created: true, bypass: false }
  const patientRoom = await connect(base, patient.accessToken).joinById(alert.emergencyId);
  let shown = "";
  patientRoom.onStateChange((s) => { if (s.status !== shown) console.log(`patient app: ${(shown = s.status)}`); });
  const patientClosed = new Promise<number>((resolve) => patientRoom.onLeave((code) => resolve(code)));

  // 5. The offer arrives in the duty room's state; the first-aider accepts it (first accept wins) and joins.
  const offered = await until(duty, (s) => [...s.offers.values()].some((o: any) => o.emergencyId === alert.emergencyId));
  const offer = [...offered.offers.values()].find((o: any) => o.emergencyId === alert.emergencyId);
  const accepted = await duty.request("accept_offer", { offerId: offer.id }); // { ok: true, emergencyId }
  const scene = await connect(base, firstAider.accessToken).joinById(accepted.emergencyId);

  // 6. Moving: a plain send. Nothing answers it unless it fails; a failure arrives as an "error" message.
  const sendErrors: { code: string; message: string; type: string }[] = [];
  scene.onMessage("error", (e) => sendErrors.push(e));
  scene.send("position", { lat: SCENE.lat + 0.0004, lng: SCENE.lng, heading: 180, speed: 1.4 });
  scene.send("position", { lat: 91, lng: SCENE.lng }); // out of range: { code: "INVALID_PAYLOAD", message, type: "position" }
  await until(patientRoom, (s) => s.firstAiders.get(firstAider.user.id)?.lat === SCENE.lat + 0.0004);

  // 7. A request resolves with the handler's answer, or rejects with err.reason = { code, message }.
  await scene.request("status", { step: "on_scene" }); // { ok: true, status: "on_scene" }
  const tooEarly = await scene.request("status", { step: "at_hospital" }).catch((err) => err.reason); // { code: "INVALID_TRANSITION", message }

  // 8. The assessment (ATMIST) picks and pre-notifies the hospital. With an idempotency key, a retry gets the first answer, marked `duplicate: true`.
  const assessment = {
    idempotencyKey: crypto.randomUUID(),
    age: 58, timeOfIncident: Date.now() - 10 * 60_000, mechanism: "collapsed at a bus stop, chest pain",
    injuries: ["none visible"], treatment: ["aspirin 300 mg", "oxygen"],
    signs: { heartRate: 118, systolic: 92, diastolic: 60, respiratoryRate: 24, spo2: 91, gcs: 14, avpu: "voice" },
    priority: "critical", suspected: ["cardiac"],
  };
  const assessed = await scene.request("assessment", assessment); // { ok: true, priority: "critical", hospitalId: "aga-khan" }
  const retried = await scene.request("assessment", assessment); // the same answer with duplicate: true; nothing is applied twice

  // 9. The wallboard sees the patient coming, acknowledges and gets ready.
  await until(wallboard, (s) => s.incoming.get(alert.emergencyId)?.hospitalStatus === "notified");
  const acknowledged = await wallboard.request("acknowledge", { emergencyId: alert.emergencyId, idempotencyKey: crypto.randomUUID() });
  // acknowledged: { ok: true, status: "acknowledged" }
  await wallboard.request("readiness", { emergencyId: alert.emergencyId, key: "cath_lab", label: "Cath lab on standby", ready: true });

  // 10. Transport and arrival (usually the ambulance crew's messages; any assigned responder may send them).
  await scene.request("status", { step: "left_scene" }); // { ok: true, status: "transporting" }
  await scene.request("status", { step: "at_hospital" }); // { ok: true, status: "at_hospital" }

  // 11. Handover closes the emergency; after a grace period every socket in its room is closed with 4410.
  const handedOver = await wallboard.request("handover", { emergencyId: alert.emergencyId, notes: "received in resus 2", idempotencyKey: crypto.randomUUID() });
  // handedOver: { ok: true, status: "handed_over" }
  await until(patientRoom, (s) => s.status === "handed_over");

  return { alert, accepted, sendErrors, tooEarly, assessed, retried, acknowledged, handedOver, patientClosed, firstAiderId: firstAider.user.id, rooms: { wallboard, duty, patientRoom, scene } };
}
// </protocol-example>

const PASSWORD = "protocol-example-password";
let h: Haven;
let ops: Account;

beforeAll(async () => {
  h = await startHaven({ HAVEN_CLOSE_GRACE_MS: "3000" });
  ops = await login(h, OPS.email, OPS.password);
});
afterAll(async () => { await h?.stop(); });

/** Registers an account with a known password (staff accounts are created by ops). */
async function register(role: string, extra: { hospitalId?: string } = {}, by?: Account): Promise<{ id: string; credentials: Credentials }> {
  const email = `${role}-${crypto.randomUUID().slice(0, 8)}@haven.test`;
  const r = await h.http("POST", "/api/auth/register", { email, password: PASSWORD, name: `${role} of the example`, role, ...extra }, by?.token);
  if (r.status !== 201) throw new Error(`register ${role}: ${r.status} ${JSON.stringify(r.body)}`);
  return { id: r.body.id, credentials: { email, password: PASSWORD } };
}

describe("docs/protocol.md worked example", () => {
  it("shows exactly the code this test runs", () => {
    const marker = (text: string, start: string, end: string) => {
      const from = text.indexOf(start);
      const to = text.indexOf(end);
      if (from < 0 || to < from) throw new Error(`markers ${start} … ${end} not found`);
      return text.slice(from + start.length, to);
    };
    const ours = marker(readFileSync(new URL(import.meta.url), "utf8"), "// <protocol-example>\n", "// </protocol-example>");
    const doc = marker(readFileSync(new URL("../docs/protocol.md", import.meta.url), "utf8"), "<!-- protocol-example:start -->", "<!-- protocol-example:end -->");
    const code = /^\s*```ts\n([\s\S]*?)```\s*$/.exec(doc)?.[1];
    expect(code, "the document's example is one ```ts block between the markers").toBeDefined();
    expect(code).toBe(ours);
  });

  it("until(): every wait pending on one room sees the change that satisfies it", async () => {
    const patient = await register("patient");
    const signedIn = await api(h.url, "POST", "/api/auth/login", patient.credentials);
    const at = { lat: -1.2701, lng: 36.8102 };
    const alert = await api(h.url, "POST", "/api/emergency/alert", at, signedIn.accessToken);
    const room = await connect(h.url, signedIn.accessToken).joinById<any>(alert.emergencyId);
    const moved = (s: any) => s.patient?.lat === at.lat + 1e-4;
    const waits = [until(room, moved, 3000), until(room, moved, 3000), until(room, moved, 3000)];
    await room.request("position", { lat: at.lat + 1e-4, lng: at.lng });
    expect((await Promise.all(waits)).map((s: any) => s.patient.lat)).toEqual([at.lat + 1e-4, at.lat + 1e-4, at.lat + 1e-4]);
    await room.leave();
  });

  it("runs alert to handover with a patient, a first-aider and a hospital wallboard", async () => {
    const patient = await register("patient");
    const firstAider = await register("first_aider");
    const verified = await h.http("POST", `/api/responders/${firstAider.id}/verification`, { verified: true }, ops.token);
    expect(verified.status).toBe(200);
    const staff = await register("hospital_staff", { hospitalId: "aga-khan" }, ops);

    const r = await workedExample(h.url, { patient: patient.credentials, firstAider: firstAider.credentials, hospitalStaff: staff.credentials });
    const id = r.alert.emergencyId as string;
    const { patientRoom, scene, wallboard, duty } = r.rooms;

    // the answers the document quotes
    expect(r.alert).toMatchObject({ roomName: "emergency", created: true, bypass: false });
    expect(r.accepted).toEqual({ ok: true, emergencyId: id });
    expect(r.sendErrors).toHaveLength(1);
    expect(r.sendErrors[0]).toMatchObject({ code: "INVALID_PAYLOAD", type: "position" });
    expect(r.tooEarly).toMatchObject({ code: "INVALID_TRANSITION" });
    expect(typeof r.tooEarly.message).toBe("string");
    expect(r.assessed).toEqual({ ok: true, priority: "critical", hospitalId: "aga-khan" });
    expect(r.retried).toEqual({ ...r.assessed, duplicate: true });
    expect(r.acknowledged).toEqual({ ok: true, status: "acknowledged" });
    expect(r.handedOver).toEqual({ ok: true, status: "handed_over" });

    // the emergency as its parties see it
    const s = patientRoom.state;
    expect(s.status).toBe("handed_over");
    expect(s.priority).toBe("critical");
    expect(s.hospital).toMatchObject({ id: "aga-khan", status: "acknowledged" });
    expect(s.firstAiders.get(r.firstAiderId)).toMatchObject({ role: "first_aider", lat: -1.2620 + 0.0004, heading: 180 });
    const types = [...s.timeline].map((e: any) => e.type);
    expect(types.filter((t) => t === "assessment_submitted")).toHaveLength(1); // the retry applied nothing
    expect(types).toEqual(expect.arrayContaining([
      "call_received", "responder_assigned", "on_scene", "assessment_submitted", "priority_changed", "hospital_matched",
      "hospital_acknowledged", "readiness_changed", "left_scene", "arrived_at_hospital", "handed_over",
    ]));
    for (const k of ["callReceivedAt", "responderNotifiedAt", "enRouteAt", "onSceneAt", "leftSceneAt", "atHospitalAt", "handedOverAt"]) {
      expect(s.times[k], k).toBeGreaterThan(0);
    }

    // medical details: the assigned first-aider sees them, the patient's app never does
    expect(s.medical).toBeUndefined();
    expect(scene.state.medical).toMatchObject({ assessed: true, age: 58, mechanism: "collapsed at a bus stop, chest pain" });
    expect(scene.state.medical.signs.heartRate).toBe(118);

    // the wallboard (its patches travel on their own socket, so they may land a little later)
    await waitFor(wallboard, (b) => b.incoming.get(id)?.hospitalStatus === "handed_over", 3000, "wallboard handover");
    const incoming = wallboard.state.incoming.get(id);
    expect(incoming).toMatchObject({ hospitalStatus: "handed_over", status: "handed_over", priority: "critical" });
    expect(incoming.handoverSummary).toContain("chest pain");
    expect(incoming.readiness.get("cath_lab")).toMatchObject({ label: "Cath lab on standby", ready: true });
    expect(incoming.handedOverAt).toBeGreaterThan(0);

    // the first-aider is free again, and the patient's socket is closed with 4410 after the grace period
    await waitFor(duty, (d) => d.assignedTo === "", 3000, "first-aider released");
    expect(await r.patientClosed).toBe(4410);

    await duty.leave();
    await wallboard.leave();
  });
});
