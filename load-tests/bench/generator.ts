/**
 * The load generator: one child process of run.ts, pinned to core 1, holding up to ~3,900
 * emergencies of 5 raw WebSocket clients (the `ws` package). It never decodes a schema.
 *
 * Haven (Colyseus 0.18 frames, lib/wire.ts): each party reserves a seat with
 * POST /matchmake/joinById/{id}, opens /{processId}/{roomId}?sessionId=…&_authToken=…, answers
 * JOIN_ROOM with the byte 10 and is joined when the full state (ROOM_STATE) arrives. Four parties
 * (patient, two first-aiders, the ambulance crew) send a `position` once a second, phases spread
 * evenly over all senders of the run; the fifth party (the receiving hospital's staff) only
 * listens. Every send carries a unique latitude; a recipient counts it delivered when a PATCH
 * frame contains its float64 little-endian bytes (or its int32 degrees × 10⁷, should the schema
 * change), and one patch delivers every pending send it contains. Latency is send → arrival.
 *
 * Socket.IO baseline: Engine.IO v4 over the same raw WebSocket; `join` with an acknowledgement,
 * positions as `42["position",{lat,lng}]`, matched by their latitude the same way.
 *
 * It talks to run.ts over IPC: join → send → mark (window start / end) → result → stop.
 */
import http from "node:http";
import { monitorEventLoopDelay } from "node:perf_hooks";
import WebSocket from "ws";
import { Histogram } from "./lib/histogram.ts";
import {
  CODE_MASK, EIO_MESSAGE, EIO_OPEN, EIO_PING, EIO_PONG, ERROR, JOIN_ACK, JOIN_ROOM, LEAVE, ROOM_DATA, ROOM_STATE, ROOM_STATE_PATCH,
  checkPositionFrame, engineIoUrl, float64LE, int32E7LE, positionFrame, reserveSeat, roomSocketUrl, wsHeaderBytes,
} from "./lib/wire.ts";

export type Protocol = "colyseus" | "socketio";

export interface GenParty { token?: string; role: string }
export interface GenEmergency { roomId: string; parties: GenParty[] }

export interface JoinCommand {
  type: "join";
  protocol: Protocol;
  /** Base URLs to call matchmaking on (round robin); the seat reservation names the node that holds the room. */
  nodes: string[];
  emergencies: GenEmergency[];
  concurrency: number;
  /** Index of this generator's first sender among all senders of the run, and their total (for phases). */
  senderBase: number;
  senderTotal: number;
  /** Which parties send (indices into parties); the rest only listen. */
  senders: number[];
  /** Measure latency at every other party ("all") or at the silent listeners only. */
  measureAt: "all" | "silent";
  lossTimeoutMs: number;
  /** Base coordinates of sends. */
  origin: { lat: number; lng: number };
}

export interface ProbeCommand {
  type: "probe";
  protocol: "colyseus";
  nodes: string[];
  /** Parties to join one at a time, each left right after its join. */
  parties: { roomId: string; token: string }[];
  gapMs: number;
}

export interface AlertCommand {
  type: "alert";
  nodes: string[];
  /** Verified responders: each goes on duty (POST /api/duty), joins its duty room and sends a position. */
  responders: { token: string }[];
  /** Patients without an emergency: each raises one alert. */
  patients: string[];
  ratePerS: number;
  durationS: number;
  center: { lat: number; lng: number };
  radiusM: number;
  /** How long after the last alert offers are still looked for. */
  waitS: number;
  concurrency: number;
}

export interface SoakCommand {
  type: "soak";
  nodes: string[];
  /** Patients (id, token); the tokens are replaced with fresh ones by "tokens" commands. */
  patients: { id: string; token: string }[];
  /** Seconds an emergency streams before its patient cancels it (uniform in the range). */
  lifeS: [number, number];
  center: { lat: number; lng: number };
  radiusM: number;
}

type Command = JoinCommand | ProbeCommand | AlertCommand | SoakCommand
  | { type: "tokens"; tokens: Record<string, string> }
  | { type: "soak-stats" }
  | { type: "soak-stop" }
  | { type: "send"; t0: number }
  | { type: "mark"; name: "window-start" | "window-end" }
  | { type: "result" }
  | { type: "stop" };

