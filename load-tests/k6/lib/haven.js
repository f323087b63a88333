// Haven for k6: the REST calls the load scripts make, and a Colyseus 0.18 room client spoken
// over k6's own WebSocket, byte for byte as docs/protocol.md §10 ("Wire framing without the SDK")
// describes it. k6 cannot run @colyseus/sdk and cannot decode Colyseus schema state, so this
// client joins rooms, sends messages, makes requests and reads their answers, and sees state
// only as frames: a full state (14) and patches (15), timed and measured but not decoded. The one
// exception is the offers a duty room receives, whose ids are picked out of the patch bytes
// (`offersIn`), because a responder must name the offer it accepts.
//
// It needs a k6 with the stable `k6/websockets` module (graduated from
// `k6/experimental/websockets` early in 2026); an older k6 has the same WebSocket class under
// `k6/experimental/websockets`.

import http from "k6/http";
import { check, fail, sleep } from "k6";
import { WebSocket } from "k6/websockets";
import { setTimeout, clearTimeout } from "k6/timers";
import { Counter, Trend } from "k6/metrics";
import {
  pack, unpack, headerNumber, headerString, readHeaderNumber, readHeaderString, headerIsString, utf8Decode,
} from "./msgpack.js";

// ------------------------------------------------------------------ configuration

export const BASE_URL = (__ENV.HAVEN_URL || "http://127.0.0.1:2567").replace(/\/+$/, "");
const WS_SCHEME = BASE_URL.indexOf("https://") === 0 ? "wss" : "ws";
const WS_BASE = BASE_URL.replace(/^http/, "ws");

/** An integer from `__ENV[name]`, or `fallback`. */
export function envInt(name, fallback) {
  const v = __ENV[name];
  if (v === undefined || v === "") return fallback;
  const n = parseInt(v, 10);
  if (!(n >= 0)) throw new Error(`${name} must be a non-negative integer, got "${v}"`);
  return n;
}

/** A number of seconds from `__ENV[name]` ("90", "90s", "2m", "500ms"), or `fallback`. */
export function envSeconds(name, fallback) {
  const v = __ENV[name];
  if (v === undefined || v === "") return fallback;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(String(v).trim());
  if (!m) throw new Error(`${name} must be a duration such as 30s or 2m, got "${v}"`);
  const n = parseFloat(m[1]);
  return m[2] === "ms" ? n / 1000 : m[2] === "m" ? n * 60 : m[2] === "h" ? n * 3600 : n;
}

// ------------------------------------------------------------------ metrics every script shares

/** Every unexpected failure, tagged with Haven's code (or HTTP_<status>, CLOSE_<code>, TIMEOUT, ...). */
export const errors = new Counter("haven_errors");
/** Size in bytes of every state patch (frame 15) a socket receives: what one update costs on the wire. */
export const updateBytes = new Trend("haven_update_bytes");
/** From a party's position send to the next patch frame at each other party (tracking.js and wallboard.js say how). */
export const fanout = new Trend("haven_fanout_ms", true);
/** From the alert request to the offer's patch reaching a responder's duty socket. */
export const alertToOffer = new Trend("haven_alert_to_offer_ms", true);
/** From the seat reservation call to the first full state on the socket. */
export const joinTime = new Trend("haven_join_ms", true);
/** Joins whose socket closed abnormally (1006) before the join completed, retried once with a new seat, as the SDK and the benchmark's generator do. */
export const joinRetries = new Counter("haven_join_retries");
/** Round trip of socket requests (frame 21 to its answer 22). */
export const requestTime = new Trend("haven_request_ms", true);

/** Counts one failure under `code`, with extra tags. */
export function countError(code, tags) {
  const t = { code: String(code || "UNKNOWN") };
  if (tags) for (const k of Object.keys(tags)) t[k] = String(tags[k]);
  errors.add(1, t);
}

// ------------------------------------------------------------------ geography

/** A point `north` and `east` metres from `at`. */
export function offset(at, north, east) {
  return {
    lat: at.lat + north / 111320,
    lng: at.lng + (east || 0) / (111320 * Math.cos((at.lat * Math.PI) / 180)),
  };
}

