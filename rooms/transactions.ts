import { HavenError } from "../src/protocol/errors.ts";

/**
 * The transaction engine of a room whose changes are critical (committed before they are
 * acknowledged). A room hands it what it needs by injection — how to mark, undo and commit its
 * state, how to hold changes back from patches — and runs each critical change through `run`.
 *
 * - One change at a time, in a bounded queue; each answers within the database deadline,
 *   however long it waited for its turn.
 * - A change that throws is refused and undone; a change that changes nothing commits nothing.
 * - While it commits, what it changed is held back from patches (nobody sees what may be undone)
 *   and every other change keeps going out. A commit that fails or passes the deadline undoes
 *   the change and the sender is told to retry.
 * - Effects (calls to other actors, disconnects) registered with `effect` run once it committed.
 * - A retry (same sender, same idempotency key) gets the first answer with `duplicate: true` and
 *   changes nothing; so does a change the database says it recorded before.
 * - Each sender has a bounded rate of critical changes.
 */
export interface TransactionHost<M> {
  /** Sends what is pending now, so that the hold that follows covers this change alone. */
  flushPending(): void;
  /** Starts holding back what the change is about to change; `capture()` is called after it. */
  hold(): HeldBack;
  /** Releases what was held: it goes out with the next patch. */
  release(): void;
  /** Where the state is before a change. */
  mark(): M;
  /** Whether the state moved from `mark` (what a refused change touched must be undone). */
  movedFrom(mark: M): boolean;
  /** Puts the state back to `mark`; `keepSequence`: numbers used since stay spent. */
  undo(mark: M, keepSequence: boolean): void;
  /** The commit of what changed since `mark`, or undefined when there is nothing to commit. */
  prepare(mark: M, idempotencyKey: string | undefined): PreparedCommit | undefined;
  /** The answer to a failed commit (the host may act on it, e.g. give the room up when fenced). */
  commitFailed(error: unknown): Error;
}

/** Changes held back from patches (`HeldChanges` of rooms/patches.ts). */
export interface HeldBack {
  /** Holds everything the change dirtied. */
  capture(): void;
  /** Runs a patch without what is held. */
  patchWithout<T>(patch: () => T): T;
}

export interface PreparedCommit {
  /** Writes the change; resolves false when it was recorded before (a retry after a restart). */
  write(signal: AbortSignal): Promise<boolean>;
  /** It was written. */
  written(): void;
}

/** A timer that can be cancelled. */
export interface Cancellable { clear(): void }

/** What the engine reads the time from, and sets the commit deadline on. */
export interface DeadlineClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): Cancellable;
}

export const realDeadlineClock: DeadlineClock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    return { clear: () => clearTimeout(t) };
  },
};

export interface TransactionOptions {
  /** Each change answers within this long of its arrival (the database call deadline). */
  deadlineMs: number;
  clock?: DeadlineClock;
  /** Changes waiting for their turn before more are refused (retry). */
  maxQueued?: number;
  /** Critical changes one sender may make per window. */
  perSender?: { limit: number; windowMs: number };
  /** Answers remembered for retries. */
  idempotencyMemory?: number;
  /** A sender's change was committed (activity). */
  onSenderCommit?: () => void;
}

export class Transactions<M> {
  private readonly host: TransactionHost<M>;
  private readonly clock: DeadlineClock;
  private readonly deadlineMs: number;
  private readonly maxQueued: number;
  private readonly idempotencyMemory: number;
  private readonly onSenderCommit?: () => void;
  private readonly rate: SenderRate;
  private readonly answers = new Map<string, unknown>();
  private queue: Promise<unknown> = Promise.resolve();
  private queued = 0;
  private committing = 0;
  private effects: (() => void)[] | undefined;
  /** What the change being committed changed, held back from patches until it is. */
  held: HeldBack | undefined;

  constructor(host: TransactionHost<M>, options: TransactionOptions) {
    this.host = host;
    this.clock = options.clock ?? realDeadlineClock;
    this.deadlineMs = options.deadlineMs;
    this.maxQueued = options.maxQueued ?? 16;
    this.idempotencyMemory = options.idempotencyMemory ?? 256;
    this.onSenderCommit = options.onSenderCommit;
    const perSender = options.perSender ?? { limit: 20, windowMs: 10_000 };
    this.rate = new SenderRate(perSender.limit, perSender.windowMs, this.clock);
  }

  /** Whether a change is being committed now. */
  isCommitting(): boolean {
    return this.committing > 0;
  }

  /** Whether a change is being made now (its effects wait for its commit). */
  get inChange(): boolean {
    return this.effects !== undefined;
  }

  /** A side effect of the change in progress, run once it is committed; outside a change, at once. */
  effect(fn: () => void): void {
    if (this.effects) this.effects.push(fn);
    else fn();
  }

