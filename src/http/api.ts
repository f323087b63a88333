import { matchMaker, createAuthContext, ErrorCode } from "@colyseus/core";
import type { Principal } from "../auth/tokens.ts";
import type { Accounts } from "../auth/accounts.ts";
import { HavenError } from "../protocol/errors.ts";
import { validate } from "../protocol/validate.ts";
import { RateLimiter } from "../domain/rate-limit.ts";
import { services } from "../services.ts";
import { bearer, jsonBody, Router, type HttpRequest, type HttpResponse } from "./router.ts";
import type { DutyCreateOptions } from "../../rooms/DutyRoom.ts";
import { dutyRoomId } from "../domain/duty.ts";
import { hospitalRoomId, type CallResult } from "../../rooms/EmergencyRoom.ts";
import { metricsText } from "./metrics.ts";
import { ensureRoom } from "../cluster/rooms.ts";
import type { Specialty } from "../domain/hospitals.ts";

export interface ApiContext {
  accounts: Accounts;
  transport: "uws" | "ws";
  startedAt: number;
  /** False once shutdown began: /ready answers 503 and no new work is accepted. */
  ready: () => boolean;
}

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
  if (!UUID.test(id)) throw new HavenError("EMERGENCY_NOT_FOUND", "no such active emergency");
  await services().emergencies.ensure(id);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Before a join by id: the room of an active emergency or of an approved hospital's wallboard is
 * (re)opened if no live node holds it, so a client whose node died rejoins by the same id.
 */
async function ensureJoinable(roomId: string): Promise<void> {
  const s = services();
  if (UUID.test(roomId)) {
    await s.emergencies.ensure(roomId).catch((error) => {
      if ((error as HavenError).code === "EMERGENCY_NOT_FOUND") throw new HavenError("ROOM_NOT_FOUND", `no room ${roomId}`);
      throw error;
    });
  } else if (roomId.startsWith("hospital-") && s.hospitals.get(roomId.slice("hospital-".length))) {
    await ensureRoom(s.membership, "hospital", roomId, { hospitalId: roomId.slice("hospital-".length) });
  }
}

export function buildApi(ctx: ApiContext): Router {
  const s = services();
  const { config } = s;
  const router = new Router(config.corsOrigins);
  const logins = new RateLimiter(config.limits.loginPerMinutePerAddress, 60_000);

  // ---------------------------------------------------------------- operations
  router.on("GET", "/health", () => ok({
    status: "ok",
    transport: ctx.transport,
    uptimeSeconds: Math.round((Date.now() - ctx.startedAt) / 1000),
    emergencies: s.emergencies.activeCount(),
    tokenKey: s.tokens.development ? "development" : "configured",
    cluster: s.membership.clustered ? { processId: s.membership.processId, node: config.nodeName, redis: s.membership.connected() ? "up" : "down" } : false,
  }));
  router.on("GET", "/ready", () => ctx.ready() ? ok({ ready: true }) : { status: 503, body: { ready: false } });
  router.on("GET", "/metrics", () => ({ status: 200, text: metricsText(ctx.transport), headers: { "content-type": "text/plain; version=0.0.4" } }));

  // ---------------------------------------------------------------- accounts
  router.on("POST", "/api/auth/register", async (req) => {
    const body = validate<Parameters<Accounts["register"]>[0]>("register", jsonBody(req));
    const user = await ctx.accounts.register(body, await optionalPrincipal(req));
    return ok({ id: user.id, email: user.email, name: user.name, role: user.role, hospitalId: user.hospitalId }, 201);
  });
  router.on("POST", "/api/auth/login", async (req) => {
    const body = validate<{ email: string; password: string }>("login", jsonBody(req));
    if (!logins.take(req.ip)) throw new HavenError("RATE_LIMITED", "too many login attempts; wait a minute");
    return ok(await ctx.accounts.login(body.email, body.password));
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
    return ok(await ctx.accounts.emergencyBypass(body, req.ip), 201);
  });

  // ---------------------------------------------------------------- emergencies
  router.on("POST", "/api/emergency/alert", async (req) => {
    const p = await principalOf(req);
    const body = validate<{ lat: number; lng: number; accuracy?: number; priority?: "critical" | "high" | "medium"; note?: string }>("alert", jsonBody(req));
    if (!ctx.ready()) throw new HavenError("UNAVAILABLE", "this node is shutting down; retry");
    const { id, bypass, created } = await s.emergencies.raise(p, await ctx.accounts.displayName(p), body);
    return ok({ emergencyId: id, roomName: "emergency", created, bypass }, created ? 201 : 200);
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
    const r = await callRoom<{ status: string }>(id, "restCancel", [p, { reason: body.reason, note: body.note }, body.idempotencyKey]);
    return ok({ ok: true, status: r.status });
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
    return ok({ hospitals: s.hospitals.nearby({ lat, lng }, radiusM, limit) });
  });
  router.on("GET", "/api/hospitals/:id/capabilities", async (req, { id }) => {
    await principalOf(req);
    const h = s.hospitals.get(id);
    if (!h) throw new HavenError("HOSPITAL_NOT_FOUND", "no such hospital");
    return ok({ id: h.id, name: h.name, specialties: h.specialties, emergencyBeds: h.emergencyBeds, icuBeds: h.icuBeds, accepting: h.accepting, updatedAt: h.updatedAt });
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
    const staffHere = (p.role === "hospital_staff" || p.role === "hospital_admin") && p.hospitalId === id;
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

  // ---------------------------------------------------------------- matchmaking (join existing rooms only)
  router.on("POST", "/matchmake/:method/:roomId", async (req, { method, roomId }) => {
    if (method !== "joinById" && method !== "reconnect") {
      throw new HavenError("FORBIDDEN", "rooms are created by the server; join one by its id");
    }
    const token = bearer(req);
    await services().tokens.verify(token);
    const options = validate(method === "reconnect" ? "reconnectOptions" : "joinOptions", jsonBody(req));
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

  return router;
}
