/**
 * What a live emergency looks like in Postgres, recorded once per server tree: a real server
 * (of that tree) on a copy of its base database runs one emergency through the real flow with
 * @colyseus/sdk clients — alert, both responders dispatched and accepted, on scene, assessment,
 * hospital matched and acknowledged on its wallboard, left scene (`transporting`) — and its rows
 * (users, responders, the emergency, its timeline and its latest snapshot) are read back. Seeding
 * (seed.ts) copies them with new ids: every seeded emergency is what the server itself wrote.
 */
import { Client, type Room } from "@colyseus/sdk";
import { randomUUID } from "node:crypto";
import { createDb, dropDb, newDbName, withDb } from "./pg.ts";
import { startHaven, type HavenKeys } from "./servers.ts";
import type { Log, Tree } from "./trees.ts";
import { sleep } from "./proc.ts";

export const OPS = { email: "ops@bench.haven", password: "bench-ops-password-1" };
const PASSWORD = "bench-password-123";
/** Next to the Aga Khan University Hospital, Nairobi (docs/protocol.md §9). */
export const SCENE = { lat: -1.2620, lng: 36.8230 };

export interface TemplateEmergency {
  ids: { emergency: string; patient: string; firstAider: string; crew: string; staff: string; ops: string; hospital: string };
  users: Record<string, unknown>[];
  responders: Record<string, unknown>[];
  emergency: Record<string, unknown>;
  events: Record<string, unknown>[];
  snapshot: Record<string, unknown>;
  /** The emergency's wrapped data keys (`medical_keys`; empty for trees that keep none). */
  medicalKeys: Record<string, unknown>[];
  hospitals: { id: string; name: string; lat: number; lng: number }[];
  /** The status the emergency was left in. */
  status: string;
}

async function api<T = any>(base: string, method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const answer: any = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(answer)}`);
  return answer as T;
}

function until<S = any>(room: Room<any, S>, predicate: (state: any) => boolean, what: string, timeoutMs = 10_000): Promise<any> {
  return new Promise((resolve, reject) => {
    const check = () => {
      try { return room.state !== undefined && predicate(room.state); } catch { return false; }
    };
    if (check()) return resolve(room.state);
    const timer = setTimeout(() => { room.onStateChange.remove(listener); reject(new Error(`timed out waiting for ${what}`)); }, timeoutMs);
    const listener = () => {
      if (!check()) return;
      clearTimeout(timer);
      room.onStateChange.remove(listener);
      resolve(room.state);
    };
    room.onStateChange(listener);
  });
}

function connect(base: string, token: string): Client {
  const c = new Client(base);
  c.auth.token = token;
  return c;
}

/**
 * The base database of a tree: migrated by the tree's own server at its first start (which also
 * seeds the hospitals and the bootstrap ops account). Every step's database is a copy of it.
 */
export async function makeBaseDb(tree: Tree, keys: HavenKeys, logFile: string, log: Log): Promise<string> {
  const name = newDbName("haven_bench_base");
  const url = await createDb(name);
  const t0 = Date.now();
  const server = await startHaven({
    tree, transport: "ws", databaseUrl: url, keys, logFile, unpinned: true,
    env: { HAVEN_BOOTSTRAP_OPS_EMAIL: OPS.email, HAVEN_BOOTSTRAP_OPS_PASSWORD: OPS.password, LOG_LEVEL: "warn" },
  });
  await server.stop();
  log(`base database of ${tree.label}: migrated and seeded by its server in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return name;
}

