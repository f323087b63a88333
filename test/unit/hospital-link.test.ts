import { describe, expect, it } from "vitest";
import { ReceivingHospital } from "../../rooms/emergency/hospital-link.ts";
import type { Hospital } from "../../src/domain/hospitals.ts";
import { fakeEmergency, settle } from "./fakes.ts";

const REALERT_MS = 30_000;
const ACK_TIMEOUT_MS = 120_000;

const hospital = (id: string, lat: number, lng: number): Hospital => ({
  id, name: id.toUpperCase(), lat, lng, specialties: ["trauma", "general"], emergencyBeds: 5, icuBeds: 1, accepting: true, updatedAt: 0,
});
const HOSPITALS = [hospital("near", -1.2950, 36.8200), hospital("far", -1.2600, 36.8300)];

function harness(hospitals = HOSPITALS, eta = () => 240) {
  const e = fakeEmergency();
  const dismissed: string[] = [];
  const link = new ReceivingHospital({
    ctx: e.ctx,
    config: { file: "", ackTimeoutMs: ACK_TIMEOUT_MS, realertIntervalMs: REALERT_MS, maxDistanceM: 40_000 },
    hospitals: { all: () => hospitals, get: (id) => hospitals.find((h) => h.id === id) },
    eta: { etaSeconds: () => eta() },
    dismissStaff: (id) => dismissed.push(id),
  });
  // the fake context commits a timed change at once: the link's own `system` changes run inline
  e.state.medical.assessed = true;
  const cards = (id: string) => e.calls.filter((c) => c.roomId === `hospital-${id}` && c.method === "upsertIncoming").map((c) => c.args[0] as Record<string, unknown>);
  return { ...e, link, dismissed, cards };
}

describe("hospital link on the room clock", () => {
  it("pre-notifies the best hospital with its readiness checklist and ETA, and puts the card on its wallboard", () => {
    const h = harness();
    h.link.match();
    expect(h.state.hospital.id).toBe("near");
    expect(h.state.hospital.status).toBe("notified");
    expect([...h.state.hospital.readiness.keys()]).toEqual(["team", "equipment", "bed"]);
    expect(h.state.hospital.etaSeconds).toBe(240);
    expect(h.cards("near").at(-1)).toMatchObject({ emergencyId: "e-1", hospitalStatus: "notified", etaSeconds: 240 });
  });

  it("re-alerts at the re-alert interval until acknowledged, then stops", () => {
    const h = harness();
    h.link.match();
    h.clock.advance(REALERT_MS - 1);
    expect(h.types()).not.toContain("hospital_realerted");
    h.clock.advance(1);
    h.clock.advance(REALERT_MS);
    expect(h.types().filter((t) => t === "hospital_realerted")).toHaveLength(2);
    expect(h.state.hospital.alerts).toBe(3);
    expect(h.link.acknowledge("hospital_staff:s1")).toBe("acknowledged");
    h.clock.advance(10 * REALERT_MS);
    expect(h.types().filter((t) => t === "hospital_realerted")).toHaveLength(2);
    expect(h.types()).not.toContain("hospital_timed_out");
  });

  it("passes a hospital over when it does not acknowledge in time: its staff leave and the next one is notified", async () => {
    const h = harness();
    h.link.match();
    h.clock.advance(ACK_TIMEOUT_MS - 1);
    expect(h.state.hospital.id).toBe("near");
    h.clock.advance(1);
    await settle();
    expect(h.types()).toContain("hospital_timed_out");
    expect(h.cards("near").at(-1)).toMatchObject({ hospitalStatus: "withdrawn" });
    expect(h.dismissed).toEqual(["near"]);
    expect([...h.state.hospital.passedOver]).toEqual(["near"]);
    expect(h.state.hospital.id).toBe("far");
    expect(h.state.hospital.status).toBe("notified");
    // the new hospital has its own full acknowledgement window
    h.clock.advance(ACK_TIMEOUT_MS - 1);
    await settle();
    expect(h.state.hospital.id).toBe("far");
  });

  it("passes over at once on a decline, and with nobody left tries again at the re-alert interval", async () => {
    const h = harness([hospital("only", -1.2950, 36.8200)]);
    h.link.match();
    h.link.passOver("declined", "no beds");
    expect(h.events.find((e) => e.type === "hospital_declined")).toMatchObject({ actor: "hospital:only", detail: "no beds" });
    expect(h.cards("only").at(-1)).toMatchObject({ hospitalStatus: "declined" });
    expect(h.types()).toContain("no_hospital_available");
    expect(h.state.hospital.status).toBe("none");
    const tries = h.systemChanges.length;
    h.clock.advance(REALERT_MS);
    await settle();
    expect(h.systemChanges.length).toBe(tries + 1);
  });

  it("sends ETA changes to the wallboard at most once a second, and urgent changes at once", () => {
    let seconds = 240;
    const h = harness(HOSPITALS, () => seconds);
    h.link.match();
    const sent = h.cards("near").length;
    seconds = 200;
    h.link.refreshEta();
    seconds = 180;
    h.link.refreshEta();
    expect(h.cards("near")).toHaveLength(sent);
    h.clock.advance(1000);
    expect(h.cards("near")).toHaveLength(sent + 1);
    expect(h.cards("near").at(-1)).toMatchObject({ etaSeconds: 180 });
    h.link.readiness({ key: "bed", ready: true }, "hospital_staff:s1");
    expect(h.cards("near")).toHaveLength(sent + 2);
  });
});

describe("hospital link notifications", () => {
  it("tells the routed hospital by webhook, queues its duty phone's SMS for the fallback time, and cancels it on acknowledgement", () => {
    const h = harness();
    const routedAt = h.clock.now();
    h.link.match();
    expect(h.notices.map((n) => [n.key, n.channel, n.recipient, n.notBefore])).toEqual([
      [`hospital-routed:e-1:near:${routedAt}`, "webhook", "hospital:near", undefined],
      [`hospital-sms:e-1:near:${routedAt}`, "sms", "hospital:near", routedAt + 60_000],
    ]);
    h.link.acknowledge("hospital_staff:s1");
    expect(h.cancelled).toEqual([`hospital-sms:e-1:near:${routedAt}`]);
    h.link.acknowledge("hospital_staff:s1"); // a repeat cancels nothing more
    expect(h.cancelled).toHaveLength(1);
  });

  it("cancels the passed-over hospital's SMS and queues the next hospital's", () => {
    const h = harness();
    h.link.match();
    const first = h.clock.now();
    h.clock.advance(1000);
    h.link.passOver("declined", "no beds");
    expect(h.cancelled).toEqual([`hospital-sms:e-1:near:${first}`]);
    expect(h.notices.filter((n) => n.channel === "sms").map((n) => n.recipient)).toEqual(["hospital:near", "hospital:far"]);
  });
});
