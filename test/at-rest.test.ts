import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import postgres from "postgres";
import { Unpackr } from "msgpackr";
import { TokenService } from "../src/auth/tokens.ts";
import { OPS, account, join, login, scenario, sleep, startHaven, waitFor, type Account, type Haven } from "./harness.ts";

/**
 * At rest: nothing medical is stored in the clear. A full emergency with a consented profile, an
 * assessment and free-text notes, a cancelled one with a note and a live one are run; then every
 * table of the database is dumped with pg_dump (binary columns decoded) and none of the medical
 * plaintext may be found. After the patients erase their profiles, what their emergencies
 * disclosed cannot be decrypted with the master key and anything the database still holds — not
 * even from a copy of the snapshots taken before the erasure. Closed emergencies' medical data is
 * destroyed after the retention period.
 */

const MASTER = Buffer.alloc(32, 11).toString("base64");
const unpackr = new Unpackr({ useRecords: false });

const PROFILE_SECRETS = ["penicillin-ATREST-7c1e", "ATREST-COND refractory epilepsy", "ATREST-MED levetiracetam"];
const CLINICAL_SECRETS = {
  alertNote: "ATREST-NOTE crushing chest pain since noon",
  mechanism: "ATREST-MECH fell four metres from scaffolding",
  injury: "ATREST-INJ open tibial fracture",
  treatment: "ATREST-TREAT tourniquet applied",
  handover: "ATREST-HANDOVER received in resus bay 3",
  cancelNote: "ATREST-CANCEL patient is known psychiatric case",
};
const ALL_SECRETS = [...PROFILE_SECRETS, ...Object.values(CLINICAL_SECRETS)];

/** A vitals sample streamed into the live emergency: its temperature is an unusual number to look for. */
const VITALS_MARKER = { heartRate: 149, temperature: 37.3456, spo2: 93, device: { battery: 57, signal: 43 } };
/** The marker temperature as the state holds it (float32), in every form a plaintext copy would take. */
function vitalsFound(dump: { text: string; binaries: Buffer[] }): string[] {
  const t = Math.fround(VITALS_MARKER.temperature);
  const f64 = Buffer.alloc(8); f64.writeDoubleBE(t);
  const f32 = Buffer.alloc(4); f32.writeFloatBE(t);
  const found: string[] = [];
  if (dump.text.includes(String(t)) || dump.binaries.some((b) => b.includes(String(t)))) found.push(`temperature ${t} as text`);
  if (dump.binaries.some((b) => b.includes(Buffer.concat([Buffer.from([0xcb]), f64])))) found.push("temperature as msgpack float64");
  if (dump.binaries.some((b) => b.includes(Buffer.concat([Buffer.from([0xca]), f32])))) found.push("temperature as msgpack float32");
  if (dump.text.includes("vitalsAlerts") || dump.binaries.some((b) => b.includes("vitalsAlerts"))) found.push("the vitals alert list");
  return found;
}

const profile = (marker = 0) => ({
  bloodType: "AB-",
  allergies: [{ substance: PROFILE_SECRETS[0], reaction: "anaphylaxis", severity: "life_threatening" }],
  conditions: [PROFILE_SECRETS[1]],
  medications: [{ name: PROFILE_SECRETS[2], dose: `${500 + marker} mg`, frequency: "twice daily" }],
  emergencyContacts: [{ name: "Achieng", relation: "mother", phone: "+254700000777" }],
  consent: { shareInEmergency: true, version: 1 },
});

