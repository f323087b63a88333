import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, account, join, login, onDuty, rejection, scenario, sleep, startHaven, waitFor, type Account, type Haven } from "./harness.ts";

/**
 * One rule for every critical action (docs/protocol.md §4): a retry with the same key gets the
 * first answer with `duplicate: true`; a repeat whose effect already holds answers its outcome;
 * an offer that lapsed is OFFER_EXPIRED, one never made OFFER_NOT_FOUND.
 */
let h: Haven;
let ops: Account;
beforeAll(async () => {
  h = await startHaven({ HAVEN_CLOSE_GRACE_MS: "300" });
  ops = await login(h, OPS.email, OPS.password);
});
afterAll(async () => { await h?.stop(); });

describe("retries and repeats", () => {
  it("answer the first outcome for status, assessment, accept, decline and handover, also after the room closed", async () => {
    const s = await scenario(h, ops, { lat: -1.2921, lng: 36.8219 });
    // status: a retry with its key is the first answer, marked; a repeat is its outcome
    const first = await s.faRoom.request("status", { step: "on_scene", idempotencyKey: "retry-onscene-1" });
    expect(first).toEqual({ ok: true, status: "on_scene" });
    expect(await s.faRoom.request("status", { step: "on_scene", idempotencyKey: "retry-onscene-1" })).toEqual({ ...first, duplicate: true });
    expect(await s.faRoom.request("status", { step: "on_scene" })).toEqual({ ok: true, status: "on_scene" });
    const assessment = { mechanism: "fall", injuries: [], treatment: [], suspected: ["trauma"], idempotencyKey: "retry-assess-1" };
    const assessed = await s.faRoom.request("assessment", assessment);
    expect(await s.faRoom.request("assessment", assessment)).toEqual({ ...assessed, duplicate: true });

    // offers: a retried accept that won is its outcome; an offer never made is not found
    expect((await rejection(s.fa.duty.request("accept_offer", { offerId: randomUUID() }))).code).toBe("OFFER_NOT_FOUND");
    expect((await rejection(s.fa.duty.request("decline_offer", { offerId: randomUUID() }))).code).toBe("OFFER_NOT_FOUND");

    // handover: retried with its key, repeated, and repeated after the room closed
    await waitFor(s.pRoom, (st) => st.hospital.status === "notified", 3000, "hospital notified");
    const hospitalId = s.pRoom.state.hospital.id;
    const staff = await account(h, "hospital_staff", { hospitalId, by: ops });
    const board = await join(h, staff.token, `hospital-${hospitalId}`);
    await waitFor(board, (st) => st.incoming.has(s.id), 3000, "on the wallboard");
    await board.request("acknowledge", { emergencyId: s.id });
    await s.crewRoom.request("status", { step: "left_scene" });
    const handover = { emergencyId: s.id, notes: "stable", idempotencyKey: "retry-handover-1" };
    const handed = await board.request("handover", handover);
    expect(handed).toEqual({ ok: true, status: "handed_over" });
    expect(await board.request("handover", handover)).toEqual({ ...handed, duplicate: true });
    expect(await board.request("handover", { emergencyId: s.id })).toEqual({ ok: true, status: "handed_over" });
    await sleep(800); // the emergency's room has closed
    expect(await board.request("handover", handover)).toMatchObject({ ok: true, status: "handed_over" });
    // other actions on a finished emergency are refused as closed
    expect((await rejection(board.request("readiness", { emergencyId: s.id, key: "bed", ready: true }))).code).toBe("EMERGENCY_CLOSED");
  });

  it("an accept or decline retried is its outcome, and a withdrawn or declined offer is OFFER_EXPIRED", async () => {
    const at = { lat: -1.31, lng: 36.79 };
    const near = (m: number) => ({ lat: at.lat + m / 111_320, lng: at.lng });
    const [fa1, fa2, fa3] = [await onDuty(h, ops, "first_aider", near(50)), await onDuty(h, ops, "first_aider", near(80)), await onDuty(h, ops, "first_aider", near(120))];
    const patient = await account(h, "patient");
    const id = (await h.http("POST", "/api/emergency/alert", at, patient.token)).body.emergencyId as string;
    const offerOf = async (r: typeof fa1) => {
      await waitFor(r.duty, (st) => [...st.offers.values()].some((o: any) => o.emergencyId === id), 3000, "offered");
      return ([...r.duty.state.offers.values()].find((o: any) => o.emergencyId === id) as any).id as string;
    };
    const [o1, o2, o3] = [await offerOf(fa1), await offerOf(fa2), await offerOf(fa3)];
    expect(await fa2.duty.request("decline_offer", { offerId: o2, reason: "busy" })).toEqual({ ok: true });
    expect(await fa2.duty.request("decline_offer", { offerId: o2, reason: "busy" })).toMatchObject({ ok: true, duplicate: true });
    expect((await rejection(fa2.duty.request("accept_offer", { offerId: o2 }))).code).toBe("OFFER_EXPIRED");
    const won = await fa1.duty.request("accept_offer", { offerId: o1 });
    expect(won).toEqual({ ok: true, emergencyId: id });
    expect(await fa1.duty.request("accept_offer", { offerId: o1 })).toEqual({ ...won, duplicate: true });
    // the third first-aider's offer was withdrawn when the first accepted
    await waitFor(fa3.duty, (st) => !st.offers.has(o3), 3000, "withdrawn");
    expect((await rejection(fa3.duty.request("accept_offer", { offerId: o3 }))).code).toBe("OFFER_EXPIRED");
  });
});
