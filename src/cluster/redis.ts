import { Redis } from "ioredis";
import type { Logger } from "../log.ts";

/**
 * A connection to Haven's Redis as every part of Haven opens it: no offline queue and one retry
 * per command, so that a call made while Redis is away fails at once (and answers UNAVAILABLE)
 * rather than waiting, and a reconnect every 100 ms up to once a second, by itself.
 */
export function redisConnection(url: string, name: string, log: Logger | undefined, extra: { lazyConnect?: boolean; commandTimeout?: number } = {}): Redis {
  const redis = new Redis(url, {
    ...extra,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectionName: name,
    retryStrategy: (times) => Math.min(100 * times, 1000),
  });
  // without a logger, the owner of the connection logs its errors (Colyseus's presence does)
  if (log) redis.on("error", (e: Error) => log.warn({ err: e.message, connection: name }, "redis connection error"));
  return redis;
}
