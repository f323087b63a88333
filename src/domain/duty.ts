import { distanceM, type LatLng } from "./geo.ts";

export type ResponderKind = "first_aider" | "ambulance_crew";

/** A verified responder whose duty socket is open. */
export interface OnDuty extends LatLng {
  userId: string;
  kind: ResponderKind;
  name: string;
  available: boolean;
  /** Emergency the responder is assigned to, if any. */
  assignedTo?: string;
  dutyRoomId: string;
  updatedAt: number;
}

export interface Candidate {
  userId: string;
  dutyRoomId: string;
  distanceM: number;
}

/**
 * Where the on-duty responders are. Dispatch asks it for the nearest available ones. This
 * implementation serves one node from memory; a Redis GEO index serves a cluster behind the
 * same methods.
 */
export class DutyIndex {
  private readonly byUser = new Map<string, OnDuty>();

  upsert(entry: OnDuty): void {
    this.byUser.set(entry.userId, { ...entry });
  }

  update(userId: string, patch: Partial<Omit<OnDuty, "userId" | "kind">>): void {
    const e = this.byUser.get(userId);
    if (e) Object.assign(e, patch);
  }

  remove(userId: string): void {
    this.byUser.delete(userId);
  }

  get(userId: string): OnDuty | undefined {
    return this.byUser.get(userId);
  }

  /** Available, unassigned responders of `kind` within `radiusM`, nearest first. */
  nearest(kind: ResponderKind, at: LatLng, radiusM: number, exclude: ReadonlySet<string>, limit: number): Candidate[] {
    const found: Candidate[] = [];
    for (const e of this.byUser.values()) {
      if (e.kind !== kind || !e.available || e.assignedTo !== undefined || exclude.has(e.userId) || e.updatedAt === 0) continue;
      const d = distanceM(at, e);
      if (d <= radiusM) found.push({ userId: e.userId, dutyRoomId: e.dutyRoomId, distanceM: Math.round(d) });
    }
    return found.sort((a, b) => a.distanceM - b.distanceM).slice(0, limit);
  }
}
