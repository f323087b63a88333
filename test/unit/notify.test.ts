import { describe, expect, it } from "vitest";
import { findPlace, placeOf, UNKNOWN_PLACE_ACCURACY_M } from "../../src/notify/places.ts";
import { normalisePhone } from "../../src/notify/phone.ts";
import { render, TEMPLATES } from "../../src/notify/templates.ts";
import { ussdStep } from "../../src/notify/ussd.ts";
import { verifyWebhook, webhookSignature } from "../../src/notify/webhook.ts";
import { contactsTold, hospitalFallbackKey, hospitalRouted, offerToAwayResponder, opsEscalation } from "../../src/notify/who.ts";

/** The notification rules on plain values: menus, places, templates, keys, signatures, numbers. */
const TOWNS = ["Nairobi", "Mombasa", "Kisumu"];
const PLACES = [
  { name: "Nairobi", lat: -1.28, lng: 36.81, accuracyM: 15000 },
  { name: "Kenyatta National Hospital", lat: -1.30, lng: 36.80, accuracyM: 2000 },
];

describe("the USSD menu", () => {
  it("walks from the first screen to an alert, by town or by landmark", () => {
    expect(ussdStep("", "en", TOWNS)).toEqual({ kind: "reply", text: "CON Haven emergency\n1. Raise an alert\n2. Status of my alert" });
    expect(ussdStep("1", "sw", TOWNS)).toMatchObject({ kind: "reply", text: expect.stringMatching(/^CON Nini kimetokea\?\n1\. Jeraha au ajali/) });
    expect(ussdStep("1*3", "en", TOWNS)).toMatchObject({ kind: "reply", text: "CON Where are you?\n1. Nairobi\n2. Mombasa\n3. Kisumu\n0. Type a landmark" });
    expect(ussdStep("1*3*2", "en", TOWNS)).toEqual({ kind: "raise", what: "Unconscious or fitting", priority: "critical", where: "Mombasa" });
    expect(ussdStep("1*1*0", "en", TOWNS)).toEqual({ kind: "reply", text: "CON Type the nearest landmark:" });
    expect(ussdStep("1*1*0*Kencom*bus stop", "en", TOWNS)).toEqual({ kind: "raise", what: "Injury or accident", priority: "high", where: "Kencom bus stop" });
    expect(ussdStep("2", "en", TOWNS)).toEqual({ kind: "status" });
  });

  it("ends a session on a wrong choice, raising nothing", () => {
    for (const text of ["3", "1*0", "1*6", "1*x", "1*1*4", "1*1*1*1", "2*1"]) {
      expect(ussdStep(text, "en", TOWNS), text).toEqual({ kind: "reply", text: "END Invalid choice. Dial again." });
    }
  });
});

describe("places", () => {
  it("finds a town or a hospital named in the text, and an unknown place at an accuracy that says so", () => {
    expect(findPlace("accident in NAIROBI cbd", PLACES)?.name).toBe("Nairobi");
    expect(findPlace("near kenyatta gate", PLACES)?.name).toBe("Kenyatta National Hospital");
    expect(findPlace("outside the hospital", PLACES)).toBeUndefined(); // a generic word names nothing
    expect(placeOf("somewhere", PLACES)).toEqual({ known: false, place: { ...PLACES[0], accuracyM: UNKNOWN_PLACE_ACCURACY_M } });
  });
});

describe("templates", () => {
  it("every event is written in English and Swahili, and fills its parameters", () => {
    for (const t of Object.values(TEMPLATES)) {
      expect(t.en.length).toBeGreaterThan(10);
      expect(t.sw.length).toBeGreaterThan(10);
    }
    expect(render("contact_handover", "en", { name: "Wanjiru", hospital: "KNH" })).toBe("Haven: Wanjiru has been handed over to KNH.");
    expect(render("contact_handover", "sw", { name: "Wanjiru" })).toBe("Haven: Wanjiru amekabidhiwa kwa -.");
    expect(render("status_update", "sw", { status: "dispatched", responder: "Otieno", eta: 7, hospital: "KNH" })).toBe("Haven: Mhudumu yuko njiani. Mhudumu: Otieno. Atafika baada ya dakika 7. Hospitali: KNH.");
  });
});

