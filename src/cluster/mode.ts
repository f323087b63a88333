import { LocalPresence, matchMaker, type Presence, type ServerOptions } from "@colyseus/core";
import { RedisPresence } from "@colyseus/redis-presence";
import { RedisDriver } from "@colyseus/redis-driver";
import { IndexedLocalDriver } from "./local-driver.ts";
import type { Redis } from "ioredis";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import { LocalDutyIndex, type DutyIndex } from "../domain/duty.ts";
import { LocalMembership, RedisMembership, type Membership } from "./membership.ts";
import { RedisDutyIndex } from "./redis-duty.ts";
import { redisConnection } from "./redis.ts";
import { listingOf, processSelector } from "./rooms.ts";
import { colyseus } from "../colyseus.ts";

/** What the rest of the node needs to hear from cluster mode once it runs. */
export interface ClusterHooks {
  /** A restarted Redis lost the room index, claims and assignments: rooms say again who serves them. */
  reassertAssignments(): void;
  /** Another node holds this room now: its parties go there. */
  relinquish(roomId: string): void;
}

/**
 * Cluster mode as one extension, started in one place: with `REDIS_URL`, rooms spread over the
 * nodes through Redis presence and driver, membership by heartbeats in Redis and the on-duty index
 * in Redis GEO; without it, one process holds everything (a membership that does nothing, presence
 * and the on-duty index in memory). The server asks this for its parts and never checks which.
 */
export interface ClusterMode {
  readonly clustered: boolean;
  readonly presence: Presence;
  /** Colyseus server options of this mode (driver, public address, where new rooms go). */
  serverOptions(): Partial<ServerOptions>;
  /** After Colyseus is ready (its process id is known): the membership and the on-duty index. */
  join(processId: string): Promise<{ membership: Membership; duty: DutyIndex }>;
  /** The connection request limits count on, or undefined (each node counts alone). */
  limitsRedis(): Redis | undefined;
  /** Wires the reactions to Redis coming back and to rooms lost to another node. */
  listen(hooks: ClusterHooks): void;
}

/** Starts the cluster mode `config` asks for. */
export async function startClusterMode(config: Config, log: Logger): Promise<ClusterMode> {
  const cluster = config.cluster;
  if (!cluster) return singleNode();
  const { presence, driver } = await colyseusRedis(cluster.redisUrl, log);
  let membership: RedisMembership | undefined;
  let duty: RedisDutyIndex | undefined;
  return {
    clustered: true,
    presence,
    serverOptions: () => ({ driver, publicAddress: cluster.publicAddress, selectProcessIdToCreateRoom: processSelector(() => membership!) }),
    async join(processId) {
      membership = new RedisMembership({
        url: cluster.redisUrl, processId, publicAddress: cluster.publicAddress,
        heartbeatMs: cluster.heartbeatMs, leaseMs: cluster.leaseMs, deathGraceMs: cluster.deathGraceMs, log,
      });
      await membership.start();
      duty = new RedisDutyIndex(membership.redis, membership.processId);
      return { membership, duty };
    },
    limitsRedis: () => redisConnection(cluster.redisUrl, "haven:limits", log, { commandTimeout: 250 }),
    listen(hooks) {
      const m = membership!;
      m.on("reconnected", () => {
        // a restarted Redis lost the room index, the claims, the on-duty index and the assignments
        hooks.reassertAssignments();
        void duty!.rewrite();
        void Promise.resolve(matchMaker.stats.persist(true)).catch(() => undefined);
      });
      // every beat: a room of this node missing from the room index (Redis restarted, or this
      // node was wrongly reaped) is listed again, so that matchmaking finds it
      m.on("beat", () => void relistHeldRooms(m).catch(() => undefined));
      m.on("lost", (roomId: string) => hooks.relinquish(roomId));
    },
  };
}

function singleNode(): ClusterMode {
  return {
    clustered: false,
    presence: new LocalPresence(),
    serverOptions: () => ({ driver: new IndexedLocalDriver() }),
    async join(processId) {
      const membership = new LocalMembership(processId);
      await membership.start();
      return { membership, duty: new LocalDutyIndex() };
    },
    limitsRedis: () => undefined,
    listen: () => {},
  };
}

/**
 * Colyseus's Redis presence and driver, on connections that fail fast while Redis is away (no
 * offline queue: a matchmaking call answers UNAVAILABLE at once rather than hanging) and come
 * back by themselves. Start-up waits until they are connected.
 */
async function colyseusRedis(url: string, log: Logger): Promise<{ presence: RedisPresence; driver: RedisDriver }> {
  const pub = redisConnection(url, "haven:presence", undefined);
  const presence = new RedisPresence(pub);
  const sub = colyseus.presenceSubscriber(presence);
  const driverClient = redisConnection(url, "haven:driver", log);
  const ready = (c: Redis) => c.status === "ready" ? Promise.resolve() : new Promise<void>((resolve) => c.once("ready", () => resolve()));
  const timeout = setTimeout(() => log.error({ url: new URL(url).host }, "still waiting for Redis (REDIS_URL)"), 5000);
  await Promise.all([ready(pub), ready(sub), ready(driverClient)]);
  clearTimeout(timeout);
  return { presence, driver: new RedisDriver(driverClient) };
}

/** Puts the listings of this node's rooms back into the room index where they are missing. */
async function relistHeldRooms(m: RedisMembership): Promise<void> {
  const ids = [...m.held].filter((id) => matchMaker.getLocalRoomById(id));
  if (ids.length === 0) return;
  const listed = await matchMaker.findRoomsByIds(ids);
  for (const id of ids) {
    if (listed.has(id)) continue;
    await matchMaker.driver.persist(listingOf(matchMaker.getLocalRoomById(id)), true);
  }
}
