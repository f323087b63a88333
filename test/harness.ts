import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as joinPath } from "node:path";
import postgres from "postgres";
import { createServer } from "node:net";
import { randomUUID } from "node:crypto";
import { Client, type Room } from "@colyseus/sdk";

import { NODE_FLAGS } from "../src/gc.ts";
import { GENEROUS_LIMITS } from "./generous-limits.ts";
/**
 * Test harness: a real Haven process on a real port, real @colyseus/sdk clients, real HTTP.
 * The transport comes from HAVEN_TRANSPORT (auto when unset), so the same suite runs on
 * uWebSockets.js and on the ws fallback.
 */

export const OPS = { email: "ops@haven.test", password: "ops-password-123" };

/** WebSocket-level failures recorded by test/setup.ts (the SDK reports them without detail). */
const socketFailures: string[] = (globalThis as { __havenSocketFailures?: string[] }).__havenSocketFailures ?? [];
export const root = new URL("..", import.meta.url).pathname;

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface Haven {
  url: string;
  /** The server's database (a fresh one per server unless the test passed DATABASE_URL). */
  databaseUrl: string;
  port: number;
  transport: string;
  proc: ChildProcess;
  logs: string[];
  stop(): Promise<void>;
  /** SIGKILL: the process dies at once, as in a crash. */
  kill(): Promise<void>;
  http<T = any>(method: string, path: string, body?: unknown, token?: string, headers?: Record<string, string>): Promise<{ status: number; body: T }>;
}

/** The machine's Postgres (tests start it when it is down; they never skip). */
export const PG_ADMIN_URL = process.env.HAVEN_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

let pgChecked = false;
async function ensurePostgres(): Promise<void> {
  if (pgChecked) return;
  const probe = postgres(PG_ADMIN_URL, { max: 1, connect_timeout: 3, onnotice: () => {} });
  try {
    await probe`select 1`;
  } catch {
    const versions = execFileSync("ls", ["/etc/postgresql"]).toString().trim().split("\n");
    execFileSync("pg_ctlcluster", ["--skip-systemctl-redirect", versions.at(-1)!, "main", "start"], { stdio: "inherit" });
    await probe`select 1`;
  } finally {
    await probe.end({ timeout: 1 });
  }
  pgChecked = true;
}

/** A fresh database on the machine's Postgres; dropped by `drop()`. */
export async function freshDatabase(): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  await ensurePostgres();
  const name = `haven_t_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const admin = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`); // a generated identifier, not user data
  await admin.end({ timeout: 1 });
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    async drop() {
      const a = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {} });
      await a.unsafe(`drop database if exists ${name} with (force)`);
      await a.end({ timeout: 1 });
    },
  };
}

