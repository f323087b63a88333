import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { Packr, unpack } from "msgpackr";
import { decode, encode } from "@colyseus/schema";
import type { Room } from "@colyseus/sdk";
import NodeWebSocket from "ws";
import { OPS, account, join, login, onDuty, scenario, sleep, startHaven, waitFor, type Account, type Haven } from "./harness.ts";
import {
  DOCUMENTED_CODES, HEAP_GROWTH_LIMIT, SCHEMAS, SEED, accepts, alive, ask, fence, heap, hostile, nastyNumber, nastyString, onTheWire,
  RUNS, params, paceOf, payloads, valid, serverErrors, view, type Outcome, type SchemaKey,
} from "./fuzz-kit.ts";

/**
 * Property-based tests of every socket message of every room, against a live server: random,
 * boundary and hostile payloads sent as the SDK sends them, and raw malformed frames. For every
 * case: the answer is a success exactly when the payload is valid by docs/protocol.md §3 (or a
 * documented refusal of the action itself), otherwise the expected refusal code; a refused
 * message leaves the state another party sees unchanged. After every batch: that other party
 * still receives updates, the process answers /health, logged no error, and its heap stayed
 * bounded. Seeded (HAVEN_FUZZ_SEED), HAVEN_FUZZ_RUNS cases per message type.
 */
const SCENE = { lat: -1.3007, lng: 36.81 }; // next to Kenyatta National Hospital
const FAR = { lat: -4.0435, lng: 39.6682 }; // Mombasa, far from the first scene
const MAX_FRAME = 8192;

let h: Haven;
let ops: Account;
let s: Awaited<ReturnType<typeof scenario>>;

beforeAll(async () => {
  h = await startHaven({
    // hundreds of cases a second from one sender: the rate bounds have tests of their own
    HAVEN_MAX_MESSAGES_PER_SECOND: "1000",
    HAVEN_CRITICAL_CHANGES_PER_10S: "10000",
    // nothing in the rooms changes on its own while a batch runs
    HAVEN_HOSPITAL_REALERT_INTERVAL_MS: "3600000",
    HAVEN_HOSPITAL_ACK_TIMEOUT_MS: "3600000",
    HAVEN_DISPATCH_WIDEN_INTERVAL_MS: "600000",
    HAVEN_OFFER_TIMEOUT_MS: "600000",
    HAVEN_CLOSE_GRACE_MS: "600000",
    // every valid vitals sample is taken (the per-sender interval has a test of its own)
    HAVEN_VITALS_MIN_INTERVAL_MS: "0",
  });
  ops = await login(h, OPS.email, OPS.password);
  s = await scenario(h, ops, SCENE);
}, 60_000);
afterAll(async () => { await h?.stop(); });

/** Success shapes per message (docs/protocol.md §3). */
const SUCCESS: Record<string, (value: any, payload: any) => boolean> = {
  position: (v) => v.ok === true,
  status: (v) => v.ok === true && (typeof v.status === "string" || v.duplicate === true),
  vitals: (v) => v.ok === true && (v.alerts === undefined || (Array.isArray(v.alerts) && v.alerts.every((a: unknown) => typeof a === "string"))),
  assessment: (v) => v.ok === true && ((typeof v.priority === "string" && typeof v.hospitalId === "string") || v.duplicate === true),
  cancel: (v) => v.ok === true && (v.status === "cancelled" || v.duplicate === true),
  availability: (v, p) => v.ok === true && v.available === p.available,
  accept_offer: (v) => v.ok === true && typeof v.emergencyId === "string",
  decline_offer: (v) => v.ok === true,
  acknowledge: (v) => v.ok === true && (v.status === "acknowledged" || v.duplicate === true),
  decline: (v) => v.ok === true && (typeof v.nextHospitalId === "string" || v.duplicate === true),
  readiness: (v, p) => v.ok === true && ((v.key === p.key && v.ready === p.ready) || v.duplicate === true),
  capacity: (v) => v.ok === true,
  handover: (v) => v.ok === true && (v.status === "handed_over" || v.duplicate === true),
  chat: (v) => v.ok === true && typeof v.seq === "number",
  open: (v, p) => v.ok === true && v.emergencyId === p.emergencyId && v.roomId === p.emergencyId,
  reassign_hospital: (v, p) => v.ok === true && ((v.hospitalId === p.hospitalId && typeof v.hospitalStatus === "string") || v.duplicate === true),
  assign_responder: (v, p) => v.ok === true && (v.emergencyId === p.emergencyId || v.duplicate === true),
  notice: (v) => v.ok === true && typeof v.noticeId === "string",
};

interface Target {
  type: string;
  schema: SchemaKey;
  sender: () => Room<any, any>;
  observer: () => Room<any, any>;
  /** Refusals of a valid payload that the action itself may give (docs/protocol.md §3). */
  domain: string[];
  /** Payloads to draw from; the schema's generator by default. */
  arbitrary?: fc.Arbitrary<unknown>;
}

/** What the answer to `payload` must be. */
function expected(t: Target, payload: unknown): { kind: "valid" } | { kind: "refused"; codes: string[] } | { kind: "skip" } {
  const wire = payload === undefined ? { encodable: true as const, bytes: 0, decodes: true as const, decoded: {} } : onTheWire(t.type, payload);
  if (!wire.encodable) return { kind: "skip" }; // the SDK cannot send it (a BigInt beyond 64 bits)
  if (wire.bytes > 60_000) return { kind: "skip" }; // beyond the transport's hard limit the socket is closed (test/bad-input.test.ts)
  if (Math.abs(wire.bytes - MAX_FRAME) <= 8) return { kind: "refused", codes: ["FRAME_TOO_LARGE", "INVALID_PAYLOAD"] }; // request ids differ in length
  if (wire.bytes > MAX_FRAME) return { kind: "refused", codes: ["FRAME_TOO_LARGE"] };
  if (!wire.decodes) return { kind: "refused", codes: ["MALFORMED_FRAME"] };
  return accepts(SCHEMAS[t.schema], wire.decoded) ? { kind: "valid" } : { kind: "refused", codes: ["INVALID_PAYLOAD"] };
}

