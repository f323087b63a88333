import { mkdirSync, writeFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, join, login, onDuty, root, sleep, startHaven, until, waitFor, type Account, type Haven } from "./harness.ts";
import { Gateway } from "./notify-kit.ts";

/**
 * Alerts by SMS and USSD through the gateway's callbacks: a registered number dials the USSD
 * code and answers the menu, and the emergency raised is the one its app and every party join;
 * an SMS alert and an app alert from one person land in one emergency; an unknown number takes
 * the emergency-bypass path with its limits; status replies go back by SMS; callbacks that are
 * unsigned, malformed or too many are refused and change nothing.
 */
const SECRET = "gateway-shared-secret-0123456789";
let gw: Gateway;
let h: Haven;
let ops: Account;

beforeAll(async () => {
  gw = await new Gateway().start();
  h = await startHaven({
    ...gw.env(), HAVEN_GATEWAY_INBOUND_SECRET: SECRET, HAVEN_INBOUND_PER_PHONE_PER_MINUTE: "8",
    HAVEN_OUTBOX_POLL_MS: "20", HAVEN_OUTBOX_BACKOFF_BASE_MS: "50", HAVEN_DISPATCH_WIDEN_INTERVAL_MS: "300",
  });
  ops = await login(h, OPS.email, OPS.password);
});
afterAll(async () => {
  await h?.stop();
  await gw?.stop();
});

async function callback(path: "sms" | "ussd", form: Record<string, string>, secret: string | null = SECRET, type = "application/x-www-form-urlencoded") {
  const r = await fetch(`${h.url}/api/gateway/${path}${secret === null ? "" : `?secret=${secret}`}`, {
    method: "POST", headers: { "content-type": type }, body: new URLSearchParams(form).toString(),
  });
  const text = await r.text();
  return { status: r.status, text, json: (() => { try { return JSON.parse(text); } catch { return undefined; } })() };
}

const ussd = (sessionId: string, phoneNumber: string, text: string) =>
  callback("ussd", { sessionId, serviceCode: "*384*4357#", phoneNumber, networkCode: "63902", text });
const sms = (from: string, text: string, id = `ATXid_${randomUUID()}`) =>
  callback("sms", { from, to: "40404", text, date: new Date().toISOString(), id, linkId: `link-${id}` });

async function patientWithPhone(phone: string, name: string): Promise<Account> {
  const email = `p-${randomUUID().slice(0, 8)}@haven.test`;
  const r = await h.http("POST", "/api/auth/register", { email, password: "a-long-password-1", name, role: "patient", phone });
  expect(r.status).toBe(201);
  return login(h, email, "a-long-password-1");
}

const smsTo = (phone: string) => gw.accepted("sms").filter((r) => r.to === phone);