/** Central Nairobi, and a deterministic spread of points around it (the golden angle, radius up to `maxM`). */
export const NAIROBI = { lat: -1.2864, lng: 36.8172 };
export function spreadPoint(i, count, maxM) {
  const r = maxM * Math.sqrt((i + 0.5) / Math.max(count, 1));
  const a = i * 2.399963229728653;
  return offset(NAIROBI, r * Math.cos(a), r * Math.sin(a));
}

// ------------------------------------------------------------------ REST

/**
 * A JSON call to Haven's REST API: `{ status, body }`. A status outside `expect` (default 200
 * and 201) is counted in haven_errors under the answer's code and, unless `soft`, fails the
 * iteration (or the setup).
 */
export function api(method, path, body, token, opts) {
  const o = opts || {};
  const params = {
    headers: { Accept: "application/json" },
    tags: { name: o.name || `${method} ${path.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, "{id}")}` },
    timeout: o.timeout || "30s",
  };
  if (body !== undefined) params.headers["Content-Type"] = "application/json";
  if (token) params.headers.Authorization = `Bearer ${token}`;
  const expect = o.expect || [200, 201];
  if (o.expect) params.responseCallback = http.expectedStatuses(...expect);
  const res = http.request(method, BASE_URL + path, body === undefined ? null : JSON.stringify(body), params);
  let parsed = null;
  try { parsed = res.body ? JSON.parse(res.body) : null; } catch (_) { parsed = null; }
  if (expect.indexOf(res.status) < 0) {
    const code = (parsed && parsed.code) || (res.status === 0 ? `NETWORK` : `HTTP_${res.status}`);
    countError(code, { call: params.tags.name });
    if (!o.soft) fail(`${method} ${path} answered ${res.status} ${code}: ${(parsed && parsed.message) || res.error || res.body}`);
  }
  return { status: res.status, body: parsed, res };
}

let sequence = 0;
function uniqueSuffix() {
  sequence += 1;
  return `${Date.now().toString(36)}${Math.floor(Math.random() * 1e9).toString(36)}${__VU}x${sequence}`;
}

/** A v4-shaped random id, for idempotency keys. */
export function uuid() {
  const h = "0123456789abcdef";
  let s = "";
  for (let i = 0; i < 36; i++) {
    if (i === 8 || i === 13 || i === 18 || i === 23) s += "-";
    else if (i === 14) s += "4";
    else s += h[Math.floor(Math.random() * 16)];
  }
  return s;
}

const PASSWORD = "load-test-password-1";

/**
 * Signs in: a session `{ id, email, role, hospitalId, accessToken, accessTokenExpiresAt, refreshToken }`.
 * A 429 (logins are limited per client address, HAVEN_LOGIN_PER_MINUTE_PER_ADDRESS) is waited
 * out rather than failed, so a setup against a server with the default limit is slow, not broken.
 * With `shared`, the session is one that many VUs use (ops, hospital staff): it keeps its
 * password so that a VU signs in again rather than spend the refresh token that all of them hold.
 */
export function login(email, password, shared) {
  for (let attempt = 0; ; attempt++) {
    const r = api("POST", "/api/auth/login", { email, password }, undefined, { expect: [200, 429], soft: true });
    if (r.status === 200) {
      const b = r.body;
      const session = {
        id: b.user.id, email, role: b.user.role, hospitalId: b.user.hospitalId || "",
        accessToken: b.accessToken, accessTokenExpiresAt: b.accessTokenExpiresAt, refreshToken: b.refreshToken,
      };
      if (shared) session.password = password;
      return session;
    }
    if (attempt >= 40) fail(`login of ${email} still rate limited after ${attempt} attempts`);
    if (attempt === 0) console.warn("logins are rate limited (HAVEN_LOGIN_PER_MINUTE_PER_ADDRESS): waiting");
    sleep(3);
  }
}

/**
 * Registers an account of `role` and signs it in. `by`: the ops or hospital admin session that
 * may create it; `hospitalId` for hospital roles; `shared` if many VUs will use it (see login).
 */
