import { randomUUID } from "node:crypto";
import type { Principal } from "./auth/tokens.ts";
import { matchMaker } from "@colyseus/core";
import { HavenError } from "./protocol/errors.ts";
import type { EmergencyStore } from "../persistence/stores.ts";
import type { Snapshottable } from "../persistence/snapshots.ts";
import type { Logger } from "./log.ts";
import type { Membership } from "./cluster/membership.ts";
import { ensureRoom, type RoomListing } from "./cluster/rooms.ts";
import type { EmergencyMedical } from "./medical/emergency.ts";
import { PART } from "./medical/emergency.ts";
import type { EmergencySummary, NoticeRegion } from "./domain/ops.ts";
import { contactsTold } from "./notify/who.ts";

/** What the registry and the node need of an emergency's room actor held here. */
export interface EmergencyActor extends Snapshottable {
  /** Not yet handed over, cancelled or expired. */
  isOpen(): boolean;
  /** The duty index learns again who serves this emergency. */
  reassertAssignments(): void;
  /** The wallboard of `hospitalId` was reopened: it learns of this emergency again. */
  resyncHospital(hospitalId: string): void;
  /** `hospitalId` went on divert: re-match if it was receiving this patient. */
  hospitalDiverted(hospitalId: string): Promise<void>;
  /** What the operations desk shows of it (nothing medical). */
  opsSummary(): EmergencySummary;
  /** A notice from the operations desk: its connected parties get it if it is in the notice's region. */
  opsNotice(notice: { id: string; text: string; at: number; region: NoticeRegion | null }): void;
}

export interface AlertInput {
  lat: number;
  lng: number;
  accuracy?: number;
  priority?: "critical" | "high" | "medium";
  note?: string;
  /** Where the patient's status replies go (`tel:…`: an alert by SMS or USSD). */
  replyTo?: string;
}

const UNIQUE_VIOLATION = "23505";
/** How many emergencies one sweep brings back at once. */
const RESTORE_CONCURRENCY = 8;

/**
 * Which emergencies exist, and where their room actors live. Postgres is the record: it keeps the
 * rule of one active emergency per patient (a second alert returns the first, on whichever node
 * it arrives) and the rule that an emergency-bypass token raises one emergency only. The room
 * actor is created here, never by a client, on the least busy live node, and brought back on a
 * live node when the node that held it died.
 */
export class EmergencyRegistry {
  private readonly store: EmergencyStore;
  private readonly node: string;
  private readonly membership: Membership;
  private readonly medical: EmergencyMedical;
  private readonly rooms = new Set<EmergencyActor>();
  /** patient → the alert being raised on this node right now. */
  private readonly raising = new Map<string, Promise<{ id: string; bypass: boolean }>>();

  /** The outbox was written (the alert's notifications): its worker may look now. */
  private readonly notified: () => void;

  /** How many emergency contacts a patient who consented to sharing has. */
  private readonly contactCount: (patientId: string) => Promise<number>;

  constructor(store: EmergencyStore, node: string, membership: Membership, medical: EmergencyMedical,
    notify: { notified(): void; contactCount(patientId: string): Promise<number> } = { notified() {}, contactCount: async () => 0 }) {
    this.notified = () => notify.notified();
    this.contactCount = (id) => notify.contactCount(id);
    this.store = store;
    this.node = node;
    this.membership = membership;
    this.medical = medical;
  }

  /** The emergency rooms alive on this node (for snapshots). */
  attach(room: EmergencyActor): void { this.rooms.add(room); }
  detach(room: EmergencyActor): void { this.rooms.delete(room); }
  liveRooms(): EmergencyActor[] { return [...this.rooms]; }

  /** Open emergencies held on this node. */
  activeCount(): number {
    return this.liveRooms().filter((r) => r.isOpen()).length;
  }

  /**
   * The room of an active emergency, wherever it lives; brought back from Postgres on the least
   * busy live node when no live node holds it. `fresh`: the emergency was recorded just now, so
   * no node can hold it yet and its room opens without waiting for the cluster to settle.
   */
  async ensure(id: string, fresh = false): Promise<RoomListing> {
    try {
      // an id that names no room and no active emergency is answered here, without trying to open
      // a room for it (whose refusal Colyseus logs as an error: any client could fill the log)
      if (!fresh && !matchMaker.getLocalRoomById(id) && !(await matchMaker.driver.findOne({ roomId: id })) && !(await this.store.isActive(id))) {
        throw new HavenError("EMERGENCY_NOT_FOUND", "no such active emergency");
      }
      return await ensureRoom(this.membership, "emergency", id, { emergencyId: id }, { fresh });
    } catch (error) {
      if ((error as HavenError).code === "EMERGENCY_NOT_FOUND" || String((error as Error).message).includes("EMERGENCY_NOT_FOUND")) throw new HavenError("EMERGENCY_NOT_FOUND", "no such active emergency");
      throw new HavenError("UNAVAILABLE", "the emergency cannot be reached right now; retry", undefined, { cause: error });
    }
  }

