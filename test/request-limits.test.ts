import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/log.ts";
import { redisConnection } from "../src/cluster/redis.ts";
import { RequestLimits } from "../src/limits/requests.ts";
import { BoundedMemoryLimiter, ExpiringMap } from "../src/limits/bounded.ts";
import { addressKey, canonicalAddress } from "../src/limits/address.ts";
import { clientIp } from "../src/http/adapters.ts";
import { account, ensureRedis, freePort, REDIS_URL, startCluster } from "./harness.ts";

/**
 * The request limits below the HTTP layer: addresses as they are counted, memory that stays
 * bounded whatever keys a client invents, counts shared by the nodes of a cluster through Redis,
 * and what each node does while Redis is away. Redis database 13, emptied first.
 */

const log = createLogger("silent");
const config = loadConfig({ HAVEN_ALERT_PER_HOUR_PER_ACCOUNT: "3", HAVEN_LIMITER_MAX_KEYS: "100" }).limits.requests;
const url = `${REDIS_URL.replace(/\/\d*$/, "")}/13`;
const opened: RequestLimits[] = [];

beforeAll(async () => {
  await ensureRedis();
  const admin = new Redis(url, { maxRetriesPerRequest: 1 });
  await admin.flushdb();
  admin.disconnect();
});
afterAll(() => { for (const l of opened) l.close(); });

async function node(redisUrl?: string, waitReady = true): Promise<RequestLimits> {
  const redis = redisUrl ? redisConnection(redisUrl, "haven:limits-test", log, { commandTimeout: 250 }) : undefined;
  if (redis && waitReady && redis.status !== "ready") await new Promise((resolve) => redis.once("ready", resolve));
  const l = new RequestLimits(config, log, redis);
  opened.push(l);
  return l;
}

async function outcomes(n: number, f: () => Promise<unknown>): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await f().then(() => "ok", (e) => e.code ?? String(e)));
  return out;
}

describe("request limits", () => {
  it("counts IPv4-mapped IPv6 as IPv4 and IPv6 by its /64; trusts X-Forwarded-For only when told", () => {
    expect(canonicalAddress("::ffff:192.0.2.1")).toBe("192.0.2.1");
    expect(canonicalAddress("0000:0000:0000:0000:0000:ffff:c000:0201")).toBe("192.0.2.1"); // as uWebSockets.js reports it
    expect(addressKey("2001:db8:1:2:3:4:5:6")).toBe("2001:db8:1:2::/64");
    expect(addressKey("2001:db8:1:2::ffff")).toBe(addressKey("2001:db8:1:2:aaaa::1"));
    expect(addressKey("2001:db8:1:3::1")).not.toBe(addressKey("2001:db8:1:2::1"));
    expect(addressKey("2001:db8:1:2::1", 48)).toBe("2001:db8:1::/48");
    expect(addressKey("192.0.2.1")).toBe("192.0.2.1");
    const xff = { "x-forwarded-for": "203.0.113.9, 198.51.100.4" };
    expect(clientIp(xff, "::ffff:127.0.0.1", false)).toBe("127.0.0.1");
    expect(clientIp(xff, "127.0.0.1", true)).toBe("198.51.100.4");
    expect(clientIp({ "x-forwarded-for": "not-an-address" }, "127.0.0.1", true)).toBe("127.0.0.1");
  });

  it("keeps at most maxKeys keys in memory however many a client invents, and still limits", async () => {
    const limiter = new BoundedMemoryLimiter({ points: 2, duration: 3600 }, 100);
    for (let i = 0; i < 5000; i++) await limiter.consume(`invented-${i}`);
    expect(limiter.size).toBe(100);
    await limiter.consume("hot");
    await limiter.consume("hot");
    await expect(limiter.consume("hot")).rejects.toMatchObject({ remainingPoints: 0 });

    const single = await node();
    for (let i = 0; i < 3000; i++) await single.take("alert", { account: `a${i}`, device: `device-${i}-xxxx`, address: `2001:db8:${i.toString(16)}::1` }).catch(() => undefined);
    // account, device, address, seen devices and new devices: five limiters of at most 100 keys each
    expect(single.memoryKeys()).toBeLessThanOrEqual(500);

    const names = new ExpiringMap<string>(60_000, 50);
    for (let i = 0; i < 1000; i++) names.set(`bypass:${i}`, "caller");
    expect(names.size).toBe(50);
    expect(names.get("bypass:999")).toBe("caller");
    expect(names.get("bypass:0")).toBeUndefined();
  });

  it("shares the counts of every node through Redis", async () => {
    const [a, b] = [await node(url), await node(url)];
    const who = { account: "shared-account", address: "192.0.2.10" };
    expect(await outcomes(2, () => a.take("alert", who))).toEqual(["ok", "ok"]);
    expect(await outcomes(2, () => b.take("alert", who))).toEqual(["ok", "RATE_LIMITED"]);
    expect(await outcomes(1, () => a.take("alert", who))).toEqual(["RATE_LIMITED"]);
    const refused = await a.take("alert", who).catch((e) => e);
    expect(refused.retryAfterSeconds).toBeGreaterThan(3500);
    expect(refused.retryAfterSeconds).toBeLessThanOrEqual(3600);
    // a refund (a duplicate alert) gives the point back to every node
    const other = { account: "refunded-account", address: "192.0.2.11" };
    for (let i = 0; i < 3; i++) await (await a.take("alert", other)).refund();
    expect(await outcomes(3, () => b.take("alert", other))).toEqual(["ok", "ok", "ok"]);
  });

  it("while Redis is away, each node counts alone in memory and nothing fails", async () => {
    const away = await node(`redis://127.0.0.1:${await freePort()}/13`, false);
    const who = { account: "offline-account", device: "offline-device-1", address: "192.0.2.20" };
    expect(await outcomes(4, () => away.take("alert", who))).toEqual(["ok", "ok", "ok", "RATE_LIMITED"]);
    expect(away.memoryKeys()).toBeGreaterThan(0);
  });

  it("in a cluster, an account's alerts are counted across the nodes", async () => {
    const cluster = await startCluster(2, { HAVEN_ALERT_PER_HOUR_PER_ACCOUNT: "3" }, { url: REDIS_URL, db: 13 });
    try {
      const [a, b] = cluster.nodes;
      const patient = await account(a, "patient");
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) {
        const node = i % 2 === 0 ? a : b;
        const raised = await node.http("POST", "/api/emergency/alert", { lat: -1.2864, lng: 36.8172 }, patient.token);
        statuses.push(raised.status);
        if (raised.status === 201) expect((await node.http("POST", `/api/emergency/${raised.body.emergencyId}/cancel`, { reason: "false_alarm" }, patient.token)).status).toBe(200);
      }
      expect(statuses).toEqual([201, 201, 201, 429]);
    } finally {
      await cluster.stop();
    }
  }, 60_000);
});
