import { distanceM, type LatLng } from "./geo.ts";

export type ResponderKind = "first_aider" | "ambulance_crew";

/** A verified responder whose duty socket is open. */
export interface OnDuty extends LatLng {
  userId: string;
  kind: ResponderKind;
  name: string;
  available: boolean;
  updatedAt: number;
}

export interface Candidate extends LatLng {
  userId: string;
  dutyRoomId: string;
  distanceM: number;
}

/** The duty room of a responder: one per responder, cluster-wide. */
export const dutyRoomId = (userId: string) => `duty-${userId}`;

/**
 * Where the on-duty responders are and who is assigned to an emergency. Dispatch asks it for
 * the nearest available ones. `LocalDutyIndex` serves one node from memory; `RedisDutyIndex`
 * (src/cluster) serves a cluster from Redis GEO behind the same methods.
 */
export interface DutyIndex {
  /** A duty room opened (or reopened) on this process. */
  upsert(entry: OnDuty): Promise<void>;
  /** A position older than the one held (`updatedAt`) is ignored: positions reach the index from several rooms. */
  update(userId: string, patch: Partial<Pick<OnDuty, "lat" | "lng" | "available" | "updatedAt">>): Promise<void>;
  /** The duty room closed: the responder is no longer dispatchable. */
  remove(userId: string): Promise<void>;
  /** The responder serves this emergency (undefined: released); an assigned responder gets no offers. */
  assign(userId: string, emergencyId: string | undefined): Promise<void>;
  assignmentOf(userId: string): Promise<string | undefined>;
  /** Available, unassigned responders of `kind` within `radiusM`, nearest first, at most `count`. */
  candidates(kind: ResponderKind, at: LatLng, radiusM: number, count: number): Promise<Candidate[]>;
  /** A process died: forget the responders whose duty room lived there; returns how many. */
  forgetProcess(processId: string): Promise<number>;
}

/** Applies an update to an entry; a position older than the entry's is ignored. */
export function applyDutyPatch(e: OnDuty, patch: Partial<Pick<OnDuty, "lat" | "lng" | "available" | "updatedAt">>): void {
  const { lat, lng, updatedAt, ...rest } = patch;
  Object.assign(e, rest);
  if (updatedAt !== undefined && updatedAt >= e.updatedAt) Object.assign(e, { lat: lat ?? e.lat, lng: lng ?? e.lng, updatedAt });
}

export class LocalDutyIndex implements DutyIndex {
  private readonly byUser = new Map<string, OnDuty>();
  private readonly assigned = new Map<string, string>();

  async upsert(entry: OnDuty): Promise<void> {
    this.byUser.set(entry.userId, { ...entry });
  }

  async update(userId: string, patch: Partial<Pick<OnDuty, "lat" | "lng" | "available" | "updatedAt">>): Promise<void> {
    const e = this.byUser.get(userId);
    if (e) applyDutyPatch(e, patch);
  }

  async remove(userId: string): Promise<void> {
    this.byUser.delete(userId);
  }

  async assign(userId: string, emergencyId: string | undefined): Promise<void> {
    if (emergencyId === undefined) this.assigned.delete(userId);
    else this.assigned.set(userId, emergencyId);
  }

  async assignmentOf(userId: string): Promise<string | undefined> {
    return this.assigned.get(userId);
  }

  async forgetProcess(): Promise<number> {
    return 0;
  }

  async candidates(kind: ResponderKind, at: LatLng, radiusM: number, count: number): Promise<Candidate[]> {
    const found: Candidate[] = [];
    for (const e of this.byUser.values()) {
      if (e.kind !== kind || !e.available || this.assigned.has(e.userId) || e.updatedAt === 0) continue;
      const d = distanceM(at, e);
      if (d <= radiusM) found.push({ userId: e.userId, dutyRoomId: dutyRoomId(e.userId), distanceM: Math.round(d), lat: e.lat, lng: e.lng });
    }
    return found.sort((a, b) => a.distanceM - b.distanceM).slice(0, count);
  }
}
