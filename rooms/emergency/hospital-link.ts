import type { Config } from "../../src/config.ts";
import { isReceivingHospital } from "../../src/domain/entitlement.ts";
import type { EtaProvider } from "../../src/domain/eta.ts";
import { distanceM, type LatLng } from "../../src/domain/geo.ts";
import { handoverSummary } from "../../src/domain/handover.ts";
import type { HospitalDirectory, Specialty } from "../../src/domain/hospitals.ts";
import { hospitalRoomId } from "../../src/domain/identity.ts";
import { divertApplies } from "../../src/domain/divert.ts";
import { neededSpecialties, rankHospitals } from "../../src/domain/matching.ts";
import { isClosed } from "../../src/domain/status.ts";
import { hospitalFallbackKey, hospitalRouted } from "../../src/notify/who.ts";
import { HavenError } from "../../src/protocol/errors.ts";
import { ReadinessItem } from "../schema/common.ts";
import type { EmergencyContext, Timer } from "./context.ts";

/** Wallboard updates of a moving ETA go out at most this often. */
const ETA_SYNC_INTERVAL_MS = 1000;

const READINESS = [["team", "Team assembled"], ["equipment", "Equipment ready"], ["bed", "Bed allocated"]] as const;

export interface HospitalLinkDeps {
  ctx: EmergencyContext;
  config: Config["hospitals"];
  hospitals: Pick<HospitalDirectory, "all" | "get">;
  eta: EtaProvider;
  /** Staff of a hospital that was passed over leave the emergency (after the commit). */
  dismissStaff(hospitalId: string): void;
  /** The duty phone is texted when the wallboard has not acknowledged this long after routing (default 60 s). */
  smsFallbackMs?: number;
}

/**
 * The emergency's link to its receiving hospital: matching the best hospital once the patient is
 * assessed, re-alerting it until it acknowledges, passing it over when it declines or does not
 * acknowledge in time, its readiness checklist, the ETA, and the emergency's card on the
 * hospital's wallboard room (kept in step; ETA changes at most once a second).
 */
export class ReceivingHospital {
  private readonly d: HospitalLinkDeps;
  private timers: Timer[] = [];
  private lastSync = 0;
  private syncTimer?: Timer;

  constructor(deps: HospitalLinkDeps) {
    this.d = deps;
  }

  /** Re-alert and acknowledgement timers follow the state (after a match, a restore or an undone change). */
  rearm(retryDelayMs = 0): void {
    this.clearTimers();
    const { ctx, config } = this.d;
    const state = ctx.state;
    if (isClosed(state.status)) return;
    const link = state.hospital;
    if (link.status === "none") {
      if (state.medical.assessed) {
        this.timers.push(ctx.clock.setTimeout(() => void ctx.system(() => this.match()), Math.max(retryDelayMs, config.realertIntervalMs)));
      }
      return;
    }
    if (link.status !== "notified") return;
    const id = link.id;
    this.timers.push(ctx.clock.setInterval(() => {
      if (state.hospital.id !== id || state.hospital.status !== "notified") return;
      state.hospital.alerts++;
      ctx.event("hospital_realerted", "system", id);
      this.sync(true);
    }, config.realertIntervalMs));
    const remaining = Math.max(retryDelayMs, link.notifiedAt + config.ackTimeoutMs - ctx.clock.now());
    this.timers.push(ctx.clock.setTimeout(() => {
      if (state.hospital.id === id && state.hospital.status === "notified") void ctx.system(() => this.passOver("no_acknowledgement"));
    }, remaining));
  }

  clearTimers(): void {
    for (const t of this.timers) t.clear();
    this.timers = [];
  }