export function account(role, opts) {
  const o = opts || {};
  const email = `k6-${role.replace(/_/g, "-")}-${uniqueSuffix()}@load.haven.test`;
  const body = { email, password: PASSWORD, name: o.name || `k6 ${role}`, role };
  if (o.hospitalId) body.hospitalId = o.hospitalId;
  api("POST", "/api/auth/register", body, o.by ? token(o.by) : undefined, { name: "POST /api/auth/register" });
  return login(email, PASSWORD, o.shared);
}

/** The operations account the server was started with (HAVEN_BOOTSTRAP_OPS_EMAIL/_PASSWORD). */
export function opsSession() {
  const email = __ENV.HAVEN_OPS_EMAIL;
  const password = __ENV.HAVEN_OPS_PASSWORD;
  if (!email || !password) fail("set HAVEN_OPS_EMAIL and HAVEN_OPS_PASSWORD (the server's bootstrap ops account): -e HAVEN_OPS_EMAIL=... -e HAVEN_OPS_PASSWORD=...");
  return login(email, password, true);
}

/** A first-aider or ambulance crew, verified by ops. */
export function responder(kind, ops) {
  const s = account(kind);
  api("POST", `/api/responders/${s.id}/verification`, { verified: true }, token(ops), { name: "POST /api/responders/{id}/verification" });
  return s;
}

const fresh = {};
/**
 * The access token of `session`, renewed when it has less than a minute left: a shared session
 * (login) is signed in again, any other refreshed (POST /api/auth/refresh), which rotates its
 * refresh token, so such a session must belong to one VU. Each VU keeps its own renewed copy.
 */
export function token(session) {
  const s = fresh[session.id] || session;
  if (s.accessTokenExpiresAt - Date.now() > 60000) return s.accessToken;
  if (session.password) {
    fresh[session.id] = login(session.email, session.password, true);
    return fresh[session.id].accessToken;
  }
  const r = api("POST", "/api/auth/refresh", { refreshToken: s.refreshToken }, undefined, { name: "POST /api/auth/refresh" });
  fresh[session.id] = {
    id: s.id, email: s.email, role: s.role, hospitalId: s.hospitalId,
    accessToken: r.body.accessToken, accessTokenExpiresAt: r.body.accessTokenExpiresAt, refreshToken: r.body.refreshToken,
  };
  return r.body.accessToken;
}

/**
 * The session as this VU last renewed it. setup() must return this (not the session it started
 * with): a refresh there spends the refresh token, and a VU presenting the spent one would get
 * the whole login revoked.
 */
export function current(session) {
  return fresh[session.id] || session;
}

/**
 * `count` cells spread over `spreadM` metres around the scene, each a patient with a verified
 * first-aider and ambulance crew, as setup() must hand them to the VUs (see `current`).
 */
export function cells(count, spreadM, ops) {
  const out = [];
  for (let i = 0; i < count; i++) {
    out.push({
      at: spreadPoint(i, count, spreadM),
      patient: account("patient"),
      firstAider: responder("first_aider", ops),
      crew: responder("ambulance_crew", ops),
    });
  }
  for (const c of out) for (const k of ["patient", "firstAider", "crew"]) c[k] = current(c[k]);
  return out;
}

/** Where a hospital is (`GET /api/hospitals/nearby`): `{ id, name, lat, lng }`. */
export function hospital(id, session) {
  const r = api("GET", `/api/hospitals/nearby?lat=${NAIROBI.lat}&lng=${NAIROBI.lng}&radiusM=200000&limit=50`, undefined, token(session), { name: "GET /api/hospitals/nearby" });
  const h = r.body.hospitals.filter((x) => x.id === id)[0];
  if (!h) fail(`no hospital ${id} near Nairobi`);
  return { id: h.id, name: h.name, lat: h.lat, lng: h.lng };
}

// ------------------------------------------------------------------ Colyseus frames

