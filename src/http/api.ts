import { timingSafeEqual } from "node:crypto";
import { matchMaker, createAuthContext, ErrorCode } from "@colyseus/core";
import type { Principal } from "../auth/tokens.ts";
import type { Accounts } from "../auth/accounts.ts";
import { HavenError } from "../protocol/errors.ts";
import { validate } from "../protocol/validate.ts";
import type { Grant, RequestLimits } from "../limits/requests.ts";
import { services } from "../services.ts";
import { bearer, jsonBody, Router, type HttpRequest, type HttpResponse } from "./router.ts";
import type { DutyCreateOptions } from "../../rooms/DutyRoom.ts";
import { dutyRoomId } from "../domain/duty.ts";
import type { CallResult } from "../protocol/results.ts";
import { actsForHospital, hospitalIdOfRoom, hospitalRoomId, isUuid, OPS_ROOM_ID } from "../domain/identity.ts";
import { SEAT_SUBJECT } from "../../rooms/HavenRoom.ts";
import { isLoopback } from "../limits/address.ts";
import { metricsText } from "./metrics.ts";
import { mountPages } from "./pages.ts";
import { ensureRoom } from "../cluster/rooms.ts";
import type { Specialty } from "../domain/hospitals.ts";
import { divertUntilProblem, divertView } from "../domain/divert.ts";
import type { DivertRequest } from "../../rooms/HospitalRoom.ts";
import { notificationRoutes, phoneField } from "./notify-api.ts";

export interface ApiContext {
  accounts: Accounts;
  /** Limits on register, login, bypass, alert and bypass renewal. */
  limits: RequestLimits;
  transport: "uws" | "ws";
  startedAt: number;
  /** `starting` until every emergency this node must restore is back; `stopping` once shutdown began. */
  phase: () => "starting" | "ready" | "stopping";
}

/**
 * What a node serves before it is ready (while it restores emergencies after a restart) and once
 * it is stopping: its health, readiness and metrics, and what needs no room (accounts, profiles).
 * Everything else (alerts, duty, emergency and hospital calls, matchmaking) depends on rooms that
 * may not be back yet, and answers `503 UNAVAILABLE` with `Retry-After`.
 */
const SERVED_WHEN_NOT_READY = /^\/(health|ready|metrics|wallboard|ops)$|^\/web\/|^\/api\/(auth\/|medical-profile$)/;
const RETRY_AFTER_SECONDS = "1";

const ok = (body: unknown, status = 200): HttpResponse => ({ status, body });

async function principalOf(req: HttpRequest): Promise<Principal> {
  return services().tokens.verify(bearer(req));
}

async function optionalPrincipal(req: HttpRequest): Promise<Principal | undefined> {
  return bearer(req) === undefined ? undefined : principalOf(req);
}

function requireRole(p: Principal, roles: readonly string[]): void {
  if (!roles.includes(p.role)) throw new HavenError("FORBIDDEN", `this needs one of: ${roles.join(", ")}`);
}

/** Calls a method on a room actor (here or, in a cluster, wherever it lives) and unwraps its CallResult. */
async function callRoom<T>(roomId: string, method: string, args: unknown[]): Promise<T> {
  let result: CallResult;
  try {
    result = await matchMaker.remoteRoomCall(roomId, method, args) as CallResult;
  } catch {
    throw new HavenError("EMERGENCY_NOT_FOUND", "no such active emergency");
  }
  if (!result.ok) throw new HavenError(result.error.code as never, result.error.message);
  return result as T;
}

/** The emergency's room, wherever it lives; brought back first if its node died. */
async function requireEmergency(id: string): Promise<void> {
  if (!isUuid(id)) throw new HavenError("EMERGENCY_NOT_FOUND", "no such active emergency");
  await services().emergencies.ensure(id);
}

const DEVICE_ID = /^[A-Za-z0-9_.:-]{8,128}$/;

/**
 * The client's device id: the `X-Haven-Device` header (8–128 of `[A-Za-z0-9_.:-]`), an opaque
 * id the app generates once per installation. It is the client's say-so, counted as such
 * (src/limits/requests.ts); a malformed one is refused rather than ignored.
 */
function deviceOf(req: HttpRequest): string | undefined {
  const d = req.headers["x-haven-device"];
  if (d === undefined) return undefined;
  if (!DEVICE_ID.test(d)) throw new HavenError("INVALID_PAYLOAD", "X-Haven-Device must be 8–128 characters of A-Z a-z 0-9 _ . : -");
  return d;
}

const CLOSED_STATUSES = new Set(["handed_over", "cancelled"]);