function checkRefusal(out: Outcome & { ok: false }): void {
  expect(Object.keys(DOCUMENTED_CODES), `undocumented code ${out.code}`).toContain(out.code);
  expect(out.code).not.toBe("INTERNAL");
  expect(typeof out.message).toBe("string");
  if (out.code === "INVALID_PAYLOAD" && out.details !== undefined) {
    expect(Array.isArray(out.details)).toBe(true);
    expect((out.details as unknown[]).length).toBeLessThanOrEqual(8);
  }
}

/** Per sender: the first successful answer to each idempotency key (and emergency, on a wallboard). */
const keyed = new WeakMap<object, Map<string, unknown>>();

const stats: Record<string, { valid: number; refused: number; skipped: number; codes: Record<string, number> }> = {};

/** One case: send, wait for the observer to have every patch the answer caused, check. */
async function runCase(t: Target, payload: unknown): Promise<void> {
  const exp = expected(t, payload);
  const st = (stats[`${t.sender().name}.${t.type}`] ??= { valid: 0, refused: 0, skipped: 0, codes: {} });
  if (exp.kind === "skip") { st.skipped++; return; }
  const observer = t.observer();
  const before = view(observer);
  const out = await ask(t.sender(), t.type, payload);
  await fence(observer);
  // an idempotency key is scoped to one emergency and one subject, whatever the message (§4)
  const p = (payload ?? {}) as Record<string, unknown>; // no payload is a valid empty one where every field is optional
  const answers = keyed.get(t.sender()) ?? keyed.set(t.sender(), new Map()).get(t.sender())!;
  const key = exp.kind === "valid" && typeof p.idempotencyKey === "string" ? `${p.emergencyId ?? ""}/${p.idempotencyKey}` : undefined;
  const first = key === undefined ? undefined : answers.get(key);
  if (first !== undefined) {
    st.valid++;
    // a retry gets the first answer (or, once it left the memory, the database's duplicate)
    // a wallboard refuses before the emergency sees the key once the emergency left its board
    const refusedByBoard = !out.ok && t.type !== "capacity" && t.sender().name === "hospital" && ["EMERGENCY_NOT_FOUND", "EMERGENCY_CLOSED"].includes(out.code);
    if (!(out.ok && out.value.duplicate === true) && !refusedByBoard) expect(out.ok ? out.value : out, `a retry with ${key}: ${JSON.stringify(out)}`).toEqual(first);
    if (!out.ok) expect(view(observer), "a refused message changed the state").toBe(before);
    return;
  }
  if (out.ok) {
    st.valid++;
    expect(exp.kind, `accepted an invalid payload: ${JSON.stringify(out.value)}`).toBe("valid");
    expect(SUCCESS[t.type](out.value, payload), `answer ${JSON.stringify(out.value)}`).toBe(true);
    if (key !== undefined) answers.set(key, out.value);
    return;
  }
  st.refused++;
  st.codes[out.code] = (st.codes[out.code] ?? 0) + 1;
  checkRefusal(out);
  const allowed = exp.kind === "valid" ? t.domain : exp.codes;
  expect(allowed, `${out.code}: ${out.message}`).toContain(out.code);
  expect(view(observer), "a refused message changed the state").toBe(before);
}

/** After a batch: the server is alive, logged no error, its heap is bounded, and the room goes on. */
async function afterBatch(heapBefore: number, logMark: number, stillWorks: () => Promise<void>): Promise<void> {
  await alive(h);
  expect(serverErrors(h, logMark)).toEqual([]);
  await stillWorks();
  const grown = (await heap(h)) - heapBefore;
  expect(grown, `heap grew by ${grown} bytes`).toBeLessThan(HEAP_GROWTH_LIMIT);
}

async function fuzz(t: Target, stillWorks: () => Promise<void>): Promise<void> {
  const heapBefore = await heap(h);
  const logMark = h.logs.join("").length;
  await fence(t.observer());
  await fc.assert(fc.asyncProperty(t.arbitrary ?? payloads(SCHEMAS[t.schema]), (p) => runCase(t, p)), params());
  await afterBatch(heapBefore, logMark, stillWorks);
}

let nudge = 0;
/** The patient moves a little; the crew sees it. */
async function patientSeen(): Promise<void> {
  const lat = SCENE.lat + ++nudge * 1e-6;
  const r = await ask(s.pRoom, "position", { lat, lng: SCENE.lng });
  if (["handed_over", "cancelled"].includes(s.crewRoom.state.status)) {
    // a valid handover from the wallboard ended it: refused, and the crew is still there
    expect(r.ok === false && r.code).toBe("EMERGENCY_CLOSED");
    expect(s.crewRoom.connection.isOpen).toBe(true);
    return;
  }
  expect(r).toEqual({ ok: true, value: { ok: true } });
  await waitFor(s.crewRoom, (st) => st.patient.lat === lat, 2000, "the crew sees the patient move");
}

