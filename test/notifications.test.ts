import { createECDH, randomBytes, randomUUID } from "node:crypto";
import postgres from "postgres";
import webpush from "web-push";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, account, freshDatabase, join, login, rejection, scenario, sleep, startHaven, until, waitFor, type Account, type Haven } from "./harness.ts";
import { Gateway, HangingProxy } from "./notify-kit.ts";

/**
 * Who is told what, end to end through the outbox to real local receivers: the receiving
 * hospital (webhook, then its duty phone only if the wallboard did not acknowledge), a patient's
 * emergency contacts (with consent, in the patient's language, nothing medical), an on-duty
 * responder whose app is away (push, then SMS), and operations when an emergency escalates. A
 * change that is undone sends nothing.
 */
const vapid = webpush.generateVAPIDKeys();
const HOSPITALS = ["knh", "nairobi-hospital", "aga-khan", "mp-shah", "gertrudes", "mbagathi", "mama-lucy", "kutrrh"];
const dutyPhone = (i: number) => `+25471100${String(i).padStart(4, "0")}`;
const OPS_PHONE = "+254733000999";

let gw: Gateway;
let h: Haven;
let ops: Account;

function env(extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...gw.env(),
    HAVEN_VAPID_PUBLIC_KEY: vapid.publicKey, HAVEN_VAPID_PRIVATE_KEY: vapid.privateKey, HAVEN_VAPID_SUBJECT: "mailto:ops@haven.test",
    HAVEN_OPS_DUTY_PHONE: OPS_PHONE, HAVEN_OPS_WEBHOOK_URL: `${gw.url}/ops`,
    HAVEN_OUTBOX_POLL_MS: "20", HAVEN_OUTBOX_BACKOFF_BASE_MS: "50",
    HAVEN_HOSPITAL_SMS_FALLBACK_MS: "4000", HAVEN_HOSPITAL_ACK_TIMEOUT_MS: "30000", HAVEN_HOSPITAL_REALERT_INTERVAL_MS: "5000",
    HAVEN_RESPONDER_SMS_DELAY_MS: "5000", HAVEN_ESCALATE_NO_RESPONDER_MS: "3000",
    ...extra,
  };
}

/** Every hospital gets a duty phone and a webhook on the local receiver. */
async function hospitalContacts(target: Haven, by: Account): Promise<void> {
  for (const [i, id] of HOSPITALS.entries()) {
    const r = await target.http("PUT", `/api/hospitals/${id}/contact`, { dutyPhone: dutyPhone(i), webhookUrl: `${gw.url}/hospital/${id}` }, by.token);
    expect(r.status).toBe(200);
  }
}

async function withPhone(target: Haven, role: string, phone: string, name = `${role} user`): Promise<Account> {
  const email = `${role}-${randomUUID().slice(0, 8)}@haven.test`;
  const r = await target.http("POST", "/api/auth/register", { email, password: "a-long-password-1", name, role, phone });
  expect(r.status).toBe(201);
  return login(target, email, "a-long-password-1");
}

function pushSubscription(id: string) {
  const ecdh = createECDH("prime256v1");
  ecdh.generateKeys();
  return { endpoint: `${gw.url}/push/${id}`, keys: { p256dh: ecdh.getPublicKey("base64url"), auth: randomBytes(16).toString("base64url") } };
}

const forEmergency = (id: string) => gw.requests.filter((r) => r.key.includes(id));

beforeAll(async () => {
  gw = await new Gateway().start();
  h = await startHaven(env());
  ops = await login(h, OPS.email, OPS.password);
  await hospitalContacts(h, ops);
});
afterAll(async () => {
  await h?.stop();
  await gw?.stop();
});