interface Pending {
  t0: number;
  pat8: Buffer;
  pat4: Buffer;
  lat: number;
  /** Recipients (party indices) still to receive it. */
  missing: number;
  inWindow: boolean;
}

interface Emergency {
  roomId: string;
  sockets: Sock[];
  pending: Pending[];
  byLat: Map<number, Pending>;
}

interface Sock {
  e: Emergency;
  idx: number;
  token?: string;
  ws?: WebSocket;
  joined: boolean;
  seq: number;
  silent: boolean;
  /** Replaces the tracking handling of frames after the join (probes). */
  onFrame?: (data: Buffer, code: number) => void;
  /** Called once when the socket closes after its join. */
  onClose?: (code: number) => void;
}

const send = (m: unknown) => process.send?.(m);
const loopDelay = monitorEventLoopDelay({ resolution: 5 });
loopDelay.enable();

let cmd: JoinCommand | undefined;
let emergencies: Emergency[] = [];
let stopping = false;
let inWindow = false;
let windowStart = 0;
let windowEnd = 0;

// counters of the measurement window
const latency = new Histogram();
const sendLag = new Histogram();
let windowSends = 0;
let deliveredPairs = 0;
let lostPairs = 0;
let silentBytes = 0;
let silentPayload = 0;
let silentFrames = 0;
let silentPatchBytes = 0;
let silentUpdates = 0;
let serverErrors = 0;
const serverErrorTypes: Record<string, number> = {};
const closesAfterJoin: Record<string, number> = {};
let unmatchedPatches = 0;

function recordClose(code: number): void {
  const key = String(code);
  closesAfterJoin[key] = (closesAfterJoin[key] ?? 0) + 1;
}

// ------------------------------------------------------------------ delivery matching

/** When slow deliveries were sent (ms since the window start, rounded), for finding periodic stalls. */
const slowAt = new Map<number, number>();

function deliver(s: Sock, p: Pending, now: number): void {
  p.missing &= ~(1 << s.idx);
  if (p.inWindow) {
    const ms = now - p.t0;
    latency.add(ms);
    if (ms > 50) {
      const at = Math.round((p.t0 - windowStart) / 100) * 100;
      slowAt.set(at, Math.max(slowAt.get(at) ?? 0, Math.round(ms)));
    }
    deliveredPairs++;
    if (s.silent) silentUpdates++;
  }
}

function onPatch(s: Sock, data: Buffer, now: number): void {
  const e = s.e;
  if (e.pending.length === 0) return;
  const bit = 1 << s.idx;
  let matched = false;
  let done = 0;
  for (const p of e.pending) {
    if ((p.missing & bit) === 0) continue;
    if (data.indexOf(p.pat8) >= 0 || data.indexOf(p.pat4) >= 0) {
      deliver(s, p, now);
      matched = true;
    }
    if (p.missing === 0) done++;
  }
  if (done > 0) e.pending = e.pending.filter((p) => p.missing !== 0);
  // a patch with none of the pending positions (at a silent socket: every patch should carry one)
  if (!matched && inWindow && s.silent) unmatchedPatches++;
}

function onPositionJson(s: Sock, lat: number, now: number): void {
  const p = s.e.byLat.get(lat);
  if (!p || (p.missing & (1 << s.idx)) === 0) return;
  deliver(s, p, now);
  if (p.missing === 0) s.e.byLat.delete(lat);
}

/** Sends older than the loss timeout still missing recipients are lost (per recipient). */
function expire(): void {
  if (!cmd) return;
  const cutoff = performance.now() - cmd.lossTimeoutMs;
  for (const e of emergencies) {
    if (cmd.protocol === "colyseus") {
      if (e.pending.length === 0 || e.pending[0].t0 > cutoff) continue;
      e.pending = e.pending.filter((p) => {
        if (p.t0 > cutoff) return true;
        if (p.inWindow) lostPairs += popcount(p.missing);
        return false;
      });
    } else {
      for (const [lat, p] of e.byLat) {
        if (p.t0 > cutoff) break;
        if (p.inWindow) lostPairs += popcount(p.missing);
        e.byLat.delete(lat);
      }
    }
  }
}

