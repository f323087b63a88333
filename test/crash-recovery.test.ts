import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { Unpackr } from "msgpackr";
import { TokenService } from "../src/auth/tokens.ts";
import { OPS, account, freshDatabase, join, login, scenario, sleep, startHaven, waitFor, type Account, type Haven } from "./harness.ts";

/**
 * An emergency outlives the process that holds it: after `kill -9` and a restart on the same
 * database, every emergency that was active comes back from its latest snapshot, its parties
 * rejoin by the emergency's id with their tokens and carry on, and not one acknowledged critical
 * event is missing or doubled. Only positions younger than the last flush (2 s) may be lost.
 */
let db: Awaited<ReturnType<typeof freshDatabase>>;
let env: Record<string, string>;
let sql: postgres.Sql;
beforeAll(async () => {
  db = await freshDatabase();
  env = {
    DATABASE_URL: db.url,
    HAVEN_TOKEN_SECRET_KEY: await TokenService.generateSecretKey(),
    HAVEN_MEDICAL_MASTER_KEY: Buffer.alloc(32, 9).toString("base64"),
    HAVEN_LOGIN_PER_MINUTE_PER_ADDRESS: "1000",
  };
  sql = postgres(db.url, { max: 2, onnotice: () => {} });
});
afterAll(async () => { await sql?.end({ timeout: 1 }); await db?.drop(); });

const PLACES = { nakuru: { lat: -0.3031, lng: 36.08 }, agaKhan: { lat: -1.262, lng: 36.823 }, knh: { lat: -1.3007, lng: 36.8065 } };
const CRITICAL = ["call_received", "responder_assigned", "on_scene", "assessment_submitted", "hospital_matched", "hospital_acknowledged", "readiness_changed", "left_scene"];

/** What must survive: everything but fast-changing fields and positions younger than the last flush. */
function durable(state: any) {
  const s = JSON.parse(JSON.stringify(state));
  for (const p of [s.patient, ...Object.values(s.firstAiders ?? {}), ...Object.values(s.ambulance ?? {})] as any[]) delete p.online;
  delete s.dispatch;
  delete s.hospital?.alerts;
  delete s.hospital?.etaSeconds;
  s.timeline = (s.timeline ?? []).filter((e: any) => CRITICAL.includes(e.type)).map((e: any) => `${e.seq}:${e.type}:${e.actor}`);
  return s;
}

