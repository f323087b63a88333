import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Browser, Page } from "playwright-core";
import { TokenService } from "../src/auth/tokens.ts";
import { OPS, account, freePort, freshDatabase, join, login, scenario, startHaven, waitFor, type Haven } from "./harness.ts";
import { OUTPUT, ensurePagesBuilt, launchChromium } from "./browser.ts";

/**
 * The hospital wallboard in a real browser (Debian's Chromium, headless) against a live server:
 * staff sign in, an emergency routed to their hospital appears with its ATMIST summary, its ETA
 * follows the ambulance, acknowledging and ticking readiness reach the crew, and the page comes
 * back by itself after the network drops, while the server hangs, and after the server is killed
 * and restarted on the same port and database.
 */
let browser: Browser;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let env: Record<string, string>;
const servers: Haven[] = [];
beforeAll(async () => {
  ensurePagesBuilt();
  browser = await launchChromium();
  db = await freshDatabase();
  env = {
    PORT: String(await freePort()),
    DATABASE_URL: db.url,
    HAVEN_TOKEN_SECRET_KEY: await TokenService.generateSecretKey(),
    HAVEN_MEDICAL_MASTER_KEY: Buffer.alloc(32, 7).toString("base64"),
  };
}, 60_000);
afterAll(async () => {
  await browser?.close();
  for (const s of servers) await s.stop();
  await db?.drop();
});

const KNH_GATE = { lat: -1.2992, lng: 36.8078 }; // Hospital Road, at Kenyatta National Hospital's gate

/** The ETA the card shows, in seconds. */
const etaOf = (page: Page, id: string) => page.locator(`[data-emergency="${id}"] .eta`).getAttribute("data-eta").then(Number);

