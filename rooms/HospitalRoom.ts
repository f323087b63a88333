import { type AuthContext, matchMaker } from "@colyseus/core";
import type { Principal } from "../src/auth/tokens.ts";
import { HavenError } from "../src/protocol/errors.ts";
import { HavenCloseCode } from "../src/protocol/close-codes.ts";
import { services } from "../src/services.ts";
import { HavenRoom, refuse, type HavenClient, type MessageHandler } from "./HavenRoom.ts";
import { ReadinessItem } from "./schema/common.ts";
import { HospitalState, Incoming } from "./schema/HospitalState.ts";
import type { CallResult } from "../src/protocol/results.ts";
import { hospitalRoomId } from "../src/domain/identity.ts";
import { divertActive, divertUntilProblem, divertView, type Divert } from "../src/domain/divert.ts";
import type { Specialty } from "../src/domain/hospitals.ts";
import type { Timer } from "./emergency/context.ts";

/** A divert request: `until` is required to go on divert, and `specialties` empty or absent means every patient. */
export interface DivertRequest { active: boolean; specialties?: Specialty[]; reason: string; until?: number }

const STAFF = ["hospital_staff", "hospital_admin"] as const;
/** A handed-over or cancelled emergency stays on the wallboard this long. */
/** An emergency in one of these states is over for the wallboard: it stays a while, then goes. */
const FINISHED = new Set(["handed_over", "cancelled", "expired"]);
const KEEP_FINISHED_MS = 10 * 60_000;

/**
 * A hospital's wallboard: every emergency on its way here with live ETA, priority, readiness and
 * the handover summary. Staff acknowledge or decline, tick readiness items, update capacity and
 * confirm handover; those actions are carried out by the emergency's own room actor.
 */
export class HospitalRoom extends HavenRoom<HospitalState> {
  autoDispose = false;
  private hospitalId = "";
  /** Clears the wallboard's divert when it runs out. */
  private divertTimer?: Timer;

  protected readonly handlers: Record<string, MessageHandler<HospitalRoom>> = {
    acknowledge: { schema: "hospitalAck", roles: STAFF, run(c, p) { return this.forward(p.emergencyId, "hospitalAcknowledge", [c.auth, p.idempotencyKey]); } },
    decline: { schema: "hospitalDecline", roles: STAFF, run(c, p) { return this.forward(p.emergencyId, "hospitalDecline", [c.auth, p.reason, p.idempotencyKey]); } },
    readiness: { schema: "readiness", roles: STAFF, run(c, p) { return this.forward(p.emergencyId, "hospitalReadiness", [c.auth, { key: p.key, label: p.label, ready: p.ready }, p.idempotencyKey]); } },
    handover: { schema: "handover", roles: STAFF, run(c, p) { return this.forward(p.emergencyId, "hospitalHandover", [c.auth, p.notes, p.idempotencyKey]); } },
    capacity: { schema: "capacity", roles: STAFF, run(_c, p) { return this.setCapacity(p); } },
    divert: { schema: "divert", roles: STAFF, run(c, p) { return this.setDivert(p, { sub: c.auth.sub, role: c.auth.role }); } },
    chat: { schema: "hospitalChat", roles: STAFF, run(c, p) { return this.forward(p.emergencyId, "hospitalChat", [c.auth, p.text, p.clientId ?? null]); } },
  };

  /**
   * Fires once per hospital: one wallboard room cluster-wide, opened at start by whichever node
   * claims it first, and reopened on a live node when its node dies. The emergencies bound here
   * then show on it again.
   */
  async onCreate(options: { hospitalId: string }): Promise<void> {
    const h = services().hospitals.get(options.hospitalId);
    if (!h) throw new Error(`unknown hospital ${options.hospitalId}`);
    this.hospitalId = h.id;
    this.roomId = hospitalRoomId(h.id);
    await this.claimId();
    const state = new HospitalState();
    Object.assign(state, { id: h.id, name: h.name, emergencyBeds: h.emergencyBeds, icuBeds: h.icuBeds, accepting: h.accepting });
    this.setState(state);
    this.showDivert(h.divert);
    void services().bus.publish({ type: "wallboard_opened", hospitalId: h.id });
  }