function popcount(x: number): number {
  let n = 0;
  for (; x; x &= x - 1) n++;
  return n;
}

// ------------------------------------------------------------------ joining

interface JoinStats {
  ok: number;
  failed: number;
  retried: number;
  /** Sockets closed with 1006 before their join completed. */
  abnormalBeforeJoin: number;
  errors: Record<string, number>;
  joinMs: Histogram;
  stateMs: Histogram;
}

function newJoinStats(): JoinStats {
  return { ok: 0, failed: 0, retried: 0, abnormalBeforeJoin: 0, errors: {}, joinMs: new Histogram(), stateMs: new Histogram() };
}

function countError(stats: JoinStats, why: string): void {
  const key = why.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, "<id>").replace(/\s+/g, " ").slice(0, 120);
  stats.errors[key] = (stats.errors[key] ?? 0) + 1;
}

/** One Colyseus join: seat reservation, socket, JOIN_ROOM answered, full state. */
function joinColyseus(agent: http.Agent, base: URL, s: Sock, stats: JoinStats, timeoutMs = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try { s.ws?.terminate(); } catch { /* closed */ }
      s.ws = undefined;
      reject(error);
    };
    timer = setTimeout(() => fail(new Error("join timed out")), timeoutMs);
    reserveSeat(agent, base, s.e.roomId, s.token!).then((seat) => {
      if (settled) return;
      const ws = new WebSocket(roomSocketUrl(base, seat, s.token!), { perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: timeoutMs });
      s.ws = ws;
      let joinedAt = 0;
      let opened = false;
      ws.on("open", () => { opened = true; });
      ws.on("message", (data: Buffer) => {
        const code = data[0] & CODE_MASK;
        if (s.joined) {
          if (s.onFrame) s.onFrame(data, code);
          else onColyseusFrame(s, data, code);
          return;
        }
        if (code === JOIN_ROOM) {
          ws.send(JOIN_ACK);
          joinedAt = performance.now();
        } else if (code === ROOM_STATE) {
          s.joined = true;
          settled = true;
          clearTimeout(timer);
          stats.joinMs.add((joinedAt || performance.now()) - t0);
          stats.stateMs.add(performance.now() - t0);
          resolve();
        } else if (code === ERROR) {
          fail(new Error(`ERROR frame: ${data.subarray(1).toString("latin1").replace(/[^\x20-\x7e]/g, "")}`));
        }
      });
      ws.on("close", (closeCode: number, reason: Buffer) => {
        if (!s.joined) {
          if (closeCode === 1006) stats.abnormalBeforeJoin++;
          const stage = !opened ? "during the upgrade" : joinedAt ? "after JOIN_ROOM, before the state" : "after the upgrade, before JOIN_ROOM";
          fail(new Error(`closed ${closeCode} ${stage}${reason.length ? `: ${reason.toString().slice(0, 80)}` : ""}`));
          return;
        }
        s.joined = false;
        if (s.onClose) s.onClose(closeCode);
        else if (!stopping) recordClose(closeCode);
      });
      ws.on("unexpected-response", (_req, res) => {
        fail(new Error(`upgrade refused: HTTP ${res.statusCode}`));
      });
      ws.on("error", (error) => fail(error));
    }, fail);
  });
}

function onColyseusFrame(s: Sock, data: Buffer, code: number): void {
  const now = performance.now();
  if (s.silent && inWindow) {
    silentFrames++;
    silentBytes += data.length + wsHeaderBytes(data.length);
    silentPayload += data.length;
    if (code === ROOM_STATE_PATCH) silentPatchBytes += data.length + wsHeaderBytes(data.length);
  }
  if (code === ROOM_STATE_PATCH) {
    onPatch(s, data, now);
  } else if (code === ROOM_DATA) {
    // a message from the server: only "error" is expected (a refused send)
    serverErrors++;
    const len = data[1] & 0x1f;
    const type = data.subarray(2, 2 + len).toString();
    const body = data.subarray(2 + len).toString("latin1").replace(/[^\x20-\x7e]/g, " ").replace(/\s+/g, " ").slice(0, 80);
    const key = `${type}: ${body}`;
    serverErrorTypes[key] = (serverErrorTypes[key] ?? 0) + 1;
  }
}