/** A pg_dump whose major version is at least the server's (an older one refuses to dump). */
function pgDumpFor(serverMajor: number): string {
  const candidates = [process.env.HAVEN_TEST_PG_DUMP, "pg_dump"];
  try {
    for (const v of readdirSync("/usr/lib/postgresql").sort((a, b) => Number(b) - Number(a))) candidates.push(`/usr/lib/postgresql/${v}/bin/pg_dump`);
  } catch { /* no versioned client installs */ }
  const seen: string[] = [];
  for (const c of candidates) {
    if (!c) continue;
    try {
      const out = execFileSync(c, ["--version"], { encoding: "utf8" });
      const major = Number(/(\d+)(?:\.\d+)?/.exec(out)?.[1]);
      seen.push(`${c}: ${out.trim()}`);
      if (major >= serverMajor) return c;
    } catch { /* not there */ }
  }
  throw new Error(`this test needs pg_dump of PostgreSQL ${serverMajor} or newer (package postgresql-client; or set HAVEN_TEST_PG_DUMP); found: ${seen.join("; ") || "none"}`);
}

/** Every table of the database as pg_dump writes it, and every binary value in it decoded. */
async function dumpEverything(databaseUrl: string, sql: postgres.Sql): Promise<{ text: string; binaries: Buffer[]; tables: string[] }> {
  const [{ server_version_num }] = await sql`show server_version_num`;
  const text = execFileSync(pgDumpFor(Math.floor(Number(server_version_num) / 10000)), ["--no-owner", "--dbname", databaseUrl], {
    encoding: "utf8", maxBuffer: 512 * 1024 * 1024,
  });
  // bytea values in COPY text: \\x followed by hex
  const binaries = [...text.matchAll(/\\\\x([0-9a-f]+)/g)].map((m) => Buffer.from(m[1], "hex"));
  const tables = [...text.matchAll(/^COPY public\.(\w+) /gm)].map((m) => m[1]);
  return { text, binaries, tables };
}

function plaintextFound(dump: { text: string; binaries: Buffer[] }, secrets: string[]): string[] {
  const found: string[] = [];
  for (const secret of secrets) {
    const needles = [Buffer.from(secret, "utf8"), Buffer.from(secret, "utf16le")];
    if (dump.text.includes(secret) || dump.binaries.some((b) => needles.some((n) => b.includes(n)))) found.push(secret);
  }
  return found;
}

let h: Haven;
let ops: Account;
let sql: postgres.Sql;
let env: Record<string, string>;
beforeAll(async () => {
  env = { HAVEN_MEDICAL_MASTER_KEY: MASTER, HAVEN_TOKEN_SECRET_KEY: await TokenService.generateSecretKey() };
  h = await startHaven(env);
  ops = await login(h, OPS.email, OPS.password);
  sql = postgres(h.databaseUrl, { max: 2, onnotice: () => {} });
});
afterAll(async () => { await sql?.end({ timeout: 1 }); await h?.stop(); });

const PLACES = {
  agaKhan: { lat: -1.2620, lng: 36.8230 },
  nakuru: { lat: -0.3031, lng: 36.0800 },
  mombasa: { lat: -4.0435, lng: 39.6682 },
};

type Run = Awaited<ReturnType<typeof scenario>>;
let handedOver: Run;
let live: Run;
let snapshotsBeforeErasure: Map<string, Buffer>;
/** Every emergency run on the first server: their clients stop reconnecting when it is killed. */
const runs: Run[] = [];
const noReconnect = () => {
  for (const r of runs) for (const room of [r.pRoom, r.faRoom, r.crewRoom, r.fa.duty, r.crew.duty]) room.reconnection.maxRetries = 0;
};

async function snapshotOf(id: string): Promise<{ seq: number; state: any; sealed?: { clinical?: Buffer; profile?: Buffer } }> {
  const [row] = await sql`select state from emergency_snapshots where emergency_id = ${id}`;
  return unpackr.unpack(row.state);
}

