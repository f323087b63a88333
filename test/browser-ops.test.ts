import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import type { Browser } from "playwright-core";
import { OPS, login, scenario, startHaven, waitFor, type Haven } from "./harness.ts";
import { OUTPUT, ensurePagesBuilt, launchChromium } from "./browser.ts";

/**
 * The operations desk in a real browser (Debian's Chromium, headless) against a live server: ops
 * sign in, see the emergency on the live board, open it, reassign its hospital and cancel it from
 * the page, each with a reason; the crew sees both, and the audit log holds both.
 */
let browser: Browser;
let h: Haven;
beforeAll(async () => {
  ensurePagesBuilt();
  browser = await launchChromium();
  h = await startHaven();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await h?.stop();
});

const KNH_GATE = { lat: -1.2992, lng: 36.8078 };

describe("operations desk in Chromium", () => {
  it("reassigns a hospital and cancels an emergency from the page, and the audit log holds both", async () => {
    const ops = await login(h, OPS.email, OPS.password);
    const s = await scenario(h, ops, KNH_GATE);
    const assessed = await s.faRoom.request("assessment", { mechanism: "fall from scaffolding on Moi Avenue", injuries: ["head wound"], treatment: ["collar"], priority: "high", suspected: ["trauma"] });
    expect(assessed.hospitalId).toBe("knh");

    const page = await browser.newPage({ viewport: { width: 1600, height: 1200 } });
    const refused: string[] = [];
    page.on("console", (m) => { if (/Content Security Policy|Refused to/i.test(m.text())) refused.push(m.text()); });
    page.on("pageerror", (e) => refused.push(`page error: ${e.message}`));
    await page.goto(`${h.url}/ops`);
    await page.getByLabel("Email").fill(OPS.email);
    await page.getByLabel("Password").fill(OPS.password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("● LIVE").waitFor({ timeout: 10_000 });

    // the emergency is on the desk, with its hospital; the crew is on the unit board
    const row = page.locator(`tr[data-emergency="${s.id}"]`);
    await row.getByText("Kenyatta National Hospital (notified)").waitFor({ timeout: 10_000 });
    await page.locator(`tr[data-unit="${s.crew.acc.id}"]`).getByText("ASSIGNED").waitFor({ timeout: 10_000 });
    await row.getByRole("button", { name: "Select" }).click();

    // reassign, with a reason
    await page.getByLabel("Reason (required").fill("KNH theatre full, crew advised Nairobi Hospital");
    await page.getByLabel("Hospital", { exact: true }).selectOption("nairobi-hospital");
    await page.getByRole("button", { name: "Reassign hospital" }).click();
    await page.getByText("Reassigned to nairobi-hospital: notified.").waitFor({ timeout: 10_000 });
    await waitFor(s.crewRoom, (st) => st.hospital.id === "nairobi-hospital", 10_000, "the crew sees the new hospital");
    await row.getByText("The Nairobi Hospital (notified)").waitFor({ timeout: 10_000 });

    // open it: the emergency's own room, live, with its timeline
    await page.getByRole("button", { name: "Open", exact: true }).click();
    await page.locator(".timeline").getByText("hospital reassigned").waitFor({ timeout: 10_000 });
    await page.screenshot({ path: `${OUTPUT}/ops.png`, fullPage: true });
    expect(await page.locator("body").innerText()).toContain("The Nairobi Hospital (notified)");

    // cancel, with a reason
    await page.getByLabel("Reason (required").fill("duplicate of a call handled by county EMS");
    await page.getByLabel("Cancel reason").selectOption("duplicate");
    await page.getByRole("button", { name: "Cancel emergency" }).click();
    await waitFor(s.crewRoom, (st) => st.status === "cancelled", 10_000, "the crew sees the cancel");
    await row.waitFor({ state: "detached", timeout: 10_000 });

    const sql = postgres(h.databaseUrl, { max: 1, onnotice: () => {} });
    try {
      const rows = await sql<{ action: string; actor: string; actor_role: string; outcome: string; reason: string }[]>`
        select action, actor, actor_role, outcome, reason from audit_log
        where emergency_id = ${s.id} and action in ('ops.reassign_hospital', 'ops.cancel') order by seq`;
      expect(rows.map((r) => r.action)).toEqual(["ops.reassign_hospital", "ops.cancel"]);
      for (const r of rows) expect(r).toMatchObject({ actor: ops.id, actor_role: "ops_admin", outcome: "ok" });
      expect(rows[0].reason).toContain("KNH theatre full, crew advised Nairobi Hospital");
      expect(rows[0].reason).toContain("nairobi-hospital");
      expect(rows[1].reason).toContain("duplicate of a call handled by county EMS");
    } finally {
      await sql.end({ timeout: 1 });
    }
    expect(refused).toEqual([]);
    await page.close();
  }, 90_000);
});