/** One Socket.IO join: Engine.IO open, namespace connect, `join` acknowledged. */
function joinSocketIo(base: URL, s: Sock, stats: JoinStats, timeoutMs = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let settled = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try { s.ws?.terminate(); } catch { /* closed */ }
      s.ws = undefined;
      reject(error);
    };
    const timer = setTimeout(() => fail(new Error("join timed out")), timeoutMs);
    const ws = new WebSocket(engineIoUrl(base), { perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: timeoutMs });
    s.ws = ws;
    ws.on("message", (data: Buffer) => {
      const text = data.toString();
      if (s.joined) {
        onEngineIoFrame(s, text, data.length);
        return;
      }
      if (text.startsWith(EIO_OPEN)) {
        ws.send("40");
      } else if (text.startsWith("40")) {
        ws.send(`421${JSON.stringify(["join", s.e.roomId])}`);
      } else if (text.startsWith("431")) {
        s.joined = true;
        settled = true;
        clearTimeout(timer);
        const ms = performance.now() - t0;
        stats.joinMs.add(ms);
        stats.stateMs.add(ms);
        resolve();
      } else if (text === EIO_PING) {
        ws.send(EIO_PONG);
      } else if (text.startsWith("44")) {
        fail(new Error(`connect error ${text.slice(0, 100)}`));
      }
    });
    ws.on("close", (closeCode: number) => {
      if (!s.joined) {
        if (closeCode === 1006) stats.abnormalBeforeJoin++;
        fail(new Error(`closed ${closeCode} before the join completed`));
        return;
      }
      s.joined = false;
      if (!stopping) recordClose(closeCode);
    });
    ws.on("unexpected-response", (_req, res) => fail(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
    ws.on("error", (error) => fail(error));
  });
}

function onEngineIoFrame(s: Sock, text: string, length: number): void {
  const now = performance.now();
  if (s.silent && inWindow) {
    silentFrames++;
    silentBytes += length + wsHeaderBytes(length);
    silentPayload += length;
    if (text.startsWith("42")) silentPatchBytes += length + wsHeaderBytes(length);
  }
  if (text === EIO_PING) {
    s.ws?.send(EIO_PONG);
    return;
  }
  if (text.charAt(0) !== EIO_MESSAGE || text.charAt(1) !== "2") return;
  let packet: unknown;
  try { packet = JSON.parse(text.slice(2)); } catch { return; }
  if (!Array.isArray(packet) || packet[0] !== "position") return;
  const lat = (packet[1] as { lat?: unknown })?.lat;
  if (typeof lat === "number") onPositionJson(s, lat, now);
}

async function joinAll(c: JoinCommand): Promise<void> {
  const started = performance.now();
  const stats = newJoinStats();
  const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(1, c.concurrency) });
  const bases = c.nodes.map((u) => new URL(u));
  const senders = new Set(c.senders);
  emergencies = c.emergencies.map((g) => {
    const e: Emergency = { roomId: g.roomId, sockets: [], pending: [], byLat: new Map() };
    e.sockets = g.parties.map((p, idx) => ({ e, idx, token: p.token, joined: false, seq: 0, silent: !senders.has(idx) }));
    return e;
  });
  const queue = emergencies.flatMap((e) => e.sockets);
  let next = 0;
  let progressAt = performance.now();
  const worker = async () => {
    for (let s = queue[next++]; s; s = queue[next++]) {
      for (let attempt = 0; attempt < 2; attempt++) {
        const base = bases[(s.e.sockets.indexOf(s) + next + attempt) % bases.length];
        try {
          if (c.protocol === "colyseus") await joinColyseus(agent, base, s, stats);
          else await joinSocketIo(base, s, stats);
          stats.ok++;
          break;
        } catch (error) {
          countError(stats, String((error as Error).message));
          if (attempt === 0) stats.retried++;
          else stats.failed++;
        }
      }
      if (performance.now() - progressAt > 2000) {
        progressAt = performance.now();
        send({ type: "progress", joined: stats.ok, failed: stats.failed, of: queue.length });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, c.concurrency) }, worker));
  agent.destroy();
  send({
    type: "joined", ok: stats.ok, failed: stats.failed, retried: stats.retried, abnormalBeforeJoin: stats.abnormalBeforeJoin,
    errors: stats.errors, joinMs: stats.joinMs.toJSON(), stateMs: stats.stateMs.toJSON(), ms: performance.now() - started,
  });
}