describe("the receiving hospital", () => {
  it("is told by signed webhook when an emergency is routed to it, and by SMS to its duty phone only when its wallboard did not acknowledge", async () => {
    const assessment = { mechanism: "chest pain", injuries: [], treatment: [], suspected: ["cardiac"], priority: "critical" };
    // one emergency whose wallboard acknowledges at once, one whose wallboard stays silent
    const a = await scenario(h, ops, { lat: -1.2613, lng: 36.8232 });
    const b = await scenario(h, ops, { lat: -1.3093, lng: 36.8005 });
    await a.faRoom.request("assessment", assessment);
    await b.faRoom.request("assessment", assessment);
    await waitFor(a.pRoom, (st) => st.hospital.status === "notified", 3000, "a routed");
    await waitFor(b.pRoom, (st) => st.hospital.status === "notified", 3000, "b routed");
    const hospitalA = a.pRoom.state.hospital.id;
    const hospitalB = b.pRoom.state.hospital.id;
    const staff = await account(h, "hospital_staff", { hospitalId: hospitalA, by: ops });
    const board = await join(h, staff.token, `hospital-${hospitalA}`);
    await board.request("acknowledge", { emergencyId: a.id });

    await until(() => forEmergency(b.id).some((r) => r.kind === "sms"), 10_000, "b's duty phone texted");
    await sleep(1500); // well past a's fallback time too
    const routedA = forEmergency(a.id).filter((r) => r.kind === "webhook");
    expect(routedA).toHaveLength(1);
    expect(routedA[0]).toMatchObject({ status: 200, to: `/hospital/${hospitalA}` });
    expect(routedA[0].body).toMatchObject({ event: "hospital_routed", emergencyId: a.id });
    expect(forEmergency(a.id).filter((r) => r.kind === "sms")).toHaveLength(0); // acknowledged: no SMS

    const smsB = forEmergency(b.id).filter((r) => r.kind === "sms");
    expect(smsB).toHaveLength(1);
    expect(smsB[0].to).toBe(dutyPhone(HOSPITALS.indexOf(hospitalB)));
    expect(smsB[0].text).toContain("nobody has acknowledged");
    expect(smsB[0].text).toContain(b.id.slice(0, 8));
    expect(smsB[0].text).not.toMatch(/chest|cardiac/); // nothing medical in an SMS
    expect(forEmergency(b.id).filter((r) => r.kind === "webhook")).toHaveLength(1);
  });

  it("refuses a duty phone or webhook set by anyone but the hospital's admin or ops, and a bad number", async () => {
    const patient = await account(h, "patient");
    expect((await h.http("PUT", "/api/hospitals/knh/contact", { dutyPhone: "+254711000000" }, patient.token)).body.code).toBe("FORBIDDEN");
    expect((await h.http("PUT", "/api/hospitals/knh/contact", { dutyPhone: "+25412" }, ops.token)).body.code).toBe("INVALID_PAYLOAD");
    expect((await h.http("PUT", "/api/hospitals/knh/contact", { webhookUrl: "ftp://example.org/x" }, ops.token)).body.code).toBe("INVALID_PAYLOAD");
    expect((await h.http("PUT", "/api/hospitals/nowhere/contact", {}, ops.token)).body.code).toBe("HOSPITAL_NOT_FOUND");
  });
});