describe("medical data at rest", () => {
  it("a full emergency with a profile, an assessment and notes leaves no medical plaintext in any table (pg_dump, binary columns included)", async () => {
    // 1. handed over: consented profile, alert note, assessment, handover notes
    const patientA = await account(h, "patient");
    expect((await h.http("POST", "/api/medical-profile", profile(1), patientA.token)).status).toBe(201);
    handedOver = await scenario(h, ops, { ...PLACES.agaKhan, note: CLINICAL_SECRETS.alertNote } as never, patientA);
    await waitFor(handedOver.faRoom, (st) => st.medical?.profile?.shared === true, 3000, "profile disclosed to the first-aider");
    expect(handedOver.faRoom.state.timeline[0].detail).toBe(CLINICAL_SECRETS.alertNote);
    await handedOver.faRoom.request("status", { step: "on_scene" });
    await handedOver.faRoom.request("assessment", {
      age: 41, mechanism: CLINICAL_SECRETS.mechanism, injuries: [CLINICAL_SECRETS.injury], treatment: [CLINICAL_SECRETS.treatment],
      signs: { heartRate: 128, systolic: 88, diastolic: 54, spo2: 91, avpu: "voice" }, suspected: ["trauma"], priority: "critical",
    });
    await waitFor(handedOver.pRoom, (st) => st.hospital.status === "notified", 3000, "hospital matched");
    const hospitalId = handedOver.pRoom.state.hospital.id as string;
    const staff = await account(h, "hospital_staff", { hospitalId, by: ops });
    const board = await join(h, staff.token, `hospital-${hospitalId}`);
    await waitFor(board, (st) => st.incoming.has(handedOver.id), 3000, "on the wallboard");
    await board.request("acknowledge", { emergencyId: handedOver.id });
    await handedOver.crewRoom.request("status", { step: "left_scene" });
    await board.request("handover", { emergencyId: handedOver.id, notes: CLINICAL_SECRETS.handover });
    await waitFor(handedOver.faRoom, (st) => st.status === "handed_over", 3000, "handed over");

    // 2. cancelled with a note
    const cancelled = await scenario(h, ops, { ...PLACES.nakuru, note: CLINICAL_SECRETS.alertNote } as never);
    runs.push(cancelled);
    await cancelled.pRoom.request("cancel", { reason: "other", note: CLINICAL_SECRETS.cancelNote });

    // 3. live: consented profile and an assessment, positions streaming (the snapshot flusher's path)
    const patientC = await account(h, "patient");
    expect((await h.http("POST", "/api/medical-profile", profile(2), patientC.token)).status).toBe(201);
    live = await scenario(h, ops, PLACES.mombasa, patientC);
    await waitFor(live.faRoom, (st) => st.medical?.profile?.shared === true, 3000, "profile disclosed");
    await live.faRoom.request("assessment", { mechanism: CLINICAL_SECRETS.mechanism, injuries: [CLINICAL_SECRETS.injury], treatment: [] });
    // vitals streamed by the crew's device, one over its threshold (an alert on the timeline)
    await live.crewRoom.request("vitals", VITALS_MARKER);
    await waitFor(live.faRoom, (st) => st.medical.vitals.get(live.crew.acc.id)?.heartRate === 149 && st.priority === "critical", 3000, "vitals seen");
    await live.pRoom.request("position", { lat: PLACES.mombasa.lat + 1e-5, lng: PLACES.mombasa.lng });
    await sleep(2600); // every room's snapshot flushed at least once since

    const dump = await dumpEverything(h.databaseUrl, sql);
    // the dump really holds the emergencies, their snapshots and events
    for (const table of ["emergencies", "emergency_events", "emergency_snapshots", "medical_profiles", "audit_log"]) expect(dump.tables).toContain(table);
    expect(dump.binaries.length).toBeGreaterThan(10);
    expect(dump.text).toContain(handedOver.id);
    expect(plaintextFound(dump, ALL_SECRETS)).toEqual([]);
    expect(vitalsFound(dump)).toEqual([]);
    // the alert is on the timeline in the database, naming the vital, never its value
    const alerts = await sql`select payload from emergency_events where emergency_id = ${live.id} and type = 'vitals_alert'`;
    expect(alerts).toHaveLength(1);
    expect(JSON.stringify(alerts[0].payload)).not.toContain("149");
    // and the keys, in tables of their own
    for (const table of ["medical_keys", "medical_profile_keys"]) expect(dump.tables).toContain(table);

    snapshotsBeforeErasure = new Map();
    for (const id of [handedOver.id, live.id]) {
      const [row] = await sql`select state from emergency_snapshots where emergency_id = ${id}`;
      snapshotsBeforeErasure.set(id, row.state);
    }
  });

  it("the sealed parts open with the emergency's keys; after erasure the disclosed profile cannot be decrypted with the master key, while the live emergency carries on without it", async () => {
    const { MasterKey, unwrapEmergencyKey, openEmergencyPart, unwrap } = await import("../src/medical/crypto.ts");
    const master = MasterKey.fromEnvValue(MASTER);
    const keyOf = async (id: string, purpose: "clinical" | "profile") => {
      const [row] = await sql`select wrapped_key from medical_keys where emergency_id = ${id} and purpose = ${purpose}`;
      return row && unwrapEmergencyKey(row.wrapped_key, master, id, purpose);
    };

    // before erasure: the master key opens what was sealed (the seal is real, not a loss)
    const a = await snapshotOf(handedOver.id);
    expect(a.state.medical).toBeUndefined();
    // the live emergency's vitals are in its sealed clinical part
    const liveSnap = await snapshotOf(live.id);
    expect(liveSnap.state.medical).toBeUndefined();
    const liveClinical = openEmergencyPart(liveSnap.sealed!.clinical!, (await keyOf(live.id, "clinical"))!, live.id, "clinical") as any;
    expect(liveClinical.medical.vitals[live.crew.acc.id]).toMatchObject({ heartRate: 149, spo2: 93, battery: 57, signal: 43 });
    expect(liveClinical.medical.vitalsAlerts).toEqual(["heartRate:high"]);
    const clinical = openEmergencyPart(a.sealed!.clinical!, (await keyOf(handedOver.id, "clinical"))!, handedOver.id, "clinical") as any;
    expect(clinical.medical.mechanism).toBe(CLINICAL_SECRETS.mechanism);
    expect(clinical.notes.map((n: [number, string]) => n[1])).toEqual(expect.arrayContaining([CLINICAL_SECRETS.alertNote, CLINICAL_SECRETS.handover]));
    const disclosed = openEmergencyPart(a.sealed!.profile!, (await keyOf(handedOver.id, "profile"))!, handedOver.id, "profile") as any;
    expect(disclosed.allergies[0]).toContain(PROFILE_SECRETS[0]);
    // a part does not open under another key, as another part, nor in another emergency
    const clinicalKey = (await keyOf(handedOver.id, "clinical"))!;
    expect(() => openEmergencyPart(a.sealed!.profile!, clinicalKey, handedOver.id, "profile")).toThrow();
    expect(() => openEmergencyPart(a.sealed!.clinical!, clinicalKey, handedOver.id, "profile")).toThrow();
    expect(() => openEmergencyPart(a.sealed!.clinical!, clinicalKey, live.id, "clinical")).toThrow();
    const [alertEvent] = await sql`select payload from emergency_events where emergency_id = ${handedOver.id} and seq = 1`;
    expect(alertEvent.payload.note).toBeUndefined();
    expect(openEmergencyPart(Buffer.from(alertEvent.payload.sealedNote, "base64"), (await keyOf(handedOver.id, "clinical"))!, handedOver.id, "event:1")).toBe(CLINICAL_SECRETS.alertNote);

    // both patients erase their profiles: one emergency is closed, the other live
    for (const p of [handedOver.patient, live.patient]) expect((await h.http("DELETE", "/api/medical-profile", undefined, p.token)).status).toBe(204);
    await waitFor(live.faRoom, (st) => st.medical.profile.shared === false && st.medical.profile.allergies.length === 0, 3000, "summary withdrawn from the live emergency");
    expect(live.faRoom.state.medical.mechanism).toBe(CLINICAL_SECRETS.mechanism); // the clinical record stays
    await live.pRoom.request("position", { lat: PLACES.mombasa.lat + 2e-5, lng: PLACES.mombasa.lng });
    await sleep(2600);
    expect((await snapshotOf(live.id)).sealed?.profile).toBeUndefined(); // no later snapshot keeps it

    // every key the database holds now, unwrapped with the master key, fails on every disclosed copy
    const keys: Buffer[] = [];
    for (const r of await sql`select emergency_id, purpose, wrapped_key from medical_keys`) {
      keys.push(unwrapEmergencyKey(r.wrapped_key, master, r.emergency_id, r.purpose));
    }
    for (const r of await sql`select patient_id, wrapped_key from medical_profile_keys`) keys.push(unwrap(r.wrapped_key, master, r.patient_id));
    expect(keys.length).toBeGreaterThan(0);
    let attempts = 0;
    for (const [id, bytes] of snapshotsBeforeErasure) {
      const saved = unpackr.unpack(bytes) as any;
      expect(saved.sealed.profile).toBeDefined(); // the copy a backup taken before the erasure holds
      for (const key of keys) {
        for (const eid of [id, handedOver.id, live.id]) {
          attempts++;
          expect(() => openEmergencyPart(saved.sealed.profile, key, eid, "profile")).toThrow();
        }
      }
      expect(await keyOf(id, "profile")).toBeUndefined();
      // the clinical record (assessment, notes) follows the retention, not the profile's erasure
      expect(await keyOf(id, "clinical")).toBeDefined();
    }
    expect(attempts).toBeGreaterThan(0);

    // every destruction is in the audit log: who, whose data, which emergency, which fields, why
    const destroyed = await sql`select actor, subject, emergency_id, fields, reason from audit_log where action = 'emergency_medical.destroy' order by seq`;
    expect(destroyed.map((r) => r.emergency_id).sort()).toEqual([handedOver.id, live.id].sort());
    for (const r of destroyed) {
      expect(r.reason).toBe("erasure");
      expect(r.fields).toEqual(["bloodType", "allergies", "conditions", "medications"]);
      expect(r.actor).toBe(r.subject);
    }
    const writes = await sql`select actor, emergency_id from audit_log where action = 'emergency_medical.write'`;
    expect(writes.map((r) => r.emergency_id)).toEqual(expect.arrayContaining([handedOver.id, live.id]));

    // still nothing in the clear anywhere
    const after = await dumpEverything(h.databaseUrl, sql);
    expect(plaintextFound(after, ALL_SECRETS)).toEqual([]);
    expect(vitalsFound(after)).toEqual([]);
  });

  it("kill -9 and a restart bring the live emergencies' medical records back from sealed snapshots; one written before sealing is sealed at the next flush", async () => {
    const { MasterKey, unwrapEmergencyKey, openEmergencyPart } = await import("../src/medical/crypto.ts");
    const master = MasterKey.fromEnvValue(MASTER);
    // a second live emergency whose snapshot is rewritten as Haven wrote it before sealing (medical in the clear)
    const older = await scenario(h, ops, { lat: -0.0917, lng: 34.7680 });
    await older.faRoom.request("assessment", { mechanism: "ATREST-LEGACY kicked by a cow", injuries: [], treatment: [] });
    await sleep(100);
    runs.push(handedOver, live, older);
    noReconnect();
    await h.kill();
    const sealedSnap = await snapshotOf(older.id);
    const [k] = await sql`select wrapped_key from medical_keys where emergency_id = ${older.id} and purpose = 'clinical'`;
    const opened = openEmergencyPart(sealedSnap.sealed!.clinical!, unwrapEmergencyKey(k.wrapped_key, master, older.id, "clinical"), older.id, "clinical") as any;
    const legacy = { seq: sealedSnap.seq, state: { ...sealedSnap.state, medical: { ...opened.medical, profile: { shared: false, bloodType: "", allergies: [], conditions: [], medications: [] } } } };
    const { Packr } = await import("msgpackr");
    await sql`update emergency_snapshots set state = ${Buffer.from(new Packr({ useRecords: false }).pack(legacy))} where emergency_id = ${older.id}`;

    const restarted = await startHaven({ ...env, DATABASE_URL: h.databaseUrl });
    try {
      const faRoom = await join(restarted, live.fa.acc.token, live.id);
      await waitFor(faRoom, (st) => st.medical?.mechanism === CLINICAL_SECRETS.mechanism, 3000, "clinical record restored");
      expect(faRoom.state.medical.injuries[0]).toBe(CLINICAL_SECRETS.injury);
      expect(faRoom.state.medical.profile.shared).toBe(false); // erased: stays withdrawn
      const vitals = faRoom.state.medical.vitals.get(live.crew.acc.id);
      expect({ hr: vitals.heartRate, battery: vitals.battery }).toEqual({ hr: 149, battery: 57 });
      expect(vitals.temperature).toBeCloseTo(VITALS_MARKER.temperature, 3);
      expect([...faRoom.state.medical.vitalsAlerts]).toEqual(["heartRate:high"]);
      const olderRoom = await join(restarted, older.fa.acc.token, older.id);
      await waitFor(olderRoom, (st) => st.medical?.mechanism === "ATREST-LEGACY kicked by a cow", 3000, "record restored from the unsealed snapshot");
      await sleep(2600);
      const resealed = await snapshotOf(older.id);
      expect(resealed.state.medical).toBeUndefined();
      expect(resealed.sealed?.clinical).toBeDefined();
    } finally {
      await restarted.stop();
    }
  });
});

