import { describe, expect, it } from "vitest";
import { Dispatch } from "../../rooms/emergency/dispatch.ts";
import type { Candidate, ResponderKind } from "../../src/domain/duty.ts";
import { fakeEmergency, settle } from "./fakes.ts";

const OFFER_TIMEOUT_MS = 30_000;
const WIDEN_INTERVAL_MS = 10_000;

/** Dispatch over a fake duty index: `onDuty` lists who is on duty per role, at what distance. */
function harness(onDuty: Partial<Record<ResponderKind, { userId: string; distanceM: number }[]>>) {
  const e = fakeEmergency();
  const assigned: string[] = [];
  const lookups: { kind: ResponderKind; radiusM: number }[] = [];
  let ids = 0;
  const dispatch = new Dispatch({
    ctx: e.ctx,
    config: {
      firstAider: { offers: 2, urbanRadiusM: 500, ruralRadiusM: 1000, maxRadiusM: 4000 },
      ambulance: { offers: 1, urbanRadiusM: 5000, ruralRadiusM: 15000, maxRadiusM: 80000 },
      offerTimeoutMs: OFFER_TIMEOUT_MS,
      widenIntervalMs: WIDEN_INTERVAL_MS,
    },
    duty: {
      async candidates(kind, _at, radiusM, count): Promise<Candidate[]> {
        lookups.push({ kind, radiusM });
        return (onDuty[kind] ?? []).filter((c) => c.distanceM <= radiusM && !assigned.includes(c.userId)).slice(0, count)
          .map((c) => ({ ...c, dutyRoomId: `duty-${c.userId}`, lat: 0, lng: 0 }));
      },
      async assign(userId) { assigned.push(userId); },
    },
    urbanAreas: [{ name: "Nairobi", lat: -1.2921, lng: 36.8219, radiusM: 20_000 }],
    newOfferId: () => `offer-${++ids}`,
  });
  const offersTo = (userId: string) => e.calls.filter((c) => c.method === "receiveOffer" && c.roomId === `duty-${userId}`);
  const offerIdOf = (userId: string) => (offersTo(userId).at(-1)!.args[0] as { id: string }).id;
  return { ...e, dispatch, lookups, assigned, offersTo, offerIdOf };
}

describe("dispatch on the room clock", () => {
  it("offers the nearest within the first urban radius, and an unanswered offer lapses at the timeout and goes to the next nearest", async () => {
    const h = harness({
      first_aider: [{ userId: "fa1", distanceM: 100 }, { userId: "fa2", distanceM: 300 }, { userId: "fa3", distanceM: 450 }],
      ambulance_crew: [{ userId: "crew1", distanceM: 2000 }],
    });
    h.dispatch.resume();
    await settle();
    expect(h.offersTo("fa1")).toHaveLength(1);
    expect(h.offersTo("fa2")).toHaveLength(1);
    expect(h.offersTo("fa3")).toHaveLength(0);
    expect(h.state.dispatch.firstAiderRadiusM).toBe(500);
    expect(h.state.dispatch.offersOut).toBe(3);
    expect(h.state.times.responderNotifiedAt).toBe(h.clock.now());

    h.clock.advance(OFFER_TIMEOUT_MS - 1);
    expect(h.types()).not.toContain("offer_timed_out");
    h.clock.advance(1);
    await settle();
    expect(h.types().filter((t) => t === "offer_timed_out")).toHaveLength(3);
    expect(h.calls.filter((c) => c.method === "withdrawOffer").map((c) => c.roomId).sort()).toEqual(["duty-crew1", "duty-fa1", "duty-fa2"]);
    expect(h.offersTo("fa3")).toHaveLength(1); // the lapsed slot went to the next nearest
    expect(h.offersTo("fa1")).toHaveLength(1); // nobody is offered twice
  });

  it("replaces a declined offer at once with the next nearest", async () => {
    const h = harness({ first_aider: [{ userId: "fa1", distanceM: 100 }, { userId: "fa2", distanceM: 200 }, { userId: "fa3", distanceM: 300 }] });
    h.dispatch.resume();
    await settle();
    expect(h.dispatch.decline(h.offerIdOf("fa1"), "fa1", "busy")).toEqual({ ok: true });
    await settle();
    expect(h.events.find((e) => e.type === "offer_declined")).toMatchObject({ actor: "first_aider:fa1", detail: "busy" });
    expect(h.offersTo("fa3")).toHaveLength(1);
    expect(h.dispatch.decline(h.offerIdOf("fa1"), "fa1")).toMatchObject({ ok: false, error: { code: "OFFER_EXPIRED" } });
  });

  it("widens the radius while too few are found, and with nobody left at the widest searches again at the widen interval", async () => {
    const far: { userId: string; distanceM: number }[] = [];
    const h = harness({ first_aider: far });
    h.dispatch.resume();
    await settle();
    expect(h.events.filter((e) => e.type === "radius_widened").map((e) => e.detail)).toContain("first_aider 4000 m");
    expect(h.state.dispatch.firstAiderRadiusM).toBe(4000);
    const looked = h.lookups.filter((l) => l.kind === "first_aider").length;

    h.clock.advance(WIDEN_INTERVAL_MS - 1);
    await settle();
    expect(h.lookups.filter((l) => l.kind === "first_aider")).toHaveLength(looked);
    far.push({ userId: "late", distanceM: 3500 });
    h.clock.advance(1);
    await settle();
    expect(h.lookups.filter((l) => l.kind === "first_aider")).toHaveLength(looked + 1);
    expect(h.offersTo("late")).toHaveLength(1);
  });

  it("assigns the first to accept, withdraws every other offer of that role and stops searching for it", async () => {
    const h = harness({ first_aider: [{ userId: "fa1", distanceM: 100 }, { userId: "fa2", distanceM: 200 }] });
    h.dispatch.resume();
    await settle();
    const won = h.dispatch.accept(h.offerIdOf("fa2"), "fa2", "Amina");
    expect(won).toEqual({ ok: true, emergencyId: "e-1" });
    expect(h.state.status).toBe("dispatched");
    expect(h.state.firstAiders.get("fa2")?.name).toBe("Amina");
    expect(h.assigned).toEqual(["fa2"]);
    expect(h.calls.filter((c) => c.method === "withdrawOffer")).toEqual([{ roomId: "duty-fa1", method: "withdrawOffer", args: ["offer-1", "assigned_elsewhere"] }]);
    expect(h.dispatch.accept(h.offerIdOf("fa1"), "fa1", "Late")).toMatchObject({ ok: false, error: { code: "OFFER_EXPIRED" } });
    h.clock.advance(OFFER_TIMEOUT_MS);
    expect(h.types()).not.toContain("offer_timed_out"); // the withdrawn offer's timer went with it
  });

  it("withdraws everything when the emergency closes and offers nothing after", async () => {
    const h = harness({ first_aider: [{ userId: "fa1", distanceM: 100 }] });
    h.dispatch.resume();
    await settle();
    h.state.status = "cancelled";
    h.dispatch.stopAll();
    expect(h.calls.filter((c) => c.method === "withdrawOffer").map((c) => c.args[1])).toEqual(["closed"]);
    expect(h.state.dispatch.searching).toBe(false);
    h.clock.advance(10 * OFFER_TIMEOUT_MS);
    await settle();
    expect(h.calls.filter((c) => c.method === "receiveOffer")).toHaveLength(1);
  });
});
