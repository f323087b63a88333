/**
 * `npm run demo`: simulated emergencies on real Nairobi streets against a running Haven, played by
 * the parties' own clients (REST and @colyseus/sdk, as the apps would): two patients raise
 * alerts in the city centre, first-aiders walk to them, ambulances drive from Upper Hill along
 * Uhuru Highway and Kenyatta Avenue, and take them along Ngong Road to Kenyatta National
 * Hospital, whose staff acknowledge, get ready and confirm the handovers. It prints where to
 * watch (the wallboard and the operations desk) and how to sign in, then its progress.
 *
 *   npm run demo                          against http://127.0.0.1:2567 (a fresh `npm start`)
 *   HAVEN_URL=http://host:2567 npm run demo
 *   HAVEN_DEMO_SPEED=4 npm run demo       four times faster
 *
 * Signing in as operations (to create the demo's accounts): HAVEN_DEMO_OPS_EMAIL and
 * HAVEN_DEMO_OPS_PASSWORD, else the development account a `npm start` without
 * HAVEN_BOOTSTRAP_OPS_* creates (its password is in `$HAVEN_DATA_DIR/ops-account.development`).
 */
import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { Client, type Room } from "@colyseus/sdk";
import { KENYATTA_AVENUE_TO_KNH, MOI_AVENUE_TO_KNH, PLACES, UPPER_HILL_TO_KENYATTA_AVENUE, along, type Point } from "./nairobi.ts";

const BASE = (process.env.HAVEN_URL ?? "http://127.0.0.1:2567").replace(/\/$/, "");
const SPEED = Math.max(0.25, Math.min(50, Number(process.env.HAVEN_DEMO_SPEED ?? 1) || 1));
// a party sends at most 5 positions a second (the socket's limit is 20 messages a second):
// faster than ×5, the ticks stay 200 ms and the steps grow
const TICK_MS = Math.max(200, 1000 / SPEED);
const STRIDE = Math.max(1, SPEED / 5);
const HOSPITAL = "knh";
const PASSWORD = `demo-${randomUUID().slice(0, 13)}`;
const RUN = randomUUID().slice(0, 6);
const t0 = Date.now();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** `n` ticks of demo time (a tick is a second at ×1), however fast the demo runs. */
const ticks = (n: number) => sleep((n * 1000) / SPEED);
function say(tag: string, text: string): void {
  const s = Math.round((Date.now() - t0) / 1000);
  console.log(`[${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}] ${tag.padEnd(10)} ${text}`);
}

