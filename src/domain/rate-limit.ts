/** A fixed-window counter per key (bypass tokens per address, logins per address). */
export class RateLimiter {
  private readonly windows = new Map<string, { resetAt: number; count: number }>();
  private readonly limit: number;
  private readonly windowMs: number;

  constructor(limit: number, windowMs: number) {
    this.limit = limit;
    this.windowMs = windowMs;
  }

  /** Counts one hit; false when the key is over its limit for the current window. */
  take(key: string, now = Date.now()): boolean {
    let w = this.windows.get(key);
    if (!w || now >= w.resetAt) {
      if (this.windows.size > 100_000) this.sweep(now);
      w = { resetAt: now + this.windowMs, count: 0 };
      this.windows.set(key, w);
    }
    w.count++;
    return w.count <= this.limit;
  }

  private sweep(now: number): void {
    for (const [k, w] of this.windows) if (now >= w.resetAt) this.windows.delete(k);
  }
}