describe("retention", () => {
  it("a closed emergency's medical keys are destroyed after the retention period, and each destruction is audited", async () => {
    const r = await startHaven({ HAVEN_MEDICAL_MASTER_KEY: MASTER, HAVEN_MEDICAL_RETENTION_DAYS: "0", HAVEN_MEDICAL_RETENTION_SWEEP_MS: "1000" });
    const rsql = postgres(r.databaseUrl, { max: 2, onnotice: () => {} });
    try {
      const rops = await login(r, OPS.email, OPS.password);
      const patient = await account(r, "patient");
      expect((await r.http("POST", "/api/medical-profile", profile(3), patient.token)).status).toBe(201);
      const e = await scenario(r, rops, PLACES.agaKhan, patient);
      await waitFor(e.faRoom, (st) => st.medical?.profile?.shared === true, 3000, "profile disclosed");
      await e.faRoom.request("assessment", { mechanism: CLINICAL_SECRETS.mechanism, injuries: [], treatment: [] });
      expect(await rsql`select purpose from medical_keys where emergency_id = ${e.id} order by purpose`).toEqual([{ purpose: "clinical" }, { purpose: "profile" }]);
      await sleep(1500); // open emergencies are never swept
      expect(await rsql`select 1 from medical_keys where emergency_id = ${e.id}`).toHaveLength(2);
      await e.pRoom.request("cancel", { reason: "resolved_on_scene", note: CLINICAL_SECRETS.cancelNote });
      const deadline = Date.now() + 5000;
      while ((await rsql`select 1 from medical_keys where emergency_id = ${e.id}`).length > 0 && Date.now() < deadline) await sleep(200);
      expect(await rsql`select 1 from medical_keys where emergency_id = ${e.id}`).toHaveLength(0);
      const audit = await rsql`select actor, subject, fields, reason from audit_log where action = 'emergency_medical.destroy' and emergency_id = ${e.id} order by fields`;
      expect(audit).toHaveLength(2);
      for (const row of audit) {
        expect(row).toMatchObject({ actor: "system", subject: patient.id, reason: "retention" });
      }
      expect(audit.map((row) => row.fields[0]).sort()).toEqual(["age", "bloodType"]);
      // the ciphertext outlives its keys, unreadable: nothing in the clear either
      expect(plaintextFound(await dumpEverything(r.databaseUrl, rsql), ALL_SECRETS)).toEqual([]);
    } finally {
      await rsql.end({ timeout: 1 });
      await r.stop();
    }
  });
});
