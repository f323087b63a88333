import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { OPS, account, join, login, onDuty, rejection, scenario, sdk, sleep, startHaven, waitFor, type Account, type Haven } from "./harness.ts";

/** The operations desk on one node: who may join, what it shows, and its audited actions. */
let h: Haven;
let ops: Account;
beforeAll(async () => {
  h = await startHaven({ HAVEN_OPS_REFRESH_MS: "200", HAVEN_OPS_ACCEPT_WAIT_MS: "400", HAVEN_OPS_ACK_WAIT_MS: "400" });
  ops = await login(h, OPS.email, OPS.password);
});
afterAll(async () => { await h?.stop(); });

/**
 * Nairobi CBD and two spots 7–9 km from it (each test's responders are the nearest to its own
 * emergency: released responders of an earlier test stay on duty where they were), and a spot
 * 30 km north-east (beyond a first-aider's widest search).
 */
const CBD = { lat: -1.2860, lng: 36.8200 };
const KASARANI = { lat: -1.2300, lng: 36.8800 };
const KAREN = { lat: -1.3300, lng: 36.7600 };
const EMBAKASI = { lat: -1.3100, lng: 36.9000 };
const FAR = { lat: -1.0500, lng: 37.0200 };

async function joinError(token: string, roomId: string): Promise<{ code: number; message: string }> {
  try {
    const room = await sdk(h, token).joinById(roomId);
    await room.leave();
  } catch (e: any) {
    return { code: e.code, message: String(e.message) };
  }
  throw new Error("the join was not refused");
}

interface AuditRow { actor: string; actor_role: string; action: string; emergency_id: string | null; reason: string; outcome: string; at: Date }

