import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Packr } from "msgpackr";
import { OPS, account, join, login, rawFrame, rejection, scenario, sleep, startHaven, until, waitFor, type Account, type Haven } from "./harness.ts";

/**
 * Bad input, for every message type: a wrong type, a missing field, an out-of-range value and an
 * oversized frame each get `{ code, message }` back, change nothing, and the other parties in the
 * room keep receiving.
 */
const SCENE = { lat: -1.3007, lng: 36.8100 };
const BIG = "x".repeat(20_000); // above the 8 KiB message cap, below the transport's hard limit
let h: Haven;
let ops: Account;
let s: Awaited<ReturnType<typeof scenario>>;

beforeAll(async () => {
  h = await startHaven({ HAVEN_MAX_MESSAGES_PER_SECOND: "1000" });
  ops = await login(h, OPS.email, OPS.password);
  s = await scenario(h, ops, SCENE);
});
afterAll(async () => { await h?.stop(); });

interface Case { valid: Record<string, unknown>; wrongType: Record<string, unknown>; missing: Record<string, unknown>; outOfRange: Record<string, unknown> }

const emergencyCases: Record<string, Case & { sender: "patient" | "fa" }> = {
  position: { sender: "fa", valid: { lat: -1.3, lng: 36.81 }, wrongType: { lat: "-1.3", lng: 36.81 }, missing: { lng: 36.81 }, outOfRange: { lat: -91, lng: 36.81 } },
  status: { sender: "fa", valid: { step: "en_route" }, wrongType: { step: 3 }, missing: {}, outOfRange: { step: "teleported" } },
  assessment: {
    sender: "fa",
    valid: { mechanism: "fall", injuries: [], treatment: [] },
    wrongType: { mechanism: "fall", injuries: "leg", treatment: [] },
    missing: { injuries: [], treatment: [] },
    outOfRange: { mechanism: "fall", injuries: [], treatment: [], age: 200, signs: { spo2: 140 } },
  },
  cancel: { sender: "patient", valid: { reason: "false_alarm" }, wrongType: { reason: 42 }, missing: { note: "oops" }, outOfRange: { reason: "bored" } },
};

const dutyCases: Record<string, Case> = {
  position: { valid: { lat: 0, lng: 0 }, wrongType: { lat: true, lng: 0 }, missing: { lat: 0 }, outOfRange: { lat: 0, lng: 181 } },
  availability: { valid: { available: true }, wrongType: { available: "yes" }, missing: {}, outOfRange: { available: true, extra: 1 } },
  accept_offer: { valid: { offerId: "abc" }, wrongType: { offerId: 7 }, missing: {}, outOfRange: { offerId: "a".repeat(65) } },
  decline_offer: { valid: { offerId: "abc" }, wrongType: { offerId: ["abc"] }, missing: { reason: "busy" }, outOfRange: { offerId: "abc", reason: "r".repeat(201) } },
};

const hospitalCases = (id: string): Record<string, Case> => ({
  acknowledge: { valid: { emergencyId: id }, wrongType: { emergencyId: 1 }, missing: {}, outOfRange: { emergencyId: "../../etc" } },
  decline: { valid: { emergencyId: id, reason: "full" }, wrongType: { emergencyId: id, reason: false }, missing: { emergencyId: id }, outOfRange: { emergencyId: id, reason: "r".repeat(201) } },
  readiness: { valid: { emergencyId: id, key: "team", ready: true }, wrongType: { emergencyId: id, key: "team", ready: 1 }, missing: { emergencyId: id, ready: true }, outOfRange: { emergencyId: id, key: "Not A Key!", ready: true } },
  capacity: { valid: { emergencyBeds: 3, accepting: true }, wrongType: { emergencyBeds: "3", accepting: true }, missing: { emergencyBeds: 3 }, outOfRange: { emergencyBeds: -1, accepting: true } },
  handover: { valid: { emergencyId: id }, wrongType: { emergencyId: id, notes: {} }, missing: { notes: "x" }, outOfRange: { emergencyId: id, notes: "n".repeat(1001) } },
  divert: { valid: { active: false, reason: "over" }, wrongType: { active: "no", reason: "over" }, missing: { active: false }, outOfRange: { active: true, reason: "full", until: Date.now() + 25 * 3_600_000 } },
});