describe("who is told what", () => {
  it("keys each message by its moment, and delays the hospital's SMS and the responder's SMS", () => {
    const [hook, sms] = hospitalRouted({ emergencyId: "e1", hospitalId: "knh", hospitalName: "KNH", priority: "critical", etaSeconds: 600, notifiedAt: 1000, fallbackMs: 60_000 });
    expect(hook).toMatchObject({ channel: "webhook", recipient: "hospital:knh", event: "hospital_routed", payload: { params: { eta: 10 } } });
    expect(hook.notBefore).toBeUndefined();
    expect(sms).toMatchObject({ key: hospitalFallbackKey("e1", "knh", 1000), channel: "sms", notBefore: 61_000 });
    const [push, text] = offerToAwayResponder({ offerId: "o1", responderId: "u1", emergencyId: "e1", distanceM: 120.4, now: 5, smsDelayMs: 30_000 });
    expect(push).toMatchObject({ key: "offer:o1:push", channel: "push", recipient: "user:u1" });
    expect(text).toMatchObject({ key: "offer:o1:sms", channel: "sms", notBefore: 30_005, payload: { params: { distance: 120 } } });
    expect(offerToAwayResponder({ offerId: "o2", responderId: "u1", emergencyId: "e1", distanceM: 5, now: 5, smsDelayMs: 0, push: false }))
      .toEqual([expect.objectContaining({ key: "offer:o2:sms", channel: "sms", notBefore: 5 })]);
    expect(contactsTold({ emergencyId: "e1", patientId: "p1", patientName: "W", count: 9, moment: "alert" }).map((m) => m.recipient)).toEqual(["contact:p1:0", "contact:p1:1", "contact:p1:2", "contact:p1:3", "contact:p1:4"]);
    expect(contactsTold({ emergencyId: "e1", patientId: "p1", patientName: "W", count: 0, moment: "handover" })).toEqual([]);
    expect(opsEscalation({ emergencyId: "e1", reason: "no_responder", priority: "high", text: "nobody" }).map((m) => m.key)).toEqual(["ops:e1:no_responder:sms", "ops:e1:no_responder:webhook"]);
  });
});

describe("signed webhooks", () => {
  const secret = "s".repeat(32);
  const body = JSON.stringify({ id: "k1", event: "ops_escalation" });
  it("verify with the right key, body and a fresh timestamp only", () => {
    const now = 1_800_000_000_000;
    const ts = now / 1000;
    const headers = { "x-haven-timestamp": String(ts), "x-haven-signature": webhookSignature(secret, ts, body) };
    expect(verifyWebhook(secret, headers, body, now)).toBe(true);
    expect(verifyWebhook(secret, headers, body.replace("k1", "k2"), now)).toBe(false); // tampered
    expect(verifyWebhook("t".repeat(32), headers, body, now)).toBe(false); // another key
    expect(verifyWebhook(secret, headers, body, now + 301_000)).toBe(false); // replayed later
    expect(verifyWebhook(secret, { ...headers, "x-haven-timestamp": String(ts + 1) }, body, now)).toBe(false); // the timestamp is signed
  });
});

describe("phone numbers", () => {
  it("are written as E.164, local numbers read in the default region", () => {
    expect(normalisePhone("0712 345 678")).toBe("+254712345678");
    expect(normalisePhone("+254712345678")).toBe("+254712345678");
    expect(normalisePhone("0772 123 456", "UG")).toBe("+256772123456");
    expect(normalisePhone("12")).toBeUndefined();
    expect(normalisePhone("+2541")).toBeUndefined();
  });
});