describe("emergency contacts", () => {
  it("are told when an alert is raised and at handover, with consent, in the patient's language, with nothing medical", async () => {
    const patient = await withPhone(h, "patient", "0722000001", "Wanjiru");
    const profile = {
      bloodType: "O+", allergies: [{ substance: "penicillin", severity: "severe" }], conditions: ["asthma"], medications: [],
      emergencyContacts: [{ name: "Achieng", relation: "mother", phone: "0722000111" }, { name: "Otieno", phone: "+254722000222" }],
      consent: { shareInEmergency: true, version: 1 },
    };
    expect((await h.http("POST", "/api/medical-profile", profile, patient.token)).status).toBe(201);
    expect((await h.http("PUT", "/api/notifications/preferences", { language: "sw", channels: ["sms"] }, patient.token)).status).toBe(200);
    // a patient who did not consent: their contacts are not told
    const private_ = await account(h, "patient");
    await h.http("POST", "/api/medical-profile", { ...profile, consent: { shareInEmergency: false, version: 1 } }, private_.token);

    const s = await scenario(h, ops, { lat: -1.2955, lng: 36.804 }, patient);
    const quiet = await h.http("POST", "/api/emergency/alert", { lat: -1.30, lng: 36.81 }, private_.token);
    await until(() => forEmergency(s.id).filter((r) => r.key.startsWith("contact-alert")).length === 2, 5000, "both contacts told of the alert");
    const told = forEmergency(s.id).filter((r) => r.key.startsWith("contact-alert"));
    expect(told.map((r) => r.to).sort()).toEqual(["+254722000111", "+254722000222"]);
    expect(told[0].text).toBe("Haven: Wanjiru ametuma ombi la dharura. Wahudumu wanatumwa. Utaarifiwa Wanjiru akikabidhiwa hospitali.");

    // the handover
    await s.faRoom.request("status", { step: "on_scene" });
    await s.faRoom.request("assessment", { mechanism: "fall", injuries: ["wrist"], treatment: ["splint"], suspected: ["trauma"] });
    await waitFor(s.pRoom, (st) => st.hospital.status === "notified", 3000, "routed");
    const hospitalId = s.pRoom.state.hospital.id;
    const staff = await account(h, "hospital_staff", { hospitalId, by: ops });
    const board = await join(h, staff.token, `hospital-${hospitalId}`);
    await board.request("acknowledge", { emergencyId: s.id });
    await s.crewRoom.request("status", { step: "left_scene" });
    await s.crewRoom.request("status", { step: "at_hospital" });
    await board.request("handover", { emergencyId: s.id, notes: "stable" });
    await until(() => forEmergency(s.id).filter((r) => r.key.startsWith("contact-handover")).length === 2, 5000, "both contacts told of the handover");
    const handover = forEmergency(s.id).find((r) => r.key.startsWith("contact-handover"))!;
    expect(handover.text).toBe(`Haven: Wanjiru amekabidhiwa kwa ${s.pRoom.state.hospital.name}.`);
    for (const r of forEmergency(s.id).filter((x) => x.kind === "sms" && x.key.startsWith("contact"))) {
      expect(r.text).not.toMatch(/asthma|penicillin|O\+|wrist|trauma/);
    }
    await sleep(300);
    expect(forEmergency(quiet.body.emergencyId).filter((r) => r.key.startsWith("contact"))).toHaveLength(0);
  });

  it("keeps each account's language and channels, and refuses a malformed preference or subscription", async () => {
    const p = await account(h, "patient");
    expect((await h.http("GET", "/api/notifications/preferences", undefined, p.token)).body).toEqual({ language: "en", channels: ["push", "sms"], vapidPublicKey: vapid.publicKey });
    expect((await h.http("PUT", "/api/notifications/preferences", { language: "fr", channels: ["sms"] }, p.token)).body.code).toBe("INVALID_PAYLOAD");
    expect((await h.http("PUT", "/api/notifications/preferences", { language: "sw", channels: ["email"] }, p.token)).body.code).toBe("INVALID_PAYLOAD");
    expect((await h.http("PUT", "/api/notifications/preferences", { language: "sw", channels: [] }, p.token)).body.code).toBe("INVALID_PAYLOAD");
    expect((await h.http("POST", "/api/notifications/push-subscriptions", { endpoint: "http://x", keys: { p256dh: "a", auth: "b" } }, p.token)).body.code).toBe("INVALID_PAYLOAD");
    expect((await h.http("GET", "/api/notifications/preferences")).status).toBe(401);
    expect((await h.http("PUT", "/api/notifications/preferences", { language: "sw", channels: ["sms"] }, p.token)).body).toEqual({ language: "sw", channels: ["sms"] });
    expect((await h.http("GET", "/api/notifications/preferences", undefined, p.token)).body).toMatchObject({ language: "sw", channels: ["sms"] });
  });
});

