import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { TokenService } from "../src/auth/tokens.ts";
import { OPS, account, freshDatabase, join, login, onDuty, rejection, scenario, sleep, startHaven, until, waitFor, type Account, type Haven } from "./harness.ts";

/**
 * Chat inside an emergency: its parties and the receiving hospital (in the emergency and on the
 * wallboard) receive it, nobody else does; bad messages are refused with a stable code; it is kept
 * in the timeline, sealed, and comes back after a restart.
 */
let db: Awaited<ReturnType<typeof freshDatabase>>;
let env: Record<string, string>;
let h: Haven;
let ops: Account;
beforeAll(async () => {
  db = await freshDatabase();
  env = {
    DATABASE_URL: db.url,
    HAVEN_TOKEN_SECRET_KEY: await TokenService.generateSecretKey(),
    HAVEN_MEDICAL_MASTER_KEY: Buffer.alloc(32, 7).toString("base64"),
    HAVEN_CHAT_MAX_CHARS: "100",
    HAVEN_CHAT_PER_MINUTE: "6",
    HAVEN_CHAT_KEEP: "4",
  };
  h = await startHaven(env);
  ops = await login(h, OPS.email, OPS.password);
});
afterAll(async () => { await h?.stop(); await db?.drop(); });

const KNH = { lat: -1.3010, lng: 36.8070 };
const general = { mechanism: "fall from a ladder", injuries: ["wrist"], treatment: [] };

/** Every `chat` message a wallboard receives. */
function collect(room: { onMessage(type: string, cb: (m: any) => void): unknown }): any[] {
  const got: any[] = [];
  room.onMessage("chat", (m) => got.push(m));
  return got;
}

