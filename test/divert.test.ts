import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, account, freshDatabase, join, login, rejection, scenario, startHaven, waitFor, type Account, type Haven } from "./harness.ts";

/** Hospital divert: matching around it, a patient on the way re-matched, expiry, who may, and storage. */
let h: Haven;
let ops: Account;
let akAdmin: Account;
let akStaff: Account;
beforeAll(async () => {
  h = await startHaven();
  ops = await login(h, OPS.email, OPS.password);
  akAdmin = await account(h, "hospital_admin", { hospitalId: "aga-khan", by: ops });
  akStaff = await account(h, "hospital_staff", { hospitalId: "aga-khan", by: akAdmin });
});
afterAll(async () => { await h?.stop(); });

const AGA_KHAN = { lat: -1.2620, lng: 36.8230 };
const cardiac = { mechanism: "chest pain at rest", injuries: [], treatment: ["aspirin"], suspected: ["cardiac"], priority: "critical" };
const general = { mechanism: "fall from standing", injuries: ["wrist"], treatment: [] };
const inMinutes = (m: number) => Date.now() + m * 60_000;
const off = (who: Account = akAdmin) => h.http("POST", "/api/hospitals/aga-khan/divert", { active: false, reason: "divert over" }, who.token);

describe("hospital divert", () => {
  it("on divert for every patient: a new emergency next to it is matched elsewhere; REST, the wallboard and the audit log show it", async () => {
    const board = await join(h, akStaff.token, "hospital-aga-khan");
    const until = inMinutes(30);
    const r = await h.http("POST", "/api/hospitals/aga-khan/divert", { active: true, reason: "ED full", until }, akAdmin.token);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ id: "aga-khan", active: true, specialties: [], reason: "ED full", until });
    await waitFor(board, (st) => st.divertActive === true && st.divertReason === "ED full" && st.divertUntil === until, 2000, "wallboard shows the divert");
    const caps = await h.http("GET", "/api/hospitals/aga-khan/capabilities", undefined, ops.token);
    expect(caps.body.divert).toEqual({ active: true, specialties: [], reason: "ED full", until });
    const near = await h.http("GET", `/api/hospitals/nearby?lat=${AGA_KHAN.lat}&lng=${AGA_KHAN.lng}&limit=3`, undefined, ops.token);
    expect(near.body.hospitals[0]).toMatchObject({ id: "aga-khan", divert: { active: true, reason: "ED full" } });
    expect(near.body.hospitals[1].divert).toEqual({ active: false, specialties: [], reason: "", until: 0 });

    const s = await scenario(h, ops, AGA_KHAN);
    await s.faRoom.request("assessment", general);
    await waitFor(s.pRoom, (st) => st.hospital.status === "notified", 2000, "a hospital notified");
    expect(s.pRoom.state.hospital.id).not.toBe("aga-khan");

    expect((await off()).body).toMatchObject({ active: false });
    await waitFor(board, (st) => st.divertActive === false && st.divertReason === "", 2000, "wallboard cleared");
    const audit = await auditActions();
    expect(audit).toEqual(expect.arrayContaining(["hospital.divert_on", "hospital.divert_off"]));
    await board.leave();
  });

  it("a specialty divert (cardiac) from the wallboard skips the hospital only for cardiac patients", async () => {
    const board = await join(h, akStaff.token, "hospital-aga-khan");
    const answer = await board.request("divert", { active: true, specialties: ["cardiac"], reason: "cath lab down", until: inMinutes(60) });
    expect(answer).toMatchObject({ ok: true, active: true, specialties: ["cardiac"] });
    await waitFor(board, (st) => st.divertActive && [...st.divertSpecialties].join() === "cardiac", 2000, "specialty divert shown");

    const heart = await scenario(h, ops, AGA_KHAN);
    await heart.faRoom.request("assessment", cardiac);
    await waitFor(heart.pRoom, (st) => st.hospital.status === "notified", 2000, "cardiac patient matched");
    expect(heart.pRoom.state.hospital.id).not.toBe("aga-khan");

    const wrist = await scenario(h, ops, AGA_KHAN);
    await wrist.faRoom.request("assessment", general);
    await waitFor(wrist.pRoom, (st) => st.hospital.status === "notified", 2000, "general patient matched");
    expect(wrist.pRoom.state.hospital.id).toBe("aga-khan");

    await board.request("divert", { active: false, reason: "cath lab back" });
    await board.leave();
  });

  it("a divert that starts while the patient is on the way: within a second the crew and the patient see it and the next hospital is notified", async () => {
    const board = await join(h, akStaff.token, "hospital-aga-khan");
    const s = await scenario(h, ops, AGA_KHAN);
    await s.faRoom.request("assessment", cardiac);
    await waitFor(s.pRoom, (st) => st.hospital.id === "aga-khan" && st.hospital.status === "notified", 2000, "aga-khan notified");
    await waitFor(board, (st) => st.incoming.has(s.id), 2000, "on the wallboard");
    await board.request("acknowledge", { emergencyId: s.id });
    await waitFor(s.pRoom, (st) => st.hospital.status === "acknowledged", 2000, "acknowledged");

    const started = Date.now();
    await board.request("divert", { active: true, reason: "mass casualty incident", until: inMinutes(120) });
    const seen = (room: typeof s.pRoom) => waitFor(room, (st) =>
      [...st.timeline].some((e: any) => e.type === "hospital_diverted" && e.actor === "hospital:aga-khan" && e.detail === "mass casualty incident")
      && st.hospital.divertedFrom === "aga-khan" && st.hospital.divertReason === "mass casualty incident"
      && st.hospital.id !== "aga-khan" && st.hospital.id !== "" && st.hospital.status === "notified", 1000, "divert seen and re-matched");
    await Promise.all([seen(s.pRoom), seen(s.crewRoom), seen(s.faRoom)]);
    expect(Date.now() - started).toBeLessThan(1000);
    const next = s.pRoom.state.hospital.id;
    expect([...s.pRoom.state.hospital.passedOver]).not.toContain("aga-khan");
    expect([...s.pRoom.state.timeline].map((e: any) => e.type).slice(-3)).toEqual(expect.arrayContaining(["hospital_diverted", "hospital_matched"]));

    // the new hospital's wallboard has it; the diverted one's does not; ops was told
    const nextStaff = await account(h, "hospital_staff", { hospitalId: next, by: ops });
    const nextBoard = await join(h, nextStaff.token, `hospital-${next}`);
    await waitFor(nextBoard, (st) => st.incoming.get(s.id)?.hospitalStatus === "notified", 2000, "next hospital's wallboard");
    await waitFor(board, (st) => !st.incoming.has(s.id), 2000, "withdrawn from the diverted wallboard");
    expect(h.logs.join("")).toMatch(/went on divert \(mass casualty incident\); re-matched to/);
    expect(await auditActions()).toContain("emergency.hospital_diverted");

    await board.request("divert", { active: false, reason: "over" });
    await Promise.all([board.leave(), nextBoard.leave()]);
  });

  it("a divert ends by itself at its time: the wallboard clears and REST reports it off", async () => {
    const board = await join(h, akStaff.token, "hospital-aga-khan");
    await board.request("divert", { active: true, reason: "short", until: Date.now() + 1200 });
    await waitFor(board, (st) => st.divertActive === true, 1000, "on");
    await waitFor(board, (st) => st.divertActive === false && st.divertUntil === 0 && st.divertReason === "", 3000, "cleared by itself");
    const caps = await h.http("GET", "/api/hospitals/aga-khan/capabilities", undefined, ops.token);
    expect(caps.body.divert.active).toBe(false);
    await board.leave();
  });

  it("refuses other roles, other hospitals and bad bodies, and changes nothing", async () => {
    const other = await account(h, "hospital_admin", { hospitalId: "knh", by: ops });
    const patient = await account(h, "patient");
    const body = { active: true, reason: "ED full", until: inMinutes(10) };
    const post = (who: Account, b: unknown, id = "aga-khan") => h.http("POST", `/api/hospitals/${id}/divert`, b, who.token);
    expect((await post(akStaff, body)).body.code).toBe("FORBIDDEN");
    expect((await post(other, body)).status).toBe(403);
    expect((await post(patient, body)).status).toBe(403);
    expect((await post(ops, body, "nowhere")).status).toBe(404);
    expect((await h.http("POST", "/api/hospitals/aga-khan/divert", body)).status).toBe(401);
    for (const bad of [
      { ...body, until: Date.now() - 1000 },
      { ...body, until: inMinutes(24 * 60 + 5) },
      { active: true, reason: "no end" },
      { ...body, reason: "" },
      { ...body, specialties: ["dentistry"] },
      { ...body, specialties: ["cardiac", "cardiac"] },
      { ...body, extra: 1 },
      { ...body, until: 1.5 },
      { ...body, reason: "x".repeat(201) },
    ]) {
      const r = await post(ops, bad);
      expect(r.status, JSON.stringify(bad)).toBe(400);
      expect(r.body.code).toBe("INVALID_PAYLOAD");
    }
    const board = await join(h, akStaff.token, "hospital-aga-khan");
    expect((await rejection(board.request("divert", { ...body, until: Date.now() - 1 }))).code).toBe("INVALID_PAYLOAD");
    expect((await rejection(board.request("divert", { ...body, active: "yes" }))).code).toBe("INVALID_PAYLOAD");
    const caps = await h.http("GET", "/api/hospitals/aga-khan/capabilities", undefined, ops.token);
    expect(caps.body.divert.active).toBe(false);
    // ops may
    expect((await post(ops, body)).status).toBe(200);
    expect((await off(ops)).status).toBe(200);
    await board.leave();
  });

  async function auditActions(): Promise<string[]> {
    const { default: postgres } = await import("postgres");
    const sql = postgres(h.databaseUrl, { max: 1, onnotice: () => {} });
    try {
      return (await sql<{ action: string }[]>`select action from audit_log`).map((r) => r.action);
    } finally {
      await sql.end({ timeout: 1 });
    }
  }
});

describe("divert storage", () => {
  it("survives a restart", async () => {
    const db = await freshDatabase();
    let a: Haven | undefined;
    try {
      a = await startHaven({ DATABASE_URL: db.url });
      const opsA = await login(a, OPS.email, OPS.password);
      const until = inMinutes(90);
      const r = await a.http("POST", "/api/hospitals/knh/divert", { active: true, specialties: ["trauma", "burns"], reason: "CT down", until }, opsA.token);
      expect(r.status).toBe(200);
      await a.stop();
      a = await startHaven({ DATABASE_URL: db.url });
      const opsB = await login(a, OPS.email, OPS.password);
      const caps = await a.http("GET", "/api/hospitals/knh/capabilities", undefined, opsB.token);
      expect(caps.body.divert).toEqual({ active: true, specialties: ["trauma", "burns"], reason: "CT down", until });
      const admin = await account(a, "hospital_admin", { hospitalId: "knh", by: opsB });
      const board = await join(a, admin.token, "hospital-knh");
      expect(board.state.divertActive).toBe(true);
      expect([...board.state.divertSpecialties]).toEqual(["trauma", "burns"]);
      await board.leave();
    } finally {
      await a?.stop();
      await db.drop();
    }
  });
});
