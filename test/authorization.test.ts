import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PublicProtocol } from "paseto";
import { GenerateKeyPairFactory, ImportSecretKeyFactory, SignFactory } from "paseto/v4/public";
import { OPS, account, join, login, onDuty, sdk, startHaven, type Account, type Haven } from "./harness.ts";

const v4 = new PublicProtocol(GenerateKeyPairFactory, SignFactory, ImportSecretKeyFactory);
const SCENE = { lat: -1.2864, lng: 36.8172 };
let h: Haven;
let secretKey: string;
let ops: Account;

beforeAll(async () => {
  const { secretKey: sk } = await v4.GenerateKeyPair({ extractable: true });
  const { ExportSecretKeyFactory } = await import("paseto/v4/public");
  secretKey = String(await new PublicProtocol(ExportSecretKeyFactory).ExportSecretKey(sk));
  h = await startHaven({ HAVEN_TOKEN_SECRET_KEY: secretKey });
  ops = await login(h, OPS.email, OPS.password);
});
afterAll(async () => { await h?.stop(); });

/** Mints a token the way Haven does, with a chosen key, claims and clock. */
async function mint(key: string, claims: Record<string, unknown>, o: { now?: Date; expiresIn?: number; assertion?: string } = {}) {
  const sk = await v4.ImportSecretKey(key as `k4.secret.${string}`);
  return v4.Sign(sk, { aud: "haven", iss: "haven", jti: crypto.randomUUID(), ...claims } as never, {
    expiresIn: o.expiresIn ?? 300, now: o.now, footer: new TextEncoder().encode(JSON.stringify({ kid: "k1" })),
    implicitAssertion: new TextEncoder().encode(o.assertion ?? "haven:ws:v1:test"),
  });
}

async function joinError(hv: Haven, token: string, roomId: string): Promise<{ code: number; message: string }> {
  try {
    const room = await sdk(hv, token).joinById(roomId);
    await room.leave();
  } catch (e: any) {
    return { code: e.code, message: String(e.message) };
  }
  throw new Error("the join was not refused");
}

/** A raw WebSocket upgrade; resolves with the HTTP status the server answered. */
function upgradeStatus(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers: { connection: "Upgrade", upgrade: "websocket", "sec-websocket-version": "13", "sec-websocket-key": Buffer.from("0123456789abcdef").toString("base64") } });
    req.on("upgrade", (res, socket) => { socket.destroy(); resolve(res.statusCode!); });
    req.on("response", (res) => { res.resume(); resolve(res.statusCode!); });
    req.on("error", reject);
    req.end();
  });
}

async function emergencyOf(patient: Account) {
  const r = await h.http("POST", "/api/emergency/alert", SCENE, patient.token);
  expect([200, 201]).toContain(r.status);
  return r.body.emergencyId as string;
}