describe("chat in an emergency", () => {
  let s: Awaited<ReturnType<typeof scenario>>;
  let hospitalId: string;
  let staffRoom: any;
  let board: any;
  let otherBoard: any;
  let boardGot: any[];
  let otherGot: any[];
  let opsRoom: any;
  let bystander: Awaited<ReturnType<typeof onDuty>>;

  beforeAll(async () => {
    s = await scenario(h, ops, KNH);
    await s.faRoom.request("assessment", general);
    await waitFor(s.pRoom, (st) => st.hospital.status === "notified", 3000, "a hospital notified");
    hospitalId = s.pRoom.state.hospital.id;
    const admin = await account(h, "hospital_admin", { hospitalId, by: ops });
    const staff = await account(h, "hospital_staff", { hospitalId, by: admin });
    board = await join(h, staff.token, `hospital-${hospitalId}`);
    await waitFor(board, (st) => st.incoming.has(s.id), 3000, "the card on the wallboard");
    boardGot = collect(board);
    staffRoom = await join(h, staff.token, s.id);
    const otherId = hospitalId === "knh" ? "mbagathi" : "knh";
    const otherAdmin = await account(h, "hospital_admin", { hospitalId: otherId, by: ops });
    otherBoard = await join(h, otherAdmin.token, `hospital-${otherId}`);
    otherGot = collect(otherBoard);
    opsRoom = await join(h, ops.token, s.id);
    // a first-aider on duty nearby, not assigned to this emergency
    bystander = await onDuty(h, ops, "first_aider", KNH);
  });

  it("reaches the patient, the responders, the receiving hospital's staff and its wallboard; not operations, another hospital or an unassigned first-aider", async () => {
    const sent = await s.pRoom.request("chat", { text: "The gate is blue, second house on the left", clientId: "chat-patient-01" });
    expect(sent).toMatchObject({ ok: true, seq: expect.any(Number) });
    const expected = { seq: sent.seq, from: `patient:${s.patient.id}`, role: "patient", name: "patient user", text: "The gate is blue, second house on the left", clientId: "chat-patient-01" };
    for (const room of [s.pRoom, s.faRoom, s.crewRoom, staffRoom]) {
      await waitFor(room, (st) => st.chat?.messages.length === 1, 3000, "the chat in the state");
      expect(room.state.chat.messages[0].toJSON()).toMatchObject(expected);
    }
    await until(() => boardGot.length === 1, 3000, "the wallboard's chat message");
    expect(boardGot[0]).toMatchObject({ emergencyId: s.id, ...expected });

    // the hospital answers from the wallboard; the responder from the emergency
    const fromBoard = await board.request("chat", { emergencyId: s.id, text: "Resus bay 2 is ready for you" });
    expect(fromBoard).toMatchObject({ ok: true });
    await s.faRoom.request("chat", { text: "Arriving in 5 minutes" });
    await waitFor(s.pRoom, (st) => st.chat.messages.length === 3, 3000, "three messages");
    expect([...s.pRoom.state.chat.messages].map((m: any) => [m.role, m.text])).toEqual([
      ["patient", "The gate is blue, second house on the left"],
      ["hospital_staff", "Resus bay 2 is ready for you"],
      ["first_aider", "Arriving in 5 minutes"],
    ]);
    expect(s.pRoom.state.chat.messages[1].name).toBe(s.pRoom.state.hospital.name);
    // the patient's view holds the chat, not the medical record
    expect(s.pRoom.state.medical).toBeUndefined();
    expect(s.faRoom.state.medical.assessed).toBe(true);
    await until(() => boardGot.length === 3, 3000, "the wallboard's three messages");

    // a resend with the same clientId is kept once
    expect(await s.pRoom.request("chat", { text: "The gate is blue, second house on the left", clientId: "chat-patient-01" })).toMatchObject({ ok: true, seq: sent.seq, duplicate: true });

    // not entitled: operations (joined to the emergency) sees no chat, another hospital's wallboard and an unassigned first-aider get nothing
    await sleep(300);
    expect(opsRoom.state.chat).toBeUndefined();
    expect(opsRoom.state.status).toBe("dispatched");
    expect(otherGot).toEqual([]);
    expect(JSON.stringify(bystander.duty.state.toJSON())).not.toContain("Resus bay");
    expect((await rejection(opsRoom.request("chat", { text: "hello" }))).code).toBe("FORBIDDEN");
    expect(s.pRoom.state.chat.messages.length).toBe(3);
  });

  it("refuses malformed chat with a stable code and changes nothing; bounds the rate per sender and the messages kept in state", async () => {
    const before = s.pRoom.state.chat.messages.length;
    const bad = [
      {},
      { text: "" },
      { text: "   " },
      { text: "x".repeat(101) },
      { text: 42 },
      { text: "hi", colour: "red" },
      { text: "hi", clientId: "no" },
      { text: "a\u0000b" },
    ];
    for (const payload of bad) expect((await rejection(s.faRoom.request("chat", payload))).code, JSON.stringify(payload)).toBe("INVALID_PAYLOAD");
    const tooLong = await rejection(s.faRoom.request("chat", { text: "é".repeat(101) }));
    expect(tooLong).toMatchObject({ code: "INVALID_PAYLOAD", details: [{ field: "text", rule: "maxChars" }] });
    expect((await rejection(board.request("chat", { emergencyId: s.id, text: "" }))).code).toBe("INVALID_PAYLOAD");
    expect((await rejection(otherBoard.request("chat", { emergencyId: s.id, text: "we have beds" }))).code).toBe("EMERGENCY_NOT_FOUND");
    await sleep(200);
    expect(s.pRoom.state.chat.messages.length).toBe(before);
    expect(otherGot).toEqual([]);

    // the crew may send 6 a minute; the 7th is refused
    for (let i = 1; i <= 6; i++) await s.crewRoom.request("chat", { text: `update ${i}` });
    expect(await rejection(s.crewRoom.request("chat", { text: "update 7" }))).toMatchObject({ code: "RATE_LIMITED" });
    // only the newest 4 stay in the state
    await waitFor(s.pRoom, (st) => st.chat.messages.length === 4 && st.chat.messages[3].text === "update 6", 3000, "the newest four");
    expect([...s.pRoom.state.chat.messages].map((m: any) => m.text)).toEqual(["update 3", "update 4", "update 5", "update 6"]);
  });

  it("once operations sends the patient to another hospital, the first one gets no more of the chat and the new one does", async () => {
    const desk = await join(h, ops.token, "ops");
    const next = hospitalId === "mama-lucy" ? "mp-shah" : "mama-lucy";
    const nextAdmin = await account(h, "hospital_admin", { hospitalId: next, by: ops });
    const nextBoard = await join(h, nextAdmin.token, `hospital-${next}`);
    const nextGot = collect(nextBoard);
    expect(await desk.request("reassign_hospital", { emergencyId: s.id, hospitalId: next, reason: "closer theatre free" })).toMatchObject({ ok: true, hospitalId: next });
    await waitFor(nextBoard, (st) => st.incoming.has(s.id), 3000, "the new hospital's card");
    await waitFor(board, (st) => !st.incoming.has(s.id), 3000, "the card gone from the first wallboard");
    const before = boardGot.length;
    await s.pRoom.request("chat", { text: "We are being sent elsewhere?" });
    await until(() => nextGot.length === 1, 3000, "the new wallboard's chat message");
    expect(nextGot[0]).toMatchObject({ emergencyId: s.id, text: "We are being sent elsewhere?" });
    await sleep(300);
    expect(boardGot.length).toBe(before);
    expect((await rejection(board.request("chat", { emergencyId: s.id, text: "still here" }))).code).toBe("EMERGENCY_NOT_FOUND");
    await desk.leave();
    nextBoard.reconnection.enabled = false;
    await nextBoard.leave();
  });

  it("is kept in the timeline with its text sealed, and comes back after a restart", async () => {
    await s.pRoom.request("chat", { text: "Bleeding has slowed" });
    await waitFor(s.pRoom, (st) => st.chat.messages.at(-1)?.text === "Bleeding has slowed", 3000, "the last message");
    const live = [...s.pRoom.state.chat.messages].map((m: any) => m.toJSON());
    await sleep(2500); // the snapshot flusher writes it within 2 s

    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const rows = await sql<{ seq: number; actor: string; payload: any }[]>`select seq, actor, payload from emergency_events where emergency_id = ${s.id} and type = 'chat' order by seq`;
      expect(rows.length).toBe(11); // every message answered ok above
      expect(rows.map((r) => r.seq)).toContain(live[0].seq);
      for (const r of rows) {
        const payload = typeof r.payload === "string" ? JSON.parse(r.payload) : r.payload;
        expect(Object.keys(payload)).toEqual(["sealed"]);
        expect(JSON.stringify(payload)).not.toMatch(/gate|Resus|Bleeding|update/);
      }
      const [snap] = await sql<{ state: Buffer }[]>`select state from emergency_snapshots where emergency_id = ${s.id}`;
      expect(snap.state.includes(Buffer.from("Bleeding has slowed"))).toBe(false);
    } finally {
      await sql.end({ timeout: 1 });
    }

    for (const room of [s.pRoom, s.faRoom, s.crewRoom, staffRoom, board, otherBoard, opsRoom, bystander.duty, s.fa.duty, s.crew.duty]) room.reconnection.enabled = false;
    await h.stop();
    h = await startHaven(env);
    const back = await join(h, s.patient.token, s.id);
    await waitFor(back, (st) => st.chat?.messages.length === live.length, 5000, "the chat restored");
    expect([...back.state.chat.messages].map((m: any) => m.toJSON())).toEqual(live);
    const fa = await join(h, s.fa.acc.token, s.id);
    await waitFor(fa, (st) => st.chat?.messages.length === live.length, 5000, "the responder sees it too");
    expect(fa.state.chat.messages.at(-1).text).toBe("Bleeding has slowed");
    await back.leave();
    await fa.leave();
  });
});
