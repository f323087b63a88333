import { randomUUID } from "node:crypto";
import type { Config } from "../../src/config.ts";
import { DispatchPolicy, type Outstanding } from "../../src/domain/dispatch.ts";
import type { Candidate, DutyIndex, ResponderKind } from "../../src/domain/duty.ts";
import { isUrban, type Circle, type LatLng } from "../../src/domain/geo.ts";
import { isClosed, statusAfterAssignment } from "../../src/domain/status.ts";
import { Party } from "../schema/common.ts";
import { fail, type CallResult } from "../../src/protocol/results.ts";
import { HavenError } from "../../src/protocol/errors.ts";
import type { EmergencyContext, Timer } from "./context.ts";

const KINDS = ["first_aider", "ambulance_crew"] as const;

export interface DispatchDeps {
  ctx: EmergencyContext;
  config: Config["dispatch"];
  duty: Pick<DutyIndex, "candidates" | "assign">;
  /** Circles that count as urban: the first search radius is smaller there. */
  urbanAreas: readonly Circle[];
  /** A responder of `kind` was assigned. */
  onAssigned?(kind: ResponderKind): void;
  newOfferId?(): string;
}

/**
 * Dispatch of an emergency, one `DispatchPolicy` per role, carried out on the room clock: it looks
 * the nearest dispatchable responders up, offers them the emergency through their duty rooms,
 * lets an unanswered offer lapse after the offer timeout and replaces it (a decline too), widens
 * the search while too few are found, searches again at the widen interval with nobody left, and
 * assigns the first to accept (every other offer is withdrawn).
 */
export class Dispatch {
  private readonly d: DispatchDeps;
  private policies?: Record<ResponderKind, DispatchPolicy>;
  private readonly offerTimers = new Map<string, Timer>();
  private readonly retryTimers: Partial<Record<ResponderKind, Timer>> = {};
  /** Dispatch offer id → the responder kind it belongs to. */
  private readonly offerKinds = new Map<string, ResponderKind>();

  constructor(deps: DispatchDeps) {
    this.d = deps;
  }

  /** The assigned responders of one role. */
  partiesOf(kind: ResponderKind) {
    return kind === "first_aider" ? this.d.ctx.state.firstAiders : this.d.ctx.state.ambulance;
  }

  /** Dispatch goes on for every role nobody was assigned to yet (after a create, a restore or an undone accept). */
  resume(): void {
    this.policies ??= { first_aider: this.newPolicy("first_aider"), ambulance_crew: this.newPolicy("ambulance_crew") };
    if (isClosed(this.d.ctx.state.status)) return;
    for (const kind of KINDS) {
      if (this.partiesOf(kind).size > 0) {
        this.policies[kind].assignedTo ??= "";
        continue;
      }
      if (this.policies[kind].done) this.policies[kind] = this.newPolicy(kind);
      this.run(kind);
    }
  }

  /** A fresh dispatch for one role: its first radius depends on whether the patient is in an urban area. */
  private newPolicy(kind: ResponderKind): DispatchPolicy {
    const { config, urbanAreas, ctx } = this.d;
    return new DispatchPolicy(kind === "first_aider" ? config.firstAider : config.ambulance, isUrban(ctx.state.patient, urbanAreas));
  }

  /**
   * Looks the nearest dispatchable responders up (in Redis GEO in a cluster, wherever their duty
   * socket is), then fills the open offer slots from them in one synchronous step.
   */
  private run(kind: ResponderKind): void {
    const { ctx, config, duty } = this.d;
    const policy = this.policies![kind];
    if (policy.done || isClosed(ctx.state.status) || ctx.isRelinquished()) return;
    const at: LatLng = { lat: ctx.state.patient.lat, lng: ctx.state.patient.lng };
    const cfg = kind === "first_aider" ? config.firstAider : config.ambulance;
    duty.candidates(kind, at, cfg.maxRadiusM, cfg.offers + policy.offered.size).then(
      (found) => this.offerTo(kind, at, found),
      (error) => {
        ctx.log.warn({ err: error, emergencyId: ctx.roomId, kind }, "the on-duty index cannot be searched; dispatch retries");
        this.offerTo(kind, at, [], true);
      },
    );
  }