export const Frame = {
  JOIN_ROOM: 10, ERROR: 11, LEAVE_ROOM: 12, ROOM_DATA: 13, ROOM_STATE: 14, ROOM_STATE_PATCH: 15,
  ROOM_DATA_BYTES: 17, PING: 18, ROOM_REQUEST: 21, ROOM_RESPONSE: 22,
};
/** The protocol code is the low 5 bits of the first byte; the high 3 are modifiers. */
const CODE_MASK = 0x1f;

function buffer(bytes) {
  const b = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) b[i] = bytes[i];
  return b.buffer;
}

/** ROOM_DATA: [13][type][msgpack payload]. */
export function dataFrame(type, payload) {
  const out = [Frame.ROOM_DATA].concat(headerString(type));
  return buffer(payload === undefined ? out : out.concat(pack(payload)));
}

/** ROOM_REQUEST: [21][request id][type][msgpack payload]. */
export function requestFrame(id, type, payload) {
  const out = [Frame.ROOM_REQUEST].concat(headerNumber(id), headerString(type));
  return buffer(payload === undefined ? out : out.concat(pack(payload)));
}

/**
 * Offers a duty room's state or patch frame adds: `[{ offerId, emergencyId }]`. An Offer's first
 * two fields are its id and its emergency id, both UUIDs, so a new offer is written as
 * `0x80 0xd9 0x24 <36 bytes> 0x81 0xd9 0x24 <36 bytes>` (ADD field 0, str8 of 36 bytes; ADD
 * field 1, the same). Nothing else in DutyState has that shape.
 */
export function offersIn(bytes) {
  const found = [];
  const n = bytes.length;
  for (let i = 0; i + 78 <= n; i++) {
    if (bytes[i] !== 0x80 || bytes[i + 1] !== 0xd9 || bytes[i + 2] !== 36) continue;
    if (bytes[i + 39] !== 0x81 || bytes[i + 40] !== 0xd9 || bytes[i + 41] !== 36) continue;
    const offerId = utf8Decode(bytes, i + 3, i + 39);
    const emergencyId = utf8Decode(bytes, i + 42, i + 78);
    if (UUID.test(offerId) && UUID.test(emergencyId)) found.push({ offerId, emergencyId });
    i += 77;
  }
  return found;
}
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A frame's receive time: k6 stamps message events when the bytes were read. */
function stamp(e) {
  return typeof e.timestamp === "number" && e.timestamp > 0 ? e.timestamp : Date.now();
}

// ------------------------------------------------------------------ rooms

/**
 * A joined room. `join()` reserves a seat (POST /matchmake/joinById/{roomId}), opens the socket
 * at ws://host/{processId}/{roomId}?sessionId=…&_authToken=…, answers the server's JOIN_ROOM
 * with the single byte 10 and resolves once the full state (14) has arrived.
 *
 * Handlers (all optional): onState(bytes, t), onPatch(bytes, t), onMessage(type, payload, t),
 * onClose(code, reason), onError(payload) for an "error" message (return true when it is
 * expected; otherwise it is counted in haven_errors). `kind` tags the room's metrics (duty,
 * hospital or emergency, from the id when not given); patch sizes go to haven_update_bytes.
 * `expectClose`: close codes that are not failures (4000, our own leave, always is).
 */
export function join(session, roomId, handlers, attempt = 0) {
  const h = handlers || {};
  const kind = h.kind || (/^(duty|hospital)-/.test(roomId) ? roomId.split("-")[0] : "emergency");
  const started = Date.now();
  const bearer = token(session);
  const seat = api("POST", `/matchmake/joinById/${roomId}`, {}, bearer, { name: `POST /matchmake/joinById/{${kind}}`, soft: h.soft });
  if (seat.status !== 200) return Promise.reject(new Error(`seat reservation for ${roomId}: ${seat.status}`));
  const s = seat.body;
  const host = s.publicAddress ? `${WS_SCHEME}://${s.publicAddress}` : WS_BASE;
  const url = `${host}/${s.processId}/${s.roomId}?sessionId=${s.sessionId}&_authToken=${bearer}`;
  const room = new Room(url, roomId, kind, session, h);
  room.retryable = attempt === 0;
  return new Promise((resolve, reject) => {
    room.joinedResolve = () => { joinTime.add(Date.now() - started, { room: kind }); resolve(room); };
    room.joinedReject = (error) => {
      if (!room.retryable || room.closeCode !== 1006) return reject(error);
      joinRetries.add(1, { room: kind });
      join(session, roomId, handlers, attempt + 1).then(resolve, reject);
    };
  });
}