async function api<T = any>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const answer: any = await res.json().catch(() => ({}));
    if (res.status === 503 && attempt < 20) { await sleep(1000); continue; } // starting up: retry
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${answer.code}: ${answer.message}`);
    return answer as T;
  }
}

function connect(token: string): Client {
  const c = new Client(BASE);
  c.auth.token = token;
  return c;
}

/** Resolves with the state once `predicate` holds, checked after every patch. */
function until<S = any>(room: Room<any, S>, predicate: (s: any) => boolean, timeoutMs = 120_000): Promise<any> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { room.onStateChange.remove(check); reject(new Error("timed out waiting on the room")); }, timeoutMs);
    function check(): void {
      if (room.state === undefined || !predicate(room.state)) return;
      clearTimeout(timer);
      queueMicrotask(() => room.onStateChange.remove(check));
      resolve(room.state);
    }
    room.onStateChange(check);
    check();
  });
}

function opsCredentials(): { email: string; password: string } {
  if (process.env.HAVEN_DEMO_OPS_EMAIL && process.env.HAVEN_DEMO_OPS_PASSWORD) {
    return { email: process.env.HAVEN_DEMO_OPS_EMAIL, password: process.env.HAVEN_DEMO_OPS_PASSWORD };
  }
  const file = `${process.env.HAVEN_DATA_DIR ?? new URL("../../.data", import.meta.url).pathname}/ops-account.development`;
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch {
    throw new Error(`no operations account to sign in with: set HAVEN_DEMO_OPS_EMAIL and HAVEN_DEMO_OPS_PASSWORD, or run against a development server started here (it keeps its account in ${file})`);
  }
}

interface Session { id: string; token: string; email: string; name: string }

async function signIn(email: string, password: string): Promise<Session> {
  const s = await api("POST", "/api/auth/login", { email, password });
  return { id: s.user.id, token: s.accessToken, email, name: s.user.name };
}

/** An account created by operations (not counted against self-registration limits). */
async function create(ops: Session, role: string, name: string, hospitalId?: string): Promise<Session> {
  const email = `${role.replace("_", "-")}-${RUN}-${randomUUID().slice(0, 4)}@demo.haven.local`;
  await api("POST", "/api/auth/register", { email, password: PASSWORD, name, role, hospitalId }, ops.token);
  return signIn(email, PASSWORD);
}

/** A verified responder on duty at `at`; `accept(id)` takes the offer of emergency `id` when it comes. */
async function responder(ops: Session, role: "first_aider" | "ambulance_crew", name: string, at: Point) {
  const me = await create(ops, role, name);
  await api("POST", `/api/responders/${me.id}/verification`, { verified: true }, ops.token);
  const { roomId } = await api("POST", "/api/duty", {}, me.token);
  const duty = await connect(me.token).joinById(roomId);
  duty.onMessage("offer_withdrawn", () => {});
  duty.onMessage("notice", (n: any) => say(name, `notice from operations: ${n.text}`));
  await duty.request("position", at);
  const accept = async (emergencyId: string): Promise<void> => {
    const s = await until(duty, (st) => [...st.offers.values()].some((o: any) => o.emergencyId === emergencyId));
    const offer = [...s.offers.values()].find((o: any) => o.emergencyId === emergencyId) as any;
    await duty.request("accept_offer", { offerId: offer.id });
  };
  return { me, duty, accept };
}

type Responder = Awaited<ReturnType<typeof responder>>;

/** Moves a party along `route`, one step a tick; with `tag`, prints the ETA the hospital sees now and then. */
async function drive(room: Room, route: Point[], stepM: number, opts: { also?: Room; tag?: string } = {}): Promise<void> {
  const steps = along(route, stepM * STRIDE);
  for (const [i, p] of steps.entries()) {
    room.send("position", { lat: p.lat, lng: p.lng, heading: Math.round(p.heading), speed: stepM }); // metres a demo second
    opts.also?.send("position", { lat: p.lat, lng: p.lng });
    if (opts.tag && i > 0 && i % Math.max(1, Math.round(steps.length / 4)) === 0) {
      const eta = (room.state as any)?.hospital?.etaSeconds ?? -1;
      if (eta >= 0) say(opts.tag, `ambulance ${Math.round((100 * i) / steps.length)}% of the way; ETA at the hospital ${Math.floor(eta / 60)} min ${String(eta % 60).padStart(2, "0")} s`);
    }
    await sleep(TICK_MS);
  }
}

/** The crew's monitor: a sample every two ticks until `stop()`, drifting around a baseline. */
function monitor(room: Room, base: { heartRate: number; systolic: number; diastolic: number; spo2: number; respiratoryRate: number }) {
  let on = true;
  void (async () => {
    while (on) {
      const j = () => Math.round((Math.random() - 0.5) * 6);
      room.send("vitals", { heartRate: base.heartRate + j(), systolic: base.systolic + j(), diastolic: base.diastolic + j(), spo2: Math.min(100, base.spo2 + Math.round(Math.random() * 2)), respiratoryRate: base.respiratoryRate + Math.round(j() / 3), device: { battery: 87, signal: 64 } });
      await sleep(Math.max(1000, 2 * TICK_MS));
    }
  })();
  return { stop: () => { on = false; } };
}

interface Story {
  tag: string;
  patientAt: Point;
  patientName: string;
  firstAiderFrom: Point;
  ambulanceRoute: Point[];
  transportRoute: Point[];
  assessment: Record<string, unknown>;
  vitals: Parameters<typeof monitor>[1];
}

async function emergency(ops: Session, story: Story, firstAider: Responder, crew: Responder, assigned: () => void): Promise<void> {
  const { tag } = story;
  const patient = await create(ops, "patient", story.patientName);
  const alert = await api("POST", "/api/emergency/alert", { ...story.patientAt, accuracy: 20, priority: "high", note: "demo" }, patient.token);
  const id = alert.emergencyId as string;
  say(tag, `${story.patientName} raised an alert (emergency ${id.slice(0, 8)})`);
  const patientRoom = await connect(patient.token).joinById(id);
  patientRoom.onMessage("notice", () => {});
  await firstAider.accept(id);
  say(tag, `first-aider ${firstAider.me.name} accepted; walking over`);
  const faRoom = await connect(firstAider.me.token).joinById(id);
  faRoom.onMessage("notice", () => {});
  await crew.accept(id);
  say(tag, `ambulance ${crew.me.name} accepted; driving from Upper Hill`);
  const crewRoom = await connect(crew.me.token).joinById(id);
  crewRoom.onMessage("notice", () => {});
  assigned();

  const ambulance = drive(crewRoom, story.ambulanceRoute, 25, { tag });
  await drive(faRoom, [story.firstAiderFrom, story.patientAt], 20);
  await faRoom.request("status", { step: "on_scene" });
  say(tag, "first-aider on scene; assessing");
  await ticks(3);
  const assessed: any = await faRoom.request("assessment", { ...story.assessment, idempotencyKey: randomUUID() });
  say(tag, `assessment sent (${assessed.priority}); hospital chosen: ${assessed.hospitalId || "none yet"}`);
  if (assessed.hospitalId !== HOSPITAL) {
    // operations sends the patient to the trauma centre, with a reason, from its desk
    const desk = await connect(ops.token).joinById("ops");
    await desk.request("reassign_hospital", { emergencyId: id, hospitalId: HOSPITAL, reason: "demo: Kenyatta National Hospital receives the demo's patients", idempotencyKey: randomUUID() });
    await desk.leave();
    say(tag, "operations reassigned the patient to Kenyatta National Hospital");
  }
  const vitals = monitor(faRoom, story.vitals);
  await ambulance;
  await crewRoom.request("status", { step: "on_scene" });
  say(tag, "ambulance on scene");
  await ticks(4);
  await crewRoom.request("status", { step: "left_scene" });
  say(tag, "transporting to Kenyatta National Hospital");
  await drive(crewRoom, story.transportRoute, 25, { also: patientRoom, tag });
  await crewRoom.request("status", { step: "at_hospital" });
  say(tag, "arrived at Kenyatta National Hospital; waiting for the handover");
  const final = await until(patientRoom, (s) => s.status === "handed_over" || s.status === "cancelled");
  vitals.stop();
  say(tag, `${final.status.replace("_", " ")}`);
}

/** The hospital's side: acknowledges what arrives, gets ready, confirms handovers. */
async function hospitalStaff(staff: Session) {
  const board = await connect(staff.token).joinById(`hospital-${HOSPITAL}`);
  const seen = new Set<string>();
  const handed = new Set<string>();
  board.onStateChange((s: any) => {
    for (const e of s.incoming.values()) {
      if (e.hospitalStatus === "notified" && !seen.has(e.emergencyId)) {
        seen.add(e.emergencyId);
        void (async () => {
          await ticks(8);
          await board.request("acknowledge", { emergencyId: e.emergencyId, idempotencyKey: randomUUID() });
          say("KNH", `acknowledged ${e.emergencyId.slice(0, 8)} (${e.priority})`);
          for (const key of ["team", "bed", "equipment"]) {
            await ticks(10);
            await board.request("readiness", { emergencyId: e.emergencyId, key, ready: true }).catch(() => {});
            say("KNH", `${key} ready for ${e.emergencyId.slice(0, 8)}`);
          }
        })().catch((error) => say("KNH", `could not act on ${e.emergencyId.slice(0, 8)}: ${(error as Error).message}`));
      }
      if (e.status === "at_hospital" && !handed.has(e.emergencyId)) {
        handed.add(e.emergencyId);
        void (async () => {
          await ticks(6);
          await board.request("handover", { emergencyId: e.emergencyId, notes: "received in resus", idempotencyKey: randomUUID() });
          say("KNH", `handover confirmed for ${e.emergencyId.slice(0, 8)}`);
        })().catch((error) => say("KNH", `handover failed: ${(error as Error).message}`));
      }
    }
  });
  return board;
}

async function main(): Promise<void> {
  const creds = opsCredentials();
  const ops = await signIn(creds.email, creds.password);
  // the people on the wall: a nurse's account to sign in to the wallboard with, and the staff client the demo acts with
  const nurse = await create(ops, "hospital_staff", "Nurse Wanjiru (demo)", HOSPITAL);
  const staff = await create(ops, "hospital_staff", "Dr Otieno (demo)", HOSPITAL);
  console.log(`