  onDispose(): void {
    this.divertTimer?.clear();
    this.releaseId();
  }

  /** Fires for every socket join: only this hospital's staff may watch its wallboard. */
  async onAuth(_client: HavenClient, _options: unknown, context: AuthContext): Promise<Principal> {
    const principal = await this.authenticate(context);
    if (!(STAFF as readonly string[]).includes(principal.role) || principal.hospitalId !== this.hospitalId) {
      throw refuse(HavenCloseCode.FORBIDDEN, "NOT_ENTITLED", "only this hospital's staff may join its wallboard");
    }
    return principal;
  }

  /** Fires when a wallboard's socket drops: its seat is held for the reconnect window. */
  async onDrop(client: HavenClient): Promise<void> {
    try {
      await this.allowReconnection(client, services().config.reconnectWindowSeconds);
    } catch {
      // window passed
    }
  }

  private async forward(emergencyId: string, method: string, args: unknown[]): Promise<Record<string, unknown>> {
    const incoming = this.state.incoming.get(emergencyId);
    if (!incoming) throw new HavenError("EMERGENCY_NOT_FOUND", "no such incoming emergency");
    // a handover repeated, or retried, once done answers its outcome like every critical action
    const handedOver = method === "hospitalHandover" && incoming.hospitalStatus === "handed_over";
    if (FINISHED.has(incoming.hospitalStatus) && !handedOver) {
      throw new HavenError("EMERGENCY_CLOSED", `the emergency is ${incoming.hospitalStatus}`);
    }
    let result: CallResult;
    try {
      result = await matchMaker.remoteRoomCall(emergencyId, method, [this.hospitalId, ...args]) as CallResult;
    } catch {
      // the emergency's room has closed since the handover: the outcome stands
      if (handedOver) return { ok: true, status: "handed_over" };
      throw new HavenError("UNAVAILABLE", "the emergency could not be reached; retry");
    }
    if (!result.ok) throw new HavenError(result.error.code as never, result.error.message);
    return result;
  }

  /** Capacity from the wallboard or `POST /api/hospitals/{id}/availability`: stored, then shown. */
  async setCapacity(c: { emergencyBeds: number; icuBeds?: number; accepting: boolean }): Promise<{ ok: true }> {
    const { hospitals, hospitalStore } = services();
    const icuBeds = c.icuBeds ?? hospitals.get(this.hospitalId)?.icuBeds ?? 0;
    await hospitalStore.updateAvailability(this.hospitalId, { emergencyBeds: c.emergencyBeds, icuBeds, accepting: c.accepting });
    const h = hospitals.updateAvailability(this.hospitalId, { ...c, icuBeds });
    if (h) Object.assign(this.state, { emergencyBeds: h.emergencyBeds, icuBeds: h.icuBeds, accepting: h.accepting });
    // every node matches against the same capacity
    void services().bus.publish({ type: "hospital_availability", hospitalId: this.hospitalId, emergencyBeds: c.emergencyBeds, icuBeds, accepting: c.accepting });
    return { ok: true };
  }