export class Room {
  constructor(url, roomId, kind, session, handlers) {
    this.roomId = roomId;
    this.kind = kind;
    this.session = session;
    this.h = handlers;
    this.expectClose = [4000].concat(handlers.expectClose || []);
    this.nextRequestId = 0; // as the SDK: 0, 1, 2, …
    this.pending = {};
    this.joined = false;
    this.closed = false;
    this.closeCode = 0;
    this.closeWaiters = [];
    this.lastError = "";
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onmessage = (e) => this.onFrame(e);
    ws.onerror = (e) => { this.lastError = String(e && e.error ? e.error : "error"); };
    ws.onclose = (e) => this.onClosed(e && e.code ? e.code : 1006, e && e.reason ? e.reason : "");
  }

  onFrame(e) {
    if (typeof e.data === "string") return;
    const bytes = new Uint8Array(e.data);
    const t = stamp(e);
    const code = bytes[0] & CODE_MASK;
    const it = { offset: 1 };
    // TIMED modifier (rooms with defineInput, not Haven's): [u32 serverNow][u32 inputSeq] before the body
    if ((bytes[0] & 0x80) && (code === Frame.ROOM_STATE || code === Frame.ROOM_STATE_PATCH)) it.offset += 8;
    if (code === Frame.JOIN_ROOM) {
      this.ws.send(buffer([Frame.JOIN_ROOM]));
    } else if (code === Frame.ROOM_STATE) {
      if (this.h.onState) this.h.onState(bytes, t);
      if (!this.joined) {
        this.joined = true;
        this.joinedResolve();
      }
    } else if (code === Frame.ROOM_STATE_PATCH) {
      updateBytes.add(bytes.length, { room: this.kind });
      if (this.h.onPatch) this.h.onPatch(bytes, t);
    } else if (code === Frame.ROOM_DATA) {
      const type = headerIsString(bytes, it) ? readHeaderString(bytes, it) : readHeaderNumber(bytes, it);
      const payload = bytes.length > it.offset ? unpack(bytes, it.offset) : undefined;
      if (type === "error" && !(this.h.onError && this.h.onError(payload))) {
        countError(payload && payload.code, { room: this.kind, type: payload && payload.type });
      }
      if (this.h.onMessage) this.h.onMessage(type, payload, t);
    } else if (code === Frame.ROOM_RESPONSE) {
      const id = readHeaderNumber(bytes, it);
      const status = bytes[it.offset++];
      const payload = bytes.length > it.offset ? unpack(bytes, it.offset) : undefined;
      const p = this.pending[id];
      if (p) {
        delete this.pending[id];
        clearTimeout(p.timer);
        requestTime.add(t - p.sentAt, { room: this.kind, type: p.type });
        // 0 OK, 1 REJECTED (payload is Haven's { code, message }), 2 ERROR (a server fault)
        if (status === 0) p.resolve(payload);
        else p.reject(Object.assign(new Error(`${p.type} rejected: ${payload && payload.code}`), { reason: payload || { code: status === 2 ? "INTERNAL" : "REJECTED" } }));
      }
    } else if (code === Frame.ERROR) {
      const errCode = readHeaderNumber(bytes, it);
      const message = readHeaderString(bytes, it);
      countError(`COLYSEUS_${errCode}`, { room: this.kind });
      this.lastError = message;
    }
  }