// ------------------------------------------------------------------ sending

interface Sender { s: Sock; phase: number; dLat: number; dLng: number }
let senders: Sender[] = [];
let timer: NodeJS.Timeout | undefined;

function startSending(t0Epoch: number): void {
  const c = cmd!;
  const list: Sender[] = [];
  let k = 0;
  for (const e of emergencies) {
    for (const idx of c.senders) {
      const s = e.sockets[idx];
      const g = c.senderBase + k++;
      // each sender moves on its own track: 0.01° apart, so every latitude sent in one emergency is unique
      list.push({ s, phase: (g / Math.max(1, c.senderTotal)) * 1000, dLat: idx * 0.01, dLng: idx * 0.01 });
    }
  }
  senders = list.sort((a, b) => a.phase - b.phase);
  const start = performance.now() + (t0Epoch - Date.now());
  let round = 0;
  let i = 0;
  const tick = () => {
    if (stopping) return;
    const now = performance.now();
    while (senders.length) {
      const snd = senders[i];
      const due = start + round * 1000 + snd.phase;
      if (due > now) break;
      fire(snd, now, due);
      if (++i === senders.length) { i = 0; round++; }
    }
    const snd = senders[i];
    const wait = snd ? start + round * 1000 + snd.phase - performance.now() : 1000;
    timer = setTimeout(tick, Math.max(0, wait));
  };
  timer = setTimeout(tick, Math.max(0, start - performance.now()));
}

function fire(snd: Sender, now: number, due: number): void {
  const s = snd.s;
  const ws = s.ws;
  if (!ws || !s.joined || ws.readyState !== WebSocket.OPEN) return;
  const c = cmd!;
  s.seq++;
  const lat = c.origin.lat + snd.dLat + s.seq * 1e-7;
  const lng = c.origin.lng + snd.dLng + s.seq * 1e-7;
  let mask = 0;
  for (const r of s.e.sockets) {
    if (r === s || !r.joined) continue;
    if (c.measureAt === "silent" && !r.silent) continue;
    mask |= 1 << r.idx;
  }
  const p: Pending = { t0: 0, pat8: float64LE(lat), pat4: int32E7LE(lat), lat, missing: mask, inWindow };
  if (inWindow) {
    windowSends++;
    sendLag.add(now - due);
  }
  if (c.protocol === "colyseus") {
    if (mask) s.e.pending.push(p);
    p.t0 = performance.now();
    ws.send(positionFrame(lat, lng));
  } else {
    if (mask) s.e.byLat.set(lat, p);
    p.t0 = performance.now();
    ws.send(`42${JSON.stringify(["position", { lat, lng }])}`);
  }
}


// ------------------------------------------------------------------ HTTP and places

function httpJson(agent: http.Agent, base: URL, method: string, path: string, body: unknown, token?: string, timeoutMs = 30_000): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? "" : JSON.stringify(body);
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== undefined) { headers["content-type"] = "application/json"; headers["content-length"] = String(Buffer.byteLength(text)); }
    if (token) headers.authorization = `Bearer ${token}`;
    const req = http.request({ agent, host: base.hostname, port: base.port, method, path, headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const raw = Buffer.concat(chunks).toString();
        let parsed: unknown = raw;
        try { parsed = JSON.parse(raw); } catch { /* not JSON */ }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on("error", reject);
    req.end(text);
  });
}

