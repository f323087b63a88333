import type { DispatchRoleConfig } from "../config.ts";
import type { Candidate } from "./duty.ts";

/**
 * The dispatch policy for one role in one emergency, as a plain state machine with no timers or
 * sockets: the room feeds it events (start, decline, timeout, accept) and carries out the
 * `DispatchStep` it returns. Defaults: offer the 3 nearest available verified first-aiders within
 * 500 m (urban) or 1 km (rural); a decline or timeout is replaced by the next nearest; with nobody
 * left the radius doubles up to its maximum; the first to accept is assigned and every other
 * offer is withdrawn.
 */
export interface Outstanding {
  offerId: string;
  userId: string;
  dutyRoomId: string;
  distanceM: number;
  /** Where the responder was when offered (their position until they join the emergency). */
  lat: number;
  lng: number;
  expiresAt: number;
}

export interface DispatchStep {
  offer: Candidate[];
  withdraw: Outstanding[];
  /** The radius changed to this. */
  widenedTo?: number;
  /** Nobody is left even at the largest radius: try again later. */
  exhausted: boolean;
}

export type FindCandidates = (radiusM: number, exclude: ReadonlySet<string>, limit: number) => Candidate[];

export class DispatchPolicy {
  radiusM: number;
  assignedTo?: string;
  readonly outstanding = new Map<string, Outstanding>();
  /** Everyone ever offered this emergency: never offered twice. */
  readonly offered = new Set<string>();
  private readonly cfg: DispatchRoleConfig;

  constructor(cfg: DispatchRoleConfig, urban: boolean) {
    this.cfg = cfg;
    this.radiusM = urban ? cfg.urbanRadiusM : cfg.ruralRadiusM;
  }

  get done(): boolean {
    return this.assignedTo !== undefined;
  }

  /** Fill the open offer slots, doubling the radius (up to its maximum) while too few are found. */
  fill(find: FindCandidates): DispatchStep {
    const step: DispatchStep = { offer: [], withdraw: [], exhausted: false };
    if (this.done) return step;
    let need = this.cfg.offers - this.outstanding.size;
    while (need > 0) {
      const found = find(this.radiusM, this.offered, need);
      for (const c of found) this.offered.add(c.userId);
      step.offer.push(...found);
      need -= found.length;
      if (need <= 0 || this.radiusM >= this.cfg.maxRadiusM) break;
      this.radiusM = Math.min(this.cfg.maxRadiusM, this.radiusM * 2);
      step.widenedTo = this.radiusM;
    }
    step.exhausted = this.outstanding.size === 0 && step.offer.length === 0;
    return step;
  }

  record(o: Outstanding): void {
    this.outstanding.set(o.offerId, o);
  }

  /** A decline or a timeout frees the slot; the caller fills it again. */
  release(offerId: string): Outstanding | undefined {
    const o = this.outstanding.get(offerId);
    this.outstanding.delete(offerId);
    return o;
  }

  /** First accept wins: returns the offers to withdraw, or undefined if this offer is not live. */
  accept(offerId: string): { accepted: Outstanding; withdraw: Outstanding[] } | undefined {
    const accepted = this.outstanding.get(offerId);
    if (!accepted || this.done) return undefined;
    this.assignedTo = accepted.userId;
    this.outstanding.delete(offerId);
    const withdraw = [...this.outstanding.values()];
    this.outstanding.clear();
    return { accepted, withdraw };
  }

  /** Stop dispatching (cancel, or assignment made elsewhere): everything outstanding is withdrawn. */
  stop(): Outstanding[] {
    const withdraw = [...this.outstanding.values()];
    this.outstanding.clear();
    this.assignedTo ??= "";
    return withdraw;
  }
}