/** Runs one emergency through the real flow on a copy of `baseDb` and reads its rows back. */
export async function captureTemplate(tree: Tree, baseDb: string, keys: HavenKeys, logFile: string, log: Log): Promise<TemplateEmergency> {
  const name = newDbName("haven_bench_tpl");
  const url = await createDb(name, baseDb);
  const t0 = Date.now();
  const server = await startHaven({
    tree, transport: "ws", databaseUrl: url, keys, logFile, unpinned: true,
    env: { LOG_LEVEL: "warn" },
  });
  const base = server.url;
  const rooms: Room[] = [];
  try {
    const register = async (role: string, name: string, extra: Record<string, unknown> = {}, by?: string) => {
      const email = `${role}-${randomUUID().slice(0, 8)}@bench.haven`;
      await api(base, "POST", "/api/auth/register", { email, password: PASSWORD, name, role, ...extra }, by);
      return api(base, "POST", "/api/auth/login", { email, password: PASSWORD });
    };
    const ops = await api(base, "POST", "/api/auth/login", OPS);
    const patient = await register("patient", "Bench Patient");
    const fa = await register("first_aider", "Bench First-Aider");
    const crew = await register("ambulance_crew", "Bench Crew");
    for (const r of [fa, crew]) await api(base, "POST", `/api/responders/${r.user.id}/verification`, { verified: true }, ops.accessToken);

    const duty = async (r: any, north: number) => {
      const { roomId } = await api(base, "POST", "/api/duty", {}, r.accessToken);
      const room = await connect(base, r.accessToken).joinById(roomId);
      rooms.push(room);
      room.onMessage("offer_withdrawn", () => {});
      await room.send("position", { lat: SCENE.lat + north / 111_320, lng: SCENE.lng });
      return room;
    };
    const faDuty = await duty(fa, 100);
    const crewDuty = await duty(crew, 900);
    await sleep(200);

    const alert = await api(base, "POST", "/api/emergency/alert", { ...SCENE, accuracy: 15, priority: "high", note: "chest pain" }, patient.accessToken);
    const id = alert.emergencyId as string;
    for (const d of [faDuty, crewDuty]) {
      const s = await until(d, (st) => [...st.offers.values()].some((o: any) => o.emergencyId === id), "an offer");
      const offer = [...s.offers.values()].find((o: any) => o.emergencyId === id) as any;
      await d.request("accept_offer", { offerId: offer.id });
    }
    const join = async (token: string, roomId: string) => {
      const room = await connect(base, token).joinById(roomId);
      rooms.push(room);
      room.onMessage("error", () => {});
      return room;
    };
    const pRoom = await join(patient.accessToken, id);
    const faRoom = await join(fa.accessToken, id);
    const crewRoom = await join(crew.accessToken, id);
    await faRoom.request("status", { step: "on_scene", idempotencyKey: randomUUID() });
    const assessed = await faRoom.request("assessment", {
      idempotencyKey: randomUUID(), age: 58, timeOfIncident: Date.now() - 10 * 60_000, mechanism: "collapsed at a bus stop, chest pain",
      injuries: ["none visible"], treatment: ["aspirin 300 mg", "oxygen"],
      signs: { heartRate: 118, systolic: 92, diastolic: 60, respiratoryRate: 24, spo2: 91, gcs: 14, avpu: "voice" },
      priority: "critical", suspected: ["cardiac"],
    });
    const hospitalId = assessed.hospitalId as string;
    if (!hospitalId) throw new Error("the assessment matched no hospital");
    const staff = await register("hospital_staff", "Bench Staff", { hospitalId }, ops.accessToken);
    const wallboard = await join(staff.accessToken, `hospital-${hospitalId}`);
    await until(wallboard, (s) => s.incoming.get(id)?.hospitalStatus === "notified", "the wallboard entry");
    await wallboard.request("acknowledge", { emergencyId: id, idempotencyKey: randomUUID() });
    await crewRoom.request("status", { step: "left_scene", idempotencyKey: randomUUID() });
    const staffRoom = await join(staff.accessToken, id);
    // moving: the positions reach the snapshot with the next flush (at most 2 s)
    pRoom.send("position", { lat: SCENE.lat, lng: SCENE.lng + 0.0001, accuracy: 12 });
    faRoom.send("position", { lat: SCENE.lat + 0.0002, lng: SCENE.lng, accuracy: 8 });
    crewRoom.send("position", { lat: SCENE.lat + 0.0003, lng: SCENE.lng, accuracy: 6, heading: 90, speed: 8 });
    await until(staffRoom, (s) => s.status === "transporting" && s.ambulance.get(crew.user.id)?.accuracy === 6, "the positions");
    await sleep(2600);
    for (const r of rooms.splice(0)) await r.leave().catch(() => undefined);
    await server.stop();

    const template = await withDb(url, async (sql) => {
      const userIds = [patient.user.id, fa.user.id, crew.user.id, staff.user.id];
      const users = await sql`select * from users where id in ${sql(userIds)}`;
      const responders = await sql`select * from responders where user_id in ${sql([fa.user.id, crew.user.id])}`;
      const [emergency] = await sql`select * from emergencies where id = ${id}`;
      const events = await sql`select * from emergency_events where emergency_id = ${id} order by seq`;
      const [snapshot] = await sql`select * from emergency_snapshots where emergency_id = ${id}`;
      const [{ keyed }] = await sql<{ keyed: boolean }[]>`select to_regclass('medical_keys') is not null as keyed`;
      const medicalKeys = keyed ? await sql`select * from medical_keys where emergency_id = ${id}` : [];
      const hospitals = await sql<{ id: string; name: string; lat: number; lng: number }[]>`select id, name, lat, lng from hospitals where approved and accepting order by id`;
      if (!emergency || !snapshot) throw new Error("the emergency or its snapshot is missing");
      return {
        ids: { emergency: id, patient: patient.user.id, firstAider: fa.user.id, crew: crew.user.id, staff: staff.user.id, ops: ops.user.id, hospital: hospitalId },
        users: [...users], responders: [...responders], emergency, events: [...events], snapshot, medicalKeys: [...medicalKeys], hospitals: [...hospitals],
        status: String(emergency.status),
      } as TemplateEmergency;
    });
    log(`template emergency of ${tree.label}: ${template.status}, ${template.events.length} timeline events, snapshot ${(template.snapshot.state as Buffer).length} B, hospital ${hospitalId} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    return template;
  } finally {
    for (const r of rooms) await r.leave().catch(() => undefined);
    await server.stop();
    await dropDb(name);
  }
}