  onClosed(code, reason) {
    if (this.closed) return;
    this.closed = true;
    this.closeCode = code;
    // a socket closed abnormally before its first join completed is retried once (join()), not an error yet
    const retried = !this.joined && code === 1006 && this.retryable;
    if (this.expectClose.indexOf(code) < 0 && !retried) countError(`CLOSE_${code}`, { room: this.kind });
    for (const id of Object.keys(this.pending)) {
      const p = this.pending[id];
      clearTimeout(p.timer);
      p.reject(Object.assign(new Error(`${p.type}: socket closed (${code})`), { reason: { code: `CLOSE_${code}`, message: reason } }));
    }
    this.pending = {};
    if (!this.joined) {
      this.joined = true;
      this.joinedReject(new Error(`join of ${this.roomId} failed: close ${code} ${reason || this.lastError}`));
    }
    if (this.h.onClose && !retried) this.h.onClose(code, reason); // a retried join's handlers go on with the new socket
    for (const w of this.closeWaiters) w(code);
    this.closeWaiters = [];
  }

  /** A plain send (ROOM_DATA): no answer unless it is refused (an "error" message). */
  send(type, payload) {
    if (this.closed) return false;
    this.ws.send(dataFrame(type, payload));
    return true;
  }

  /** A request (ROOM_REQUEST): resolves with the answer, rejects with `err.reason = { code, message }`. */
  request(type, payload, timeoutMs) {
    if (this.closed) return Promise.reject(Object.assign(new Error(`${type}: socket closed`), { reason: { code: "CLOSED" } }));
    const id = this.nextRequestId;
    this.nextRequestId = this.nextRequestId >= 0x7fffffff ? 0 : this.nextRequestId + 1;
    return new Promise((resolve, reject) => {
      const p = { type, resolve, reject, sentAt: Date.now(), timer: null };
      p.timer = setTimeout(() => {
        delete this.pending[id];
        countError("TIMEOUT", { room: this.kind, type });
        reject(Object.assign(new Error(`${type}: no answer within ${timeoutMs || 10000} ms`), { reason: { code: "TIMEOUT" } }));
      }, timeoutMs || 10000);
      this.pending[id] = p;
      this.ws.send(requestFrame(id, type, payload));
    });
  }

  /** Leaves for good: LEAVE_ROOM (12), answered by a close with 4000. Resolves with the close code. */
  leave(timeoutMs) {
    if (this.closed) return Promise.resolve(this.closeCode);
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.ws.close(); }, timeoutMs || 5000);
      this.closeWaiters.push((code) => { clearTimeout(timer); resolve(code); });
      this.ws.send(buffer([Frame.LEAVE_ROOM]));
    });
  }
}

/** Resolves after `ms` on k6's event loop (unlike sleep(), which blocks every socket of the VU). */
export function wait(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects with `what` after `ms` unless `promise` settles first. */
export function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`${what}: timed out after ${ms} ms`), { reason: { code: "TIMEOUT" } })), ms);
  });
  return Promise.race([promise, timeout]).then(
    (v) => { clearTimeout(timer); return v; },
    (e) => { clearTimeout(timer); throw e; },
  );
}

// ------------------------------------------------------------------ responders on duty

/**
 * A verified responder on duty: POST /api/duty, the duty room joined, a first position sent.
 * `offers` collects every offer seen (by emergency id, with the time its frame arrived);
 * `waitOffer(emergencyId, ms)` resolves with `{ offerId, emergencyId, t }`; `patchSince(t, ms)`
 * waits for the duty state to change (for example the release after a cancel).
 * `onOffer(offer)` is called for each new offer.
 */
export async function goOnDuty(session, at, opts) {
  const o = opts || {};
  const duty = api("POST", "/api/duty", {}, token(session), { name: "POST /api/duty" }).body;
  const offers = {};
  const waiters = [];
  const patchWaiters = [];
  let lastPatchAt = 0;
  const seen = (bytes, t) => {
    lastPatchAt = t;
    while (patchWaiters.length) patchWaiters.shift()();
    for (const offer of offersIn(bytes)) {
      if (offers[offer.emergencyId] && offers[offer.emergencyId].offerId === offer.offerId) continue;
      offer.t = t;
      offers[offer.emergencyId] = offer;
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i].emergencyId === offer.emergencyId) waiters.splice(i, 1)[0].resolve(offer);
      }
      if (o.onOffer) o.onOffer(offer);
    }
  };
  const room = await join(session, duty.roomId, {
    kind: "duty",
    onState: seen,
    onPatch: seen,
    onMessage: () => {},
  });
  await room.request("position", { lat: at.lat, lng: at.lng, accuracy: 10 });
  return {
    session, room, offers,
    /** Resolves once a patch arrived at or after `since` (epoch ms), or after `ms` regardless. */
    patchSince(since, ms) {
      if (lastPatchAt >= since) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => { patchWaiters.splice(patchWaiters.indexOf(done), 1); resolve(false); }, ms);
        const done = () => { clearTimeout(timer); resolve(true); };
        patchWaiters.push(done);
      });
    },
    waitOffer(emergencyId, ms) {
      if (offers[emergencyId]) return Promise.resolve(offers[emergencyId]);
      return within(new Promise((resolve) => waiters.push({ emergencyId, resolve })), ms || 10000, `offer of ${emergencyId}`);
    },
  };
}

