import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, account, join, login, onDuty, sleep, startHaven, until, waitFor, type Account, type Haven } from "./harness.ts";

/**
 * Escalation has an end: an emergency nobody accepted is escalated to operations after a bound,
 * and one with no activity for the idle bound is closed as `expired`, audited, its parties told
 * and its responders released; activity keeps it open.
 */
const IDLE_MS = 2500;
let h: Haven;
let ops: Account;
let sql: postgres.Sql;
beforeAll(async () => {
  h = await startHaven({
    HAVEN_ESCALATE_NO_RESPONDER_MS: "600", HAVEN_ESCALATE_NO_ACK_MS: "600", HAVEN_EMERGENCY_IDLE_EXPIRY_MS: String(IDLE_MS),
    HAVEN_CLOSE_GRACE_MS: "300", HAVEN_DISPATCH_WIDEN_INTERVAL_MS: "200", HAVEN_RECONNECT_WINDOW_SECONDS: "0",
  });
  ops = await login(h, OPS.email, OPS.password);
  sql = postgres(h.databaseUrl, { max: 1, onnotice: () => {} });
});
afterAll(async () => { await sql?.end({ timeout: 1 }); await h?.stop(); });

const audits = (id: string) => sql<{ action: string; actor: string; reason: string }[]>`
  select action, actor, reason from audit_log where emergency_id = ${id} order by seq`;

describe("escalation and expiry", () => {
  it("escalates an emergency nobody accepted to operations, then closes it as expired when idle, and a new alert is allowed", async () => {
    const patient = await account(h, "patient");
    // far from anyone on duty: dispatch widens to its limit and finds nobody
    const at = { lat: 3.1, lng: 35.6 };
    const alert = await h.http("POST", "/api/emergency/alert", at, patient.token);
    const id = alert.body.emergencyId as string;
    const room = await join(h, patient.token, id);
    const opsRoom = await join(h, ops.token, id);
    const closed = new Promise<number>((r) => room.onLeave((code: number) => r(code)));

    await waitFor(opsRoom, (st) => [...st.timeline].some((e: any) => e.type === "escalated"), 3000, "escalated to operations");
    const escalation = [...opsRoom.state.timeline].find((e: any) => e.type === "escalated") as any;
    expect(escalation.detail).toMatch(/^no_responder: no first_aider or ambulance_crew accepted/);
    // the log line travels through the server's stdout: it may arrive a moment after the patch
    await until(() => h.logs.join("").includes("emergency escalated to operations"), 3000, "the escalation logged");
    expect(opsRoom.state.status).toBe("alerted");

    // nothing happens: it expires, everyone is told, and it is closed
    await waitFor(opsRoom, (st) => st.status === "expired", IDLE_MS + 3000, "expired");
    expect([...opsRoom.state.timeline].some((e: any) => e.type === "expired")).toBe(true);
    expect(await closed).toBe(4410);
    const [row] = await sql`select status, closed_at from emergencies where id = ${id}`;
    expect(row.status).toBe("expired");
    expect(row.closed_at).not.toBeNull();
    let actions: string[] = [];
    for (let i = 0; i < 20 && !actions.includes("emergency.expired"); i++) {
      actions = (await audits(id)).map((a) => a.action);
      if (!actions.includes("emergency.expired")) await sleep(100);
    }
    expect(actions).toEqual(expect.arrayContaining(["emergency.escalated", "emergency.expired"]));
    const events = await sql`select type from emergency_events where emergency_id = ${id}`;
    expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(["escalated", "expired"]));
    // the patient may alert again
    const again = await h.http("POST", "/api/emergency/alert", at, patient.token);
    expect(again.status).toBe(201);
    expect(again.body.emergencyId).not.toBe(id);
  });

  it("activity keeps an emergency open past the idle bound; once it stops, the emergency expires and its responder is released", async () => {
    const at = { lat: -1.2864, lng: 36.8172 };
    const fa = await onDuty(h, ops, "first_aider", { lat: at.lat + 0.0005, lng: at.lng });
    const patient = await account(h, "patient");
    const alert = await h.http("POST", "/api/emergency/alert", at, patient.token);
    const id = alert.body.emergencyId as string;
    await waitFor(fa.duty, (s) => [...s.offers.values()].some((o: any) => o.emergencyId === id), 3000, "offer");
    await fa.duty.request("accept_offer", { offerId: ([...fa.duty.state.offers.values()].find((o: any) => o.emergencyId === id) as any).id });
    const room = await join(h, patient.token, id);
    const startedAt = Date.now();
    while (Date.now() - startedAt < IDLE_MS * 1.6) {
      await room.request("position", { lat: at.lat + Math.random() * 1e-5, lng: at.lng });
      await sleep(400);
    }
    expect(room.state.status).not.toBe("expired");
    await waitFor(fa.duty, (s) => s.assignedTo === id, 1000, "still assigned");
    // silence: it expires and the responder is free again
    await waitFor(fa.duty, (s) => s.assignedTo === "", IDLE_MS + 3000, "the responder is released");
    const [row] = await sql`select status from emergencies where id = ${id}`;
    expect(row.status).toBe("expired");
  });
});
