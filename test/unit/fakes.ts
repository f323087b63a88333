import type { OutboxMessage } from "../../persistence/stores.ts";
import type { Clock, EmergencyContext, Timer } from "../../rooms/emergency/context.ts";
import { blankEmergencyState } from "../../rooms/schema/restore.ts";

/** A clock whose time moves only when a test advances it; timers fire in time order. */
export class FakeClock implements Clock {
  private t: number;
  private next = 0;
  private readonly timers = new Map<number, { at: number; every?: number; fn: () => void }>();

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    return this.schedule(fn, ms);
  }

  setInterval(fn: () => void, ms: number): Timer {
    return this.schedule(fn, ms, ms);
  }

  /** Timers still scheduled. */
  get pending(): number {
    return this.timers.size;
  }

  /** Moves time on by `ms`, firing every timer due on the way (and those they schedule). */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let id = -1;
      let at = Infinity;
      for (const [k, timer] of this.timers) if (timer.at <= end && timer.at < at) { id = k; at = timer.at; }
      if (id < 0) break;
      const timer = this.timers.get(id)!;
      this.t = timer.at;
      if (timer.every) timer.at += timer.every;
      else this.timers.delete(id);
      timer.fn();
    }
    this.t = end;
  }

  private schedule(fn: () => void, ms: number, every?: number): Timer {
    const id = this.next++;
    this.timers.set(id, { at: this.t + Math.max(0, ms), every, fn });
    return { clear: () => void this.timers.delete(id) };
  }
}

export interface RecordedEvent { type: string; actor: string; detail: string; at: number }
export interface RecordedCall { roomId: string; method: string; args: unknown[] }

/** An emergency's state and context with nothing behind them: events and calls to other actors are recorded. */
export function fakeEmergency(clock = new FakeClock(), at = { lat: -1.2921, lng: 36.8219 }) {
  const state = blankEmergencyState();
  state.id = "e-1";
  state.createdAt = clock.now();
  Object.assign(state.patient, { id: "patient-1", role: "patient", name: "P", lat: at.lat, lng: at.lng, updatedAt: clock.now() });
  const events: RecordedEvent[] = [];
  const calls: RecordedCall[] = [];
  const systemChanges: number[] = [];
  const notices: OutboxMessage[] = [];
  const cancelled: string[] = [];
  const ctx: EmergencyContext = {
    roomId: state.id, state, clock,
    log: { info() {}, warn() {}, error() {} },
    event: (type, actor, detail = "", when = clock.now()) => void events.push({ type, actor, detail, at: when }),
    effect: (fn) => fn(),
    system: async (action) => { systemChanges.push(clock.now()); action(); },
    call: async (roomId, method, args) => { calls.push({ roomId, method, args }); return { ok: true }; },
    isRelinquished: () => false,
    notify: (m) => void notices.push(m),
    cancelNotice: (key) => void cancelled.push(key),
  };
  return { state, ctx, clock, events, calls, systemChanges, notices, cancelled, types: () => events.map((e) => e.type) };
}

/** Lets promise callbacks (a candidate lookup, a remote call) run. */
export const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
