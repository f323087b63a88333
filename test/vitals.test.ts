import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, account, join, login, rejection, scenario, sleep, startHaven, until, waitFor, type Account, type Haven } from "./harness.ts";

/**
 * The vitals stream: the assigned responders (or their devices) stream vitals into the medical
 * part; only the medically entitled see them; a vital crossing its threshold raises the priority,
 * is a timeline event once, and marks the wallboard entry; malformed samples change nothing.
 */
let h: Haven;
let ops: Account;
const MIN_INTERVAL_MS = 200;
beforeAll(async () => {
  h = await startHaven({ HAVEN_VITALS_MIN_INTERVAL_MS: String(MIN_INTERVAL_MS) });
  ops = await login(h, OPS.email, OPS.password);
});
afterAll(async () => { await h?.stop(); });

const AGA_KHAN = { lat: -1.2620, lng: 36.8230 };
const assessment = { mechanism: "chest pain at rest", injuries: [], treatment: ["aspirin"], suspected: ["cardiac"] };

/** An emergency with its hospital matched: its wallboard, its staff in the room, and operations in the room. */
async function withHospital() {
  const s = await scenario(h, ops, AGA_KHAN);
  await s.faRoom.request("assessment", assessment);
  await waitFor(s.pRoom, (st) => st.hospital.status === "notified", 3000, "hospital notified");
  const hospitalId = s.pRoom.state.hospital.id as string;
  const staff = await account(h, "hospital_staff", { hospitalId, by: ops });
  const board = await join(h, staff.token, `hospital-${hospitalId}`);
  await waitFor(board, (st) => st.incoming.has(s.id), 3000, "on the wallboard");
  const staffRoom = await join(h, staff.token, s.id);
  const opsRoom = await join(h, ops.token, s.id);
  // whatever a non-entitled party is ever sent, it never holds the medical part
  const leaks: string[] = [];
  for (const [who, room] of [["patient", s.pRoom], ["ops", opsRoom]] as const) {
    room.onStateChange(() => { if (room.state.medical !== undefined) leaks.push(who); });
  }
  return { ...s, hospitalId, staff, board, staffRoom, opsRoom, leaks };
}

const vitalAlerts = (st: any) => [...st.timeline].filter((e: any) => e.type === "vitals_alert");

