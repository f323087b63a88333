import type { EmergencyStore } from "../persistence/stores.ts";
import type { EmergencyRegistry } from "./domain/emergencies.ts";
import type { Logger } from "./log.ts";

/** Positions and other fast-changing state reach Postgres this often at most. */
export const SNAPSHOT_INTERVAL_MS = 2000;

/**
 * Writes the snapshots of every emergency whose state changed since its last one, across all
 * rooms of this node in one multi-row statement, at most every 2 s. A room committing a critical
 * change is skipped (its commit writes its own snapshot). When Postgres is away the rooms stay
 * dirty and catch up once it is back.
 */
export class SnapshotFlusher {
  private readonly registry: EmergencyRegistry;
  private readonly store: EmergencyStore;
  private readonly log: Logger;
  private timer?: NodeJS.Timeout;
  private running?: Promise<number>;
  private failing = false;

  constructor(registry: EmergencyRegistry, store: EmergencyStore, log: Logger) {
    this.registry = registry;
    this.store = store;
    this.log = log;
  }

  start(): void {
    this.timer ??= setInterval(() => void this.flush(false), SNAPSHOT_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Saves the dirty rooms' snapshots; `all` saves every room's (at shutdown). */
  async flush(all: boolean): Promise<number> {
    if (this.running) await this.running.catch(() => 0);
    this.running = this.write(all);
    try {
      return await this.running;
    } finally {
      this.running = undefined;
    }
  }

  private async write(all: boolean): Promise<number> {
    const rooms = this.registry.liveRooms().filter((r) => (all || r.dirty) && !r.isCommitting() && !r.isRelinquished());
    if (rooms.length === 0) return 0;
    const rows = rooms.map((r) => {
      r.dirty = false;
      return { id: r.roomId, fence: r.fence, ...r.snapshot() };
    });
    try {
      const fenced = new Set(await this.store.saveSnapshots(rows));
      // taken over by another node while this one was cut off: those rooms close, their parties rejoin there
      for (const r of rooms) if (fenced.has(r.roomId)) r.relinquish();
      if (this.failing) this.log.info({ rooms: rows.length }, "snapshots are being written again");
      this.failing = false;
      return rows.length;
    } catch (error) {
      for (const r of rooms) r.dirty = true;
      if (!this.failing) this.log.warn({ err: error, rooms: rows.length }, "snapshots could not be written; retrying every 2 s");
      this.failing = true;
      return 0;
    }
  }
}