describe("hospital wallboard in Chromium", () => {
  it("shows the incoming emergency live, acts on it, and recovers after a server restart", async () => {
    const a = await startHaven(env);
    servers.push(a);
    const ops = await login(a, OPS.email, OPS.password);
    const staff = await account(a, "hospital_staff", { hospitalId: "knh", by: ops, name: "Nurse Wanjiru" });

    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    const refused: string[] = [];
    page.on("console", (m) => { if (/Content Security Policy|Refused to/i.test(m.text())) refused.push(m.text()); });
    page.on("pageerror", (e) => refused.push(`page error: ${e.message}`));

    // staff sign in with the login endpoint
    await page.goto(`${a.url}/wallboard`);
    await page.getByLabel("Email").fill(staff.email);
    await page.getByLabel("Password").fill("a-long-password-1");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("● LIVE").waitFor({ timeout: 10_000 });
    await page.getByText("No emergencies incoming.").waitFor();
    expect(await page.evaluate(() => JSON.parse(sessionStorage.getItem("haven.session")!).user.hospitalId)).toBe("knh");

    // an emergency routed to this hospital appears, most urgent first, with its handover summary
    const s = await scenario(a, ops, KNH_GATE);
    const assessed = await s.faRoom.request("assessment", {
      age: 34, mechanism: "motorcycle collision on Uhuru Highway", injuries: ["open fracture, left tibia"], treatment: ["splint", "pressure dressing"],
      signs: { heartRate: 124, systolic: 96, diastolic: 60, spo2: 94 }, priority: "critical", suspected: ["trauma"],
    });
    expect(assessed.hospitalId).toBe("knh");
    const card = page.locator(`[data-emergency="${s.id}"]`);
    await card.getByText("CRITICAL").waitFor({ timeout: 10_000 });
    await card.getByText("motorcycle collision on Uhuru Highway").waitFor();
    await card.getByText("NOT ACKNOWLEDGED").waitFor();

    // vitals from the crew's monitor show on the card
    s.crewRoom.send("vitals", { heartRate: 131, spo2: 93, systolic: 95, diastolic: 58 });
    await card.getByText("HR 131 bpm").waitFor({ timeout: 10_000 });

    // the ETA follows the ambulance: it drives from 900 m away to 100 m away
    await card.locator(".eta").getByText("min").or(card.locator(".eta").getByText(" s")).first().waitFor();
    const before = await etaOf(page, s.id);
    expect(before).toBeGreaterThan(60);
    s.crewRoom.send("position", { lat: KNH_GATE.lat + 100 / 111_320, lng: KNH_GATE.lng, heading: 180, speed: 12 });
    await expect.poll(() => etaOf(page, s.id), { timeout: 10_000 }).toBeLessThan(before - 60);

    // acknowledging and ticking readiness on the page reach the crew's SDK client
    await card.getByRole("button", { name: "Acknowledge" }).click();
    await waitFor(s.crewRoom, (st) => st.hospital.status === "acknowledged", 10_000, "the crew sees the acknowledgement");
    await card.getByText("ACKNOWLEDGED", { exact: true }).waitFor();
    await card.getByText("by you (Nurse Wanjiru)").waitFor({ timeout: 10_000 });
    const team = card.getByRole("button", { name: /Team assembled: NOT READY/ });
    await team.click();
    await waitFor(s.crewRoom, (st) => st.hospital.readiness.get("team")?.ready === true, 10_000, "the crew sees the team ready");
    await card.getByRole("button", { name: /Team assembled: READY/ }).waitFor();

    // the crew's chat shows on the card, and the answer typed on the wall reaches the crew
    await s.crewRoom.request("chat", { text: "pelvic binder on, BP holding" });
    await card.getByText("pelvic binder on, BP holding").waitFor({ timeout: 10_000 });
    await card.getByLabel("Message to the crew").fill("resus 2 is yours, trauma team waiting");
    await card.getByRole("button", { name: "Send" }).click();
    await waitFor(s.crewRoom, (st) => [...(st.chat?.messages ?? [])].some((m: any) => m.text === "resus 2 is yours, trauma team waiting" && m.role === "hospital_staff"), 10_000, "the crew gets the hospital's answer");

    // the network drops and comes back: the page says so, then rejoins by itself
    await page.context().setOffline(true);
    await page.getByText(/RECONNECTING… — stale since \d\d:\d\d:\d\d/).waitFor({ timeout: 20_000 });
    await page.context().setOffline(false);
    await page.getByText("● LIVE").waitFor({ timeout: 20_000 });
    await card.getByText("motorcycle collision on Uhuru Highway").waitFor();

    // the server hangs (its sockets stay open, nothing answers): the page's PING goes unanswered,
    // it says so, and rejoins once the server answers again
    a.proc.kill("SIGSTOP");
    try {
      await page.getByText(/RECONNECTING… — stale since \d\d:\d\d:\d\d/).waitFor({ timeout: 15_000 });
    } finally {
      a.proc.kill("SIGCONT");
    }
    await page.getByText("● LIVE").waitFor({ timeout: 20_000 });

    // the server dies and comes back on the same port and database: the page says so, then recovers by itself
    await a.kill();
    await page.getByText(/RECONNECTING… — stale since \d\d:\d\d:\d\d/).waitFor({ timeout: 15_000 });
    const b = await startHaven(env);
    servers.push(b);
    await page.getByText("● LIVE").waitFor({ timeout: 20_000 });
    await card.getByText("motorcycle collision on Uhuru Highway").waitFor({ timeout: 10_000 });
    // and acts again: the crew rejoins by the emergency's id and sees the bed made ready from the page
    const crewAgain = await join(b, s.crew.acc.token, s.id);
    await card.getByRole("button", { name: /Bed allocated: NOT READY/ }).click({ timeout: 15_000 });
    await waitFor(crewAgain, (st) => st.hospital.readiness.get("bed")?.ready === true, 10_000, "the crew sees the bed ready after the restart");

    await card.getByText("HR 131 bpm").waitFor({ timeout: 10_000 }).catch(() => { /* vitals younger than the last flush may be lost */ });
    await page.screenshot({ path: `${OUTPUT}/wallboard.png`, fullPage: true });
    const text = await page.locator("body").innerText();
    expect(text).toContain("motorcycle collision on Uhuru Highway");
    expect(text).toContain("Kenyatta National Hospital");
    expect(refused).toEqual([]);
    await page.close();
  }, 120_000);
});