describe("vitals stream", () => {
  it("reaches the other responder and the receiving hospital's staff, never the patient or operations", async () => {
    const s = await withHospital();
    const faId = s.fa.acc.id;
    s.faRoom.send("vitals", { heartRate: 88, systolic: 124, diastolic: 78, spo2: 97, temperature: 36.8, respiratoryRate: 14, device: { battery: 81, signal: 64 } });
    for (const room of [s.crewRoom, s.staffRoom, s.faRoom]) {
      await waitFor(room, (st) => st.medical?.vitals?.get(faId)?.heartRate === 88, 3000, "vitals seen");
    }
    const seen = s.staffRoom.state.medical.vitals.get(faId);
    expect({ spo2: seen.spo2, systolic: seen.systolic, diastolic: seen.diastolic, rr: seen.respiratoryRate, battery: seen.battery, signal: seen.signal })
      .toEqual({ spo2: 97, systolic: 124, diastolic: 78, rr: 14, battery: 81, signal: 64 });
    expect(seen.temperature).toBeCloseTo(36.8, 1);
    expect(seen.at).toBeGreaterThan(0);

    // a second sender (the crew's device, with the crew's token) keeps its own latest sample
    await sleep(MIN_INTERVAL_MS);
    const at = Date.now() - 500;
    await s.crewRoom.request("vitals", { spo2: 95, at });
    await waitFor(s.staffRoom, (st) => st.medical.vitals.get(s.crew.acc.id)?.spo2 === 95, 3000, "crew vitals");
    expect(s.staffRoom.state.medical.vitals.get(s.crew.acc.id).at).toBe(at);
    expect(s.staffRoom.state.medical.vitals.get(s.crew.acc.id).heartRate).toBe(-1);

    // all in range: no alert, the priority stands
    expect(s.pRoom.state.priority).toBe("high");
    expect(vitalAlerts(s.pRoom.state)).toHaveLength(0);
    await sleep(200);
    expect(s.pRoom.state.medical).toBeUndefined();
    expect(s.opsRoom.state.medical).toBeUndefined();
    expect(s.leaks).toEqual([]);
    // the status API does not disclose them to the non-entitled either
    const asPatient = await h.http("GET", `/api/emergency/${s.id}/status`, undefined, s.patient.token);
    expect(asPatient.status).toBe(200);
    expect(asPatient.body.id).toBe(s.id);
    expect(asPatient.body.medical).toBeUndefined();
    const asStaff = await h.http("GET", `/api/emergency/${s.id}/status`, undefined, s.staff.token);
    expect(asStaff.body.medical.vitals[faId].heartRate).toBe(88);
  });

  it("a vital over its threshold raises the priority to critical, is recorded once, and marks the wallboard entry", async () => {
    const s = await withHospital();
    expect(s.pRoom.state.priority).toBe("high");
    const first = await s.crewRoom.request("vitals", { heartRate: 152, spo2: 96 });
    expect(first).toMatchObject({ ok: true, alerts: ["heartRate:high"] });
    await waitFor(s.pRoom, (st) => st.priority === "critical", 3000, "priority raised");
    await waitFor(s.board, (st) => [...(st.incoming.get(s.id)?.vitalsAlerts ?? [])].includes("heartRate:high"), 3000, "wallboard marked");
    expect(s.board.state.incoming.get(s.id).priority).toBe("critical");

    // more samples out of range are no new event
    for (const hr of [160, 171]) {
      await sleep(MIN_INTERVAL_MS + 20);
      await s.crewRoom.request("vitals", { heartRate: hr });
    }
    await sleep(MIN_INTERVAL_MS + 20);
    await s.crewRoom.request("vitals", { heartRate: 150, spo2: 85 }); // a second vital out of range
    await waitFor(s.pRoom, (st) => vitalAlerts(st).length === 2, 3000, "spo2 alert");
    const alerts = vitalAlerts(s.pRoom.state).map((e: any) => e.detail);
    expect(alerts).toEqual(["heartRate high", "spo2 low"]);
    // the timeline is shared with everyone: it names the vital and the direction, never a value
    for (const e of [...s.pRoom.state.timeline]) if (String(e.type).startsWith("vitals")) expect(e.detail).not.toMatch(/(^|\s)\d/);
    expect([...s.pRoom.state.timeline].filter((e: any) => e.type === "priority_changed")).toHaveLength(1);
    await waitFor(s.board, (st) => st.incoming.get(s.id)?.vitalsAlerts.length === 2, 3000, "both on the wallboard");

    // back in range: recorded once, the wallboard entry clears; the priority stays critical
    await sleep(MIN_INTERVAL_MS + 20);
    await s.crewRoom.request("vitals", { heartRate: 90, spo2: 97 });
    await waitFor(s.board, (st) => st.incoming.get(s.id)?.vitalsAlerts.length === 0, 3000, "wallboard cleared");
    expect([...s.pRoom.state.timeline].filter((e: any) => e.type === "vitals_normal").map((e: any) => e.detail)).toEqual(["heartRate", "spo2"]);
    expect(s.pRoom.state.priority).toBe("critical");
    // out of range again: a new alert
    await sleep(MIN_INTERVAL_MS + 20);
    await s.faRoom.request("vitals", { temperature: 34.2 });
    await waitFor(s.pRoom, (st) => vitalAlerts(st).length === 3, 3000, "temperature alert");
    expect(vitalAlerts(s.pRoom.state).at(-1).detail).toBe("temperature low");
    expect(s.leaks).toEqual([]);
  });

  it("refuses malformed vitals with INVALID_PAYLOAD and changes nothing; others are unaffected", async () => {
    const s = await withHospital();
    const faId = s.fa.acc.id;
    await s.faRoom.request("vitals", { heartRate: 80 });
    await waitFor(s.staffRoom, (st) => st.medical.vitals.get(faId)?.heartRate === 80, 3000, "first sample");
    await sleep(MIN_INTERVAL_MS + 20);
    const bad: unknown[] = [
      { heartRate: 400 }, { heartRate: -1 }, { heartRate: 80.5 }, { heartRate: "80" }, { heartRate: null },
      { spo2: 101 }, { temperature: 50 }, { temperature: 20 }, { systolic: 301 }, { diastolic: 250 }, { respiratoryRate: 81 },
      { heartRate: 70, pulse: 70 }, { device: { battery: 101, signal: 50 } }, { device: { battery: 50 } },
      { device: { battery: 50, signal: -90 } }, { device: { battery: 50, signal: 50, imei: "x" } }, { device: null },
      { at: 12 }, { at: "now" }, { heartRate: 300, at: null }, [], "vitals", 42,
    ];
    const errors: any[] = [];
    s.faRoom.onMessage("error", (e: any) => errors.push(e));
    for (const payload of bad) {
      await sleep(60); // under the messages-per-second bound
      const r = await rejection(s.faRoom.request("vitals", payload));
      expect(r.code, JSON.stringify(payload)).toBe("INVALID_PAYLOAD");
    }
    s.faRoom.send("vitals", { heartRate: 999 }); // a plain send gets an error message
    await until(() => errors.length === 1, 3000, "error message");
    expect(errors[0]).toMatchObject({ code: "INVALID_PAYLOAD", type: "vitals" });

    await sleep(200);
    expect(s.staffRoom.state.medical.vitals.get(faId).heartRate).toBe(80);
    expect(s.pRoom.state.priority).toBe("high");
    expect(vitalAlerts(s.pRoom.state)).toHaveLength(0);
    // the others carry on
    await s.crewRoom.request("vitals", { heartRate: 77 });
    await waitFor(s.staffRoom, (st) => st.medical.vitals.get(s.crew.acc.id)?.heartRate === 77, 3000, "crew sample");
    await s.faRoom.request("vitals", { heartRate: 82 });
    await waitFor(s.staffRoom, (st) => st.medical.vitals.get(faId)?.heartRate === 82, 3000, "fa again");
  });

  it("only the assigned responders may send vitals, at most one sample per interval each", async () => {
    const s = await withHospital();
    for (const room of [s.pRoom, s.opsRoom, s.staffRoom]) {
      expect((await rejection(room.request("vitals", { heartRate: 150 }))).code).toBe("FORBIDDEN");
    }
    await s.faRoom.request("vitals", { heartRate: 81 });
    const fast = await rejection(s.faRoom.request("vitals", { heartRate: 150 }));
    expect(fast.code).toBe("RATE_LIMITED");
    // the crew has its own bound
    await s.crewRoom.request("vitals", { heartRate: 79 });
    await sleep(200);
    expect(s.staffRoom.state.medical.vitals.get(s.fa.acc.id).heartRate).toBe(81);
    expect(s.pRoom.state.priority).toBe("high");
    await sleep(MIN_INTERVAL_MS);
    await s.faRoom.request("vitals", { heartRate: 83 });
    await waitFor(s.staffRoom, (st) => st.medical.vitals.get(s.fa.acc.id)?.heartRate === 83, 3000, "after the interval");
  });
});