async function auditOf(action: string): Promise<AuditRow[]> {
  const sql = postgres(h.databaseUrl, { max: 1, onnotice: () => {} });
  try {
    return await sql<AuditRow[]>`select actor, actor_role, action, emergency_id::text as emergency_id, reason, outcome, at from audit_log where action = ${action} order by seq`;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

describe("the ops room", () => {
  it("refuses every role but ops_admin at the join with 4403 NOT_ENTITLED", async () => {
    const admin = await account(h, "hospital_admin", { hospitalId: "knh", by: ops });
    const who = [
      await account(h, "patient"),
      await account(h, "first_aider"),
      await account(h, "ambulance_crew"),
      admin,
      await account(h, "hospital_staff", { hospitalId: "knh", by: admin }),
    ];
    for (const a of who) {
      const refused = await joinError(a.token, "ops");
      expect(refused.code, a.role).toBe(4403);
      expect(refused.message, a.role).toMatch(/^NOT_ENTITLED/);
    }
    const desk = await join(h, ops.token, "ops");
    expect(desk.state.acceptWaitMs).toBe(400);
    await desk.leave();
  });

  it("shows the node, every open emergency with its age, the unit board and the hospitals; a wait past the threshold is highlighted", async () => {
    const desk = await join(h, ops.token, "ops");
    const s = await scenario(h, ops, CBD);
    const idle = await onDuty(h, ops, "first_aider", FAR);
    const lonely = await account(h, "patient");
    const alone = (await h.http("POST", "/api/emergency/alert", { ...FAR, lat: FAR.lat + 0.2, priority: "critical" }, lonely.token)).body.emergencyId as string;

    await waitFor(desk, (st) => st.emergencies.has(s.id) && st.emergencies.has(alone), 5000, "both emergencies on the desk");
    const node = [...desk.state.nodes.values()][0];
    expect(desk.state.nodes.size).toBe(1);
    await waitFor(desk, () => node.alive && node.reportedAt > 0 && node.emergencies >= 2, 3000, "the node and its load");
    expect(node.clients).toBeGreaterThan(0);

    const e = desk.state.emergencies.get(s.id);
    expect(e).toMatchObject({ status: "dispatched", priority: "high", hospitalStatus: "none", waitingAccept: false });
    expect([...e.firstAiders]).toEqual([s.fa.acc.id]);
    expect([...e.ambulance]).toEqual([s.crew.acc.id]);
    // nobody accepted the lonely one: highlighted once it is older than the threshold
    await waitFor(desk, (st) => st.emergencies.get(alone)?.waitingAccept === true, 3000, "an unaccepted emergency highlighted");
    expect(desk.state.emergencies.get(alone)).toMatchObject({ status: "alerted", priority: "critical" });
    await waitFor(desk, (st) => st.emergencies.get(alone).ageSeconds >= 1, 3000, "time since the alert");

    // the unit board: assigned responders, and an idle one available
    await waitFor(desk, (st) => st.units.get(s.fa.acc.id)?.status === "assigned" && st.units.get(idle.acc.id)?.status === "available", 3000, "unit board");
    expect(desk.state.units.get(s.fa.acc.id)).toMatchObject({ kind: "first_aider", assignedTo: s.id, online: true });
    expect(desk.state.units.get(idle.acc.id)).toMatchObject({ lat: FAR.lat, lng: FAR.lng, assignedTo: "" });

    // the hospital acknowledges late: the wait is highlighted on the desk, and the hospital counts it as incoming
    await s.faRoom.request("assessment", { mechanism: "fall", injuries: ["hip"], treatment: [] });
    await waitFor(s.pRoom, (st) => st.hospital.status === "notified", 3000, "a hospital notified");
    const hospitalId = s.pRoom.state.hospital.id;
    await waitFor(desk, (st) => st.emergencies.get(s.id)?.hospitalId === hospitalId && st.emergencies.get(s.id).waitingAck === true, 3000, "an unacknowledged hospital highlighted");
    await waitFor(desk, (st) => st.hospitals.get(hospitalId)?.incoming >= 1, 3000, "the hospital's incoming count");
    expect(desk.state.hospitals.size).toBeGreaterThanOrEqual(8);
    expect(desk.state.hospitals.get("knh")).toMatchObject({ name: "Kenyatta National Hospital", accepting: true, divertActive: false });

    // a closed emergency leaves the desk
    await s.pRoom.request("cancel", { reason: "false_alarm" });
    await waitFor(desk, (st) => !st.emergencies.has(s.id), 3000, "the cancelled emergency gone");
    await desk.leave();
    await idle.duty.leave();
  });
});

describe("the desk's actions", () => {
  it("open, reassign_hospital, assign_responder, cancel: each done by the emergency's engine and audited with who, what and why", async () => {
    const desk = await join(h, ops.token, "ops");
    const s = await scenario(h, ops, KASARANI);
    await s.faRoom.request("assessment", { mechanism: "fall", injuries: ["hip"], treatment: [] });
    await waitFor(s.pRoom, (st) => st.hospital.status === "notified", 3000, "a hospital notified");
    const first = s.pRoom.state.hospital.id as string;
    const other = first === "mbagathi" ? "mama-lucy" : "mbagathi";

    // open
    expect(await desk.request("open", { emergencyId: s.id, reason: "checking on a long call" })).toEqual({ ok: true, emergencyId: s.id, roomId: s.id });
    const watch = await join(h, ops.token, s.id);
    expect(watch.state.medical).toBeUndefined();

    // reassign the hospital: the first one's wallboard loses the card, the new one is notified
    const staff = await account(h, "hospital_admin", { hospitalId: other, by: ops });
    const board = await join(h, staff.token, `hospital-${other}`);
    const r = await desk.request("reassign_hospital", { emergencyId: s.id, hospitalId: other, reason: "cath lab at the other site", idempotencyKey: "reassign-0001" });
    expect(r).toMatchObject({ ok: true, hospitalId: other, hospitalStatus: "notified" });
    await waitFor(s.pRoom, (st) => st.hospital.id === other && st.hospital.status === "notified", 3000, "the patient bound for the new hospital");
    await waitFor(board, (st) => st.incoming.has(s.id), 3000, "the new hospital's wallboard shows it");
    expect([...s.pRoom.state.timeline].some((ev: any) => ev.type === "hospital_reassigned" && ev.actor === `ops_admin:${ops.id}` && ev.detail === `${first} -> ${other}`)).toBe(true);
    // a retry with the same key is answered as the first and applies nothing twice
    expect(await desk.request("reassign_hospital", { emergencyId: s.id, hospitalId: other, reason: "cath lab at the other site", idempotencyKey: "reassign-0001" })).toMatchObject({ ok: true, duplicate: true });

    // assign a responder by hand: one far beyond dispatch's reach
    const lonely = await account(h, "patient");
    const alone = (await h.http("POST", "/api/emergency/alert", FAR, lonely.token)).body.emergencyId as string;
    const far = await onDuty(h, ops, "first_aider", { lat: FAR.lat - 0.25, lng: FAR.lng });
    const a = await desk.request("assign_responder", { emergencyId: alone, responderId: far.acc.id, reason: "nearest trained person, called by phone" });
    expect(a).toEqual({ ok: true, emergencyId: alone });
    await waitFor(far.duty, (st) => st.assignedTo === alone, 3000, "the duty room assigned");
    const aloneRoom = await join(h, lonely.token, alone);
    await waitFor(aloneRoom, (st) => st.firstAiders.has(far.acc.id) && st.status === "dispatched", 3000, "the responder a party");
    const responderRoom = await join(h, far.acc.token, alone);
    expect(responderRoom.state.status).toBe("dispatched");
    // a second assignment of the same responder is refused
    expect(await rejection(desk.request("assign_responder", { emergencyId: s.id, responderId: far.acc.id, reason: "again" }))).toMatchObject({ code: "ALREADY_ASSIGNED" });

    // cancel
    expect(await desk.request("cancel", { emergencyId: alone, cancelReason: "other", reason: "handled by county ambulance" })).toEqual({ ok: true, status: "cancelled" });
    await waitFor(aloneRoom, (st) => st.status === "cancelled", 3000, "cancelled");
    const cancelled = [...aloneRoom.state.timeline].find((ev: any) => ev.type === "cancelled") as any;
    expect(cancelled).toMatchObject({ actor: `ops_admin:${ops.id}`, detail: "other: handled by county ambulance" });

    // every action in the audit log: who, what, when, why, outcome
    const before = Date.now() - 60_000;
    const [opened] = await auditOf("ops.open");
    expect(opened).toMatchObject({ actor: ops.id, actor_role: "ops_admin", emergency_id: s.id, reason: "checking on a long call", outcome: "ok" });
    expect(opened.at.getTime()).toBeGreaterThan(before);
    const reassigned = await auditOf("ops.reassign_hospital");
    expect(reassigned[0]).toMatchObject({ actor: ops.id, actor_role: "ops_admin", emergency_id: s.id, reason: `to ${other}: cath lab at the other site`, outcome: "ok" });
    const assigned = await auditOf("ops.assign_responder");
    expect(assigned[0]).toMatchObject({ actor: ops.id, emergency_id: alone, reason: `responder ${far.acc.id}: nearest trained person, called by phone`, outcome: "ok" });
    expect(assigned[1]).toMatchObject({ actor: ops.id, emergency_id: s.id, outcome: "denied" });
    expect(assigned[1].reason).toMatch(new RegExp(`^responder ${far.acc.id}; ALREADY_ASSIGNED: again$`));
    const [cancelRow] = await auditOf("ops.cancel");
    expect(cancelRow).toMatchObject({ actor: ops.id, actor_role: "ops_admin", emergency_id: alone, reason: "other: handled by county ambulance", outcome: "ok" });

    for (const room of [desk, watch, board, aloneRoom, responderRoom, far.duty]) await room.leave().catch(() => {});
  });

  it("a notice reaches the connected parties and duty sockets in its region, and only them; everyone when it has none", async () => {
    const desk = await join(h, ops.token, "ops");
    const inside = await scenario(h, ops, KAREN);
    const outsider = await account(h, "patient");
    const outId = (await h.http("POST", "/api/emergency/alert", FAR, outsider.token)).body.emergencyId as string;
    const outRoom = await join(h, outsider.token, outId);
    const farDuty = await onDuty(h, ops, "first_aider", { lat: FAR.lat + 0.1, lng: FAR.lng });

    const got = { patient: [] as any[], crew: [] as any[], fa: [] as any[], outside: [] as any[], farDuty: [] as any[] };
    inside.pRoom.onMessage("notice", (m) => got.patient.push(m));
    inside.crewRoom.onMessage("notice", (m) => got.crew.push(m));
    inside.fa.duty.onMessage("notice", (m) => got.fa.push(m));
    outRoom.onMessage("notice", (m) => got.outside.push(m));
    farDuty.duty.onMessage("notice", (m) => got.farDuty.push(m));

    const region = { lat: KAREN.lat, lng: KAREN.lng, radiusM: 3000 };
    const answer = await desk.request("notice", { text: "Flooding on Uhuru Highway: use Waiyaki Way", reason: "traffic police report", region });
    expect(answer).toMatchObject({ ok: true });
    await sleep(300);
    expect(got.patient).toEqual([{ id: answer.noticeId, text: "Flooding on Uhuru Highway: use Waiyaki Way", at: expect.any(Number), region }]);
    expect(got.fa.map((m) => m.id)).toEqual([answer.noticeId]);
    expect(got.crew.map((m) => m.id)).toEqual([answer.noticeId]);
    expect(got.outside).toEqual([]);
    expect(got.farDuty).toEqual([]);

    const all = await desk.request("notice", { text: "Radio check at 18:00", reason: "shift change" });
    await sleep(300);
    expect(got.outside.map((m) => m.id)).toEqual([all.noticeId]);
    expect(got.farDuty.map((m) => m.id)).toEqual([all.noticeId]);
    expect(got.patient.map((m) => m.id)).toEqual([answer.noticeId, all.noticeId]);

    const rows = await auditOf("ops.notice");
    expect(rows.map((r) => [r.actor, r.outcome, r.reason])).toEqual([
      [ops.id, "ok", `region ${KAREN.lat},${KAREN.lng} r 3000 m: traffic police report`],
      [ops.id, "ok", "everyone: shift change"],
    ]);
    for (const room of [desk, outRoom, farDuty.duty, inside.pRoom, inside.faRoom, inside.crewRoom]) await room.leave().catch(() => {});
  });

  it("bad input is refused with a stable code and changes nothing: no reason, unknown fields, unknown hospital or emergency", async () => {
    const desk = await join(h, ops.token, "ops");
    const s = await scenario(h, ops, EMBAKASI);
    const before = (await auditOf("ops.reassign_hospital")).length;
    const noReason = await rejection(desk.request("reassign_hospital", { emergencyId: s.id, hospitalId: "knh" }));
    expect(noReason.code).toBe("INVALID_PAYLOAD");
    expect((noReason as any).details[0].field).toBe("reason");
    expect((await rejection(desk.request("cancel", { emergencyId: s.id, cancelReason: "other", reason: "   " }))).code).toBe("INVALID_PAYLOAD");
    expect((await rejection(desk.request("cancel", { emergencyId: s.id, cancelReason: "bored", reason: "x" }))).code).toBe("INVALID_PAYLOAD");
    expect((await rejection(desk.request("notice", { text: "x", reason: "y", region: { lat: 0, lng: 0 } }))).code).toBe("INVALID_PAYLOAD");
    expect((await rejection(desk.request("notice", { text: "x", reason: "y", extra: 1 }))).code).toBe("INVALID_PAYLOAD");
    expect((await rejection(desk.request("open", { emergencyId: s.id, reason: "x".repeat(201) }))).code).toBe("INVALID_PAYLOAD");
    expect((await rejection(desk.request("launch", { reason: "x" }))).code).toBe("UNKNOWN_MESSAGE");
    expect((await auditOf("ops.reassign_hospital")).length).toBe(before);
    expect((await auditOf("ops.cancel")).filter((r) => r.emergency_id === s.id)).toEqual([]);

    // well-formed but naming nothing: refused, and the refusal audited
    expect((await rejection(desk.request("reassign_hospital", { emergencyId: s.id, hospitalId: "nowhere", reason: "test" }))).code).toBe("HOSPITAL_NOT_FOUND");
    expect((await rejection(desk.request("open", { emergencyId: "00000000-0000-4000-8000-000000000000", reason: "test" }))).code).toBe("EMERGENCY_NOT_FOUND");
    expect((await rejection(desk.request("assign_responder", { emergencyId: s.id, responderId: "not-on-duty", reason: "test" }))).code).toBe("RESPONDER_NOT_ON_DUTY");
    const denied = (await auditOf("ops.reassign_hospital")).at(-1)!;
    expect(denied).toMatchObject({ actor: ops.id, outcome: "denied", reason: "to nowhere; HOSPITAL_NOT_FOUND: test" });
    expect(s.pRoom.state.status).toBe("dispatched");
    for (const room of [desk, s.pRoom, s.faRoom, s.crewRoom]) await room.leave().catch(() => {});
  });
});
