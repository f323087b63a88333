import { EventEmitter } from "node:events";
import type { Redis } from "ioredis";
import { redisConnection } from "./redis.ts";
import type { Logger } from "../log.ts";

/**
 * Which processes are alive, and which process holds each room. A room is held by exactly one
 * live process cluster-wide: a process claims a room's id before the room exists, and the claim
 * stands for as long as that process is alive. A process is alive while its heartbeat key is
 * fresh and it is subscribed to its matchmaking channel; a process killed outright loses its
 * subscription the moment Redis sees its socket close, so its rooms can be taken over at once,
 * and a process that hangs loses them when its heartbeat lapses.
 *
 * Claims only keep two processes from running the same room. What makes a stale holder
 * harmless is the fencing token in Postgres (see `EmergencyStore.claim`).
 */
export interface Membership extends EventEmitter {
  readonly processId: string;
  readonly clustered: boolean;
  /** Claims `roomId` for this process; false when another live process holds it. */
  claim(roomId: string): Promise<boolean>;
  /** Gives up a claim of this process (a claim of another process is left alone). */
  release(roomId: string): Promise<void>;
  /** The ones among `processIds` that are alive now. */
  alive(processIds: readonly string[]): Promise<Set<string>>;
  /**
   * The ones among `processIds` that are dead: not alive, seen so by this process for the death
   * grace, and not just after this process reconnected to Redis (when live peers may not have
   * announced themselves again yet). Only a dead process's rooms are taken over.
   */
  deadOnes(processIds: readonly string[]): Promise<Set<string>>;
  /** The process holding the claim on `roomId`, if any. */
  holderOf(roomId: string): Promise<string | undefined>;
  /** Every process that announced itself and was not yet reaped. */
  members(): Promise<string[]>;
  /** Forgets a dead process once its rooms were taken over. */
  forget(processId: string): Promise<void>;
  /** Takes the right to reap a dead process; one process gets it. */
  lockReap(processId: string): Promise<boolean>;
  /** True once this process has been connected long enough for every live peer to have announced itself. */
  settled(): boolean;
  /** Connected to Redis (always true for one process without Redis). */
  connected(): boolean;
  /** Starts the heartbeat (before the node accepts work, so its claims count as alive). */
  start(): Promise<void>;
  /** Lists this process as a member once it accepts work: from then on, its death is noticed and reaped. */
  announce(): Promise<void>;
  stop(): Promise<void>;
}

/** One process, no Redis: it holds every room it creates. */
export class LocalMembership extends EventEmitter implements Membership {
  readonly clustered = false;
  readonly processId: string;
  private readonly held = new Set<string>();
  constructor(processId: string) {
    super();
    this.processId = processId;
  }
  async claim(roomId: string): Promise<boolean> {
    if (this.held.has(roomId)) return false;
    this.held.add(roomId);
    return true;
  }
  async release(roomId: string): Promise<void> { this.held.delete(roomId); }
  async alive(ids: readonly string[]): Promise<Set<string>> { return new Set(ids.filter((id) => id === this.processId)); }
  /** Alone, every other process id is an earlier run of this node. */
  async deadOnes(ids: readonly string[]): Promise<Set<string>> { return new Set(ids.filter((id) => id !== this.processId)); }
  async holderOf(roomId: string): Promise<string | undefined> { return this.held.has(roomId) ? this.processId : undefined; }
  async members(): Promise<string[]> { return [this.processId]; }
  async forget(): Promise<void> {}
  async lockReap(): Promise<boolean> { return true; }
  settled(): boolean { return true; }
  connected(): boolean { return true; }
  async start(): Promise<void> {}
  async announce(): Promise<void> {}
  async stop(): Promise<void> {}
}

const NODES = "haven:nodes";
const nodeKey = (pid: string) => `haven:node:${pid}`;
const roomKey = (roomId: string) => `haven:room:${roomId}`;
/** Colyseus's own matchmaking channel of a process (MatchMaker's getProcessChannel). */
const processChannel = (pid: string) => `p:${pid}`;