/**
 * Before a join by id: the room of an active emergency, of an approved hospital's wallboard or
 * the ops room is (re)opened if no live node holds it, so a client whose node died rejoins by the
 * same id.
 */
async function ensureJoinable(roomId: string): Promise<void> {
  const s = services();
  const hospitalId = hospitalIdOfRoom(roomId);
  if (roomId === OPS_ROOM_ID) {
    // opened for any caller, so that every role but operations is refused the same way, at its join
    // (an ops room nobody joins closes by itself)
    await ensureRoom(s.membership, "ops", roomId, {});
  } else if (isUuid(roomId)) {
    await s.emergencies.ensure(roomId).catch((error) => {
      if ((error as HavenError).code === "EMERGENCY_NOT_FOUND") throw new HavenError("ROOM_NOT_FOUND", `no room ${roomId}`);
      throw error;
    });
  } else if (hospitalId !== undefined && s.hospitals.get(hospitalId)) {
    await ensureRoom(s.membership, "hospital", roomId, { hospitalId });
  }
}

/**
 * `/metrics` tells how busy a node is and what it refuses: with `HAVEN_METRICS_TOKEN` set, only a
 * scraper that presents it; without one, only this host (loopback), and never in production.
 */
function metricsAllowed(req: HttpRequest, token: string | undefined, production: boolean): void {
  if (token !== undefined) {
    const given = Buffer.from(bearer(req) ?? "");
    const wanted = Buffer.from(token);
    if (given.length !== wanted.length || !timingSafeEqual(given, wanted)) throw new HavenError("UNAUTHENTICATED", "/metrics needs the metrics token (Authorization: Bearer)");
    return;
  }
  if (production || !isLoopback(req.ip)) throw new HavenError("FORBIDDEN", "/metrics is served to this host only; set HAVEN_METRICS_TOKEN to scrape it from elsewhere");
}