async function expectRefusals(room: any, type: string, c: Case): Promise<void> {
  for (const variant of ["wrongType", "missing", "outOfRange"] as const) {
    const r = await rejection(room.request(type, c[variant]));
    expect(r.code, `${type} ${variant}`).toBe("INVALID_PAYLOAD");
    expect(r.message.length, `${type} ${variant} message`).toBeGreaterThan(0);
  }
  const big = await rejection(room.request(type, { ...c.valid, pad: BIG }));
  expect(big.code, `${type} oversized`).toBe("FRAME_TOO_LARGE");
}

/** The observer's view of the room, without the fields that tick on their own. */
const snapshot = (room: any) => JSON.stringify(room.state.toJSON());

describe("bad input", () => {
  it("every emergency-room message refuses a wrong type, a missing field, an out-of-range value and an oversized frame", async () => {
    await sleep(200);
    const before = snapshot(s.crewRoom);
    for (const [type, c] of Object.entries(emergencyCases)) {
      await expectRefusals(c.sender === "patient" ? s.pRoom : s.faRoom, type, c);
    }
    await sleep(200);
    expect(snapshot(s.crewRoom)).toBe(before);
    // the room goes on: the observer still sees the next valid move
    await s.pRoom.request("position", { lat: -1.30071, lng: 36.81001 });
    await waitFor(s.crewRoom, (st) => st.patient.lat === -1.30071, 1000, "crew sees patient");
  });

  it("every duty-room message refuses the same four kinds of bad input", async () => {
    const before = snapshot(s.fa.duty);
    for (const [type, c] of Object.entries(dutyCases)) await expectRefusals(s.fa.duty, type, c);
    expect(snapshot(s.fa.duty)).toBe(before);
  });

  it("every wallboard message refuses the same four kinds of bad input", async () => {
    const staff = await account(h, "hospital_staff", { hospitalId: "knh", by: ops });
    const wallboard = await join(h, staff.token, "hospital-knh");
    const before = snapshot(wallboard);
    for (const [type, c] of Object.entries(hospitalCases(s.id))) await expectRefusals(wallboard, type, c);
    await sleep(100);
    expect(snapshot(wallboard)).toBe(before);
    await wallboard.leave();
  });

  it("an unknown message, a malformed frame, bad msgpack and non-plain values are answered and harm no one", async () => {
    const before = snapshot(s.crewRoom);
    const errors: any[] = [];
    s.faRoom.onMessage("error", (e: any) => errors.push(e));
    const unknown = await rejection(s.faRoom.request("teleport", { to: "moon" }));
    expect(unknown.code).toBe("UNKNOWN_MESSAGE");

    const packr = new Packr({ structuredClone: true, moreTypes: true, useRecords: false });
    const cyclic: any = { lat: 1, lng: 2 };
    cyclic.self = cyclic;
    const hostile: [string, Uint8Array][] = [
      ["truncated msgpack", new Uint8Array([0x82, 0xa3, 0x6c, 0x61])],
      ["reserved msgpack byte", new Uint8Array([0xc1, 0xc1, 0xc1])],
      ["a Set", packr.pack({ lat: new Set([1]), lng: 2 })],
      ["a RegExp", packr.pack({ lat: /x/, lng: 2 })],
      ["a Date", packr.pack({ lat: new Date(), lng: 2 })],
      ["a cycle", packr.pack(cyclic)],
      ["an array", packr.pack([1, 2])],
      ["a string", packr.pack("hello")],
      ["a __proto__ key", new Packr({ useRecords: false }).pack(JSON.parse('{"lat":1,"lng":2,"__proto__":{"admin":true}}'))],
    ];
    for (const [, payload] of hostile) s.faRoom.connection.send(await rawFrame("data", "position", payload));
    s.faRoom.connection.send(await rawFrame("data", 99, new Uint8Array([0x80])));
    s.faRoom.connection.send(new Uint8Array([13]));
    s.faRoom.connection.send(new Uint8Array([21, 0xff]));
    await until(() => errors.length >= hostile.length + 3, 2000, "an error for every hostile frame");
    for (const e of errors) {
      expect(["MALFORMED_FRAME", "INVALID_PAYLOAD", "UNKNOWN_MESSAGE"]).toContain(e.code);
      expect(typeof e.message).toBe("string");
    }
    expect(errors.slice(0, hostile.length).map((e) => e.type)).toEqual(hostile.map(() => "position"));
    expect(s.faRoom.connection.isOpen).toBe(true);
    await sleep(150);
    expect(snapshot(s.crewRoom)).toBe(before);
    await s.faRoom.request("position", { lat: -1.30072, lng: 36.81002 });
    await waitFor(s.crewRoom, (st) => st.firstAiders.get(s.fa.acc.id)?.lat === -1.30072, 1000, "crew sees first-aider");
  });

  it("a frame above the transport's hard limit closes only that socket", async () => {
    const patient2 = await account(h, "patient");
    const alert = await h.http("POST", "/api/emergency/alert", SCENE, patient2.token);
    const room2 = await join(h, patient2.token, alert.body.emergencyId);
    const closed = new Promise<number>((r) => room2.onLeave((code: number) => r(code)));
    room2.connection.send(await rawFrame("data", "position", new Uint8Array(300_000)));
    expect([1006, 1009]).toContain(await closed);
    await s.pRoom.request("position", { lat: -1.30073, lng: 36.81003 });
    await waitFor(s.crewRoom, (st) => st.patient.lat === -1.30073, 1000, "others unaffected");
  });

  it("HTTP bodies: bad JSON, wrong media type, unknown fields, out-of-range values and oversized bodies get a 4xx with a code", async () => {
    const t = s.patient.token;
    const cases: [string, string, unknown, Record<string, string> | undefined, number, string][] = [
      ["POST", "/api/auth/login", "{not json", undefined, 400, "INVALID_PAYLOAD"],
      ["POST", "/api/auth/login", "email=a", { "content-type": "application/x-www-form-urlencoded" }, 415, "UNSUPPORTED_MEDIA_TYPE"],
      ["POST", "/api/auth/register", { email: "a@b.co", password: "a-long-password-1", name: "x", role: "patient", isAdmin: true }, undefined, 400, "INVALID_PAYLOAD"],
      ["POST", "/api/auth/register", { email: "not-an-email", password: "a-long-password-1", name: "x", role: "patient" }, undefined, 400, "INVALID_PAYLOAD"],
      ["POST", "/api/emergency/alert", { lat: 95, lng: 36.8 }, undefined, 400, "INVALID_PAYLOAD"],
      ["PUT", `/api/emergency/${s.id}/location`, { lat: -1.3 }, undefined, 400, "INVALID_PAYLOAD"],
      ["PUT", `/api/emergency/${s.id}/location`, { lat: "x", lng: 1 }, undefined, 400, "INVALID_PAYLOAD"],
      ["POST", `/api/emergency/${s.id}/cancel`, { reason: 5 }, undefined, 400, "INVALID_PAYLOAD"],
      ["POST", `/api/emergency/${s.id}/cancel`, {}, undefined, 400, "INVALID_PAYLOAD"],
      ["GET", "/api/hospitals/nearby?lat=100&lng=36.8", undefined, undefined, 400, "INVALID_PAYLOAD"],
      ["POST", "/api/emergency/alert", JSON.stringify({ lat: 1, lng: 1, note: "n".repeat(20_000) }), undefined, 413, "BODY_TOO_LARGE"],
      ["GET", "/api/no-such-thing", undefined, undefined, 404, "NOT_FOUND"],
      ["DELETE", "/api/emergency/alert", undefined, undefined, 405, "METHOD_NOT_ALLOWED"],
    ];
    for (const [method, path, body, headers, status, code] of cases) {
      const r = await h.http(method, path, body, t, headers);
      expect(r.status, `${method} ${path}`).toBe(status);
      expect(r.body.code, `${method} ${path}`).toBe(code);
      expect(typeof r.body.message).toBe("string");
    }
    const status = await h.http("GET", `/api/emergency/${s.id}/status`, undefined, t);
    expect(status.body.patient.lat).toBe(-1.30073);
  });

  it("text with a NUL character or a lone surrogate is refused as INVALID_PAYLOAD, over HTTP and over the socket, and nothing is stored", async () => {
    for (const name of ["nul\u0000name", "lone\uD800surrogate", "\uDC00"]) {
      const email = `text-${Math.random().toString(36).slice(2)}@haven.test`;
      const r = await h.http("POST", "/api/auth/register", { email, password: "a-long-password-1", name, role: "patient" });
      expect(r.status, JSON.stringify(name)).toBe(400);
      expect(r.body.code).toBe("INVALID_PAYLOAD");
      expect(r.body.message).toMatch(/well-formed Unicode/);
      // nothing was stored: the same e-mail registers once the name is clean
      const ok = await h.http("POST", "/api/auth/register", { email, password: "a-long-password-1", name: "Clean Name", role: "patient" });
      expect(ok.status).toBe(201);
    }
    const note = await h.http("POST", `/api/emergency/${s.id}/cancel`, { reason: "other", note: "bad\u0000note" }, s.patient.token);
    expect(note.status).toBe(400);
    expect(note.body.code).toBe("INVALID_PAYLOAD");
    // over the socket, msgpack carries UTF-8, in which a lone surrogate cannot travel; a NUL can
    const err = await rejection(s.faRoom.request("assessment", { mechanism: "fall\u0000", injuries: [], treatment: [] }));
    expect(err.code).toBe("INVALID_PAYLOAD");
    const status = await h.http("GET", `/api/emergency/${s.id}/status`, undefined, s.patient.token);
    expect(status.body.status).not.toBe("cancelled");
  });

  it("a client over its message rate is answered RATE_LIMITED, and a flood closes only that socket", async () => {
    const limited = await startHaven({ HAVEN_MAX_MESSAGES_PER_SECOND: "5" });
    try {
      const o = await login(limited, OPS.email, OPS.password);
      const sc = await scenario(limited, o, SCENE);
      const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => sc.faRoom.request("position", { lat: -1.3 + i * 1e-5, lng: 36.81 })));
      const codes = results.map((r) => (r.status === "fulfilled" ? "OK" : (r.reason as any).reason?.code));
      expect(codes.filter((c) => c === "OK").length).toBeGreaterThanOrEqual(4);
      expect(codes.filter((c) => c === "RATE_LIMITED").length).toBeGreaterThanOrEqual(4);
      await sleep(1100);
      const answered: string[] = [];
      sc.faRoom.onMessage("error", (e: any) => answered.push(e.code));
      const closed = new Promise<number>((r) => sc.faRoom.onLeave((code: number) => r(code)));
      for (let i = 0; i < 40; i++) sc.faRoom.send("position", { lat: -1.3, lng: 36.81 });
      expect(await closed).toBe(4429);
      expect(answered.length).toBeGreaterThan(0);
      expect(new Set(answered)).toEqual(new Set(["RATE_LIMITED"]));
      await sc.pRoom.request("position", { lat: -1.30074, lng: 36.81 });
      await waitFor(sc.crewRoom, (st) => st.patient.lat === -1.30074, 1000, "others unaffected");
    } finally {
      await limited.stop();
    }
  });
});