  private offerTo(kind: ResponderKind, at: LatLng, found: Candidate[], failed = false): void {
    const { ctx, config } = this.d;
    const policy = this.policies![kind];
    if (policy.done || isClosed(ctx.state.status) || ctx.isRelinquished()) return;
    const step = failed
      ? { offer: [], withdraw: [], exhausted: policy.outstanding.size === 0, widenedTo: undefined }
      : policy.fill((radiusM, exclude, limit) => found.filter((c) => c.distanceM <= radiusM && !exclude.has(c.userId)).slice(0, limit));
    if (step.widenedTo !== undefined) ctx.event("radius_widened", "system", `${kind} ${step.widenedTo} m`);
    if (kind === "first_aider") ctx.state.dispatch.firstAiderRadiusM = policy.radiusM;
    else ctx.state.dispatch.ambulanceRadiusM = policy.radiusM;

    const now = ctx.clock.now();
    for (const c of step.offer) {
      const offer: Outstanding = {
        offerId: this.d.newOfferId?.() ?? randomUUID(), userId: c.userId, dutyRoomId: c.dutyRoomId, distanceM: c.distanceM,
        lat: c.lat, lng: c.lng, expiresAt: now + config.offerTimeoutMs,
      };
      policy.record(offer);
      this.offerKinds.set(offer.offerId, kind);
      this.offerTimers.set(offer.offerId, ctx.clock.setTimeout(() => this.lapsed(offer.offerId, "timeout"), config.offerTimeoutMs));
      ctx.call(c.dutyRoomId, "receiveOffer", [{
        id: offer.offerId, emergencyId: ctx.roomId, priority: ctx.state.priority,
        lat: at.lat, lng: at.lng, distanceM: c.distanceM, expiresAt: offer.expiresAt,
      }]).catch(() => this.lapsed(offer.offerId, "unreachable"));
    }
    if (step.offer.length > 0) {
      if (ctx.state.times.responderNotifiedAt === 0) ctx.state.times.responderNotifiedAt = now;
      ctx.event("responders_notified", "system", `${step.offer.length} ${kind}`, now);
    }
    this.updateView();

    this.retryTimers[kind]?.clear();
    if (step.exhausted) {
      this.retryTimers[kind] = ctx.clock.setTimeout(() => this.run(kind), config.widenIntervalMs);
    }
  }

  private updateView(): void {
    const { state } = this.d.ctx;
    const policies = this.policies!;
    state.dispatch.offersOut = policies.first_aider.outstanding.size + policies.ambulance_crew.outstanding.size;
    state.dispatch.searching = !isClosed(state.status) && (!policies.first_aider.done || !policies.ambulance_crew.done);
  }

  private lapsed(offerId: string, why: "timeout" | "declined" | "unreachable", detail = ""): void {
    const kind = this.offerKinds.get(offerId);
    if (!kind) return;
    const released = this.policies![kind].release(offerId);
    this.forget(offerId);
    if (!released) return;
    const { ctx } = this.d;
    if (why === "timeout") {
      ctx.event("offer_timed_out", "system", kind);
      ctx.call(released.dutyRoomId, "withdrawOffer", [offerId, "timeout"]).catch(() => {});
    } else if (why === "declined") {
      ctx.event("offer_declined", `${kind}:${released.userId}`, detail);
    }
    this.run(kind);
  }

  /** Drops an offer's timer and its kind: it is no longer live. */
  private forget(offerId: string): void {
    this.offerTimers.get(offerId)?.clear();
    this.offerTimers.delete(offerId);
    this.offerKinds.delete(offerId);
  }

  private withdraw(offers: Outstanding[], reason: string): void {
    const { ctx } = this.d;
    for (const o of offers) {
      this.forget(o.offerId);
      ctx.effect(() => void ctx.call(o.dutyRoomId, "withdrawOffer", [o.offerId, reason]).catch(() => {}));
    }
  }