describe("USSD", () => {
  it("takes a registered number from the first screen to an emergency that the app and the responders join", async () => {
    const patient = await patientWithPhone("0722100001", "Kamau");
    const phone = "+254722100001";
    const session = `ATUid_${randomUUID().slice(0, 12)}`;
    const transcript: string[] = [];
    const step = async (text: string) => {
      const r = await ussd(session, phone, text);
      expect(r.status).toBe(200);
      transcript.push(`> text="${text}"`, ...r.text.split("\n").map((l) => `< ${l}`), "");
      return r.text;
    };
    expect(await step("")).toBe("CON Haven emergency\n1. Raise an alert\n2. Status of my alert");
    expect(await step("1")).toMatch(/^CON What happened\?\n1\. Injury or accident\n2\. Breathing or chest pain/);
    expect(await step("1*2")).toMatch(/^CON Where are you\?\n1\. Nairobi\n2\. Mombasa[\s\S]*\n0\. Type a landmark$/);
    expect(await step("1*2*0")).toBe("CON Type the nearest landmark:");
    const last = await step("1*2*0*Near Kenyatta National Hospital gate");
    expect(last).toMatch(/^END Help is coming\. Emergency [0-9a-f]{8}\. We will send news by SMS\.$/);
    const ref = /Emergency ([0-9a-f]{8})/.exec(last)![1];

    // the same person opening the app is in the same emergency
    const app = await h.http("POST", "/api/emergency/alert", { lat: -1.30, lng: 36.80 }, patient.token);
    expect(app.status).toBe(200);
    expect(app.body.created).toBe(false);
    const id = app.body.emergencyId as string;
    expect(id.startsWith(ref)).toBe(true);
    const pRoom = await join(h, patient.token, id);
    expect(pRoom.state.priority).toBe("critical"); // "breathing or chest pain"
    expect(pRoom.state.patient.lat).toBeCloseTo(-1.3007, 3); // at the hospital named
    const opsRoom = await join(h, ops.token, id);
    expect(opsRoom.state.id).toBe(id);

    // a responder takes it: the patient is told by SMS
    const fa = await onDuty(h, ops, "first_aider", { lat: -1.3003, lng: 36.8065 });
    await until(() => [...fa.duty.state.offers.values()].some((o: any) => o.emergencyId === id), 5000, "offered");
    const offer = [...fa.duty.state.offers.values()].find((o: any) => o.emergencyId === id) as any;
    await fa.duty.request("accept_offer", { offerId: offer.id });
    await waitFor(pRoom, (st) => st.status === "dispatched", 3000, "dispatched");
    await until(() => smsTo(phone).some((r) => r.key.startsWith(`status:${id}:assigned`)), 5000, "status SMS");
    expect(smsTo(phone).find((r) => r.key.startsWith(`status:${id}:assigned`))!.text).toMatch(/^Haven: A responder is on the way\. Responder: first_aider user\./);

    // the status screen
    const status = await ussd(`${session}-2`, phone, "2");
    transcript.push(`> (a new session) text="2"`, ...status.text.split("\n").map((l) => `< ${l}`));
    expect(status.text).toMatch(/^END Haven: A responder is on the way\. Responder: first_aider user\./);

    mkdirSync(`${root}test-output`, { recursive: true });
    writeFileSync(`${root}test-output/ussd-transcript.txt`, transcript.join("\n") + "\n");
  });

  it("answers a wrong choice with the end screen and raises nothing", async () => {
    const phone = "+254722100009";
    await patientWithPhone("0722100009", "Njeri");
    expect((await ussd("s-wrong", phone, "7")).text).toBe("END Invalid choice. Dial again.");
    expect((await ussd("s-wrong", phone, "1*9")).text).toBe("END Invalid choice. Dial again.");
    expect((await ussd("s-status", phone, "2")).text).toBe("END You have no open alert.");
  });
});

describe("SMS", () => {
  it("an SMS alert and an app alert from the same person land in one emergency, whichever comes first", async () => {
    const a = await patientWithPhone("0722100002", "Akinyi");
    const app = await h.http("POST", "/api/emergency/alert", { lat: -1.2864, lng: 36.8172 }, a.token);
    expect(app.status).toBe(201);
    const r = await sms("+254722100002", "HELP my friend collapsed at Kencom");
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ ok: true, emergencyId: app.body.emergencyId, joined: true });

    const b = await patientWithPhone("0722100003", "Baraka");
    const first = await sms("0722100003", "msaada ajali Mombasa");
    expect(first.json.joined).toBe(false);
    const later = await h.http("POST", "/api/emergency/alert", { lat: -4.04, lng: 39.66 }, b.token);
    expect(later.body).toMatchObject({ emergencyId: first.json.emergencyId, created: false });
    await until(() => smsTo("+254722100003").length >= 1, 3000, "the reply");
    expect(smsTo("+254722100003")[0].text).toBe("Haven: your emergency alert is received. Help is being sent. Reply STATUS for news.");
    const status = await sms("+254722100003", "STATUS");
    expect(status.json.emergencyId).toBe(first.json.emergencyId);
    await until(() => smsTo("+254722100003").length >= 2, 3000, "the status reply");
    expect(smsTo("+254722100003")[1].text).toMatch(/^Haven: Alert received, looking for a responder\./);
  });

  it("an unknown number raises through the emergency-bypass path, joins its open emergency, and is held to its limit", async () => {
    const phone = "+254722100004";
    const first = await sms(phone, "HELP accident Nakuru");
    expect(first.json.joined).toBe(false);
    const id = first.json.emergencyId as string;
    const again = await sms(phone, "HELP still here");
    expect(again.json).toMatchObject({ emergencyId: id, joined: true });
    const seen = await h.http("GET", `/api/emergency/${id}/status`, undefined, ops.token);
    expect(seen.body.bypass).toBe(true);
    expect(seen.body.patient.lat).toBeCloseTo(-0.3031, 3); // Nakuru
    // once it is over, a new alert from the same number the same day is past the bypass limit
    expect((await h.http("POST", `/api/emergency/${id}/cancel`, { reason: "false_alarm" }, ops.token)).status).toBe(200);
    const third = await sms(phone, "HELP");
    expect([403, 429]).toContain(third.status);
    await until(() => smsTo(phone).some((r) => r.text.startsWith("Haven: your alert could not be raised")), 3000, "told to call");
  });

  it("answers anything else with how to use it", async () => {
    const r = await sms("+254722100005", "hello?");
    expect(r.json).toMatchObject({ ok: true, emergencyId: null });
    await until(() => smsTo("+254722100005").length === 1, 3000, "usage");
    expect(smsTo("+254722100005")[0].text).toMatch(/^Haven: to raise an emergency, text HELP/);
  });
});