describe(`fuzzing every socket message (seed ${SEED})`, () => {
  const emergency = (type: string, schema: SchemaKey, domain: string[], sender = () => s.faRoom as Room<any, any>): Target =>
    ({ type, schema, sender, observer: () => s.crewRoom, domain });

  it("regressions: counterexamples the fuzzing found, as fixed cases", async () => {
    // seed 20261202: fastest-validator let null through every optional field, and the handlers wrote
    // it into the state, where the schema dropped the field for every client (accuracy vanished)
    const cases: [Room<any, any>, string, unknown][] = [
      [s.pRoom, "position", { lat: -90, lng: 0, accuracy: null }],
      [s.faRoom, "status", { step: "en_route", idempotencyKey: null }],
      [s.faRoom, "assessment", { mechanism: "a", injuries: [], treatment: [], idempotencyKey: null }],
      [s.faRoom, "assessment", { mechanism: "a", injuries: [], treatment: [], signs: { gcs: null } }],
      [s.faRoom, "vitals", { heartRate: null }],
      [s.faRoom, "vitals", { device: { battery: 50, signal: null } }],
      [s.pRoom, "cancel", { reason: "false_alarm", idempotencyKey: null }],
      [s.pRoom, "cancel", { reason: "other", note: null }],
    ];
    for (const [room, type, payload] of cases) {
      await fence(s.crewRoom);
      const before = view(s.crewRoom);
      const out = await ask(room, type, payload);
      await fence(s.crewRoom);
      expect(out, `${type} ${JSON.stringify(payload)}`).toMatchObject({ ok: false, code: "INVALID_PAYLOAD" });
      expect(view(s.crewRoom)).toBe(before);
    }
    // seed 5: a socket upgrade to a room id that names a member of Object.prototype reached
    // Colyseus's room lookup, which failed with a TypeError logged at error level
    const logMark = h.logs.join("").length;
    for (const roomId of ["__proto__", "constructor", "hasOwnProperty", "toString"]) {
      const status = await new Promise<number | undefined>((resolve) => {
        const ws = new NodeWebSocket(`${h.url.replace("http", "ws")}/x/${roomId}?sessionId=a&_authToken=${s.patient.token}`);
        ws.on("unexpected-response", (_req, res) => resolve(res.statusCode));
        ws.on("close", () => resolve(undefined));
        ws.on("error", () => {});
      });
      expect(status, roomId).toBe(404);
    }
    expect(serverErrors(h, logMark)).toEqual([]);
    // seed 20261202: a plain send refused as too large came back with type null, so the client
    // could not tell which of its sends had failed
    const errors: any[] = [];
    const off = s.pRoom.onMessage("error", (e: any) => errors.push(e)) as unknown as () => void;
    s.pRoom.send("position", { lat: 0, lng: 0, extra: "🚑".repeat(3000) });
    await fence(s.pRoom);
    off();
    expect(errors).toMatchObject([{ code: "FRAME_TOO_LARGE", type: "position" }]);
  });

  it("emergency room: position, from the patient and from the first-aider", async () => {
    await fuzz(emergency("position", "position", ["EMERGENCY_CLOSED"], () => s.pRoom), patientSeen);
    await fuzz(emergency("position", "position", ["EMERGENCY_CLOSED"]), patientSeen);
  }, 120_000);

  it("emergency room: status", async () => {
    await fuzz(emergency("status", "status", ["EMERGENCY_CLOSED", "INVALID_TRANSITION"]), patientSeen);
  }, 120_000);

  it("emergency room: assessment", async () => {
    await fuzz(emergency("assessment", "assessment", ["EMERGENCY_CLOSED"]), patientSeen);
  }, 120_000);

  it("emergency room: vitals, from the first-aider and from the crew", async () => {
    await fuzz(emergency("vitals", "vitals", ["EMERGENCY_CLOSED", "RATE_LIMITED"]), patientSeen);
    await fuzz({ ...emergency("vitals", "vitals", ["EMERGENCY_CLOSED", "RATE_LIMITED"], () => s.crewRoom), observer: () => s.faRoom }, patientSeen);
  }, 120_000);

  it("emergency room: chat, from the patient and from the first-aider", async () => {
    // INVALID_PAYLOAD: longer than HAVEN_CHAT_MAX_CHARS (500), within the schema's 2000
    await fuzz(emergency("chat", "chat", ["EMERGENCY_CLOSED", "RATE_LIMITED", "INVALID_PAYLOAD"], () => s.pRoom), patientSeen);
    await fuzz(emergency("chat", "chat", ["EMERGENCY_CLOSED", "RATE_LIMITED", "INVALID_PAYLOAD"]), patientSeen);
  }, 120_000);

  it("emergency room: a message the sender's role may not send, and names no room handles", async () => {
    const types = fc.oneof(
      fc.constantFrom("status", "assessment", "vitals", "fence", "error", "__proto__", "constructor", "hasOwnProperty", "toString", "onCreate", "acceptOffer", "restCancel", "capacity", "x".repeat(40), "Position", "position "),
      nastyString.filter((x) => x.length >= 1 && x.length <= 40),
    );
    const logMark = h.logs.join("").length;
    const heapBefore = await heap(h);
    await fc.assert(fc.asyncProperty(types, hostile(2), async (type, payload) => {
      const wire = onTheWire(type, payload);
      if (!wire.encodable || wire.bytes > 60_000) return;
      const before = view(s.crewRoom);
      // the patient may send only position and cancel; a cancel is left out here (it would end the emergency)
      const out = await ask(s.pRoom, type, payload);
      await fence(s.crewRoom);
      const known = ["position", "status", "assessment", "vitals", "cancel"].includes(type);
      if (out.ok) throw new Error(`${type} was accepted: ${JSON.stringify(out.value)}`);
      checkRefusal(out);
      if (wire.bytes > MAX_FRAME + 8) expect(out.code).toBe("FRAME_TOO_LARGE");
      else if (wire.bytes < MAX_FRAME - 8) {
        if (!known) expect(out.code).toBe(type.isWellFormed() ? "UNKNOWN_MESSAGE" : out.code); // a lone surrogate may not survive UTF-8
        else if (type === "status" || type === "assessment" || type === "vitals") expect(out.code).toBe("FORBIDDEN");
        else expect(["INVALID_PAYLOAD", "MALFORMED_FRAME"]).toContain(out.code);
      }
      expect(view(s.crewRoom)).toBe(before);
    }), params());
    await afterBatch(heapBefore, logMark, patientSeen);
  }, 120_000);

  it("emergency room: position as a plain send, refused with an error message and nothing else", async () => {
    const room = s.faRoom;
    const errors: any[] = [];
    const off = room.onMessage("error", (e: any) => errors.push(e)) as unknown as () => void;
    const heapBefore = await heap(h);
    const logMark = h.logs.join("").length;
    await fc.assert(fc.asyncProperty(payloads(SCHEMAS.position), async (payload) => {
      const exp = expected({ type: "position", schema: "position" } as Target, payload);
      if (exp.kind === "skip") return;
      const before = view(s.crewRoom);
      errors.length = 0;
      await paceOf(room).take();
      room.send("position", payload as never);
      await fence(room); // a refusal of the send is answered before the fence, on the same socket
      await fence(s.crewRoom);
      if (exp.kind === "valid") return void expect(errors).toEqual([]);
      expect(errors.length, JSON.stringify(errors)).toBe(1);
      expect(errors[0].type).toBe("position");
      expect(exp.codes).toContain(errors[0].code);
      checkRefusal({ ok: false, ...errors[0] });
      expect(view(s.crewRoom), "a refused send changed the state").toBe(before);
    }), params());
    off();
    await afterBatch(heapBefore, logMark, patientSeen);
  }, 120_000);

  it("emergency room: raw frames that the SDK would never send", async () => {
    const room = s.faRoom;
    const ws = (room.connection as any).transport.ws as WebSocket;
    const inbox: Uint8Array[] = [];
    const tap = (e: MessageEvent) => inbox.push(new Uint8Array(e.data as ArrayBuffer));
    ws.addEventListener("message", tap);
    room.onMessage("error", () => {});
    const permissive = new Packr({ structuredClone: true, moreTypes: true, useRecords: true });
    let nextId = 1_000_000;
    const head = (kind: number, id: number | undefined, type: string | number | undefined): number[] => {
      const bytes: number[] = [kind];
      const it = { offset: 1 };
      if (id !== undefined) encode.number(bytes as never, id, it);
      if (typeof type === "string") encode.string(bytes as never, type, it);
      else if (typeof type === "number") encode.number(bytes as never, type, it);
      return bytes.slice(0, it.offset);
    };
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.constant(new Uint8Array(0)),
      hostile(2).map((v) => { try { return permissive.pack(v); } catch { return new Uint8Array([0xc1]); } }),
      fc.tuple(fc.record({ lat: nastyNumber, lng: nastyNumber }), fc.nat()).map(([v, cut]) => { const b = permissive.pack(v); return b.subarray(0, cut % (b.length + 1)); }),
      fc.integer({ min: 8200, max: 20_000 }).map((n) => new Uint8Array(n).fill(0x90)),
    );
    const frame = fc.record({
      kind: fc.constantFrom(13, 21, 17, 13 | 0x40, 21 | 0x80, 13 | 0xe0, 0, 1, 2, 9, 11, 14, 15, 16, 18, 19, 20, 22, 23, 31, 0xe0 | 18),
      // ids the SDK may be using are left to it
      id: fc.oneof(fc.constant("own" as const), fc.constant(undefined), nastyNumber.filter((x) => !(Number.isInteger(x) && x >= 0 && x < 1_000_000))),
      type: fc.oneof(fc.constantFrom("position", "status", "__proto__", "hasOwnProperty", "", "x".repeat(41)), fc.constant(undefined), fc.integer(), nastyString.filter((x) => x.length < 300)),
      payload: body,
    });
    const logMark = h.logs.join("").length;
    const heapBefore = await heap(h);
    await fc.assert(fc.asyncProperty(frame, async (f) => {
      if ([10, 12].includes(f.kind & 0x1f)) return; // join acknowledgement and leave belong to Colyseus
      const isRequest = (f.kind & 0x1f) === 21 || (f.kind & 0x1f) === 17;
      const own = f.id === "own" ? nextId++ : undefined;
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array([...head(f.kind, isRequest ? (own ?? (f.id as number | undefined)) : undefined, f.type), ...f.payload]);
      } catch {
        return; // a header the schema encoder cannot write
      }
      const before = view(s.crewRoom);
      inbox.length = 0;
      await paceOf(room).take();
      room.connection.send(bytes);
      await fence(room); // answered in order on this socket: any answer to the frame is in
      await fence(s.crewRoom);
      const answers = inbox.flatMap((b) => {
        const it = { offset: 1 };
        if (b[0] === 22) {
          const id = decode.number(b as never, it);
          const status = b[it.offset++];
          const reply = b.byteLength > it.offset ? unpack(b.subarray(it.offset)) : undefined;
          return id === own && own !== undefined ? [{ status, reply }] : [];
        }
        if (b[0] === 13 && decode.string(b as never, it) === "error") {
          const reply = unpack(b.subarray(it.offset));
          return reply.type === "fence" ? [] : [{ status: 1, reply }];
        }
        return [];
      });
      expect(answers.length, JSON.stringify(answers)).toBeLessThanOrEqual(1);
      expect(room.connection.isOpen).toBe(true);
      const refused = answers.find((a) => a.status !== 0);
      if (refused) {
        expect(refused.status, "a refusal, not a server fault").toBe(1);
        expect(refused.reply, JSON.stringify(refused.reply)).toBeTypeOf("object");
        checkRefusal({ ok: false, ...refused.reply });
        expect(view(s.crewRoom), "a refused frame changed the state").toBe(before);
      }
      if (isRequest && own !== undefined && (f.kind & 0x1f) === 21 && bytes.byteLength <= MAX_FRAME) {
        expect(answers.length, "a request frame with a readable id is answered").toBe(1);
      }
    }), params());
    ws.removeEventListener("message", tap);
    await afterBatch(heapBefore, logMark, patientSeen);
  }, 120_000);

  it("socket upgrades: hostile paths, seats and tokens are refused, and nothing is left open", async () => {
    const processId = (await h.http("POST", `/matchmake/joinById/${s.id}`, {}, s.patient.token)).body.processId as string;
    const token = fc.oneof(fc.constant(s.patient.token), fc.constant(s.fa.acc.token), fc.constant(""), fc.constant(undefined), nastyString.map((x) => encodeURIComponent(x.toWellFormed())),
      fc.nat({ max: s.patient.token.length - 1 }).map((i) => s.patient.token.slice(0, i) + (s.patient.token[i] === "A" ? "B" : "A") + s.patient.token.slice(i + 1)));
    const seg = fc.oneof(fc.constantFrom(processId, s.id, "hospital-knh", "", "..", "%00", "x".repeat(300)), nastyString.filter((x) => x.length < 200).map((x) => encodeURIComponent(x.toWellFormed())));
    const query = fc.record({
      sessionId: fc.option(fc.oneof(fc.string({ maxLength: 20 }), nastyString.filter((x) => x.length < 200)), { nil: undefined }),
      reconnectionToken: fc.option(fc.oneof(fc.string({ maxLength: 20 }), nastyString.filter((x) => x.length < 200)), { nil: undefined }),
      skipHandshake: fc.option(fc.constantFrom("1", "true", "0"), { nil: undefined }),
    }, { requiredKeys: [] });
    const logMark = h.logs.join("").length;
    const heapBefore = await heap(h);
    const outcomes: Record<string, number> = {};
    await fc.assert(fc.asyncProperty(seg, seg, query, token, async (a, b, q, t) => {
      const search = new URLSearchParams(Object.entries(q).filter(([, v]) => v !== undefined).map(([k, v]) => [k, (v as string).toWellFormed()] as [string, string]));
      const url = `${h.url.replace("http", "ws")}/${a}/${b}?${search}${t === undefined ? "" : `&_authToken=${t}`}`;
      const outcome = await new Promise<{ kind: string; status?: number; body?: string; code?: number }>((resolve) => {
        let ws: NodeWebSocket;
        try { ws = new NodeWebSocket(url); } catch (error) { return resolve({ kind: "client refused the URL" }); }
        const timer = setTimeout(() => { ws.terminate(); resolve({ kind: "left open" }); }, 5000);
        ws.on("unexpected-response", (_req, res) => {
          let body = "";
          res.on("data", (d) => (body += d));
          res.on("end", () => { clearTimeout(timer); resolve({ kind: "refused", status: res.statusCode, body }); });
        });
        ws.on("close", (code) => { clearTimeout(timer); resolve({ kind: "closed", code }); });
        ws.on("error", () => {});
      });
      outcomes[`${outcome.kind} ${outcome.status ?? outcome.code ?? ""}`] = (outcomes[`${outcome.kind} ${outcome.status ?? outcome.code ?? ""}`] ?? 0) + 1;
      expect(outcome.kind, JSON.stringify(outcome)).not.toBe("left open");
      if (outcome.kind === "refused") expect(outcome.status).toBeGreaterThanOrEqual(400);
      if (outcome.kind === "refused" && (outcome.status === 401 || outcome.status === 403)) { // Haven's own refusals
        const body = JSON.parse(outcome.body!);
        expect(Object.keys(DOCUMENTED_CODES)).toContain(body.code);
        expect(outcome.status).toBe(DOCUMENTED_CODES[body.code]);
      }
      const tokenValid = t === s.patient.token || t === s.fa.acc.token;
      if (!tokenValid && outcome.kind !== "client refused the URL") {
        // 401 from Haven; 414 or 431 from the HTTP server for a URL or headers too long to read
        expect(outcome.kind === "refused" && [401, 414, 431].includes(outcome.status!), `a socket without a valid token is refused at the upgrade: ${JSON.stringify(outcome).slice(0, 300)}`).toBe(true);
      }
    }), params(Math.ceil(RUNS / 5))); // a refused seat takes the server about a second to close
    console.info(`[fuzz] socket upgrades: ${JSON.stringify(outcomes)}`);
    await afterBatch(heapBefore, logMark, patientSeen);
  }, 120_000);

  it("duty room: position, availability, decline_offer and accept_offer", async () => {
    const LODWAR = { lat: 3.1, lng: 35.6 }; // nowhere near either emergency
    const r = await onDuty(h, ops, "first_aider", LODWAR);
    const second = await join(h, r.acc.token, r.duty.roomId);
    second.onMessage("offer_withdrawn", () => {});
    const seen = async () => {
      const lat = LODWAR.lat + ++nudge * 1e-6;
      expect(await ask(r.duty, "position", { lat, lng: LODWAR.lng })).toEqual({ ok: true, value: { ok: true } });
      await waitFor(second, (st) => st.lat === lat, 2000, "the other session sees the position");
    };
    /** An open offer for this responder: a patient next to them raises an alert. */
    const offerNearby = async (): Promise<string> => {
      expect(await ask(r.duty, "availability", { available: true })).toMatchObject({ ok: true });
      const patient = await account(h, "patient");
      const alert = await h.http("POST", "/api/emergency/alert", { lat: LODWAR.lat + 0.0005, lng: LODWAR.lng }, patient.token);
      await waitFor(second, (st) => [...st.offers.values()].some((o: any) => o.emergencyId === alert.body.emergencyId), 3000, "an offer");
      await fence(second);
      return ([...second.state.offers.values()] as any[]).find((o) => o.emergencyId === alert.body.emergencyId).id;
    };
    /** Payloads whose offerId is sometimes the open offer's. */
    const naming = (key: SchemaKey, offerId: string) => fc.tuple(payloads(SCHEMAS[key]), fc.boolean()).map(([p, real]) =>
      real && p !== null && typeof p === "object" && !Array.isArray(p) && typeof (p as any).offerId === "string" ? { ...p, offerId } : p);
    const duty = (type: string, schema: SchemaKey, domain: string[] = [], arbitrary?: fc.Arbitrary<unknown>): Target =>
      ({ type, schema, sender: () => r.duty, observer: () => second, domain, arbitrary });
    await fuzz(duty("position", "position"), seen);
    await fuzz(duty("availability", "availability"), seen);
    await fuzz(duty("decline_offer", "declineOffer", ["OFFER_NOT_FOUND"], naming("declineOffer", await offerNearby())), seen);
    await fuzz(duty("accept_offer", "acceptOffer", ["OFFER_NOT_FOUND", "ALREADY_ASSIGNED"], naming("acceptOffer", await offerNearby())), seen);
    await second.leave();
    await r.duty.leave();
  }, 300_000);

  it("hospital room: acknowledge, readiness, capacity, decline and handover", async () => {
    /** The wallboard of an emergency's receiving hospital, as two staff members see it. */
    const boardOf = async (e: Awaited<ReturnType<typeof scenario>>) => {
      if (!e.crewRoom.state.hospital.id) {
        const r = await ask(e.faRoom, "assessment", { mechanism: "fall", injuries: [], treatment: [] });
        expect(r.ok).toBe(true);
        await waitFor(e.crewRoom, (st) => st.hospital.id !== "", 2000, "a receiving hospital");
      }
      const hospitalId = e.crewRoom.state.hospital.id as string;
      const staff = await account(h, "hospital_staff", { hospitalId, by: ops });
      const watcher = await account(h, "hospital_staff", { hospitalId, by: ops });
      const board = await join(h, staff.token, `hospital-${hospitalId}`);
      const other = await join(h, watcher.token, `hospital-${hospitalId}`);
      await sleep(1100); // the emergency's coalesced wallboard update (at most one a second) is out
      let beds = 0;
      const seen = async () => {
        const n = 100 + (++beds % 50);
        expect(await ask(board, "capacity", { emergencyBeds: n, accepting: true })).toEqual({ ok: true, value: { ok: true } });
        await waitFor(other, (st) => st.emergencyBeds === n, 2000, "the other wallboard sees the capacity");
      };
      // the emergency on the board, another one, or what the generator made
      const emergencyId = fc.oneof(fc.constant(undefined), fc.constant(e.id), fc.constant(crypto.randomUUID()), fc.string({ unit: fc.constantFrom(..."abc-_019XYZ".split("")), minLength: 1, maxLength: 64 }));
      const withId = (key: SchemaKey) => fc.tuple(payloads(SCHEMAS[key]), emergencyId).map(([p, id]) =>
        id !== undefined && p !== null && typeof p === "object" && !Array.isArray(p) && "emergencyId" in p && typeof (p as any).emergencyId === "string" ? { ...p, emergencyId: id } : p);
      const target = (type: string, schema: SchemaKey, domain: string[]): Target =>
        ({ type, schema, sender: () => board, observer: () => other, domain, arbitrary: withId(schema) });
      return { board, other, seen, target, done: async () => { await board.leave(); await other.leave(); } };
    };
    const closed = ["EMERGENCY_NOT_FOUND", "EMERGENCY_CLOSED", "NOT_RECEIVING_HOSPITAL"];
    const first = await boardOf(s);
    await fuzz(first.target("acknowledge", "acknowledge", closed), first.seen);
    await fuzz(first.target("readiness", "readiness", [...closed, "INVALID_PAYLOAD"]), first.seen); // INVALID_PAYLOAD: a 21st item
    await fuzz(first.target("capacity", "capacity", []), first.seen);
    await fuzz(first.target("chat", "hospitalChat", [...closed, "RATE_LIMITED", "INVALID_PAYLOAD"]), first.seen);
    await fuzz(first.target("decline", "decline", [...closed, "INVALID_TRANSITION"]), first.seen);
    await first.done();
    // a handover needs a patient on the way: another emergency, transporting
    const e = await scenario(h, ops, SCENE);
    await ask(e.faRoom, "assessment", { mechanism: "fall", injuries: [], treatment: [] });
    for (const step of ["on_scene", "left_scene"]) expect(await ask(e.faRoom, "status", { step })).toMatchObject({ ok: true });
    const second = await boardOf(e);
    await fuzz(second.target("handover", "handover", [...closed, "INVALID_TRANSITION"]), second.seen);
    await second.done();
    // released by the handover, its responders go off duty: nearer than anyone, they would take the next emergency's offers
    await Promise.all([e.pRoom, e.faRoom, e.crewRoom, e.fa.duty, e.crew.duty].map((r) => r.leave()));
  }, 300_000);

  it("ops room: open, reassign_hospital, assign_responder, cancel and notice", async () => {
    // the desk acts on an emergency of its own (a valid cancel ends it), watched by its patient
    const patient = await account(h, "patient");
    const target = (await h.http("POST", "/api/emergency/alert", FAR, patient.token)).body.emergencyId as string;
    const watcher = await join(h, patient.token, target);
    watcher.onMessage("notice", () => {});
    const desk = await join(h, ops.token, "ops");
    let nudged = 0;
    const seen = async () => {
      const lat = FAR.lat + ++nudged * 1e-6;
      const r = await ask(watcher, "position", { lat, lng: FAR.lng });
      if (watcher.state.status === "cancelled") { expect(r).toMatchObject({ ok: false, code: "EMERGENCY_CLOSED" }); return; }
      expect(r).toEqual({ ok: true, value: { ok: true } });
      await waitFor(watcher, (st) => st.patient.lat === lat, 2000, "the patient's own position");
    };
    // ids: the desk's emergency, another uuid, or what the generator made; a hospital that exists sometimes
    const pick = (key: SchemaKey, field: string, ids: fc.Arbitrary<string | undefined>) => (a: fc.Arbitrary<unknown>) => fc.tuple(a, ids).map(([p, id]) =>
      id !== undefined && p !== null && typeof p === "object" && !Array.isArray(p) && typeof (p as any)[field] === "string" ? { ...p, [field]: id } : p);
    const emergencyIds = fc.oneof(fc.constant(undefined), fc.constant(target), fc.constant(crypto.randomUUID()));
    const hospitalIds = fc.oneof(fc.constant(undefined), fc.constantFrom("knh", "mbagathi", "aga-khan"));
    // a key names one intended action (§4): the same key drawn for two different actions is made two keys
    const ownKeys = (tag: string) => (p: unknown) => p !== null && typeof p === "object" && !Array.isArray(p) && typeof (p as any).idempotencyKey === "string" && /^[A-Za-z0-9_-]{8,64}$/.test((p as any).idempotencyKey)
      ? { ...p, idempotencyKey: `${tag}${(p as any).idempotencyKey}`.slice(0, 64) } : p;
    const forKey = (key: SchemaKey) => {
      let a: fc.Arbitrary<unknown> = payloads(SCHEMAS[key]).map(ownKeys(key.slice(3, 6)));
      if ("emergencyId" in SCHEMAS[key].props) a = pick(key, "emergencyId", emergencyIds)(a);
      if ("hospitalId" in SCHEMAS[key].props) a = pick(key, "hospitalId", hospitalIds)(a);
      return a;
    };
    const gone = ["EMERGENCY_NOT_FOUND", "EMERGENCY_CLOSED"];
    const opsTarget = (type: string, schema: SchemaKey, domain: string[]): Target =>
      ({ type, schema, sender: () => desk, observer: () => watcher, domain, arbitrary: forKey(schema) });
    await fuzz(opsTarget("open", "opsOpen", gone), seen);
    await fuzz(opsTarget("notice", "opsNotice", []), seen);
    await fuzz(opsTarget("reassign_hospital", "opsReassignHospital", [...gone, "HOSPITAL_NOT_FOUND", "INVALID_TRANSITION"]), seen);
    await fuzz(opsTarget("assign_responder", "opsAssignResponder", [...gone, "RESPONDER_NOT_ON_DUTY", "ALREADY_ASSIGNED"]), seen);
    await fuzz(opsTarget("cancel", "opsCancel", gone), seen);
    await desk.leave();
    await watcher.leave();
  }, 300_000);

  it("an emergency's lifecycle: random sequences of valid actions by its parties follow §3's rules", async () => {
    type World = Awaited<ReturnType<typeof scenario>>;
    interface Model { status: string; hospital: boolean }
    const CLOSED = ["handed_over", "cancelled"];
    const party = (w: World, who: "patient" | "fa" | "crew") => (who === "patient" ? w.pRoom : who === "fa" ? w.faRoom : w.crewRoom);
    /** Every party sees the same emergency (the patient without `medical`), and the status the model expects. */
    const agree = async (m: Model, w: World) => {
      for (const r of [w.pRoom, w.faRoom, w.crewRoom]) await fence(r);
      const { medical, ...shared } = w.crewRoom.state.toJSON();
      expect(view(w.faRoom)).toBe(view(w.crewRoom));
      expect(JSON.stringify(w.pRoom.state.toJSON())).toBe(JSON.stringify(shared));
      expect(medical).toBeDefined();
      expect(w.crewRoom.state.status).toBe(m.status);
    };
    const refusedIfClosed = (m: Model, out: Outcome) => {
      if (CLOSED.includes(m.status)) { expect(out).toMatchObject({ ok: false, code: "EMERGENCY_CLOSED" }); return true; }
      return false;
    };
    type Cmd = fc.AsyncCommand<Model, World>;
    const cmd = (name: string, run: (m: Model, w: World) => Promise<void>): Cmd => ({ check: () => true, run, toString: () => name });
    const move = (who: "patient" | "fa" | "crew", at: { lat: number; lng: number }) => cmd(`${who} moves to ${JSON.stringify(at)}`, async (m, w) => {
      const out = await ask(party(w, who), "position", at);
      if (!refusedIfClosed(m, out)) expect(out).toEqual({ ok: true, value: { ok: true } });
      await agree(m, w);
    });
    const MOVES: Record<string, [string, string[]]> = { on_scene: ["on_scene", ["dispatched"]], left_scene: ["transporting", ["on_scene"]], at_hospital: ["at_hospital", ["transporting"]] };
    const step = (who: "fa" | "crew", name: string) => cmd(`${who} status ${name}`, async (m, w) => {
      const out = await ask(party(w, who), "status", { step: name });
      if (refusedIfClosed(m, out)) return void await agree(m, w);
      const to = MOVES[name];
      if (name === "at_hospital" && !m.hospital) expect(out).toMatchObject({ ok: false, code: "INVALID_TRANSITION" });
      else if (!to || m.status === to[0] || to[1].includes(m.status)) {
        if (to) m.status = to[0];
        expect(out).toEqual({ ok: true, value: { ok: true, status: m.status } });
      } else expect(out).toMatchObject({ ok: false, code: "INVALID_TRANSITION" });
      await agree(m, w);
    });
    const assess = (who: "fa" | "crew", body: unknown) => cmd(`${who} assesses ${JSON.stringify(body)}`, async (m, w) => {
      const out = await ask(party(w, who), "assessment", body);
      if (!refusedIfClosed(m, out)) {
        expect(out.ok, JSON.stringify(out)).toBe(true);
        if (out.ok && out.value.hospitalId) m.hospital = true;
      }
      await agree(m, w);
    });
    const cancel = (reason: string) => cmd(`patient cancels (${reason})`, async (m, w) => {
      const out = await ask(w.pRoom, "cancel", { reason });
      if (m.status === "handed_over") expect(out).toMatchObject({ ok: false, code: "EMERGENCY_CLOSED" });
      else {
        m.status = "cancelled";
        expect(out).toEqual({ ok: true, value: { ok: true, status: "cancelled" } });
      }
      await agree(m, w);
    });
    /** The receiving hospital's wallboard, joined by one of its staff the first time it is needed. */
    const boards = new WeakMap<World, Room<any, any>>();
    const boardOf = async (w: World) => {
      let board = boards.get(w);
      if (!board) {
        const hospitalId = w.crewRoom.state.hospital.id as string;
        const staff = await account(h, "hospital_staff", { hospitalId, by: ops });
        board = await join(h, staff.token, `hospital-${hospitalId}`);
        boards.set(w, board);
      }
      return board;
    };
    const wallboard = (action: "acknowledge" | "handover") => ({
      check: (m: Model) => m.hospital,
      run: async (m: Model, w: World) => {
        const board = await boardOf(w);
        const out = await ask(board, action, { emergencyId: w.id });
        if (CLOSED.includes(m.status)) expect(out).toMatchObject({ ok: false, code: "EMERGENCY_CLOSED" });
        else if (action === "acknowledge") expect(out).toEqual({ ok: true, value: { ok: true, status: "acknowledged" } });
        else if (m.status === "transporting" || m.status === "at_hospital") {
          m.status = "handed_over";
          expect(out).toEqual({ ok: true, value: { ok: true, status: "handed_over" } });
        } else expect(out).toMatchObject({ ok: false, code: "INVALID_TRANSITION" });
        await agree(m, w);
        await fence(board);
        const entry = board.state.incoming.get(w.id);
        if (m.status === "handed_over" || m.status === "cancelled") expect(entry?.hospitalStatus).toBe(m.status);
        else expect(entry?.status).toBe(m.status);
      },
      toString: () => `the wallboard: ${action}`,
    }) satisfies Cmd;
    const near = fc.record({ lat: fc.double({ min: SCENE.lat - 0.01, max: SCENE.lat + 0.01, noNaN: true }), lng: fc.double({ min: SCENE.lng - 0.01, max: SCENE.lng + 0.01, noNaN: true }) });
    const responder = fc.constantFrom("fa" as const, "crew" as const);
    const commands = fc.commands([
      fc.tuple(fc.constantFrom("patient" as const, "fa" as const, "crew" as const), near).map(([who, at]) => move(who, at)),
      fc.tuple(responder, fc.constantFrom("en_route", "on_scene", "left_scene", "at_hospital")).map(([who, name]) => step(who, name)),
      fc.tuple(responder, valid(SCHEMAS.assessment)).map(([who, body]) => { const { idempotencyKey: _, ...rest } = body as Record<string, unknown>; return assess(who, rest); }),
      fc.constantFrom("false_alarm", "resolved_on_scene", "duplicate").map((r) => cancel(r)),
      fc.constantFrom("acknowledge" as const, "handover" as const).map((a) => wallboard(a)),
    ], { maxCommands: 12 });
    const logMark = h.logs.join("").length;
    const heapBefore = await heap(h);
    await fc.assert(fc.asyncProperty(commands, async (cmds) => {
      const w = await scenario(h, ops, SCENE);
      try {
        await fc.asyncModelRun(() => ({ model: { status: "dispatched", hospital: false }, real: w }), cmds);
      } finally {
        await Promise.all([w.pRoom, w.faRoom, w.crewRoom, w.fa.duty, w.crew.duty, boards.get(w)].map((r) => r?.leave().catch(() => {})));
      }
    }), params(Math.ceil(RUNS / 10))); // a fresh emergency and its parties per sequence
    await afterBatch(heapBefore, logMark, patientSeen);
  }, 180_000);

  it("emergency room: cancel (last: a valid one ends the emergency)", async () => {
    const patient = await account(h, "patient");
    const alert = await h.http("POST", "/api/emergency/alert", FAR, patient.token);
    expect(alert.status).toBe(201);
    const pRoom = await join(h, patient.token, alert.body.emergencyId);
    const opsRoom = await join(h, ops.token, alert.body.emergencyId);
    await fuzz({ type: "cancel", schema: "cancel", sender: () => pRoom, observer: () => opsRoom, domain: [] }, async () => {
      const seenBefore = opsRoom.state.patient.updatedAt;
      const r = await ask(pRoom, "position", { lat: FAR.lat, lng: FAR.lng });
      if (r.ok) await waitFor(opsRoom, (st) => st.patient.updatedAt !== seenBefore, 2000, "ops sees the patient");
      else expect(r.code).toBe("EMERGENCY_CLOSED"); // cancelled by a valid cancel: refused, and ops still connected
      expect(opsRoom.connection.isOpen).toBe(true);
    });
    await patientSeen();
    console.info(`[fuzz] seed ${SEED}; cases per message (valid / refused / not sendable, refusal codes):\n${
      Object.entries(stats).map(([k, v]) => `  ${k}: ${v.valid} / ${v.refused} / ${v.skipped} ${JSON.stringify(v.codes)}`).join("\n")}`);
  }, 120_000);
});