  /**
   * Runs `action` as a critical change of `sender` (null: the room itself, with no rate and no
   * retries), with its idempotency key.
   */
  run<T>(sender: string | null, key: string | null | undefined, action: () => T): Promise<T> {
    const cacheKey = sender && key ? `${sender}:${key}` : undefined;
    if (cacheKey && this.answers.has(cacheKey)) return Promise.resolve(this.replay<T>(cacheKey));
    try {
      if (sender) this.rate.take(sender);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.queued >= this.maxQueued) {
      return Promise.reject(new HavenError("UNAVAILABLE", "too many changes are waiting to be recorded in this emergency; nothing changed; retry"));
    }
    const deadlineAt = this.clock.now() + this.deadlineMs;
    const run = async (): Promise<T> => {
      this.queued--;
      if (cacheKey && this.answers.has(cacheKey)) return this.replay<T>(cacheKey);
      if (this.clock.now() >= deadlineAt) throw new HavenError("UNAVAILABLE", "the change could not be recorded in time; nothing changed; retry");
      const result = await this.change(sender, key ?? undefined, deadlineAt, action);
      if (!result.duplicate) {
        for (const fn of result.effects) fn();
        if (cacheKey) this.remember(cacheKey, result.value);
      }
      return result.value;
    };
    this.queued++;
    const done = this.queue.then(run, run);
    this.queue = done.catch(() => undefined);
    return done;
  }

  private async change<T>(sender: string | null, key: string | undefined, deadlineAt: number, action: () => T): Promise<{ value: T; effects: (() => void)[]; duplicate: boolean }> {
    const host = this.host;
    host.flushPending();
    const held = host.hold();
    const mark = host.mark();
    this.effects = [];
    this.committing++;
    try {
      let value: T;
      try {
        value = action();
      } catch (error) {
        // a refused action changes nothing; undo only what it may have touched before refusing
        if (host.movedFrom(mark)) host.undo(mark, false);
        throw error;
      }
      held.capture();
      this.held = held;
      const effects = this.effects;
      this.effects = undefined;
      const commit = host.prepare(mark, key);
      if (commit) {
        let fresh: boolean;
        try {
          fresh = await commitBy(this.clock, deadlineAt, (signal) => commit.write(signal));
        } catch (error) {
          // the sequence numbers stay spent: a commit whose answer was lost may have landed
          host.undo(mark, true);
          throw host.commitFailed(error);
        }
        if (!fresh) {
          // committed before (a retry after a restart): keep the recorded outcome, not a second
          // one; the answer is the action's outcome on the state that already holds it
          host.undo(mark, false);
          return { value: { ...(value as object), duplicate: true } as T, effects: [], duplicate: true };
        }
        commit.written();
        if (sender) this.onSenderCommit?.();
      }
      return { value, effects, duplicate: false };
    } finally {
      this.effects = undefined;
      this.held = undefined;
      this.committing--;
      // changes held during the commit go out now
      if (this.committing === 0) host.release();
    }
  }

  /** The first answer to a retried change (same sender, same key), marked as a duplicate. */
  private replay<T>(cacheKey: string): T {
    return { ...(this.answers.get(cacheKey) as object), duplicate: true } as T;
  }

  private remember(cacheKey: string, value: unknown): void {
    this.answers.set(cacheKey, value);
    if (this.answers.size > this.idempotencyMemory) this.answers.delete(this.answers.keys().next().value!);
  }
}

/**
 * A fixed-window count of what each sender did, bounded: a sender over its allowance is refused
 * with RATE_LIMITED until the window turns. Entries of past windows are dropped as it grows.
 */
export class SenderRate {
  private readonly counts = new Map<string, { windowStart: number; count: number }>();
  private readonly limit: number;
  private readonly windowMs: number;
  private readonly clock: Pick<DeadlineClock, "now">;

  constructor(limit: number, windowMs: number, clock: Pick<DeadlineClock, "now"> = realDeadlineClock) {
    this.limit = limit;
    this.windowMs = windowMs;
    this.clock = clock;
  }

  take(sender: string): void {
    const now = this.clock.now();
    let entry = this.counts.get(sender);
    if (!entry || now - entry.windowStart >= this.windowMs) {
      if (this.counts.size >= 256) for (const [k, e] of this.counts) if (now - e.windowStart >= this.windowMs) this.counts.delete(k);
      if (this.counts.size >= 1024) this.counts.delete(this.counts.keys().next().value!);
      entry = { windowStart: now, count: 0 };
      this.counts.set(sender, entry);
    }
    if (++entry.count > this.limit) {
      const retryAfter = Math.ceil((entry.windowStart + this.windowMs - now) / 1000);
      throw new HavenError("RATE_LIMITED", `more than ${this.limit} changes in ${this.windowMs / 1000} s; retry in ${retryAfter} s`, { retryAfterSeconds: retryAfter });
    }
  }
}

/** Runs a commit that must answer by `deadlineAt`; past it, the commit is abandoned (it rolls back) and this rejects. */
export function commitBy<T>(clock: DeadlineClock, deadlineAt: number, commit: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const abandon = new AbortController();
  return new Promise<T>((resolve, reject) => {
    const timer = clock.setTimeout(() => {
      abandon.abort();
      reject(new HavenError("UNAVAILABLE", "the database did not answer in time"));
    }, Math.max(0, deadlineAt - clock.now()));
    commit(abandon.signal).then(
      (value) => { timer.clear(); resolve(value); },
      (error: unknown) => { timer.clear(); reject(error); },
    );
  });
}