export function buildApi(ctx: ApiContext): Router {
  const s = services();
  const { config } = s;
  const router = new Router(config.corsOrigins);
  const { limits } = ctx;
  router.before((req) => {
    const phase = ctx.phase();
    if (phase === "ready" || SERVED_WHEN_NOT_READY.test(req.path)) return undefined;
    const error = new HavenError("UNAVAILABLE", phase === "starting"
      ? "this node is starting and restoring its emergencies; retry"
      : "this node is shutting down; retry");
    return { status: error.status, headers: { "retry-after": RETRY_AFTER_SECONDS }, body: error.toJSON() };
  });

  // ---------------------------------------------------------------- operations
  router.on("GET", "/health", () => ok({
    status: "ok",
    transport: ctx.transport,
    uptimeSeconds: Math.round((Date.now() - ctx.startedAt) / 1000),
    emergencies: s.emergencies.activeCount(),
    tokenKey: s.tokens.development ? "development" : "configured",
    cluster: s.membership.clustered ? { processId: s.membership.processId, node: config.nodeName, redis: s.membership.connected() ? "up" : "down" } : false,
  }));
  router.on("GET", "/ready", () => ctx.phase() === "ready" ? ok({ ready: true }) : { status: 503, body: { ready: false, phase: ctx.phase() } });
  router.on("GET", "/metrics", (req) => {
    metricsAllowed(req, config.metricsToken, config.env === "production");
    return { status: 200, text: metricsText(ctx.transport), headers: { "content-type": "text/plain; version=0.0.4" } };
  });

  // ---------------------------------------------------------------- accounts
  router.on("POST", "/api/auth/register", async (req) => {
    const body = validate<Parameters<Accounts["register"]>[0]>("register", jsonBody(req));
    const caller = await optionalPrincipal(req);
    // self-service registrations are counted; administrators onboarding staff are signed in and accountable
    const administrator = caller?.role === "ops_admin" || caller?.role === "hospital_admin";
    if (!administrator) await limits.take("register", { account: `email:${body.email.toLowerCase()}`, device: deviceOf(req), address: req.ip });
    if (body.phone !== undefined) body.phone = phoneField(body.phone, "phone"); // stored as E.164: inbound SMS and USSD find the account by it
    const user = await ctx.accounts.register(body, caller);
    return ok({ id: user.id, email: user.email, name: user.name, role: user.role, hospitalId: user.hospitalId }, 201);
  });
  router.on("POST", "/api/auth/login", async (req) => {
    const body = validate<{ email: string; password: string }>("login", jsonBody(req));
    const grant = await limits.take("login", { account: `email:${body.email.toLowerCase()}`, device: deviceOf(req), address: req.ip });
    const session = await ctx.accounts.login(body.email, body.password);
    await grant.refund("account"); // an account's budget counts failed logins only
    return ok(session);
  });
  router.on("POST", "/api/auth/refresh", async (req) => {
    const body = validate<{ refreshToken: string }>("refresh", jsonBody(req));
    return ok(await ctx.accounts.refresh(body.refreshToken));
  });
  router.on("POST", "/api/auth/logout", async (req) => {
    const body = validate<{ refreshToken: string }>("logout", jsonBody(req));
    await ctx.accounts.logout(body.refreshToken);
    return ok({ ok: true });
  });
  router.on("POST", "/api/auth/emergency-bypass", async (req) => {
    const body = validate<{ deviceId: string; phone?: string; name?: string }>("bypass", jsonBody(req));
    await limits.take("bypass", { device: body.deviceId, address: req.ip });
    return ok(await ctx.accounts.emergencyBypass(body), 201);
  });

  // ---------------------------------------------------------------- emergencies
  router.on("POST", "/api/emergency/alert", async (req) => {
    const p = await principalOf(req);
    const body = validate<{ lat: number; lng: number; accuracy?: number; priority?: "critical" | "high" | "medium"; note?: string }>("alert", jsonBody(req));
    if (p.emergencyId !== undefined) throw new HavenError("BYPASS_USED", "a renewed emergency-bypass token follows its emergency; it raises none");
    // a bypass token raises one emergency only and was counted when it was issued
    const limited = p.role === "patient" && !p.bypass;
    let grant: Grant | undefined;
    if (limited) {
      try {
        grant = await limits.take("alert", { account: p.sub, device: deviceOf(req), address: req.ip });
      } catch (error) {
        // a limit refuses new emergencies only: the patient's active one is always answered
        const active = await s.emergencyStore.activeFor(p.sub).catch(() => undefined);
        if (!active) throw error;
        await s.emergencies.ensure(active);
        return ok({ emergencyId: active, roomName: "emergency", created: false, bypass: false });
      }
    }
    let raised: Awaited<ReturnType<typeof s.emergencies.raise>>;
    try {
      raised = await s.emergencies.raise(p, await ctx.accounts.displayName(p), body);
    } catch (error) {
      await grant?.refund();
      throw error;
    }
    const { id, bypass, created } = raised;
    if (!created) await grant?.refund();
    return ok({ emergencyId: id, roomName: "emergency", created, bypass }, created ? 201 : 200);
  });
  router.on("POST", "/api/emergency/:id/renew", async (req, { id }) => {
    const p = await principalOf(req);
    validate("bypassRenew", jsonBody(req));
    if (!p.bypass) throw new HavenError("FORBIDDEN", "only an emergency-bypass caller renews this way; accounts refresh their session");
    if (p.emergencyId !== undefined && p.emergencyId !== id) throw new HavenError("NOT_ENTITLED", "this token belongs to another emergency");
    await requireEmergency(id);
    const r = await callRoom<{ emergency: { status: string; patient: { id: string } } }>(id, "statusFor", [p]);
    if (r.emergency.patient.id !== p.sub) throw new HavenError("NOT_ENTITLED", "you did not raise this emergency");
    if (CLOSED_STATUSES.has(r.emergency.status)) throw new HavenError("EMERGENCY_CLOSED", "the emergency is over; nothing to renew");
    await limits.take("renew", { account: p.sub, address: req.ip });
    return ok(await ctx.accounts.renewBypass(p, id), 201);
  });
  router.on("GET", "/api/emergency/:id/status", async (req, { id }) => {
    const p = await principalOf(req);
    await requireEmergency(id);
    const r = await callRoom<{ emergency: unknown }>(id, "statusFor", [p]);
    return ok(r.emergency);
  });
  router.on("PUT", "/api/emergency/:id/location", async (req, { id }) => {
    const p = await principalOf(req);
    const body = validate("location", jsonBody(req));
    await requireEmergency(id);
    await callRoom(id, "restPosition", [p, body]);
    return ok({ ok: true });
  });
  router.on("POST", "/api/emergency/:id/cancel", async (req, { id }) => {
    const p = await principalOf(req);
    const body = validate<{ reason: string; note?: string; idempotencyKey?: string }>("restCancel", jsonBody(req));
    await requireEmergency(id);
    const r = await callRoom<{ status: string; duplicate?: true }>(id, "restCancel", [p, { reason: body.reason, note: body.note }, body.idempotencyKey]);
    return ok(r.duplicate ? { ok: true, status: r.status, duplicate: true } : { ok: true, status: r.status });
  });

  // ---------------------------------------------------------------- hospitals
  router.on("GET", "/api/hospitals/nearby", async (req) => {
    await principalOf(req);
    const lat = Number(req.query.get("lat"));
    const lng = Number(req.query.get("lng"));
    const radiusM = Number(req.query.get("radiusM") ?? 20_000);
    const limit = Number(req.query.get("limit") ?? 10);
    const bad = [
      !(req.query.has("lat") && lat >= -90 && lat <= 90) && "lat must be a number from -90 to 90",
      !(req.query.has("lng") && lng >= -180 && lng <= 180) && "lng must be a number from -180 to 180",
      !(radiusM > 0 && radiusM <= 200_000) && "radiusM must be from 1 to 200000",
      !(Number.isInteger(limit) && limit >= 1 && limit <= 50) && "limit must be an integer from 1 to 50",
    ].filter(Boolean);
    if (bad.length) throw new HavenError("INVALID_PAYLOAD", bad.join("; "));
    const now = Date.now();
    return ok({ hospitals: s.hospitals.nearby({ lat, lng }, radiusM, limit).map(({ divert, ...h }) => ({ ...h, divert: divertView(divert, now) })) });
  });
  router.on("GET", "/api/hospitals/:id/capabilities", async (req, { id }) => {
    await principalOf(req);
    const h = s.hospitals.get(id);
    if (!h) throw new HavenError("HOSPITAL_NOT_FOUND", "no such hospital");
    return ok({ id: h.id, name: h.name, specialties: h.specialties, emergencyBeds: h.emergencyBeds, icuBeds: h.icuBeds, accepting: h.accepting, updatedAt: h.updatedAt, divert: divertView(h.divert, Date.now()) });
  });
  router.on("POST", "/api/hospitals/:id/divert", async (req, { id }) => {
    const p = await principalOf(req);
    const body = validate<DivertRequest>("divertUpdate", jsonBody(req));
    if (!s.hospitals.get(id)) throw new HavenError("HOSPITAL_NOT_FOUND", "no such hospital");
    const adminHere = p.role === "hospital_admin" && p.hospitalId === id;
    if (!adminHere && p.role !== "ops_admin") throw new HavenError("FORBIDDEN", "only this hospital's admin or ops may declare its divert");
    const problem = body.active ? divertUntilProblem(body.until, Date.now()) : undefined;
    if (problem) throw new HavenError("INVALID_PAYLOAD", problem, [{ field: "until", rule: "divertUntil", message: problem }]);
    let result: unknown;
    try {
      result = await matchMaker.remoteRoomCall(hospitalRoomId(id), "setDivert", [body, { sub: p.sub, role: p.role }]);
    } catch (error) {
      if (error instanceof HavenError) throw error;
      const code = (error as { code?: string }).code;
      if (code === "INVALID_PAYLOAD") throw new HavenError("INVALID_PAYLOAD", (error as Error).message);
      throw new HavenError("UNAVAILABLE", "the hospital's wallboard could not be reached; retry", undefined, { cause: error });
    }
    const { ok: _ok, ...view } = result as { ok: true };
    return ok({ id, ...view });
  });
  router.on("POST", "/api/hospitals", async (req) => {
    const p = await principalOf(req);
    if (p.bypass) throw new HavenError("FORBIDDEN", "register a hospital with an account");
    const body = validate<{ id: string; name: string; lat: number; lng: number; specialties: Specialty[]; emergencyBeds: number; icuBeds: number; accepting: boolean }>("hospitalRegistration", jsonBody(req));
    if (!(await s.hospitalStore.register(body, p.sub))) throw new HavenError("HOSPITAL_EXISTS", `a hospital with id ${body.id} exists`);
    return ok({ id: body.id, approved: false }, 201);
  });
  router.on("POST", "/api/hospitals/:id/approval", async (req, { id }) => {
    const p = await principalOf(req);
    requireRole(p, ["ops_admin"]);
    validate("hospitalApproval", jsonBody(req));
    const record = await s.hospitalStore.approve(id, p.sub);
    if (!record) throw new HavenError("HOSPITAL_NOT_FOUND", "no such hospital");
    s.hospitals.add({ ...record, specialties: record.specialties as Specialty[] });
    await s.bus.publish({ type: "hospital_approved", hospitalId: id });
    await ensureRoom(s.membership, "hospital", hospitalRoomId(id), { hospitalId: id });
    return ok({ id, approved: true });
  });
  router.on("POST", "/api/hospitals/:id/availability", async (req, { id }) => {
    const p = await principalOf(req);
    const body = validate<{ emergencyBeds: number; icuBeds?: number; accepting: boolean }>("availabilityUpdate", jsonBody(req));
    if (!s.hospitals.get(id)) throw new HavenError("HOSPITAL_NOT_FOUND", "no such hospital");
    const staffHere = actsForHospital(p.role) && p.hospitalId === id;
    if (!staffHere && p.role !== "ops_admin") throw new HavenError("FORBIDDEN", "only this hospital's staff or ops may update its availability");
    await matchMaker.remoteRoomCall(hospitalRoomId(id), "setCapacity", [body]);
    const h = s.hospitals.get(id)!;
    return ok({ id: h.id, emergencyBeds: h.emergencyBeds, icuBeds: h.icuBeds, accepting: h.accepting, updatedAt: h.updatedAt });
  });

  // ---------------------------------------------------------------- medical profile (the patient's own)
  router.on("POST", "/api/medical-profile", async (req) => {
    const p = await principalOf(req);
    return ok(await s.medical.save(p, jsonBody(req), "create"), 201);
  });
  router.on("PUT", "/api/medical-profile", async (req) => {
    const p = await principalOf(req);
    return ok(await s.medical.save(p, jsonBody(req), "update"));
  });
  router.on("GET", "/api/medical-profile", async (req) => ok(await s.medical.read(await principalOf(req))));
  router.on("DELETE", "/api/medical-profile", async (req) => {
    await s.medical.erase(await principalOf(req));
    return { status: 204 };
  });

  // ---------------------------------------------------------------- responders
  router.on("POST", "/api/duty", async (req) => {
    const p = await principalOf(req);
    validate("dutyStart", jsonBody(req));
    requireRole(p, ["first_aider", "ambulance_crew"]);
    const responder = await s.responders.get(p.sub);
    if (!responder?.verified) throw new HavenError("NOT_VERIFIED", "a responder goes on duty once ops has verified them");
    const roomId = dutyRoomId(p.sub);
    const options: DutyCreateOptions = { responderId: p.sub, kind: p.role as DutyCreateOptions["kind"], name: await ctx.accounts.displayName(p) };
    try {
      await ensureRoom(s.membership, "duty", roomId, options as unknown as Record<string, unknown>);
    } catch (error) {
      throw new HavenError("UNAVAILABLE", "the duty room cannot be opened right now; retry", undefined, { cause: error });
    }
    return ok({ roomId, roomName: "duty" }, 201);
  });
  router.on("POST", "/api/responders/:id/verification", async (req, { id }) => {
    const p = await principalOf(req);
    requireRole(p, ["ops_admin"]);
    const body = validate<{ verified: boolean }>("verifyResponder", jsonBody(req));
    return ok(await ctx.accounts.setVerified(id, body.verified, p));
  });

  // ---------------------------------------------------------------- notifications
  notificationRoutes(router, principalOf, limits);

  // ---------------------------------------------------------------- matchmaking (join existing rooms only)
  router.on("POST", "/matchmake/:method/:roomId", async (req, { method, roomId }) => {
    if (method !== "joinById" && method !== "reconnect") {
      throw new HavenError("FORBIDDEN", "rooms are created by the server; join one by its id");
    }
    const token = bearer(req);
    const principal = await services().tokens.verify(token);
    const body = validate<Record<string, unknown>>(method === "reconnect" ? "reconnectOptions" : "joinOptions", jsonBody(req));
    // the seat is the caller's: only a socket with a token of the same subject may take it
    const options = method === "reconnect" ? body : { ...body, [SEAT_SUBJECT]: principal.sub };
    const auth = createAuthContext({ headers: req.headers, token, remoteAddress: req.ip });
    if (method === "joinById") await ensureJoinable(roomId);
    try {
      try {
        return ok(await matchMaker.controller.invokeMethod(method, roomId, options, auth));
      } catch (error) {
        // the holder died between the lookup and the seat reservation: reopen the room elsewhere, once
        if (method !== "joinById" || !String((error as Error).message).includes("is not available")) throw error;
        await ensureJoinable(roomId);
        return ok(await matchMaker.controller.invokeMethod(method, roomId, options, auth));
      }
    } catch (error) {
      const code = (error as { code?: number }).code;
      if (code === ErrorCode.MATCHMAKE_INVALID_ROOM_ID) throw new HavenError("ROOM_NOT_FOUND", `no room ${roomId}`);
      if (code === ErrorCode.MATCHMAKE_EXPIRED) throw new HavenError("INVALID_PAYLOAD", `cannot ${method} ${roomId}: ${(error as Error).message}`);
      throw new HavenError("UNAVAILABLE", `cannot ${method} ${roomId} now; retry`);
    }
  });

  // ---------------------------------------------------------------- the wallboard and operations pages
  mountPages(router, config.web, s.log);

  return router;
}
