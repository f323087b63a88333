import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { verifyChain, type AuditEntry } from "../src/audit/chain.ts";
import { OPS, account, join, login, scenario, startHaven, waitFor, type Account, type Haven } from "./harness.ts";

/** The medical profile: encrypted at rest, shown only to entitled parties, every access audited, erasable. */
let h: Haven;
let ops: Account;
let db: postgres.Sql;
beforeAll(async () => {
  h = await startHaven({ HAVEN_MEDICAL_MASTER_KEY: Buffer.alloc(32, 7).toString("base64") });
  ops = await login(h, OPS.email, OPS.password);
  db = postgres(h.databaseUrl, { max: 2, onnotice: () => {} });
});
afterAll(async () => { await db?.end({ timeout: 1 }); await h?.stop(); });

const MARKER = "penicillin-XYZZY";
const profile = (share = true) => ({
  bloodType: "O-",
  allergies: [{ substance: MARKER, reaction: "anaphylaxis", severity: "life_threatening" }],
  conditions: ["type 1 diabetes"],
  medications: [{ name: "insulin glargine", dose: "20 units", frequency: "nightly" }],
  emergencyContacts: [{ name: "Wanjiku", relation: "sister", phone: "+254700000001" }],
  insurance: { provider: "NHIF", memberNumber: "123456" },
  consent: { shareInEmergency: share, version: 1 },
});

async function auditRows(action: string, subject?: string) {
  return subject === undefined
    ? db`select * from audit_log where action = ${action} order by seq`
    : db`select * from audit_log where action = ${action} and subject = ${subject} order by seq`;
}

