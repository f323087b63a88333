import { createHash } from "node:crypto";
import { RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from "rate-limiter-flexible";
import type { Redis } from "ioredis";
import type { RateRule, RequestLimitsConfig } from "../config.ts";
import type { Logger } from "../log.ts";
import { HavenError } from "../protocol/errors.ts";
import { addressKey } from "./address.ts";
import { BoundedMemoryLimiter } from "./bounded.ts";

/**
 * Limits on the requests that cost something real: an account (register), a password guess
 * (login), an emergency-bypass token and an alert (each pages real responders).
 *
 * Each request is counted per account, per device and per client address (an IPv6 client by its
 * /64), in fixed windows. On one node the counts live in memory, at most `maxKeys` keys per
 * limiter. In cluster mode they live in Redis, shared by every node; while Redis cannot be
 * reached (or answers slower than 250 ms) each node counts alone in memory, so a client gets at
 * most one budget per node: Haven fails open, with bounds, and never refuses an alert because
 * its counter is away.
 *
 * Shared addresses: a mobile network puts many subscribers behind one address (carrier-grade
 * NAT), so one busy address must not stop a stranger's emergency. When an address's budget for
 * alerts or bypass tokens is spent, a device that Haven has not seen make that request within
 * `deviceMemorySeconds` still gets exactly one, while the address's budget of such new devices
 * (`newDevicesPerAddress`) lasts. A device id is chosen by the client, so anyone can invent one:
 * the per-address budget of new devices bounds what inventing them buys.
 */

export type LimitedAction = "register" | "login" | "bypass" | "alert" | "renew";
type Scope = "account" | "device" | "address";

export interface Requester {
  /** Account id, subject, or (register and login) the email. */
  account?: string;
  /** The client's device id, when it sent one. */
  device?: string;
  /** The client's address (req.ip). */
  address: string;
}

/**
 * Counted points of one granted request; `refund()` gives them back (a duplicate alert, a
 * failure), `refund("account")` only the account's (a successful login).
 */
export interface Grant {
  refund(scope?: "account"): Promise<void>;
}

/** What this node's limits did since it started, for /metrics. */
export const limitStats = {
  refused: { register: 0, login: 0, bypass: 0, alert: 0, renew: 0 } as Record<LimitedAction, number>,
  /** Requests let through a spent address budget as a new device. */
  newDevices: 0,
  /** Keys held by the in-memory counters of the node's limits (a gauge). */
  memoryKeys: () => 0,
};

/** Keys are hashed (no email or address is stored as such), 96 bits: short in memory, no collisions in practice. */
const hash = (s: string) => createHash("sha256").update(s).digest("base64url").slice(0, 16);

const MESSAGES: Record<LimitedAction, string> = {
  register: "too many registrations",
  login: "too many login attempts",
  bypass: "too many emergency-bypass requests; call emergency services directly",
  alert: "too many alerts",
  renew: "too many renewals",
};

export class RequestLimits {
  private readonly config: RequestLimitsConfig;
  private readonly log: Logger;
  private readonly redis?: Redis;
  private readonly limiters = new Map<string, RateLimiterAbstract>();
  private readonly memory: BoundedMemoryLimiter[] = [];

  constructor(config: RequestLimitsConfig, log: Logger, redis?: Redis) {
    this.config = config;
    this.log = log;
    this.redis = redis;
    limitStats.memoryKeys = () => this.memoryKeys();
  }

  /** Whether counts are shared through Redis (cluster mode). */
  get shared(): boolean { return this.redis !== undefined; }

  /** Keys held in memory by all limiters together (each is capped at `maxKeys`). */
  memoryKeys(): number {
    return this.memory.reduce((n, l) => n + l.size, 0);
  }

  close(): void {
    this.redis?.disconnect();
  }

  private limiter(name: string, rule: RateRule): RateLimiterAbstract {
    let l = this.limiters.get(name);
    if (l) return l;
    const opts = { keyPrefix: `haven:limit:${name}`, points: rule.points, duration: rule.seconds };
    // each memory limiter has a store of its own: its keys need no prefix
    const memory = new BoundedMemoryLimiter({ ...opts, keyPrefix: "" }, this.config.maxKeys);
    this.memory.push(memory);
    l = this.redis
      ? new RateLimiterRedis({ ...opts, storeClient: this.redis, rejectIfRedisNotReady: true, insuranceLimiter: memory })
      : memory;
    this.limiters.set(name, l);
    return l;
  }

  /**
   * Counts one point; `res` undefined means the counter itself failed (not a refusal), which
   * lets the request through.
   */
  private async hit(name: string, rule: RateRule, key: string): Promise<{ ok: boolean; res?: RateLimiterRes }> {
    try {
      return { ok: true, res: await this.limiter(name, rule).consume(hash(key)) };
    } catch (error) {
      if (error instanceof RateLimiterRes) return { ok: false, res: error };
      this.log.warn({ err: error, limiter: name }, "a request limiter failed; the request is let through");
      return { ok: true };
    }
  }

  private async give(name: string, rule: RateRule, key: string): Promise<void> {
    await this.limiter(name, rule).reward(hash(key)).catch(() => undefined);
  }

  /**
   * Counts one request of `action`, or throws RATE_LIMITED with `retryAfterSeconds`. The most
   * specific scope is counted first, and a refusal gives back what was already counted: an
   * account over its budget does not spend its address's budget for everyone else behind it.
   */
  async take(action: LimitedAction, who: Requester): Promise<Grant> {
    const rules = this.config[action] as Partial<Record<Scope, RateRule>>;
    const address = addressKey(who.address, this.config.ipv6Prefix);
    const counted: { name: string; rule: RateRule; key: string }[] = [];
    const refund = async (scope?: "account") => {
      const back = counted.filter((c) => scope === undefined || c.name === `${action}:${scope}`);
      for (const c of back) counted.splice(counted.indexOf(c), 1);
      await Promise.all(back.map((c) => this.give(c.name, c.rule, c.key)));
    };
    const refuse = async (res: RateLimiterRes | undefined, scope: string): Promise<never> => {
      await refund();
      limitStats.refused[action]++;
      const retryAfterSeconds = Math.max(1, Math.ceil((res?.msBeforeNext ?? 1000) / 1000));
      throw new HavenError("RATE_LIMITED", `${MESSAGES[action]} from this ${scope}; retry in ${retryAfterSeconds} s`, undefined, { retryAfterSeconds });
    };
    const count = async (scope: Scope, key: string | undefined) => {
      const rule = rules[scope];
      if (!rule || key === undefined) return { ok: true, res: undefined };
      const name = `${action}:${scope}`;
      const r = await this.hit(name, rule, key);
      if (r.ok) counted.push({ name, rule, key });
      return r;
    };

    for (const scope of ["account", "device"] as const) {
      const r = await count(scope, scope === "account" ? who.account : who.device);
      if (!r.ok) await refuse(r.res, scope);
    }
    const exceptionApplies = action === "alert" || action === "bypass";
    // any attempt of a device marks it as seen for this action
    const isNew = exceptionApplies && who.device !== undefined
      && (await this.hit(`${action}:seen`, { points: 1, seconds: this.config.deviceMemorySeconds }, who.device)).res?.consumedPoints === 1;
    const byAddress = await count("address", address);
    if (byAddress.ok) return { refund };
    if (isNew) {
      const name = "new-devices:address";
      const fresh = await this.hit(name, this.config.newDevicesPerAddress, address);
      if (fresh.ok) {
        counted.push({ name, rule: this.config.newDevicesPerAddress, key: address });
        limitStats.newDevices++;
        this.log.info({ action }, "a new device was let through a spent address budget");
        return { refund };
      }
    }
    return refuse(byAddress.res, "network address");
  }
}
