import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, account, join, login, onDuty, startHaven, until, waitFor, type Account, type Haven } from "./harness.ts";

/**
 * Every event of an emergency's timeline reaches `emergency_events`, including those raised
 * outside a critical change (dispatch widening, offers declined or timed out, responders notified,
 * hospital re-alerts), so the EMS times of a finished emergency can be rebuilt from the database
 * alone.
 */
let h: Haven;
let ops: Account;
let sql: postgres.Sql;
beforeAll(async () => {
  h = await startHaven({
    HAVEN_OFFER_TIMEOUT_MS: "800", HAVEN_DISPATCH_WIDEN_INTERVAL_MS: "300", HAVEN_HOSPITAL_REALERT_INTERVAL_MS: "300", HAVEN_CLOSE_GRACE_MS: "60000",
  });
  ops = await login(h, OPS.email, OPS.password);
  sql = postgres(h.databaseUrl, { max: 1, onnotice: () => {} });
});
afterAll(async () => { await sql?.end({ timeout: 1 }); await h?.stop(); });

const north = (at: { lat: number; lng: number }, m: number) => ({ lat: at.lat + m / 111_320, lng: at.lng });
const offersOf = (duty: any, id: string) => [...duty.state.offers.values()].filter((o: any) => o.emergencyId === id) as any[];

/** The EMS times as rebuilt from the timeline rows alone. */
function timesFrom(rows: { type: string; at: Date }[]) {
  const first = (...types: string[]) => {
    const hit = rows.filter((r) => types.includes(r.type)).map((r) => r.at.getTime());
    return hit.length > 0 ? Math.min(...hit) : 0;
  };
  return {
    callReceivedAt: first("call_received"),
    responderNotifiedAt: first("responders_notified"),
    enRouteAt: first("responder_assigned", "en_route"),
    onSceneAt: first("on_scene"),
    leftSceneAt: first("left_scene"),
    atHospitalAt: first("arrived_at_hospital", "handed_over"),
    handedOverAt: first("handed_over"),
  };
}

describe("the durable timeline", () => {
  it("holds every event of a finished emergency, and its EMS times rebuild from the database alone", async () => {
    const at = { lat: -1.2864, lng: 36.8172 };
    const decliner = await onDuty(h, ops, "first_aider", north(at, 100));
    const silent = await onDuty(h, ops, "first_aider", north(at, 150));
    const patient = await account(h, "patient");
    const alert = await h.http("POST", "/api/emergency/alert", at, patient.token);
    const id = alert.body.emergencyId as string;
    const pRoom = await join(h, patient.token, id);

    // one first-aider declines, the other lets the offer time out; the dispatch widens
    await until(() => offersOf(decliner.duty, id).length === 1 && offersOf(silent.duty, id).length === 1, 3000, "both offered");
    await decliner.duty.request("decline_offer", { offerId: offersOf(decliner.duty, id)[0].id, reason: "busy" });
    await waitFor(pRoom, (st) => [...st.timeline].some((e: any) => e.type === "offer_timed_out"), 3000, "an offer timed out");
    await waitFor(pRoom, (st) => [...st.timeline].some((e: any) => e.type === "radius_widened"), 3000, "the radius widened");
    // then someone accepts, and an ambulance too
    const fa = await onDuty(h, ops, "first_aider", north(at, 300));
    await until(() => offersOf(fa.duty, id).length === 1, 5000, "the new first-aider offered");
    await fa.duty.request("accept_offer", { offerId: offersOf(fa.duty, id)[0].id });
    const crew = await onDuty(h, ops, "ambulance_crew", north(at, 900));
    await until(() => offersOf(crew.duty, id).length === 1, 5000, "crew offered");
    await crew.duty.request("accept_offer", { offerId: offersOf(crew.duty, id)[0].id });
    const faRoom = await join(h, fa.acc.token, id);
    const crewRoom = await join(h, crew.acc.token, id);
    await faRoom.request("status", { step: "on_scene" });
    await faRoom.request("assessment", { mechanism: "fall", injuries: ["wrist"], treatment: ["splint"], suspected: ["trauma"] });
    // the hospital is re-alerted until it acknowledges
    await waitFor(pRoom, (st) => st.hospital.alerts >= 2, 3000, "the hospital re-alerted");
    const hospitalId = pRoom.state.hospital.id;
    const staff = await account(h, "hospital_staff", { hospitalId, by: ops });
    const board = await join(h, staff.token, `hospital-${hospitalId}`);
    await waitFor(board, (st) => st.incoming.has(id), 3000, "on the wallboard");
    await board.request("acknowledge", { emergencyId: id });
    await crewRoom.request("status", { step: "left_scene" });
    await crewRoom.request("status", { step: "at_hospital" });
    await board.request("handover", { emergencyId: id, notes: "stable" });
    await waitFor(pRoom, (st) => st.status === "handed_over", 2000, "handed over");

    const seen = [...pRoom.state.timeline].map((e: any) => ({ seq: e.seq, type: e.type, actor: e.actor, at: e.at }));
    for (const type of ["responders_notified", "offer_declined", "offer_timed_out", "radius_widened", "hospital_realerted"]) {
      expect(seen.map((e) => e.type), type).toContain(type);
    }
    const times = { ...pRoom.state.times.toJSON() };

    // every event the parties saw is in the database, once, with its time (the flusher writes
    // those raised outside a critical change within its 2 s interval)
    let rows: { seq: number; type: string; actor: string; at: Date }[] = [];
    for (let i = 0; i < 40; i++) {
      rows = await sql`select seq, type, actor, at from emergency_events where emergency_id = ${id} order by seq`;
      if (seen.every((e) => rows.some((r) => r.seq === e.seq))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(rows.map((r) => ({ seq: r.seq, type: r.type, actor: r.actor, at: r.at.getTime() }))).toEqual(expect.arrayContaining(seen));
    expect(new Set(rows.map((r) => r.seq)).size).toBe(rows.length);
    expect(timesFrom(rows)).toEqual(times);
  });
});