  /**
   * Divert from the wallboard or `POST /api/hospitals/{id}/divert`: stored, audited, shown here,
   * announced to every node (which match around it and re-match the emergencies bound here).
   */
  async setDivert(body: DivertRequest, by: { sub: string; role: string }): Promise<{ ok: true; active: boolean; specialties: Specialty[]; reason: string; until: number }> {
    const s = services();
    const now = Date.now();
    let divert: Divert | undefined;
    if (body.active) {
      const problem = divertUntilProblem(body.until, now);
      if (problem) throw new HavenError("INVALID_PAYLOAD", problem, [{ field: "until", rule: "divertUntil", message: problem }]);
      divert = { specialties: [...(body.specialties ?? [])], reason: body.reason, until: body.until!, setBy: `${by.role}:${by.sub}`, setAt: now };
    }
    await s.hospitalStore.setDivert(this.hospitalId, divert);
    await s.audit.append({
      at: new Date(now), actor: by.sub, actorRole: by.role, action: divert ? "hospital.divert_on" : "hospital.divert_off",
      breakGlass: false, node: s.config.nodeName, outcome: "ok",
      reason: `${this.hospitalId}: ${divert ? `${divert.specialties.length ? divert.specialties.join(",") : "all patients"} until ${new Date(divert.until).toISOString()}: ` : ""}${body.reason}`.slice(0, 500),
    }).catch((error) => s.log.error({ err: error, hospitalId: this.hospitalId }, "audit write failed"));
    s.log.warn({ hospitalId: this.hospitalId, divert: divert ? { specialties: divert.specialties, until: divert.until } : null, by: `${by.role}:${by.sub}` }, divert ? "hospital on divert" : "hospital off divert");
    s.hospitals.setDivert(this.hospitalId, divert);
    this.showDivert(divert);
    // every node (this one too) matches around it and re-matches the patients bound here
    await s.bus.publish({ type: "hospital_divert", hospitalId: this.hospitalId, divert: divert ?? null });
    return { ok: true, ...divertView(divert, now) };
  }

  /** The wallboard shows the divert until it is lifted or runs out. */
  private showDivert(divert: Divert | undefined): void {
    this.divertTimer?.clear();
    this.divertTimer = undefined;
    const now = Date.now();
    const view = divertView(divert, now);
    this.state.divertActive = view.active;
    this.state.divertSpecialties.clear();
    this.state.divertSpecialties.push(...view.specialties);
    this.state.divertReason = view.reason;
    this.state.divertUntil = view.until;
    if (divertActive(divert, now)) this.divertTimer = this.clock.setTimeout(() => this.showDivert(divert), divert.until - now + 1);
  }

  /** Emergency room → here: a chat message of an emergency bound here, for the staff watching the wallboard. */
  chatMessage(m: { emergencyId: string }): { ok: true } {
    if (this.state.incoming.has(m.emergencyId)) this.broadcast("chat", m);
    return { ok: true };
  }

  /** Emergency room → here: the latest picture of an emergency bound for this hospital. */
  upsertIncoming(s: {
    emergencyId: string; priority: string; status: string; hospitalStatus: string; notifiedAt: number; acknowledgedAt: number;
    etaSeconds: number; handoverSummary: string; score: number; distanceScore: number; capacityScore: number; specialtyScore: number;
    readiness: { key: string; label: string; ready: boolean; updatedAt: number }[]; handedOverAt: number;
    vitalsAlerts?: string[];
  }): { ok: true } {
    if (s.hospitalStatus === "declined" || s.hospitalStatus === "withdrawn") {
      this.state.incoming.delete(s.emergencyId);
      return { ok: true };
    }
    let inc = this.state.incoming.get(s.emergencyId);
    if (!inc) {
      inc = new Incoming();
      inc.emergencyId = s.emergencyId;
      this.state.incoming.set(s.emergencyId, inc);
    }
    const { readiness, vitalsAlerts = [], ...fields } = s;
    Object.assign(inc, fields, { updatedAt: Date.now() });
    for (const r of readiness) {
      let item = inc.readiness.get(r.key);
      if (!item) { item = new ReadinessItem(); inc.readiness.set(r.key, item); }
      Object.assign(item, r);
    }
    for (const key of [...inc.readiness.keys()]) if (!readiness.some((r) => r.key === key)) inc.readiness.delete(key);
    if (inc.vitalsAlerts.length !== vitalsAlerts.length || vitalsAlerts.some((a, i) => inc.vitalsAlerts[i] !== a)) {
      inc.vitalsAlerts.clear();
      inc.vitalsAlerts.push(...vitalsAlerts.map(String));
    }
    if (FINISHED.has(s.hospitalStatus)) {
      this.clock.setTimeout(() => {
        const e = this.state.incoming.get(s.emergencyId);
        if (e && FINISHED.has(e.hospitalStatus)) this.state.incoming.delete(s.emergencyId);
      }, s.hospitalStatus === "handed_over" ? KEEP_FINISHED_MS : 60_000);
    }
    return { ok: true };
  }
}