export async function startHaven(env: Record<string, string> = {}): Promise<Haven> {
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const db = env.DATABASE_URL ? undefined : await freshDatabase();
  // nodes of one cluster share a data folder (and with it the development signing keys)
  const ownDataDir = env.HAVEN_DATA_DIR === undefined;
  const dataDir = env.HAVEN_DATA_DIR ?? mkdtempSync(joinPath(tmpdir(), "haven-test-"));
  const logs: string[] = [];
  const proc = spawn(process.execPath, [...NODE_FLAGS, "src/main.ts"], {
    cwd: root,
    env: {
      ...process.env,
      PORT: String(port),
      HOST: "127.0.0.1",
      HAVEN_ENV: "test",
      LOG_LEVEL: "info",
      HAVEN_BOOTSTRAP_OPS_EMAIL: OPS.email,
      HAVEN_BOOTSTRAP_OPS_PASSWORD: OPS.password,
      HAVEN_TRANSPORT: process.env.HAVEN_TRANSPORT ?? "auto",
      // tests register, log in and alert with many accounts from one address; the limits have their own tests
      ...GENEROUS_LIMITS,
      ...(db ? { DATABASE_URL: db.url } : {}),
      HAVEN_DATA_DIR: dataDir,
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  proc.stdout!.on("data", (d) => logs.push(String(d)));
  proc.stderr!.on("data", (d) => logs.push(String(d)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  let health: any;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`haven exited with ${proc.exitCode}:\n${logs.join("")}`);
    try {
      // ready: listening, and every emergency it had to restore is back
      const r = await fetch(`${url}/ready`);
      if (r.ok) { health = await (await fetch(`${url}/health`)).json(); break; }
    } catch { /* not up yet */ }
    await sleep(100);
  }
  if (!health) throw new Error(`haven did not start:\n${logs.join("")}`);

  const http = async (method: string, path: string, body?: unknown, token?: string, headers: Record<string, string> = {}) => {
    const h: Record<string, string> = { ...headers };
    if (body !== undefined && !h["content-type"]) h["content-type"] = "application/json";
    if (token) h.authorization = `Bearer ${token}`;
    const r = await fetch(`${url}${path}`, { method, headers: h, body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body) });
    const text = await r.text();
    let parsed: any = text;
    try { parsed = JSON.parse(text); } catch { /* not json */ }
    return { status: r.status, body: parsed };
  };

  return {
    url, port, transport: health.transport, proc, logs, http, databaseUrl: env.DATABASE_URL ?? db!.url,
    async kill() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGKILL");
      await exited;
    },
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await Promise.race([exited, sleep(8000)]);
        if (proc.exitCode === null) proc.kill("SIGKILL");
      }
      await db?.drop();
      if (ownDataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Account { id: string; token: string; refreshToken: string; email: string; role: string; hospitalId?: string }

export async function login(h: Haven, email: string, password: string): Promise<Account> {
  const r = await h.http("POST", "/api/auth/login", { email, password });
  if (r.status !== 200) throw new Error(`login failed: ${r.status} ${JSON.stringify(r.body)}`);
  return { id: r.body.user.id, token: r.body.accessToken, refreshToken: r.body.refreshToken, email, role: r.body.user.role, hospitalId: r.body.user.hospitalId };
}

export async function account(h: Haven, role: string, opts: { hospitalId?: string; by?: Account; name?: string } = {}): Promise<Account> {
  const email = `${role}-${randomUUID().slice(0, 8)}@haven.test`;
  const password = "a-long-password-1";
  const r = await h.http("POST", "/api/auth/register", { email, password, name: opts.name ?? `${role} user`, role, hospitalId: opts.hospitalId }, opts.by?.token);
  if (r.status !== 201) throw new Error(`register ${role} failed: ${r.status} ${JSON.stringify(r.body)}`);
  return login(h, email, password);
}

/** A verified responder on duty at `at`, with its duty room joined. */
export async function onDuty(h: Haven, ops: Account, kind: "first_aider" | "ambulance_crew", at: { lat: number; lng: number }) {
  const acc = await account(h, kind);
  const v = await h.http("POST", `/api/responders/${acc.id}/verification`, { verified: true }, ops.token);
  if (v.status !== 200) throw new Error(`verify failed: ${JSON.stringify(v.body)}`);
  const d = await h.http("POST", "/api/duty", {}, acc.token);
  if (d.status !== 201) throw new Error(`duty failed: ${JSON.stringify(d.body)}`);
  const duty = await join(h, acc.token, d.body.roomId);
  duty.onMessage("offer_withdrawn", () => {});
  await duty.request("position", at);
  return { acc, duty };
}

export function sdk(h: Haven, token: string): Client {
  const c = new Client(h.url);
  c.auth.token = token;
  return c;
}

export async function join(h: Haven, token: string, roomId: string): Promise<Room<any, any>> {
  let room: Room<any, any>;
  try {
    room = await sdk(h, token).joinById(roomId);
  } catch (first: any) {
    // A refusal carries a code and is the test's answer. A transport-level failure (no code) is
    // retried once, as an app would, and reported, so that it stays visible in the output.
    if (first.code !== undefined) throw annotate(h, first, roomId);
    console.warn(`[harness] join of ${roomId} failed at the socket (${socketFailures.slice(-2).join(" | ")}); retrying once`);
    try {
      room = await sdk(h, token).joinById(roomId);
    } catch (error: any) {
      throw annotate(h, error, roomId);
    }
  }
  await waitFor(room, (s) => s !== undefined && Object.keys(s).length > 0);
  return room;
}

function annotate(h: Haven, error: any, roomId: string) {
  // keep what the server said next to the client's error, for whoever reads the failure
  error.message = `${error.message} (code ${error.code}; joining ${roomId}); socket failures: ${socketFailures.join(" | ")}; server log tail:\n${h.logs.join("").split("\n").slice(-15).join("\n")}`;
  return error;
}

/** Resolves once `predicate(room.state)` holds, checking after every patch. */
export function waitFor<S = any>(room: Room<any, S>, predicate: (state: any) => boolean, timeoutMs = 5000, what = "condition"): Promise<number> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const check = () => {
      try { return room.state !== undefined && predicate(room.state); } catch { return false; }
    };
    if (check()) return resolve(0);
    const listener = () => {
      if (check()) { clearTimeout(timer); room.onStateChange.remove(listener); resolve(Date.now() - started); }
    };
    const timer = setTimeout(() => {
      room.onStateChange.remove(listener);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    room.onStateChange(listener);
  });
}

/** Waits for the next message of `type` on a room. */
export function nextMessage<T = any>(room: Room<any, any>, type: string, timeoutMs = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${type}" message within ${timeoutMs} ms`)), timeoutMs);
    const off = room.onMessage(type, (m: T) => { clearTimeout(timer); off(); resolve(m); }) as unknown as () => void;
  });
}

