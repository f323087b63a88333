import type { Redis } from "ioredis";
import type { LatLng } from "../domain/geo.ts";
import { applyDutyPatch, dutyRoomId, type Candidate, type DutyIndex, type OnDuty, type ResponderKind } from "../domain/duty.ts";

const entryKey = (userId: string) => `haven:duty:${userId}`;
const geoKey = (kind: ResponderKind) => `haven:duty:geo:${kind}`;
const ASSIGNED = "haven:duty:assigned";
/** The responders whose duty room lives on a process. */
const procKey = (pid: string) => `haven:duty:proc:${pid}`;

/**
 * Writes a responder's entry (mode "upsert" creates it, "update" only changes an existing one,
 * "refresh" writes nothing; a position older than the one held is ignored) and then puts the responder in its kind's GEO set exactly when it is
 * dispatchable: available, unassigned, with a known position. One script, so a concurrent
 * assignment and a position update never leave an assigned responder dispatchable.
 */
const WRITE = `
local mode = ARGV[1]
if mode == 'update' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local fields = {}
for i = 3, #ARGV, 2 do fields[ARGV[i]] = ARGV[i + 1] end
if fields.updatedAt and tonumber(fields.updatedAt) < tonumber(redis.call('HGET', KEYS[1], 'updatedAt') or '0') then
  fields.lat = nil; fields.lng = nil; fields.updatedAt = nil
end
local flat = {}
for k, v in pairs(fields) do flat[#flat + 1] = k; flat[#flat + 1] = v end
if #flat > 0 then redis.call('HSET', KEYS[1], unpack(flat)) end
local kind = redis.call('HGET', KEYS[1], 'kind')
if not kind then return 0 end
local geo = 'haven:duty:geo:' .. kind
local upd = tonumber(redis.call('HGET', KEYS[1], 'updatedAt') or '0')
if redis.call('HGET', KEYS[1], 'available') == '1' and redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 and upd > 0 then
  redis.call('GEOADD', geo, redis.call('HGET', KEYS[1], 'lng'), redis.call('HGET', KEYS[1], 'lat'), ARGV[2])
else
  redis.call('ZREM', geo, ARGV[2])
end
return 1`;

type WriteCommand = { havenDutyWrite(entry: string, assigned: string, mode: string, userId: string, ...fields: string[]): Promise<number> };

/**
 * The on-duty index of a cluster, in Redis: a hash per responder, a GEO set per kind holding the
 * dispatchable ones (GEOSEARCH finds the nearest, whatever node their duty socket is on), and
 * one hash of assignments. The process keeps its own duty rooms' entries, and writes them again
 * when Redis comes back (a restarted Redis may have lost them).
 */
export class RedisDutyIndex implements DutyIndex {
  private readonly redis: Redis & WriteCommand;
  private readonly mine = new Map<string, OnDuty>();

  private readonly processId: string;

  constructor(redis: Redis, processId: string) {
    this.processId = processId;
    redis.defineCommand("havenDutyWrite", { numberOfKeys: 2, lua: WRITE });
    this.redis = redis as Redis & WriteCommand;
  }

  private write(userId: string, mode: "upsert" | "update" | "refresh", fields: Record<string, string | number | boolean>): Promise<number> {
    const flat = Object.entries(fields).flatMap(([k, v]) => [k, typeof v === "boolean" ? (v ? "1" : "0") : String(v)]);
    return this.redis.havenDutyWrite(entryKey(userId), ASSIGNED, mode, userId, ...flat);
  }

  /**
   * Both commands are queued at once, in order on the one connection, so that an update issued
   * right after (the app's first position) reaches Redis after the entry it updates exists.
   */
  async upsert(entry: OnDuty): Promise<void> {
    this.mine.set(entry.userId, { ...entry });
    await Promise.all([
      this.redis.sadd(procKey(this.processId), entry.userId),
      this.write(entry.userId, "upsert", { pid: this.processId, kind: entry.kind, name: entry.name, available: entry.available, lat: entry.lat, lng: entry.lng, updatedAt: entry.updatedAt }),
    ]);
  }

  async update(userId: string, patch: Partial<Pick<OnDuty, "lat" | "lng" | "available" | "updatedAt">>): Promise<void> {
    const own = this.mine.get(userId);
    if (own) applyDutyPatch(own, patch);
    await this.write(userId, "update", patch as Record<string, number | boolean>);
  }

  async remove(userId: string): Promise<void> {
    this.mine.delete(userId);
    await this.redis.multi().srem(procKey(this.processId), userId).del(entryKey(userId)).zrem(geoKey("first_aider"), userId).zrem(geoKey("ambulance_crew"), userId).exec();
  }

  async assign(userId: string, emergencyId: string | undefined): Promise<void> {
    if (emergencyId === undefined) await this.redis.hdel(ASSIGNED, userId);
    else await this.redis.hset(ASSIGNED, userId, emergencyId);
    await this.write(userId, "refresh", {});
  }

  async assignmentOf(userId: string): Promise<string | undefined> {
    return (await this.redis.hget(ASSIGNED, userId)) ?? undefined;
  }

  async candidates(kind: ResponderKind, at: LatLng, radiusM: number, count: number): Promise<Candidate[]> {
    const rows = await this.redis.call("GEOSEARCH", geoKey(kind), "FROMLONLAT", at.lng, at.lat, "BYRADIUS", radiusM, "m", "ASC", "COUNT", count, "WITHDIST", "WITHCOORD") as [string, string, [string, string]][];
    return rows.map(([userId, dist, [lng, lat]]) => ({ userId, dutyRoomId: dutyRoomId(userId), distanceM: Math.round(Number(dist)), lat: Number(lat), lng: Number(lng) }));
  }

  /** A process died: its responders are not dispatchable until their apps open a duty room again. */
  async forgetProcess(pid: string): Promise<number> {
    let dropped = 0;
    for (const userId of await this.redis.smembers(procKey(pid))) {
      if ((await this.redis.hget(entryKey(userId), "pid")) !== pid) continue;
      await this.redis.multi().del(entryKey(userId)).zrem(geoKey("first_aider"), userId).zrem(geoKey("ambulance_crew"), userId).exec();
      dropped++;
    }
    await this.redis.del(procKey(pid));
    return dropped;
  }

  /** Writes this process's duty entries again (after Redis came back). */
  async rewrite(): Promise<void> {
    for (const e of this.mine.values()) await this.upsert(e).catch(() => undefined);
  }
}