describe("a responder whose app is away", () => {
  async function onDutyWithPhone(phone: string, at: { lat: number; lng: number }) {
    const acc = await withPhone(h, "first_aider", phone);
    expect((await h.http("POST", `/api/responders/${acc.id}/verification`, { verified: true }, ops.token)).status).toBe(200);
    expect((await h.http("POST", "/api/notifications/push-subscriptions", pushSubscription(acc.id), acc.token)).status).toBe(201);
    const d = await h.http("POST", "/api/duty", {}, acc.token);
    const duty = await join(h, acc.token, d.body.roomId);
    duty.onMessage("offer_withdrawn", () => {});
    await duty.request("position", at);
    return { acc, duty };
  }
  const away = (duty: any) => { duty.reconnection.enabled = false; duty.connection.close(3000, "backgrounded"); };

  it("is reached by push, then by SMS while the offer is open; an offer settled first sends no SMS", async () => {
    const at = { lat: -0.5143, lng: 35.2698 }; // Eldoret: nobody else on duty here
    const r1 = await onDutyWithPhone("0711000101", { lat: at.lat + 0.0005, lng: at.lng });
    const r2 = await onDutyWithPhone("0711000102", { lat: at.lat + 0.0007, lng: at.lng });
    const r3 = await onDutyWithPhone("0711000103", { lat: at.lat + 0.0009, lng: at.lng });
    const patient = await account(h, "patient");
    const id = (await h.http("POST", "/api/emergency/alert", at, patient.token)).body.emergencyId as string;
    for (const r of [r1, r2, r3]) await waitFor(r.duty, (st) => [...st.offers.values()].some((o: any) => o.emergencyId === id), 3000, "offered");
    const offerOf = (r: typeof r1) => ([...r.duty.state.offers.values()] as any[]).find((o) => o.emergencyId === id).id as string;
    const [o1, o2, o3] = [offerOf(r1), offerOf(r2), offerOf(r3)];

    const wentAway = Date.now();
    away(r1.duty);
    await until(() => gw.accepted("push").some((x) => x.key === `offer:${o1}:push`), 3000, "r1 pushed");
    await until(() => gw.accepted("sms").some((x) => x.key === `offer:${o1}:sms`), 9000, "r1 texted after the push");
    const sms1 = gw.attemptsOf(`offer:${o1}:sms`);
    expect(sms1).toHaveLength(1);
    expect(sms1[0].to).toBe("+254711000101");
    expect(sms1[0].text).toMatch(/^Haven: an emergency \d+ m from you needs help/);
    expect(sms1[0].at - wentAway).toBeGreaterThanOrEqual(4990); // not before HAVEN_RESPONDER_SMS_DELAY_MS
    expect(gw.attemptsOf(`offer:${o1}:push`)[0].at).toBeLessThan(sms1[0].at); // the push first

    // r2 goes away, and r3 (in the app) accepts before r2's SMS is due: r2 gets the push only
    away(r2.duty);
    await until(() => gw.accepted("push").some((x) => x.key === `offer:${o2}:push`), 3000, "r2 pushed");
    await r3.duty.request("accept_offer", { offerId: o3 });
    await sleep(5500);
    expect(gw.attemptsOf(`offer:${o2}:sms`)).toHaveLength(0);
    expect(gw.attemptsOf(`offer:${o3}:push`)).toHaveLength(0); // r3 was in the app
  });
});