  /**
   * Brings back every active emergency whose holder is not alive: at start (after a restart or a
   * crash of this node) and whenever a node of the cluster dies. Returns how many were restored.
   */
  async sweep(log: Logger): Promise<number> {
    const active = await this.store.activeOwners();
    const dead = await this.membership.deadOnes(active.flatMap((a) => (a.owner ? [a.owner] : [])));
    const orphans = active.filter((a) => !a.owner || dead.has(a.owner));
    let restored = 0;
    const queue = [...orphans];
    await Promise.all(Array.from({ length: Math.min(RESTORE_CONCURRENCY, queue.length) }, async () => {
      for (let a = queue.shift(); a; a = queue.shift()) {
        try {
          const listing = await this.ensure(a.id);
          restored++;
          log.info({ emergencyId: a.id, previousHolder: a.owner, holder: listing.processId }, "emergency restored");
        } catch (error) {
          log.warn({ err: error, emergencyId: a.id }, "emergency not restored yet; the next sweep tries again");
        }
      }
    }));
    return restored;
  }

  /** Raises an alert, or returns the patient's active emergency (`created: false`). */
  async raise(p: Principal, patientName: string, alert: AlertInput): Promise<{ id: string; bypass: boolean; created: boolean }> {
    if (p.role !== "patient") throw new HavenError("FORBIDDEN", "only a patient (or an emergency-bypass bearer) raises an alert");
    const pending = this.raising.get(p.sub);
    if (pending) return { ...(await pending), created: false };
    const raising = this.raiseOnce(p, patientName, alert);
    const shared = raising.then((r) => ({ id: r.id, bypass: r.bypass }));
    shared.catch(() => undefined); // a concurrent alert awaits it; alone, its failure is answered below
    this.raising.set(p.sub, shared);
    try {
      return await raising;
    } finally {
      this.raising.delete(p.sub);
    }
  }

  private async raiseOnce(p: Principal, patientName: string, alert: AlertInput): Promise<{ id: string; bypass: boolean; created: boolean }> {
    const bypass = p.bypass === true;
    // a read that cannot reach the database answers UNAVAILABLE at the API's edge (asHavenError)
    const existing = await this.store.activeFor(p.sub);
    if (existing) {
      await this.ensure(existing);
      return { id: existing, bypass, created: false };
    }
    if (bypass && await this.store.raisedAny(p.sub)) {
      throw new HavenError("BYPASS_USED", "this emergency-bypass token has already raised its emergency");
    }

    const id = randomUUID();
    const createdAt = Date.now();
    // the emergency's clinical key is recorded with it; the alert's note (free text that may be
    // clinical) is stored sealed under it, never in the clear
    const medical = this.medical;
    const clinical = medical.newClinicalKey(id);
    // the emergency contacts told of the alert (and later of the handover); never a reason not to raise it
    const contacts = bypass ? 0 : await this.contactCount(p.sub).catch(() => 0);
    const record = {
      emergencyId: id, patientId: p.sub, patientName, bypass,
      lat: alert.lat, lng: alert.lng, accuracy: alert.accuracy, priority: alert.priority,
      sealedNote: alert.note ? medical.seal(alert.note, clinical.key, id, PART.event(1)).toString("base64") : undefined,
      contacts,
      replyTo: alert.replyTo,
    };
    // the alert is committed before anyone hears of it
    try {
      await this.store.open(
        { id, patientId: p.sub, bypass, status: "alerted", priority: alert.priority ?? "high", createdAt, node: this.node },
        { seq: 1, type: "call_received", actor: `patient:${p.sub}`, payload: { ...record }, at: createdAt },
        clinical.stored,
        // the patient's emergency contacts are told, with the alert or not at all (a bypass caller has none)
        { messages: contactsTold({ emergencyId: id, patientId: p.sub, patientName, count: contacts, moment: "alert" }), cancel: [] },
      );
      if (contacts > 0) this.notified();
    } catch (error) {
      const e = error as { code?: string; constraint_name?: string };
      if (e.code === UNIQUE_VIOLATION && e.constraint_name === "emergencies_one_active_per_patient") {
        // the same patient's alert reached another node first
        const first = await this.store.activeFor(p.sub);
        if (first) {
          await this.ensure(first);
          return { id: first, bypass, created: false };
        }
      }
      throw new HavenError("UNAVAILABLE", "the alert could not be recorded; retry now", undefined, { cause: error });
    }
    await this.ensure(id, true); // just recorded: no node can hold it yet
    return { id, bypass, created: true };
  }
}
