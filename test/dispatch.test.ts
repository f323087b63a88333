import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, account, join, login, nextMessage, onDuty, startHaven, until, waitFor, type Account, type Haven } from "./harness.ts";

/** Dispatch policy, duplicate alerts and cancellation, against a real server. */
let h: Haven;
let ops: Account;
beforeAll(async () => {
  h = await startHaven({ HAVEN_OFFER_TIMEOUT_MS: "1500", HAVEN_DISPATCH_WIDEN_INTERVAL_MS: "300", HAVEN_CLOSE_GRACE_MS: "300" });
  ops = await login(h, OPS.email, OPS.password);
});
afterAll(async () => { await h?.stop(); });

const north = (at: { lat: number; lng: number }, m: number) => ({ lat: at.lat + m / 111_320, lng: at.lng });
const offersOf = (duty: any, id: string) => [...duty.state.offers.values()].filter((o: any) => o.emergencyId === id) as any[];

async function alert(at: { lat: number; lng: number }) {
  const patient = await account(h, "patient");
  const r = await h.http("POST", "/api/emergency/alert", at, patient.token);
  expect(r.status).toBe(201);
  return { patient, id: r.body.emergencyId as string };
}

describe("dispatch", () => {
  it("offers the 3 nearest first-aiders in an urban area; a decline and a timeout are replaced by the next nearest, widening when nobody is left", async () => {
    const CBD = { lat: -1.2864, lng: 36.8172 }; // Nairobi: urban, 500 m first radius
    const fa: Awaited<ReturnType<typeof onDuty>>[] = [];
    for (const m of [100, 200, 300, 400, 700]) fa.push(await onDuty(h, ops, "first_aider", north(CBD, m)));
    const { id } = await alert(CBD);
    const room = await join(h, ops.token, id);

    await until(() => fa.slice(0, 3).every((r) => offersOf(r.duty, id).length === 1), 3000, "3 nearest offered");
    expect(offersOf(fa[3].duty, id)).toHaveLength(0);
    expect(offersOf(fa[4].duty, id)).toHaveLength(0);
    expect(room.state.dispatch.firstAiderRadiusM).toBe(500);

    // the nearest declines: the next nearest (400 m) is offered
    await fa[0].duty.request("decline_offer", { offerId: offersOf(fa[0].duty, id)[0].id, reason: "busy" });
    await until(() => offersOf(fa[3].duty, id).length === 1, 3000, "400 m offered after the decline");
    expect(offersOf(fa[4].duty, id)).toHaveLength(0);

    // nobody answers: the offers time out, are withdrawn, and with nobody left within 500 m the radius widens to reach 700 m
    const timedOut = offersOf(fa[1].duty, id)[0].id;
    const withdrawn = nextMessage(fa[1].duty, "offer_withdrawn", 4000);
    expect((await withdrawn).reason).toBe("timeout");
    await until(() => offersOf(fa[4].duty, id).length === 1, 4000, "700 m offered after widening");
    await waitFor(room, (s) => s.dispatch.firstAiderRadiusM >= 1000, 2000, "radius widened past 700 m");
    const types = [...room.state.timeline].map((e: any) => e.type);
    expect(types).toContain("offer_declined");
    expect(types).toContain("offer_timed_out");
    expect(types).toContain("radius_widened");
    // a declined responder is never offered the same emergency again
    expect(offersOf(fa[0].duty, id)).toHaveLength(0);

    // first accept wins; the others' offers are withdrawn, and accepting one of those later is refused
    const winner = fa[4];
    await winner.duty.request("accept_offer", { offerId: offersOf(winner.duty, id)[0].id });
    await waitFor(room, (s) => s.firstAiders.has(winner.acc.id) && s.status === "dispatched", 2000, "assigned");
    await until(() => fa.every((r) => offersOf(r.duty, id).length === 0), 3000, "all other offers withdrawn");
    await expect(fa[1].duty.request("accept_offer", { offerId: timedOut })).rejects.toMatchObject({ reason: { code: "OFFER_EXPIRED" } });
    await room.leave();
    for (const r of fa) await r.duty.leave();
  });

  it("in a rural area starts at 1 km, widens when nobody is left, and keeps searching until someone comes on duty", async () => {
    // one offer at a time, so that each widening is visible on its own
    const single = await startHaven({ HAVEN_OFFER_TIMEOUT_MS: "5000", HAVEN_DISPATCH_WIDEN_INTERVAL_MS: "300", HAVEN_DISPATCH_FIRST_AIDER_OFFERS: "1" });
    try {
      const o = await login(single, OPS.email, OPS.password);
      const FARM = { lat: -0.9000, lng: 37.5000 }; // rural Kenya: 1 km first radius
      const near = await onDuty(single, o, "first_aider", north(FARM, 800));
      const distant = await onDuty(single, o, "first_aider", north(FARM, 1500));
      const patient = await account(single, "patient");
      const id = (await single.http("POST", "/api/emergency/alert", FARM, patient.token)).body.emergencyId as string;
      const room = await join(single, patient.token, id);
      await until(() => offersOf(near.duty, id).length === 1, 3000, "800 m offered");
      expect(room.state.dispatch.firstAiderRadiusM).toBe(1000);
      expect(offersOf(distant.duty, id)).toHaveLength(0);
      await near.duty.request("decline_offer", { offerId: offersOf(near.duty, id)[0].id });
      await until(() => offersOf(distant.duty, id).length === 1, 3000, "1.5 km offered");
      await waitFor(room, (s) => s.dispatch.firstAiderRadiusM === 2000, 2000, "radius doubled to 2 km");
      await distant.duty.request("decline_offer", { offerId: offersOf(distant.duty, id)[0].id });
      // nobody left within the 8 km maximum: dispatch keeps searching at the interval
      await waitFor(room, (s) => s.dispatch.firstAiderRadiusM === 8000 && s.dispatch.searching, 3000, "max radius, still searching");
      const newcomer = await onDuty(single, o, "first_aider", north(FARM, 300));
      await until(() => offersOf(newcomer.duty, id).length === 1, 3000, "newcomer offered on retry");
      expect(offersOf(near.duty, id)).toHaveLength(0);
    } finally {
      await single.stop();
    }
  });
});