/** Accepts an offer: `{ ok, emergencyId }`, or rejects with Haven's reason. */
export function accept(onDuty, offer) {
  return onDuty.room.request("accept_offer", { offerId: offer.offerId });
}

// ------------------------------------------------------------------ a dispatched emergency (setup)

const ASSESSMENT = {
  age: 58, mechanism: "collapsed at a bus stop, chest pain", injuries: ["none visible"], treatment: ["aspirin 300 mg", "oxygen"],
  signs: { heartRate: 118, systolic: 92, diastolic: 60, respiratoryRate: 24, spo2: 91, gcs: 14, avpu: "voice" },
  suspected: ["cardiac"],
};

/**
 * An emergency with its patient, an assigned first-aider and an assigned ambulance crew, made
 * through the real lifecycle: the responders go on duty near `scene`, the patient alerts, both
 * accept their offers and go off duty again. With `assess`, the first-aider goes on scene and
 * submits an assessment, which matches the receiving hospital; with `wallboard` (a joined
 * hospital room), that hospital acknowledges. Run one at a time, so that each emergency's offers
 * go to its own responders.
 */
export async function dispatchedEmergency(ops, scene, opts) {
  const o = opts || {};
  const patient = account("patient");
  const firstAider = responder("first_aider", ops);
  const crew = responder("ambulance_crew", ops);
  const faDuty = await goOnDuty(firstAider, offset(scene, 60));
  const crewDuty = await goOnDuty(crew, offset(scene, 700));
  const alert = api("POST", "/api/emergency/alert", { lat: scene.lat, lng: scene.lng, accuracy: 15, priority: "high" }, token(patient), { name: "POST /api/emergency/alert" }).body;
  const id = alert.emergencyId;
  for (const d of [faDuty, crewDuty]) {
    const offer = await d.waitOffer(id, 10000);
    const accepted = await accept(d, offer);
    if (!check(accepted, { "setup: offer accepted": (a) => a && a.ok === true && a.emergencyId === id })) fail(`accept of ${id} answered ${JSON.stringify(accepted)}`);
  }
  await faDuty.room.leave();
  await crewDuty.room.leave();
  let hospitalId = "";
  if (o.assess) {
    const scenario = await join(firstAider, id, { kind: "emergency" });
    await scenario.request("status", { step: "on_scene", idempotencyKey: uuid() });
    const assessed = await scenario.request("assessment", Object.assign({ idempotencyKey: uuid(), timeOfIncident: Date.now() - 600000 }, ASSESSMENT));
    hospitalId = assessed.hospitalId;
    if (o.hospitalId && hospitalId !== o.hospitalId) fail(`emergency ${id} was matched to "${hospitalId}", not ${o.hospitalId}`);
    if (o.wallboard) {
      // the wallboard hears of the match just after the assessment is answered: retry until it has
      for (let attempt = 0; ; attempt++) {
        try {
          await o.wallboard.request("acknowledge", { emergencyId: id, idempotencyKey: uuid() });
          break;
        } catch (error) {
          if (!error.reason || error.reason.code !== "EMERGENCY_NOT_FOUND" || attempt >= 50) throw error;
          await wait(100);
        }
      }
    }
    await scenario.leave();
  }
  return { id, scene, hospitalId, patient: current(patient), firstAider: current(firstAider), crew: current(crew) };
}
