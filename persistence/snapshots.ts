import type { EmergencyEventRow, EmergencyStore, SnapshotRow } from "./stores.ts";
import type { Logger } from "../src/log.ts";

/** What the flusher needs of an emergency's room actor. */
export interface Snapshottable {
  readonly roomId: string;
  readonly fence: number;
  /** Changed since its last snapshot (beyond its parties' positions). */
  dirty: boolean;
  /** A party moved since its last snapshot or positions row. */
  moved: boolean;
  isCommitting(): boolean;
  isRelinquished(): boolean;
  snapshot(): { seq: number; state: Buffer };
  /** The parties' positions alone, with the timeline position they follow. */
  positions(): { seq: number; positions: Buffer };
  unsavedEvents(): readonly EmergencyEventRow[];
  eventsSaved(seq: number): void;
  /** Another node took the emergency over: stop here. */
  relinquish(): void;
}

/** Where the flusher finds the rooms of this node. */
export interface SnapshotSource {
  liveRooms(): Snapshottable[];
}

/** Positions and other fast-changing state reach Postgres this often at most. */
export const SNAPSHOT_INTERVAL_MS = 2000;
/** The interval is cut into this many slices; each room belongs to one of them. */
const SLICES = 20;

/**
 * Writes the snapshot of every emergency whose state changed since its last one, at most every
 * 2 s: the whole state when more than positions changed, its parties' positions alone when they
 * only moved (a few hundred bytes, applied on top of the whole snapshot on restore), with the timeline events raised outside critical changes since (dispatch widening, offers
 * timing out, re-alerts): every event of the timeline reaches `emergency_events`. The work is
 * spread over the interval: each room belongs to one of 20 slices, and every
 * 100 ms the changed rooms of one slice are encoded and written, so no turn of the event loop
 * encodes every room at once. Rows wait in a buffer (one per room, the newest) until they are
 * written: when Postgres is away they stay there and go out once it is back. A room committing a
 * critical change is skipped (its commit writes its own snapshot).
 */
export class SnapshotFlusher {
  private readonly registry: SnapshotSource;
  private readonly store: EmergencyStore;
  private readonly log: Logger;
  private timer?: NodeJS.Timeout;
  private slice = 0;
  private nextSlot = 0;
  private readonly slots = new WeakMap<Snapshottable, number>();
  /** Encoded and not yet written: emergency id → its newest row, and the room it came from. */
  private readonly pending = new Map<string, { row: SnapshotRow; room: Snapshottable }>();
  private running?: Promise<number>;
  private failing = false;

  constructor(registry: SnapshotSource, store: EmergencyStore, log: Logger) {
    this.registry = registry;
    this.store = store;
    this.log = log;
  }

  start(): void {
    this.timer ??= setInterval(() => void this.tick(), SNAPSHOT_INTERVAL_MS / SLICES);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One slice: encode its changed rooms, then write whatever is waiting (unless a write is under way). */
  private tick(): void {
    const slice = this.slice;
    this.slice = (slice + 1) % SLICES;
    this.encode((room) => this.slotOf(room) === slice && (room.dirty || room.moved), false);
    // while Postgres is away, one attempt per interval
    if (!this.running && this.pending.size > 0 && (!this.failing || slice === 0)) void this.write();
  }

  /** Saves the changed rooms' snapshots now; `all` saves every room's (at shutdown). */
  async flush(all: boolean): Promise<number> {
    if (this.running) await this.running.catch(() => 0);
    this.encode((room) => all || room.dirty || room.moved, all);
    return this.write();
  }

  private slotOf(room: Snapshottable): number {
    let slot = this.slots.get(room);
    if (slot === undefined) {
      slot = this.nextSlot;
      this.nextSlot = (this.nextSlot + 1) % SLICES;
      this.slots.set(room, slot);
    }
    return slot;
  }

  private encode(wanted: (room: Snapshottable) => boolean, whole: boolean): void {
    for (const room of this.registry.liveRooms()) {
      if (!wanted(room) || room.isCommitting() || room.isRelinquished()) continue;
      const events = room.unsavedEvents();
      // a whole snapshot still waiting to be written is replaced by a whole one, never by positions
      const row: SnapshotRow = whole || room.dirty || this.pending.get(room.roomId)?.row.state
        ? { id: room.roomId, fence: room.fence, ...room.snapshot() }
        : { id: room.roomId, fence: room.fence, ...room.positions() };
      room.dirty = room.moved = false;
      if (events.length > 0) row.events = [...events];
      this.pending.set(room.roomId, { row, room });
    }
  }

  private async write(): Promise<number> {
    if (this.pending.size === 0) return 0;
    const batch = [...this.pending.values()];
    this.pending.clear();
    this.running = this.store.saveSnapshots(batch.map((b) => b.row)).then((fencedIds) => {
      // taken over by another node while this one was cut off: those rooms close, their parties rejoin there
      const fenced = new Set(fencedIds);
      for (const b of batch) {
        if (fenced.has(b.row.id)) b.room.relinquish();
        else if (b.row.events) b.room.eventsSaved(b.row.events[b.row.events.length - 1].seq);
      }
      if (this.failing) this.log.info({ rooms: batch.length }, "snapshots are being written again");
      this.failing = false;
      return batch.length;
    }, (error) => {
      // back in the buffer, unless a newer row of the same room was encoded meanwhile
      for (const b of batch) if (!this.pending.has(b.row.id)) this.pending.set(b.row.id, b);
      if (!this.failing) this.log.warn({ err: error, rooms: batch.length }, "snapshots could not be written; retrying");
      this.failing = true;
      return 0;
    });
    try {
      return await this.running;
    } finally {
      this.running = undefined;
    }
  }
}