  /** Ranks hospitals and pre-notifies the best one not yet passed over; with none, tries again at the re-alert interval. */
  match(): void {
    const { ctx, hospitals, config } = this.d;
    const state = ctx.state;
    const [best] = rankHospitals(hospitals.all(), {
      at: state.patient,
      needs: this.needs(),
      critical: state.priority === "critical",
      exclude: new Set<string>(state.hospital.passedOver),
      maxDistanceM: config.maxDistanceM,
      now: ctx.clock.now(),
    });
    if (!best) {
      ctx.event("no_hospital_available", "system");
      this.rearm();
      return;
    }
    const h = hospitals.get(best.hospitalId)!;
    this.notify(h, best);
    ctx.event("hospital_matched", "system", `${h.id} score ${best.score} (d ${best.distanceScore}, c ${best.capacityScore}, s ${best.specialtyScore})`);
    this.refreshEta();
    this.announce(h);
    this.sync(true);
    this.rearm(); // re-alerts until acknowledged, passes over when not in time
  }

  /**
   * Operations sends the patient to `hospitalId`, whatever the matcher would choose: the current
   * receiving hospital (if any) has its card withdrawn and its staff leave, and the chosen one is
   * pre-notified as a match would (re-alerts, acknowledgement timeout). A repeat changes nothing.
   */
  reassign(hospitalId: string, actor: string): { hospitalId: string; hospitalStatus: string } {
    const { ctx, hospitals } = this.d;
    const state = ctx.state;
    const link = state.hospital;
    const h = hospitals.get(hospitalId);
    if (!h) throw new HavenError("HOSPITAL_NOT_FOUND", "no such hospital");
    if (link.id === hospitalId && link.status !== "none") return { hospitalId, hospitalStatus: link.status };
    if (state.status === "at_hospital") throw new HavenError("INVALID_TRANSITION", "the patient is at the hospital already");
    const previous = link.id;
    this.cancelFallback(); // the previous hospital's duty phone is no longer to be texted
    if (previous && link.status !== "none") {
      this.sync(true, "withdrawn");
      ctx.effect(() => this.d.dismissStaff(previous));
    }
    this.notify(h, { score: 0, distanceScore: 0, capacityScore: 0, specialtyScore: 0, distanceM: Math.round(distanceM(state.patient, h)) });
    ctx.event("hospital_reassigned", actor, `${previous || "none"} -> ${h.id}`);
    this.refreshEta();
    this.announce(h);
    this.sync(true);
    this.rearm();
    return { hospitalId, hospitalStatus: link.status };
  }

  /**
   * Tells the hospital just bound of the patient coming: its webhook now, its duty phone if the
   * wallboard has not acknowledged in time (written with the change that bound it); and the patient.
   */
  private announce(h: { id: string; name: string }): void {
    const { ctx } = this.d;
    const state = ctx.state;
    const link = state.hospital;
    for (const m of hospitalRouted({
      emergencyId: ctx.roomId, hospitalId: h.id, hospitalName: h.name, priority: state.priority, etaSeconds: link.etaSeconds,
      notifiedAt: link.notifiedAt, fallbackMs: this.d.smsFallbackMs ?? 60_000,
    })) ctx.notify(m);
    ctx.tellPatient?.(`hospital:${h.id}:${link.notifiedAt}`);
  }

  /** Binds the emergency to `h` as its pre-notified receiving hospital, with a fresh readiness checklist. */
  private notify(h: { id: string; name: string; lat: number; lng: number }, best: { score: number; distanceScore: number; capacityScore: number; specialtyScore: number; distanceM: number }): void {
    const { ctx } = this.d;
    const link = ctx.state.hospital;
    const now = ctx.clock.now();
    link.id = h.id; link.name = h.name; link.lat = h.lat; link.lng = h.lng;
    link.status = "notified";
    link.notifiedAt = now;
    link.acknowledgedAt = 0;
    link.alerts = 1;
    link.score = best.score; link.distanceScore = best.distanceScore; link.capacityScore = best.capacityScore; link.specialtyScore = best.specialtyScore;
    link.distanceM = best.distanceM;
    link.readiness.clear();
    for (const [key, label] of READINESS) {
      const item = new ReadinessItem();
      item.key = key; item.label = label; item.ready = false; item.updatedAt = now;
      link.readiness.set(key, item);
    }
  }