/** The rejection reason of a room request: `{ code, message }`. */
export async function rejection(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (error: any) {
    if (error?.reason) return error.reason;
    throw error;
  }
  throw new Error("the request was not rejected");
}

/**
 * An emergency with its patient, an assigned first-aider and an assigned ambulance crew, each
 * joined to the emergency room.
 */
export async function scenario(h: Haven, ops: Account, at: { lat: number; lng: number }, patientAccount?: Account) {
  const near = (m: number) => ({ lat: at.lat + m / 111_320, lng: at.lng });
  const fa = await onDuty(h, ops, "first_aider", near(50));
  const crew = await onDuty(h, ops, "ambulance_crew", near(900));
  const patient = patientAccount ?? await account(h, "patient");
  const alert = await h.http("POST", "/api/emergency/alert", at, patient.token);
  const id = alert.body.emergencyId as string;
  for (const r of [fa, crew]) {
    await waitFor(r.duty, (s) => [...s.offers.values()].some((o: any) => o.emergencyId === id), 3000, "offer");
    const offer = [...r.duty.state.offers.values()].find((o: any) => o.emergencyId === id) as any;
    await r.duty.request("accept_offer", { offerId: offer.id });
  }
  const pRoom = await join(h, patient.token, id);
  const faRoom = await join(h, fa.acc.token, id);
  const crewRoom = await join(h, crew.acc.token, id);
  return { id, patient, fa, crew, pRoom, faRoom, crewRoom };
}

/** Builds a raw client frame: ROOM_DATA (13) or ROOM_REQUEST (21) with any bytes as payload. */
export async function rawFrame(kind: "data" | "request", type: string | number, payload: Uint8Array, requestId = 4242): Promise<Uint8Array> {
  const { encode } = await import("@colyseus/schema");
  const head: number[] = [kind === "data" ? 13 : 21];
  const it = { offset: 1 };
  if (kind === "request") encode.number(head as never, requestId, it);
  if (typeof type === "string") encode.string(head as never, type, it);
  else encode.number(head as never, type, it);
  return new Uint8Array([...head.slice(0, it.offset), ...payload]);
}