/** Claims a room unless a live process other than the caller holds it. */
const CLAIM = `
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then
  if redis.call('EXISTS', 'haven:node:' .. cur) == 1 and redis.call('PUBSUB', 'NUMSUB', 'p:' .. cur)[2] > 0 then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export interface RedisMembershipOptions {
  url: string;
  processId: string;
  /** Where clients reach this process (host:port). */
  publicAddress: string;
  heartbeatMs: number;
  /** A process whose heartbeat is older than this is dead. */
  leaseMs: number;
  /** A process seen not alive for this long is dead (a blip of its Redis connections is not a death). */
  deathGraceMs: number;
  log: Logger;
}

/**
 * The cluster's membership in Redis, on its own connection. Commands fail fast while Redis is
 * away (no offline queue), so nothing waits on it; when Redis is back, this process announces
 * itself again and emits "reconnected" so that the room index, the claims of its rooms and the
 * on-duty index are written again (a restarted Redis may have lost them).
 */
export class RedisMembership extends EventEmitter implements Membership {
  readonly clustered = true;
  readonly processId: string;
  readonly redis: Redis;
  private readonly o: RedisMembershipOptions;
  private timer?: NodeJS.Timeout;
  private readySince = 0;
  private stopped = false;
  private announced = false;
  /** The rooms this process claimed, to claim again after Redis lost them. */
  readonly held = new Set<string>();
  /** When this process first saw each peer not alive (cleared when it is seen alive). */
  private readonly notAliveSince = new Map<string, number>();

  constructor(o: RedisMembershipOptions) {
    super();
    this.o = o;
    this.processId = o.processId;
    this.redis = redisConnection(o.url, `haven:${o.processId}`, o.log, { lazyConnect: true });
    this.redis.defineCommand("havenClaim", { numberOfKeys: 1, lua: CLAIM });
    this.redis.defineCommand("havenRelease", { numberOfKeys: 1, lua: RELEASE });
    this.redis.on("close", () => { this.readySince = 0; });
    this.redis.on("ready", () => {
      const reconnect = this.readySince === 0 && this.timer !== undefined;
      // after a reconnect, peers may not have announced themselves again yet: wait before reaping
      this.readySince = reconnect ? Date.now() : 1;
      if (!reconnect) return;
      o.log.warn("redis is back: announcing this node and its rooms again");
      void this.beat().then(() => this.reclaim()).then(() => this.emit("reconnected"));
    });
  }

  async start(): Promise<void> {
    await this.redis.connect();
    await this.beat();
    this.timer = setInterval(() => void this.beat(), this.o.heartbeatMs);
    this.timer.unref();
  }

  async announce(): Promise<void> {
    this.announced = true;
    await this.beat();
  }

  private async beat(): Promise<void> {
    if (this.stopped) return;
    try {
      const beat = this.redis.multi().set(nodeKey(this.processId), this.o.publicAddress, "PX", this.o.leaseMs);
      if (this.announced) beat.sadd(NODES, this.processId);
      await beat.exec();
      await this.checkHeld();
      this.emit("beat");
    } catch {
      // Redis is away: the "ready" handler announces this node again
    }
  }

  /**
   * A process that stalled (a long pause, a partition) may have been declared dead and its rooms
   * taken over: each beat it checks its claims, and a room claimed by another process is lost here
   * (its parties are sent to the new holder, and the fencing token keeps its writes out).
   */
  private async checkHeld(): Promise<void> {
    const ids = [...this.held];
    if (ids.length === 0) return;
    const owners = await this.redis.mget(ids.map(roomKey));
    ids.forEach((roomId, i) => {
      const owner = owners[i];
      if (owner !== null && owner !== this.processId && this.held.delete(roomId)) this.emit("lost", roomId);
    });
  }

  /** After Redis lost its data: claim this process's rooms again; a room taken meanwhile is lost. */
  private async reclaim(): Promise<void> {
    for (const roomId of [...this.held]) {
      const ok = await this.claimInRedis(roomId).catch(() => true);
      if (!ok) {
        this.held.delete(roomId);
        this.emit("lost", roomId);
      }
    }
  }

  /** A room being created or running here is not created a second time here either. */
  async claim(roomId: string): Promise<boolean> {
    if (this.held.has(roomId)) return false;
    this.held.add(roomId);
    try {
      if (await this.claimInRedis(roomId)) return true;
    } catch (error) {
      this.held.delete(roomId);
      throw error;
    }
    this.held.delete(roomId);
    return false;
  }

  private async claimInRedis(roomId: string): Promise<boolean> {
    return await (this.redis as unknown as { havenClaim(k: string, me: string): Promise<number> }).havenClaim(roomKey(roomId), this.processId) === 1;
  }

  async release(roomId: string): Promise<void> {
    this.held.delete(roomId);
    await (this.redis as unknown as { havenRelease(k: string, me: string): Promise<number> }).havenRelease(roomKey(roomId), this.processId).catch(() => undefined);
  }

  async alive(ids: readonly string[]): Promise<Set<string>> {
    const unique = [...new Set(ids)];
    if (unique.length === 0) return new Set();
    const pipe = this.redis.pipeline();
    for (const id of unique) pipe.exists(nodeKey(id)).pubsub("NUMSUB", processChannel(id));
    const replies = (await pipe.exec()) ?? [];
    const live = new Set<string>();
    unique.forEach((id, i) => {
      const [e1, exists] = replies[2 * i] ?? [];
      const [e2, numsub] = replies[2 * i + 1] ?? [];
      if (e1 || e2) throw e1 ?? e2;
      if (exists === 1 && Number((numsub as [string, number])[1]) > 0) live.add(id);
    });
    return live;
  }

  async deadOnes(ids: readonly string[]): Promise<Set<string>> {
    const others = [...new Set(ids)].filter((id) => id !== this.processId);
    const live = await this.alive(others);
    const now = Date.now();
    const dead = new Set<string>();
    for (const id of others) {
      if (live.has(id)) {
        this.notAliveSince.delete(id);
        continue;
      }
      if (!this.settled()) continue;
      const since = this.notAliveSince.get(id) ?? now;
      this.notAliveSince.set(id, since);
      if (now - since >= this.o.deathGraceMs) dead.add(id);
    }
    return dead;
  }

  async holderOf(roomId: string): Promise<string | undefined> {
    return (await this.redis.get(roomKey(roomId))) ?? undefined;
  }

  async members(): Promise<string[]> {
    return this.redis.smembers(NODES);
  }

  async forget(processId: string): Promise<void> {
    this.notAliveSince.delete(processId);
    await this.redis.srem(NODES, processId);
  }

  async lockReap(processId: string): Promise<boolean> {
    return (await this.redis.set(`haven:reap:${processId}`, this.processId, "PX", 15_000, "NX")) === "OK";
  }

  connected(): boolean {
    return this.redis.status === "ready";
  }

  settled(): boolean {
    return this.readySince > 0 && Date.now() - this.readySince >= this.o.leaseMs + this.o.heartbeatMs;
  }

  /** Leaves the cluster: peers see this process dead at once and take its emergencies over. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.redis.del(nodeKey(this.processId)).catch(() => undefined);
    this.redis.disconnect();
  }
}