  /** The specialties this patient needs, from the assessment. */
  private needs(): Specialty[] {
    const m = this.d.ctx.state.medical;
    return neededSpecialties(m.assessed ? ([...m.suspected] as Specialty[]) : [], m.age >= 0 ? m.age : undefined);
  }

  /**
   * Whether a divert just declared by `hospitalId` takes this patient away from it: it is the
   * receiving hospital (notified or acknowledged), the emergency is open and the divert covers
   * the patient's needs. At the hospital already, the patient stays (the event is still recorded).
   */
  divertHits(hospitalId: string): boolean {
    const { ctx, hospitals } = this.d;
    const state = ctx.state;
    const link = state.hospital;
    if (isClosed(state.status) || link.id !== hospitalId || (link.status !== "notified" && link.status !== "acknowledged")) return false;
    // a patient who stays at the hospital is told once, not at every renewal of the divert
    if (state.status === "at_hospital" && link.divertedFrom === hospitalId) return false;
    return divertApplies(hospitals.get(hospitalId)?.divert, this.needs(), ctx.clock.now());
  }

  /**
   * The receiving hospital went on divert while the patient is on the way: recorded on the link
   * and the timeline; unless the patient is at the hospital already, its card is withdrawn, its
   * staff leave, and the next best hospital not on divert is pre-notified at once (whether or not
   * the diverted one had acknowledged). The diverted hospital is not passed over for good: once
   * its divert ends it may be matched again.
   */
  diverted(reason: string): "rematched" | "stays" {
    const { ctx } = this.d;
    const state = ctx.state;
    const link = state.hospital;
    const previous = link.id;
    link.divertedFrom = previous;
    link.divertReason = reason;
    link.divertedAt = ctx.clock.now();
    if (state.status === "at_hospital") {
      ctx.event("hospital_diverted", `hospital:${previous}`, `${reason} (patient already at the hospital: stays)`.slice(0, 200));
      this.sync(true);
      return "stays";
    }
    ctx.event("hospital_diverted", `hospital:${previous}`, reason.slice(0, 200));
    this.cancelFallback();
    this.sync(true, "withdrawn");
    link.status = "none";
    link.id = "";
    link.etaSeconds = -1;
    ctx.effect(() => this.d.dismissStaff(previous));
    this.match();
    return "rematched";
  }

  /** The receiving hospital declined or did not answer: tell it, revoke its view, try the next. */
  passOver(why: "declined" | "no_acknowledgement", detail = ""): void {
    const { ctx } = this.d;
    const link = ctx.state.hospital;
    const previous = link.id;
    this.cancelFallback();
    this.sync(true, why === "declined" ? "declined" : "withdrawn");
    link.passedOver.push(previous);
    link.status = "none";
    link.id = "";
    link.etaSeconds = -1;
    ctx.event(why === "declined" ? "hospital_declined" : "hospital_timed_out", `hospital:${previous}`, detail || why);
    ctx.effect(() => this.d.dismissStaff(previous));
    this.match();
  }

  /** The duty phone's SMS of the current routing is no longer needed (acknowledged, passed over, closed). */
  cancelFallback(): void {
    const { ctx } = this.d;
    const link = ctx.state.hospital;
    if (link.id && link.status === "notified") ctx.cancelNotice(hospitalFallbackKey(ctx.roomId, link.id, link.notifiedAt));
  }

  requireReceiving(hospitalId: string): void {
    if (!isReceivingHospital(this.d.ctx.state, hospitalId)) throw new HavenError("NOT_RECEIVING_HOSPITAL", "this hospital is not receiving the patient");
  }

  /** Staff acknowledged the pre-notification: re-alerts stop. */
  acknowledge(actor: string): string {
    const { ctx } = this.d;
    const link = ctx.state.hospital;
    if (link.status !== "acknowledged") {
      this.cancelFallback();
      link.status = "acknowledged";
      link.acknowledgedAt = ctx.clock.now();
      this.clearTimers();
      ctx.event("hospital_acknowledged", actor);
      this.sync(true);
    }
    return link.status;
  }