describe("medical profile", () => {
  it("is stored as ciphertext: the plaintext appears nowhere in the table", async () => {
    const patient = await account(h, "patient");
    const created = await h.http("POST", "/api/medical-profile", profile(), patient.token);
    expect(created.status).toBe(201);
    const got = await h.http("GET", "/api/medical-profile", undefined, patient.token);
    expect(got.status).toBe(200);
    expect(got.body.profile.allergies[0].substance).toBe(MARKER);

    const rows = await db`select * from medical_profiles where patient_id = ${patient.id}`;
    expect(rows).toHaveLength(1);
    const asText = JSON.stringify(rows, (_k, v) => (v?.type === "Buffer" ? Buffer.from(v.data).toString("latin1") : v));
    for (const secret of [MARKER, "type 1 diabetes", "insulin", "Wanjiku", "+254700000001", "NHIF", "O-"]) {
      expect(asText.includes(secret), secret).toBe(false);
    }
    const [{ dump }] = await db`select medical_profiles::text as dump from medical_profiles where patient_id = ${patient.id}`;
    expect(dump.includes(MARKER)).toBe(false);
    expect((await auditRows("medical_profile.create", patient.id))).toHaveLength(1);
    expect((await auditRows("medical_profile.read", patient.id))).toHaveLength(1);
  });

  it("reaches only the assigned responders and the receiving hospital during an emergency, and each disclosure is audited", async () => {
    // a patient without a profile: the emergency shows none
    const s0 = await scenario(h, ops, PLACES.nakuru);
    expect(s0.faRoom.state.medical.profile.shared).toBe(false);
    await s0.pRoom.request("cancel", { reason: "false_alarm" });

    // a patient with a consented profile raises an alert
    const patient = await account(h, "patient");
    expect((await h.http("POST", "/api/medical-profile", profile(true), patient.token)).status).toBe(201);
    const s = await scenarioFor(patient, PLACES.agaKhan);
    await waitFor(s.faRoom, (st) => st.medical?.profile?.shared === true, 2000, "profile in the responder's view");
    expect([...s.faRoom.state.medical.profile.allergies][0]).toContain(MARKER);
    expect(s.faRoom.state.medical.profile.bloodType).toBe("O-");
    expect(JSON.stringify(s.faRoom.state.toJSON())).not.toContain("Wanjiku"); // contacts are never shared
    expect(s.pRoom.state.medical).toBeUndefined();
    const opsRoom = await join(h, ops.token, s.id);
    expect(opsRoom.state.medical).toBeUndefined();

    await s.faRoom.request("assessment", { mechanism: "collapse", injuries: [], treatment: [], suspected: ["cardiac"] });
    await waitFor(s.pRoom, (st) => st.hospital.id === "aga-khan", 2000, "matched");
    const staff = await account(h, "hospital_staff", { hospitalId: "aga-khan", by: ops });
    const staffRoom = await join(h, staff.token, s.id);
    expect([...staffRoom.state.medical.profile.allergies][0]).toContain(MARKER);

    const readsOf = () => db`select actor, actor_role, emergency_id, fields, outcome from audit_log
      where action = 'medical_profile.emergency_read' and subject = ${patient.id} order by seq`;
    let reads = await readsOf();
    for (let i = 0; i < 50 && reads.length < 3; i++) { await new Promise((r) => setTimeout(r, 40)); reads = await readsOf(); }
    const readers = reads.map((r) => r.actor);
    expect(readers).toEqual(expect.arrayContaining([s.fa.acc.id, s.crew.acc.id, staff.id]));
    expect(readers).not.toContain(patient.id);
    expect(readers).not.toContain(ops.id);
    for (const r of reads) {
      expect(r.emergency_id).toBe(s.id);
      expect(r.fields).toEqual(["bloodType", "allergies", "conditions", "medications"]);
      expect(JSON.stringify(r)).not.toContain(MARKER);
    }
    await opsRoom.leave();
    await staffRoom.leave();
  });

  it("without consent to share, an emergency shows no profile", async () => {
    const patient = await account(h, "patient");
    expect((await h.http("POST", "/api/medical-profile", profile(false), patient.token)).status).toBe(201);
    const s = await scenarioFor(patient, PLACES.mombasa);
    await new Promise((r) => setTimeout(r, 200));
    expect(s.faRoom.state.medical.profile.shared).toBe(false);
    expect(s.faRoom.state.medical.profile.allergies.length).toBe(0);
  });

  it("DELETE erases the profile (right to erasure); the audit log keeps that it happened", async () => {
    const patient = await account(h, "patient");
    await h.http("POST", "/api/medical-profile", profile(), patient.token);
    const del = await h.http("DELETE", "/api/medical-profile", undefined, patient.token);
    expect(del.status).toBe(204);
    expect((await h.http("GET", "/api/medical-profile", undefined, patient.token)).status).toBe(404);
    expect(await db`select 1 from medical_profiles where patient_id = ${patient.id}`).toHaveLength(0);
    expect((await auditRows("medical_profile.erase", patient.id))).toHaveLength(1);
    const s = await scenarioFor(patient, PLACES.kisumu);
    expect(s.faRoom.state.medical.profile.shared).toBe(false);
  });

  it("bad input to every endpoint gets a 4xx with a stable code and writes nothing", async () => {
    const patient = await account(h, "patient");
    const fa = await account(h, "first_aider");
    const bypass = (await h.http("POST", "/api/auth/emergency-bypass", { deviceId: "medical-bypass-1" })).body.accessToken;
    const cases: [string, unknown, string | undefined, number, string][] = [
      ["POST", { ...profile(), extra: true }, patient.token, 400, "INVALID_PAYLOAD"],
      ["POST", { ...profile(), bloodType: "Z+" }, patient.token, 400, "INVALID_PAYLOAD"],
      ["POST", { ...profile(), emergencyContacts: [{ name: "x", phone: "call me" }] }, patient.token, 400, "INVALID_PAYLOAD"],
      ["POST", { ...profile(), conditions: ["c".repeat(201)] }, patient.token, 400, "INVALID_PAYLOAD"],
      ["POST", { ...profile(), conditions: Array.from({ length: 400 }, () => "x".repeat(60)) }, patient.token, 413, "BODY_TOO_LARGE"],
      ["POST", profile(), fa.token, 403, "FORBIDDEN"],
      ["POST", profile(), bypass, 403, "FORBIDDEN"],
      ["POST", profile(), undefined, 401, "UNAUTHENTICATED"],
      ["PUT", profile(), patient.token, 404, "PROFILE_NOT_FOUND"],
      ["GET", undefined, patient.token, 404, "PROFILE_NOT_FOUND"],
      ["DELETE", undefined, patient.token, 404, "PROFILE_NOT_FOUND"],
    ];
    for (const [method, body, token, status, code] of cases) {
      const r = await h.http(method, "/api/medical-profile", body, token);
      expect(r.status, `${method} ${JSON.stringify(body)?.slice(0, 60)}`).toBe(status);
      expect(r.body.code).toBe(code);
    }
    expect(await db`select 1 from medical_profiles where patient_id = ${patient.id}`).toHaveLength(0);
    expect((await h.http("POST", "/api/medical-profile", profile(), patient.token)).status).toBe(201);
    expect((await h.http("POST", "/api/medical-profile", profile(), patient.token))).toMatchObject({ status: 409, body: { code: "PROFILE_EXISTS" } });
    const updated = await h.http("PUT", "/api/medical-profile", { ...profile(), bloodType: "A+" }, patient.token);
    expect(updated.status).toBe(200);
    expect((await h.http("GET", "/api/medical-profile", undefined, patient.token)).body.profile.bloodType).toBe("A+");
  });

  it("the audit log is append-only and its hash chain verifies", async () => {
    await expect(db`update audit_log set outcome = 'denied'`).rejects.toThrow();
    await expect(db`delete from audit_log`).rejects.toThrow();
    const rows = await db`select * from audit_log order by seq`;
    expect(rows.length).toBeGreaterThan(5);
    const chain = rows.map((r) => ({
      prevHash: r.prev_hash as Buffer | null,
      hash: r.hash as Buffer,
      entry: {
        at: r.at, actor: r.actor, actorRole: r.actor_role, action: r.action, subject: r.subject ?? undefined,
        emergencyId: r.emergency_id ?? undefined, fields: r.fields ?? undefined, breakGlass: r.break_glass,
        reason: r.reason ?? undefined, node: r.node ?? undefined, outcome: r.outcome,
      } as AuditEntry,
    }));
    expect(verifyChain(chain)).toEqual({ ok: true });
  });
});

/**
 * An emergency of `patient` with an assigned first-aider and crew, each joined. Each place is far
 * from the others, so that responders released by an earlier emergency are not the nearest.
 */
const PLACES = {
  agaKhan: { lat: -1.2620, lng: 36.8230 },
  nakuru: { lat: -0.3031, lng: 36.0800 },
  mombasa: { lat: -4.0435, lng: 39.6682 },
  kisumu: { lat: -0.0917, lng: 34.7680 },
};
const scenarioFor = (patient: Account, at: { lat: number; lng: number }) => scenario(h, ops, at, patient);