/** A uniformly random point within `radiusM` of `c`. */
function around(c: { lat: number; lng: number }, radiusM: number): { lat: number; lng: number } {
  const r = radiusM * Math.sqrt(Math.random());
  const a = Math.random() * 2 * Math.PI;
  return { lat: c.lat + (r * Math.cos(a)) / 111_320, lng: c.lng + (r * Math.sin(a)) / (111_320 * Math.cos((c.lat * Math.PI) / 180)) };
}

async function pool<T>(items: T[], concurrency: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, async () => {
    for (let i = next++; i < items.length; i = next++) await fn(items[i], i);
  }));
}

// ------------------------------------------------------------------ alert → first offer

/**
 * Responders go on duty around the center (their duty sockets record every patch with its
 * arrival time); then patients raise alerts at a fixed rate (open loop: one every 1/rate s,
 * whatever the answers). An alert's first offer is the earliest duty patch that carries its
 * emergency id (an Offer's emergencyId).
 */
async function alertProbe(c: AlertCommand): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  const base = new URL(c.nodes[0]);
  const stats = newJoinStats();
  const frames: { t: number; data: Buffer }[] = [];
  let capturing = false;
  const socks: Sock[] = [];
  const dutyT0 = performance.now();
  const dutyErrors: Record<string, number> = {};
  await pool(c.responders, c.concurrency, async (r) => {
    try {
      const d = await httpJson(agent, base, "POST", "/api/duty", {}, r.token);
      if (d.status !== 201) throw new Error(`POST /api/duty ${d.status} ${JSON.stringify(d.body).slice(0, 100)}`);
      const e: Emergency = { roomId: d.body.roomId, sockets: [], pending: [], byLat: new Map() };
      const s: Sock = { e, idx: 0, token: r.token, joined: false, seq: 0, silent: true };
      s.onFrame = (data, code) => { if (capturing && code === ROOM_STATE_PATCH) frames.push({ t: performance.now(), data }); };
      s.onClose = () => undefined;
      await joinColyseus(agent, base, s, stats);
      const at = around(c.center, c.radiusM);
      s.ws!.send(positionFrame(at.lat, at.lng));
      socks.push(s);
      stats.ok++;
    } catch (error) {
      stats.failed++;
      const key = String((error as Error).message).slice(0, 100);
      dutyErrors[key] = (dutyErrors[key] ?? 0) + 1;
    }
  });
  const dutyMs = performance.now() - dutyT0;
  send({ type: "progress", joined: stats.ok, failed: stats.failed, of: c.responders.length, phase: "on duty" });
  await new Promise((r) => setTimeout(r, 1500));

  capturing = true;
  const total = Math.min(c.patients.length, Math.round(c.ratePerS * c.durationS));
  const alerts: { t0: number; id?: string; status?: number; answeredAt?: number }[] = [];
  const start = performance.now() + 20;
  const statuses: Record<string, number> = {};
  await new Promise<void>((resolve) => {
    let i = 0;
    let inFlight = 0;
    const tick = () => {
      const now = performance.now();
      while (i < total && start + (i * 1000) / c.ratePerS <= now) {
        const a: (typeof alerts)[number] = { t0: performance.now() };
        alerts.push(a);
        const at = around(c.center, c.radiusM);
        inFlight++;
        httpJson(agent, base, "POST", "/api/emergency/alert", { lat: at.lat, lng: at.lng, accuracy: 20 }, c.patients[i]).then((res) => {
          a.status = res.status;
          a.answeredAt = performance.now();
          if (res.status === 201 || res.status === 200) a.id = res.body?.emergencyId;
        }, (error) => { a.status = -1; statuses[String((error as Error).message).slice(0, 60)] = 1; }).finally(() => {
          if (--inFlight === 0 && i >= total) resolve();
        });
        i++;
      }
      if (i < total) setTimeout(tick, Math.max(0, start + (i * 1000) / c.ratePerS - performance.now()));
      else if (inFlight === 0) resolve();
    };
    setTimeout(tick, 20);
  });
  const lastAnswer = performance.now();
  send({ type: "progress", phase: "answered", joined: alerts.length, failed: 0, of: total });
  await new Promise((r) => setTimeout(r, c.waitS * 1000));
  capturing = false;

  const answer = new Histogram();
  const offer = new Histogram();
  let withOffer = 0;
  let without = 0;
  for (const a of alerts) {
    statuses[String(a.status)] = (statuses[String(a.status)] ?? 0) + 1;
    if (a.answeredAt) answer.add(a.answeredAt - a.t0);
    if (!a.id) continue;
    const needle = Buffer.from(a.id);
    const first = frames.find((f) => f.t >= a.t0 && f.data.indexOf(needle) >= 0);
    if (first) { withOffer++; offer.add(first.t - a.t0); } else without++;
  }
  for (const s of socks) { s.onClose = () => undefined; try { s.ws?.terminate(); } catch { /* closed */ } }
  agent.destroy();
  send({
    type: "alerted",
    duty: { ok: stats.ok, failed: stats.failed, errors: dutyErrors, ms: dutyMs },
    alerts: { sent: alerts.length, statuses, answerMs: answer.toJSON(), lastAnswerAfterMs: lastAnswer - start },
    offers: { withOffer, without, ms: offer.toJSON() },
    frames: frames.length,
  });
}

