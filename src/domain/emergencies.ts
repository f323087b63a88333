import { randomUUID } from "node:crypto";
import { matchMaker } from "@colyseus/core";
import type { Principal } from "../auth/tokens.ts";
import { HavenError } from "../protocol/errors.ts";
import type { EmergencyCreateOptions, EmergencyRoom } from "../../rooms/EmergencyRoom.ts";
import type { ActiveEmergency, EmergencyStore } from "../../persistence/stores.ts";
import type { Logger } from "../log.ts";

export interface EmergencyRecord {
  id: string;
  patientId: string;
  bypass: boolean;
  createdAt: number;
  status: "active" | "handed_over" | "cancelled";
}

export interface AlertInput {
  lat: number;
  lng: number;
  accuracy?: number;
  priority?: "critical" | "high" | "medium";
  note?: string;
}

/**
 * Which emergencies exist and whose they are. It keeps the rule of one active emergency per
 * patient (a second alert returns the first) and the rule that an emergency-bypass token raises
 * one emergency only. The room actor itself is created here, never by a client.
 */
export class EmergencyRegistry {
  private readonly store: EmergencyStore;
  private readonly node: string;
  private readonly rooms = new Set<EmergencyRoom>();
  private readonly byId = new Map<string, EmergencyRecord>();
  /** patient → id of the active emergency, or the promise of one being created. */
  private readonly active = new Map<string, Promise<EmergencyRecord>>();
  /** bypass subject → the one emergency it raised. */
  private readonly bypassUsed = new Map<string, string>();

  constructor(store: EmergencyStore, node: string) {
    this.store = store;
    this.node = node;
  }

  get(id: string): EmergencyRecord | undefined {
    return this.byId.get(id);
  }

  /** The emergency rooms alive on this node (for snapshots). */
  attach(room: EmergencyRoom): void { this.rooms.add(room); }
  detach(room: EmergencyRoom): void { this.rooms.delete(room); }
  liveRooms(): EmergencyRoom[] { return [...this.rooms]; }

  /** The open emergency a responder is assigned to on this node, if any. */
  assignmentOf(responderId: string): string | undefined {
    for (const room of this.rooms) {
      const s = room.state;
      if (s.status !== "handed_over" && s.status !== "cancelled" && (s.firstAiders.has(responderId) || s.ambulance.has(responderId))) return room.roomId;
    }
    return undefined;
  }

  /**
   * Brings back every emergency that was active when the last process stopped or died: each room
   * is recreated from its latest snapshot (or, without one, from its alert) before this node
   * reports ready.
   */
  async restore(active: ActiveEmergency[], log: Logger): Promise<number> {
    for (const a of active) {
      const options = { ...(a.alert as unknown as EmergencyCreateOptions), emergencyId: a.id, snapshot: a.snapshot?.toString("base64") };
      await matchMaker.createRoom("emergency", options);
      const record: EmergencyRecord = { id: a.id, patientId: a.patientId, bypass: a.bypass, createdAt: Date.now(), status: "active" };
      this.byId.set(a.id, record);
      this.active.set(a.patientId, Promise.resolve(record));
      if (a.bypass) this.bypassUsed.set(a.patientId, a.id);
      log.info({ emergencyId: a.id, fromSnapshot: a.snapshot !== undefined }, "emergency restored");
    }
    return active.length;
  }

  activeCount(): number {
    return this.active.size;
  }

  /** Raises an alert, or returns the patient's active emergency (`created: false`). */
  async raise(p: Principal, patientName: string, alert: AlertInput): Promise<{ emergency: EmergencyRecord; created: boolean }> {
    if (p.role !== "patient") throw new HavenError("FORBIDDEN", "only a patient (or an emergency-bypass bearer) raises an alert");
    const pending = this.active.get(p.sub);
    if (pending) return { emergency: await pending, created: false };
    if (p.bypass && this.bypassUsed.has(p.sub)) {
      throw new HavenError("BYPASS_USED", "this emergency-bypass token has already raised its emergency");
    }

    const id = randomUUID();
    const record: EmergencyRecord = { id, patientId: p.sub, bypass: p.bypass === true, createdAt: Date.now(), status: "active" };
    const options: EmergencyCreateOptions = {
      emergencyId: id, patientId: p.sub, patientName, bypass: record.bypass,
      lat: alert.lat, lng: alert.lng, accuracy: alert.accuracy, priority: alert.priority, note: alert.note,
    };
    const creating = (async () => {
      // the alert is committed before anyone hears of it
      try {
        await this.store.open(
          { id, patientId: p.sub, bypass: record.bypass, status: "alerted", priority: alert.priority ?? "high", createdAt: record.createdAt, node: this.node },
          { seq: 1, type: "call_received", actor: `patient:${p.sub}`, payload: { ...options }, at: record.createdAt },
        );
      } catch (error) {
        throw Object.assign(new HavenError("UNAVAILABLE", "the alert could not be recorded; retry now"), { cause: error });
      }
      await matchMaker.createRoom("emergency", options);
      this.byId.set(id, record);
      return record;
    })();
    this.active.set(p.sub, creating);
    if (p.bypass) this.bypassUsed.set(p.sub, id);
    try {
      return { emergency: await creating, created: true };
    } catch (error) {
      this.active.delete(p.sub);
      if (p.bypass) this.bypassUsed.delete(p.sub);
      if (error instanceof HavenError) throw error;
      throw new HavenError("UNAVAILABLE", "the emergency could not be started; retry", { cause: String((error as Error).message) });
    }
  }

  /** The emergency ended: the patient may raise a new one. */
  closed(id: string, status: string): void {
    const r = this.byId.get(id);
    if (!r) return;
    r.status = status === "cancelled" ? "cancelled" : "handed_over";
    this.active.delete(r.patientId);
  }

  disposed(id: string): void {
    const r = this.byId.get(id);
    if (r && r.status === "active") this.closed(id, "cancelled");
  }
}