describe("duplicate alerts and cancel", () => {
  const TOWN = { lat: -0.0917, lng: 34.7680 }; // Kisumu

  it("a second alert by the same patient, even concurrent, returns the first emergency", async () => {
    const patient = await account(h, "patient");
    const [r1, r2] = await Promise.all([
      h.http("POST", "/api/emergency/alert", TOWN, patient.token),
      h.http("POST", "/api/emergency/alert", TOWN, patient.token),
    ]);
    expect(r1.body.emergencyId).toBe(r2.body.emergencyId);
    expect([r1.status, r2.status].sort()).toEqual([200, 201]);
    const r3 = await h.http("POST", "/api/emergency/alert", north(TOWN, 50), patient.token);
    expect(r3.status).toBe(200);
    expect(r3.body).toMatchObject({ emergencyId: r1.body.emergencyId, created: false });
  });

  it("the patient cancels: offers are withdrawn, responders released, parties told, and a new alert is allowed", async () => {
    const fa1 = await onDuty(h, ops, "first_aider", north(TOWN, 5000));
    const fa2 = await onDuty(h, ops, "first_aider", north(TOWN, 5100));
    const at = north(TOWN, 5050);
    const { id, patient } = await alert(at);
    await until(() => offersOf(fa1.duty, id).length === 1 && offersOf(fa2.duty, id).length === 1, 3000, "offers");
    await fa1.duty.request("accept_offer", { offerId: offersOf(fa1.duty, id)[0].id });
    const pRoom = await join(h, patient.token, id);
    const faRoom = await join(h, fa1.acc.token, id);
    const faLeft = new Promise<number>((r) => faRoom.onLeave((code: number) => r(code)));
    await waitFor(fa1.duty, (s) => s.assignedTo === id, 2000, "assigned");
    // the first-aider moves on, reporting only to the emergency room
    const farAway = north(TOWN, 20_000);
    await faRoom.request("position", farAway);

    const res = await pRoom.request("cancel", { reason: "false_alarm", note: "I am fine" });
    expect(res).toMatchObject({ ok: true, status: "cancelled" });
    await waitFor(faRoom, (s) => s.status === "cancelled", 1000, "first-aider sees cancel");
    await until(() => offersOf(fa2.duty, id).length === 0, 2000, "outstanding offer withdrawn");
    await waitFor(fa1.duty, (s) => s.assignedTo === "", 2000, "first-aider released");
    expect(await faLeft).toBe(4410);
    // released, the first-aider is dispatchable again where the emergency last saw them
    const next = await alert(north(farAway, 50));
    await until(() => offersOf(fa1.duty, next.id).length === 1, 3000, "offer at the position seen by the emergency");
    expect((await h.http("POST", `/api/emergency/${next.id}/cancel`, { reason: "duplicate" }, ops.token)).status).toBe(200);
    // cancelling again is answered the same way; other actions are refused
    const status = await h.http("GET", `/api/emergency/${id}/status`, undefined, patient.token);
    expect([200, 404]).toContain(status.status);
    const again = await h.http("POST", "/api/emergency/alert", at, patient.token);
    expect(again.status).toBe(201);
    expect(again.body.emergencyId).not.toBe(id);
    // ops cancels over REST; the same idempotency key twice is one cancel
    const key = { reason: "duplicate", idempotencyKey: "cancel-key-0001" };
    const c1 = await h.http("POST", `/api/emergency/${again.body.emergencyId}/cancel`, key, ops.token);
    const c2 = await h.http("POST", `/api/emergency/${again.body.emergencyId}/cancel`, key, ops.token);
    expect(c1).toMatchObject({ status: 200, body: { status: "cancelled" } });
    expect(c2).toMatchObject({ status: 200, body: { status: "cancelled", duplicate: true } });
    await fa1.duty.leave();
    await fa2.duty.leave();
  });
});