  /** The emergency is over: every offer is withdrawn and nothing more is searched. */
  stopAll(): void {
    if (!this.policies) return;
    for (const kind of KINDS) {
      this.withdraw(this.policies[kind].stop(), "closed");
      this.retryTimers[kind]?.clear();
    }
    this.updateView();
  }

  /** Stops every timer without telling anyone (another node carries on). */
  stopTimers(): void {
    for (const t of this.offerTimers.values()) t.clear();
    this.offerTimers.clear();
    for (const t of Object.values(this.retryTimers)) t?.clear();
  }

  /** A responder accepted an offer (inside a critical change). First accept wins. */
  accept(offerId: string, userId: string, name: string): CallResult<{ emergencyId: string }> {
    const { ctx, config } = this.d;
    const state = ctx.state;
    if (isClosed(state.status)) return fail("EMERGENCY_CLOSED", "the emergency is over");
    const kind = this.offerKinds.get(offerId);
    if (!kind) return fail("OFFER_EXPIRED", "the offer is no longer open");
    const policy = this.policies![kind];
    const live = policy.outstanding.get(offerId);
    if (!live || live.userId !== userId) return fail("OFFER_EXPIRED", "the offer is no longer open");
    const won = policy.accept(offerId);
    if (!won) return fail("ALREADY_ASSIGNED", "another responder was assigned");
    this.forget(offerId);
    this.withdraw(won.withdraw, "assigned_elsewhere");
    this.retryTimers[kind]?.clear();
    this.assign(kind, { id: userId, name, lat: live.lat, lng: live.lng, updatedAt: live.expiresAt - config.offerTimeoutMs }, "");
    return { ok: true, emergencyId: ctx.roomId };
  }

  /**
   * Operations assigns an on-duty responder by hand (inside a critical change): dispatch of that
   * role stops (every open offer of it is withdrawn, one to this responder too), and the responder
   * joins the emergency's parties as if they had accepted.
   */
  assignByHand(kind: ResponderKind, responder: { id: string; name: string; lat: number; lng: number; updatedAt: number }, actor: string): { emergencyId: string } {
    const { ctx } = this.d;
    if (isClosed(ctx.state.status)) throw new HavenError("EMERGENCY_CLOSED", `the emergency is ${ctx.state.status}`);
    if (this.partiesOf(kind).has(responder.id)) throw new HavenError("ALREADY_ASSIGNED", "this responder is assigned to this emergency already");
    const policy = this.policies![kind];
    this.withdraw(policy.stop(), "assigned_elsewhere");
    this.retryTimers[kind]?.clear();
    this.assign(kind, responder, `by ${actor}`);
    return { emergencyId: ctx.roomId };
  }

  /** A responder becomes a party of the emergency: the duty index learns it once committed. */
  private assign(kind: ResponderKind, r: { id: string; name: string; lat: number; lng: number; updatedAt: number }, detail: string): void {
    const { ctx, duty } = this.d;
    const state = ctx.state;
    ctx.effect(() => void duty.assign(r.id, ctx.roomId).catch(() => undefined));
    const party = new Party();
    Object.assign(party, { id: r.id, role: kind, name: r.name, lat: r.lat, lng: r.lng, updatedAt: r.updatedAt, online: false });
    this.partiesOf(kind).set(r.id, party);
    const now = ctx.clock.now();
    const status = statusAfterAssignment(state.status);
    if (status !== state.status) state.status = status;
    if (state.times.enRouteAt === 0) state.times.enRouteAt = now;
    ctx.event("responder_assigned", `${kind}:${r.id}`, detail, now);
    ctx.tellPatient?.(`assigned:${r.id}`);
    this.updateView();
    this.d.onAssigned?.(kind);
  }

  /** A responder declined an offer: it goes to the next nearest. */
  decline(offerId: string, userId: string, reason?: string | null): CallResult {
    const kind = this.offerKinds.get(offerId);
    const live = kind && this.policies![kind].outstanding.get(offerId);
    if (!live || live.userId !== userId) return fail("OFFER_EXPIRED", "the offer is no longer open");
    this.lapsed(offerId, "declined", reason ?? "");
    return { ok: true };
  }
}