describe("the gateway's callbacks", () => {
  it("refuses unsigned, wrongly signed, malformed and excessive callbacks, and raises nothing for them", async () => {
    const phone = "+254722100006";
    const form = { from: phone, to: "40404", text: "HELP", id: "ATXid_bad1" };
    expect((await callback("sms", form, null)).status).toBe(401);
    expect((await callback("sms", form, "x".repeat(SECRET.length))).status).toBe(401);
    expect((await callback("sms", form, SECRET, "application/json")).status).toBe(415);
    expect((await callback("sms", { ...form, from: "12" })).json.code).toBe("INVALID_PAYLOAD");
    expect((await callback("sms", { to: "40404", text: "HELP", id: "x1" })).json.code).toBe("INVALID_PAYLOAD");
    expect((await callback("sms", { ...form, extra: "1" })).json.code).toBe("INVALID_PAYLOAD");
    expect((await callback("ussd", { sessionId: "s1", serviceCode: "*384#", phoneNumber: phone, text: "1".repeat(401) })).json.code).toBe("INVALID_PAYLOAD");
    expect((await callback("ussd", { sessionId: "s1", serviceCode: "*384#", phoneNumber: phone, text: "" }, "nope")).status).toBe(401);
    await sleep(200);
    expect(gw.requests.filter((r) => r.to === phone)).toHaveLength(0); // not even a reply

    // each number has an allowance per minute; past it, 429 and nothing done
    const busy = "+254722100007";
    for (let i = 0; i < 8; i++) expect((await ussd(`s-busy-${i}`, busy, "")).status).toBe(200);
    const over = await ussd("s-busy-9", busy, "1*1*1");
    expect(over.status).toBe(429);
    expect(over.json.code).toBe("RATE_LIMITED");
    const unknownOps = await h.http("GET", "/api/emergency/00000000-0000-4000-8000-000000000000/status", undefined, ops.token);
    expect(unknownOps.status).toBe(404);
  });

  it("with an address allowlist, refuses a callback from anywhere else even with the secret; with neither, refuses every callback", async () => {
    const allow = await startHaven({ HAVEN_GATEWAY_INBOUND_SECRET: SECRET, HAVEN_GATEWAY_INBOUND_ALLOWLIST: "198.51.100.7" });
    const none = await startHaven({});
    try {
      const form = new URLSearchParams({ from: "+254722100008", to: "40404", text: "HELP", id: "ATXid_allow1" }).toString();
      for (const [target, secret] of [[allow, SECRET], [none, SECRET], [none, ""]] as const) {
        const r = await fetch(`${target.url}/api/gateway/sms?secret=${secret}`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: form });
        expect(r.status).toBe(403);
        expect(((await r.json()) as { code: string }).code).toBe("FORBIDDEN");
      }
    } finally {
      await allow.stop();
      await none.stop();
    }
  });
});