Haven demo against ${BASE} (speed ×${SPEED})

  Hospital wallboard (Kenyatta National Hospital): ${BASE}/wallboard
      sign in as ${nurse.email}  password ${PASSWORD}
  Operations desk:                                 ${BASE}/ops
      sign in as ${creds.email}  password ${creds.password}
`);
  const board = await hospitalStaff(staff);

  const fa1 = await responder(ops, "first_aider", "Achieng (first-aider)", PLACES.kenyattaAtKimathi);
  const crew1 = await responder(ops, "ambulance_crew", "Ambulance KBZ 101", PLACES.upperHill);
  say("demo", "first-aider and ambulance on duty; the first patient is about to call");
  await ticks(5);
  let firstAssigned!: () => void;
  const assignedOne = new Promise<void>((r) => { firstAssigned = r; });
  const first = emergency(ops, {
    tag: "Kenyatta", patientAt: PLACES.kenyattaAtMoi, patientName: "James Mwangi", firstAiderFrom: PLACES.kenyattaAtKimathi,
    ambulanceRoute: UPPER_HILL_TO_KENYATTA_AVENUE, transportRoute: KENYATTA_AVENUE_TO_KNH,
    assessment: { age: 46, timeOfIncident: Date.now() - 6 * 60_000, mechanism: "pedestrian struck by a matatu on Kenyatta Avenue", injuries: ["suspected pelvic fracture", "scalp laceration"], treatment: ["pressure dressing", "pelvic binder"], signs: { heartRate: 118, systolic: 98, diastolic: 62, respiratoryRate: 24, spo2: 94, gcs: 14, avpu: "voice" }, priority: "critical", suspected: ["trauma"] },
    vitals: { heartRate: 116, systolic: 100, diastolic: 64, spo2: 94, respiratoryRate: 22 },
  }, fa1, crew1, firstAssigned);

  await Promise.race([assignedOne, first]);
  await ticks(20);
  const fa2 = await responder(ops, "first_aider", "Kamau (first-aider)", PLACES.kencom);
  const crew2 = await responder(ops, "ambulance_crew", "Ambulance KCA 202", PLACES.upperHill);
  const second = emergency(ops, {
    tag: "Moi Ave", patientAt: PLACES.moiAtJeevanjee, patientName: "Grace Njeri", firstAiderFrom: PLACES.kencom,
    ambulanceRoute: [PLACES.upperHill, ...MOI_AVENUE_TO_KNH.slice(0, -1).reverse()], transportRoute: MOI_AVENUE_TO_KNH,
    assessment: { age: 67, timeOfIncident: Date.now() - 15 * 60_000, mechanism: "fall on the steps by Jeevanjee Gardens", injuries: ["suspected hip fracture"], treatment: ["splint", "paracetamol"], signs: { heartRate: 92, systolic: 142, diastolic: 88, respiratoryRate: 18, spo2: 96, gcs: 15, avpu: "alert" }, priority: "high", suspected: ["trauma"] },
    vitals: { heartRate: 90, systolic: 140, diastolic: 86, spo2: 96, respiratoryRate: 18 },
  }, fa2, crew2, () => {});

  await Promise.all([first, second]);
  say("demo", "both patients handed over; the board keeps them for 10 minutes. Done.");
  await board.leave();
  for (const r of [fa1, crew1, fa2, crew2]) await r.duty.leave();
  process.exit(0);
}

main().catch((error) => {
  console.error(`demo failed: ${(error as Error).message}`);
  process.exit(1);
});
