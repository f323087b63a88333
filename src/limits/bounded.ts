import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";

type MemoryOptions = NonNullable<ConstructorParameters<typeof RateLimiterMemory>[0]>;

/**
 * In-memory counting with a hard cap on keys.
 *
 * rate-limiter-flexible's RateLimiterMemory forgets a key when its window ends (a timer per key),
 * but holds any number of keys within a window: a client inventing device ids or walking through
 * IPv6 prefixes grows it without bound. Haven's memory limiters keep at most `maxKeys` keys each.
 * Every key of one limiter has the same window length, so the order in which windows started is
 * the order in which they end: the map is kept in that order, ended windows are swept from its
 * front, and when it is full the window that would end soonest is dropped (that key starts
 * counting afresh: an attacker must push `maxKeys` other keys through first).
 */
class BoundedMemoryStorage {
  private readonly records = new Map<string, { value: number; expiresAt: number }>();
  private readonly maxKeys: number;

  constructor(maxKeys: number) {
    this.maxKeys = maxKeys;
  }

  get size(): number { return this.records.size; }

  incrby(key: string, value: number, durationSec: number): RateLimiterRes {
    const now = Date.now();
    const r = this.records.get(key);
    if (r && r.expiresAt > now) {
      r.value += value;
      return new RateLimiterRes(0, r.expiresAt - now, r.value, false);
    }
    return this.set(key, value, durationSec);
  }

  set(key: string, value: number, durationSec: number): RateLimiterRes {
    const now = Date.now();
    // a window of 0 (no expiry) is never used by Haven; it is held for a day at most
    const ms = durationSec > 0 ? durationSec * 1000 : 86_400_000;
    this.records.delete(key);
    this.sweep(now);
    this.records.set(key, { value, expiresAt: now + ms });
    return new RateLimiterRes(0, ms, value, true);
  }

  get(key: string): RateLimiterRes | null {
    const now = Date.now();
    const r = this.records.get(key);
    if (!r || r.expiresAt <= now) return null;
    return new RateLimiterRes(0, r.expiresAt - now, r.value, false);
  }

  delete(key: string): boolean {
    return this.records.delete(key);
  }

  private sweep(now: number): void {
    for (const [k, r] of this.records) {
      if (r.expiresAt > now && this.records.size < this.maxKeys) break;
      this.records.delete(k);
    }
  }
}

/** A RateLimiterMemory (usable as a Redis limiter's insurance) whose store holds at most `maxKeys` keys. */
export class BoundedMemoryLimiter extends RateLimiterMemory {
  private readonly store: BoundedMemoryStorage;

  constructor(opts: MemoryOptions, maxKeys: number) {
    super(opts);
    this.store = new BoundedMemoryStorage(maxKeys);
    (this as unknown as { _memoryStorage: BoundedMemoryStorage })._memoryStorage = this.store;
  }

  /** Keys held now (never more than `maxKeys`). */
  get size(): number { return this.store.size; }
}

/**
 * A map whose entries live `ttlMs` and of which at most `maxEntries` are kept (the oldest go
 * first). Every entry has the same lifetime, so insertion order is expiry order.
 */
export class ExpiringMap<V> {
  private readonly entries = new Map<string, { value: V; expiresAt: number }>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;

  constructor(ttlMs: number, maxEntries: number) {
    this.ttlMs = ttlMs;
    this.maxEntries = maxEntries;
  }

  get size(): number { return this.entries.size; }

  set(key: string, value: V, now = Date.now()): void {
    this.entries.delete(key);
    for (const [k, e] of this.entries) {
      if (e.expiresAt > now && this.entries.size < this.maxEntries) break;
      this.entries.delete(k);
    }
    this.entries.set(key, { value, expiresAt: now + this.ttlMs });
  }

  get(key: string, now = Date.now()): V | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expiresAt <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return e.value;
  }
}