describe("authorization", () => {
  it("a token the server did not sign is refused over HTTP and on a socket join", async () => {
    const patient = await account(h, "patient");
    const id = await emergencyOf(patient);
    const { secretKey: otherKey } = await v4.GenerateKeyPair({ extractable: true });
    const { ExportSecretKeyFactory } = await import("paseto/v4/public");
    const forged = await mint(String(await new PublicProtocol(ExportSecretKeyFactory).ExportSecretKey(otherKey)), { sub: patient.id, role: "patient" });
    const http = await h.http("GET", `/api/emergency/${id}/status`, undefined, forged);
    expect(http.status).toBe(401);
    expect(http.body.code).toBe("TOKEN_INVALID");
    expect((await joinError(h, forged, id)).code).toBe(401);
    // same key, but minted for another service or environment
    const otherEnv = await mint(secretKey, { sub: patient.id, role: "patient" }, { assertion: "haven:ws:v1:production" });
    expect((await h.http("GET", `/api/emergency/${id}/status`, undefined, otherEnv)).status).toBe(401);
    // tampered payload
    const tampered = patient.token.slice(0, 30) + (patient.token[30] === "A" ? "B" : "A") + patient.token.slice(31);
    expect((await joinError(h, tampered, id)).code).toBe(401);
  });

  it("an expired token is refused with TOKEN_EXPIRED; a fresh one from /refresh works", async () => {
    const patient = await account(h, "patient");
    const id = await emergencyOf(patient);
    const expired = await mint(secretKey, { sub: patient.id, role: "patient" }, { now: new Date(Date.now() - 600_000), expiresIn: 60 });
    const r = await h.http("GET", `/api/emergency/${id}/status`, undefined, expired);
    expect(r.status).toBe(401);
    expect(r.body.code).toBe("TOKEN_EXPIRED");
    expect((await joinError(h, expired, id)).code).toBe(401);
    expect(await upgradeStatus(h.port, `/x/${id}?sessionId=abc&_authToken=${expired}`)).toBe(401);

    const refreshed = await h.http("POST", "/api/auth/refresh", { refreshToken: patient.refreshToken });
    expect(refreshed.status).toBe(200);
    const room = await join(h, refreshed.body.accessToken, id);
    expect(room.state.id).toBe(id);
    await room.leave();
    // the old refresh token was rotated: replaying it revokes the family, including the new one
    const replay = await h.http("POST", "/api/auth/refresh", { refreshToken: patient.refreshToken });
    expect(replay.status).toBe(401);
    expect((await h.http("POST", "/api/auth/refresh", { refreshToken: refreshed.body.refreshToken })).status).toBe(401);
  });

  it("a token claiming a role it was not given is refused (wrong role for the room)", async () => {
    const fa = await account(h, "first_aider");
    const staff = await account(h, "hospital_staff", { hospitalId: "knh", by: ops });
    // a first-aider cannot watch a hospital's wallboard, nor staff of another hospital
    expect((await joinError(h, fa.token, "hospital-knh")).code).toBe(4403);
    expect((await joinError(h, staff.token, "hospital-aga-khan")).code).toBe(4403);
    // a patient cannot create staff accounts, nor register as ops
    const r = await h.http("POST", "/api/auth/register", { email: "x@haven.test", password: "a-long-password-1", name: "x", role: "ops_admin" }, fa.token);
    expect(r.status).toBe(403);
    // a patient sending a responder's message is refused by role
    const patient = await account(h, "patient");
    const room = await join(h, patient.token, await emergencyOf(patient));
    await expect(room.request("assessment", { mechanism: "x", injuries: [], treatment: [] })).rejects.toMatchObject({ reason: { code: "FORBIDDEN" } });
    await room.leave();
  });

  it("a patient cannot join or read another patient's emergency", async () => {
    const alice = await account(h, "patient");
    const bob = await account(h, "patient");
    const id = await emergencyOf(alice);
    expect((await joinError(h, bob.token, id)).code).toBe(4403);
    const r = await h.http("GET", `/api/emergency/${id}/status`, undefined, bob.token);
    expect(r.status).toBe(403);
    expect((await h.http("PUT", `/api/emergency/${id}/location`, SCENE, bob.token)).status).toBe(403);
    expect((await h.http("POST", `/api/emergency/${id}/cancel`, { reason: "other" }, bob.token)).status).toBe(403);
  });

  it("a first-aider who was not assigned cannot join; an unverified one cannot go on duty; nobody joins another's duty room", async () => {
    const stranger = await account(h, "first_aider");
    const patient = await account(h, "patient");
    const id = await emergencyOf(patient);
    expect((await joinError(h, stranger.token, id)).code).toBe(4403);
    // an unverified first-aider cannot go on duty at all
    const d = await h.http("POST", "/api/duty", {}, stranger.token);
    expect(d.status).toBe(403);
    expect(d.body.code).toBe("NOT_VERIFIED");
    // and nobody joins another responder's duty room
    const other = await onDuty(h, ops, "first_aider", SCENE);
    const v = await h.http("POST", `/api/responders/${stranger.id}/verification`, { verified: true }, ops.token);
    expect(v.status).toBe(200);
    expect((await joinError(h, stranger.token, `duty-${other.acc.id}`)).code).toBe(4403);
    await other.duty.leave();
  });

  it("an emergency-bypass token raises one emergency and is good for that one only", async () => {
    const b = await h.http("POST", "/api/auth/emergency-bypass", { deviceId: "device-0001", name: "Walk-in caller" });
    expect(b.status).toBe(201);
    const token = b.body.accessToken as string;
    const first = await h.http("POST", "/api/emergency/alert", SCENE, token);
    expect(first.status).toBe(201);
    expect(first.body.bypass).toBe(true);
    // a second alert while the first is active returns the first
    const dup = await h.http("POST", "/api/emergency/alert", SCENE, token);
    expect(dup.status).toBe(200);
    expect(dup.body.emergencyId).toBe(first.body.emergencyId);
    const room = await join(h, token, first.body.emergencyId);
    expect(room.state.bypass).toBe(true);
    await room.leave();
    // another emergency: refused
    const other = await account(h, "patient");
    const otherId = await emergencyOf(other);
    expect((await joinError(h, token, otherId)).code).toBe(4403);
    expect((await h.http("GET", `/api/emergency/${otherId}/status`, undefined, token)).status).toBe(403);
    // once its emergency is over, it cannot raise another
    expect((await h.http("POST", `/api/emergency/${first.body.emergencyId}/cancel`, { reason: "false_alarm" }, token)).status).toBe(200);
    const again = await h.http("POST", "/api/emergency/alert", SCENE, token);
    expect(again.status).toBe(403);
    expect(again.body.code).toBe("BYPASS_USED");
  });

  it("emergency bypass is rate-limited per device and per address, with one each for new devices behind a spent address", async () => {
    // device-0001 had its one of this hour in the previous test
    const again = await h.http("POST", "/api/auth/emergency-bypass", { deviceId: "device-0001" });
    expect(again).toMatchObject({ status: 429, body: { code: "RATE_LIMITED" } });
    const statuses: number[] = [];
    for (let i = 0; i < 13; i++) statuses.push((await h.http("POST", "/api/auth/emergency-bypass", { deviceId: `limit-device-${i}` })).status);
    // 3 an hour per address (one went to the previous test), then one for each device never seen, 10 such an hour
    expect(statuses.filter((s) => s === 201).length).toBe(12);
    expect(statuses.at(-1)).toBe(429);
  });

  it("a socket upgrade without a token is refused, and a seat cannot be taken over with another party's token", async () => {
    const patient = await account(h, "patient");
    const intruder = await account(h, "patient");
    const id = await emergencyOf(patient);
    expect(await upgradeStatus(h.port, `/x/${id}?sessionId=abc`)).toBe(401);
    const room = await join(h, patient.token, id);
    const reconnectionToken = room.reconnectionToken.split(":")[1];
    const path = (token: string) => `/x/${id}?sessionId=${room.sessionId}&reconnectionToken=${reconnectionToken}&skipHandshake=1&_authToken=${token}`;
    expect(await upgradeStatus(h.port, path(intruder.token))).toBe(403);
    expect(room.connection.isOpen).toBe(true);
    await room.leave();
  });

  it("a seat reserved by one party cannot be taken on a join by another party's socket, even an entitled one", async () => {
    const patient = await account(h, "patient");
    const id = await emergencyOf(patient);
    const seat = await h.http("POST", `/matchmake/joinById/${id}`, {}, patient.token);
    expect(seat.status).toBe(200);
    const path = (token: string) => `/${seat.body.processId}/${id}?sessionId=${seat.body.sessionId}&_authToken=${token}`;
    // ops may join any emergency, but not on the patient's seat
    expect(await upgradeStatus(h.port, path(ops.token))).toBe(403);
    // the patient's own socket takes it
    expect(await upgradeStatus(h.port, path(patient.token))).toBe(101);
  });

  it("logins are rate-limited per address", async () => {
    const limited = await startHaven({ HAVEN_LOGIN_PER_MINUTE_PER_ADDRESS: "3" });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await limited.http("POST", "/api/auth/login", { email: "nobody@haven.test", password: "wrong-password" })).status);
      expect(statuses).toEqual([401, 401, 401, 429, 429]);
    } finally {
      await limited.stop();
    }
  });

  it("clients cannot create rooms through the matchmaker", async () => {
    const patient = await account(h, "patient");
    for (const method of ["create", "joinOrCreate", "join"]) {
      const r = await h.http("POST", `/matchmake/${method}/emergency`, {}, patient.token);
      expect(r.status, method).toBe(403);
    }
    const anon = await h.http("POST", "/matchmake/joinById/hospital-knh", {});
    expect(anon.status).toBe(401);
    const missing = await h.http("POST", "/matchmake/joinById/no-such-room", {}, patient.token);
    expect(missing).toMatchObject({ status: 404, body: { code: "ROOM_NOT_FOUND" } });
  });
});
