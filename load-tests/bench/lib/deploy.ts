/**
 * One step's server side: a fresh database (a copy of the tree's base) seeded with N emergencies,
 * and the server started on it — one Haven process, or two in cluster mode when one process
 * cannot hold N emergencies of 5 sockets within its 20,000 open files — or the Socket.IO baseline.
 */
import { join } from "node:path";
import { Redis } from "ioredis";
import { createDb, dropDb, newDbName, withDb } from "./pg.ts";
import { seedEmergencies, unpark, type SeededEmergency } from "./seed.ts";
import { health, startHaven, startSocketIo, type Running } from "./servers.ts";
import type { Variant } from "./variants.ts";
import { sleep } from "./proc.ts";
import type { Log } from "./trees.ts";

export const REDIS_BASE = process.env.HAVEN_BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";
/** Redis database of the benchmark's clusters (the tests use 9). */
export const REDIS_DB = Number(process.env.HAVEN_BENCH_REDIS_DB ?? 12);

export interface Deployment {
  servers: Running[];
  /** Base URLs for matchmaking. */
  urls: string[];
  emergencies: SeededEmergency[];
  /** Socket.IO: room ids. */
  rooms: string[];
  /** From process start to /ready (restores included), per server. */
  startMs: number[];
  /** Seeding time. */
  seedMs: number;
  /** Emergencies each server holds once everything is restored. */
  held: number[];
  stop(): Promise<void>;
}

export interface DeployOptions {
  variant: Variant;
  emergencies: number;
  /** Most emergencies one server process holds (open files). */
  perProcess: number;
  logDir: string;
  label: string;
  log: Log;
}

export async function deploy(o: DeployOptions): Promise<Deployment> {
  const v = o.variant;
  if (v.kind === "socketio") {
    const server = await startSocketIo(join(o.logDir, `${o.label}.log`));
    const rooms = Array.from({ length: o.emergencies }, (_, i) => `emergency-${i}`);
    return {
      servers: [server], urls: [server.url], emergencies: [], rooms, startMs: [server.startMs], seedMs: 0, held: [o.emergencies],
      stop: () => server.stop(),
    };
  }
  const s = v.setup!;
  const processes = o.emergencies > o.perProcess ? 2 : 1;
  const dbName = newDbName("haven_bench_step");
  const url = await createDb(dbName, s.baseDb);
  const servers: Running[] = [];
  let redis: Redis | undefined;
  const cleanup = async () => {
    await Promise.all(servers.map((srv) => srv.stop()));
    if (redis) { await redis.flushdb().catch(() => undefined); redis.disconnect(); }
    await dropDb(dbName);
  };
  try {
    const t0 = performance.now();
    if (processes === 1) {
      const seeded = await withDb(url, (sql) => seedEmergencies(sql, s.template, o.emergencies, 0, { medicalMasterKey: s.keys.medicalMasterKey }));
      const seedMs = performance.now() - t0;
      o.log(`  seeded ${o.emergencies} emergencies in ${(seedMs / 1000).toFixed(1)} s; starting the server (it restores them)`);
      const srv = await startHaven({ tree: s.tree, transport: v.transport!, databaseUrl: url, keys: s.keys, logFile: join(o.logDir, `${o.label}.log`) });
      servers.push(srv);
      const h = await health(srv.url);
      if (h?.transport !== v.transport) throw new Error(`the server runs on ${String(h?.transport)}, not ${v.transport}`);
      return { servers, urls: [srv.url], emergencies: seeded, rooms: [], startMs: [srv.startMs], seedMs, held: [Number(h?.emergencies ?? NaN)], stop: cleanup };
    }
    // cluster mode: the first node restores the first half; the second half is opened once both
    // nodes are up, and the nodes' sweeps restore it on the less busy one (the second)
    const redisUrl = `${REDIS_BASE.replace(/\/\d*$/, "")}/${REDIS_DB}`;
    redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    await redis.flushdb();
    const half = Math.ceil(o.emergencies / 2);
    const first = await withDb(url, (sql) => seedEmergencies(sql, s.template, half, 0, { medicalMasterKey: s.keys.medicalMasterKey }));
    const second = await withDb(url, (sql) => seedEmergencies(sql, s.template, o.emergencies - half, half, { parked: true, medicalMasterKey: s.keys.medicalMasterKey }));
    const seedMs = performance.now() - t0;
    o.log(`  seeded ${o.emergencies} emergencies in ${(seedMs / 1000).toFixed(1)} s; cluster of 2: node 1 restores ${half}`);
    const a = await startHaven({ tree: s.tree, transport: v.transport!, databaseUrl: url, keys: s.keys, redisUrl, nodeName: "bench-1", logFile: join(o.logDir, `${o.label}-node1.log`) });
    servers.push(a);
    const b = await startHaven({ tree: s.tree, transport: v.transport!, databaseUrl: url, keys: s.keys, redisUrl, nodeName: "bench-2", logFile: join(o.logDir, `${o.label}-node2.log`) });
    servers.push(b);
    for (const srv of servers) {
      const h = await health(srv.url);
      if (h?.transport !== v.transport) throw new Error(`a node runs on ${String(h?.transport)}, not ${v.transport}`);
    }
    await withDb(url, (sql) => unpark(sql, second.map((e) => e.id), String(s.template.emergency.status)));
    o.log(`  node 2 up; ${second.length} more emergencies opened: waiting for the nodes' sweeps to restore them`);
    const t1 = performance.now();
    let held = [0, 0];
    for (;;) {
      held = await Promise.all(servers.map(async (srv) => Number((await health(srv.url))?.emergencies ?? 0)));
      if (held[0] + held[1] >= o.emergencies) break;
      if (performance.now() - t1 > 120_000) throw new Error(`only ${held[0] + held[1]} of ${o.emergencies} emergencies were restored within 120 s`);
      await sleep(500);
    }
    o.log(`  all restored in ${((performance.now() - t1) / 1000).toFixed(1)} s after opening: node 1 holds ${held[0]}, node 2 holds ${held[1]}`);
    if (Math.max(...held) > o.perProcess) o.log(`  a node holds more than ${o.perProcess} emergencies: its sockets may run out of open files (20,000)`);
    return {
      servers, urls: servers.map((x) => x.url), emergencies: [...first, ...second], rooms: [], startMs: [a.startMs, b.startMs], seedMs, held, stop: cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
