import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, join, metric, sleep, startHaven, type Haven } from "./harness.ts";

/**
 * Abuse of the alert path (issue 9): floods of alerts and registrations from one account, one
 * device, one address and one IPv6 /64 are refused with 429 RATE_LIMITED and Retry-After, while
 * a new device behind a spent shared address (a mobile network's NAT) still raises one alert;
 * and the emergency-bypass renewal that lets a caller follow their emergency past the token's
 * lifetime, for that emergency only.
 *
 * The server trusts X-Forwarded-For here (HAVEN_TRUST_PROXY) so that one test client can speak
 * from many addresses; the limits are small so that floods are short.
 */

const SCENE = { lat: -1.2864, lng: 36.8172 };
const BYPASS_TTL_SECONDS = 10;
const LIMITS = {
  HAVEN_TRUST_PROXY: "true",
  HAVEN_ALERT_PER_HOUR_PER_ACCOUNT: "3",
  HAVEN_ALERT_PER_HOUR_PER_DEVICE: "3",
  HAVEN_ALERT_PER_HOUR_PER_ADDRESS: "4",
  HAVEN_NEW_DEVICES_PER_HOUR_PER_ADDRESS: "2",
  HAVEN_REGISTER_PER_HOUR_PER_ADDRESS: "3",
  HAVEN_REGISTER_PER_HOUR_PER_DEVICE: "2",
  HAVEN_REGISTER_PER_HOUR_PER_EMAIL: "2",
  HAVEN_BYPASS_PER_HOUR_PER_ADDRESS: "3",
  HAVEN_BYPASS_PER_HOUR_PER_DEVICE: "1",
  HAVEN_BYPASS_TOKEN_TTL_SECONDS: String(BYPASS_TTL_SECONDS),
  HAVEN_LOGIN_FAILURES_PER_HOUR_PER_ACCOUNT: "3",
  HAVEN_LOGIN_PER_MINUTE_PER_DEVICE: "4",
};

let h: Haven;
let setupAddress = 0;

beforeAll(async () => { h = await startHaven(LIMITS); });
afterAll(async () => { await h?.stop(); });

interface Answer { status: number; body: any; retryAfter: string | null }