describe("a responder who chose SMS only", () => {
  it("is texted at once when away, and never pushed", async () => {
    const at = { lat: -0.0917, lng: 34.768 }; // Kisumu: nobody else on duty here
    const acc = await withPhone(h, "first_aider", "0711000104");
    expect((await h.http("POST", `/api/responders/${acc.id}/verification`, { verified: true }, ops.token)).status).toBe(200);
    expect((await h.http("POST", "/api/notifications/push-subscriptions", pushSubscription(acc.id), acc.token)).status).toBe(201);
    expect((await h.http("PUT", "/api/notifications/preferences", { language: "sw", channels: ["sms"] }, acc.token)).status).toBe(200);
    const duty = await join(h, acc.token, (await h.http("POST", "/api/duty", {}, acc.token)).body.roomId);
    duty.onMessage("offer_withdrawn", () => {});
    await duty.request("position", { lat: at.lat + 0.0005, lng: at.lng });
    const patient = await account(h, "patient");
    const id = (await h.http("POST", "/api/emergency/alert", at, patient.token)).body.emergencyId as string;
    await waitFor(duty, (st) => [...st.offers.values()].some((o: any) => o.emergencyId === id), 3000, "offered");
    const offer = ([...duty.state.offers.values()] as any[]).find((o) => o.emergencyId === id).id as string;
    const wentAway = Date.now();
    duty.reconnection.enabled = false;
    duty.connection.close(3000, "backgrounded");
    await until(() => gw.accepted("sms").some((x) => x.key === `offer:${offer}:sms`), 4900, "texted before the push-then-SMS delay");
    const sms = gw.attemptsOf(`offer:${offer}:sms`)[0];
    expect(sms.at - wentAway).toBeLessThan(5000); // not held back for a push that will not come
    expect(sms.text).toMatch(/^Haven: dharura iliyo mita \d+ kutoka kwako inahitaji msaada/); // in the language chosen
    expect(gw.attemptsOf(`offer:${offer}:push`)).toHaveLength(0);
  });
});

describe("operations", () => {
  it("is told by SMS and webhook when an emergency escalates, once per reason", async () => {
    const patient = await account(h, "patient");
    const id = (await h.http("POST", "/api/emergency/alert", { lat: 3.1190, lng: 35.5973 }, patient.token)).body.emergencyId as string; // Lodwar: nobody on duty
    await until(() => forEmergency(id).filter((r) => r.key.startsWith("ops:")).length === 2, 8000, "ops told");
    const sms = gw.attemptsOf(`ops:${id}:no_responder:sms`);
    expect(sms).toHaveLength(1);
    expect(sms[0].to).toBe(OPS_PHONE);
    expect(sms[0].text).toContain("needs a human: no first_aider or ambulance_crew accepted");
    expect(gw.attemptsOf(`ops:${id}:no_responder:webhook`)[0]).toMatchObject({ status: 200, to: "/ops" });
  });
});

describe("an undone critical change", () => {
  it("sends nothing: an assessment whose commit passed the database deadline leaves no notification behind", async () => {
    const db = await freshDatabase();
    const proxy = new HangingProxy();
    await proxy.start(Number(new URL(db.url).port));
    const viaProxy = new URL(db.url);
    viaProxy.port = String(proxy.port);
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    const u = await startHaven(env({ DATABASE_URL: viaProxy.toString(), HAVEN_DB_CALL_TIMEOUT_MS: "1500", HAVEN_ESCALATE_NO_RESPONDER_MS: "600000" }));
    try {
      const o = await login(u, OPS.email, OPS.password);
      await hospitalContacts(u, o);
      const s = await scenario(u, o, { lat: -1.2613, lng: 36.8232 });
      const assessment = { mechanism: "chest pain", injuries: [], treatment: [], suspected: ["cardiac"], priority: "critical", idempotencyKey: "assess-undone-1" };
      proxy.hang();
      const refused = await rejection(s.faRoom.request("assessment", assessment));
      expect(refused.code).toBe("UNAVAILABLE");
      proxy.release();
      await sleep(1500);
      expect(await sql`select dedupe_key from outbox where emergency_id = ${s.id}`).toHaveLength(0);
      expect(forEmergency(s.id)).toHaveLength(0);
      expect(s.pRoom.state.hospital.status).toBe("none");
      // the same assessment, sent again, is recorded and routed once
      await s.faRoom.request("assessment", { ...assessment, idempotencyKey: "assess-undone-2" });
      await until(() => forEmergency(s.id).some((r) => r.kind === "webhook"), 5000, "routed");
      await sleep(300);
      expect(forEmergency(s.id).filter((r) => r.kind === "webhook")).toHaveLength(1);
    } finally {
      await sql.end({ timeout: 1 });
      await u.stop();
      await proxy.stop();
      await db.drop();
    }
  });
});
