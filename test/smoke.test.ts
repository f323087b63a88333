import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, account, join, login, startHaven, waitFor, type Haven } from "./harness.ts";

let h: Haven;
beforeAll(async () => { h = await startHaven(); });
afterAll(async () => { await h?.stop(); });

describe("smoke", () => {
  it("patient alert creates a room the patient can join", async () => {
    const patient = await account(h, "patient");
    const r = await h.http("POST", "/api/emergency/alert", { lat: -1.2921, lng: 36.8219 }, patient.token);
    expect(r.status).toBe(201);
    const room = await join(h, patient.token, r.body.emergencyId);
    await waitFor(room, (s) => s.status === "alerted");
    expect(room.state.patient.lat).toBe(-1.2921);
    await room.request("position", { lat: -1.2922, lng: 36.822 });
    await waitFor(room, (s) => s.patient.lat === -1.2922);
  });
});
