import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { root, startHaven, type Haven } from "./harness.ts";

/**
 * `npm run demo` against a development server as `npm start` runs it (no bootstrap ops account
 * configured: the demo signs in with the development one), twenty times faster: both patients are
 * carried to Kenyatta National Hospital and handed over.
 */
let h: Haven;
let dataDir: string;
beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "haven-demo-"));
  h = await startHaven({ HAVEN_ENV: "development", HAVEN_BOOTSTRAP_OPS_EMAIL: "", HAVEN_BOOTSTRAP_OPS_PASSWORD: "", HAVEN_DATA_DIR: dataDir });
});
afterAll(async () => {
  await h?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("npm run demo", () => {
  it("prints where to sign in, plays both emergencies through to the handover, and exits 0", async () => {
    const out: string[] = [];
    const code = await new Promise<number | null>((resolve) => {
      const p = spawn(process.execPath, ["load-tests/demo/run.ts"], { cwd: root, env: { ...process.env, HAVEN_URL: h.url, HAVEN_DATA_DIR: dataDir, HAVEN_DEMO_SPEED: "20" }, stdio: ["ignore", "pipe", "pipe"] });
      p.stdout.on("data", (d) => out.push(String(d)));
      p.stderr.on("data", (d) => out.push(String(d)));
      const timer = setTimeout(() => p.kill("SIGKILL"), 100_000);
      p.on("exit", (c) => { clearTimeout(timer); resolve(c); });
    });
    const text = out.join("");
    expect(code, text).toBe(0);
    expect(text).toContain(`${h.url}/wallboard`);
    expect(text).toContain(`${h.url}/ops`);
    expect(text).toMatch(/sign in as ops@haven\.local {2}password \S{20,}/);
    expect(text.match(/handover confirmed for/g)?.length).toBe(2);
    expect(text.match(/ handed over$/gm)?.length).toBe(2);
    expect(text).toMatch(/ETA at the hospital \d+ min \d\d s/);

    // the nurse's account it printed signs in, as staff of Kenyatta National Hospital
    const [, email, password] = /sign in as (hospital-staff\S+) {2}password (\S+)/.exec(text)!;
    const login = await h.http("POST", "/api/auth/login", { email, password });
    expect(login.body.user).toMatchObject({ role: "hospital_staff", hospitalId: "knh" });
  }, 120_000);
});