// ------------------------------------------------------------------ soak

/**
 * Emergencies opening and closing: each patient raises an alert, joins its room and streams a
 * position every second for a while, cancels it over REST, waits for the room's closing (4410)
 * and raises the next one.
 */
let soak: { c: SoakCommand; running: boolean; active: Set<string>; raised: number; cancelled: number; closed: number; errors: Record<string, number>; tokens: Map<string, string> } | undefined;

async function soakPatient(p: { id: string; token: string }): Promise<void> {
  const st = soak!;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  const base = new URL(st.c.nodes[0]);
  const err = (why: string) => { const k = why.slice(0, 80); st.errors[k] = (st.errors[k] ?? 0) + 1; };
  const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
  await wait(Math.random() * 5000);
  while (st.running) {
    const token = st.tokens.get(p.id) ?? p.token;
    const at = around(st.c.center, st.c.radiusM);
    let id: string | undefined;
    try {
      const a = await httpJson(agent, base, "POST", "/api/emergency/alert", { lat: at.lat, lng: at.lng }, token);
      if (a.status !== 201 && a.status !== 200) throw new Error(`alert ${a.status} ${JSON.stringify(a.body).slice(0, 60)}`);
      id = a.body.emergencyId as string;
      st.raised++;
      st.active.add(id);
      const e: Emergency = { roomId: id, sockets: [], pending: [], byLat: new Map() };
      const s: Sock = { e, idx: 0, token, joined: false, seq: 0, silent: true };
      let closedWith = 0;
      const closed = new Promise<void>((resolve) => { s.onClose = (code) => { closedWith = code; resolve(); }; });
      s.onFrame = () => undefined;
      await joinColyseus(agent, base, s, newJoinStats());
      const life = st.c.lifeS[0] + Math.random() * (st.c.lifeS[1] - st.c.lifeS[0]);
      const until = performance.now() + life * 1000;
      while (st.running && performance.now() < until && s.joined) {
        s.seq++;
        s.ws?.send(positionFrame(at.lat + s.seq * 1e-6, at.lng));
        await wait(1000);
      }
      const c = await httpJson(agent, base, "POST", `/api/emergency/${id}/cancel`, { reason: "false_alarm" }, st.tokens.get(p.id) ?? token);
      if (c.status !== 200) throw new Error(`cancel ${c.status} ${JSON.stringify(c.body).slice(0, 60)}`);
      st.cancelled++;
      st.active.delete(id);
      await Promise.race([closed, wait(30_000)]);
      if (closedWith === 4410) st.closed++;
      else { err(`room closed with ${closedWith || "nothing within 30 s"}`); try { s.ws?.terminate(); } catch { /* closed */ } }
    } catch (error) {
      err(String((error as Error).message));
      await wait(2000);
    }
    await wait(500 + Math.random() * 2000);
  }
  agent.destroy();
}

// ------------------------------------------------------------------ join probe