describe("crash recovery", () => {
  it("kill -9 with three emergencies in different stages: all come back, parties rejoin by id and carry on, nothing acknowledged lost or doubled", async () => {
    let a: Haven | undefined = await startHaven(env);
    let b: Haven | undefined;
    try {
      const ops = await login(a, OPS.email, OPS.password);
      // 1: dispatched
      const e1 = await scenario(a, ops, PLACES.nakuru);
      // 2: assessed, hospital notified and acknowledged, one readiness item ticked; the assessment retried with its key
      const e2 = await scenario(a, ops, PLACES.agaKhan);
      const assessment = { mechanism: "chest pain", injuries: [], treatment: ["aspirin"], suspected: ["cardiac"], priority: "critical", idempotencyKey: "assess-0001" };
      const first = await e2.faRoom.request("assessment", assessment);
      const retried = await e2.faRoom.request("assessment", assessment);
      expect(retried).toEqual({ ...first, duplicate: true });
      const staff = await account(a, "hospital_staff", { hospitalId: "aga-khan", by: ops });
      const board = await join(a, staff.token, "hospital-aga-khan");
      await waitFor(board, (st) => st.incoming.has(e2.id), 2000, "on the wallboard");
      await board.request("acknowledge", { emergencyId: e2.id });
      await board.request("readiness", { emergencyId: e2.id, key: "team", ready: true });
      // 3: transporting
      const e3 = await scenario(a, ops, PLACES.knh);
      await e3.faRoom.request("status", { step: "on_scene" });
      await e3.faRoom.request("assessment", { mechanism: "road traffic collision", injuries: ["femur fracture"], treatment: ["splint"], suspected: ["trauma"] });
      await e3.crewRoom.request("status", { step: "left_scene" });
      // a position older than the flush interval survives
      await e1.pRoom.request("position", { lat: -0.30311, lng: 36.08001, accuracy: 7 });
      await waitFor(e1.faRoom, (st) => st.patient.lat === -0.30311, 1000, "position seen");
      await sleep(2600);

      const before = new Map<string, any>();
      for (const e of [e1, e2, e3]) {
        await waitFor(e.faRoom, (st) => st.medical !== undefined, 1000, "medical view");
        before.set(e.id, durable(e.faRoom.state.toJSON()));
      }
      a.proc.kill("SIGKILL");
      await new Promise((r) => a!.proc.once("exit", r));
      a = undefined;

      b = await startHaven(env);
      expect(b.logs.join("")).toContain("active emergencies restored");
      for (const e of [e1, e2, e3]) {
        // the documented client flow: after a failed reconnect, join the emergency again by its id
        const faRoom = await join(b, e.fa.acc.token, e.id);
        const pRoom = await join(b, e.patient.token, e.id);
        const crewRoom = await join(b, e.crew.acc.token, e.id);
        expect(durable(faRoom.state.toJSON()), `emergency ${e.id}`).toEqual(before.get(e.id));
        expect(durable(crewRoom.state.toJSON())).toEqual(before.get(e.id));
        expect(pRoom.state.medical).toBeUndefined();
        // and they carry on
        await pRoom.request("position", { lat: pRoom.state.patient.lat + 1e-5, lng: pRoom.state.patient.lng });
        await waitFor(faRoom, (st) => st.patient.lat === pRoom.state.patient.lat, 1000, "streaming again");
      }
      // a responder back on duty is still assigned to the emergency that came back
      const duty = await b.http("POST", "/api/duty", {}, e1.fa.acc.token);
      const dutyRoom = await join(b, e1.fa.acc.token, duty.body.roomId);
      expect(dutyRoom.state.assignedTo).toBe(e1.id);
      const staffAgain = await join(b, staff.token, "hospital-aga-khan");
      await waitFor(staffAgain, (st) => st.incoming.get(e2.id)?.hospitalStatus === "acknowledged", 3000, "the wallboard shows the restored emergency");
      const e3Room = await join(b, e3.crew.acc.token, e3.id);
      await e3Room.request("status", { step: "at_hospital" });
      await waitFor(e3Room, (st) => st.status === "at_hospital", 1000, "the lifecycle goes on");

      // not one acknowledged critical event missing, none doubled by the retry
      const events = await sql`select emergency_id, type, count(*)::int as n from emergency_events group by emergency_id, type`;
      const count = (id: string, type: string) => events.find((r) => r.emergency_id === id && r.type === type)?.n ?? 0;
      expect(count(e2.id, "assessment_submitted")).toBe(1);
      expect(count(e2.id, "hospital_acknowledged")).toBe(1);
      expect(count(e2.id, "readiness_changed")).toBe(1);
      expect(count(e3.id, "left_scene")).toBe(1);
      expect(count(e3.id, "arrived_at_hospital")).toBe(1);
      for (const e of [e1, e2, e3]) expect(count(e.id, "responder_assigned")).toBe(2);
    } finally {
      if (a) a.proc.kill("SIGKILL");
      await b?.stop();
    }
  });

  it("SIGTERM flushes every room's state, tells clients to reconnect, and exits 0 within 10 s", async () => {
    const a = await startHaven(env);
    const ops = await login(a, OPS.email, OPS.password);
    const e = await scenario(a, ops, { lat: -4.0435, lng: 39.6682 });
    const told = new Promise<number>((r) => e.pRoom.onDrop((code: number) => r(code)));
    e.pRoom.reconnection.maxRetries = 0;
    await e.pRoom.request("position", { lat: -4.04351, lng: 39.66821 });
    const started = Date.now();
    const exited = new Promise<number | null>((r) => a.proc.once("exit", (code) => r(code)));
    a.proc.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await told).toBe(4010);
    const [row] = await sql`select state from emergency_snapshots where emergency_id = ${e.id}`;
    const saved = new Unpackr({ useRecords: false }).unpack(row.state) as any;
    expect(saved.state.patient.lat).toBe(-4.04351);
    await a.stop();
  });
});
