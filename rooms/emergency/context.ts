import type { OutboxMessage } from "../../persistence/stores.ts";
import type { EmergencyState } from "../schema/EmergencyState.ts";

/** A scheduled callback; `clear()` cancels it. */
export interface Timer { clear(): void }

/**
 * The time as the parts of an emergency read it, and their timers: the room clock in the server
 * (`EventClock` of rooms/patches.ts), a fake clock in unit tests.
 */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  setInterval(fn: () => void, ms: number): Timer;
}

/** Where the parts of an emergency log. */
export interface PartLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * What the emergency room gives each of its parts (dispatch, hospital link, escalation): the
 * state, the clock, the timeline, and the room's ways of acting — nothing of sockets or storage.
 */
export interface EmergencyContext {
  readonly roomId: string;
  readonly state: EmergencyState;
  readonly clock: Clock;
  readonly log: PartLog;
  /** Adds an event to the timeline (at `clock.now()` unless given). */
  event(type: string, actor: string, detail?: string, at?: number): void;
  /** Runs `fn` once the change in progress is committed (at once outside a change). */
  effect(fn: () => void): void;
  /** A change the room makes by itself (a timer), committed like any other; retried when it cannot be. */
  system(action: () => void): Promise<void>;
  /** Calls a method of another room actor, wherever it lives. */
  call(roomId: string, method: string, args: unknown[]): Promise<unknown>;
  /**
   * Queues a notification: inside a critical change it is written in the change's own commit (and
   * dropped with it if the change is undone); outside one, at once.
   */
  notify(m: OutboxMessage): void;
  /** Makes a queued notification moot (by its key) if it was not sent yet, the same way. */
  cancelNotice(key: string): void;
  /** A patient who alerted by SMS or USSD is told, by SMS, how things stand after `moment` (named once per emergency). */
  tellPatient?(moment: string): void;
  /** Another node holds the emergency now: nothing more is done from here. */
  isRelinquished(): boolean;
}