/** Polls `predicate` until it holds (for conditions that arrive as messages, not patches). */
export async function until(predicate: () => boolean, timeoutMs = 2000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** The machine's Redis (tests start it when it is down; they never skip). */
export const REDIS_URL = process.env.HAVEN_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

export async function ensureRedis(url = REDIS_URL): Promise<void> {
  const { Redis } = await import("ioredis");
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await probe.connect();
    await probe.ping();
  } catch {
    const u = new URL(url);
    execFileSync("redis-server", ["--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", u.port || "6379", "--save", "", "--appendonly", "no"], { stdio: "inherit" });
    await sleep(300);
  } finally {
    probe.disconnect();
  }
}

export interface Cluster {
  nodes: Haven[];
  databaseUrl: string;
  redisUrl: string;
  dataDir: string;
  /** Starts one more node on the same database, Redis and data folder. */
  add(env?: Record<string, string>): Promise<Haven>;
  stop(): Promise<void>;
}

/**
 * `n` Haven processes in cluster mode on one fresh database and one Redis database (emptied
 * first), sharing a data folder. The first node starts alone (it seeds the database and writes
 * the development keys), the others together.
 */
export async function startCluster(n: number, env: Record<string, string> = {}, redis: { url: string; db: number } = { url: REDIS_URL, db: 9 }): Promise<Cluster> {
  await ensureRedis(redis.url);
  const { Redis } = await import("ioredis");
  const redisUrl = `${redis.url.replace(/\/\d*$/, "")}/${redis.db}`;
  const admin = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  await admin.flushdb();
  admin.disconnect();
  const db = await freshDatabase();
  const dataDir = mkdtempSync(joinPath(tmpdir(), "haven-cluster-"));
  const all: Haven[] = [];
  const add = async (extra: Record<string, string> = {}) => {
    const h = await startHaven({ DATABASE_URL: db.url, REDIS_URL: redisUrl, HAVEN_DATA_DIR: dataDir, ...env, ...extra });
    all.push(h);
    return h;
  };
  const first = await add({ HAVEN_NODE_NAME: "node-1" });
  const rest = await Promise.all(Array.from({ length: n - 1 }, (_, i) => add({ HAVEN_NODE_NAME: `node-${i + 2}` })));
  return {
    nodes: [first, ...rest], databaseUrl: db.url, redisUrl, dataDir, add,
    async stop() {
      await Promise.all(all.map((h) => h.stop()));
      await db.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Where a room lives: the node of the cluster whose public address the room's listing in Redis carries. */
export async function holderOf(c: Cluster, roomId: string, timeoutMs = 5000): Promise<Haven> {
  const { Redis } = await import("ioredis");
  const redis = new Redis(c.redisUrl, { maxRetriesPerRequest: 1 });
  redis.on("error", () => {});
  try {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const raw = await redis.hget("roomcaches", roomId).catch(() => null);
      if (raw) {
        const address = JSON.parse(raw).publicAddress as string;
        const node = c.nodes.find((n) => n.url.endsWith(address));
        if (node) return node;
      }
      await sleep(50);
    }
  } finally {
    redis.disconnect();
  }
  throw new Error(`room ${roomId} is listed on no node`);
}

/** One gauge of a node's /metrics. */
export async function metric(h: Haven, name: string): Promise<number> {
  const r = await fetch(`${h.url}/metrics`);
  const line = (await r.text()).split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line?.split(" ")[1]);
}

/**
 * Where the database says the patient of emergency `id` is: the positions row written after the
 * whole snapshot when there is one (rooms/emergency/positions.ts), else the snapshot's own.
 */
export async function storedPatientLat(sql: postgres.Sql, id: string): Promise<number | undefined> {
  const [row] = await sql<{ state: Buffer; positions: Buffer | null }[]>`select state, positions from emergency_snapshots where emergency_id = ${id}`;
  if (!row) return undefined;
  const { Unpackr } = await import("msgpackr");
  const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
  const moved = row.positions ? (unpackr.unpack(row.positions) as [number, string, number][]).find((r) => r[0] === 0) : undefined;
  return moved ? moved[2] : (unpackr.unpack(row.state) as { state: { patient: { lat: number } } }).state.patient.lat;
}