  /** Staff ticked a readiness item (a new one, up to 20). */
  readiness(item: { key: string; label?: string; ready: boolean }, actor: string): void {
    const { ctx } = this.d;
    const readiness = ctx.state.hospital.readiness;
    let r = readiness.get(item.key);
    if (!r) {
      if (readiness.size >= 20) throw new HavenError("INVALID_PAYLOAD", "at most 20 readiness items");
      r = new ReadinessItem();
      r.key = item.key;
      r.label = item.label ?? item.key;
      readiness.set(item.key, r);
    } else if (r.ready === item.ready && (item.label === undefined || item.label === r.label)) {
      return; // as it is already: nothing to record
    } else if (item.label !== undefined) {
      r.label = item.label;
    }
    r.ready = item.ready;
    r.updatedAt = ctx.clock.now();
    ctx.event("readiness_changed", actor, `${item.key}=${item.ready}`);
    this.sync(true);
  }

  /** Seconds until the patient reaches the receiving hospital, from the best position known. */
  refreshEta(): void {
    const state = this.d.ctx.state;
    const h = state.hospital;
    if (h.status === "none") return;
    const eta = this.d.eta;
    const target: LatLng = h; // the link carries the hospital's lat and lng
    const crew = state.ambulance.values().next().value;
    let seconds: number;
    if (state.status === "transporting" || state.status === "at_hospital") {
      seconds = state.status === "at_hospital" ? 0 : eta.etaSeconds(crew ?? state.patient, target);
    } else if (crew && crew.updatedAt > 0) {
      seconds = eta.etaSeconds(crew, state.patient) + eta.etaSeconds(state.patient, target);
    } else {
      seconds = eta.etaSeconds(state.patient, target);
    }
    if (seconds !== h.etaSeconds) {
      h.etaSeconds = seconds;
      this.sync(false);
    }
  }

  /** The wallboard of `hospitalId` was reopened: it learns of this emergency again. */
  resync(hospitalId: string): void {
    const link = this.d.ctx.state.hospital;
    if (link.id === hospitalId && link.status !== "none") this.sync(true);
  }

  /** Mirrors this emergency onto the receiving hospital's wallboard room (once committed). */
  sync(urgent: boolean, hospitalStatus?: string): void {
    const { ctx } = this.d;
    const state = ctx.state;
    const link = state.hospital;
    if (!link.id) return;
    const now = ctx.clock.now();
    if (!urgent && now - this.lastSync < ETA_SYNC_INTERVAL_MS) {
      this.syncTimer ??= ctx.clock.setTimeout(() => {
        this.syncTimer = undefined;
        this.sync(true);
      }, ETA_SYNC_INTERVAL_MS - (now - this.lastSync));
      return;
    }
    this.syncTimer?.clear();
    this.syncTimer = undefined;
    this.lastSync = now;
    const hospitalRoom = hospitalRoomId(link.id);
    const card = {
      emergencyId: ctx.roomId,
      priority: state.priority,
      status: state.status,
      hospitalStatus: hospitalStatus ?? (isClosed(state.status) ? state.status : link.status),
      notifiedAt: link.notifiedAt,
      acknowledgedAt: link.acknowledgedAt,
      etaSeconds: link.etaSeconds,
      handoverSummary: handoverSummary(state.medical),
      score: link.score, distanceScore: link.distanceScore, capacityScore: link.capacityScore, specialtyScore: link.specialtyScore,
      readiness: [...link.readiness.values()].map((r) => ({ key: r.key, label: r.label, ready: r.ready, updatedAt: r.updatedAt })),
      vitalsAlerts: [...state.medical.vitalsAlerts],
      handedOverAt: state.times.handedOverAt,
    };
    ctx.effect(() => void ctx.call(hospitalRoom, "upsertIncoming", [card])
      .catch((error) => ctx.log.warn({ err: error, emergencyId: ctx.roomId }, "hospital room unreachable")));
  }
}