async function probe(c: ProbeCommand): Promise<void> {
  const stats = newJoinStats();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const bases = c.nodes.map((u) => new URL(u));
  let i = 0;
  for (const p of c.parties) {
    const e: Emergency = { roomId: p.roomId, sockets: [], pending: [], byLat: new Map() };
    const s: Sock = { e, idx: 0, token: p.token, joined: false, seq: 0, silent: true };
    try {
      await joinColyseus(agent, bases[i++ % bases.length], s, stats, 10_000);
      stats.ok++;
      // leave for good (consented), so that the room holds no seat for it
      s.ws?.send(LEAVE);
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => { s.ws?.terminate(); resolve(); }, 1000);
        s.ws?.once("close", () => { clearTimeout(t); resolve(); });
      });
    } catch (error) {
      stats.failed++;
      countError(stats, String((error as Error).message));
    }
    if (c.gapMs > 0) await new Promise((r) => setTimeout(r, c.gapMs));
  }
  agent.destroy();
  send({ type: "probed", ok: stats.ok, failed: stats.failed, errors: stats.errors, joinMs: stats.joinMs.toJSON(), stateMs: stats.stateMs.toJSON() });
}

// ------------------------------------------------------------------ commands

let expiry: NodeJS.Timeout | undefined;

process.on("message", (m: Command) => {
  switch (m.type) {
    case "join":
      cmd = m;
      if (m.protocol === "colyseus") checkPositionFrame();
      expiry = setInterval(expire, 250);
      void joinAll(m).catch((error) => send({ type: "fatal", error: String(error?.stack ?? error) }));
      break;
    case "probe":
      void probe(m).catch((error) => send({ type: "fatal", error: String(error?.stack ?? error) }));
      break;
    case "send":
      startSending(m.t0);
      break;
    case "alert":
      void alertProbe(m).catch((error) => send({ type: "fatal", error: String(error?.stack ?? error) }));
      break;
    case "soak":
      soak = { c: m, running: true, active: new Set(), raised: 0, cancelled: 0, closed: 0, errors: {}, tokens: new Map(m.patients.map((p) => [p.id, p.token])) };
      for (const p of m.patients) void soakPatient(p).catch((error) => send({ type: "fatal", error: String(error?.stack ?? error) }));
      send({ type: "soaking" });
      break;
    case "tokens":
      if (soak) for (const [id, token] of Object.entries(m.tokens)) soak.tokens.set(id, token);
      break;
    case "soak-stats":
      send({ type: "soak-stats", active: soak?.active.size ?? 0, raised: soak?.raised ?? 0, cancelled: soak?.cancelled ?? 0, closed: soak?.closed ?? 0, errors: soak?.errors ?? {} });
      break;
    case "soak-stop":
      if (soak) soak.running = false;
      send({ type: "soak-stopping" });
      break;
    case "mark":
      if (m.name === "window-start") {
        inWindow = true;
        windowStart = performance.now();
        loopDelay.reset();
      } else {
        inWindow = false;
        windowEnd = performance.now();
      }
      break;
    case "result": {
      expire();
      let open = 0;
      for (const e of emergencies) for (const s of e.sockets) if (s.joined) open++;
      send({
        type: "result",
        windowMs: windowEnd - windowStart,
        sends: windowSends,
        deliveredPairs,
        lostPairs,
        latency: latency.toJSON(),
        sendLag: sendLag.toJSON(),
        silent: { bytes: silentBytes, payload: silentPayload, frames: silentFrames, patchBytes: silentPatchBytes, updates: silentUpdates },
        serverErrors, serverErrorTypes,
        closesAfterJoin,
        unmatchedPatches,
        slowAt: [...slowAt.entries()].sort((a, b) => a[0] - b[0]).slice(0, 200),
        openSockets: open,
        loopDelayMaxMs: loopDelay.max / 1e6,
        loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
      });
      break;
    }
    case "stop":
      stopping = true;
      clearTimeout(timer);
      clearInterval(expiry);
      for (const e of emergencies) for (const s of e.sockets) { try { s.ws?.terminate(); } catch { /* closed */ } }
      setTimeout(() => process.exit(0), 50);
      break;
  }
});

process.on("disconnect", () => process.exit(0));
send({ type: "ready", pid: process.pid });
