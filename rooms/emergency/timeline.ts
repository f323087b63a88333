import type { EmergencyEventRow } from "../../persistence/stores.ts";
import { NOTE_EVENTS } from "../../src/medical/emergency.ts";
import { TimelineEvent, type EmergencyState } from "../schema/EmergencyState.ts";
import type { PartLog } from "./context.ts";

/** Timeline events kept while the database is away before the oldest are dropped. */
const MAX_UNSAVED_EVENTS = 4096;

/**
 * The durable timeline of an emergency: every event gets the next sequence number and goes into
 * the state (the newest `maxLength` are kept there). An event raised inside a critical change is
 * committed with it; one raised outside (a timer, dispatch) waits in `unsaved` until the snapshot
 * flusher or the next commit writes it.
 */
export class Timeline {
  /** The sequence number of the last event. */
  seq = 0;
  private unsaved: EmergencyEventRow[] = [];
  private readonly o: {
    state: EmergencyState;
    roomId: string;
    maxLength: number;
    log: PartLog;
    /** Whether a critical change is being made (its events are committed with it). */
    inChange(): boolean;
    /** The payload the database keeps (a note sealed). */
    payload(e: TimelineEvent): Record<string, unknown>;
    /** An event was added (and, for a note, the clinical record changed). */
    added(note: boolean): void;
  };

  constructor(o: Timeline["o"]) {
    this.o = o;
  }

  add(type: string, actor: string, detail = "", at = Date.now()): void {
    const e = new TimelineEvent();
    e.seq = ++this.seq;
    e.type = type;
    e.at = at;
    e.actor = actor;
    e.detail = detail.slice(0, 200);
    const timeline = this.o.state.timeline;
    timeline.push(e);
    this.o.added(e.detail !== "" && NOTE_EVENTS.has(type));
    if (!this.o.inChange()) {
      if (this.unsaved.length >= MAX_UNSAVED_EVENTS) {
        this.o.log.error({ emergencyId: this.o.roomId, seq: this.unsaved[0].seq }, "timeline events waiting for the database overflowed; the oldest is dropped");
        this.unsaved.shift();
      }
      this.unsaved.push(this.row(e));
    }
    while (timeline.length > this.o.maxLength) timeline.shift();
  }

  /**
   * An event kept in the durable timeline only, not in the state's `timeline` (a chat message,
   * which only the chat's parties may see): it takes the next sequence number and waits in
   * `unsaved` for the snapshot flusher or the next commit. Returns its sequence number.
   */
  record(type: string, actor: string, detail: string, at = Date.now()): number {
    const e = new TimelineEvent();
    e.seq = ++this.seq;
    e.type = type;
    e.at = at;
    e.actor = actor;
    e.detail = detail;
    if (this.unsaved.length >= MAX_UNSAVED_EVENTS) {
      this.o.log.error({ emergencyId: this.o.roomId, seq: this.unsaved[0].seq }, "timeline events waiting for the database overflowed; the oldest is dropped");
      this.unsaved.shift();
    }
    this.unsaved.push(this.row(e));
    this.o.added(NOTE_EVENTS.has(type));
    return e.seq;
  }

  /** A timeline event as the database keeps it (its note sealed). */
  row(e: TimelineEvent): EmergencyEventRow {
    return { seq: e.seq, type: e.type, actor: e.actor, payload: this.o.payload(e), at: e.at };
  }

  /** Events raised outside a critical change, not yet written. */
  unsavedEvents(): readonly EmergencyEventRow[] {
    return this.unsaved;
  }

  /** The events up to `seq` were written. */
  saved(seq: number): void {
    while (this.unsaved.length > 0 && this.unsaved[0].seq <= seq) this.unsaved.shift();
  }

  /** Forgets what is unsaved (it was recorded another way, with the alert). */
  forgetUnsaved(): void {
    this.unsaved = [];
  }

  /**
   * What a critical change commits: the events waiting, then those it added after `seq` (the first
   * carrying its idempotency key), and the last waiting one (written with it).
   */
  toCommit(seq: number, idempotencyKey: string | undefined): { events: EmergencyEventRow[]; changed: number; carried: number } {
    const changed = [...this.o.state.timeline].filter((e) => e.seq > seq).map((e, i) => ({
      ...this.row(e), idempotencyKey: i === 0 && idempotencyKey ? idempotencyKey : undefined,
    }));
    return { events: [...this.unsaved, ...changed], changed: changed.length, carried: this.unsaved.at(-1)?.seq ?? 0 };
  }
}