/** A request as a client at `from` (and with `device`, when given) sends it. */
async function call(method: string, path: string, o: { from: string; device?: string; token?: string; body?: unknown }): Promise<Answer> {
  const headers: Record<string, string> = { "x-forwarded-for": o.from };
  if (o.device) headers["x-haven-device"] = o.device;
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  if (o.body !== undefined) headers["content-type"] = "application/json";
  const r = await fetch(`${h.url}${path}`, { method, headers, body: o.body === undefined ? undefined : JSON.stringify(o.body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : undefined, retryAfter: r.headers.get("retry-after") };
}

/** A patient registered and signed in from an address of its own (so that setup spends no budget under test). */
async function patient(): Promise<{ id: string; token: string }> {
  const from = `10.77.${Math.floor(++setupAddress / 250)}.${setupAddress % 250 + 1}`;
  const email = `abuse-${randomUUID().slice(0, 8)}@haven.test`;
  const reg = await call("POST", "/api/auth/register", { from, body: { email, password: "a-long-password-1", name: "Patient", role: "patient" } });
  expect(reg.status, JSON.stringify(reg.body)).toBe(201);
  const session = await call("POST", "/api/auth/login", { from, body: { email, password: "a-long-password-1" } });
  expect(session.status).toBe(200);
  return { id: session.body.user.id, token: session.body.accessToken };
}

const alert = (token: string, from: string, device?: string) => call("POST", "/api/emergency/alert", { from, device, token, body: SCENE });
const cancel = (token: string, id: string, from: string) => call("POST", `/api/emergency/${id}/cancel`, { from, token, body: { reason: "false_alarm" } });

function expectLimited(a: Answer): void {
  expect(a.status, JSON.stringify(a.body)).toBe(429);
  expect(a.body).toMatchObject({ code: "RATE_LIMITED", message: expect.any(String) });
  const seconds = Number(a.retryAfter);
  expect(Number.isInteger(seconds) && seconds >= 1 && seconds <= 3600, `Retry-After: ${a.retryAfter}`).toBe(true);
}

describe(`Abuse (transport: ${process.env.HAVEN_TRANSPORT ?? "auto"})`, () => {
  it("one account cannot loop raise → cancel → raise past its budget; its active emergency is still answered", async () => {
    const p = await patient();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      // a fresh address and device each time: the account's own budget is what stops it
      const a = await alert(p.token, `198.51.100.${10 + i}`, `loop-device-${i}-${randomUUID()}`);
      expect(a.status, JSON.stringify(a.body)).toBe(201);
      ids.push(a.body.emergencyId);
      if (i < 2) expect((await cancel(p.token, a.body.emergencyId, "198.51.100.10")).status).toBe(200);
    }
    // the third is still active: asking again answers it, and costs nothing
    const again = await alert(p.token, "198.51.100.20", `loop-device-x-${randomUUID()}`);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ emergencyId: ids[2], created: false });
    expect((await cancel(p.token, ids[2], "198.51.100.10")).status).toBe(200);
    expectLimited(await alert(p.token, "198.51.100.21", `loop-device-y-${randomUUID()}`));
  });

  it("one device cannot raise alerts for many accounts", async () => {
    const device = `one-device-${randomUUID()}`;
    const statuses: number[] = [];
    let last!: Answer;
    for (let i = 0; i < 4; i++) {
      last = await alert((await patient()).token, `198.51.101.${10 + i}`, device);
      statuses.push(last.status);
    }
    expect(statuses).toEqual([201, 201, 201, 429]);
    expectLimited(last);
  });

  it("one address, and one IPv6 /64, cannot raise alerts for many accounts; another /64 can", async () => {
    const fromAddress: number[] = [];
    for (let i = 0; i < 5; i++) fromAddress.push((await alert((await patient()).token, "203.0.113.7")).status);
    expect(fromAddress).toEqual([201, 201, 201, 201, 429]);
    // the IPv4-mapped form of the same address is the same address
    expectLimited(await alert((await patient()).token, "::ffff:203.0.113.7"));

    const fromPrefix: number[] = [];
    for (let i = 1; i <= 5; i++) fromPrefix.push((await alert((await patient()).token, `2001:db8:aa:1:${i}::${i}`)).status);
    expect(fromPrefix).toEqual([201, 201, 201, 201, 429]);
    expect((await alert((await patient()).token, "2001:db8:aa:2::1")).status).toBe(201);
  });

  it("behind a shared address whose budget is spent, a new device still raises one alert, within a cap of new devices", async () => {
    const nat = "100.64.0.1"; // carrier-grade NAT space
    for (let i = 0; i < 4; i++) expect((await alert((await patient()).token, nat)).status).toBe(201);
    expectLimited(await alert((await patient()).token, nat)); // spent, and no device to speak of

    const first = await alert((await patient()).token, nat, "nat-phone-0001");
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    expect(first.body.created).toBe(true);
    // the same device again (another account) is not new any more
    expectLimited(await alert((await patient()).token, nat, "nat-phone-0001"));
    // a second new device fits the address's budget of new devices (2 here); a third does not
    expect((await alert((await patient()).token, nat, "nat-phone-0002")).status).toBe(201);
    expectLimited(await alert((await patient()).token, nat, "nat-phone-0003"));
    // another address is not affected
    expect((await alert((await patient()).token, "100.64.0.2", "nat-phone-0003")).status).toBe(201);
    expect(await metric(h, "haven_new_device_passes_total")).toBeGreaterThanOrEqual(2);
    expect(await metric(h, "haven_limiter_memory_keys")).toBeGreaterThan(0);
  });

  it("registration floods from one address, one /64, one device and for one email are limited", async () => {
    const register = (from: string, o: { device?: string; email?: string } = {}) => call("POST", "/api/auth/register", {
      from, device: o.device,
      body: { email: o.email ?? `flood-${randomUUID().slice(0, 8)}@haven.test`, password: "a-long-password-1", name: "Flood", role: "patient" },
    });
    const statuses = async (n: number, f: (i: number) => Promise<Answer>) => {
      const out: Answer[] = [];
      for (let i = 0; i < n; i++) out.push(await f(i));
      return out;
    };

    const byAddress = await statuses(4, () => register("192.0.2.50"));
    expect(byAddress.map((a) => a.status)).toEqual([201, 201, 201, 429]);
    expectLimited(byAddress[3]);
    // ops onboarding staff from the same address is not self-service, and is not counted
    const ops = (await call("POST", "/api/auth/login", { from: "10.99.0.2", body: OPS })).body.accessToken;
    const staff = await call("POST", "/api/auth/register", { from: "192.0.2.50", token: ops, body: { email: `staff-${randomUUID().slice(0, 8)}@haven.test`, password: "a-long-password-1", name: "Staff", role: "hospital_staff", hospitalId: "knh" } });
    expect(staff.status, JSON.stringify(staff.body)).toBe(201);

    const byPrefix = await statuses(4, (i) => register(`2001:db8:bb:1::${i + 1}`));
    expect(byPrefix.map((a) => a.status)).toEqual([201, 201, 201, 429]);
    expect((await register("2001:db8:bb:2::1")).status).toBe(201);

    const device = `reg-device-${randomUUID()}`;
    const byDevice = await statuses(3, (i) => register(`192.0.2.${60 + i}`, { device }));
    expect(byDevice.map((a) => a.status)).toEqual([201, 201, 429]);
    expectLimited(byDevice[2]);

    const email = `same-${randomUUID().slice(0, 8)}@haven.test`;
    const byEmail = await statuses(3, (i) => register(`192.0.2.${70 + i}`, { email }));
    expect(byEmail.map((a) => a.status)).toEqual([201, 409, 429]);

    // a malformed device id is refused, not ignored
    expect((await register("192.0.2.80", { device: "short" })).status).toBe(400);
  });

  it("password guesses at one account, and logins from one device, are limited; a right password gives its point back", async () => {
    const email = `guessed-${randomUUID().slice(0, 8)}@haven.test`;
    expect((await call("POST", "/api/auth/register", { from: "192.0.2.100", body: { email, password: "a-long-password-1", name: "P", role: "patient" } })).status).toBe(201);
    const login = (password: string, from: string, device?: string) => call("POST", "/api/auth/login", { from, device, body: { email, password } });
    // successful logins do not count against the account
    for (let i = 0; i < 4; i++) expect((await login("a-long-password-1", `192.0.2.${101 + i}`)).status).toBe(200);
    const guesses: number[] = [];
    for (let i = 0; i < 4; i++) guesses.push((await login("wrong-password-x", `198.18.1.${i + 1}`)).status);
    expect(guesses).toEqual([401, 401, 401, 429]);
    expectLimited(await login("a-long-password-1", "198.18.1.50"));

    const device = `login-device-${randomUUID()}`;
    const fromDevice: number[] = [];
    for (let i = 0; i < 5; i++) fromDevice.push((await call("POST", "/api/auth/login", { from: `198.18.2.${i + 1}`, device, body: { email: `nobody-${i}@haven.test`, password: "wrong-password-x" } })).status);
    expect(fromDevice).toEqual([401, 401, 401, 401, 429]);
  });

  it("emergency-bypass tokens: one per device, a few per address or /64, and one for a new device behind a spent address", async () => {
    const bypass = (from: string, deviceId: string) => call("POST", "/api/auth/emergency-bypass", { from, body: { deviceId } });
    expect((await bypass("192.0.2.90", "bypass-device-0001")).status).toBe(201);
    expectLimited(await bypass("192.0.2.91", "bypass-device-0001"));

    const prefix: number[] = [];
    for (let i = 1; i <= 3; i++) prefix.push((await bypass(`2001:db8:cc:1::${i}`, `bypass-p-${i}-${randomUUID()}`)).status);
    expect(prefix).toEqual([201, 201, 201]);
    // spent: a new device gets one, then the cap of new devices (2) holds
    expect((await bypass("2001:db8:cc:1::99", `bypass-new-1-${randomUUID()}`)).status).toBe(201);
    expect((await bypass("2001:db8:cc:1::98", `bypass-new-2-${randomUUID()}`)).status).toBe(201);
    expectLimited(await bypass("2001:db8:cc:1::97", `bypass-new-3-${randomUUID()}`));
  });

  it("without HAVEN_TRUST_PROXY, a forged X-Forwarded-For does not walk around a limit", async () => {
    const direct = await startHaven({ HAVEN_REGISTER_PER_HOUR_PER_ADDRESS: "2" });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await direct.http("POST", "/api/auth/register",
          { email: `xff-${randomUUID().slice(0, 8)}@haven.test`, password: "a-long-password-1", name: "X", role: "patient" },
          undefined, { "x-forwarded-for": `198.18.0.${i + 1}` });
        statuses.push(r.status);
      }
      expect(statuses).toEqual([201, 201, 429]);
    } finally {
      await direct.stop();
    }
  });

  it("a bypass caller renews past the token's lifetime, for their emergency only; nobody else can", async () => {
    const from = "192.0.2.150";
    const issued = await call("POST", "/api/auth/emergency-bypass", { from, body: { deviceId: `renew-${randomUUID()}`, name: "Walk-in caller" } });
    expect(issued.status).toBe(201);
    const t0 = issued.body.accessToken as string;
    const issuedAt = Date.now();
    const raised = await alert(t0, from);
    expect(raised.status).toBe(201);
    const id = raised.body.emergencyId as string;
    const renew = (token: string | undefined, emergencyId = id) => call("POST", `/api/emergency/${emergencyId}/renew`, { from, token, body: {} });

    // nobody else: no token, a forged one, an account, ops, another bypass caller
    const other = await patient();
    const ops = (await call("POST", "/api/auth/login", { from: "10.99.0.1", body: OPS })).body.accessToken;
    const stranger = (await call("POST", "/api/auth/emergency-bypass", { from: "192.0.2.151", body: { deviceId: `renew-stranger-${randomUUID()}` } })).body.accessToken;
    expect((await renew(undefined)).status).toBe(401);
    expect((await renew(`${t0.slice(0, -4)}AAAA`)).status).toBe(401);
    expect((await renew(other.token)).body.code).toBe("FORBIDDEN");
    expect((await renew(ops)).body.code).toBe("FORBIDDEN");
    expect(await renew(stranger)).toMatchObject({ status: 403, body: { code: "NOT_ENTITLED" } });
    // and not for another emergency
    const elsewhere = await alert((await patient()).token, "192.0.2.152");
    expect(elsewhere.status).toBe(201);
    expect((await renew(t0, elsewhere.body.emergencyId)).status).toBe(403);

    // renewed late in the first token's life
    await sleep(Math.max(0, issuedAt + (BYPASS_TTL_SECONDS - 2) * 1000 - Date.now()));
    const renewed = await renew(t0);
    expect(renewed.status, JSON.stringify(renewed.body)).toBe(201);
    expect(renewed.body).toMatchObject({ subject: issued.body.subject, emergencyId: id });
    const t1 = renewed.body.accessToken as string;
    expect(renewed.body.accessTokenExpiresAt).toBeGreaterThan(issued.body.accessTokenExpiresAt);
    // the renewed token follows this emergency and raises nothing
    expect((await alert(t1, from)).body.code).toBe("BYPASS_USED");
    expect((await call("GET", `/api/emergency/${elsewhere.body.emergencyId}/status`, { from, token: t1 })).status).toBe(403);
    expect((await renew(t1, elsewhere.body.emergencyId)).status).toBe(403);

    // past the first token's lifetime (and the verifier's 5 s tolerance), it is refused; the renewed one works
    const deadline = Date.now() + 15_000;
    while ((await call("GET", `/api/emergency/${id}/status`, { from, token: t0 })).status !== 401) {
      expect(Date.now()).toBeLessThan(deadline);
      await sleep(250);
    }
    expect(Date.now() - issuedAt).toBeGreaterThan(BYPASS_TTL_SECONDS * 1000);
    expect((await renew(t0)).status).toBe(401);
    const status = await call("GET", `/api/emergency/${id}/status`, { from, token: t1 });
    expect(status.status).toBe(200);
    expect(status.body.id).toBe(id);
    const room = await join(h, t1, id);
    expect(room.state.bypass).toBe(true);
    await room.leave();
    // renewed again with the renewed token; once the emergency is over, there is nothing to renew
    const t2 = (await renew(t1)).body.accessToken as string;
    expect(typeof t2).toBe("string");
    expect((await cancel(t2, id, from)).status).toBe(200);
    expect([404, 409]).toContain((await renew(t2)).status);
  }, 45_000);
});
